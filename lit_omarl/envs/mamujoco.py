"""Multi-agent MuJoCo (gymnasium-robotics ``mamujoco_v1``) behind the batched protocol.

``make("mamujoco/<Robot>-<conf>", num_envs=B, seed=s)`` runs B episodes of a
MaMuJoCo factorisation, e.g. ``mamujoco/HalfCheetah-2x3``, ``HalfCheetah-6x1``,
``Walker2d-2x3``, ``Hopper-3x1``, ``Ant-2x4``, ``Ant-4x2`` (any scenario and
``agent_conf`` that gymnasium-robotics accepts). Needs the extra ``mujoco``
(``pip install lit-omarl[mujoco]``); importing this module imports neither.

Facts taken from gymnasium-robotics 1.4 (``MultiAgentMujocoEnv``) and
gymnasium 1.x MuJoCo v5 envs, which this module relies on:

* MaMuJoCo wraps one single-agent gymnasium env ``<Robot>-v5``; its global
  state ``state()`` is that env's observation (HalfCheetah 17, Walker2d 17,
  Hopper 11, Ant 105 = 27 + 78 contact forces). Every agent's observation is
  a fixed selection of the same quantities: ``observation_factorization[agent]``
  holds their indices in the state vector. So we step the single-agent env
  directly (its ``step`` returns the state) and gather all agents'
  observations at once with one index tensor. One difference is kept:
  Hopper-v5 and Walker2d-v5 clip the joint velocities of their observation
  (our state) to [-10, 10], while MaMuJoCo builds agent observations from
  the raw ``data.qvel``; we gather agent observations from the state with the
  raw velocities put back, so they equal MaMuJoCo's ``_get_obs_agent``
  (checked step by step in the tests) and the state equals its ``state()``.
  (Ant's contact forces are clipped to [-1, 1] in both.)
* Agent ``i`` controls the actuators ``agent_action_partitions[i]``; the
  joint action is assembled with one index tensor too. Bounds: [-1, 1] for
  the six benchmark tasks (read from the action space; a task whose
  actuators have different bounds is refused).
* Reward: the single-agent reward (forward velocity, control cost, healthy
  reward, contact cost as defined by ``<Robot>-v5``), shared by all agents:
  it is our team reward.
* ``terminated``: the v5 env's own termination (Hopper, Walker2d and Ant
  terminate when unhealthy; HalfCheetah never). ``truncated``: our
  ``episode_limit`` (default 1000, gymnasium's and the papers' horizon);
  gymnasium's TimeLimit wrapper is bypassed (we call ``env.unwrapped``).

Observation padding: agents with fewer observation entries (HalfCheetah-6x1:
9, 9, 8, 9, 9, 8; Hopper-3x1: 8, 9, 8) are zero-padded at the end; the env
exposes ``agent_obs_dims`` and ``obs_mask`` [N, O] (see ``envs/continuous.py``).
Action sizes are equal in the six benchmark tasks; unequal ones are padded
the same way (``agent_action_dims``, ``action_mask``).

Options (``env_options``): ``agent_obsk`` (default 1 as gymnasium-robotics;
OMAR's HalfCheetah data used 0), ``episode_limit`` (1000), ``gym_kwargs``
(keyword arguments of ``gymnasium.make("<Robot>-v5")``, e.g.
``{"include_cfrc_ext_in_observation": false}`` for the 27-dimensional Ant
state of MABCQ's Table 6; for Ant without contact forces the local
observation categories drop ``cfrc_ext`` automatically), ``local_categories``
and ``global_categories`` (MaMuJoCo's, JSON lists), ``out_of_bounds``
("clip" or "error", see ``envs/continuous.py``).

Speed: the B MuJoCo envs are stepped one after the other in Python (the
physics is MuJoCo's C code; gymnasium's reward code is kept, not
re-implemented); everything else (bounds, joint-action assembly, observation
gathering, padding) is vectorised over the batch. Finished episodes are not
stepped.

Randomness: ``reset()`` draws one 31-bit seed per episode from the env's torch
generator and calls ``reset(seed=...)`` of each gymnasium env, so a run is a
function of (task, options, B, seed) only.

MuJoCo writes warnings to ``MUJOCO_LOG.TXT`` in the working directory; the
warnings raised while building the models (e.g. HalfCheetah's deprecated
``settotalmass``) are routed to this module's logger instead. Warnings during
simulation (unstable physics) still go to that file.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.envs.continuous import OutOfBounds, check_out_of_bounds_option, padding_mask, prepare_actions
from lit_omarl.spec import EnvSpec

log = logging.getLogger(__name__)

EPISODE_LIMIT = 1000
#: The factorisations of the papers' tables (cfcql.md Table 2 / 6, mabcq.md Fig. 2).
BENCHMARK_TASKS = ("HalfCheetah-2x3", "HalfCheetah-6x1", "Walker2d-2x3", "Hopper-3x1", "Ant-2x4", "Ant-4x2")


def _import_mamujoco() -> Any:
    """``MultiAgentMujocoEnv`` without gymnasium-robotics' import-time notice on stderr."""
    with contextlib.redirect_stderr(io.StringIO()):
        from gymnasium_robotics.envs.multiagent_mujoco.mujoco_multi import MultiAgentMujocoEnv
    return MultiAgentMujocoEnv


@contextlib.contextmanager
def _mujoco_warnings_to_log() -> Iterator[None]:
    """Route MuJoCo warnings to :data:`log` (not stdout / MUJOCO_LOG.TXT) inside the block."""
    import mujoco

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: log.debug("MuJoCo: %s", msg))
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def parse_task(env_id: str) -> tuple[str, str]:
    """``mamujoco/HalfCheetah-2x3`` -> ("HalfCheetah", "2x3")."""
    head, _, task = env_id.partition("/")
    robot, sep, conf = task.rpartition("-")
    if head != "mamujoco" or not sep or not robot or not conf:
        raise ValueError(f"mamujoco: expected an id 'mamujoco/<Robot>-<conf>' (e.g. mamujoco/HalfCheetah-2x3), got {env_id!r}")
    return robot, conf


def _build_one(robot: str, conf: str, agent_obsk: int, gym_kwargs: dict, local_categories: Any,
               global_categories: Any) -> Any:
    cls = _import_mamujoco()
    kwargs: dict[str, Any] = dict(gym_kwargs)
    if local_categories is None and robot == "Ant" and gym_kwargs.get("include_cfrc_ext_in_observation") is False:
        local_categories = [["qpos", "qvel"]] + [["qpos"]] * agent_obsk
    if local_categories is not None:
        kwargs["local_categories"] = [list(c) for c in local_categories]
    if global_categories is not None:
        kwargs["global_categories"] = tuple(global_categories)
    with _mujoco_warnings_to_log():
        try:
            return cls(robot, conf, agent_obsk=agent_obsk, **kwargs)
        except (NotImplementedError, ValueError, KeyError, IndexError, TypeError, AssertionError) as err:
            raise ValueError(f"mamujoco: cannot build {robot}-{conf} with agent_obsk={agent_obsk}, options {kwargs}: "
                             f"{type(err).__name__}: {err}") from err
        except Exception as err:  # gymnasium-robotics raises bare Exception for unknown agent_conf strings
            if type(err) is Exception:
                raise ValueError(f"mamujoco: cannot build {robot}-{conf}: {err}") from err
            raise


class _Layout:
    """Index tensors mapping the single-agent env to the agents of one factorisation."""

    def __init__(self, ma_env: Any, env_id: str) -> None:
        agents = list(ma_env.possible_agents)
        fac = ma_env.observation_factorization
        if fac is None:
            raise ValueError(f"{env_id}: the MuJoCo env exposes no observation structure; cannot vectorise observations")
        obs_idx = [np.asarray(fac[a], dtype=np.int64) for a in agents]
        self.agent_obs_dims = tuple(len(i) for i in obs_idx)
        self.obs_mask = padding_mask(self.agent_obs_dims)
        o = max(self.agent_obs_dims)
        self.obs_index = torch.zeros(len(agents), o, dtype=torch.long)
        for i, idx in enumerate(obs_idx):
            self.obs_index[i, : len(idx)] = torch.from_numpy(idx)

        act_ids = []
        for part in ma_env.agent_action_partitions:
            ids = []
            for node in part:
                a = np.atleast_1d(np.asarray(node.act_ids)).tolist()
                if len(a) != 1:
                    raise ValueError(f"{env_id}: a body part drives {len(a)} actuators; expected exactly one")
                ids.append(int(a[0]))
            act_ids.append(ids)
        self.agent_action_dims = tuple(len(a) for a in act_ids)
        self.action_mask = padding_mask(self.agent_action_dims)
        base = ma_env.single_agent_env.unwrapped
        self.global_action_dim = int(base.action_space.shape[0])
        flat = [i for ids in act_ids for i in ids]
        if sorted(flat) != list(range(self.global_action_dim)):
            raise ValueError(f"{env_id}: the agents' actuators {act_ids} do not cover the {self.global_action_dim} actuators exactly once")
        # joint[:, act_flat] = actions[:, mask]  (row-major order of the True entries of action_mask)
        self.act_flat = torch.tensor(flat, dtype=torch.long)
        low, high = np.asarray(base.action_space.low), np.asarray(base.action_space.high)
        if not (np.all(low == low[0]) and np.all(high == high[0])):
            raise ValueError(f"{env_id}: actuator bounds differ ({low.tolist()} .. {high.tolist()}); one [low, high] per task is required")
        self.low, self.high = float(low[0]), float(high[0])
        self.state_dim = int(base.observation_space.shape[0])
        structure = getattr(base, "observation_structure", {})
        start = int(structure.get("qpos", 0))
        self.qvel_slice = slice(start, start + int(structure.get("qvel", 0)))  # raw data.qvel goes here for agent obs


class MaMuJoCoEnv(BatchedEnv):
    """B episodes of one MaMuJoCo task (see the module docstring).

    Attributes:
        agent_obs_dims / obs_mask: real observation sizes and the [N, O] mask.
        agent_action_dims / action_mask: real action sizes and the [N, A] mask.
        envs: the B gymnasium single-agent MuJoCo envs (unwrapped).
        episode_seeds: the seeds given to the B envs by the last ``reset()``.
        ma_env: one ``MultiAgentMujocoEnv`` describing the factorisation.
    """

    def __init__(self, robot: str, conf: str, num_envs: int = 1, seed: int = 0, *, agent_obsk: int = 1,
                 episode_limit: int = EPISODE_LIMIT, gym_kwargs: dict | None = None,
                 local_categories: Sequence[Sequence[str]] | None = None, global_categories: Sequence[str] | None = None,
                 out_of_bounds: OutOfBounds = "clip") -> None:
        env_id = f"mamujoco/{robot}-{conf}"
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if int(episode_limit) < 1:
            raise ValueError(f"{env_id}: episode_limit must be >= 1, got {episode_limit}")
        if agent_obsk is None or int(agent_obsk) < 0:
            raise ValueError(f"{env_id}: agent_obsk must be an int >= 0, got {agent_obsk!r}")
        if gym_kwargs is not None and not isinstance(gym_kwargs, dict):
            raise ValueError(f"{env_id}: gym_kwargs must be a dict of gymnasium.make options, got {type(gym_kwargs).__name__}")
        self.out_of_bounds = check_out_of_bounds_option(env_id, out_of_bounds)
        gym_kwargs = dict(gym_kwargs or {})
        build = (robot, conf, int(agent_obsk), gym_kwargs, local_categories, global_categories)
        self.ma_env = _build_one(*build)
        self.layout = _Layout(self.ma_env, env_id)
        self.envs = [self.ma_env.single_agent_env.unwrapped]
        with _mujoco_warnings_to_log():
            for _ in range(int(num_envs) - 1):
                self.envs.append(_build_one(*build).single_agent_env.unwrapped)
        lay = self.layout
        options: dict[str, Any] = {"agent_obsk": int(agent_obsk), "episode_limit": int(episode_limit),
                                   "out_of_bounds": out_of_bounds}
        if gym_kwargs:
            options["gym_kwargs"] = gym_kwargs
        if local_categories is not None:
            options["local_categories"] = [list(c) for c in local_categories]
        if global_categories is not None:
            options["global_categories"] = list(global_categories)
        spec = EnvSpec(env_id=env_id, n_agents=len(lay.agent_obs_dims), obs_dim=int(lay.obs_index.shape[1]),
                       state_dim=lay.state_dim, n_actions=int(lay.action_mask.shape[1]), action_type="continuous",
                       episode_limit=int(episode_limit), env_options=options, action_low=lay.low, action_high=lay.high)
        super().__init__(spec, num_envs, seed)
        self.agent_obs_dims, self.obs_mask = lay.agent_obs_dims, lay.obs_mask
        self.agent_action_dims, self.action_mask = lay.agent_action_dims, lay.action_mask
        self._state = np.zeros((self.num_envs, lay.state_dim), dtype=np.float64)
        self._agent_source = np.zeros_like(self._state)  # the state with raw joint velocities
        self.episode_seeds: list[int] = []

    # ------------------------------------------------------------------ helpers
    def _record(self, b: int, obs: np.ndarray) -> None:
        self._state[b] = obs
        self._agent_source[b] = obs
        qv = self.layout.qvel_slice
        if qv.stop > qv.start:
            self._agent_source[b, qv] = self.envs[b].data.qvel.ravel()

    def _timestep(self, reward: np.ndarray, terminated: np.ndarray) -> TimeStep:
        b, n = self.num_envs, self.spec.n_agents
        state = torch.from_numpy(self._state.astype(np.float32))
        source = torch.from_numpy(self._agent_source.astype(np.float32))
        obs = source[:, self.layout.obs_index] * self.obs_mask  # [B, N, O], padding zeroed
        return TimeStep(obs=obs, state=state, avail=torch.ones(b, n, self.spec.n_actions, dtype=torch.bool),
                        reward=torch.from_numpy(reward.astype(np.float32)), terminated=torch.from_numpy(terminated),
                        truncated=torch.zeros(b, dtype=torch.bool))

    # ------------------------------------------------------------------ protocol
    def _reset(self) -> TimeStep:
        self.episode_seeds = [int(s) for s in torch.randint(0, 2**31 - 1, (self.num_envs,), generator=self.generator)]
        for b, env in enumerate(self.envs):
            obs, _ = env.reset(seed=self.episode_seeds[b])
            self._record(b, obs)
        b = self.num_envs
        return self._timestep(np.zeros(b), np.zeros(b, dtype=bool))

    def _step(self, actions: torch.Tensor) -> TimeStep:
        acts = prepare_actions(self.spec.env_id, actions, self.active, self.spec.action_low, self.spec.action_high,
                               self.action_mask, self.out_of_bounds)
        joint = np.zeros((self.num_envs, self.layout.global_action_dim))
        joint[:, self.layout.act_flat.numpy()] = acts[:, self.action_mask].numpy()
        reward = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        for b in self.active.nonzero().flatten().tolist():
            obs, r, term, _, _ = self.envs[b].step(joint[b])
            self._record(b, obs)
            reward[b], terminated[b] = r, term
        return self._timestep(reward, terminated)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def mamujoco_spec(env_id: str, **options: Any) -> EnvSpec:
    """The EnvSpec of a MaMuJoCo task (builds one env; imports MuJoCo)."""
    return make_mamujoco(env_id, num_envs=1, **options).spec


def make_mamujoco(env_id: str, *, num_envs: int = 1, seed: int = 0, agent_obsk: int = 1,
                  episode_limit: int = EPISODE_LIMIT, gym_kwargs: dict | None = None,
                  local_categories: list | None = None, global_categories: list | None = None,
                  out_of_bounds: OutOfBounds = "clip") -> MaMuJoCoEnv:
    """Factory of ``mamujoco/<Robot>-<conf>`` (registered in :mod:`lit_omarl.envs`); options in the module docstring."""
    robot, conf = parse_task(env_id)
    return MaMuJoCoEnv(robot, conf, num_envs, seed, agent_obsk=agent_obsk, episode_limit=episode_limit,
                       gym_kwargs=gym_kwargs, local_categories=local_categories, global_categories=global_categories,
                       out_of_bounds=out_of_bounds)
