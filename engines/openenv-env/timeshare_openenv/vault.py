"""The vault task: open a combination lock one digit at a time with the `press` tool.

Each turn the lock shows a digit d; the agent calls the tool `press` with the digit
(d + shift) mod 10 (OpenEnv's `call_tool` action: `{"type": "call_tool", "tool_name": "press",
"arguments": {"digit": "7"}}`). The lock answers `+` (right) or `-` (wrong) followed by the next
digit; after `turns` presses the episode is done and the reward is the fraction pressed right.
A call of another tool, or a digit that is not one, counts as wrong and is answered `!`.

Deterministic: the digits are drawn from `random.Random(seed)` at reset, so an episode re-created
with the same seed and given the same actions answers the same (timeshare replays lost episodes
under that rule, docs/engine-protocol.md). The texts use only the characters `0-9 + - !`, so a
character-vocabulary model (engines/reference/configs/agent.json) reads and writes them.
"""
from __future__ import annotations

import random
from typing import Any, Optional
from uuid import uuid4

from pydantic import Field

from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.mcp_types import CallToolAction
from openenv.core.env_server.types import EnvironmentMetadata, Observation, State


class VaultObservation(Observation):
    """What the agent reads: `text` (the lock's answer and next digit)."""

    text: str = Field(default="", description="the lock's answer to the last press and the next digit")


class VaultState(State):
    digits: list[int] = Field(default_factory=list)
    correct: int = 0


class VaultEnvironment(Environment):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, turns: int = 4, shift: int = 3):
        super().__init__()
        if not 1 <= turns <= 1000:
            raise ValueError(f"turns must be in 1..1000, got {turns}")
        if not 0 <= shift <= 9:
            raise ValueError(f"shift must be in 0..9, got {shift}")
        self.turns = turns
        self.shift = shift
        self._state = VaultState(episode_id=str(uuid4()), step_count=0)

    def reset(self, seed: Optional[int] = None, episode_id: Optional[str] = None, **kwargs: Any) -> VaultObservation:
        rng = random.Random(seed)
        digits = [rng.randrange(10) for _ in range(self.turns)]
        self._state = VaultState(episode_id=episode_id or str(uuid4()), step_count=0, digits=digits, correct=0)
        return VaultObservation(text=str(digits[0]), done=False, reward=0.0)

    def step(self, action: CallToolAction, timeout_s: Optional[float] = None, **kwargs: Any) -> VaultObservation:  # type: ignore[override]
        state = self._state
        if not state.digits:
            raise RuntimeError("step before reset")
        if state.step_count >= self.turns:
            raise RuntimeError(f"the episode is done after {self.turns} presses")
        turn = state.step_count
        want = (state.digits[turn] + self.shift) % 10
        valid = action.tool_name == "press" and str(action.arguments.get("digit", "")).strip() in {str(d) for d in range(10)}
        right = valid and int(str(action.arguments["digit"]).strip()) == want
        state.step_count += 1
        state.correct += int(right)
        if state.step_count == self.turns:
            return VaultObservation(text="", done=True, reward=state.correct / self.turns)
        mark = "+" if right else ("-" if valid else "!")
        return VaultObservation(text=f"{mark}{state.digits[state.step_count]}", done=False, reward=0.0)

    @property
    def state(self) -> VaultState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name="timeshare-vault",
            description="Open a combination lock with the press tool; deterministic given the reset seed.",
            version="1",
        )
