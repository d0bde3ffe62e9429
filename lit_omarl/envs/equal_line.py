"""Equal_Line of CFCQL (cfcql.md Sec. 5.1 and App. C.1).

n agents (option ``n``, default 3 as in Fig. 2(a)) live on the segment
[0, line_length] with line_length = max(10, 2n). They start uniformly at
random in [0, 2]. Each step every agent picks one of 11 moves
[0, -0.01, -0.05, -0.1, -0.5, -1, 0.01, 0.05, 0.1, 0.5, 1] (the action index
is the position in this list); positions are clipped to the segment. The
shared reward is

    r = 10 (n - 1) (min_dis - last_min_dis) / line_length

where min_dis is the smallest distance between any two agents after the move
and last_min_dis the same before it. So the return of an episode is
10 (n - 1) (final min_dis - initial min_dis) / line_length < 10, which is the
``max_return`` used by ``filter:`` behaviours (reached only by perfectly
equal spacing from coincident starts).

Choices the paper leaves open:
* ``episode_limit`` (default 25, the MPE convention); time-limit truncation
  only, never ``terminated``.
* Observation of agent i: [x_i, x_1, ..., x_n] / line_length (its own
  position, then every agent's position in agent order); obs_dim = n + 1.
  State: [x_1, ..., x_n] / line_length. All moves always available.

The scripted expert sends the agent of rank k (by current position, ties by
index) to k * line_length / (n - 1) with the largest move that does not
overshoot.
"""

from __future__ import annotations

import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

MOVES = torch.tensor([0.0, -0.01, -0.05, -0.1, -0.5, -1.0, 0.01, 0.05, 0.1, 0.5, 1.0], dtype=torch.float64)


def min_distance(pos: torch.Tensor) -> torch.Tensor:
    """Smallest pairwise distance of positions [B, n] -> [B]."""
    s = torch.sort(pos, dim=-1).values
    return (s[:, 1:] - s[:, :-1]).amin(-1)


class EqualLine(BatchedEnv):
    """n agents spreading out evenly on a line (see module docstring)."""

    def __init__(self, n: int = 3, episode_limit: int = 25, num_envs: int = 1, seed: int = 0) -> None:
        if int(n) < 2:
            raise ValueError(f"equal_line: n (number of agents) must be >= 2, got {n}")
        if int(episode_limit) < 1:
            raise ValueError(f"equal_line: episode_limit must be >= 1, got {episode_limit}")
        n, t = int(n), int(episode_limit)
        spec = EnvSpec(env_id="equal_line", n_agents=n, obs_dim=n + 1, state_dim=n, n_actions=len(MOVES), episode_limit=t,
                       env_options={"n": n, "episode_limit": t})
        super().__init__(spec, num_envs, seed)
        self.line_length = float(max(10, 2 * n))
        self.max_return = 10.0
        # float64 positions so that sums of 0.01 moves do not drift in float32
        self.pos = torch.zeros(num_envs, n, dtype=torch.float64)
        self.last_min_dis = torch.zeros(num_envs, dtype=torch.float64)

    def _observe(self) -> TimeStep:
        b, n = self.num_envs, self.spec.n_agents
        x = (self.pos / self.line_length).float()
        obs = torch.cat([x[:, :, None], x[:, None, :].expand(b, n, n)], dim=-1)
        return TimeStep(obs=obs, state=x, avail=torch.ones(b, n, len(MOVES), dtype=torch.bool),
                        reward=torch.zeros(b), terminated=torch.zeros(b, dtype=torch.bool), truncated=torch.zeros(b, dtype=torch.bool))

    def _reset(self) -> TimeStep:
        u = torch.rand(self.num_envs, self.spec.n_agents, generator=self.generator, dtype=torch.float64)
        self.pos = 2.0 * u
        self.last_min_dis = min_distance(self.pos)
        return self._observe()

    def _step(self, actions: torch.Tensor) -> TimeStep:
        moved = (self.pos + MOVES[actions.long().clamp(0, len(MOVES) - 1)]).clamp(0.0, self.line_length)
        self.pos = torch.where(self.active[:, None], moved, self.pos)
        min_dis = min_distance(self.pos)
        n = self.spec.n_agents
        reward = 10.0 * (n - 1) * (min_dis - self.last_min_dis) / self.line_length
        self.last_min_dis = min_dis
        ts = self._observe()
        ts.reward = reward.float()
        return ts

    def expert(self) -> "EqualLineExpert":
        return EqualLineExpert(self.spec.n_agents, self.line_length)


class EqualLineExpert:
    """Rank k goes to k * L / (n - 1) with the largest non-overshooting move (reads positions from the state)."""

    def __init__(self, n: int, line_length: float) -> None:
        self.n, self.line_length = n, line_length

    def begin(self, ts: TimeStep, generator: torch.Generator) -> None:
        pass

    def act(self, ts: TimeStep, generator: torch.Generator) -> torch.Tensor:
        pos = ts.state.double() * self.line_length  # [B, n]
        order = torch.sort(pos, dim=-1, stable=True).indices
        rank = torch.argsort(order, dim=-1)
        target = rank.double() * self.line_length / (self.n - 1)
        delta = (target - pos)[..., None]  # [B, n, 1]
        m = MOVES.to(pos.dtype)
        ok = (m * delta > 0) & (m.abs() <= delta.abs() + 1e-9)
        ok[..., 0] = True  # standing still never overshoots
        score = torch.where(ok, m.abs(), torch.full_like(ok, -1.0, dtype=m.dtype))
        return score.argmax(-1)


def make_equal_line(env_id: str, *, num_envs: int = 1, seed: int = 0, n: int = 3, episode_limit: int = 25) -> EqualLine:
    return EqualLine(n=n, episode_limit=episode_limit, num_envs=num_envs, seed=seed)
