"""Bridge (AlberDICE, Matsunaga et al. 2023; InSPO Table 3 and Fig. 4).

A 3 x 6 grid (``B`` = blocked)::

    row 0   1 A B B A A
    row 1   A A A A A A      <- the one-lane bridge is columns 2-3 of row 1
    row 2   A A B B A 2

Agent 0 starts at (1, 2) with goal (2, 5); agent 1 starts at (1, 3) with goal
(0, 0). They face each other on the bridge, so one must step back to let the
other pass. Actions: 0 stay, 1 up (row - 1), 2 down (row + 1), 3 right
(col + 1), 4 left (col - 1); all always available.

Dynamics (checked step by step against every episode of AlberDICE's released
``buffer_optimal`` and ``buffer_mix`` data, including the random episodes with
collisions):
* A move off the grid or into a blocked cell leaves the agent in place.
* Collisions are resolved agent 0 first: an agent moving into the cell of an
  agent that stands still (action 0, or a move into a wall) stays in place;
  two agents swapping cells both stay; an agent may enter the cell the other
  one leaves in the same step; if both move into the same cell, agent 0 gets
  it and agent 1 stays.
* Quirk of the original environment, visible in the data: a move into the
  agent's own goal skips the collision checks, so it succeeds even onto the
  other agent's cell or through a swap; only agent 1 can still lose its goal
  cell (or a swap) to agent 0 moving there first.
* An agent is done once it reaches its goal; it then stays there, its actions
  are ignored and it no longer blocks anyone (the other may walk onto it).
* Reward of a step: the mean over both agents of -0.1 * the euclidean
  distance between the agent's goal and its position after the move, counting
  0 for done agents. At the time limit every agent counts as done, so the
  50th step of an unfinished episode gives reward 0 (as in the data).
* The episode terminates when both agents are done; otherwise it is
  truncated after ``episode_limit`` steps (default 50, as in the data).
  The released data marks time-limit ends as terminated too; we do not.
* Observation of each agent = state = [row0, col0, goal_row0, goal_col0,
  row1, col1, goal_row1, goal_col1] as floats (identical for both agents).

The scripted expert (``expert()``) is the multi-modal optimal policy of the
released optimal data: per episode a yielding agent is drawn 50/50; it backs
off the bridge and steps aside into one of the three cells next to the
bridge's end (uniformly), the other agent walks to its goal, then the yielder
does; ties between shortest paths are broken uniformly, and a done agent plays
a random action that keeps it in place. All its episodes last 8 steps with a
return in [-1.29, -1.23] (mean about -1.26, like the data).
"""

from __future__ import annotations

from collections import deque

import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

LAYOUT = ("1ABBAA", "AAAAAA", "AABBA2")
ROWS, COLS = len(LAYOUT), len(LAYOUT[0])
BLOCKED = torch.tensor([[c == "B" for c in row] for row in LAYOUT])
START = torch.tensor([[1, 2], [1, 3]])
GOAL = torch.tensor([[2, 5], [0, 0]])
DELTA = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, 1], [0, -1]])  # stay, up, down, right, left
N_ACTIONS = 5


def _move(pos: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Cell after each agent's move on the empty grid (walls and blocked cells stop it). pos [..., 2]."""
    prop = pos + DELTA[actions]
    inside = (prop[..., 0] >= 0) & (prop[..., 0] < ROWS) & (prop[..., 1] >= 0) & (prop[..., 1] < COLS)
    r, c = prop[..., 0].clamp(0, ROWS - 1), prop[..., 1].clamp(0, COLS - 1)
    free = inside & ~BLOCKED[r, c]
    return torch.where(free[..., None], prop, pos)


class Bridge(BatchedEnv):
    """Two agents crossing a one-lane bridge (see module docstring)."""

    def __init__(self, episode_limit: int = 50, num_envs: int = 1, seed: int = 0) -> None:
        if int(episode_limit) < 1:
            raise ValueError(f"bridge: episode_limit must be >= 1, got {episode_limit}")
        t = int(episode_limit)
        spec = EnvSpec(env_id="bridge", n_agents=2, obs_dim=8, state_dim=8, n_actions=N_ACTIONS, episode_limit=t,
                       env_options={"episode_limit": t})
        super().__init__(spec, num_envs, seed)
        self.max_return = 0.0
        self.pos = START.expand(num_envs, 2, 2).clone()
        self.done = torch.zeros(num_envs, 2, dtype=torch.bool)

    def _observe(self) -> TimeStep:
        b = self.num_envs
        state = torch.cat([self.pos, GOAL.expand(b, 2, 2)], dim=-1).reshape(b, 8).float()
        return TimeStep(obs=state[:, None, :].expand(b, 2, 8).clone(), state=state,
                        avail=torch.ones(b, 2, N_ACTIONS, dtype=torch.bool), reward=torch.zeros(b),
                        terminated=torch.zeros(b, dtype=torch.bool), truncated=torch.zeros(b, dtype=torch.bool))

    def _reset(self) -> TimeStep:
        self.pos = START.expand(self.num_envs, 2, 2).clone()
        self.done = torch.zeros(self.num_envs, 2, dtype=torch.bool)
        return self._observe()

    def _step(self, actions: torch.Tensor) -> TimeStep:
        pos, done = self.pos, self.done | ~self.active[:, None]  # finished episodes do not move
        a = actions.long().clamp(0, N_ACTIONS - 1)
        nxt = _move(pos, a)
        invalid = (nxt == pos).all(-1) & (a != 0)  # walked into a wall, a blocked cell or off the grid
        stay = done | invalid | (a == 0)
        nxt = torch.where(stay[..., None], pos, nxt)
        to_goal = ~stay & (nxt == GOAL).all(-1)
        p0, p1, n0, n1 = pos[:, 0], pos[:, 1], nxt[:, 0], nxt[:, 1]

        def eq(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return (u == v).all(-1)

        # Agent 0 is resolved first. It walks into its goal unconditionally; otherwise
        # it is stopped by agent 1 standing still where it wants to go, or by a swap.
        # If both want the same cell, agent 0 wins and agent 1 is stopped.
        contest = ~stay[:, 0] & ~to_goal[:, 0] & ~done[:, 1]
        one_moving = ~stay[:, 1]
        one_still = invalid[:, 1] | (~done[:, 1] & (a[:, 1] == 0))
        swap = contest & one_moving & eq(n0, p1) & eq(n1, p0)
        block0 = (contest & one_still & eq(n0, p1)) | swap
        final0 = torch.where(block0[:, None], p0, n0)
        # Agent 1 then walks into its goal unconditionally, or else must not land on agent 0's cell.
        block1 = (contest & one_moving & eq(n1, n0)) | swap
        block1 |= ~stay[:, 1] & ~to_goal[:, 1] & ~done[:, 0] & eq(n1, final0)
        final1 = torch.where(block1[:, None], p1, n1)
        self.pos = torch.stack([final0, final1], dim=1)
        self.done = self.done | (self.pos == GOAL).all(-1)

        dist = (self.pos - GOAL).float().pow(2).sum(-1).sqrt()  # [B, 2]
        last_step = (self.t + 1 >= self.spec.episode_limit)[:, None]  # every agent counts as done at the limit
        counted = ~(self.done | last_step)
        ts = self._observe()
        ts.reward = -0.1 * (dist * counted).mean(-1)
        ts.terminated = self.done.all(-1)
        return ts

    def expert(self) -> "BridgeExpert":
        return BridgeExpert()


# ----------------------------------------------------------------- expert
def _cell(pos: torch.Tensor) -> torch.Tensor:
    return pos[..., 0] * COLS + pos[..., 1]


def _distances() -> torch.Tensor:
    """All-pairs shortest path lengths on the empty grid [cells, cells] (BFS; inf for blocked cells)."""
    n = ROWS * COLS
    dist = torch.full((n, n), float("inf"))
    for src in range(n):
        r0, c0 = divmod(src, COLS)
        if LAYOUT[r0][c0] == "B":
            continue
        dist[src, src] = 0
        queue = deque([(r0, c0)])
        while queue:
            r, c = queue.popleft()
            for dr, dc in DELTA[1:].tolist():
                rr, cc = r + dr, c + dc
                if 0 <= rr < ROWS and 0 <= cc < COLS and LAYOUT[rr][cc] != "B" and dist[src, rr * COLS + cc] == float("inf"):
                    dist[src, rr * COLS + cc] = dist[src, r * COLS + c] + 1
                    queue.append((rr, cc))
    return dist


DIST = _distances()
# Where a yielding agent steps aside: the three cells next to the end of the bridge it backs off to.
ASIDE = torch.tensor([
    [[1, 0], [0, 1], [2, 1]],  # agent 0 backs off to the left end (1, 1)
    [[1, 5], [0, 4], [2, 4]],  # agent 1 backs off to the right end (1, 4)
])


def _random_choice(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform index among the True entries of mask [B, A]; 0 where none."""
    score = torch.rand(mask.shape, generator=generator) + 1.0
    return torch.where(mask, score, torch.zeros_like(score)).argmax(-1)


class BridgeExpert:
    """Scripted multi-modal optimal policy (see module docstring). Reads positions from the state."""

    def __init__(self) -> None:
        self.yielder = torch.zeros(0, dtype=torch.long)
        self.aside = torch.zeros(0, 2, dtype=torch.long)
        self.stepped_aside = torch.zeros(0, dtype=torch.bool)

    def begin(self, ts: TimeStep, generator: torch.Generator) -> None:
        b = ts.state.shape[0]
        self.yielder = torch.randint(0, 2, (b,), generator=generator)
        which = torch.randint(0, 3, (b,), generator=generator)
        self.aside = ASIDE[self.yielder, which]
        self.stepped_aside = torch.zeros(b, dtype=torch.bool)

    def _shortest(self, pos: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next cells [B, A, 2] of one agent and which actions shorten its path to target [B, A]."""
        nxt = _move(pos[:, None, :].expand(-1, N_ACTIONS, 2), torch.arange(N_ACTIONS).expand(pos.shape[0], -1))
        here = DIST[_cell(pos), _cell(target)]
        return nxt, DIST[_cell(nxt), _cell(target)[:, None]] == here[:, None] - 1

    def act(self, ts: TimeStep, generator: torch.Generator) -> torch.Tensor:
        b = ts.state.shape[0]
        s = ts.state.long().reshape(b, 2, 4)
        pos, goal = s[..., :2], s[..., 2:]
        ar = torch.arange(b)
        y, p = self.yielder, 1 - self.yielder
        pos_y, pos_p = pos[ar, y], pos[ar, p]
        self.stepped_aside = self.stepped_aside | (pos_y == self.aside).all(-1)
        first = ~self.stepped_aside  # phase 1: the yielder walks to its side cell, the passer follows

        nxt_y, short_y = self._shortest(pos_y, torch.where(first[:, None], self.aside, goal[ar, y]))
        nxt_p, short_p = self._shortest(pos_p, goal[ar, p])

        # phase 1: the yielder moves first (its path leads away from the passer); the passer avoids its next cell
        a_y1 = _random_choice(short_y, generator)
        next_y1 = nxt_y[ar, a_y1]
        ok_p1 = short_p & ~(nxt_p == next_y1[:, None]).all(-1)
        a_p1 = _random_choice(ok_p1, generator)
        # phase 2: the passer has priority and avoids the yielder's cell; the yielder then avoids the passer's next cell
        ok_p2 = short_p & ~(nxt_p == pos_y[:, None]).all(-1)
        a_p2 = _random_choice(ok_p2, generator)
        next_p2 = nxt_p[ar, a_p2]
        swap = (nxt_y == pos_p[:, None]).all(-1) & (next_p2 == pos_y).all(-1)[:, None]
        ok_y2 = short_y & ~(nxt_y == next_p2[:, None]).all(-1) & ~swap
        a_y2 = _random_choice(ok_y2, generator)

        a_y = torch.where(first, a_y1, a_y2)
        a_p = torch.where(first, a_p1, a_p2)
        actions = torch.stack([torch.where(y == 0, a_y, a_p), torch.where(y == 0, a_p, a_y)], dim=-1)

        # a done agent plays any action that keeps it in place (like the released data)
        at_goal = (pos == goal).all(-1)  # [B, 2]
        stays = (_move(pos[:, :, None, :].expand(-1, -1, N_ACTIONS, 2), torch.arange(N_ACTIONS).expand(b, 2, -1)) == pos[:, :, None, :]).all(-1)
        idle = _random_choice(stays.reshape(b * 2, N_ACTIONS), generator).reshape(b, 2)
        return torch.where(at_goal, idle, actions)


def make_bridge(env_id: str, *, num_envs: int = 1, seed: int = 0, episode_limit: int = 50) -> Bridge:
    return Bridge(episode_limit=episode_limit, num_envs=num_envs, seed=seed)
