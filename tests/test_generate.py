"""Dataset generation: behaviour grammar, determinism, the paper datasets' statistics, the written file."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lit_omarl.data.generate import PRESETS, BehaviourError, generate_dataset, parse_behaviour
from lit_omarl.envs import make

BRIDGE_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "alberdice_bridge"
XOR = make("matrix/xor").spec
MNE = make("matrix/mne").spec


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, spec", [
    ("uniform", MNE), ("expert", MNE), ("probs:1/3,1/3,1/3", MNE), ("probs:0.8,0.2;0.4,0.6", XOR),
    ("joint:0-1,1-0", XOR), ("joint:AB,ba", XOR), ("epsilon:0.2:expert", MNE), ("mix:expert|uniform", MNE),
    ("filter:0.8:mix:uniform|epsilon:0.5:probs:0.8,0.1,0.1", MNE), ("agents:expert|uniform", XOR),
    ("noise:0.1:agents:uniform|uniform|uniform", make("mpe/simple_spread").spec),
] + [(name, XOR if name.startswith("xor") or name == "mabcq" else MNE) for name in PRESETS])
def test_valid_specs_parse(text, spec):
    parse_behaviour(text, spec)


@pytest.mark.parametrize("text, spec, words", [
    ("probs:0.5", XOR, ["probs:0.5", "1 probabilities", "2 actions"]),
    ("probs:0.5,0.6", XOR, ["sums to 1.1"]),
    ("probs:1.5,-0.5", XOR, ["negative"]),
    ("probs:a,b", XOR, ["'a' is not a number"]),
    ("probs:0.5,0.5;0.5,0.5;1,0", XOR, ["3 distributions", "one per agent (2)"]),
    ("joint:ABC", XOR, ["3 actions", "2 agents"]),
    ("joint:AC", XOR, ["outside 0..1"]),
    ("joint:0-1,", XOR, ["empty joint action"]),
    ("joint:A1", XOR, ["letters"]),
    ("greedy", XOR, ["unknown behaviour 'greedy'", "uniform"]),
    ("softmax:0.1", XOR, ["unknown behaviour kind 'softmax'"]),
    ("epsilon:1.5:expert", XOR, ["epsilon must be in [0, 1.0]"]),
    ("epsilon:0.1", XOR, ["epsilon:<number>:<spec>"]),
    ("mix:expert", XOR, ["at least two"]),
    ("mix:expert|filter:0.5:uniform", XOR, ["outermost"]),
    ("", XOR, ["empty"]),
    ("agents:uniform", XOR, ["one '|'-separated specification per agent", "2 agents, got 1"]),
    ("agents:uniform|mix:expert|uniform", XOR, ["2 agents, got 3", "mix:"]),
    ("agents:uniform|", XOR, ["2 agents, got 2"]),
])
def test_bad_specs_raise_value_error_naming_spec_and_problem(text, spec, words):
    with pytest.raises(ValueError) as err:
        parse_behaviour(text, spec)
    assert isinstance(err.value, BehaviourError)
    message = str(err.value)
    assert repr(text) in message, message
    for word in words:
        assert word in message, message


def test_behaviour_must_fit_the_env():
    from lit_omarl.envs import register
    from lit_omarl.envs.matrix import MatrixGame

    class NoExpert(MatrixGame):
        expert = None

    register("test_no_expert", lambda env_id, num_envs=1, seed=0: NoExpert([[1, 0], [0, 1]], num_envs, seed, env_id), overwrite=True)
    with pytest.raises(ValueError, match="'expert'.*no scripted expert"):
        generate_dataset("test_no_expert", "epsilon:0.1:expert", episodes=2, seed=0)
    with pytest.raises(ValueError, match="joint.*5 agents"):
        generate_dataset("mmdp", "xor-a", episodes=2, seed=0)
    # Bridge returns are <= 0 = max_return, so "return > 0.5 * 0" never happens
    with pytest.raises(ValueError, match="passed the filter"):
        generate_dataset("bridge", "filter:0.5:uniform", episodes=2, seed=0, batch_size=8, max_attempts=16)


# ---------------------------------------------------------------- arrays
def _check_layout(arrays, spec, episodes):
    e, t, n = episodes, spec.episode_limit, spec.n_agents
    assert arrays["obs"].shape == (e, t + 1, n, spec.obs_dim) and arrays["obs"].dtype == np.float32
    assert arrays["state"].shape == (e, t + 1, spec.state_dim) and arrays["state"].dtype == np.float32
    assert arrays["actions"].shape == (e, t, n) and arrays["actions"].dtype == np.int64
    assert arrays["avail_actions"].shape == (e, t + 1, n, spec.n_actions) and arrays["avail_actions"].dtype == np.uint8
    for key in ("reward", "terminated", "filled"):
        assert arrays[key].shape == (e, t)
    filled = arrays["filled"].astype(bool)
    lengths = filled.sum(1)
    assert (lengths >= 1).all() and all(filled[i, :lengths[i]].all() for i in range(e))
    terminated = arrays["terminated"].astype(bool)
    assert not (terminated & ~filled).any() and (terminated.sum(1) <= 1).all()
    assert (arrays["reward"][~filled] == 0).all() and (arrays["actions"][~filled] == 0).all()
    steps = np.arange(t + 1)[None, :]
    beyond = steps > lengths[:, None]
    assert (arrays["obs"][beyond] == 0).all() and (arrays["avail_actions"][beyond] == 0).all()
    assert (arrays["avail_actions"][~beyond] .sum(-1) > 0).all()


@pytest.mark.parametrize("env_id, behaviour, options", [
    ("matrix/xor", "xor-b", {}), ("mmdp", "epsilon:0.3:expert", {}), ("equal_line", "expert", {"n": 3}),
    ("bridge", "mixed", {}),
])
def test_arrays_follow_the_schema_and_validate(env_id, behaviour, options):
    arrays, attrs = generate_dataset(env_id, behaviour, episodes=24, seed=0, env_options=options, batch_size=16)
    spec = attrs["spec"]
    _check_layout(arrays, spec, 24)
    assert attrs["behaviour"] == behaviour and attrs["seed"] == 0 and attrs["env"] == env_id
    assert attrs["generator"].startswith("lit_omarl ") and attrs["generator"].endswith(" generate")
    from lit_omarl.data.schema import validate_arrays

    validate_arrays(arrays, spec)


@pytest.mark.parametrize("env_id, behaviour", [("matrix/mne", "mne-a"), ("mmdp", "uniform"), ("bridge", "mixed"), ("equal_line", "epsilon:0.5:expert")])
def test_generation_is_deterministic_given_seed(env_id, behaviour):
    a, _ = generate_dataset(env_id, behaviour, episodes=40, seed=3, batch_size=16)
    b, _ = generate_dataset(env_id, behaviour, episodes=40, seed=3, batch_size=16)
    c, _ = generate_dataset(env_id, behaviour, episodes=40, seed=4, batch_size=16)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


# ---------------------------------------------------------------- the papers' datasets
def _joint_counts(arrays):
    return Counter(map(tuple, arrays["actions"][:, 0].tolist()))


def test_xor_datasets_contain_exactly_their_joint_actions_in_equal_proportions():
    for name, joint in [("xor-a", {(0, 1), (1, 0)}), ("xor-b", {(0, 0), (0, 1), (1, 0)}), ("xor-c", {(0, 0), (0, 1), (1, 0), (1, 1)})]:
        arrays, _ = generate_dataset("matrix/xor", name, episodes=3000, seed=0)
        counts = _joint_counts(arrays)
        assert set(counts) == joint, name
        for c in counts.values():
            assert abs(c / 3000 - 1 / len(joint)) < 0.03, (name, counts)
        payoff = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): -2}
        assert all(arrays["reward"][i, 0] == payoff[tuple(a)] for i, a in enumerate(arrays["actions"][:, 0].tolist()))
        assert "behaviour_probs" not in arrays


def test_mne_b_marginals_and_recorded_behaviour_probs():
    arrays, _ = generate_dataset("matrix/mne", "mne-b", episodes=4000, seed=1)
    freq = np.bincount(arrays["actions"][:, 0].ravel(), minlength=3) / arrays["actions"][:, 0].size
    assert np.allclose(freq, [0.8, 0.1, 0.1], atol=0.02)
    assert np.allclose(arrays["behaviour_probs"][:, 0], [0.8, 0.1, 0.1])
    arrays, _ = generate_dataset("matrix/mne", "mne-a", episodes=3000, seed=1)
    assert np.allclose(np.bincount(arrays["actions"].ravel(), minlength=3) / arrays["actions"].size, 1 / 3, atol=0.03)


def test_mabcq_per_agent_distributions():
    arrays, _ = generate_dataset("matrix/mabcq", "mabcq", episodes=4000, seed=2)
    a = arrays["actions"][:, 0]
    assert abs((a[:, 0] == 0).mean() - 0.8) < 0.02 and abs((a[:, 1] == 0).mean() - 0.4) < 0.02
    assert np.allclose(arrays["behaviour_probs"][:, 0], [[0.8, 0.2], [0.4, 0.6]])


def test_agents_gives_each_agent_its_own_behaviour():
    """agents:S_0|S_1: agent k's actions and recorded probabilities come from S_k (exact: deterministic parts)."""
    arrays, _ = generate_dataset("matrix/xor", "agents:probs:1,0|epsilon:0.5:probs:0,1", episodes=2000, seed=0)
    a = arrays["actions"][:, 0]
    assert (a[:, 0] == 0).all()
    assert abs((a[:, 1] == 1).mean() - 0.75) < 0.03
    assert np.allclose(arrays["behaviour_probs"][:, 0, 0], [1.0, 0.0])
    assert np.allclose(arrays["behaviour_probs"][:, 0, 1], [0.25, 0.75])


def test_epsilon_mixes_probabilities():
    arrays, _ = generate_dataset("matrix/mne", "epsilon:0.5:probs:1,0,0", episodes=2000, seed=0)
    assert np.allclose(arrays["behaviour_probs"][:, 0], [0.5 + 0.5 / 3, 0.5 / 3, 0.5 / 3])
    assert abs((arrays["actions"] == 0).mean() - (0.5 + 0.5 / 3)) < 0.03


def test_mmdp_filter_keeps_only_high_return_episodes():
    arrays, attrs = generate_dataset("mmdp", "filter:0.8:uniform", episodes=50, seed=0, env_options={"episode_limit": 1}, batch_size=2048)
    assert (arrays["reward"].sum(1) > 0.8).all() and attrs["attempted_episodes"] > 50
    arrays, _ = generate_dataset("mmdp", "filter:0.8:epsilon:0.2:expert", episodes=50, seed=0)
    assert (arrays["reward"].sum(1) > 8).all()
    with pytest.raises(ValueError, match="passed the filter"):
        generate_dataset("mmdp", "filter:0.99:uniform", episodes=5, seed=0, batch_size=64, max_attempts=256)


def test_mixed_bridge_alternates_expert_and_uniform_episodes():
    arrays, _ = generate_dataset("bridge", "mixed", episodes=200, seed=0, batch_size=64)
    lengths = arrays["filled"].sum(1)
    returns = arrays["reward"].sum(1)
    assert (lengths[0::2] == 8).all() and (returns[0::2] > -1.3).all()
    assert returns[1::2].mean() < -10


def test_bridge_expert_dataset_matches_the_real_optimal_return():
    arrays, _ = generate_dataset("bridge", "expert", episodes=500, seed=0)
    returns = arrays["reward"].sum(1)
    assert abs(returns.mean() - (-1.262)) < 0.01
    if (BRIDGE_DATA / "buffer_optimal" / "reward.npy").exists():
        real = np.load(BRIDGE_DATA / "buffer_optimal" / "reward.npy")[:, :, 0].sum(1)
        assert abs(returns.mean() - real.mean()) < 0.01
        assert abs(returns.std() - real.std()) < 0.01


# ---------------------------------------------------------------- the file
def test_written_file_round_trips_and_is_never_overwritten(tmp_path):
    from lit_omarl.data.schema import read_dataset

    out = tmp_path / "xor_b.h5"
    arrays, attrs = generate_dataset("matrix/xor", "xor-b", episodes=30, seed=7, out=out, quality="b")
    data = read_dataset(out)
    assert data.spec == attrs["spec"] and data.n_episodes == 30
    assert data.attrs["behaviour"] == "xor-b" and int(data.attrs["seed"]) == 7 and data.attrs["quality"] == "b"
    assert "generate" in data.attrs["generator"]
    for key, value in arrays.items():
        assert np.array_equal(np.asarray(data.arrays[key]), value), key
    with pytest.raises(FileExistsError):
        generate_dataset("matrix/xor", "xor-a", episodes=5, seed=0, out=out)
    generate_dataset("matrix/xor", "xor-a", episodes=5, seed=0, out=out, overwrite=True)
    assert read_dataset(out).n_episodes == 5
