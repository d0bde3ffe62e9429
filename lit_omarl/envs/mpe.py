"""Multi-agent particle environments (MPE, as in the ``mpe2`` package) behind the batched protocol.

``make("mpe/<task>", num_envs=B, seed=s)`` runs B episodes of

* ``simple_spread`` (cooperative navigation, CN): 3 agents cover 3 landmarks;
* ``simple_tag`` (predator-prey, PP): 3 predators (the learning agents) chase
  1 faster prey around 2 obstacles;
* ``simple_world_comm`` (World): 4 predators, the first of them a leader who
  also speaks (4 continuous communication channels heard by the other
  predators), chase 2 prey that can hide in 2 forests and eat 2 foods.

Only the predators are learning agents in tag and world; the prey act by a
fixed policy given by the option ``prey_policy`` (see "Prey" below), as in
OMAR / CFCQL where a pretrained prey ships with the datasets.

Semantics: those of mpe2 1.1 with ``continuous_actions=True`` (scenarios,
physics, observations, rewards, state = concatenation of all agents'
observations, prey included). Episodes last ``episode_limit`` steps (25, the
OMAR / CFCQL setting) and end as ``truncated``; nothing terminates.

Two backends (option ``backend``):

* ``"torch"`` (default): our batched re-implementation of those three mpe2
  scenarios in float64 torch (all B episodes in one set of tensor ops). The
  tests check it step by step against mpe2 itself (same world state, same
  actions -> same observations, state and per-agent rewards up to float
  rounding). Initial states are drawn from the env's torch generator with
  mpe2's distributions (agents uniform in [-1, 1]^2; landmarks uniform in
  [-1, 1]^2 for spread, [-0.9, 0.9]^2 otherwise; zero velocities and
  communication), not with mpe2's numpy stream.
* ``"mpe2"``: B instances of the real ``mpe2`` parallel envs (public API),
  each reset with a seed drawn from the env's torch generator. Slow (tens to
  hundreds of env steps per second on one core); kept as the reference.

Actions (option ``action_mode``), real entries per agent, in [low, high]:

* ``"xy"`` (default): the force direction (x, y) in [-1, 1]^2, i.e. the
  continuous action of the original MPE that OMAR's datasets use (applied
  force = accel * (x, y)); the world leader has 4 more entries in [-1, 1] for
  its communication, sent as (c + 1) / 2. Bounds [-1, 1]. Converted exactly
  to mpe2's format (below) as [0, relu(-x), relu(x), relu(-y), relu(y), (c+1)/2].
* ``"mpe2"``: mpe2's own continuous action [no_action, left, right, down, up]
  in [0, 1]^5 (force = accel * (right - left, up - down)), plus 4
  communication entries in [0, 1] for the world leader. Bounds [0, 1].

In world the leader has more action entries than the other predators; the
others are zero-padded (``agent_action_dims``, ``action_mask``; see
``envs/continuous.py``). Observations of the learning agents have equal
sizes in all three tasks (spread 18, tag 16, world 34; state 54, 62, 192).
Out-of-bound actions are clipped or refused (option ``out_of_bounds``).

Rewards: mpe2's per-agent rewards (spread: (1 - local_ratio) * global +
local_ratio * own collisions penalty, local_ratio 0.5; tag: +10 per
predator-prey contact, shared by all predators; world: +5 per contact minus
0.1 times the predator's distance to the nearest prey). The team reward is
their mean over the learning agents (``team_reward="mean"``, default) or the
first learning agent's (``"first"``: OMAR's score for tag and world; equal
to the mean in tag). The last step's per-agent rewards are in
``env.agent_rewards`` [B, N] (learners) and ``env.all_rewards`` [B, all agents].

Differences from OMAR's MPE (its own fork of the original MPE): OMAR's
spread reward was modified (sum of min(1 / distance, 10) over landmarks, -5
per collision; mpe2: minus the sum of distances, mixed with the collision
penalty by local_ratio), its "simple_world" scenario is not in the files we
checked (it may differ from mpe2's simple_world_comm), and we did not compare
its physics code with mpe2's; so returns of OMAR's datasets are not
comparable to returns in these envs.

Prey (tag and world). ``prey_policy`` is one of

* ``"heuristic"`` (default until a trained prey ships): a scripted flee
  policy: move away from the visible predators (inverse-square weighted)
  and back towards the centre near the border (mpe2 penalises prey beyond
  |x| = 0.9);
* ``"random"`` (uniform force directions), ``"still"`` (no force);
* ``"pretrained"``: the prey trained by lit_omarl
  (:mod:`lit_omarl.behaviour.mpe_prey`), shipped as
  ``lit_omarl/assets/behaviour/mpe_prey/<task>.pt`` (README there);
* a weights file ``path/to/prey.pt`` (or ``file:path``) in the format
  written by :meth:`MLPPreyPolicy.save` (``lit_omarl-prey-v1``: an MLP from
  the prey's observation to its action, with its task and action mode);
* ``"package.module:name"``: an object, class or factory returning an object
  with the :class:`PreyPolicy` interface;
* such an object itself (its ``name`` is recorded in ``env_options``; give
  it a name that ``make`` accepts back, e.g. a file path, for the spec to
  rebuild the task).

Each prey policy states its own ``action_mode``, independent of the
learners'. The prey's observation is its mpe2 observation (tag 14, world 28).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.envs.continuous import OutOfBounds, check_out_of_bounds_option, padding_mask, prepare_actions
from lit_omarl.spec import EnvSpec

EPISODE_LIMIT = 25
TASKS = ("simple_spread", "simple_tag", "simple_world_comm")
ActionMode = Literal["xy", "mpe2"]
Backend = Literal["torch", "mpe2"]
TeamReward = Literal["mean", "first"]
PREY_FORMAT = "lit_omarl-prey-v1"

# mpe2 world constants (mpe2/_mpe_utils/core.py)
DT, DAMPING, CONTACT_FORCE, CONTACT_MARGIN, DEFAULT_SENSITIVITY = 0.1, 0.25, 1e2, 1e-3, 5.0
INF = float("inf")


# ---------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    """Static description of one mpe2 scenario (entities = agents then landmarks, mpe2's order)."""

    name: str
    agent_names: tuple[str, ...]
    adversary: tuple[bool, ...]
    speakers: tuple[int, ...]  # agents that are not silent
    dim_c: int
    size: tuple[float, ...]  # per entity
    collide: tuple[bool, ...]  # per entity
    accel: tuple[float, ...]  # per agent (mpe2's sensitivity 5 where accel is None)
    max_speed: tuple[float, ...]  # per agent (inf where None)
    agent_range: float
    landmark_range: float
    obs_dims: tuple[int, ...]  # per agent
    learners: tuple[int, ...]
    preys: tuple[int, ...]

    @property
    def n_all(self) -> int:
        return len(self.agent_names)

    @property
    def n_entities(self) -> int:
        return len(self.size)


def _spread() -> Scenario:
    n = 3
    return Scenario("simple_spread", tuple(f"agent_{i}" for i in range(n)), (False,) * n, (), 2,
                    (0.15,) * n + (0.05,) * n, (True,) * n + (False,) * n, (DEFAULT_SENSITIVITY,) * n, (INF,) * n,
                    1.0, 1.0, (18,) * n, tuple(range(n)), ())


def _tag() -> Scenario:
    return Scenario("simple_tag", ("adversary_0", "adversary_1", "adversary_2", "agent_0"), (True, True, True, False), (),
                    2, (0.075, 0.075, 0.075, 0.05, 0.2, 0.2), (True,) * 6, (3.0, 3.0, 3.0, 4.0), (1.0, 1.0, 1.0, 1.3),
                    1.0, 0.9, (16, 16, 16, 14), (0, 1, 2), (3,))


def _world() -> Scenario:
    names = ("leadadversary_0", "adversary_0", "adversary_1", "adversary_2", "agent_0", "agent_1")
    # landmarks: 1 obstacle (0.2, collides), 2 food (0.03), 2 forests (0.3)
    return Scenario("simple_world_comm", names, (True,) * 4 + (False,) * 2, (0,), 4,
                    (0.075,) * 4 + (0.045,) * 2 + (0.2, 0.03, 0.03, 0.3, 0.3), (True,) * 7 + (False,) * 4,
                    (3.0,) * 4 + (4.0,) * 2, (1.0,) * 4 + (1.3,) * 2, 1.0, 0.9, (34,) * 4 + (28,) * 2,
                    (0, 1, 2, 3), (4, 5))


SCENARIOS = {"simple_spread": _spread(), "simple_tag": _tag(), "simple_world_comm": _world()}


def _bound(x: torch.Tensor) -> torch.Tensor:
    """mpe2's border penalty of a prey coordinate |x|."""
    return torch.where(x < 0.9, torch.zeros_like(x), torch.where(x < 1.0, (x - 0.9) * 10, torch.clamp(torch.exp(2 * x - 2), max=10.0)))


class _TorchWorld:
    """All B worlds of one scenario as float64 tensors, stepped like mpe2's ``World.step``."""

    def __init__(self, sc: Scenario, b: int, local_ratio: float) -> None:
        self.sc, self.b, self.local_ratio = sc, b, float(local_ratio)
        f64 = torch.float64
        self.size = torch.tensor(sc.size, dtype=f64)
        self.collide = torch.tensor(sc.collide)
        self.accel = torch.tensor(sc.accel, dtype=f64)
        self.max_speed = torch.tensor(sc.max_speed, dtype=f64)
        n, e = sc.n_all, sc.n_entities
        pair = self.collide[:, None] & self.collide[None, :] & ~torch.eye(e, dtype=torch.bool)
        self.pair = pair[:n]  # forces act on movable entities = the agents
        self.dist_min = (self.size[:, None] + self.size[None, :])[:n]
        self.speaker = torch.zeros(n, dtype=torch.bool)
        self.speaker[list(sc.speakers)] = True
        self.pos = torch.zeros(b, e, 2, dtype=f64)
        self.vel = torch.zeros(b, n, 2, dtype=f64)
        self.comm = torch.zeros(b, n, sc.dim_c, dtype=f64)
        self.others = [[j for j in range(n) if j != i] for i in range(n)]
        self.adv = [i for i in range(n) if sc.adversary[i]]
        self.good = [i for i in range(n) if not sc.adversary[i]]
        self.leader = torch.zeros(n, dtype=torch.bool)
        if sc.name == "simple_world_comm":
            self.leader[0] = True
        # agents whose observations share one layout: (agents, others per agent, good others per agent)
        groups: dict[tuple[bool, int], list[int]] = {}
        for i in range(n):
            groups.setdefault((sc.adversary[i], sum(1 for j in self.others[i] if not sc.adversary[j])), []).append(i)
        self.groups = [(torch.tensor(agents), torch.tensor([self.others[i] for i in agents], dtype=torch.long),
                        torch.tensor([[j for j in self.others[i] if not sc.adversary[j]] for i in agents], dtype=torch.long).reshape(len(agents), -1))
                       for agents in groups.values()]

    # -- state ---------------------------------------------------------------
    def reset(self, generator: torch.Generator) -> None:
        sc, b = self.sc, self.b
        u = torch.rand(b, sc.n_entities, 2, generator=generator, dtype=torch.float64)
        rng = torch.tensor([sc.agent_range] * sc.n_all + [sc.landmark_range] * (sc.n_entities - sc.n_all), dtype=torch.float64)
        self.pos = (2 * u - 1) * rng[None, :, None]
        self.vel.zero_()
        self.comm.zero_()

    def get_state(self) -> dict[str, torch.Tensor]:
        return {"pos": self.pos.clone(), "vel": self.vel.clone(), "comm": self.comm.clone()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self.pos = state["pos"].to(torch.float64).clone()
        self.vel = state["vel"].to(torch.float64).clone()
        self.comm = state["comm"].to(torch.float64).clone()

    # -- dynamics ------------------------------------------------------------
    def step(self, native: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """native [B, n_all, >=5] mpe2 actions (clipped to [0, 1]); returns per-agent rewards [B, n_all]."""
        sc, n = self.sc, self.sc.n_all
        u = torch.stack([native[..., 2] - native[..., 1], native[..., 4] - native[..., 3]], -1) * self.accel[None, :, None]
        agents = self.pos[:, :n]
        delta = agents[:, :, None, :] - self.pos[:, None, :, :]  # [B, n, E, 2]: agent i minus entity j
        dist = delta.norm(dim=-1)
        safe = torch.where(self.pair, dist, torch.ones_like(dist))
        pen = torch.logaddexp(torch.zeros_like(dist), -(dist - self.dist_min) / CONTACT_MARGIN) * CONTACT_MARGIN
        contact = CONTACT_FORCE * delta / safe[..., None] * pen[..., None]
        force = u + torch.where(self.pair[..., None], contact, torch.zeros_like(contact)).sum(2)
        new_pos = agents + self.vel * DT
        vel = self.vel * (1 - DAMPING) + force * DT
        speed = torch.sqrt(vel[..., 0] ** 2 + vel[..., 1] ** 2)
        over = speed > self.max_speed
        vel = torch.where(over[..., None], vel / torch.where(over, speed, torch.ones_like(speed))[..., None] * self.max_speed[None, :, None], vel)
        comm = torch.where(self.speaker[None, :, None], native[..., 5:5 + sc.dim_c], torch.zeros_like(self.comm)) if sc.dim_c else self.comm
        keep = active[:, None, None]
        self.pos = torch.cat([torch.where(keep, new_pos, agents), self.pos[:, n:]], 1)
        self.vel = torch.where(keep, vel, self.vel)
        self.comm = torch.where(keep, comm, self.comm)
        return self.rewards()

    # -- geometry, rewards, observations (vectorised over B and agents) ------
    def _geometry(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """rel [B, n, E, 2] = p_j - p_i, dist [B, n, E] and hit [B, n, E] (mpe2's is_collision) of agent i and entity j."""
        n = self.sc.n_all
        rel = self.pos[:, None, :, :] - self.pos[:, :n, None, :]
        dist = torch.sqrt(rel[..., 0] ** 2 + rel[..., 1] ** 2)
        return rel, dist, dist < self.dist_min

    def rewards(self) -> torch.Tensor:
        sc, n = self.sc, self.sc.n_all
        _, dist, hit = self._geometry()
        if sc.name == "simple_spread":
            glob = -dist[:, :, n:].amin(1).sum(-1)  # closest agent to each landmark
            local = -(hit[:, :, :n] & ~torch.eye(n, dtype=torch.bool)).sum(-1).double()
            return glob[:, None] * (1 - self.local_ratio) + local * self.local_ratio
        adv, good = self.adv, self.good
        prey_adv = hit[:, good][:, :, adv]  # [B, G, A]
        contacts = prey_adv.sum((1, 2)).double()
        r = torch.zeros(self.b, n, dtype=torch.float64)
        border = _bound(self.pos[:, good].abs()).sum(-1)
        caught = prey_adv.sum(-1).double()
        if sc.name == "simple_world_comm":
            food = [n + 1, n + 2]
            r[:, adv] = 5.0 * contacts[:, None] - 0.1 * dist[:, adv][:, :, good].amin(-1)
            r[:, good] = (-5 * caught - 2 * border + 2 * hit[:, good][:, :, food].sum(-1).double()
                          - 0.05 * dist[:, good][:, :, food].amin(-1))
        else:
            r[:, adv] = 10.0 * contacts[:, None]
            r[:, good] = -10 * caught - border
        return r

    def observe(self) -> list[torch.Tensor]:
        """Every agent's mpe2 observation, a list of [B, O_i] float64 tensors."""
        sc, n, b = self.sc, self.sc.n_all, self.b
        rel, _, hit = self._geometry()
        world = sc.name == "simple_world_comm"
        if world:  # who sees whom through the forests
            in_f = hit[:, :, n + 3:n + 5]  # [B, n, F]
            shared = (in_f[:, :, None, :] & in_f[:, None, :, :]).any(-1)
            outside = ~in_f.any(-1)
            visible = shared | (outside[:, :, None] & outside[:, None, :]) | self.leader[None, :, None]
        out: list[torch.Tensor] = [torch.empty(0)] * n
        for agents, others, good_others in self.groups:
            g = len(agents)
            lm = rel[:, agents, n:].reshape(b, g, -1)
            opos = rel[:, agents[:, None], others]  # [B, g, n-1, 2]
            ovel = self.vel[:, good_others]  # [B, g, k, 2]
            parts = [self.vel[:, agents], self.pos[:, agents], lm]
            if sc.name == "simple_spread":
                parts += [opos.reshape(b, g, -1), self.comm[:, others].reshape(b, g, -1)]
            elif sc.name == "simple_tag":
                parts += [opos.reshape(b, g, -1), ovel.reshape(b, g, -1)]
            else:
                vis_o = visible[:, agents[:, None], others][..., None]
                vis_v = visible[:, agents[:, None], good_others][..., None]
                opos = torch.where(vis_o, opos, torch.zeros_like(opos)).reshape(b, g, -1)
                ovel = torch.where(vis_v, ovel, torch.zeros_like(ovel)).reshape(b, g, -1)
                forest = torch.where(in_f[:, agents], 1.0, -1.0).to(torch.float64)
                if sc.adversary[int(agents[0])]:
                    parts += [opos, ovel, forest, self.comm[:, None, 0].expand(b, g, sc.dim_c)]
                else:
                    parts += [opos, forest, ovel]
            obs = torch.cat(parts, -1)
            for k, a in enumerate(agents.tolist()):
                out[a] = obs[:, k]
        return out


class _Mpe2World:
    """B real mpe2 parallel envs (reference backend)."""

    def __init__(self, sc: Scenario, b: int, local_ratio: float, episode_limit: int) -> None:
        module = importlib.import_module(f"mpe2.{sc.name}_v3")
        kwargs: dict[str, Any] = {"continuous_actions": True, "max_cycles": int(episode_limit)}
        if sc.name == "simple_spread":
            kwargs["local_ratio"] = float(local_ratio)
        self.sc, self.b = sc, b
        self.envs = [module.parallel_env(**kwargs) for _ in range(b)]
        self.names = list(sc.agent_names)
        self._obs: list[dict[str, np.ndarray]] = [{} for _ in range(b)]

    def reset(self, generator: torch.Generator) -> None:
        seeds = torch.randint(0, 2**31 - 1, (self.b,), generator=generator).tolist()
        for k, env in enumerate(self.envs):
            self._obs[k], _ = env.reset(seed=int(seeds[k]))
            if list(env.agents) != self.names:
                raise RuntimeError(f"mpe2 {self.sc.name}: agents {env.agents} differ from the expected {self.names}")

    def step(self, native: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        r = torch.zeros(self.b, self.sc.n_all, dtype=torch.float64)
        a = native.numpy().astype(np.float32)  # mpe2's Box(0, 1, float32) refuses (and warns about) float64 arrays
        for k in active.nonzero().flatten().tolist():
            env = self.envs[k]
            acts = {name: a[k, i, : env.action_space(name).shape[0]] for i, name in enumerate(self.names)}
            self._obs[k], rew, _, _, _ = env.step(acts)
            r[k] = torch.tensor([rew[name] for name in self.names], dtype=torch.float64)
        return r

    def observe(self) -> list[torch.Tensor]:
        return [torch.from_numpy(np.stack([self._obs[k][name] for k in range(self.b)]).astype(np.float64))
                for name in self.names]

    def _world(self, k: int) -> Any:
        return self.envs[k].unwrapped.world

    def get_state(self) -> dict[str, torch.Tensor]:
        ent = [self._world(k).entities for k in range(self.b)]
        n = self.sc.n_all
        return {"pos": torch.tensor(np.array([[e.state.p_pos for e in es] for es in ent]), dtype=torch.float64),
                "vel": torch.tensor(np.array([[e.state.p_vel for e in es[:n]] for es in ent]), dtype=torch.float64),
                "comm": torch.tensor(np.array([[a.state.c for a in self._world(k).agents] for k in range(self.b)]),
                                     dtype=torch.float64).reshape(self.b, n, self.sc.dim_c)}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        n = self.sc.n_all
        for k in range(self.b):
            world = self._world(k)
            for j, ent in enumerate(world.entities):
                ent.state.p_pos = state["pos"][k, j].numpy().astype(np.float64).copy()
                if j < n:
                    ent.state.p_vel = state["vel"][k, j].numpy().astype(np.float64).copy()
                    ent.state.c = state["comm"][k, j].numpy().astype(np.float64).copy()
            raw = self.envs[k].unwrapped
            self._obs[k] = {name: raw.observe(name) for name in self.names}


# ---------------------------------------------------------------------- prey policies
@dataclass(frozen=True)
class PreyTask:
    """What a prey policy is told about the task at ``begin``.

    Attributes:
        task: scenario name (``simple_tag`` or ``simple_world_comm``).
        n_prey: number of prey M.
        obs_dim: size of a prey observation (tag 14, world 28).
        self_pos: slice of the prey's own position in its observation.
        predator_rel: slice of the predators' positions relative to the prey
            (2 entries per predator; (0, 0) for a predator hidden by a forest).
        n_predators: number of predators.
    """

    task: str
    n_prey: int
    obs_dim: int
    self_pos: slice
    predator_rel: slice
    n_predators: int


PREY_TASKS = {
    "simple_tag": PreyTask("simple_tag", 1, 14, slice(2, 4), slice(8, 14), 3),
    "simple_world_comm": PreyTask("simple_world_comm", 2, 28, slice(2, 4), slice(14, 22), 4),
}


@runtime_checkable
class PreyPolicy(Protocol):
    """Interface of the fixed policy of the non-learning agents (prey).

    ``name`` is recorded in ``env_options["prey_policy"]`` (make it a string
    that ``make(..., prey_policy=name)`` resolves back, e.g. a weights path).
    ``action_mode`` ("xy" or "mpe2") says how ``act``'s output is read,
    independently of the learners' mode. ``begin`` is called at every
    ``reset()``; ``act`` maps the prey observations [B, M, obs_dim] (float32)
    to actions [B, M, 2] ("xy", in [-1, 1]) or [B, M, 5] ("mpe2", in [0, 1]).
    """

    name: str
    action_mode: str

    def begin(self, task: PreyTask, num_envs: int, generator: torch.Generator) -> None: ...

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


class HeuristicPrey:
    """Scripted flee policy (the default prey; the trained ones are ``prey_policy="pretrained"``).

    Direction = unit(-sum_j r_j / |r_j|^3) over the visible predators j (r_j =
    predator minus prey position) plus a pull to the centre that grows from 0
    at distance 0.6 from the centre to 2 at distance 0.9; the action is the
    unit vector of that sum ("xy" mode), or no force if it vanishes.
    """

    name = "heuristic"
    action_mode = "xy"

    def begin(self, task: PreyTask, num_envs: int, generator: torch.Generator) -> None:
        self.task = task

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        t = self.task
        rel = obs[..., t.predator_rel].reshape(*obs.shape[:-1], t.n_predators, 2).double()
        d = rel.norm(dim=-1, keepdim=True)
        visible = d > 0
        flee = -(torch.where(visible, rel / d.clamp_min(1e-6) ** 3, torch.zeros_like(rel))).sum(-2)
        flee = flee / flee.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        pos = obs[..., t.self_pos].double()
        r = pos.norm(dim=-1, keepdim=True)
        home = -pos / r.clamp_min(1e-9) * (2 * ((r - 0.6) / 0.3).clamp(0, 1))
        out = flee + home
        return (out / out.norm(dim=-1, keepdim=True).clamp_min(1.0)).clamp(-1, 1).float()


class RandomPrey:
    """Uniform force directions in [-1, 1]^2 ("xy")."""

    name = "random"
    action_mode = "xy"

    def begin(self, task: PreyTask, num_envs: int, generator: torch.Generator) -> None:
        pass

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(*obs.shape[:-1], 2, generator=generator) * 2 - 1


class StillPrey:
    """No force."""

    name = "still"
    action_mode = "xy"

    def begin(self, task: PreyTask, num_envs: int, generator: torch.Generator) -> None:
        pass

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(*obs.shape[:-1], 2)


class MLPPreyPolicy(torch.nn.Module):
    """A trained prey: MLP (ReLU) from the prey observation to its action (tanh for "xy", sigmoid for "mpe2").

    File format ``lit_omarl-prey-v1`` (``torch.save`` of a dict, loadable with
    ``weights_only=True``): ``format``, ``task``, ``action_mode``, ``obs_dim``,
    ``act_dim``, ``hidden`` (list of ints), ``state_dict`` (of the
    ``torch.nn.Sequential`` ``net``), optional ``meta`` (dict of provenance).
    """

    def __init__(self, task: str, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), action_mode: str = "xy",
                 name: str = "mlp") -> None:
        super().__init__()
        if action_mode not in ("xy", "mpe2"):
            raise ValueError(f"MLPPreyPolicy: action_mode must be 'xy' or 'mpe2', got {action_mode!r}")
        self.task_name, self.obs_dim, self.act_dim = task, int(obs_dim), int(act_dim)
        self.hidden, self.action_mode, self.name = [int(h) for h in hidden], action_mode, name
        layers: list[torch.nn.Module] = []
        width = self.obs_dim
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers += [torch.nn.Linear(width, self.act_dim), torch.nn.Tanh() if action_mode == "xy" else torch.nn.Sigmoid()]
        self.net = torch.nn.Sequential(*layers)
        self.meta: dict[str, Any] = {}

    def begin(self, task: PreyTask, num_envs: int, generator: torch.Generator) -> None:
        if task.task != self.task_name or task.obs_dim != self.obs_dim:
            raise ValueError(f"prey policy {self.name!r} was made for {self.task_name} (obs_dim {self.obs_dim}), "
                             f"not {task.task} (obs_dim {task.obs_dim})")

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.net(obs.float())

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        path = Path(path)
        torch.save({"format": PREY_FORMAT, "task": self.task_name, "action_mode": self.action_mode,
                    "obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": self.hidden,
                    "state_dict": self.net.state_dict(), "meta": dict(meta or self.meta)}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> "MLPPreyPolicy":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: prey_policy weights file does not exist")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure means "not our file"
            raise ValueError(f"{path}: not a readable prey_policy weights file ({type(err).__name__}: {err})") from err
        if not isinstance(data, dict) or data.get("format") != PREY_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: key 'format': expected {PREY_FORMAT!r}, got {got!r}")
        for key in ("task", "action_mode", "obs_dim", "act_dim", "hidden", "state_dict"):
            if key not in data:
                raise ValueError(f"{path}: key {key!r} is missing from the prey_policy weights file")
        policy = cls(data["task"], data["obs_dim"], data["act_dim"], data["hidden"], data["action_mode"], name or str(path))
        try:
            policy.net.load_state_dict(data["state_dict"])
        except RuntimeError as err:
            raise ValueError(f"{path}: key 'state_dict' does not fit the declared architecture: {err}") from err
        policy.meta = dict(data.get("meta") or {})
        policy.eval()
        return policy


PRETRAINED_PREY_DIR = Path(__file__).resolve().parents[1] / "assets" / "behaviour" / "mpe_prey"


class PretrainedPrey:
    """The prey trained and shipped by lit_omarl (``prey_policy="pretrained"``).

    Weights: ``lit_omarl/assets/behaviour/mpe_prey/<task>.pt`` (format
    ``lit_omarl-prey-v1``, "xy" actions), trained by
    :mod:`lit_omarl.behaviour.mpe_prey` (command, seed, steps and returns in
    the README there). The file of the task is loaded at the first reset.
    """

    name = "pretrained"
    action_mode = "xy"

    def __init__(self) -> None:
        self.policy: MLPPreyPolicy | None = None

    def begin(self, task: PreyTask, num_envs: int, generator: torch.Generator) -> None:
        if self.policy is None or self.policy.task_name != task.task:
            path = PRETRAINED_PREY_DIR / f"{task.task}.pt"
            if not path.is_file():
                shipped = sorted(p.stem for p in PRETRAINED_PREY_DIR.glob("*.pt"))
                raise ValueError(f"prey_policy 'pretrained': no prey shipped for {task.task} ({path} does not exist; "
                                 f"shipped: {', '.join(shipped) or 'none'})")
            policy = MLPPreyPolicy.load(path, name="pretrained")
            if policy.action_mode != self.action_mode:
                raise ValueError(f"{path}: key 'action_mode': the shipped prey must use 'xy', got {policy.action_mode!r}")
            self.policy = policy
        self.policy.begin(task, num_envs, generator)

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.policy is None:
            raise RuntimeError("prey_policy 'pretrained': act() before begin()")
        return self.policy.act(obs, generator)


_BUILTIN_PREY = {"heuristic": HeuristicPrey, "random": RandomPrey, "still": StillPrey, "pretrained": PretrainedPrey}


def resolve_prey_policy(value: Any) -> Any:
    """A prey policy object from the option ``prey_policy`` (see the module docstring)."""
    if not isinstance(value, str):
        if not (hasattr(value, "act") and hasattr(value, "begin") and hasattr(value, "action_mode")):
            raise ValueError(f"prey_policy must be a name, a weights path, 'module:name' or an object with "
                             f"begin/act/action_mode, got {type(value).__name__}")
        return value
    if value in _BUILTIN_PREY:
        return _BUILTIN_PREY[value]()
    if value.startswith("file:") or value.endswith(".pt"):
        return MLPPreyPolicy.load(value.removeprefix("file:"), name=value)
    if ":" in value:
        module, _, attr = value.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"prey_policy {value!r}: cannot import ({type(err).__name__}: {err})") from err
        policy = obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "act")) else obj
        if not hasattr(policy, "name") or not isinstance(getattr(policy, "name"), str):
            try:
                policy.name = value
            except AttributeError:
                pass
        return resolve_prey_policy(policy)
    raise ValueError(f"unknown prey_policy {value!r}; use one of {', '.join(_BUILTIN_PREY)}, a weights file "
                     f"'path.pt' / 'file:path', or 'package.module:name'")


# ---------------------------------------------------------------------- the env
def _to_native(actions: torch.Tensor, mode: str, dim_c: int, speaker: torch.Tensor) -> torch.Tensor:
    """Actions [B, M, A] of ``mode`` -> mpe2's continuous actions [B, M, 5 + dim_c] in [0, 1]."""
    b, m = actions.shape[:2]
    out = torch.zeros(b, m, 5 + dim_c, dtype=torch.float64)
    a = actions.to(torch.float64)
    if mode == "xy":
        x, y = a[..., 0], a[..., 1]
        out[..., 1], out[..., 2], out[..., 3], out[..., 4] = (-x).clamp_min(0), x.clamp_min(0), (-y).clamp_min(0), y.clamp_min(0)
        if dim_c:
            out[..., 5:] = torch.where(speaker[None, :, None], (a[..., 2:2 + dim_c] + 1) / 2 if a.shape[-1] >= 2 + dim_c else 0.0, 0.0)
    else:
        k = min(a.shape[-1], 5 + dim_c)
        out[..., :k] = a[..., :k]
        if dim_c:
            out[..., 5:] = torch.where(speaker[None, :, None], out[..., 5:], 0.0)
    return out


class MPEEnv(BatchedEnv):
    """B episodes of one MPE task (see the module docstring).

    Attributes:
        scenario: the static :class:`Scenario`.
        agent_obs_dims / obs_mask, agent_action_dims / action_mask: sizes and masks (``envs/continuous.py``).
        prey_policy: the prey's policy object (tag, world), else None.
        agent_rewards [B, N] / all_rewards [B, all agents]: per-agent rewards of the last step.
    """

    def __init__(self, task: str, num_envs: int = 1, seed: int = 0, *, episode_limit: int = EPISODE_LIMIT,
                 action_mode: ActionMode = "xy", backend: Backend = "torch", prey_policy: Any = "heuristic",
                 team_reward: TeamReward = "mean", local_ratio: float = 0.5, out_of_bounds: OutOfBounds = "clip") -> None:
        env_id = f"mpe/{task}"
        if task not in SCENARIOS:
            raise ValueError(f"mpe: unknown task {task!r}; known tasks: {', '.join(TASKS)}")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if int(episode_limit) < 1:
            raise ValueError(f"{env_id}: episode_limit must be >= 1, got {episode_limit}")
        if action_mode not in ("xy", "mpe2"):
            raise ValueError(f"{env_id}: option action_mode must be 'xy' or 'mpe2', got {action_mode!r}")
        if backend not in ("torch", "mpe2"):
            raise ValueError(f"{env_id}: option backend must be 'torch' or 'mpe2', got {backend!r}")
        if team_reward not in ("mean", "first"):
            raise ValueError(f"{env_id}: option team_reward must be 'mean' or 'first', got {team_reward!r}")
        if not 0.0 <= float(local_ratio) <= 1.0:
            raise ValueError(f"{env_id}: option local_ratio must be in [0, 1], got {local_ratio!r}")
        self.out_of_bounds = check_out_of_bounds_option(env_id, out_of_bounds)
        sc = SCENARIOS[task]
        self.scenario = sc
        self.action_mode, self.team_reward = action_mode, team_reward
        base = 2 if action_mode == "xy" else 5
        self.agent_action_dims = tuple(base + (sc.dim_c if i in sc.speakers else 0) for i in sc.learners)
        self.action_mask = padding_mask(self.agent_action_dims)
        self.agent_obs_dims = tuple(sc.obs_dims[i] for i in sc.learners)
        self.obs_mask = padding_mask(self.agent_obs_dims)
        self.prey_policy = None
        options: dict[str, Any] = {"episode_limit": int(episode_limit), "action_mode": action_mode, "backend": backend,
                                   "team_reward": team_reward, "out_of_bounds": out_of_bounds}
        if task == "simple_spread":
            options["local_ratio"] = float(local_ratio)
        else:
            self.prey_policy = resolve_prey_policy(prey_policy)
            name = getattr(self.prey_policy, "name", None)
            options["prey_policy"] = name if isinstance(name, str) else f"<unregistered {type(self.prey_policy).__name__}>"
            if self.prey_policy.action_mode not in ("xy", "mpe2"):
                raise ValueError(f"{env_id}: prey_policy {options['prey_policy']!r} has action_mode "
                                 f"{self.prey_policy.action_mode!r}; expected 'xy' or 'mpe2'")
        low, high = (-1.0, 1.0) if action_mode == "xy" else (0.0, 1.0)
        spec = EnvSpec(env_id=env_id, n_agents=len(sc.learners), obs_dim=max(self.agent_obs_dims),
                       state_dim=sum(sc.obs_dims), n_actions=max(self.agent_action_dims), action_type="continuous",
                       episode_limit=int(episode_limit), env_options=options, action_low=low, action_high=high)
        super().__init__(spec, num_envs, seed)
        if backend == "torch":
            self.world: Any = _TorchWorld(sc, self.num_envs, local_ratio)
        else:
            self.world = _Mpe2World(sc, self.num_envs, local_ratio, int(episode_limit))
        self._learners = torch.tensor(sc.learners)
        self._speaker_all = torch.zeros(sc.n_all, dtype=torch.bool)
        self._speaker_all[list(sc.speakers)] = True
        self._prey_obs: torch.Tensor | None = None
        self.agent_rewards = torch.zeros(self.num_envs, len(sc.learners))
        self.all_rewards = torch.zeros(self.num_envs, sc.n_all)

    # ------------------------------------------------------------------ helpers
    def _observe(self, rewards: torch.Tensor) -> TimeStep:
        sc, b = self.scenario, self.num_envs
        obs_all = [o.float() for o in self.world.observe()]
        state = torch.cat(obs_all, -1)
        width = self.spec.obs_dim
        obs = torch.stack([torch.nn.functional.pad(obs_all[i], (0, width - obs_all[i].shape[-1])) for i in sc.learners], 1)
        if sc.preys:
            self._prey_obs = torch.stack([obs_all[i] for i in sc.preys], 1)
        self.all_rewards = rewards.float()
        self.agent_rewards = self.all_rewards[:, self._learners]
        team = self.agent_rewards.mean(-1) if self.team_reward == "mean" else self.agent_rewards[:, 0]
        return TimeStep(obs=obs, state=state, avail=torch.ones(b, len(sc.learners), self.spec.n_actions, dtype=torch.bool),
                        reward=team, terminated=torch.zeros(b, dtype=torch.bool), truncated=torch.zeros(b, dtype=torch.bool))

    def get_world_state(self) -> dict[str, torch.Tensor]:
        """Positions [B, entities, 2], velocities [B, agents, 2] and communication [B, agents, dim_c] (float64)."""
        return self.world.get_state()

    def set_world_state(self, state: dict[str, torch.Tensor]) -> TimeStep:
        """Replace the world state of all B episodes (e.g. to replay a situation); returns the new observations.

        Step counters and ``active`` are unchanged; call after ``reset()``.
        """
        if self._last is None:
            raise RuntimeError("call reset() before set_world_state()")
        self.world.set_state(state)
        ts = self._observe(torch.zeros(self.num_envs, self.scenario.n_all, dtype=torch.float64))
        ts.reward = torch.zeros(self.num_envs)
        self._last = ts
        return ts

    # ------------------------------------------------------------------ protocol
    def _reset(self) -> TimeStep:
        self.world.reset(self.generator)
        if self.prey_policy is not None:
            self.prey_policy.begin(PREY_TASKS[self.scenario.name], self.num_envs, self.generator)
        return self._observe(torch.zeros(self.num_envs, self.scenario.n_all, dtype=torch.float64))

    def _step(self, actions: torch.Tensor) -> TimeStep:
        sc = self.scenario
        acts = prepare_actions(self.spec.env_id, actions, self.active, self.spec.action_low, self.spec.action_high,
                               self.action_mask, self.out_of_bounds)
        native = torch.zeros(self.num_envs, sc.n_all, 5 + sc.dim_c, dtype=torch.float64)
        native[:, self._learners] = _to_native(acts, self.action_mode, sc.dim_c, self._speaker_all[self._learners])
        if sc.preys:
            prey = self.prey_policy.act(self._prey_obs, self.generator)
            mode = self.prey_policy.action_mode
            lo, hi = (-1.0, 1.0) if mode == "xy" else (0.0, 1.0)
            prey = torch.nan_to_num(prey.detach().to(torch.float64), nan=0.0).clamp(lo, hi)
            native[:, list(sc.preys)] = _to_native(prey, mode, sc.dim_c, self._speaker_all[list(sc.preys)])
        rewards = self.world.step(native.clamp(0.0, 1.0), self.active.clone())
        return self._observe(rewards)

    def close(self) -> None:
        for env in getattr(self.world, "envs", []):
            env.close()


def make_mpe(env_id: str, *, num_envs: int = 1, seed: int = 0, episode_limit: int = EPISODE_LIMIT,
             action_mode: ActionMode = "xy", backend: Backend = "torch", prey_policy: Any = "heuristic",
             team_reward: TeamReward = "mean", local_ratio: float = 0.5, out_of_bounds: OutOfBounds = "clip") -> MPEEnv:
    """Factory of ``mpe/<task>`` (registered in :mod:`lit_omarl.envs`); options in the module docstring.

    ``prey_policy`` only applies to tag and world, ``local_ratio`` only to spread.
    """
    head, _, task = env_id.partition("/")
    if head != "mpe" or not task:
        raise ValueError(f"mpe: expected an id 'mpe/<task>' with task one of {', '.join(TASKS)}, got {env_id!r}")
    return MPEEnv(task, num_envs, seed, episode_limit=episode_limit, action_mode=action_mode, backend=backend,
                  prey_policy=prey_policy, team_reward=team_reward, local_ratio=local_ratio, out_of_bounds=out_of_bounds)
