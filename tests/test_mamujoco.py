"""MaMuJoCo behind the batched protocol (lit_omarl/envs/mamujoco.py); skipped without the extra ``mujoco``.

The reference is gymnasium-robotics' own ``MultiAgentMujocoEnv`` (pettingzoo
API): same seed, same actions -> same per-agent observations, state, reward
and termination at every step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium_robotics")

from lit_omarl.envs import list_envs, make  # noqa: E402
from lit_omarl.envs.mamujoco import _import_mamujoco  # noqa: E402

# task: (per-agent obs sizes, per-agent action sizes, state size) of gymnasium-robotics 1.4 / MuJoCo v5, agent_obsk=1
SIZES = {
    "HalfCheetah-2x3": ((12, 12), (3, 3), 17),
    "HalfCheetah-6x1": ((9, 9, 8, 9, 9, 8), (1,) * 6, 17),
    "Walker2d-2x3": ((12, 12), (3, 3), 17),
    "Hopper-3x1": ((8, 9, 8), (1, 1, 1), 11),
    "Ant-2x4": ((63, 63), (4, 4), 105),
    "Ant-4x2": ((42,) * 4, (2,) * 4, 105),
}


@pytest.mark.parametrize("task", list(SIZES))
def test_spec_sizes_padding_and_rebuild(task):
    obs_dims, act_dims, state_dim = SIZES[task]
    env = make(f"mamujoco/{task}", num_envs=2, seed=0)
    s = env.spec
    assert (s.n_agents, s.obs_dim, s.state_dim, s.n_actions) == (len(obs_dims), max(obs_dims), state_dim, max(act_dims))
    assert s.action_type == "continuous" and (s.action_low, s.action_high) == (-1.0, 1.0) and s.episode_limit == 1000
    assert env.agent_obs_dims == obs_dims and env.agent_action_dims == act_dims
    assert env.obs_mask.sum(-1).tolist() == list(obs_dims)
    ts = env.reset()
    assert ts.obs.shape == (2, len(obs_dims), max(obs_dims)) and ts.obs.dtype == torch.float32
    assert ts.state.shape == (2, state_dim) and ts.state.dtype == torch.float32
    assert ts.avail.all() and ts.reward.tolist() == [0.0, 0.0] and not ts.done.any()
    assert (ts.obs[:, ~env.obs_mask] == 0).all()  # padding is zero
    assert make(s.env_id, **s.env_options).spec == s
    assert f"mamujoco/{task}" in list_envs()
    assert not Path("MUJOCO_LOG.TXT").exists()  # HalfCheetah's compile warning went to the logger


@pytest.mark.parametrize("task,steps", [("HalfCheetah-6x1", 60), ("Hopper-3x1", 200), ("Walker2d-2x3", 200), ("Ant-4x2", 60)])
def test_matches_gymnasium_robotics_step_by_step(task, steps):
    """Per-agent obs (padded), state, reward and termination equal MaMuJoCo's on episode 1 of a batch of 2."""
    robot, conf = task.split("-")
    env = make(f"mamujoco/{task}", num_envs=2, seed=3)
    ref = _import_mamujoco()(robot, conf)
    ts = env.reset()
    obs, _ = ref.reset(seed=env.episode_seeds[1])
    agents = ref.possible_agents

    def check(ts, obs):
        for i, a in enumerate(agents):
            d = env.agent_obs_dims[i]
            np.testing.assert_allclose(ts.obs[1, i, :d].numpy(), obs[a], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ts.state[1].numpy(), ref.state(), rtol=1e-5, atol=1e-5)

    check(ts, obs)
    g = torch.Generator().manual_seed(0)
    big_qvel = False
    for t in range(steps):
        acts = 1.3 * (2 * torch.rand(2, env.spec.n_agents, env.spec.n_actions, generator=g) - 1)  # some out of bounds: clipped
        ts = env.step(acts)
        obs, rew, term, trunc, _ = ref.step({a: np.clip(acts[1, i, : env.agent_action_dims[i]].double().numpy(), -1, 1)
                                             for i, a in enumerate(agents)})
        check(ts, obs)
        assert ts.reward[1].item() == pytest.approx(rew[agents[0]], rel=1e-5, abs=1e-5)
        assert bool(ts.terminated[1]) == term[agents[0]] and not ts.truncated[1]
        big_qvel |= bool((np.abs(env.envs[1].data.qvel) > 10).any())
        if ts.done[1]:
            break
    if task in ("Hopper-3x1", "Walker2d-2x3"):
        assert ts.terminated[1], "random actions topple this robot within 200 steps"
    if task == "Walker2d-2x3":
        assert big_qvel  # the state clips joint velocities at 10, agent observations do not: covered


def test_truncation_termination_and_frozen_episodes():
    env = make("mamujoco/HalfCheetah-2x3", num_envs=2, seed=0, episode_limit=5)
    env.reset()
    for t in range(1, 6):
        ts = env.step(torch.zeros(2, 2, 3))
        assert ts.truncated.tolist() == [t == 5] * 2 and not ts.terminated.any()
    frozen = ts.obs.clone()
    ts = env.step(torch.ones(2, 2, 3))
    assert torch.equal(ts.obs, frozen) and ts.reward.tolist() == [0.0, 0.0] and not ts.done.any()
    # Hopper falls: terminated (not truncated), that episode frozen while the other runs on
    env = make("mamujoco/Hopper-3x1", num_envs=2, seed=0)
    env.reset()
    g = torch.Generator().manual_seed(0)
    ended = None
    for t in range(300):
        acts = 2 * torch.rand(2, 3, 1, generator=g) - 1
        if ended is not None:
            acts[1 - ended] = 0.0  # keep the other one standing a bit
        ts = env.step(acts)
        if ended is None and ts.terminated.any():
            ended = int(ts.terminated.nonzero()[0])
            assert not ts.truncated.any() and not env.active[ended]
            frozen_obs, t_end = ts.obs[ended].clone(), env.t[ended].item()
        elif ended is not None:
            assert torch.equal(ts.obs[ended], frozen_obs) and ts.reward[ended] == 0 and env.t[ended] == t_end
            if not env.active.any():
                break
    assert ended is not None


def test_determinism_under_seed():
    def run(seed, reset_seed=None):
        env = make("mamujoco/Hopper-3x1", num_envs=3, seed=seed)
        ts = env.reset(seed=reset_seed)
        g = torch.Generator().manual_seed(1)
        states = [ts.state]
        for _ in range(10):
            states.append(env.step(2 * torch.rand(3, 3, 1, generator=g) - 1).state)
        return torch.stack(states)

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(run(0, reset_seed=5), a)


def test_action_bounds_clip_or_error():
    def final_state(scale, **options):
        env = make("mamujoco/HalfCheetah-2x3", num_envs=1, seed=0, **options)
        env.reset()
        g = torch.Generator().manual_seed(2)
        for _ in range(5):
            ts = env.step(scale * (2 * torch.rand(1, 2, 3, generator=g) - 1))
        return ts.state, ts.reward

    clipped = final_state(3.0)
    g = torch.Generator().manual_seed(2)
    env = make("mamujoco/HalfCheetah-2x3", num_envs=1, seed=0)
    env.reset()
    for _ in range(5):
        ts = env.step((3.0 * (2 * torch.rand(1, 2, 3, generator=g) - 1)).clamp(-1, 1))
    assert torch.equal(ts.state, clipped[0]) and torch.equal(ts.reward, clipped[1])
    strict = make("mamujoco/HalfCheetah-2x3", num_envs=1, seed=0, out_of_bounds="error")
    strict.reset()
    acts = torch.zeros(1, 2, 3)
    acts[0, 1, 2] = -1.25
    with pytest.raises(ValueError, match=r"mamujoco/HalfCheetah-2x3: action -1\.25 in env 0, agent 1, dim 2 is outside"):
        strict.step(acts)
    acts[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="non-finite action"):
        env.reset()
        env.step(acts)


def test_options_and_bad_ids():
    env = make("mamujoco/Ant-2x4", gym_kwargs={"include_cfrc_ext_in_observation": False})
    assert env.spec.state_dim == 27 and env.agent_obs_dims == (21, 21)  # MABCQ's Ant state (Table 6)
    assert make("mamujoco/HalfCheetah-2x3", agent_obsk=0).agent_obs_dims == (11, 11)  # OMAR's setting
    with pytest.raises(ValueError, match="expected an id 'mamujoco/<Robot>-<conf>'"):
        make("mamujoco/HalfCheetah")
    with pytest.raises(ValueError, match="cannot build HalfCheetah-7x9"):
        make("mamujoco/HalfCheetah-7x9")
    with pytest.raises(ValueError, match="agent_obsk must be an int >= 0"):
        make("mamujoco/HalfCheetah-2x3", agent_obsk=-1)
