"""ICQ's two-state MMDP (icq.md Sec. 3.2, Fig. 2(a)): extrapolation error vs number of agents.

What the paper states: all agents start at state tau_2 and act for 100
environment steps with actions a_[1] = 0 or a_[2] = 1; the optimal policy is
that all agents select a_[1]; the reward is 1 when following the optimal policy
and 0 otherwise (sparse); tau_2 moves to tau_1 when sum_i a_i <= n / 2, and
tau_1 never returns to tau_2. The figure itself (Fig. 2(a)) is not in the text
we have, so every choice left open is fixed here:

* Reward of a step: r = 1 if every agent takes action 0 (the optimal joint
  action), in EITHER state, else 0. It depends on the joint action only (the
  literal reading of "reward 1 when following the optimal policy"); the state
  only changes the transitions. Hence the optimal policy earns 1 per step
  everywhere, V*(tau_1) = V*(tau_2) = 1 / (1 - gamma), and with gamma = 0.99
  Q*(s, a) = r(a) + 99 for every state and joint action (the true values "are
  similar with different agent numbers", as Fig. 2's caption says).
  Rejected reading: reward only in tau_1 (the figure may label it so).
* Transition: from tau_2 to tau_1 iff sum_i a_i <= n / 2 (so a tie, e.g. one
  of two agents choosing 1, moves; a single agent moves only with a = 0);
  otherwise stay in tau_2. tau_1 is absorbing. Deterministic.
* Episode end: time limit only (``episode_limit``, default 100): ``truncated``,
  never ``terminated``; learners therefore bootstrap through the end and
  estimate the infinite-horizon discounted value.
* Observation of every agent: the one-hot of the (shared) state,
  index 0 = tau_1, index 1 = tau_2 (2 numbers; agent ids are added by the
  learners). Global state: the same one-hot (2 numbers). Actions 0 and 1 are
  always available.
* ``expert()``: the optimal policy (every agent takes 0). ``max_return`` =
  ``episode_limit`` (1 per step).

Option ``n_agents`` (alias ``n``) >= 1, default 4 (BCQ (4 agents) is the
diverging curve of Fig. 2(b)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

TAU_1, TAU_2 = 0, 1  # state indices (one-hot positions)
N_STATES = 2
N_ACTIONS = 2


class ICQMMDP(BatchedEnv):
    """ICQ's two-state MMDP (see module docstring)."""

    def __init__(self, n_agents: int = 4, episode_limit: int = 100, num_envs: int = 1, seed: int = 0) -> None:
        if int(n_agents) < 1:
            raise ValueError(f"icq_mmdp: n_agents must be >= 1, got {n_agents}")
        if int(episode_limit) < 1:
            raise ValueError(f"icq_mmdp: episode_limit must be >= 1, got {episode_limit}")
        n, t = int(n_agents), int(episode_limit)
        spec = EnvSpec(env_id="icq_mmdp", n_agents=n, obs_dim=N_STATES, state_dim=N_STATES, n_actions=N_ACTIONS,
                       episode_limit=t, env_options={"n_agents": n, "episode_limit": t})
        super().__init__(spec, num_envs, seed)
        self.max_return = float(t)
        self.state = torch.full((num_envs,), TAU_2, dtype=torch.long)

    def _observe(self) -> TimeStep:
        b, n = self.num_envs, self.spec.n_agents
        onehot = F.one_hot(self.state, N_STATES).float()  # [B, 2]
        return TimeStep(obs=onehot[:, None, :].expand(b, n, N_STATES).clone(), state=onehot,
                        avail=torch.ones(b, n, N_ACTIONS, dtype=torch.bool), reward=torch.zeros(b),
                        terminated=torch.zeros(b, dtype=torch.bool), truncated=torch.zeros(b, dtype=torch.bool))

    def _reset(self) -> TimeStep:
        self.state = torch.full((self.num_envs,), TAU_2, dtype=torch.long)
        return self._observe()

    def _step(self, actions: torch.Tensor) -> TimeStep:
        actions = actions.long()
        n = self.spec.n_agents
        reward = (actions == 0).all(-1).float()
        # 2 * sum <= n is sum <= n / 2 without floating point
        moves = (self.state == TAU_2) & (2 * actions.sum(-1) <= n)
        new_state = torch.where(moves, torch.full_like(self.state, TAU_1), self.state)
        self.state = torch.where(self.active, new_state, self.state)
        ts = self._observe()
        ts.reward = reward
        return ts

    def expert(self) -> "ICQMMDPOptimal":
        return ICQMMDPOptimal()


class ICQMMDPOptimal:
    """The optimal policy: every agent takes action 0 in both states."""

    def begin(self, ts: TimeStep, generator: torch.Generator) -> None:
        pass

    def act(self, ts: TimeStep, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(ts.obs.shape[:2], dtype=torch.long)


def make_icq_mmdp(env_id: str, *, num_envs: int = 1, seed: int = 0, n_agents: int = 4, episode_limit: int = 100,
                  n: int | None = None) -> ICQMMDP:
    """``n`` is an alias of ``n_agents`` (the CLI's ``--n``)."""
    if n is not None:
        if n_agents != 4 and int(n) != int(n_agents):
            raise ValueError(f"icq_mmdp: conflicting n={n} and n_agents={n_agents}")
        n_agents = n
    return ICQMMDP(n_agents=n_agents, episode_limit=episode_limit, num_envs=num_envs, seed=seed)
