"""The rollout side: token-by-token sampling with abort, pause, memory release and weight loading.

Every request runs in its own server thread; one lock serialises forward passes and weight or
memory changes, so a weight update never lands in the middle of a token. Generation recomputes
attention over the whole sequence each token (no KV reuse: the model is tiny); the `kv_cache`
tag stands for the engine's KV pool, a workspace buffer allocated on the device while resident.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from .digest import weights_digest
from .memory import ParameterOffloader
from .model import ModelConfig, build_model

TAGS = ("weights", "kv_cache")


class EngineError(Exception):
    """A request the engine refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class GenerationResult:
    output_ids: list[int]
    logprobs: list[float]
    finish: dict
    prompt_tokens: int
    weight_version: str


@dataclass
class _Running:
    abort: threading.Event = field(default_factory=threading.Event)


class RolloutEngine:
    def __init__(self, config: ModelConfig, device: torch.device, kv_pool_mib: int = 8, decode_delay_s: float = 0.0, kv_capacity_tokens: int | None = None, register_delay_s: float = 0.0):
        self.decode_delay_s = decode_delay_s
        self.register_delay_s = register_delay_s
        self.config = config
        self.device = device
        self.model = build_model(config, device).eval()
        self.weights = ParameterOffloader(self.model, device)
        self.kv_pool_bytes = kv_pool_mib * 1024 * 1024
        if kv_capacity_tokens is not None and kv_capacity_tokens < 0:
            raise ValueError(f"kv_capacity_tokens must be >= 0 (0: report none), got {kv_capacity_tokens}")
        # What the engine reports as its KV capacity (SGLang max_total_num_tokens, vLLM blocks x
        # block size): by default the tokens whose K and V the pool would hold for this model. The
        # engine recomputes attention and keeps no KV there, so the figure is declared, not enforced.
        self.kv_capacity_tokens: int | None = self.pool_tokens() if kv_capacity_tokens is None else (kv_capacity_tokens or None)
        self.kv_pool: torch.Tensor | None = torch.empty(self.kv_pool_bytes, dtype=torch.uint8, device=device)
        self.weight_version = "0"
        self.model_path = "<initial weights from config>"
        self.lock = threading.RLock()
        self.running: dict[str, _Running] = {}
        self.running_lock = threading.Lock()
        # Set while generation may proceed; cleared by pause_generation(mode=in_place/retract).
        self.unpaused = threading.Event()
        self.unpaused.set()

    # ----- state -----

    def resident(self) -> list[str]:
        tags = []
        if self.weights.resident:
            tags.append("weights")
        if self.kv_pool is not None:
            tags.append("kv_cache")
        return tags

    def pool_tokens(self) -> int:
        """Tokens of K and V (every layer, float parameters' element size) that fit the pool."""
        element = next(self.model.parameters()).element_size()
        return self.kv_pool_bytes // (2 * self.config.n_layers * self.config.d_model * element)

    def running_count(self) -> int:
        with self.running_lock:
            return len(self.running)

    # ----- generation -----

    def generate(self, rid: str, input_ids: list[int], max_new_tokens: int, temperature: float, stop_ids: set[int], on_token=None) -> GenerationResult:
        """Samples up to max_new_tokens after input_ids. An abort (abort_request, pause in abort
        mode) ends it with finish type 'abort' and the tokens generated so far."""
        self.validate(input_ids, max_new_tokens, temperature)
        # As in SGLang, a request is abortable only once registered: an abort that comes first is ignored.
        if self.register_delay_s > 0:
            time.sleep(self.register_delay_s)
        entry = _Running()
        with self.running_lock:
            if rid in self.running:
                raise EngineError(400, f"request id {rid!r} is already running")
            self.running[rid] = entry
        try:
            return self._sample(entry, input_ids, max_new_tokens, temperature, stop_ids, on_token)
        finally:
            with self.running_lock:
                self.running.pop(rid, None)

    def _sample(self, entry: _Running, input_ids, max_new_tokens, temperature, stop_ids, on_token) -> GenerationResult:
        ids = list(input_ids)
        out: list[int] = []
        logprobs: list[float] = []
        version = self.weight_version
        finish: dict = {"type": "length", "length": max_new_tokens}
        while len(out) < max_new_tokens:
            while not self.unpaused.wait(timeout=0.05):
                if entry.abort.is_set():
                    break
            if entry.abort.is_set():
                finish = {"type": "abort", "message": "Abort request"}
                break
            with self.lock:
                if not self.weights.resident:
                    finish = {"type": "abort", "message": "weights released during generation"}
                    break
                version = self.weight_version
                with torch.no_grad():
                    logits = self.model(torch.tensor([ids], device=self.device))[0, -1].float()
                    log_probs = torch.log_softmax(logits, dim=-1)
                    if temperature == 0:
                        token = int(torch.argmax(logits))
                    else:
                        token = int(torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1))
                    # The logprob of the sampling distribution at temperature 1 (what the trainer's ratio uses).
                    lp = float(log_probs[token])
            if self.decode_delay_s > 0:
                time.sleep(self.decode_delay_s)
            ids.append(token)
            out.append(token)
            logprobs.append(lp)
            if on_token is not None:
                on_token(token, lp)
            if token in stop_ids:
                finish = {"type": "stop", "matched": token}
                break
        return GenerationResult(out, logprobs, finish, len(input_ids), version)

    def validate(self, input_ids: list[int], max_new_tokens: int, temperature: float) -> None:
        """Raises EngineError (with the HTTP status) for a request this engine cannot serve now."""
        vocab = self.config.vocab_size
        if not input_ids:
            raise EngineError(400, "input_ids must not be empty")
        bad = [i for i in input_ids if not (isinstance(i, int) and 0 <= i < vocab)]
        if bad:
            raise EngineError(400, f"input_ids contains ids outside the vocabulary [0, {vocab}): {bad[:5]}")
        if max_new_tokens < 0:
            raise EngineError(400, f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if len(input_ids) + max_new_tokens > self.config.max_seq_len:
            raise EngineError(400, f"{len(input_ids)} input tokens + max_new_tokens {max_new_tokens} exceed the context length {self.config.max_seq_len}")
        if temperature < 0:
            raise EngineError(400, f"temperature must be >= 0, got {temperature}")
        missing = [t for t in TAGS if t not in self.resident()]
        if missing:
            raise EngineError(503, f"cannot generate: memory released for {', '.join(missing)} (resume_memory_occupation first)")

    def abort(self, rid: str | None) -> int:
        """Aborts one request (rid) or all (rid None); returns how many were running."""
        with self.running_lock:
            targets = list(self.running.values()) if rid is None else [self.running[rid]] if rid in self.running else []
        for entry in targets:
            entry.abort.set()
        return len(targets)

    # ----- pause / memory / weights -----

    def pause(self, mode: str) -> None:
        if mode not in ("abort", "retract", "in_place"):
            raise EngineError(400, f"mode must be abort, retract or in_place, got {mode!r}")
        self.unpaused.clear()
        if mode == "abort":
            self.abort(None)

    def resume_generation(self) -> None:
        self.unpaused.set()

    def release(self, tags: list[str]) -> None:
        self._check_tags(tags)
        with self.lock:
            if "weights" in tags:
                self.weights.offload()
            if "kv_cache" in tags and self.kv_pool is not None:
                self.kv_pool = None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def resume(self, tags: list[str]) -> None:
        self._check_tags(tags)
        with self.lock:
            if "weights" in tags:
                self.weights.onload()
            if "kv_cache" in tags and self.kv_pool is None:
                self.kv_pool = torch.empty(self.kv_pool_bytes, dtype=torch.uint8, device=self.device)

    def update_weights(self, model_path: str, weight_version: str | None) -> None:
        """Loads model.safetensors from the directory model_path; needs resident weights."""
        file = Path(model_path) / "model.safetensors"
        if not file.is_file():
            raise EngineError(400, f"no weights at {file}")
        with self.lock:
            if not self.weights.resident:
                raise EngineError(400, "cannot update weights while they are released (resume_memory_occupation with tag 'weights' first)")
            state = load_file(str(file), device=str(self.device))
            expected = set(self.model.state_dict().keys())
            if set(state.keys()) != expected:
                raise EngineError(400, f"{file} does not match the model: missing {sorted(expected - state.keys())[:3]}, unexpected {sorted(state.keys() - expected)[:3]}")
            self.swap_weights(state, weight_version, model_path)

    def parameter_specs(self) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
        """Name -> (dtype, shape) of every tensor of the model's state (what a full update covers)."""
        with self.lock:
            if self.weights.resident:
                return {k: (v.dtype, tuple(v.shape)) for k, v in self.model.state_dict().items()}
            return {k: (v.dtype, tuple(v.shape)) for k, v in (self.weights.host or {}).items()}

    def weights_digest(self) -> tuple[str, str]:
        """(weight version, digest of the weights served), read between two tokens."""
        with self.lock:
            named = self.model.state_dict().items() if self.weights.resident else (self.weights.host or {}).items()
            return self.weight_version, weights_digest(named)

    def swap_weights(self, state: dict[str, torch.Tensor], weight_version: str | None, source: str) -> None:
        """Replaces every weight at once, between two tokens (the lock): requests see the old
        version or the new one, never a mix. Needs resident weights."""
        with self.lock:
            if not self.weights.resident:
                raise EngineError(400, "cannot update weights while they are released (resume_memory_occupation with tag 'weights' first)")
            self.model.load_state_dict(state)
            self.model_path = source
            if weight_version is not None:
                self.weight_version = weight_version

    @staticmethod
    def _check_tags(tags: list[str]) -> None:
        unknown = [t for t in tags if t not in TAGS]
        if unknown:
            raise EngineError(400, f"unknown memory tags {unknown}; expected a subset of {list(TAGS)}")
