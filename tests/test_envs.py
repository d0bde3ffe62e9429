"""Toy environments: registry, payoffs, batched stepping, hand-computed rewards, Bridge vs the real data."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lit_omarl.envs import list_envs, make
from lit_omarl.envs.equal_line import min_distance

BRIDGE_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "alberdice_bridge"
BUILTIN = ["matrix/xor", "matrix/mne", "matrix/mabcq", "mmdp", "equal_line", "bridge"]


def _run_expert(env, seed=0):
    expert, gen = env.expert(), torch.Generator().manual_seed(seed)
    ts = env.reset()
    expert.begin(ts, gen)
    ret = torch.zeros(env.num_envs)
    length = torch.zeros(env.num_envs, dtype=torch.long)
    while env.active.any():
        length += env.active.long()
        ts = env.step(expert.act(ts, gen))
        ret += ts.reward
    return ret, length, ts


# ---------------------------------------------------------------- registry
def test_registry_lists_and_rejects_unknown_ids_and_options():
    for env_id in BUILTIN + ["matrix"]:
        assert env_id in list_envs()
    with pytest.raises(ValueError, match="matrix/nope") as err:
        make("matrix/nope")
    assert "matrix/xor" in str(err.value)
    with pytest.raises(ValueError, match="known ids") as err:
        make("no_such_env")
    assert "bridge" in str(err.value)
    with pytest.raises(TypeError, match="colour"):
        make("bridge", colour="red")
    with pytest.raises(TypeError, match="'m'"):
        make("equal_line", m=3)


@pytest.mark.parametrize("payoff, words", [
    (None, "payoff"),
    ([[1, 2, 3], [4, 5, 6]], "square"),
    ([[1, 2], [3]], "square"),
    ([[1, float("nan")], [0, 1]], "finite"),
    ([[1, "x"], [0, 1]], "numbers"),
])
def test_matrix_rejects_bad_payoffs(payoff, words):
    kwargs = {} if payoff is None else {"payoff": payoff}
    with pytest.raises(ValueError, match=words):
        make("matrix", **kwargs)
    with pytest.raises(ValueError, match="fixed payoff"):
        make("matrix/xor", payoff=[[1, 0], [0, 1]])


@pytest.mark.parametrize("env_id, options", [(e, {}) for e in BUILTIN] + [
    ("matrix", {"payoff": [[1, 0, 0], [0, 2, 0], [0, 0, 3]]}),
    ("equal_line", {"n": 5, "episode_limit": 7}),
    ("mmdp", {"n_agents": 3, "episode_limit": 4}),
])
def test_spec_env_options_rebuild_the_same_task(env_id, options):
    env = make(env_id, num_envs=3, seed=0, **options)
    spec = env.spec
    assert make(spec.env_id, **spec.env_options).spec == spec
    ts = env.reset()
    b, n = 3, spec.n_agents
    assert ts.obs.shape == (b, n, spec.obs_dim) and ts.obs.dtype == torch.float32
    assert ts.state.shape == (b, spec.state_dim) and ts.avail.shape == (b, n, spec.n_actions) and ts.avail.dtype == torch.bool
    assert ts.reward.shape == (b,) and not ts.terminated.any() and not ts.truncated.any()


def test_mmdp_accepts_cli_alias_n():
    assert make("mmdp", n=3).spec.n_agents == 3


# ---------------------------------------------------------------- matrix games
@pytest.mark.parametrize("env_id, payoff", [
    ("matrix/xor", [[0, 1], [1, -2]]),
    ("matrix/mne", [[5, 0, 0], [0, 10, 0], [0, 0, 20]]),
    ("matrix/mabcq", [[1, 5], [6, 1]]),
    ("matrix", [[3, -1], [2.5, 7]]),
])
def test_matrix_payoffs_one_step(env_id, payoff):
    k = len(payoff)
    options = {"payoff": payoff} if env_id == "matrix" else {}
    env = make(env_id, num_envs=k * k, **options)
    ts = env.reset()
    assert torch.equal(ts.obs, torch.ones(k * k, 2, 1)) and torch.equal(ts.state, torch.ones(k * k, 1)) and ts.avail.all()
    joint = torch.tensor([[i, j] for i in range(k) for j in range(k)])
    ts = env.step(joint)
    assert torch.allclose(ts.reward, torch.tensor(payoff, dtype=torch.float32).flatten())
    assert ts.terminated.all() and not ts.truncated.any() and not env.active.any()
    assert env.max_return == max(max(r) for r in payoff)
    # a finished episode stays finished: reward 0, nothing changes
    again = env.step(joint)
    assert torch.equal(again.reward, torch.zeros(k * k)) and not env.active.any()


# ---------------------------------------------------------------- mmdp
def test_mmdp_dynamics_reward_and_time_limit():
    env = make("mmdp", num_envs=2, seed=0, n_agents=3, episode_limit=3)
    env.reset()
    env.pos = torch.tensor([[0, 1, 2], [2, 2, 2]])
    ts = env.step(torch.tensor([[1, 1, 0], [2, 0, 1]]))  # up, up, stay / down, stay, up (clipped)
    assert torch.equal(env.pos, torch.tensor([[1, 2, 2], [1, 2, 2]]))
    assert torch.allclose(ts.reward, torch.tensor([2 / 3, 2 / 3]))
    assert torch.equal(ts.obs[0], torch.eye(3)[[1, 2, 2]]) and torch.equal(ts.state[0], torch.eye(3)[[1, 2, 2]].flatten())
    ts = env.step(torch.tensor([[2, 2, 2], [0, 0, 0]]))  # down, down, down (clipped at S0)
    assert torch.equal(env.pos[0], torch.tensor([0, 1, 1])) and ts.reward[0] == 0
    ts = env.step(torch.zeros(2, 3, dtype=torch.long))
    assert ts.truncated.all() and not ts.terminated.any() and not env.active.any()


def test_mmdp_expert_reaches_s2_and_reset_is_reproducible():
    env = make("mmdp", num_envs=64, seed=3)
    first = env.reset(seed=11).obs.clone()
    assert torch.equal(env.reset(seed=11).obs, first)
    assert not torch.equal(env.reset(seed=12).obs, first)
    ret, length, ts = _run_expert(env)
    assert (length == 10).all() and (ts.obs[..., 2] == 1).all()
    assert (ret >= 8).all() and (ret <= env.max_return).all()


# ---------------------------------------------------------------- equal_line
def test_equal_line_reward_hand_computed_three_agents():
    env = make("equal_line", num_envs=1, n=3)
    env.reset()
    assert env.line_length == 10.0
    env.pos = torch.tensor([[0.5, 1.0, 1.8]], dtype=torch.float64)
    env.last_min_dis = min_distance(env.pos)  # 0.5
    # moves: agent 0 by -0.5 (index 4), agent 1 stays (0), agent 2 by +1 (index 10)
    ts = env.step(torch.tensor([[4, 0, 10]]))
    assert torch.allclose(env.pos, torch.tensor([[0.0, 1.0, 2.8]], dtype=torch.float64))
    # min distance 0.5 -> 1.0: r = 10 (n - 1) (1.0 - 0.5) / 10 = 1.0
    assert ts.reward.item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(ts.state, torch.tensor([[0.0, 0.1, 0.28]]))
    assert torch.allclose(ts.obs[0, 2], torch.tensor([0.28, 0.0, 0.1, 0.28]))
    # clipping at 0 and a shrinking gap: agent 0 by -1 (stays at 0), agent 1 by -0.05 -> gap 0.95
    ts = env.step(torch.tensor([[5, 2, 0]]))
    assert env.pos[0, 0].item() == 0.0
    assert ts.reward.item() == pytest.approx(10 * 2 * (0.95 - 1.0) / 10, abs=1e-6)


def test_equal_line_starts_in_0_2_and_expert_spreads_out():
    env = make("equal_line", num_envs=128, seed=0, n=4)
    ts = env.reset()
    length = env.line_length
    assert length == 10.0 and (ts.state >= 0).all() and (ts.state * length <= 2).all()
    ret, steps, ts = _run_expert(env)
    assert (steps == 25).all() and ts.truncated.all() and not ts.terminated.any()
    assert (min_distance(ts.state.double() * length) > 0.95 * length / 3).all()
    assert (ret > 8).all() and (ret < env.max_return).all()


# ---------------------------------------------------------------- batching
@pytest.mark.parametrize("env_id", BUILTIN)
def test_batched_episodes_are_independent_and_frozen_when_done(env_id):
    env = make(env_id, num_envs=6, seed=5)
    ts = env.reset()
    gen = torch.Generator().manual_seed(0)
    frozen = None
    while env.active.any():
        before = env.active.clone()
        actions = torch.randint(0, env.spec.n_actions, (6, env.spec.n_agents), generator=gen)
        ts = env.step(actions)
        if frozen is not None:
            done_before = ~before
            assert torch.equal(ts.obs[done_before], frozen.obs[done_before])
            assert (ts.reward[done_before] == 0).all() and not ts.terminated[done_before].any() and not ts.truncated[done_before].any()
        frozen = ts
        assert ((ts.terminated | ts.truncated) == (before & ~env.active)).all()
    assert (env.t <= env.spec.episode_limit).all()
    # reset(seed) is reproducible whatever the construction seed
    a = make(env_id, num_envs=6, seed=5).reset(seed=9).obs
    assert torch.equal(a, make(env_id, num_envs=6, seed=1).reset(seed=9).obs)


# ---------------------------------------------------------------- bridge
def test_bridge_start_rules_and_collisions():
    env = make("bridge", num_envs=1)
    ts = env.reset()
    assert ts.obs[0, 0].tolist() == [1, 2, 2, 5, 1, 3, 0, 0] and torch.equal(ts.obs[0, 0], ts.obs[0, 1])

    def put(p0, p1, a0, a1):
        env.reset()
        env.pos = torch.tensor([[p0, p1]])
        return env.step(torch.tensor([[a0, a1]]))

    put((1, 2), (1, 3), 3, 4)  # swap: both stay
    assert env.pos[0].tolist() == [[1, 2], [1, 3]]
    put((1, 2), (1, 3), 3, 3)  # follow into the vacated cell
    assert env.pos[0].tolist() == [[1, 3], [1, 4]]
    put((1, 2), (1, 4), 3, 4)  # same target: agent 0 gets it
    assert env.pos[0].tolist() == [[1, 3], [1, 4]]
    put((1, 2), (1, 3), 3, 0)  # into a standing agent: stays
    assert env.pos[0].tolist() == [[1, 2], [1, 3]]
    put((0, 1), (1, 2), 2, 1)  # agent 1 moves up into the blocked cell (0, 2): stays; agent 0 moves down
    assert env.pos[0].tolist() == [[1, 1], [1, 2]]
    ts = put((0, 0), (0, 1), 1, 4)  # agent 1 walks into its goal although agent 0 stands there (data quirk)
    assert env.pos[0].tolist() == [[0, 0], [0, 0]] and env.done[0].tolist() == [False, True]
    assert ts.reward.item() == pytest.approx(-0.1 * np.sqrt(4 + 25) / 2, abs=1e-6)


def test_bridge_time_limit_step_has_zero_reward():
    env = make("bridge", num_envs=2, episode_limit=3)
    env.reset()
    rewards = [env.step(torch.zeros(2, 2, dtype=torch.long)) for _ in range(3)]
    assert rewards[0].reward[0].item() == pytest.approx(-0.1 * np.sqrt(10), abs=1e-6)
    assert (rewards[2].reward == 0).all() and rewards[2].truncated.all() and not rewards[2].terminated.any()


def _load(folder):
    load = lambda key: np.load(folder / f"{key}.npy")  # noqa: E731
    return {k: load(k) for k in ("obs", "state", "actions", "reward", "filled", "terminated", "avail_actions")}


@pytest.mark.skipif(not (BRIDGE_DATA / "buffer_optimal" / "obs.npy").exists(), reason="real Bridge datasets absent")
@pytest.mark.parametrize("buffer", ["buffer_optimal", "buffer_mix"])
def test_bridge_replays_every_real_episode_exactly(buffer):
    d = _load(BRIDGE_DATA / buffer)
    e = d["obs"].shape[0]
    steps = d["filled"][:, :, 0].sum(1) - 1  # pymarl: filled covers the final observation too
    assert (d["avail_actions"][d["filled"][:, :, 0] == 1] == 1).all()
    env = make("bridge", num_envs=e)
    ts = env.reset()
    assert np.allclose(ts.obs.numpy(), d["obs"][:, 0], atol=1e-6) and np.allclose(ts.state.numpy(), d["state"][:, 0], atol=1e-6)
    ended = np.zeros(e, dtype=bool)
    for t in range(env.spec.episode_limit):
        valid = t < steps
        actions = torch.as_tensor(np.where(valid[:, None], d["actions"][:, t, :, 0], 0))
        ts = env.step(actions)
        v = valid
        np.testing.assert_allclose(ts.obs.numpy()[v], d["obs"][v, t + 1], atol=1e-6, err_msg=f"obs at step {t}")
        np.testing.assert_allclose(ts.state.numpy()[v], d["state"][v, t + 1], atol=1e-6, err_msg=f"state at step {t}")
        np.testing.assert_allclose(ts.reward.numpy()[v], d["reward"][v, t, 0], atol=1e-6, err_msg=f"reward at step {t}")
        done = (ts.terminated | ts.truncated).numpy()
        assert np.array_equal(done[v], (t == steps - 1)[v]), f"episode ends at step {t}"
        # the data marks every end as terminated (even the time limit); ours: terminated iff both reached their goals
        last = v & (t == steps - 1)
        assert (d["terminated"][last, t, 0] == 1).all()
        both_home = np.all(d["obs"][:, t + 1, 0, [0, 1, 4, 5]] == d["obs"][:, t + 1, 0, [2, 3, 6, 7]], axis=1)
        assert np.array_equal(ts.terminated.numpy()[last], both_home[last])
        ended |= last
    assert ended.all() and not env.active.any()


def test_bridge_expert_is_multimodal_and_matches_the_optimal_data_return():
    env = make("bridge", num_envs=2000, seed=0)
    expert, gen = env.expert(), torch.Generator().manual_seed(1)
    ts = env.reset()
    expert.begin(ts, gen)
    first = expert.act(ts, gen)
    # either agent 1 backs off to the right (both move right) or agent 0 backs off to the left (both move left)
    right, left = (first == 3).all(-1), (first == 4).all(-1)
    assert (right | left).all() and 0.45 < right.float().mean().item() < 0.55
    ret, length, ts = _run_expert(env, seed=1)
    assert (length == 8).all() and ts.terminated.all()
    assert ret.min() >= -1.291 and ret.max() <= -1.235
    assert abs(ret.mean().item() - (-1.262)) < 0.01
    if (BRIDGE_DATA / "buffer_optimal" / "reward.npy").exists():
        real = np.load(BRIDGE_DATA / "buffer_optimal" / "reward.npy")[:, :, 0].sum(1)
        assert abs(ret.mean().item() - real.mean()) < 0.01 and abs(ret.std().item() - real.std()) < 0.01
