"""The vLLM subset: completions with token ids and logprobs, streaming abort, sleep/wake_up."""
from __future__ import annotations

import http.client
import json


def test_completions_return_token_ids_and_logprobs(client):
    status, body = client.post("/v1/completions", {"model": "ref", "prompt": [1, 10], "max_tokens": 5, "temperature": 0, "logprobs": 0, "return_tokens_as_token_ids": True, "request_id": "abc"})
    assert status == 200, body
    assert body["id"] == "cmpl-abc"
    choice = body["choices"][0]
    ids = [int(t.split(":")[1]) for t in choice["logprobs"]["tokens"]]
    assert len(ids) == len(choice["logprobs"]["token_logprobs"]) >= 1
    assert choice["finish_reason"] in ("stop", "length")


def test_stream_disconnect_aborts_the_request(client):
    host, port = client.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/v1/completions", json.dumps({"prompt": [1], "max_tokens": 200, "logprobs": 0, "return_tokens_as_token_ids": True, "stream": True, "stop_token_ids": [], "ignore_eos": True, "request_id": "s"}))
    response = conn.getresponse()
    first = response.fp.readline()
    assert first.startswith(b"data: ")
    assert json.loads(first[6:])["choices"][0]["logprobs"]["tokens"][0].startswith("token_id:")
    conn.close()
    # The server notices the closed connection at its next write and aborts the request.
    import time
    deadline = time.time() + 10
    while client.app.engine.running_count() > 0 and time.time() < deadline:
        time.sleep(0.02)
    assert client.app.engine.running_count() == 0


def test_sleep_and_wake_up_with_tags(client):
    assert client.post("/sleep?level=1")[0] == 200
    assert client.get("/is_sleeping")[1] == {"is_sleeping": True}
    assert client.post("/wake_up?tags=weights")[0] == 200
    assert client.get("/model_info")[1]["resident_memory_tags"] == ["weights"]
    assert client.post("/wake_up?tags=kv_cache")[0] == 200
    assert client.get("/is_sleeping")[1] == {"is_sleeping": False}


def test_api_key_is_enforced(client):
    client.app.api_key = "k1"
    assert client.get("/health")[0] == 401
    assert client.get("/health", headers={"Authorization": "Bearer k1"})[0] == 200


def test_metrics_carry_the_cache_config_as_an_info_gauge(client):
    status, text = client.get("/metrics")
    assert status == 200
    line = next(line for line in text.splitlines() if line.startswith("vllm:cache_config_info{"))
    assert 'num_gpu_blocks="512"' in line and 'block_size="16"' in line and line.endswith(" 1.0")
    client.app.engine.kv_capacity_tokens = None
    status, text = client.get("/metrics")
    assert 'num_gpu_blocks="None"' in text
