"""Weight sync by broadcast: a real gloo group between a trainer and two engines, each its own
process (`python -m timeshare_ref`, as deployed: one process is one member, see
timeshare_ref/weight_sync.py), bucketed send, staged receive and one swap per version. What each
member holds is compared by its weights' digest (`GET /weights_digest`, `/trainer/weights_digest`)."""
from __future__ import annotations

import threading

import pytest

from conftest import Client


@pytest.fixture()
def members(processes):
    """A trainer and two engines, each its own process."""
    return processes(3, ["--lr", "0.01", "--weight-sync-timeout-s", "10"])


def digest(member: Client, path: str = "/weights_digest") -> str:
    status, body = member.get(path)
    assert status == 200, body
    return body["sha256"]


def served_version(engine: Client) -> str:
    status, body = engine.get("/weight_version")
    assert status == 200, body
    return body["weight_version"]


def train_once(trainer: Client) -> int:
    trainer.post("/trainer/onload")
    t = [{"sample_id": i, "reward": float(i % 2), "input_ids": [3, 4, i % 10], "loss_mask": [0, 0, 1], "logprobs": [0, 0, -2.0]} for i in range(4)]
    status, current = trainer.get("/trainer/status")
    assert status == 200, current
    status, step = trainer.post("/trainer/train_step", {"from_version": current["weight_version"], "trajectories": t})
    assert status == 200, step
    return step["new_version"]


def in_parallel(*calls):
    results = [None] * len(calls)

    def run(i, call):
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def open_group(trainer: Client, engines: list[Client], name: str) -> None:
    status, opened = trainer.post("/trainer/init_weights_update_group", {"group_name": name, "master_address": "127.0.0.1", "master_port": 0, "world_size": 1 + len(engines), "backend": "gloo"})
    assert status == 200, opened
    joins = in_parallel(*[
        (lambda e=e, r=r: e.post("/init_weights_update_group", {"master_address": "127.0.0.1", "master_port": opened["master_port"], "rank_offset": r, "world_size": 1 + len(engines), "group_name": name, "backend": "gloo"}))
        for r, e in enumerate(engines, start=1)
    ])
    assert all(s == 200 and b["success"] for s, b in joins), joins


def test_broadcast_moves_the_trained_weights_to_every_engine_in_one_swap(members):
    trainer, *engines = members
    version = train_once(trainer)
    trained = digest(trainer, "/trainer/weights_digest")
    assert all(digest(e) != trained for e in engines), "the engines hold the trained weights before any sync"
    open_group(trainer, engines, "g1")
    status, manifest = trainer.post("/trainer/weights_manifest", {"bucket_bytes": 64 * 1024})
    assert status == 200 and len(manifest["buckets"]) > 1, manifest
    buckets = manifest["buckets"]

    def receive(engine: Client):
        answers, before = [engine.post("/begin_weight_update", {})], digest(engine)
        for i, b in enumerate(buckets):
            last = {"weight_version": str(version)} if i == len(buckets) - 1 else {}
            answers.append(engine.post("/update_weights_from_distributed", {"names": b["names"], "dtypes": b["dtypes"], "shapes": b["shapes"], "group_name": "g1", "load_format": "flattened_bucket", **last}))
            if i == 0:
                # One bucket in: nothing served has changed yet.
                after_first = (served_version(engine), digest(engine) == before)
        answers.append(engine.post("/end_weight_update", {}))
        return answers, after_first

    sent, *received = in_parallel(
        lambda: trainer.post("/trainer/broadcast_weights", {"group_name": "g1", "version": version, "bucket_bytes": 64 * 1024}),
        *[(lambda e=e: receive(e)) for e in engines],
    )
    assert sent[0] == 200, sent
    assert sent[1]["bytes"] == manifest["total_bytes"] and sent[1]["buckets"] == len(buckets)
    for engine, (answers, after_first) in zip(engines, received):
        assert all(s == 200 and b["success"] for s, b in answers), answers
        assert after_first == ("0", True), "the served weights changed before the last bucket"
        assert engine.get("/model_info")[1]["weight_version"] == str(version)
        assert digest(engine) == trained


def test_vllm_shapes_swap_at_finish_only(members):
    trainer, *engines = members
    version = train_once(trainer)
    status, opened = trainer.post("/trainer/init_weights_update_group", {"group_name": "v", "master_address": "127.0.0.1", "master_port": 0, "world_size": 3, "backend": "gloo"})
    assert status == 200
    joins = in_parallel(*[(lambda e=e, r=r: e.post("/init_weight_transfer_engine", {"init_info": {"master_address": "127.0.0.1", "master_port": opened["master_port"], "rank_offset": r, "world_size": 3}})) for r, e in enumerate(engines, start=1)])
    assert all(s == 200 for s, _ in joins), joins
    _, manifest = trainer.post("/trainer/weights_manifest", {"bucket_bytes": 1 << 30})
    b = manifest["buckets"][0]
    trained = digest(trainer, "/trainer/weights_digest")

    def receive(engine: Client):
        before = digest(engine)
        out = [engine.post("/start_weight_update", {})]
        out.append(engine.post("/update_weights", {"update_info": {"names": b["names"], "dtype_names": b["dtypes"], "shapes": b["shapes"]}}))
        unchanged = digest(engine) == before != trained
        out.append(engine.post("/finish_weight_update", {}))
        return out, unchanged

    sent, *received = in_parallel(
        lambda: trainer.post("/trainer/broadcast_weights", {"group_name": "v", "version": version, "bucket_bytes": 1 << 30, "format": "per_tensor"}),
        *[(lambda e=e: receive(e)) for e in engines],
    )
    assert sent[0] == 200, sent
    for engine, (answers, unchanged) in zip(engines, received):
        assert all(s == 200 for s, _ in answers), answers
        assert unchanged, "weights changed before finish_weight_update"
        assert digest(engine) == trained


def test_update_and_broadcast_without_the_group_are_refused(client):
    # No group forms: one in-process server plays both the trainer and the engine.
    trainer = engine = client
    _, manifest = trainer.post("/trainer/weights_manifest", {"bucket_bytes": 1 << 30})
    b = manifest["buckets"][0]
    # SGLang (0.5.23 on) takes bucket updates inside a weight update session only.
    status, body = engine.post("/update_weights_from_distributed", {"names": b["names"], "dtypes": b["dtypes"], "shapes": b["shapes"], "group_name": "nope"})
    assert status == 400 and body["success"] is False and "begin_weight_update first" in body["message"]
    assert engine.post("/begin_weight_update", {})[0] == 200
    status, body = engine.post("/begin_weight_update", {})
    assert status == 400 and body["success"] is False and "already open" in body["message"]
    status, body = engine.post("/update_weights_from_distributed", {"names": b["names"], "dtypes": b["dtypes"], "shapes": b["shapes"], "group_name": "nope"})
    assert status == 400 and body["success"] is False and "not initialised" in body["message"]
    assert engine.post("/end_weight_update", {})[0] == 200
    # vLLM (0.34) builds its update info from names, dtype_names, shapes and src only.
    status, body = engine.post("/update_weights", {"update_info": {"names": b["names"], "dtype_names": b["dtypes"], "shapes": b["shapes"], "packed": False}})
    assert status == 400 and "unexpected fields ['packed']" in body["error"]["message"]
    status, body = trainer.post("/trainer/broadcast_weights", {"group_name": "nope", "version": 0, "bucket_bytes": 1024})
    assert status == 400 and "not open" in body["error"]["message"]
    status, body = trainer.post("/trainer/broadcast_weights", {"group_name": "nope", "version": 5, "bucket_bytes": 1024})
    assert status == 409


def test_a_repeated_open_answers_while_its_group_forms_and_another_group_forms_after_it(processes):
    trainer, engine = processes(2, ["--weight-sync-timeout-s", "60"])
    opening = {"group_name": "a", "master_address": "127.0.0.1", "master_port": 0, "world_size": 2, "backend": "gloo"}
    status, first = trainer.post("/trainer/init_weights_update_group", opening)
    assert status == 200, first
    # The engine has not joined: "a" forms (holding the trainer's construction lock) until it does.
    status, again = trainer.post("/trainer/init_weights_update_group", opening)
    assert status == 200 and again["master_port"] == first["master_port"], again
    status, info = trainer.get("/trainer/status")
    assert status == 200 and info["weight_update_groups"]["a"]["formed"] is False, info

    second: dict = {}
    opener = threading.Thread(target=lambda: second.update(answer=trainer.post("/trainer/init_weights_update_group", {**opening, "group_name": "b"})))
    opener.start()
    opener.join(0.5)
    assert opener.is_alive(), f"group b was constructed while group a was still forming: {second}"
    status, joined = engine.post("/init_weights_update_group", {"master_address": "127.0.0.1", "master_port": first["master_port"], "rank_offset": 1, "world_size": 2, "group_name": "a", "backend": "gloo"})
    assert status == 200 and joined["success"], joined
    opener.join(60)
    status, body = second["answer"]
    assert status == 200 and body["master_port"] != first["master_port"], body
    # "b" was constructed only after "a" had formed.
    status, info = trainer.get("/trainer/status")
    assert status == 200 and info["weight_update_groups"]["a"]["formed"] is True and info["weight_update_groups"]["b"]["formed"] is False, info
