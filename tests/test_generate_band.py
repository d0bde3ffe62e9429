"""Return bands (``band:``), extra attributes, simulated-step counts and the public ``rollout`` of generation."""

from collections import Counter

import numpy as np
import pytest
import torch

from lit_omarl.data import generate
from lit_omarl.data.generate import Band, BehaviourError, generate_dataset, parse_behaviour, rollout
from lit_omarl.envs import make

XOR = make("matrix/xor").spec  # payoff AA 0, AB 1, BA 1, BB -2; max_return 1; one-step episodes


def _joints(arrays):
    return Counter(map(tuple, arrays["actions"][:, 0].tolist()))


@pytest.mark.parametrize("band, expected", [
    ("band:0.5:1", {(0, 1), (1, 0)}),        # 0.5 <= R (hi >= 1: no upper bound) -> the return-1 joint actions
    ("band:-3:0.5", {(0, 0), (1, 1)}),       # -3 <= R < 0.5 -> returns 0 and -2
    ("band:-1:0.5", {(0, 0)}),               # -1 <= R < 0.5 -> return 0 only
    ("band:0:1/3", {(0, 0)}),                # the lower bound is inclusive: R = 0 is kept
    ("band:-2:0", {(1, 1)}),                 # the upper bound is exclusive: R = 0 is not
])
def test_band_keeps_exactly_the_episodes_in_its_return_range(band, expected):
    arrays, attrs = generate_dataset("matrix/xor", f"{band}:xor-c", episodes=200, seed=0, batch_size=64)
    counts = _joints(arrays)
    assert set(counts) == expected
    for joint, n in counts.items():  # the kept joint actions stay equally likely
        assert abs(n / 200 - 1 / len(expected)) < 0.12, counts
    assert attrs["attempted_episodes"] % 64 == 0 and attrs["attempted_episodes"] >= 200
    assert attrs["simulated_steps"] == attrs["attempted_episodes"]  # one step per xor episode


def test_bands_of_one_seed_partition_the_same_stream_of_episodes():
    """Same seed + same pool => each band keeps its part of one stream, in stream order."""
    pool, b = "xor-c", 32
    full, _ = generate_dataset("matrix/xor", pool, episodes=4 * b, seed=5, batch_size=b)
    stream = [tuple(a) for a in full["actions"][:, 0].tolist()]
    for band, keep in [("band:0.5:1", {(0, 1), (1, 0)}), ("band:-3:0.5", {(0, 0), (1, 1)})]:
        n = sum(j in keep for j in stream[: 2 * b])
        arrays, _ = generate_dataset("matrix/xor", f"{band}:{pool}", episodes=n, seed=5, batch_size=b)
        assert [tuple(a) for a in arrays["actions"][:, 0].tolist()] == [j for j in stream[: 2 * b] if j in keep]


@pytest.mark.parametrize("text, words", [
    ("band:0.5:xor-c", ["band:<lo>:<hi>:<spec>"]),
    ("band:0.5:0.2:xor-c", ["lo < hi", "lo=0.5", "hi=0.2"]),
    ("band:a:1:xor-c", ["'a' is not a number"]),
    ("mix:band:0:1:xor-a|xor-b", ["outermost"]),
    ("epsilon:0.1:band:0:1:xor-a", ["outermost"]),
])
def test_bad_bands_name_the_spec_and_the_problem(text, words):
    with pytest.raises(BehaviourError) as err:
        parse_behaviour(text, XOR)
    assert repr(text) in str(err.value)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_an_empty_band_fails_after_max_attempts_naming_the_band():
    with pytest.raises(ValueError, match=r"0 of 3 episodes passed the filter \(0\.2 <= return < 0\.8\) in 64 attempts"):
        generate_dataset("matrix/xor", "band:0.2:0.8:xor-c", episodes=3, seed=0, batch_size=32, max_attempts=64)


def test_band_is_a_filter_and_describes_itself():
    band = parse_behaviour("band:1/3:2/3:uniform", XOR)
    assert isinstance(band, Band)
    band.set_max_return(2.0)
    assert band.describe() == "0.666667 <= return < 1.33333"
    assert band.accept(torch.tensor([0.6, 2 / 3, 1.0, 4 / 3, 2.0])).tolist() == [False, True, True, False, False]
    top = parse_behaviour("band:2/3:1:uniform", XOR)
    top.set_max_return(2.0)
    assert top.accept(torch.tensor([1.3, 4 / 3, 2.0, 2.0001])).tolist() == [False, True, True, True]


def test_extra_attrs_are_stored_but_cannot_replace_generator_attrs(tmp_path):
    from lit_omarl.data.schema import read_dataset

    out = tmp_path / "x.h5"
    generate_dataset("matrix/xor", "xor-a", episodes=4, seed=0, out=out, extra_attrs={"recipe": "r1"})
    assert read_dataset(out).attrs["recipe"] == "r1"
    with pytest.raises(ValueError, match="'seed' is set by generate_dataset"):
        generate_dataset("matrix/xor", "xor-a", episodes=4, seed=0, extra_attrs={"seed": 3})


def test_simulated_steps_count_every_simulated_episode():
    # mmdp episodes last exactly episode_limit (10) steps: 3 batches of 4 are simulated for 9 episodes
    arrays, attrs = generate_dataset("mmdp", "uniform", episodes=9, seed=0, batch_size=4)
    assert int(arrays["filled"].sum()) == 90 and attrs["simulated_steps"] == 120


def test_rollout_is_public_and_pads_one_batch():
    env = make("mmdp", num_envs=3, seed=0)
    policy = parse_behaviour("uniform", env.spec)
    policy.bind(env)
    out = rollout(env, policy, torch.arange(3), torch.Generator().manual_seed(0))
    assert generate._rollout is rollout  # the former private name still works
    assert out["obs"].shape == (3, env.spec.episode_limit + 1, env.spec.n_agents, env.spec.obs_dim)
    assert out["filled"].all() and out["behaviour_probs"].shape[-1] == env.spec.n_actions
    np.testing.assert_allclose(out["behaviour_probs"].sum(-1).numpy(), 1.0, rtol=1e-6)


def test_a_hopeless_band_stops_early_from_the_acceptance_rate():
    # nothing is accepted: after 2048 attempts (4 batches of 512) even the rule-of-three rate 3 / 2048
    # needs 3000 * 2048 / 3 > 1e6 attempts for 3000 episodes
    with pytest.raises(ValueError, match=r"0 of 3000 episodes passed the filter .* in 2048 attempts \(limit 1000000\)"):
        generate_dataset("matrix/xor", "band:0.2:0.8:xor-c", episodes=3000, seed=0, batch_size=512, max_attempts=10**6)
