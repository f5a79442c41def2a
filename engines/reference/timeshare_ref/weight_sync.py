"""Weight sync by collective broadcast: a weight-update group of the trainer (rank 0) and the
rollout engines (ranks 1..), the trainer's bucketed send and the engines' staged receive.

The group is a torch.distributed process group built directly on a TCP store (gloo on CPU,
NCCL with CUDA), not the default group: a process can hold several (an old one being torn down
while its replacement forms), and a rebuild never touches global state. The trainer hosts the
store on a free port; the engines connect to it (SGLang `init_weights_update_group`, vLLM
`init_weight_transfer_engine`). Every operation has the group's timeout: a member that hangs
makes the others fail after it instead of blocking forever, and a member that dies makes the
others fail as soon as its sockets close.

One process is one member. torch's bindings construct a store or a process group with the GIL
released, and pybind11 registers the new Python object before taking it back
(pybind/pybind11#5473): two constructions at once in one process can corrupt its registry of
objects, and the process aborts later, when one of them is freed ("Tried to deallocate
unregistered instance!"). Constructions here hold `_CONSTRUCTING`, so a process forms one group
at a time; a second group's formation waits for the first's (at most its timeout). Members of
one group in one process would wait for each other forever: the tests run each in a process.
"""
from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .rollout import EngineError

BACKENDS = ("gloo", "nccl")

# Held while this process constructs a store or a process group (module docstring).
_CONSTRUCTING = threading.Lock()


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise EngineError(400, f"unknown dtype {name!r}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class Bucket:
    names: list[str]
    dtypes: list[str]
    shapes: list[list[int]]
    nbytes: int

    def as_json(self) -> dict:
        return {"names": self.names, "dtypes": self.dtypes, "shapes": self.shapes, "bytes": self.nbytes}


def plan_buckets(named: list[tuple[str, torch.Tensor]], bucket_bytes: int) -> list[Bucket]:
    """Consecutive tensors of one dtype, up to bucket_bytes each (a bigger tensor goes alone):
    one broadcast per bucket instead of one per tensor."""
    if bucket_bytes < 1:
        raise EngineError(400, f"bucket_bytes must be >= 1, got {bucket_bytes}")
    buckets: list[Bucket] = []
    current: Bucket | None = None
    for name, tensor in named:
        size = tensor.numel() * tensor.element_size()
        kind = dtype_name(tensor.dtype)
        if current is None or current.dtypes[0] != kind or current.nbytes + size > bucket_bytes:
            current = Bucket([], [], [], 0)
            buckets.append(current)
        current.names.append(name)
        current.dtypes.append(kind)
        current.shapes.append(list(tensor.shape))
        current.nbytes += size
    return buckets


def parse_bucket(body: dict, names_key: str = "names", dtypes_key: str = "dtypes") -> tuple[list[str], list[torch.dtype], list[list[int]]]:
    names, dtypes, shapes = body.get(names_key), body.get(dtypes_key), body.get("shapes")
    if not (isinstance(names, list) and isinstance(dtypes, list) and isinstance(shapes, list)) or not names:
        raise EngineError(400, f"{names_key}, {dtypes_key} and shapes must be non-empty lists")
    if not (len(names) == len(dtypes) == len(shapes)):
        raise EngineError(400, f"{names_key} ({len(names)}), {dtypes_key} ({len(dtypes)}) and shapes ({len(shapes)}) must have one length")
    if not all(isinstance(n, str) for n in names) or not all(isinstance(s, list) and all(isinstance(d, int) and d >= 0 for d in s) for s in shapes):
        raise EngineError(400, "names must be strings and shapes lists of non-negative integers")
    return names, [dtype_from_name(str(d)) for d in dtypes], shapes


# Where the trainer's store names its group, for a member whose join names none (vLLM's init):
# the group's keys carry its name.
GROUP_NAME_KEY = "timeshare/group-name"


class Group:
    """One weight-update group as seen by one member."""

    def __init__(self, name: str, rank: int, world_size: int, backend: str, timeout_s: float, store: dist.Store, device: torch.device):
        self.name = name
        self.rank = rank
        self.world_size = world_size
        self.backend = backend
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.store = store
        # gloo moves host tensors; NCCL device tensors.
        self.comm_device = torch.device("cpu") if backend == "gloo" else device
        # The keys of SGLang's `init_custom_process_group` under torch 2: the group name, then
        # what torch's group helper adds (`<name>/`, then the device: `cpu/` for gloo, `cuda/` for
        # NCCL). A trainer keyed otherwise waits for keys a real SGLang engine never writes
        # (checked against SGLang 0.5.23's own function on CPU with gloo, docs/engine-protocol.md).
        prefixed = dist.PrefixStore(name, store)
        prefixed = dist.PrefixStore(f"{name}/", prefixed)
        prefixed = dist.PrefixStore("cpu/" if backend == "gloo" else "cuda/", prefixed)
        if backend == "gloo":
            self.pg = dist.ProcessGroupGloo(prefixed, rank, world_size, self.timeout)
        else:
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = self.timeout
            self.pg = dist.ProcessGroupNCCL(prefixed, rank, world_size, options)

    def broadcast(self, tensor: torch.Tensor) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = 0
        options.rootTensor = 0
        options.timeout = self.timeout
        self.pg.broadcast([tensor], options).wait()


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise EngineError(400, f"backend must be one of {list(BACKENDS)}, got {backend!r}")


def join_group(name: str | None, master_address: str, master_port: int, rank: int, world_size: int, backend: str, timeout_s: float, device: torch.device) -> Group:
    """A receiving member joins: blocks until every member has (or the timeout). Without a name
    (vLLM's init names none) the group's is read from the trainer's store."""
    check_backend(backend)
    if not 1 <= rank < world_size:
        raise EngineError(400, f"rank_offset {rank} must be in [1, world_size {world_size}): rank 0 is the trainer")
    try:
        with _CONSTRUCTING:
            store = dist.TCPStore(master_address, master_port, world_size, False, timeout=datetime.timedelta(seconds=timeout_s))
            return Group(name or store.get(GROUP_NAME_KEY).decode(), rank, world_size, backend, timeout_s, store, device)
    except EngineError:
        raise
    except Exception as error:
        raise EngineError(503, f"joining weight-update group {name!r} at {master_address}:{master_port} as rank {rank}/{world_size} failed: {error}") from error


# ----- the engine side -------------------------------------------------------------------------


@dataclass
class _Staging:
    version: str | None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    received_bytes: int = 0


class WeightReceiver:
    """An engine's groups and the tensors received for the version in flight. Nothing reaches
    the served model until every tensor of the model has arrived: then `take_complete` hands the
    whole state over for one swap (the engine serves the old version or the new one, never a mix)."""

    def __init__(self, device: torch.device, expected: dict[str, tuple[torch.dtype, tuple[int, ...]]]):
        self.device = device
        self.expected = expected
        self.groups: dict[str, Group] = {}
        self.staging: dict[str, _Staging] = {}
        self.lock = threading.Lock()

    def join(self, name: str, master_address: str, master_port: int, rank: int, world_size: int, backend: str, timeout_s: float, named: bool = True) -> None:
        """Joins the group `name` (this engine's name for it). `named`: the group's keys carry that
        name (SGLang's init); otherwise the trainer's store names the group (vLLM's init names none)."""
        with self.lock:
            existing = self.groups.get(name)
        if existing is not None:
            if (existing.rank, existing.world_size, existing.backend) != (rank, world_size, backend):
                raise EngineError(409, f"weight-update group {name!r} exists with rank {existing.rank}/{existing.world_size} {existing.backend}")
            return
        group = join_group(name if named else None, master_address, master_port, rank, world_size, backend, timeout_s, self.device)
        with self.lock:
            self.groups[name] = group

    def destroy(self, name: str) -> bool:
        with self.lock:
            self.staging.pop(name, None)
            return self.groups.pop(name, None) is not None

    def group(self, name: str) -> Group:
        with self.lock:
            group = self.groups.get(name)
        if group is None:
            raise EngineError(400, f"weight-update group {name!r} is not initialised on this engine (init_weights_update_group first)")
        return group

    def begin(self, name: str, version: str | None) -> None:
        """Discards whatever an interrupted update left staged (vLLM start_weight_update)."""
        self.group(name)
        with self.lock:
            self.staging[name] = _Staging(version)

    def receive(self, name: str, names: list[str], dtypes: list[torch.dtype], shapes: list[list[int]], flattened: bool, version: str | None) -> None:
        """Receives one bucket from rank 0 into staging (one flat broadcast, or one per tensor)."""
        group = self.group(name)
        for tensor_name, dtype, shape in zip(names, dtypes, shapes):
            want = self.expected.get(tensor_name)
            if want is None:
                raise EngineError(400, f"tensor {tensor_name!r} is not a parameter of this model")
            if want != (dtype, tuple(shape)):
                raise EngineError(400, f"tensor {tensor_name!r}: sent {dtype_name(dtype)}{shape}, the model has {dtype_name(want[0])}{list(want[1])}")
        with self.lock:
            staging = self.staging.get(name)
            # SGLang names the version with the last bucket only: an unnamed staging adopts it;
            # a staging for another version is what an interrupted update left, and is dropped.
            if staging is None or (version is not None and staging.version not in (None, version)):
                staging = self.staging[name] = _Staging(version)
            elif version is not None:
                staging.version = version
        try:
            if flattened:
                if len(set(dtypes)) != 1:
                    raise EngineError(400, "a flattened bucket holds tensors of one dtype")
                # The bucket travels as its bytes (uint8), as SGLang receives a flattened bucket:
                # sender and receivers then agree on the count and type NCCL is given.
                sizes = [int(torch.Size(s).numel()) * torch.empty((), dtype=dtypes[0]).element_size() for s in shapes]
                flat = torch.empty(sum(sizes), dtype=torch.uint8, device=group.comm_device)
                group.broadcast(flat)
                received = [part.view(dtypes[0]).view(shape) for part, shape in zip(flat.split(sizes), shapes)]
            else:
                received = []
                for dtype, shape in zip(dtypes, shapes):
                    tensor = torch.empty(shape, dtype=dtype, device=group.comm_device)
                    group.broadcast(tensor)
                    received.append(tensor)
        except EngineError:
            raise
        except Exception as error:
            with self.lock:
                self.staging.pop(name, None)
            raise EngineError(503, f"receiving weights in group {name!r} failed (nothing applied; the engine keeps its weights): {error}") from error
        with self.lock:
            if self.staging.get(name) is not staging:
                raise EngineError(409, f"the update in group {name!r} was restarted while this bucket was received")
            for tensor_name, tensor in zip(names, received):
                staging.tensors[tensor_name] = tensor.to(self.device)
                staging.received_bytes += tensor.numel() * tensor.element_size()

    def take_complete(self, name: str) -> _Staging | None:
        """The staged state once it covers every tensor of the model (and removes it), else None."""
        with self.lock:
            staging = self.staging.get(name)
            if staging is None or set(staging.tensors) != set(self.expected):
                return None
            del self.staging[name]
            return staging

    def describe(self) -> dict:
        with self.lock:
            return {
                "groups": sorted(self.groups),
                "staging": {name: {"version": s.version, "tensors": len(s.tensors), "of": len(self.expected), "bytes": s.received_bytes} for name, s in self.staging.items()},
            }


# ----- the trainer side ------------------------------------------------------------------------


class _SenderGroup:
    def __init__(self, name: str, store: dist.TCPStore, world_size: int, backend: str, timeout_s: float):
        self.name = name
        self.store = store
        self.world_size = world_size
        self.backend = backend
        self.timeout_s = timeout_s
        self.ready = threading.Event()
        self.group: Group | None = None
        self.error: Exception | None = None
        self.sent_bytes = 0
        self.sent_buckets = 0


class WeightSender:
    """The trainer's side: opens groups (hosts the store; forms as rank 0 in the background, so
    the call answers with the port before the engines join) and broadcasts the weights."""

    def __init__(self, device: torch.device, delay_per_bucket_s: float = 0.0):
        self.device = device
        self.delay_per_bucket_s = delay_per_bucket_s
        self.groups: dict[str, _SenderGroup] = {}
        self.lock = threading.Lock()

    def open(self, name: str, master_address: str, master_port: int, world_size: int, backend: str, timeout_s: float) -> int:
        check_backend(backend)
        if world_size < 2:
            raise EngineError(400, f"world_size must be >= 2 (the trainer and at least one engine), got {world_size}")
        # A repeated open answers from the group at once, even while another group forms.
        with self.lock:
            existing = self._port_if_open(name, world_size, backend)
        if existing is not None:
            return existing
        try:
            with _CONSTRUCTING:
                store = dist.TCPStore(master_address, master_port, world_size, True, timeout=datetime.timedelta(seconds=timeout_s), wait_for_workers=False)
            store.set(GROUP_NAME_KEY, name)
        except Exception as error:
            raise EngineError(503, f"cannot host the weight-update store at {master_address}:{master_port}: {error}") from error
        with self.lock:
            existing = self._port_if_open(name, world_size, backend)
            if existing is not None:  # the same open, answered meanwhile: its store is the group's
                return existing
            entry = self.groups[name] = _SenderGroup(name, store, world_size, backend, timeout_s)

        def form() -> None:
            # The outcome is recorded before the lock is let go: whatever constructs next in this
            # process sees this group formed or failed.
            with _CONSTRUCTING:
                try:
                    entry.group = Group(name, 0, world_size, backend, timeout_s, store, self.device)
                except Exception as error:  # reported by the next broadcast and by describe
                    entry.error = error
                finally:
                    entry.ready.set()

        threading.Thread(target=form, name=f"form-{name}", daemon=True).start()
        return store.port

    def _port_if_open(self, name: str, world_size: int, backend: str) -> int | None:
        """The port of the group `name` if it is open with this shape; 409 if with another. The
        caller holds self.lock."""
        existing = self.groups.get(name)
        if existing is None:
            return None
        if (existing.world_size, existing.backend) != (world_size, backend):
            raise EngineError(409, f"weight-update group {name!r} exists with world_size {existing.world_size} {existing.backend}")
        return existing.store.port

    def destroy(self, name: str) -> bool:
        with self.lock:
            return self.groups.pop(name, None) is not None

    def broadcast(self, name: str, named: list[tuple[str, torch.Tensor]], bucket_bytes: int, flattened: bool) -> dict:
        with self.lock:
            entry = self.groups.get(name)
        if entry is None:
            raise EngineError(400, f"weight-update group {name!r} is not open on the trainer (init_weights_update_group first)")
        if not entry.ready.wait(entry.timeout_s):
            raise EngineError(504, f"weight-update group {name!r} did not form within {entry.timeout_s} s (an engine did not join)")
        if entry.error is not None or entry.group is None:
            raise EngineError(503, f"weight-update group {name!r} failed to form: {entry.error}")
        group = entry.group
        started = time.perf_counter()
        buckets = plan_buckets(named, bucket_bytes)
        tensors = dict(named)
        entry.sent_bytes = 0
        entry.sent_buckets = 0
        try:
            for index, bucket in enumerate(buckets):
                if index > 0 and self.delay_per_bucket_s > 0:
                    time.sleep(self.delay_per_bucket_s)
                parts = [tensors[n].detach().to(group.comm_device) for n in bucket.names]
                if flattened:
                    # As bytes: SGLang receives a flattened bucket as uint8 of the bucket's size.
                    group.broadcast(torch.cat([p.contiguous().reshape(-1).view(torch.uint8) for p in parts]))
                else:
                    for part in parts:
                        group.broadcast(part.contiguous())
                entry.sent_bytes += bucket.nbytes
                entry.sent_buckets += 1
        except Exception as error:
            raise EngineError(503, f"broadcast in group {name!r} failed after {entry.sent_buckets} of {len(buckets)} buckets: {error}") from error
        seconds = time.perf_counter() - started
        return {"bytes": entry.sent_bytes, "buckets": len(buckets), "tensors": len(named), "seconds": seconds}

    def describe(self) -> dict:
        with self.lock:
            return {
                name: {"port": g.store.port, "world_size": g.world_size, "backend": g.backend, "formed": g.group is not None, "error": None if g.error is None else str(g.error), "sent_buckets": g.sent_buckets, "sent_bytes": g.sent_bytes}
                for name, g in self.groups.items()
            }
