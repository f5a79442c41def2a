"""The vault environment: deterministic given the seed, the press tool, the verifiable reward."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openenv.core.env_server.mcp_types import CallToolAction  # noqa: E402

from timeshare_openenv.vault import VaultEnvironment  # noqa: E402


def press(digit: str, tool: str = "press") -> CallToolAction:
    return CallToolAction(tool_name=tool, arguments={"digit": digit})


def test_same_seed_same_episode_and_the_reward_counts_right_presses():
    a, b = VaultEnvironment(), VaultEnvironment()
    first = a.reset(seed=11)
    assert b.reset(seed=11).text == first.text
    shown = int(first.text)
    right = press(str((shown + 3) % 10))
    obs = a.step(right)
    assert obs.text[0] == "+" and not obs.done
    assert b.step(right).text == obs.text
    obs = a.step(press("x"))  # not a digit
    assert obs.text[0] == "!"
    obs = a.step(press("1", tool="pull"))  # not the press tool
    assert obs.text[0] == "!"
    shown = int(obs.text[1])
    obs = a.step(press(str((shown + 3) % 10)))
    assert obs.done and obs.reward == 0.5


def test_a_step_past_the_end_is_refused():
    env = VaultEnvironment(turns=1)
    env.reset(seed=1)
    assert env.step(press("0")).done
    try:
        env.step(press("0"))
    except RuntimeError as error:
        assert "done" in str(error)
    else:
        raise AssertionError("expected a RuntimeError")
