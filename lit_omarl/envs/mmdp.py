"""CFCQL's decomposable multi-agent MDP (cfcql.md Sec. 4.1, Fig. 1(a)).

N agents (option ``n_agents``, default 5, as in the paper) each sit in one
of three states S0, S1, S2 and choose stay / up / down. The paper gives only
that the agents are randomly initialised and are rewarded for moving to or
staying in S2; the choices left open are fixed here:

* Initial state: each agent independently uniform over {S0, S1, S2}.
* Actions: 0 = stay, 1 = up (S_k -> S_{k+1}), 2 = down (S_k -> S_{k-1});
  a move past S0 or S2 leaves the agent where it is. Agents move independently.
* Team reward of a step: the fraction of agents in S2 *after* the move, so
  r is in [0, 1] and r_max = 1 per step.
* Horizon: ``episode_limit`` steps (default 10), ended by time-limit
  truncation only (never ``terminated``). The maximum possible return used by
  ``filter:`` behaviours is ``episode_limit * r_max`` = ``episode_limit``.
  The paper's "1000 samples with reward > 0.8 r_max" reads as one-step
  samples: ``episode_limit=1`` with ``filter:0.8:uniform`` reproduces it.
* Observation of agent i: the one-hot of its own state (3 numbers; the task
  decomposes per agent, so nothing else is needed). State: the concatenation
  of all agents' one-hots (3N numbers). All actions are always available.

The scripted expert moves up until S2 and then stays.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

N_STATES = 3
MOVES = torch.tensor([0, 1, -1])  # stay, up, down


class MMDP(BatchedEnv):
    """Decomposable 3-state MMDP of CFCQL (see module docstring)."""

    def __init__(self, n_agents: int = 5, episode_limit: int = 10, num_envs: int = 1, seed: int = 0) -> None:
        if int(n_agents) < 1:
            raise ValueError(f"mmdp: n_agents must be >= 1, got {n_agents}")
        if int(episode_limit) < 1:
            raise ValueError(f"mmdp: episode_limit must be >= 1, got {episode_limit}")
        n, t = int(n_agents), int(episode_limit)
        spec = EnvSpec(env_id="mmdp", n_agents=n, obs_dim=N_STATES, state_dim=N_STATES * n, n_actions=3, episode_limit=t,
                       env_options={"n_agents": n, "episode_limit": t})
        super().__init__(spec, num_envs, seed)
        self.max_return = float(t)
        self.pos = torch.zeros(num_envs, n, dtype=torch.long)

    def _observe(self) -> TimeStep:
        b, n = self.num_envs, self.spec.n_agents
        obs = F.one_hot(self.pos, N_STATES).float()
        return TimeStep(obs=obs, state=obs.reshape(b, -1), avail=torch.ones(b, n, 3, dtype=torch.bool),
                        reward=torch.zeros(b), terminated=torch.zeros(b, dtype=torch.bool), truncated=torch.zeros(b, dtype=torch.bool))

    def _reset(self) -> TimeStep:
        self.pos = torch.randint(0, N_STATES, (self.num_envs, self.spec.n_agents), generator=self.generator)
        return self._observe()

    def _step(self, actions: torch.Tensor) -> TimeStep:
        moved = (self.pos + MOVES[actions.long().clamp(0, 2)]).clamp(0, N_STATES - 1)
        self.pos = torch.where(self.active[:, None], moved, self.pos)
        ts = self._observe()
        ts.reward = (self.pos == N_STATES - 1).float().mean(-1)
        return ts

    def expert(self) -> "MMDPExpert":
        return MMDPExpert()


class MMDPExpert:
    """Up until S2, then stay (reads each agent's state from its one-hot observation)."""

    def begin(self, ts: TimeStep, generator: torch.Generator) -> None:
        pass

    def act(self, ts: TimeStep, generator: torch.Generator) -> torch.Tensor:
        in_s2 = ts.obs[..., N_STATES - 1] > 0.5
        return torch.where(in_s2, 0, 1).long()


def make_mmdp(env_id: str, *, num_envs: int = 1, seed: int = 0, n_agents: int = 5, episode_limit: int = 10, n: int | None = None) -> MMDP:
    """``n`` is an alias of ``n_agents`` (the CLI's ``--n``)."""
    if n is not None:
        if n_agents != 5 and int(n) != int(n_agents):
            raise ValueError(f"mmdp: conflicting n={n} and n_agents={n_agents}")
        n_agents = n
    return MMDP(n_agents=n_agents, episode_limit=episode_limit, num_envs=num_envs, seed=seed)
