"""Two-agent one-step matrix games.

Each episode is a single joint action (a^1, a^2) of two agents with K actions
each; the team reward is ``payoff[a^1][a^2]`` and the episode terminates.
Agents observe a constant 1-d vector (1.0), the state is the same constant and
every action is always available.

Ids:
* ``matrix`` with option ``payoff`` (a K x K nested list of finite numbers).
* ``matrix/xor``   - InSPO Table 1 / Fig. 1(a): r(A,A)=0, r(A,B)=r(B,A)=1, r(B,B)=-2.
* ``matrix/mne``   - InSPO Table 2 / Fig. 2(a): three Nash equilibria on the
  diagonal, r(A,A)=5, r(B,B)=10, r(C,C)=20. The off-diagonal payoffs are not
  given in the paper's text; we take 0.
* ``matrix/mabcq`` - MABCQ Table 1: [[1, 5], [6, 1]] (optimum (a2, a1) = 6).

Action index 0 is A (a_1), 1 is B (a_2), 2 is C.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

PRESETS: dict[str, list[list[float]]] = {
    "xor": [[0.0, 1.0], [1.0, -2.0]],
    "mne": [[5.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 20.0]],
    "mabcq": [[1.0, 5.0], [6.0, 1.0]],
}


def check_payoff(payoff: Sequence[Sequence[float]], env_id: str = "matrix") -> list[list[float]]:
    """Return ``payoff`` as a K x K list of floats (K >= 2) or raise ValueError."""
    try:
        rows = [[float(x) for x in row] for row in payoff]
    except (TypeError, ValueError):
        raise ValueError(f"{env_id}: payoff must be a K x K nested list of numbers, got {payoff!r}") from None
    k = len(rows)
    if k < 2 or any(len(row) != k for row in rows):
        raise ValueError(f"{env_id}: payoff must be square K x K with K >= 2 (2 agents, K actions), got row lengths {[len(r) for r in rows]}")
    if not all(math.isfinite(x) for row in rows for x in row):
        raise ValueError(f"{env_id}: payoff entries must be finite, got {rows}")
    return rows


class MatrixGame(BatchedEnv):
    """One-step cooperative matrix game for 2 agents (see module docstring)."""

    def __init__(self, payoff: Sequence[Sequence[float]], num_envs: int = 1, seed: int = 0, env_id: str = "matrix", env_options: dict | None = None) -> None:
        rows = check_payoff(payoff, env_id)
        self.payoff = torch.tensor(rows, dtype=torch.float32)
        k = len(rows)
        spec = EnvSpec(env_id=env_id, n_agents=2, obs_dim=1, state_dim=1, n_actions=k, episode_limit=1,
                       env_options=dict(env_options or {}))
        super().__init__(spec, num_envs, seed)
        self.max_return = float(self.payoff.max())

    def _observe(self) -> TimeStep:
        b, k = self.num_envs, self.spec.n_actions
        return TimeStep(
            obs=torch.ones(b, 2, 1),
            state=torch.ones(b, 1),
            avail=torch.ones(b, 2, k, dtype=torch.bool),
            reward=torch.zeros(b),
            terminated=torch.zeros(b, dtype=torch.bool),
            truncated=torch.zeros(b, dtype=torch.bool),
        )

    def _reset(self) -> TimeStep:
        return self._observe()

    def _step(self, actions: torch.Tensor) -> TimeStep:
        a = actions.long().clamp(0, self.spec.n_actions - 1)  # done episodes may carry junk actions
        ts = self._observe()
        ts.reward = self.payoff[a[:, 0], a[:, 1]]
        ts.terminated = torch.ones(self.num_envs, dtype=torch.bool)
        return ts

    def expert(self) -> "MatrixExpert":
        return MatrixExpert(self.payoff)


class MatrixExpert:
    """Always plays the best joint action (the first one in row-major order on ties)."""

    def __init__(self, payoff: torch.Tensor) -> None:
        k = payoff.shape[1]
        best = int(torch.argmax(payoff.flatten()))
        self.joint = torch.tensor([best // k, best % k])

    def begin(self, ts: TimeStep, generator: torch.Generator) -> None:
        pass

    def act(self, ts: TimeStep, generator: torch.Generator) -> torch.Tensor:
        return self.joint.expand(ts.obs.shape[0], 2).clone()


def make_matrix(env_id: str, *, num_envs: int = 1, seed: int = 0, payoff: Sequence[Sequence[float]] | None = None) -> MatrixGame:
    """``matrix`` needs ``payoff``; ``matrix/<preset>`` has a fixed one."""
    if env_id == "matrix":
        if payoff is None:
            raise ValueError("matrix: option 'payoff' (a K x K nested list) is required, e.g. payoff=[[1, 0], [0, 1]]")
        rows = check_payoff(payoff, env_id)
        return MatrixGame(rows, num_envs, seed, env_id, {"payoff": rows})
    name = env_id.partition("/")[2]
    if name not in PRESETS:
        raise ValueError(f"unknown env id {env_id!r}; matrix presets: {', '.join('matrix/' + p for p in PRESETS)} (or 'matrix' with payoff=...)")
    if payoff is not None:
        raise ValueError(f"{env_id}: has a fixed payoff; use env 'matrix' with payoff=... for a custom game")
    return MatrixGame(PRESETS[name], num_envs, seed, env_id, {})
