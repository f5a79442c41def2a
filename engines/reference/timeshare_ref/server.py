"""HTTP server: the SGLang-native subset, the vLLM subset and the trainer protocol.

Request and response shapes follow SGLang 0.5.x (python/sglang/srt/entrypoints/http_server.py,
managers/io_struct.py) and vLLM's OpenAI completions plus its RL dev endpoints; see README.md for
the exact list. Standard library server: one thread per request.
"""
from __future__ import annotations

import hmac
import json
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from .model import ModelConfig
from .rollout import TAGS, EngineError, RolloutEngine
from .trainer import Trainer, parse_trajectory
from .weight_sync import WeightReceiver, WeightSender, parse_bucket

# vLLM has one weight-transfer engine per server: its group has this name here.
VLLM_GROUP = "vllm-weight-transfer"
# vLLM's default KV block size (tokens per block), for the cache config this engine reports.
VLLM_BLOCK_SIZE = 16


class App:
    def __init__(
        self,
        config: ModelConfig,
        engine: RolloutEngine,
        trainer: Trainer,
        model_name: str,
        api_key: str | None,
        weight_sync_timeout_s: float = 60.0,
        broadcast_delay_s: float = 0.0,
    ):
        self.config = config
        self.engine = engine
        self.trainer = trainer
        self.model_name = model_name
        self.api_key = api_key
        self.started = time.time()
        self.weight_sync_timeout_s = weight_sync_timeout_s
        self.receiver = WeightReceiver(engine.device, engine.parameter_specs())
        self.sender = WeightSender(trainer.device, delay_per_bucket_s=broadcast_delay_s)
        # The backend the engine uses when vLLM's init does not name one (vLLM sets it at start).
        self.default_backend = "nccl" if engine.device.type == "cuda" else "gloo"
        # SGLang (0.5.23 on): bucket updates only inside a weight update session (begin … end).
        self.update_session_open = False
        self.update_session_lock = threading.Lock()
        self.prefix_cache_resets = 0

    def check_backend(self, backend: str) -> None:
        if backend == "nccl" and self.engine.device.type != "cuda":
            raise EngineError(400, "backend nccl needs CUDA; this engine runs on CPU (use gloo)")


def _field(body: dict, name: str, kind, default=None, required=False):
    if name not in body or body[name] is None:
        if required:
            raise EngineError(400, f"missing field {name!r}")
        return default
    value = body[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EngineError(400, f"field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _int_list(body: dict, name: str, required: bool) -> list[int] | None:
    value = _field(body, name, list, required=required)
    if value is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise EngineError(400, f"field {name!r} must be a list of integers")
    return value


def _tags(body: dict) -> list[str]:
    tags = body.get("tags")
    if tags is None:
        return list(TAGS)
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise EngineError(400, "field 'tags' must be a list of strings")
    return tags


class Handler(BaseHTTPRequestHandler):
    server_version = "timeshare-reference/1"
    protocol_version = "HTTP/1.1"
    app: App

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests start many servers
        pass

    # ----- plumbing -----

    def _send(self, status: int, payload) -> None:
        body = json.dumps(payload).encode() if not isinstance(payload, str) else payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as error:
            raise EngineError(400, f"invalid Content-Length: {error}") from error
        if length < 0:
            raise EngineError(400, f"invalid Content-Length: {length}")
        if length == 0:
            return {}
        try:
            body = json.loads(self.rfile.read(length))
        except json.JSONDecodeError as error:
            raise EngineError(400, f"invalid JSON body: {error}") from error
        if not isinstance(body, dict):
            raise EngineError(400, "the JSON body must be an object")
        return body

    def _authorized(self) -> bool:
        key = self.app.api_key
        # Constant-time comparison: the answer time must not tell how much of a guess is right.
        return key is None or hmac.compare_digest(self.headers.get("Authorization", "").encode(), f"Bearer {key}".encode())

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        route = ROUTES.get((method, url.path))
        try:
            if route is None:
                # Drain the body so the connection stays usable.
                self._body()
                raise EngineError(404, f"no route {method} {url.path}")
            if not self._authorized():
                raise EngineError(401, "missing or wrong Authorization: Bearer <api key>")
            body = self._body() if method == "POST" else {}
            result = route(self, body, parse_qs(url.query))
            if result is not None:
                status, payload = result
                self._send(status, payload)
        except EngineError as error:
            self._send(error.status, {"error": {"message": str(error), "code": error.status}})
        except Exception as error:  # an engine bug: answer 500 with the cause, keep serving
            self._send(500, {"error": {"message": f"{type(error).__name__}: {error}", "code": 500}})

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    # ----- tokenizer (vLLM and SGLang share the paths) -----

    def tokenize(self, body, _query):
        """vLLM `/tokenize` ({prompt} → {count, max_model_len, tokens}) and SGLang's (same shape).

        The vocabulary is characters: a character outside it is an error, never dropped."""
        if "messages" in body:
            raise EngineError(400, "the reference engine tokenizes a rendered prompt, not messages")
        prompt = _field(body, "prompt", str, required=True)
        try:
            tokens = self.app.config.encode(prompt)
        except ValueError as error:
            raise EngineError(400, str(error)) from error
        return 200, {"count": len(tokens), "max_model_len": self.app.config.max_seq_len, "tokens": tokens}

    def detokenize(self, body, _query):
        """vLLM `/detokenize` answers {prompt}, SGLang's {text}: both are given. EOS decodes to ''."""
        tokens = _int_list(body, "tokens", required=True)
        vocab = self.app.config.vocab_size
        bad = [t for t in tokens if not 0 <= t < vocab]
        if bad:
            raise EngineError(400, f"token ids out of the vocabulary (size {vocab}): {bad[:5]}")
        text = self.app.config.decode(tokens)
        return 200, {"prompt": text, "text": text}

    # ----- SGLang native -----

    def sgl_generate(self, body, _query):
        if "text" in body and body["text"] is not None:
            raise EngineError(400, "the reference engine takes input_ids, not text")
        input_ids = _int_list(body, "input_ids", required=True)
        params = _field(body, "sampling_params", dict, default={})
        rid = _field(body, "rid", str) or uuid.uuid4().hex
        result = self.app.engine.generate(
            rid,
            input_ids,
            max_new_tokens=_field(params, "max_new_tokens", int, default=128),
            temperature=_field(params, "temperature", float, default=1.0),
            stop_ids=set(_int_list(params, "stop_token_ids", required=False) or [])
            | (set() if _field(params, "ignore_eos", bool, default=False) else {self.app.config.eos_id}),
        )
        meta = {
            "id": rid,
            "finish_reason": result.finish,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": len(result.output_ids),
            "cached_tokens": 0,
            "weight_version": result.weight_version,
        }
        if _field(body, "return_logprob", bool, default=False):
            meta["output_token_logprobs"] = [[lp, tok, None] for tok, lp in zip(result.output_ids, result.logprobs)]
        return 200, {"text": self.app.config.decode(result.output_ids), "output_ids": result.output_ids, "meta_info": meta}

    def sgl_abort(self, body, _query):
        if _field(body, "abort_all", bool, default=False):
            self.app.engine.abort(None)
        else:
            self.app.engine.abort(_field(body, "rid", str, required=True))
        return 200, ""

    def sgl_release(self, body, _query):
        self.app.engine.release(_tags(body))
        return 200, {"success": True, "message": "released"}

    def sgl_resume(self, body, _query):
        self.app.engine.resume(_tags(body))
        return 200, {"success": True, "message": "resumed"}

    def sgl_update_weights(self, body, _query):
        if _field(body, "abort_all_requests", bool, default=False):
            self.app.engine.abort(None)
        version = body.get("weight_version")
        try:
            self.app.engine.update_weights(_field(body, "model_path", str, required=True), None if version is None else str(version))
        except EngineError as error:
            return 400, {"success": False, "message": str(error), "num_paused_requests": 0}
        return 200, {"success": True, "message": "Succeeded to update model weights.", "num_paused_requests": 0}

    def sgl_pause(self, body, _query):
        self.app.engine.pause(_field(body, "mode", str, default="abort"))
        return 200, ""

    def sgl_continue(self, _body, _query):
        self.app.engine.resume_generation()
        return 200, ""

    def sgl_flush_cache(self, _body, _query):
        return 200, "Cache flushed.\n"

    def health(self, _body, _query):
        return 200, ""

    def model_info(self, _body, _query):
        engine = self.app.engine
        return 200, {
            "model_path": engine.model_path,
            "tokenizer_path": None,
            "is_generation": True,
            "weight_version": engine.weight_version,
            # Reference-engine extras: what the control plane checks after release/resume.
            "resident_memory_tags": engine.resident(),
            "running_requests": engine.running_count(),
            "paused": not engine.unpaused.is_set(),
            "weight_update": self.app.receiver.describe(),
        }

    def sgl_server_info(self, _body, _query):
        # SGLang merges its server arguments and the scheduler's info; the token pool is what the
        # control plane reads (null: none reported).
        engine = self.app.engine
        return 200, {"max_total_num_tokens": engine.kv_capacity_tokens, "weight_version": engine.weight_version, "version": "timeshare-reference"}

    def vllm_metrics(self, _body, _query):
        # vLLM's cache config as a Prometheus info gauge (its labels are the config's fields).
        tokens = self.app.engine.kv_capacity_tokens
        blocks = "None" if tokens is None else str(tokens // VLLM_BLOCK_SIZE)
        labels = f'block_size="{VLLM_BLOCK_SIZE}",cache_dtype="auto",engine="0",num_gpu_blocks="{blocks}"'
        return 200, (
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            "# TYPE vllm:cache_config_info gauge\n"
            f"vllm:cache_config_info{{{labels}}} 1.0\n"
        )

    # ----- weight sync by broadcast (SGLang shapes) -----

    def sgl_init_weights_update_group(self, body, _query):
        backend = _field(body, "backend", str, default="nccl")
        self.app.check_backend(backend)
        name = _field(body, "group_name", str, default="weight_update_group")
        try:
            self.app.receiver.join(
                name,
                _field(body, "master_address", str, required=True),
                _field(body, "master_port", int, required=True),
                _field(body, "rank_offset", int, required=True),
                _field(body, "world_size", int, required=True),
                backend,
                self.app.weight_sync_timeout_s,
            )
        except EngineError as error:
            return error.status, {"success": False, "message": str(error)}
        return 200, {"success": True, "message": f"joined weight-update group {name}"}

    def sgl_begin_weight_update(self, _body, _query):
        with self.app.update_session_lock:
            if self.app.update_session_open:
                # As SGLang 0.5.23: HTTP 400.
                return 400, {"success": False, "message": "a weight update session is already open (end_weight_update first)"}
            self.app.update_session_open = True
        return 200, {"success": True, "message": "weight update session open"}

    def sgl_end_weight_update(self, _body, _query):
        with self.app.update_session_lock:
            was_open = self.app.update_session_open
            self.app.update_session_open = False
        return 200, {"success": True, "message": "weight update session closed" if was_open else "no weight update session was open"}

    def sgl_update_weights_from_distributed(self, body, _query):
        with self.app.update_session_lock:
            if not self.app.update_session_open:
                return 400, {"success": False, "message": "no weight update session is open (begin_weight_update first)"}
        names, dtypes, shapes = parse_bucket(body)
        name = _field(body, "group_name", str, default="weight_update_group")
        version = body.get("weight_version")
        version = None if version is None else str(version)
        load_format = _field(body, "load_format", str)
        if load_format not in (None, "flattened_bucket"):
            return 400, {"success": False, "message": f"load_format {load_format!r} is not supported (None or flattened_bucket)"}
        if _field(body, "abort_all_requests", bool, default=False):
            self.app.engine.abort(None)
        try:
            self.app.receiver.receive(name, names, dtypes, shapes, load_format == "flattened_bucket", version)
            staged = self.app.receiver.take_complete(name)
            if staged is None:
                return 200, {"success": True, "message": f"staged {len(names)} tensors; the model changes once every tensor arrived"}
            self.app.engine.swap_weights(staged.tensors, staged.version, f"<broadcast in group {name}>")
        except EngineError as error:
            return error.status, {"success": False, "message": str(error)}
        return 200, {"success": True, "message": f"Succeeded to update parameter online (version {self.app.engine.weight_version})."}

    def sgl_destroy_weights_update_group(self, body, _query):
        name = _field(body, "group_name", str, default="weight_update_group")
        if not self.app.receiver.destroy(name):
            # As SGLang answers it.
            return 400, {"success": False, "message": "The group to be destroyed does not exist."}
        return 200, {"success": True, "message": f"destroyed {name}"}

    # ----- weight sync by broadcast (vLLM shapes) -----

    def vllm_init_weight_transfer_engine(self, body, _query):
        info = _field(body, "init_info", dict, required=True)
        if _field(info, "packed", bool, default=False):
            raise EngineError(400, "packed transfers are not supported by the reference engine (init_info.packed: false)")
        # One transfer engine per server: a new init replaces the old group (vLLM re-initialises).
        self.app.receiver.destroy(VLLM_GROUP)
        self.app.receiver.join(
            VLLM_GROUP,
            _field(info, "master_address", str, required=True),
            _field(info, "master_port", int, required=True),
            _field(info, "rank_offset", int, required=True),
            _field(info, "world_size", int, required=True),
            self.app.default_backend,
            self.app.weight_sync_timeout_s,
            named=False,
        )
        return 200, {"status": "ok"}

    def vllm_start_weight_update(self, _body, _query):
        self.app.receiver.begin(VLLM_GROUP, None)
        return 200, {"status": "ok"}

    def vllm_update_weights(self, body, _query):
        info = _field(body, "update_info", dict, required=True)
        # vLLM builds its update info from exactly these fields (0.34: `packed` is an init option now).
        unknown = sorted(set(info) - {"names", "dtype_names", "shapes", "src"})
        if unknown:
            raise EngineError(400, f"Invalid update_info: unexpected fields {unknown} (names, dtype_names, shapes, src)")
        names, dtypes, shapes = parse_bucket(info, dtypes_key="dtype_names")
        self.app.receiver.receive(VLLM_GROUP, names, dtypes, shapes, False, None)
        return 200, {"status": "ok"}

    def vllm_finish_weight_update(self, _body, _query):
        staged = self.app.receiver.take_complete(VLLM_GROUP)
        if staged is None:
            described = self.app.receiver.describe()["staging"].get(VLLM_GROUP)
            raise EngineError(409, f"finish_weight_update before every tensor arrived ({described}); the engine keeps its weights")
        self.app.engine.swap_weights(staged.tensors, None, "<weight transfer engine>")
        return 200, {"status": "ok"}

    def weight_version(self, _body, _query):
        return 200, {"weight_version": self.app.engine.weight_version}

    def weights_digest(self, _body, _query):
        version, digest = self.app.engine.weights_digest()
        return 200, {"weight_version": version, "sha256": digest}

    # ----- vLLM -----

    def vllm_completions(self, body, _query):
        prompt = body.get("prompt")
        if not (isinstance(prompt, list) and prompt and all(isinstance(i, int) and not isinstance(i, bool) for i in prompt)):
            raise EngineError(400, "prompt must be a non-empty list of token ids")
        if not _field(body, "return_tokens_as_token_ids", bool, default=False):
            raise EngineError(400, "the reference engine needs return_tokens_as_token_ids: true")
        rid = _field(body, "request_id", str) or uuid.uuid4().hex
        completion_id = f"cmpl-{rid}"
        stream = _field(body, "stream", bool, default=False)
        want_logprobs = _field(body, "logprobs", int) is not None
        stop = set(_int_list(body, "stop_token_ids", required=False) or [])
        if not _field(body, "ignore_eos", bool, default=False):
            stop.add(self.app.config.eos_id)
        args = dict(
            max_new_tokens=_field(body, "max_tokens", int, default=16),
            temperature=_field(body, "temperature", float, default=1.0),
            stop_ids=stop,
        )
        created = int(time.time())

        def choice(ids, lps, finish):
            c = {"index": 0, "text": self.app.config.decode(ids), "finish_reason": finish, "stop_reason": None}
            c["logprobs"] = {"tokens": [f"token_id:{i}" for i in ids], "token_logprobs": lps, "top_logprobs": None, "text_offset": list(range(len(ids)))} if want_logprobs else None
            return c

        finish_name = {"stop": "stop", "length": "length", "abort": "abort"}
        if not stream:
            result = self.app.engine.generate(rid, prompt, **args)
            return 200, {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": self.app.model_name,
                "choices": [choice(result.output_ids, result.logprobs, finish_name[result.finish["type"]])],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(result.output_ids), "total_tokens": len(prompt) + len(result.output_ids)},
            }
        self.app.engine.validate(prompt, args["max_new_tokens"], args["temperature"])
        # Streaming: one SSE event per token; a client that disconnects aborts the request
        # (as vLLM does), keeping what it already received.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def emit(payload) -> None:
            self.wfile.write(f"data: {json.dumps(payload) if not isinstance(payload, str) else payload}\n\n".encode())
            self.wfile.flush()

        def chunk(ids, lps, finish):
            return {"id": completion_id, "object": "text_completion", "created": created, "model": self.app.model_name, "choices": [choice(ids, lps, finish)]}

        def on_token(token, lp):
            try:
                emit(chunk([token], [lp], None))
            except OSError:
                self.app.engine.abort(rid)

        try:
            result = self.app.engine.generate(rid, prompt, on_token=on_token, **args)
            emit(chunk([], [], finish_name[result.finish["type"]]))
            emit("[DONE]")
        except EngineError as error:
            emit({"error": {"message": str(error), "code": error.status}})
        except OSError:
            pass
        return None

    def vllm_abort_requests(self, body, _query):
        ids = _field(body, "request_ids", list, default=[])
        if ids:
            aborted = sum(self.app.engine.abort(i.removeprefix("cmpl-") if isinstance(i, str) else str(i)) for i in ids)
        else:
            aborted = self.app.engine.abort(None)
        return 200, {"status": "aborted", "aborted": aborted}

    def vllm_sleep(self, _body, query):
        level = query.get("level", ["1"])[0]
        if level not in ("1", "2"):
            raise EngineError(400, f"level must be 1 or 2, got {level}")
        self.app.engine.release(list(TAGS))
        return 200, ""

    def vllm_wake_up(self, _body, query):
        tags = query.get("tags", [tag for tag in TAGS if tag not in self.app.engine.resident()])
        # As vLLM: a tag asked for that is awake already makes the call wake nothing (answered 200).
        if any(tag in self.app.engine.resident() for tag in tags):
            return 200, {"status": "sleeping"}
        self.app.engine.resume(tags)
        return 200, ""

    def vllm_is_sleeping(self, _body, _query):
        # As vLLM: sleeping while any tag is asleep.
        return 200, {"is_sleeping": any(tag not in self.app.engine.resident() for tag in TAGS)}

    def vllm_pause(self, _body, query):
        mode = query.get("mode", ["abort"])[0]
        self.app.engine.pause({"abort": "abort", "wait": "in_place", "keep": "in_place"}.get(mode, mode))
        return 200, {"status": "paused"}

    def vllm_resume(self, _body, _query):
        self.app.engine.resume_generation()
        return 200, {"status": "resumed"}

    def vllm_is_paused(self, _body, _query):
        return 200, {"is_paused": not self.app.engine.unpaused.is_set()}

    def vllm_collective_rpc(self, body, _query):
        method = _field(body, "method", str, required=True)
        if method != "reload_weights":
            raise EngineError(400, f"the reference engine's collective_rpc supports only reload_weights, got {method!r}")
        kwargs = _field(body, "kwargs", dict, default={})
        self.app.engine.update_weights(_field(kwargs, "weights_path", str, required=True), None)
        return 200, {"results": [None]}

    def vllm_update_weight_version(self, body, _query):
        version = _field(body, "new_version", str, required=True)
        self.app.engine.weight_version = version
        return 200, {"success": True, "new_version": version}

    def vllm_weight_info(self, _body, _query):
        # vLLM answers "default" until a version is set: the weights it started with (here v0).
        # `prefix_cache_resets` is the reference engine's own: how often /reset_prefix_cache came.
        version = self.app.engine.weight_version
        return 200, {"weight_version": "default" if version == "0" else version, "prefix_cache_resets": self.app.prefix_cache_resets}

    def vllm_reset_prefix_cache(self, _body, _query):
        # No KV is reused across requests here; counted, so tests see the adapter ask after new weights.
        self.app.prefix_cache_resets += 1
        return 200, {}

    def vllm_shutdown_weight_transfer_engine(self, _body, _query):
        self.app.receiver.destroy(VLLM_GROUP)
        return 200, {"status": "ok"}

    def vllm_models(self, _body, _query):
        return 200, {"object": "list", "data": [{"id": self.app.model_name, "object": "model", "max_model_len": self.app.config.max_seq_len}]}

    # ----- trainer protocol (docs/trainer-openapi.yaml) -----

    def trainer_status(self, _body, _query):
        t = self.app.trainer
        return 200, {"onloaded": t.onloaded, "weight_version": t.weight_version, "device": str(t.device), "weight_update_groups": self.app.sender.describe()}

    def trainer_weights_digest(self, _body, _query):
        version, digest = self.app.trainer.weights_digest()
        return 200, {"weight_version": version, "sha256": digest}

    def trainer_init_weights_update_group(self, body, _query):
        backend = _field(body, "backend", str, required=True)
        self.app.check_backend(backend)
        address = _field(body, "master_address", str, required=True)
        port = self.app.sender.open(
            _field(body, "group_name", str, required=True),
            address,
            _field(body, "master_port", int, default=0),
            _field(body, "world_size", int, required=True),
            backend,
            self.app.weight_sync_timeout_s,
        )
        return 200, {"success": True, "master_address": address, "master_port": port}

    def trainer_weights_manifest(self, body, _query):
        from .weight_sync import plan_buckets

        named = self.app.trainer.named_weights(self.app.trainer.weight_version)
        buckets = plan_buckets(named, _field(body, "bucket_bytes", int, required=True))
        return 200, {"buckets": [b.as_json() for b in buckets], "total_bytes": sum(b.nbytes for b in buckets)}

    def trainer_broadcast_weights(self, body, _query):
        version = _field(body, "version", int, required=True)
        layout = _field(body, "format", str, default="flattened_bucket")
        if layout not in ("flattened_bucket", "per_tensor"):
            raise EngineError(400, f"format must be flattened_bucket or per_tensor, got {layout!r}")
        named = self.app.trainer.named_weights(version)
        result = self.app.sender.broadcast(_field(body, "group_name", str, required=True), named, _field(body, "bucket_bytes", int, required=True), layout == "flattened_bucket")
        if self.app.trainer.weight_version != version:
            raise EngineError(409, f"the trainer moved from version {version} to {self.app.trainer.weight_version} during the broadcast")
        return 200, {"version": version, **result}

    def trainer_destroy_weights_update_group(self, body, _query):
        name = _field(body, "group_name", str, required=True)
        return 200, {"success": True, "destroyed": self.app.sender.destroy(name)}

    def trainer_onload(self, _body, _query):
        self.app.trainer.onload()
        return self.trainer_status(None, None)

    def trainer_offload(self, _body, _query):
        self.app.trainer.offload()
        return self.trainer_status(None, None)

    def trainer_train_step(self, body, _query):
        raw = _field(body, "trajectories", list, required=True)
        vocab = self.app.config.vocab_size
        trajectories = [parse_trajectory(t if isinstance(t, dict) else {}, vocab, i) for i, t in enumerate(raw)]
        result = self.app.trainer.train_step(_field(body, "from_version", int, required=True), trajectories)
        return 200, result

    def trainer_export(self, body, _query):
        path = self.app.trainer.export_weights(_field(body, "version", int, required=True), _field(body, "dir", str, required=True))
        return 200, {"path": path}


ROUTES = {
    ("POST", "/generate"): Handler.sgl_generate,
    ("POST", "/abort_request"): Handler.sgl_abort,
    ("POST", "/release_memory_occupation"): Handler.sgl_release,
    ("POST", "/resume_memory_occupation"): Handler.sgl_resume,
    ("POST", "/update_weights_from_disk"): Handler.sgl_update_weights,
    ("POST", "/pause_generation"): Handler.sgl_pause,
    ("POST", "/continue_generation"): Handler.sgl_continue,
    ("POST", "/flush_cache"): Handler.sgl_flush_cache,
    ("GET", "/flush_cache"): Handler.sgl_flush_cache,
    ("GET", "/health"): Handler.health,
    ("POST", "/tokenize"): Handler.tokenize,
    ("POST", "/detokenize"): Handler.detokenize,
    ("GET", "/model_info"): Handler.model_info,
    ("GET", "/get_model_info"): Handler.model_info,
    ("GET", "/weight_version"): Handler.weight_version,
    ("GET", "/weights_digest"): Handler.weights_digest,
    ("GET", "/server_info"): Handler.sgl_server_info,
    ("GET", "/get_server_info"): Handler.sgl_server_info,
    ("GET", "/metrics"): Handler.vllm_metrics,
    ("POST", "/v1/completions"): Handler.vllm_completions,
    ("GET", "/v1/models"): Handler.vllm_models,
    ("POST", "/abort_requests"): Handler.vllm_abort_requests,
    ("POST", "/sleep"): Handler.vllm_sleep,
    ("POST", "/wake_up"): Handler.vllm_wake_up,
    ("GET", "/is_sleeping"): Handler.vllm_is_sleeping,
    ("POST", "/pause"): Handler.vllm_pause,
    ("POST", "/resume"): Handler.vllm_resume,
    ("GET", "/is_paused"): Handler.vllm_is_paused,
    ("POST", "/collective_rpc"): Handler.vllm_collective_rpc,
    ("POST", "/update_weight_version"): Handler.vllm_update_weight_version,
    ("GET", "/weight_info"): Handler.vllm_weight_info,
    ("POST", "/reset_prefix_cache"): Handler.vllm_reset_prefix_cache,
    ("POST", "/shutdown_weight_transfer_engine"): Handler.vllm_shutdown_weight_transfer_engine,
    ("POST", "/init_weights_update_group"): Handler.sgl_init_weights_update_group,
    ("POST", "/begin_weight_update"): Handler.sgl_begin_weight_update,
    ("POST", "/end_weight_update"): Handler.sgl_end_weight_update,
    ("POST", "/update_weights_from_distributed"): Handler.sgl_update_weights_from_distributed,
    ("POST", "/destroy_weights_update_group"): Handler.sgl_destroy_weights_update_group,
    ("POST", "/init_weight_transfer_engine"): Handler.vllm_init_weight_transfer_engine,
    ("POST", "/start_weight_update"): Handler.vllm_start_weight_update,
    ("POST", "/update_weights"): Handler.vllm_update_weights,
    ("POST", "/finish_weight_update"): Handler.vllm_finish_weight_update,
    ("GET", "/trainer/status"): Handler.trainer_status,
    ("GET", "/trainer/weights_digest"): Handler.trainer_weights_digest,
    ("POST", "/trainer/init_weights_update_group"): Handler.trainer_init_weights_update_group,
    ("POST", "/trainer/weights_manifest"): Handler.trainer_weights_manifest,
    ("POST", "/trainer/broadcast_weights"): Handler.trainer_broadcast_weights,
    ("POST", "/trainer/destroy_weights_update_group"): Handler.trainer_destroy_weights_update_group,
    ("POST", "/trainer/onload"): Handler.trainer_onload,
    ("POST", "/trainer/offload"): Handler.trainer_offload,
    ("POST", "/trainer/train_step"): Handler.trainer_train_step,
    ("POST", "/trainer/export_weights"): Handler.trainer_export,
}


def make_server(app: App, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
