"""The SGLang-native subset: generation, abort with the partial output, resume from the prefix,
memory release/resume, weight loading, pause/continue."""
from __future__ import annotations

import math
import threading
import time

import pytest
import torch

from conftest import CONFIG
from timeshare_ref.model import ModelConfig
from timeshare_ref.rollout import RolloutEngine

EOS = 11


def generate(client, ids, n, temperature=0.0, rid=None, stop=None, ignore_eos=False):
    body = {"input_ids": ids, "sampling_params": {"max_new_tokens": n, "temperature": temperature, "ignore_eos": ignore_eos}, "return_logprob": True}
    if rid is not None:
        body["rid"] = rid
    if stop is not None:
        body["sampling_params"]["stop_token_ids"] = stop
    return client.post("/generate", body)


def ignore_eos_greedy(client, ids, n):
    """Greedy tokens, continuing through EOS by resubmitting (EOS always stops a request)."""
    out = []
    while len(out) < n:
        status, body = generate(client, ids + out, n - len(out))
        assert status == 200, body
        out += body["output_ids"]
    return out


def test_generate_returns_ids_and_logprobs_in_sglang_shape(client):
    status, body = generate(client, [1, 2, 10], 8, temperature=1.0, rid="r1")
    assert status == 200, body
    meta = body["meta_info"]
    ids = body["output_ids"]
    assert meta["id"] == "r1" and meta["prompt_tokens"] == 3 and meta["completion_tokens"] == len(ids)
    assert 1 <= len(ids) <= 8
    assert meta["finish_reason"]["type"] in ("stop", "length")
    if meta["finish_reason"]["type"] == "stop":
        assert ids[-1] == EOS and meta["finish_reason"]["matched"] == EOS
    assert [t for _, t, _ in meta["output_token_logprobs"]] == ids
    assert all(lp <= 0 and math.isfinite(lp) for lp, _, _ in meta["output_token_logprobs"])
    assert meta["weight_version"] == "0"


def test_bad_requests_are_refused_with_a_reason(client):
    status, body = client.post("/generate", {"input_ids": [99]})
    assert status == 400 and "vocabulary" in body["error"]["message"]
    status, body = client.post("/generate", {"text": "hi"})
    assert status == 400
    status, body = client.post("/release_memory_occupation", {"tags": ["gpu"]})
    assert status == 400 and "unknown memory tags" in body["error"]["message"]


def test_abort_returns_the_partial_output_and_resume_from_prefix_continues_it(client):
    prompt = [3, 10]
    full = ignore_eos_greedy(client, prompt, 40)
    # Hold generation at a token boundary, then abort: the request answers with what it has.
    client.post("/pause_generation", {"mode": "in_place"})
    result = {}
    thread = threading.Thread(target=lambda: result.update(zip(("status", "body"), generate(client, prompt, 40, rid="long"))))
    thread.start()
    deadline = time.time() + 10
    while client.app.engine.running_count() == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert client.app.engine.running_count() == 1
    status, _ = client.post("/abort_request", {"rid": "long"})
    assert status == 200
    thread.join(10)
    client.post("/continue_generation")
    assert result["status"] == 200
    meta = result["body"]["meta_info"]
    assert meta["finish_reason"]["type"] == "abort"
    partial = result["body"]["output_ids"]
    assert len(partial) < 40

    # Resume: the prefix goes back as input; greedy decoding continues exactly where it stopped.
    k = 5
    status, first = generate(client, prompt, k)
    prefix = first["output_ids"]
    assert prefix == full[: len(prefix)]
    if prefix[-1] != EOS:
        rest = ignore_eos_greedy(client, prompt + prefix, 40 - len(prefix))
        assert prefix + rest == full


def test_abort_mid_generation_keeps_tokens_generated_so_far(client):
    engine = client.app.engine
    seen = threading.Event()
    original = engine._sample

    def slow_sample(entry, input_ids, n, temperature, stop_ids, on_token):
        def hook(token, lp):
            seen.set()
            time.sleep(0.02)
        return original(entry, input_ids, n, temperature, stop_ids, hook)

    engine._sample = slow_sample
    result = {}
    thread = threading.Thread(target=lambda: result.update(zip(("status", "body"), generate(client, [1], 200, temperature=1.0, rid="x", ignore_eos=True))))
    thread.start()
    assert seen.wait(10)
    time.sleep(0.1)
    client.post("/abort_request", {"rid": "x"})
    thread.join(10)
    body = result["body"]
    assert body["meta_info"]["finish_reason"]["type"] == "abort"
    n = len(body["output_ids"])
    assert 1 <= n < 200 and len(body["meta_info"]["output_token_logprobs"]) == n


def test_release_and_resume_memory_by_tag(client):
    before = ignore_eos_greedy(client, [4, 10], 10)
    assert client.post("/release_memory_occupation", {"tags": ["kv_cache"]})[0] == 200
    assert client.get("/model_info")[1]["resident_memory_tags"] == ["weights"]
    status, body = generate(client, [4, 10], 3)
    assert status == 503 and "kv_cache" in body["error"]["message"]
    assert client.post("/release_memory_occupation", {"tags": ["weights"]})[0] == 200
    assert client.get("/model_info")[1]["resident_memory_tags"] == []
    params = list(client.app.engine.model.parameters())
    assert all(p.numel() == 0 for p in params), "released weights must free their storage"
    # Releasing what is released is a no-op; resume restores the same weights.
    assert client.post("/release_memory_occupation", {"tags": ["weights", "kv_cache"]})[0] == 200
    assert client.post("/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
    assert client.post("/resume_memory_occupation", {"tags": ["kv_cache"]})[0] == 200
    assert client.get("/model_info")[1]["resident_memory_tags"] == ["weights", "kv_cache"]
    assert ignore_eos_greedy(client, [4, 10], 10) == before


def test_update_weights_from_disk_loads_the_trainers_export(client, tmp_path):
    client.post("/trainer/onload")
    trajectories = [
        {"sample_id": i, "reward": float(i % 2), "input_ids": [1, 10, 2 + i % 2], "loss_mask": [0, 0, 1], "logprobs": [0, 0, -2.4]} for i in range(4)
    ]
    status, step = client.post("/trainer/train_step", {"iteration": 0, "from_version": 0, "trajectories": trajectories})
    assert status == 200 and step["new_version"] == 1
    status, exported = client.post("/trainer/export_weights", {"version": 1, "dir": str(tmp_path)})
    assert status == 200 and exported["path"] == str(tmp_path / "v1")
    status, body = client.post("/update_weights_from_disk", {"model_path": exported["path"], "weight_version": "1"})
    assert status == 200 and body["success"] is True
    assert client.get("/model_info")[1]["weight_version"] == "1"
    assert generate(client, [1, 10], 2)[1]["meta_info"]["weight_version"] == "1"
    engine_state = client.app.engine.model.state_dict()
    for name, value in client.app.trainer.model.state_dict().items():
        assert (engine_state[name] == value).all(), name
    status, body = client.post("/update_weights_from_disk", {"model_path": str(tmp_path / "missing")})
    assert status == 400 and body["success"] is False


def test_pause_in_abort_mode_aborts_running_requests(client):
    client.post("/pause_generation", {"mode": "in_place"})
    result = {}
    thread = threading.Thread(target=lambda: result.update(zip(("status", "body"), generate(client, [1], 50, rid="p", ignore_eos=True))))
    thread.start()
    deadline = time.time() + 10
    while client.app.engine.running_count() == 0 and time.time() < deadline:
        time.sleep(0.01)
    client.post("/pause_generation", {"mode": "abort"})
    thread.join(10)
    assert result["body"]["meta_info"]["finish_reason"]["type"] == "abort"
    assert client.get("/model_info")[1]["paused"] is True
    client.post("/continue_generation")
    assert generate(client, [1], 2)[0] == 200


def test_server_info_reports_the_kv_pool_in_tokens(client):
    # tiny.json: 2 layers, d_model 64, float32: K and V take 2 * 2 * 64 * 4 = 1024 bytes per token.
    status, body = client.get("/server_info")
    assert status == 200, body
    assert body["max_total_num_tokens"] == 8 * 1024 * 1024 // 1024
    assert client.get("/get_server_info") == (200, body)


def test_kv_capacity_can_be_set_or_not_reported():
    config = ModelConfig.load(CONFIG)
    device = torch.device("cpu")
    assert RolloutEngine(config, device, kv_capacity_tokens=4096).kv_capacity_tokens == 4096
    assert RolloutEngine(config, device, kv_capacity_tokens=0).kv_capacity_tokens is None
    with pytest.raises(ValueError, match="kv_capacity_tokens"):
        RolloutEngine(config, device, kv_capacity_tokens=-1)
