"""The trainer protocol: a real policy-gradient step, offload/onload, export."""
from __future__ import annotations

import torch
from safetensors.torch import load_file


def logprob_of(client, prefix, token):
    model = client.app.trainer.model
    with torch.no_grad():
        logits = model(torch.tensor([prefix]))[0, -1]
    return float(torch.log_softmax(logits, -1)[token])


def test_policy_gradient_raises_the_probability_of_rewarded_tokens(client):
    client.post("/trainer/onload")
    prompt = [7, 10]
    good, bad = 0, 5
    before = logprob_of(client, prompt, good)
    version = 0
    for _ in range(15):
        trajectories = [
            {"sample_id": i, "reward": 1.0 if i % 2 == 0 else 0.0, "input_ids": prompt + [good if i % 2 == 0 else bad], "loss_mask": [0, 0, 1], "logprobs": [0, 0, -2.5]}
            for i in range(8)
        ]
        status, step = client.post("/trainer/train_step", {"iteration": version, "from_version": version, "trajectories": trajectories})
        assert status == 200, step
        version = step["new_version"]
    after = logprob_of(client, prompt, good)
    assert after > before + 1.0, (before, after)
    assert logprob_of(client, prompt, bad) < before


def test_train_step_checks_version_onload_and_input(client):
    t = {"sample_id": 0, "reward": 1.0, "input_ids": [1, 2], "loss_mask": [0, 1], "logprobs": [0, -1.0]}
    status, body = client.post("/trainer/train_step", {"from_version": 0, "trajectories": [t]})
    assert status == 409 and "onload" in body["error"]["message"]
    client.post("/trainer/onload")
    status, body = client.post("/trainer/train_step", {"from_version": 3, "trajectories": [t]})
    assert status == 409 and "version 0" in body["error"]["message"]
    status, body = client.post("/trainer/train_step", {"from_version": 0, "trajectories": [{**t, "loss_mask": [0]}]})
    assert status == 400 and "one length" in body["error"]["message"]


def test_offload_frees_parameters_and_onload_restores_them_with_optimizer_state(client):
    client.post("/trainer/onload")
    t = {"sample_id": 0, "reward": 1.0, "input_ids": [1, 2, 3], "loss_mask": [0, 1, 1], "logprobs": [0, -1.0, -1.0]}
    u = {**t, "sample_id": 1, "reward": 0.0, "input_ids": [1, 4, 5]}
    assert client.post("/trainer/train_step", {"from_version": 0, "trajectories": [t, u]})[0] == 200
    trainer = client.app.trainer
    snapshot = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = {id(p): s["exp_avg"].clone() for p, s in trainer.optimizer.state.items()}
    status, body = client.post("/trainer/offload")
    assert status == 200 and body == {"onloaded": False, "weight_version": 1, "device": "cpu", "weight_update_groups": {}}
    assert all(p.numel() == 0 for p in trainer.model.parameters())
    assert client.post("/trainer/train_step", {"from_version": 1, "trajectories": [t, u]})[0] == 409
    status, body = client.post("/trainer/onload")
    assert body["onloaded"] is True
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    for p, s in trainer.optimizer.state.items():
        assert torch.equal(s["exp_avg"], moments[id(p)])


def test_export_writes_safetensors_under_the_version_even_when_offloaded(client, tmp_path):
    client.post("/trainer/onload")
    client.post("/trainer/offload")
    status, body = client.post("/trainer/export_weights", {"version": 0, "dir": str(tmp_path)})
    assert status == 200
    state = load_file(str(tmp_path / "v0" / "model.safetensors"))
    assert set(state) == set(client.app.engine.model.state_dict())
    status, body = client.post("/trainer/export_weights", {"version": 4, "dir": str(tmp_path)})
    assert status == 409


def test_off_policy_tokens_are_weighted_by_the_behaviour_ratio_and_capped(client):
    """Decoupled PPO: w = pi_prox / pi_behav per token; tokens beyond the cap leave the loss; lags reported from versions."""
    client.post("/trainer/onload")
    prompt = [7, 10]
    on_policy = logprob_of(client, prompt, 0)
    # Sample 0's token was sampled by the current weights (v2); sample 1's by v0 with a much higher
    # probability than the current weights give it (w = exp(on - 0) far above the cap); sample 2's by v1.
    trajectories = [
        {"sample_id": 0, "reward": 1.0, "input_ids": prompt + [0], "loss_mask": [0, 0, 1], "logprobs": [0, 0, on_policy], "versions": [2, 2, 2]},
        {"sample_id": 1, "reward": 0.0, "input_ids": prompt + [0], "loss_mask": [0, 0, 1], "logprobs": [0, 0, on_policy + 4.0], "versions": [0, 0, 0]},
        {"sample_id": 2, "reward": 0.0, "input_ids": prompt + [5], "loss_mask": [0, 0, 1], "logprobs": [0, 0, logprob_of(client, prompt, 5) + 0.1], "versions": [1, 1, 1]},
    ]
    client.app.trainer.weight_version = 2
    status, step = client.post("/trainer/train_step", {"from_version": 2, "trajectories": trajectories})
    assert status == 200, step
    off = step["off_policy"]
    assert off["tokens"] == 3 and off["max_lag"] == 2 and abs(off["mean_lag"] - 1.0) < 1e-9
    # Sample 1 sampled with w = exp(-4) (kept, tiny weight); sample 0 on-policy (w = 1).
    assert off["tokens_over_weight_cap"] == 0
    # Against the weights now (v3): samples 0 and 2 as sampled, sample 1 with w = exp(4) > 5: filtered out.
    now_good, now_bad = logprob_of(client, prompt, 0), logprob_of(client, prompt, 5)
    trajectories[0]["logprobs"] = [0, 0, now_good]
    trajectories[1]["logprobs"] = [0, 0, now_good - 4.0]
    trajectories[2]["logprobs"] = [0, 0, now_bad]
    status, step = client.post("/trainer/train_step", {"from_version": 3, "trajectories": trajectories})
    assert status == 200, step
    assert step["off_policy"]["tokens_over_weight_cap"] == 1
    status, body = client.post("/trainer/train_step", {"from_version": 4, "trajectories": [{**trajectories[0], "versions": [5, 5, 5]}]})
    assert status == 400 and "later version" in body["error"]["message"]
    status, body = client.post("/trainer/train_step", {"from_version": 4, "trajectories": [{**trajectories[0], "versions": [1]}]})
    assert status == 400 and "versions" in body["error"]["message"]


def test_a_restarted_trainer_resumes_from_its_checkpoint_with_weights_adam_state_and_version(tmp_path):
    from conftest import CONFIG
    from timeshare_ref.model import ModelConfig
    from timeshare_ref.trainer import Trainer, Trajectory

    torch.set_num_threads(1)
    config = ModelConfig.load(CONFIG)
    batch = [Trajectory(i, float(i % 2), [3, 4, i % 10], [0, 0, 1], [0.0, 0.0, -2.0]) for i in range(4)]
    original = Trainer(config, torch.device("cpu"), lr=1e-2, checkpoint_dir=str(tmp_path))
    original.onload()
    for version in range(2):
        original.train_step(version, batch)
    assert (tmp_path / "trainer.safetensors").is_file()

    restarted = Trainer(config, torch.device("cpu"), lr=1e-2, checkpoint_dir=str(tmp_path))
    assert restarted.weight_version == 2
    restarted.onload()
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(restarted.model.state_dict()[name], tensor), name
    # The same next step lands on the same weights only if the Adam moments came back too.
    a, b = original.train_step(2, batch), restarted.train_step(2, batch)
    assert a["loss"] == b["loss"] and b["new_version"] == 3
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(restarted.model.state_dict()[name], tensor), name
