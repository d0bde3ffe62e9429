"""The real SMAC (StarCraft II) behind the batched protocol: ``smac/<map>`` (alias ``sc2/<map>``).

Optional and not runnable on machines without StarCraft II: for users who
have the ``smac`` package (https://github.com/oxwhirl/smac) and the game
(``SC2PATH``), e.g. to evaluate a policy trained on imported CFCQL / ICQ
SMAC data (``lit-omarl data import --format cfcql-h5``, env id ``sc2/<map>``)
on the real maps. ``smac`` is imported only when an env is built; without it
:class:`SMACUnavailableError` (an ImportError) says what to install.

``make("smac/<map>", num_envs=B, seed=s)`` runs B ``smac.env.StarCraft2Env``
instances (one game process each; instance i gets game seed ``s + i``) and
translates the SMAC API, which this module relies on:

* ``get_env_info()`` -> ``n_agents``, ``obs_shape``, ``state_shape``,
  ``n_actions``, ``episode_limit`` (the EnvSpec; ``episode_limit`` may be
  lowered with the option of that name).
* ``reset()``, ``get_obs()`` (N arrays [O]), ``get_state()`` [S],
  ``get_avail_actions()`` (N lists of A 0/1) -> obs [B, N, O] float32,
  state [B, S] float32, avail [B, N, A] bool.
* ``step(actions)`` with a list of N ints -> ``(reward, terminated, info)``;
  ``info["battle_won"]`` -> ``won``. SMAC also sets ``terminated`` when the
  episode hits its time limit and marks that with ``info["episode_limit"]``;
  such an end is reported as ``truncated`` (time limit), never as
  ``terminated`` (docs/CONTRACTS.md), like pymarl does for its buffers.
* No auto-reset: only running episodes are stepped; a finished game waits,
  frozen, until the next ``reset()``.

Stepping is a Python loop over the B games (StarCraft II runs one game per
process); ``close()`` shuts the game processes down.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

PREFIXES = ("smac", "sc2")


class SMACUnavailableError(ImportError):
    """The ``smac`` package (or StarCraft II) is missing."""


def _starcraft2env_class() -> Callable[..., Any]:
    try:
        from smac.env import StarCraft2Env
    except ImportError as err:
        raise SMACUnavailableError(
            "env 'smac/<map>' needs the smac package and StarCraft II: pip install "
            "git+https://github.com/oxwhirl/smac.git, install StarCraft II with the SMAC maps and set SC2PATH "
            f"({err}). Without StarCraft II, use the SMAX re-implementation: env 'smax/<map>'.") from err
    return StarCraft2Env


class SMACEnv(BatchedEnv):
    """B real SMAC games of one map (module docstring).

    Args:
        map_name: SMAC map, e.g. ``2s3z``, ``corridor``.
        num_envs: games run side by side.
        seed: game seed of instance 0 (instance i: ``seed + i``).
        episode_limit: lower time limit than the map's (None: the map's own).
        env_kwargs: more keyword arguments of ``StarCraft2Env`` (e.g. ``difficulty``).
        env_cls: the class to instantiate (default ``smac.env.StarCraft2Env``; tests pass a fake).
    """

    def __init__(self, map_name: str, num_envs: int = 1, seed: int = 0, *, episode_limit: int | None = None,
                 env_kwargs: dict[str, Any] | None = None, env_cls: Callable[..., Any] | None = None,
                 env_id: str | None = None) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        cls = env_cls if env_cls is not None else _starcraft2env_class()
        kwargs = dict(env_kwargs or {})
        for reserved in ("map_name", "seed"):
            if reserved in kwargs:
                raise ValueError(f"smac: env_kwargs must not contain {reserved!r} (set by the adapter)")
        self.games = []
        try:
            for i in range(int(num_envs)):
                self.games.append(cls(map_name=map_name, seed=int(seed) + i, **kwargs))
            info = self.games[0].get_env_info()
        except Exception:
            self.close()
            raise
        limit = int(info["episode_limit"])
        if episode_limit is not None:
            if not 1 <= int(episode_limit) <= limit:
                self.close()
                raise ValueError(f"smac/{map_name}: episode_limit must be in [1, {limit}] (the map's), got {episode_limit}")
            limit = int(episode_limit)
        options: dict[str, Any] = {"episode_limit": limit}
        if kwargs:
            options["env_kwargs"] = kwargs
        spec = EnvSpec(env_id=env_id or f"smac/{map_name}", n_agents=int(info["n_agents"]), obs_dim=int(info["obs_shape"]),
                       state_dim=int(info["state_shape"]), n_actions=int(info["n_actions"]), episode_limit=limit,
                       env_options=options)
        super().__init__(spec, int(num_envs), seed)
        self.map_name = map_name

    # ---- translation of one game ----------------------------------------
    def _observe(self, game: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.spec
        obs = np.asarray(game.get_obs(), dtype=np.float32).reshape(s.n_agents, s.obs_dim)
        state = np.asarray(game.get_state(), dtype=np.float32).reshape(s.state_dim)
        avail = np.asarray(game.get_avail_actions()).reshape(s.n_agents, s.n_actions).astype(bool)
        return obs, state, avail

    def _stack(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(np.stack([p[k] for p in parts])) for k in range(3))

    def _reset(self) -> TimeStep:
        parts = []
        for game in self.games:
            game.reset()
            parts.append(self._observe(game))
        obs, state, avail = self._stack(parts)
        b = self.num_envs
        return TimeStep(obs=obs, state=state, avail=avail, reward=torch.zeros(b), terminated=torch.zeros(b, dtype=torch.bool),
                        truncated=torch.zeros(b, dtype=torch.bool), info={"won": torch.zeros(b, dtype=torch.bool)})

    def _step(self, actions: torch.Tensor) -> TimeStep:
        b, s = self.num_envs, self.spec
        reward = torch.zeros(b)
        terminated = torch.zeros(b, dtype=torch.bool)
        won = torch.zeros(b, dtype=torch.bool)
        acts = actions.detach().cpu().long().tolist()
        parts = []
        for i, game in enumerate(self.games):
            if not bool(self.active[i]):  # finished: not stepped (the base class keeps its last values)
                parts.append((np.zeros((s.n_agents, s.obs_dim), np.float32), np.zeros(s.state_dim, np.float32),
                              np.zeros((s.n_agents, s.n_actions), bool)))
                continue
            r, term, info = game.step([int(a) for a in acts[i]])
            info = info or {}
            reward[i] = float(r)
            won[i] = bool(info.get("battle_won", False))
            terminated[i] = bool(term) and not bool(info.get("episode_limit", False))
            parts.append(self._observe(game))
        obs, state, avail = self._stack(parts)
        return TimeStep(obs=obs, state=state, avail=avail, reward=reward, terminated=terminated,
                        truncated=torch.zeros(b, dtype=torch.bool), info={"won": won})

    def close(self) -> None:
        for game in getattr(self, "games", []):
            try:
                game.close()
            except Exception:  # noqa: BLE001 - a game that failed to start may not close cleanly
                pass


def make_smac(env_id: str, *, num_envs: int = 1, seed: int = 0, episode_limit: int | None = None,
              env_kwargs: dict[str, Any] | None = None, env_cls: Callable[..., Any] | None = None) -> SMACEnv:
    """Factory of ``smac/<map>`` and ``sc2/<map>`` (register it lazily as ``"lit_omarl.envs.smac_real:make_smac"``).

    Args:
        episode_limit: a lower time limit than the map's (None: the map's own).
        env_kwargs: other ``smac.env.StarCraft2Env`` arguments (e.g. ``{"difficulty": "7"}``).
        env_cls: the game class (default ``smac.env.StarCraft2Env``, imported now; tests pass a fake).
    """
    head, _, map_name = env_id.partition("/")
    if head not in PREFIXES or not map_name:
        raise ValueError(f"smac: expected an id 'smac/<map>' or 'sc2/<map>' (e.g. smac/2s3z), got {env_id!r}")
    return SMACEnv(map_name, num_envs, seed, episode_limit=episode_limit, env_kwargs=env_kwargs, env_cls=env_cls,
                   env_id=env_id)


__all__ = ["SMACEnv", "SMACUnavailableError", "make_smac"]
