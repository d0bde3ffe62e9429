"""One batched multi-agent environment protocol.

Every environment of lit_omarl (toy games written here, SMAX, MPE, MaMuJoCo)
runs a batch of B independent episodes at once and speaks torch tensors:

``reset(seed=None) -> TimeStep`` and ``step(actions) -> TimeStep`` with
    obs        float32 [B, N, O]
    state      float32 [B, S]
    avail      bool    [B, N, A]   (all True for continuous tasks)
    reward     float32 [B]         team reward of the step just taken (0 at reset)
    terminated bool    [B]         true termination (never the time limit)
    truncated  bool    [B]         the episode hit ``spec.episode_limit``
    info       dict of [B] tensors, e.g. ``won`` where the task has wins

Episodes do not auto-reset: once an episode is done (terminated or
truncated) it stays done, its reward is 0 and its observations are frozen,
until the next ``reset()``. ``active`` [B] tells which episodes still run.
Evaluation and dataset generation both run "B episodes until all are done".
Actions are long [B, N] (discrete) or float32 [B, N, A] (continuous).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lit_omarl.spec import EnvSpec


@dataclass
class TimeStep:
    obs: torch.Tensor
    state: torch.Tensor
    avail: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class BatchedEnv:
    """Base class of batched environments. Subclasses set ``spec`` and implement
    ``_reset`` / ``_step`` on all B episodes; the base class does the
    bookkeeping of done episodes, step counters and time-limit truncation."""

    spec: EnvSpec

    def __init__(self, spec: EnvSpec, num_envs: int, seed: int = 0) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.spec = spec
        self.num_envs = num_envs
        self.generator = torch.Generator().manual_seed(int(seed))
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.active = torch.zeros(num_envs, dtype=torch.bool)
        self._last: TimeStep | None = None

    # ---- to implement -------------------------------------------------
    def _reset(self) -> TimeStep:
        """Start B new episodes (use ``self.generator`` for randomness)."""
        raise NotImplementedError

    def _step(self, actions: torch.Tensor) -> TimeStep:
        """Advance all B episodes; the base class masks the done ones.
        Must set ``terminated``; ``truncated`` is filled in by the base class."""
        raise NotImplementedError

    # ---- public protocol -----------------------------------------------
    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self.t.zero_()
        self.active.fill_(True)
        ts = self._reset()
        ts.terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        ts.truncated = torch.zeros(self.num_envs, dtype=torch.bool)
        ts.reward = torch.zeros(self.num_envs, dtype=torch.float32)
        self._last = ts
        return ts

    def step(self, actions: torch.Tensor) -> TimeStep:
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        self._check_actions(actions)
        was_active = self.active.clone()
        ts = self._step(actions)
        self.t += was_active.long()
        truncated = was_active & ~ts.terminated & (self.t >= self.spec.episode_limit)
        terminated = was_active & ts.terminated
        last = self._last
        keep = ~was_active  # finished before this step: freeze
        ts.obs = torch.where(keep[:, None, None], last.obs, ts.obs)
        ts.state = torch.where(keep[:, None], last.state, ts.state)
        ts.avail = torch.where(keep[:, None, None], last.avail, ts.avail)
        ts.reward = torch.where(was_active, ts.reward.float(), torch.zeros_like(ts.reward, dtype=torch.float32))
        for key, value in list(ts.info.items()):
            if key in last.info and value.shape == last.info[key].shape:
                ts.info[key] = torch.where(keep, last.info[key], value)
        ts.terminated = terminated
        ts.truncated = truncated
        self.active = was_active & ~(terminated | truncated)
        self._last = ts
        return ts

    def _check_actions(self, actions: torch.Tensor) -> None:
        b, n = self.num_envs, self.spec.n_agents
        if self.spec.discrete:
            if actions.shape != (b, n):
                raise ValueError(f"{self.spec.env_id}: expected actions of shape {(b, n)}, got {tuple(actions.shape)}")
            if actions.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"{self.spec.env_id}: discrete actions must be integer, got {actions.dtype}")
            if self._last is not None:
                ok = self._last.avail.gather(-1, actions.long().clamp(0, self.spec.n_actions - 1)[..., None])[..., 0]
                bad = self.active & ~(ok.all(-1) & (actions >= 0).all(-1) & (actions < self.spec.n_actions).all(-1))
                if bad.any():
                    raise ValueError(f"{self.spec.env_id}: unavailable action taken in env(s) {bad.nonzero().flatten().tolist()[:8]}")
        elif actions.shape != (b, n, self.spec.n_actions):
            raise ValueError(f"{self.spec.env_id}: expected actions of shape {(b, n, self.spec.n_actions)}, got {tuple(actions.shape)}")

    def close(self) -> None:  # pragma: no cover - nothing to free for toy games
        pass
