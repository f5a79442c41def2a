"""The trainer side: a clipped policy-gradient (GRPO-style) step on rewarded trajectories,
safetensors export under a version, and offload/onload of parameters and Adam state.

Advantage of a trajectory = (reward - batch mean) / (batch std + eps), applied to every token
the policy generated (loss_mask 1).

Off-policy correction: the decoupled PPO objective of AReaL (Fu et al., "AReaL: A Large-Scale
Asynchronous Reinforcement Learning System for Language Reasoning", arXiv:2505.24298, section 5;
code: inclusionAI/AReaL, `ppo_actor_loss_fn` with `proximal_logprobs` and `behav_imp_weight_cap`).
A token sampled by an older weight version (behaviour policy, its recorded logprob) is weighted by
w = pi_prox / pi_behav, where pi_prox is the trainer's weights at the start of the step (recomputed
here), and the PPO ratio is clipped against pi_prox, not against the stale behaviour policy:

    loss = - sum_t mask_t * w_t * min(r_t * A, clip(r_t, 1 - eps, 1 + eps) * A) / sum_t mask_t
    r_t = pi_theta(t) / pi_prox(t),   w_t = exp(logp_prox(t) - logp_behav(t))  (no gradient)

Tokens whose w exceeds `behaviour_weight_cap` are left out of the loss (AReaL's filter). Each
token's behaviour version (`versions`, optional) only serves the lag figures of the answer; for an
on-policy token w is 1 up to sampling numerics.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import load_checkpoint, save_checkpoint
from .digest import weights_digest
from .memory import ParameterOffloader, move_optimizer_state, pin_available
from .model import ModelConfig, build_model
from .rollout import EngineError


@dataclass
class Trajectory:
    sample_id: int
    reward: float
    input_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    versions: list[int] | None = None


def parse_trajectory(raw: dict, vocab_size: int, index: int) -> Trajectory:
    try:
        t = Trajectory(
            sample_id=int(raw["sample_id"]),
            reward=float(raw["reward"]),
            input_ids=[int(i) for i in raw["input_ids"]],
            loss_mask=[int(m) for m in raw["loss_mask"]],
            logprobs=[float(x) for x in raw["logprobs"]],
            versions=None if raw.get("versions") is None else [int(v) for v in raw["versions"]],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise EngineError(400, f"trajectories[{index}]: {error!r}") from error
    n = len(t.input_ids)
    if n < 2 or len(t.loss_mask) != n or len(t.logprobs) != n:
        raise EngineError(400, f"trajectories[{index}] (sample {t.sample_id}): input_ids ({n}, at least 2), loss_mask ({len(t.loss_mask)}) and logprobs ({len(t.logprobs)}) must have one length")
    if any(not 0 <= i < vocab_size for i in t.input_ids):
        raise EngineError(400, f"trajectories[{index}] (sample {t.sample_id}): ids outside the vocabulary [0, {vocab_size})")
    if t.versions is not None and (len(t.versions) != n or any(v < 0 for v in t.versions)):
        raise EngineError(400, f"trajectories[{index}] (sample {t.sample_id}): versions ({len(t.versions)}) must be one non-negative version per token ({n})")
    if any(m not in (0, 1) for m in t.loss_mask) or t.loss_mask[0] != 0:
        raise EngineError(400, f"trajectories[{index}] (sample {t.sample_id}): loss_mask must be 0/1 and 0 on the first token")
    return t


class Trainer:
    def __init__(self, config: ModelConfig, device: torch.device, lr: float = 3e-3, clip: float = 0.2, epochs: int = 1, behaviour_weight_cap: float = 5.0, checkpoint_dir: str | None = None):
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if behaviour_weight_cap <= 1:
            raise ValueError(f"behaviour_weight_cap must be > 1, got {behaviour_weight_cap}")
        self.behaviour_weight_cap = behaviour_weight_cap
        self.epochs = epochs
        self.config = config
        self.device = device
        self.model = build_model(config, device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.clip = clip
        self.params = ParameterOffloader(self.model, device)
        self.weight_version = 0
        self.lock = threading.Lock()
        self.optimizer_on_device = False
        # With a checkpoint folder the trainer survives its own restart: every step is saved
        # (parameters, Adam state, version) before it is answered, and loaded at start.
        self.checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / "trainer.safetensors"
        if self.checkpoint is not None and self.checkpoint.is_file():
            model_state, optimizer_state, self.weight_version = load_checkpoint(self.checkpoint)
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
            move_optimizer_state(self.optimizer, torch.device("cpu"), pin=pin_available(device))
        self.params.offload()  # starts offloaded: the pipeline onloads before the first step

    @property
    def onloaded(self) -> bool:
        return self.params.resident

    def onload(self) -> None:
        with self.lock:
            self.params.onload()
            if not self.optimizer_on_device:
                move_optimizer_state(self.optimizer, self.device, pin=False)
                self.optimizer_on_device = True

    def offload(self) -> None:
        with self.lock:
            if self.optimizer_on_device:
                move_optimizer_state(self.optimizer, torch.device("cpu"), pin=pin_available(self.device))
                self.optimizer_on_device = False
            self.params.offload()

    def train_step(self, from_version: int, trajectories: list[Trajectory]) -> dict:
        with self.lock:
            if not self.params.resident:
                raise EngineError(409, "train_step needs the trainer onloaded (POST /trainer/onload)")
            if from_version != self.weight_version:
                raise EngineError(409, f"train_step from version {from_version}, but the trainer holds version {self.weight_version}")
            if not trajectories:
                raise EngineError(400, "train_step needs at least one trajectory")
            lags = [from_version - v for t in trajectories for v, m in zip(t.versions or [], t.loss_mask) if m == 1]
            if any(lag < 0 for lag in lags):
                raise EngineError(400, f"train_step from version {from_version}: a trajectory has tokens of a later version")
            rewards = torch.tensor([t.reward for t in trajectories], dtype=torch.float32)
            std = rewards.std(unbiased=False) if len(trajectories) > 1 else torch.tensor(0.0)
            advantages = (rewards - rewards.mean()) / (std + 1e-6)
            longest = max(len(t.input_ids) for t in trajectories)
            n = len(trajectories)
            ids = torch.zeros(n, longest, dtype=torch.long)
            mask = torch.zeros(n, longest)
            old = torch.zeros(n, longest)
            pad = torch.ones(n, longest, dtype=torch.bool)
            for row, t in enumerate(trajectories):
                k = len(t.input_ids)
                ids[row, :k] = torch.tensor(t.input_ids)
                mask[row, :k] = torch.tensor(t.loss_mask, dtype=torch.float32)
                old[row, :k] = torch.tensor(t.logprobs)
                pad[row, :k] = False
            ids, mask, old, pad, advantages = (x.to(self.device) for x in (ids, mask, old, pad, advantages))
            m = mask[:, 1:]
            tokens = m.sum()
            if float(tokens) == 0:
                raise EngineError(400, "the batch has no generated tokens (loss_mask is all 0)")
            adv = advantages[:, None]
            losses = []

            def token_logprobs() -> torch.Tensor:
                logits = self.model(ids, padding_mask=pad)
                # Token j is predicted from position j-1.
                return torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]

            # Decoupled PPO: the proximal policy is the weights at the start of the step.
            with torch.no_grad():
                prox = token_logprobs()
                behaviour_weight = torch.exp(prox - old[:, 1:])
                capped = (behaviour_weight > self.behaviour_weight_cap).float() * m
                m = m * (1 - capped)
                tokens = m.sum()
            if float(tokens) == 0:
                raise EngineError(400, f"every generated token's behaviour weight exceeds the cap {self.behaviour_weight_cap}")
            # Several passes over the batch; the ratio clipped against the proximal policy bounds how far they move it.
            for _ in range(self.epochs):
                ratio = torch.exp(token_logprobs() - prox)
                objective = behaviour_weight * torch.minimum(ratio * adv, torch.clamp(ratio, 1 - self.clip, 1 + self.clip) * adv)
                loss = -(objective * m).sum() / tokens
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.optimizer.step()
                losses.append(float(loss.detach()))
            self.optimizer_on_device = True
            self.weight_version += 1
            self._save_checkpoint()
            return {
                "new_version": self.weight_version,
                "loss": losses[0],
                "trained_samples": n,
                "mean_reward": float(rewards.mean()),
                "off_policy": {
                    "tokens": len(lags),
                    "mean_lag": sum(lags) / len(lags) if lags else 0.0,
                    "max_lag": max(lags, default=0),
                    "tokens_over_weight_cap": int(capped.sum()),
                    "mean_behaviour_weight": float((behaviour_weight * (mask[:, 1:])).sum() / mask[:, 1:].sum()),
                },
            }

    def _save_checkpoint(self) -> None:
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.model.state_dict(), self.optimizer.state_dict(), self.weight_version)

    def weights_digest(self) -> tuple[int, str]:
        """(weight version, digest of its weights)."""
        with self.lock:
            version = self.weight_version
        return version, weights_digest(self.named_weights(version))

    def named_weights(self, version: int) -> list[tuple[str, torch.Tensor]]:
        """The weights of `version` in model order (resident or host copies), for a broadcast."""
        with self.lock:
            if version != self.weight_version:
                raise EngineError(409, f"broadcast of version {version} asked, the trainer holds version {self.weight_version}")
            if self.params.resident:
                return [(k, v.detach()) for k, v in self.model.state_dict().items()]
            host = self.params.host or {}
            return [(k, host[k]) for k in self.model.state_dict().keys()]

    def export_weights(self, version: int, directory: str) -> str:
        """Writes <directory>/v<version>/model.safetensors atomically (temp dir + rename)."""
        with self.lock:
            if version != self.weight_version:
                raise EngineError(409, f"export of version {version} asked, the trainer holds version {self.weight_version}")
            target = Path(directory) / f"v{version}"
            if target.exists():
                return str(target)
            Path(directory).mkdir(parents=True, exist_ok=True)
            if self.params.resident:
                state = {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}
            else:
                state = {k: v.contiguous() for k, v in (self.params.host or {}).items()}
            staging = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=directory))
            try:
                save_file(state, str(staging / "model.safetensors"), metadata={"weight_version": str(version)})
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            return str(target)
