"""Dataset cards checked against numbers computed by hand."""

from __future__ import annotations

import numpy as np

from lit_omarl.data import EpisodeData, read_dataset, render_card, validate_arrays, write_dataset
from lit_omarl.data.schema import example_arrays
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec("matrix/hand", n_agents=2, obs_dim=2, state_dim=1, n_actions=3, episode_limit=3,
               env_options={"payoff": "xor"})


def hand_built() -> dict:
    """4 episodes of lengths 3, 2, 1, 3 with returns 6, 1, -2, 3; episodes 1 and 2 terminate."""
    E, T, N, A = 4, 3, 2, 3
    filled = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=np.uint8)
    reward = np.array([[1, 2, 3], [0.5, 0.5, 0], [-2, 0, 0], [1, 1, 1]], dtype=np.float32)
    terminated = np.zeros((E, T), dtype=np.uint8)
    terminated[1, 1] = terminated[2, 0] = 1
    actions = np.zeros((E, T, N), dtype=np.int64)
    actions[..., 1] = filled  # agent 1 always takes action 1
    actions[0, :, 0] = [0, 1, 2]
    actions[1, :, 0] = [0, 0, 0]
    actions[2, :, 0] = [1, 0, 0]
    actions[3, :, 0] = [2, 2, 2]
    return {
        "obs": np.zeros((E, T + 1, N, 2), dtype=np.float32),
        "state": np.zeros((E, T + 1, 1), dtype=np.float32),
        "actions": actions,
        "avail_actions": np.ones((E, T + 1, N, A), dtype=np.uint8),
        "reward": reward,
        "terminated": terminated,
        "filled": filled,
        "won": np.array([0, 1, 0, 1], dtype=np.uint8),
    }


def test_card_of_hand_built_dataset(tmp_path):
    arrays = hand_built()
    validate_arrays(arrays, SPEC)
    path = write_dataset(tmp_path / "hand.h5", arrays, {
        "spec": SPEC, "quality": "mixed", "behaviour": "scripted", "seed": 11, "generator": "test",
    })
    card = render_card(read_dataset(path))
    lines = card.splitlines()
    assert lines[0] == "# Dataset `hand.h5` — `matrix/hand`"
    for expected in [
        "| quality | mixed |", "| behaviour | scripted |", "| source | n/a |", "| seed | 11 |", "| generator | test |",
        "| episodes | 4 |",
        "| transitions | 9 |",
        "| return mean | 2.0000 |",           # (6 + 1 - 2 + 3) / 4
        "| return std | 2.9155 |",            # sqrt((16 + 1 + 16 + 1) / 4)
        "| return min | -2.0000 |",
        "| return max | 6.0000 |",
        "| return median | 2.0000 |",         # (1 + 3) / 2
        "| episode length mean | 2.2500 |",
        "| episode length min | 1 |",
        "| episode length max | 3 |",
        "| terminated fraction | 0.500 (2 episodes) |",
        "| time-limit fraction | 0.500 (2 episodes) |",
        "| win rate | 0.500 (2 episodes) |",
        "| agent | a0 | a1 | a2 |",
        "| 0 | 0.333 | 0.222 | 0.444 |",      # agent 0: actions 0,1,2,0,0,1,2,2,2
        "| 1 | 0.000 | 1.000 | 0.000 |",
        "Distinct joint actions seen: 3 of 9.",
        "| n_agents | 2 |", "| n_actions | 3 |", "| episode_limit | 3 |", "| action_type | discrete |",
        '| env_options | {"payoff": "xor"} |',
    ]:
        assert expected in lines, expected
    assert card == render_card(read_dataset(path))  # deterministic


def test_card_without_optional_attrs_or_wins():
    arrays = hand_built()
    del arrays["won"]
    card = render_card(EpisodeData(arrays, {"spec": SPEC.to_json()}, "x/mem.h5"))
    assert "# Dataset `mem.h5` — `matrix/hand`" in card
    assert "| quality | n/a |" in card
    assert "win rate" not in card


def test_returns_equal_at_the_printed_precision_make_one_histogram_row():
    arrays = hand_built()
    arrays["reward"] = np.array([[1, 0, 0], [1, 1e-7, 0], [1, 0, 0], [0.5, 0.5, 0]], dtype=np.float32)
    arrays["filled"] = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=np.uint8)
    arrays["terminated"] = np.zeros_like(arrays["filled"])
    card = render_card(EpisodeData(arrays, {"spec": SPEC.to_json()}, "x/flat.h5"))
    dist = card.split("## Return distribution")[1].split("## Actions")[0]
    rows = [line for line in dist.splitlines() if line.startswith("| [")]
    assert rows == ["| [1.0000, 1.0000] (spread 1.0e-07) | 4 | 1.000 |"], rows


def test_card_skips_joint_actions_when_large():
    spec = EnvSpec("big", n_agents=3, obs_dim=1, state_dim=1, n_actions=30, episode_limit=4)
    data = EpisodeData(example_arrays(spec, 5), {"spec": spec.to_json()}, "big.h5")
    card = render_card(data)
    assert "Distinct joint actions" not in card
    assert "| agent | a0 |" in card and "a29 |" in card


def test_card_of_continuous_dataset():
    spec = EnvSpec("cont", n_agents=1, obs_dim=1, state_dim=1, n_actions=2, action_type="continuous",
                   episode_limit=2, action_low=-1.0, action_high=1.0)
    arrays = example_arrays(spec, 2, lengths=[2, 1])
    arrays["actions"][:] = 0
    arrays["actions"][0, :, 0] = [[0.5, -0.5], [0.5, 0.5]]
    arrays["actions"][1, 0, 0] = [-0.5, 0.5]
    validate_arrays(arrays, spec)
    card = render_card(EpisodeData(arrays, {"spec": spec.to_json()}, "c.h5"))
    # each dimension holds {0.5, 0.5, -0.5} in some order: mean 1/6, std sqrt(2/9)
    assert "| 0 | 0.1667 ± 0.4714 | 0.1667 ± 0.4714 |" in card
    assert "| action bounds | [-1, 1] |" in card
    assert "Distinct joint actions" not in card
