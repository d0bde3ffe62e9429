"""MPE behind the batched protocol (lit_omarl/envs/mpe.py).

The torch backend needs nothing optional; the tests that compare it with the
real mpe2 package skip when mpe2 is not installed. Hand-computed cases check
the physics (force = sensitivity * action, position integrated before
velocity, damping 0.25, dt 0.1, speed cap) and the spread reward.
"""

from __future__ import annotations

import math

import pytest
import torch

from lit_omarl.envs import list_envs, make
from lit_omarl.envs.continuous import benchmark
from lit_omarl.envs.mpe import MLPPreyPolicy, PREY_TASKS

TASKS = ("simple_spread", "simple_tag", "simple_world_comm")
# (n_agents, obs_dim, state_dim, action dims xy, action dims mpe2)
SIZES = {
    "simple_spread": (3, 18, 54, (2, 2, 2), (5, 5, 5)),
    "simple_tag": (3, 16, 62, (2, 2, 2), (5, 5, 5)),
    "simple_world_comm": (4, 34, 192, (6, 2, 2, 2), (9, 5, 5, 5)),
}


def _random_actions(env, g, scale=1.0):
    s = env.spec
    mid, half = (s.action_low + s.action_high) / 2, (s.action_high - s.action_low) / 2
    return mid + half * scale * (2 * torch.rand(env.num_envs, s.n_agents, s.n_actions, generator=g) - 1)


def _rollout(env, seed, steps=25, action_seed=0, scale=1.0):
    ts = env.reset(seed=seed)
    g = torch.Generator().manual_seed(action_seed)
    out = [(ts.obs.clone(), ts.state.clone(), ts.reward.clone())]
    for _ in range(steps):
        ts = env.step(_random_actions(env, g, scale))
        out.append((ts.obs.clone(), ts.state.clone(), ts.reward.clone()))
    return out


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("mode", ["xy", "mpe2"])
def test_spec_shapes_dtypes_and_rebuild(task, mode):
    env = make(f"mpe/{task}", num_envs=3, seed=0, action_mode=mode)
    n, o, s, dims_xy, dims_mpe2 = SIZES[task]
    dims = dims_xy if mode == "xy" else dims_mpe2
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions) == (n, o, s, max(dims))
    assert spec.action_type == "continuous" and spec.episode_limit == 25
    assert (spec.action_low, spec.action_high) == ((-1.0, 1.0) if mode == "xy" else (0.0, 1.0))
    assert env.agent_action_dims == dims
    assert env.action_mask.sum(-1).tolist() == list(dims) and env.obs_mask.all()
    ts = env.reset()
    assert ts.obs.shape == (3, n, o) and ts.obs.dtype == torch.float32
    assert ts.state.shape == (3, s) and ts.state.dtype == torch.float32
    assert ts.avail.shape == (3, n, max(dims)) and ts.avail.dtype == torch.bool and ts.avail.all()
    assert ts.reward.tolist() == [0.0] * 3 and not ts.done.any()
    # the state is every agent's observation (prey included), learners first
    assert torch.equal(ts.state[:, : n * o], ts.obs.reshape(3, -1))
    assert make(spec.env_id, **spec.env_options).spec == spec
    assert f"mpe/{task}" in list_envs()


def test_truncation_at_25_no_termination_no_auto_reset():
    env = make("mpe/simple_tag", num_envs=2, seed=1)
    env.reset()
    g = torch.Generator().manual_seed(0)
    for t in range(1, 26):
        ts = env.step(_random_actions(env, g))
        assert not ts.terminated.any()
        assert ts.truncated.tolist() == [t == 25] * 2
    assert not env.active.any()
    frozen = ts.obs.clone()
    ts = env.step(_random_actions(env, g))
    assert torch.equal(ts.obs, frozen) and ts.reward.tolist() == [0.0, 0.0]
    assert not ts.truncated.any() and not ts.terminated.any()  # done only once
    ts = env.reset()
    assert env.active.all() and env.t.tolist() == [0, 0]


@pytest.mark.parametrize("task", TASKS)
def test_determinism_under_seed(task):
    a = _rollout(make(f"mpe/{task}", num_envs=4, seed=7), seed=None, steps=10)
    b = _rollout(make(f"mpe/{task}", num_envs=4, seed=7), seed=None, steps=10)
    c = _rollout(make(f"mpe/{task}", num_envs=4, seed=8), seed=None, steps=10)
    assert all(torch.equal(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))
    assert not torch.equal(a[0][1], c[0][1])
    env = make(f"mpe/{task}", num_envs=4, seed=0)
    assert all(torch.equal(x, y) for sa, sb in zip(_rollout(env, 7, 10), a) for x, y in zip(sa, sb))  # reset(seed)


def test_out_of_bound_actions_clip_or_error():
    base = _rollout(make("mpe/simple_spread", num_envs=2, seed=3), 3, steps=5, scale=1.0)
    big = _rollout(make("mpe/simple_spread", num_envs=2, seed=3), 3, steps=5, scale=3.0)
    clipped = make("mpe/simple_spread", num_envs=2, seed=3)
    ts = clipped.reset(seed=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ts = clipped.step((3 * _random_actions(clipped, g)).clamp(-1, 1))
    assert torch.equal(ts.state, big[-1][1]) and not torch.equal(big[-1][1], base[-1][1])
    strict = make("mpe/simple_spread", num_envs=2, seed=3, out_of_bounds="error")
    strict.reset()
    with pytest.raises(ValueError, match=r"mpe/simple_spread: action 1\.5 in env 1, agent 2, dim 0 is outside \[-1\.0, 1\.0\]"):
        acts = torch.zeros(2, 3, 2)
        acts[1, 2, 0] = 1.5
        strict.step(acts)
    with pytest.raises(ValueError, match="non-finite action"):
        clipped.reset()
        clipped.step(torch.full((2, 3, 2), float("nan")))
    with pytest.raises(ValueError, match="out_of_bounds must be one of clip, error"):
        make("mpe/simple_spread", out_of_bounds="wrap")
    with pytest.raises(ValueError, match=r"expected actions of shape \(2, 3, 2\)"):
        clipped.reset()
        clipped.step(torch.zeros(2, 3, 5))


def test_padded_action_entries_are_ignored():
    """In world only the leader speaks: garbage in the other predators' padded entries changes nothing."""
    runs = []
    for garbage in (0.0, 0.9):
        env = make("mpe/simple_world_comm", num_envs=2, seed=4, out_of_bounds="error")
        env.reset()
        g = torch.Generator().manual_seed(1)
        for _ in range(6):
            acts = _random_actions(env, g)
            acts[:, 1:, 2:] = garbage
            ts = env.step(acts)
        runs.append(ts.state)
    assert torch.equal(runs[0], runs[1])


def _place(env, agents, landmarks, vel=None):
    st = env.get_world_state()
    st["pos"] = torch.tensor([agents + landmarks], dtype=torch.float64).expand_as(st["pos"]).clone()
    if vel is not None:
        st["vel"] = torch.tensor([vel], dtype=torch.float64).expand_as(st["vel"]).clone()
    else:
        st["vel"].zero_()
    return env.set_world_state(st)


def test_hand_computed_physics_and_speed_cap():
    # spread: sensitivity 5, no speed cap. Step 1: pos += 0 * dt; vel = 0 * 0.75 + 5 * 0.1 = 0.5.
    # Step 2: pos = 0.05; vel = 0.5 * 0.75 + 0.5 = 0.875. Others far away (no contact).
    env = make("mpe/simple_spread", num_envs=1, seed=0)
    env.reset()
    _place(env, [[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]], [[9.0, 9.0]] * 3)
    push = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    env.step(push)
    st = env.get_world_state()
    assert st["pos"][0, 0].tolist() == [0.0, 0.0] and st["vel"][0, 0].tolist() == pytest.approx([0.5, 0.0])
    env.step(push)
    st = env.get_world_state()
    assert st["pos"][0, 0].tolist() == pytest.approx([0.05, 0.0]) and st["vel"][0, 0, 0].item() == pytest.approx(0.875)
    # tag predator: accel 3, max speed 1: v = 0.3, 0.525, 0.69375, 0.8203, 0.9152, 0.9864, then capped at 1.0
    env = make("mpe/simple_tag", num_envs=1, seed=0, prey_policy="still")
    env.reset()
    _place(env, [[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]], [[9.0, 9.0], [-9.0, 9.0]])
    speeds = []
    for _ in range(7):
        env.step(torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]))
        speeds.append(env.get_world_state()["vel"][0, 0, 0].item())
    v, expected = 0.0, []
    for _ in range(7):
        v = min(v * 0.75 + 0.3, 1.0)
        expected.append(v)
    assert speeds == pytest.approx(expected) and speeds[-1] == 1.0 and speeds[-2] < 1.0


def test_hand_computed_spread_reward_with_a_collision():
    """Landmarks (0,0), (1,0), (0,1); agents (0,0), (0.2,0), (0,1.5): global = -(0 + 0.8 + 0.5) = -1.3;
    agents 0 and 1 overlap (0.2 < 0.15 + 0.15): local -1, -1, 0; reward_i = 0.5 global + 0.5 local
    = -1.15, -1.15, -0.65 (positions move only by the old velocity, 0); team = mean = -0.98333.
    Contact force on agent 0: 100 * (-0.2, 0) / 0.2 * softplus(100) * 1e-3 = (-10, 0) -> vel -1.0."""
    env = make("mpe/simple_spread", num_envs=2, seed=0)
    env.reset()
    _place(env, [[0.0, 0.0], [0.2, 0.0], [0.0, 1.5]], [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ts = env.step(torch.zeros(2, 3, 2))
    assert env.agent_rewards[0].tolist() == pytest.approx([-1.15, -1.15, -0.65], abs=1e-6)
    assert ts.reward.tolist() == pytest.approx([-2.95 / 3] * 2, abs=1e-6)
    pen = (100 + math.log1p(math.exp(-100))) * 1e-3
    vel = env.get_world_state()["vel"][0]
    assert vel[0].tolist() == pytest.approx([-100 * pen * 0.1, 0.0]) and vel[1].tolist() == pytest.approx([100 * pen * 0.1, 0.0])
    first = make("mpe/simple_spread", num_envs=2, seed=0, team_reward="first")
    first.reset()
    _place(first, [[0.0, 0.0], [0.2, 0.0], [0.0, 1.5]], [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert first.step(torch.zeros(2, 3, 2)).reward.tolist() == pytest.approx([-1.15] * 2, abs=1e-6)


def _crowded(env, g):
    st = env.get_world_state()
    scale = torch.tensor([0.2] * env.scenario.n_all + [0.4] * (env.scenario.n_entities - env.scenario.n_all), dtype=torch.float64)
    st["pos"] = (2 * torch.rand(st["pos"].shape, generator=g, dtype=torch.float64) - 1) * scale[None, :, None]
    st["vel"] = 2 * torch.rand(st["vel"].shape, generator=g, dtype=torch.float64) - 1
    return st


@pytest.mark.parametrize("task,mode", [("simple_spread", "xy"), ("simple_tag", "mpe2"), ("simple_world_comm", "xy"),
                                       ("simple_world_comm", "mpe2")])
def test_torch_backend_matches_mpe2_step_by_step(task, mode):
    pytest.importorskip("mpe2")
    ours = make(f"mpe/{task}", num_envs=3, seed=5, action_mode=mode)
    ref = make(f"mpe/{task}", num_envs=3, seed=5, action_mode=mode, backend="mpe2")
    ours.reset()
    ref.reset()
    g = torch.Generator().manual_seed(11)
    state = _crowded(ours, g)  # agents packed together: contacts, captures, forests
    a, b = ours.set_world_state(state), ref.set_world_state(state)
    assert torch.allclose(a.state, b.state, atol=1e-6)
    contacts, forest_values = 0, set()
    for _ in range(25):
        acts = _random_actions(ours, g, scale=1.2)
        a, b = ours.step(acts), ref.step(acts)
        assert torch.allclose(a.obs, b.obs, atol=1e-5) and torch.allclose(a.state, b.state, atol=1e-5)
        assert torch.allclose(ours.all_rewards, ref.all_rewards, atol=1e-5) and torch.allclose(a.reward, b.reward, atol=1e-5)
        assert torch.equal(a.truncated, b.truncated)
        contacts += int((ours.all_rewards.abs() >= 4.9).sum())
        if task == "simple_world_comm":
            forest_values |= set(a.obs[:, 1, 28:30].flatten().tolist())  # predator 1's in_forest entries (obs 28:30)
    ws_a, ws_b = ours.get_world_state(), ref.get_world_state()
    assert torch.allclose(ws_a["pos"], ws_b["pos"], atol=1e-9) and torch.allclose(ws_a["comm"], ws_b["comm"], atol=1e-6)
    if task != "simple_spread":
        assert contacts > 0  # the comparison covered predator-prey contacts
    if task == "simple_world_comm":
        assert forest_values == {-1.0, 1.0}


def test_prey_policies_and_weights_file(tmp_path):
    # heuristic prey flees a predator placed next to it
    env = make("mpe/simple_tag", num_envs=1, seed=0)
    env.reset()
    _place(env, [[0.1, 0.0], [5.0, 5.0], [-5.0, 5.0], [0.0, 0.0]], [[9.0, 9.0], [-9.0, 9.0]])
    for _ in range(5):
        env.step(torch.zeros(1, 3, 2))
    pos = env.get_world_state()["pos"][0]
    assert pos[3, 0].item() < -0.1  # moved away (to -x) from the predator at +x
    # still prey does not move
    env = make("mpe/simple_tag", num_envs=1, seed=0, prey_policy="still")
    env.reset()
    before = env.get_world_state()["pos"][0, 3].clone()
    env.step(torch.zeros(1, 3, 2))
    assert torch.equal(env.get_world_state()["pos"][0, 3], before)
    # a trained prey plugs in through a weights file, recorded in the spec
    torch.manual_seed(0)
    policy = MLPPreyPolicy("simple_tag", obs_dim=14, act_dim=2, hidden=[8])
    path = policy.save(tmp_path / "prey.pt", meta={"trained_by": "test"})
    env = make("mpe/simple_tag", num_envs=2, seed=0, prey_policy=str(path))
    assert env.spec.env_options["prey_policy"] == str(path) and env.prey_policy.meta == {"trained_by": "test"}
    again = make(env.spec.env_id, num_envs=2, seed=0, **env.spec.env_options)
    ra, rb = _rollout(env, 3, steps=5), _rollout(again, 3, steps=5)
    assert all(torch.equal(x, y) for sa, sb in zip(ra, rb) for x, y in zip(sa, sb))
    obs = torch.randn(2, 1, 14)
    assert torch.allclose(env.prey_policy.act(obs, torch.Generator()), policy.net(obs))
    with pytest.raises(ValueError, match="was made for simple_tag"):
        make("mpe/simple_world_comm", prey_policy=str(path)).reset()
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: key 'format': expected 'lit_omarl-prey-v1'"):
        make("mpe/simple_tag", prey_policy=str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="unknown prey_policy 'wolf'"):
        make("mpe/simple_tag", prey_policy="wolf")
    assert PREY_TASKS["simple_world_comm"].obs_dim == 28
    # spread has no prey: the option is not recorded
    assert "prey_policy" not in make("mpe/simple_spread").spec.env_options


def test_unknown_task_and_options():
    with pytest.raises(ValueError, match="unknown task 'simple_push'"):
        make("mpe/simple_push")
    with pytest.raises(ValueError, match="action_mode must be 'xy' or 'mpe2'"):
        make("mpe/simple_tag", action_mode="discrete")
    with pytest.raises(TypeError, match="unknown option"):
        make("mpe/simple_tag", n_prey=3)


def test_benchmark_helper_counts_steps():
    out = benchmark("mpe/simple_spread", num_envs=3, episodes=2)
    assert out["env_steps"] == 3 * 25 * 2 and out["env_steps_per_s"] > 0
