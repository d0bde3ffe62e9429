"""Dataset generation: roll out a behaviour specification in a batched env.

``generate_dataset(env_id, behaviour, episodes, seed, out=None, ...)`` runs
``batch_size`` episodes at once until ``episodes`` are collected and returns
``(arrays, attrs)`` in the layout of ``docs/CONTRACTS.md`` (writing them with
``lit_omarl.data.schema.write_dataset`` when ``out`` is given). The result
depends only on (env, options, behaviour, episodes, seed, batch_size).

Behaviour grammar (the text of ``lit-omarl data generate --behaviour``):

``uniform``
    each agent uniformly over its available actions (uniform in
    [action_low, action_high] for continuous envs).
``probs:P1,P2,...``
    every agent draws independently from the same distribution over the A
    actions; ``probs:P,...;Q,...`` gives one distribution per agent
    (``;``-separated, N of them). Numbers may be fractions (``1/3``). Mass on
    unavailable actions is dropped and the rest renormalised.
``joint:0-1,1-0`` or ``joint:AB,BA``
    an explicit set of joint actions (per-agent actions joined by ``-``, or
    one letter per agent with A=0, B=1, ...); every step draws one of them
    uniformly.
``expert``
    the env's scripted expert (``env.expert()``): matrix games play the best
    joint action, mmdp moves up to S2 and stays, equal_line spreads to equally
    spaced targets, bridge is AlberDICE's multi-modal optimal policy.
``epsilon:E:SPEC``
    each agent independently takes a uniform random action with
    probability E, otherwise follows SPEC.
``mix:SPEC1|SPEC2|...``
    equal mixture by episode: episode k follows SPEC_{k mod m} (so the counts
    are equal when ``episodes`` is a multiple of m).
``filter:F:SPEC``
    rejection sampling: keep only episodes whose return is > F times the
    env's maximum possible return (``env.max_return``; e.g. CFCQL's MMDP data
    "with reward > 0.8 r_max"). Only as the outermost spec.
``band:LO:HI:SPEC``
    rejection sampling into a return band: keep only episodes with
    LO * max_return <= return < HI * max_return (HI >= 1: no upper bound, so
    the band includes the maximum). OMAC's good / medium / poor datasets are
    bands of the same pool of episodes (``lit_omarl.behaviour.recipe``).
    Only as the outermost spec.
``policy:PATH``
    a trained ``qmix_online`` checkpoint acting greedily; PATH is a file, or
    else the name of a shipped policy such as ``smax_2s3z/expert``
    (``lit_omarl/assets/behaviour/smax_2s3z/expert.pt``). In a continuous
    env, a ``matd3_online`` checkpoint: its deterministic actors
    (``policy:mpe_simple_spread/expert``).
``agents:SPEC_1|SPEC_2|...|SPEC_N``
    one specification per agent: every part acts on the whole team each step
    and agent k takes its action (and probabilities) from SPEC_k; e.g. MABCQ's
    per-agent datasets (mabcq.md Sec. 4.1), where agent i follows the
    intermediate policy while the others follow the expert:
    ``agents:policy:X/medium|policy:X/expert``. Exactly N parts; a part may
    not contain ``mix:`` (its ``|`` would be ambiguous).
``noise:SIGMA:SPEC``
    continuous envs only: SPEC's actions plus Gaussian noise of std SIGMA
    in units of the action half-range (high - low) / 2, clipped to the
    bounds (padded action entries stay 0); e.g.
    ``noise:0.1:policy:mpe_simple_spread/expert`` (OMAR's datasets add
    noise to the MATD3 policies "to increase diversity").

Named presets expand to the above: ``xor-a`` = ``joint:AB,BA``, ``xor-b`` =
``joint:AA,AB,BA``, ``xor-c`` = ``joint:AA,AB,BA,BB`` (InSPO Table 1);
``mne-a`` = ``probs:1/3,1/3,1/3``, ``mne-b`` = ``probs:0.8,0.1,0.1`` (InSPO
Table 2); ``mabcq`` = ``probs:0.8,0.2;0.4,0.6`` (MABCQ Table 1); ``mixed`` =
``mix:expert|uniform`` (AlberDICE's Bridge ``buffer_mix`` recipe);
``random`` = ``uniform``.

``behaviour_probs`` [E, T, N, A] is recorded when every part of the
behaviour has explicit per-agent probabilities (uniform, probs, epsilon of
those, mixes of those). Bad specs raise ValueError naming the spec and the
problem.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

PRESETS: dict[str, str] = {
    "xor-a": "joint:AB,BA",
    "xor-b": "joint:AA,AB,BA",
    "xor-c": "joint:AA,AB,BA,BB",
    "mne-a": "probs:1/3,1/3,1/3",
    "mne-b": "probs:0.8,0.1,0.1",
    "mabcq": "probs:0.8,0.2;0.4,0.6",
    "mixed": "mix:expert|uniform",
    "random": "uniform",
}


class BehaviourError(ValueError):
    """A behaviour specification that cannot be parsed or does not fit the env."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"behaviour {text!r}: {problem}")


# ------------------------------------------------------------------ behaviours
class Behaviour:
    """A batched (possibly stateful per episode) behaviour policy.

    ``begin`` is called after each ``env.reset()`` with the global indices of
    the B episodes; ``act`` returns actions and, if ``has_probs``, the
    per-agent action probabilities [B, N, A] it sampled them from.
    """

    has_probs = False

    def __init__(self, text: str, spec: EnvSpec) -> None:
        self.text, self.spec = text, spec

    def bind(self, env: BatchedEnv) -> None:
        pass

    def begin(self, ts: TimeStep, episode_index: torch.Tensor, generator: torch.Generator) -> None:
        pass

    def act(self, ts: TimeStep, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


def _sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One action per row of probs [..., A] (rows sum to 1)."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def _uniform_continuous(spec: EnvSpec, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(*shape, spec.n_agents, spec.n_actions, generator=generator)
    return spec.action_low + (spec.action_high - spec.action_low) * u


class Uniform(Behaviour):
    def __init__(self, text: str, spec: EnvSpec) -> None:
        super().__init__(text, spec)
        self.has_probs = spec.discrete

    def act(self, ts, generator):
        if not self.spec.discrete:
            return _uniform_continuous(self.spec, (ts.obs.shape[0],), generator), None
        avail = ts.avail.float()
        probs = avail / avail.sum(-1, keepdim=True).clamp_min(1.0)
        return _sample(probs, generator), probs


class Probs(Behaviour):
    has_probs = True

    def __init__(self, text: str, spec: EnvSpec, table: torch.Tensor) -> None:
        super().__init__(text, spec)
        self.table = table  # [N, A]

    def act(self, ts, generator):
        probs = self.table[None] * ts.avail.float()
        mass = probs.sum(-1, keepdim=True)
        if bool((mass[..., 0] <= 0).any()):
            raise BehaviourError(self.text, "puts no probability on any available action of some agent")
        probs = probs / mass
        return _sample(probs, generator), probs


class Joint(Behaviour):
    def __init__(self, text: str, spec: EnvSpec, joint: torch.Tensor) -> None:
        super().__init__(text, spec)
        self.joint = joint  # [K, N]

    def act(self, ts, generator):
        b = ts.obs.shape[0]
        k = torch.randint(0, self.joint.shape[0], (b,), generator=generator)
        actions = self.joint[k]
        ok = ts.avail.gather(-1, actions[..., None])[..., 0].all(-1)
        if not bool(ok.all()):
            raise BehaviourError(self.text, "a listed joint action is not available in this env state")
        return actions, None


class Expert(Behaviour):
    def bind(self, env):
        if not callable(getattr(env, "expert", None)):
            raise BehaviourError(self.text, f"env {env.spec.env_id!r} has no scripted expert")
        self.policy = env.expert()

    def begin(self, ts, episode_index, generator):
        self.policy.begin(ts, generator)

    def act(self, ts, generator):
        return self.policy.act(ts, generator), None


class Epsilon(Behaviour):
    def __init__(self, text: str, spec: EnvSpec, eps: float, inner: Behaviour) -> None:
        super().__init__(text, spec)
        self.eps, self.inner = eps, inner
        self.uniform = Uniform("uniform", spec)
        self.has_probs = inner.has_probs

    def bind(self, env):
        self.inner.bind(env)

    def begin(self, ts, episode_index, generator):
        self.inner.begin(ts, episode_index, generator)

    def act(self, ts, generator):
        actions, probs = self.inner.act(ts, generator)
        rand_actions, rand_probs = self.uniform.act(ts, generator)
        b, n = ts.obs.shape[:2]
        explore = torch.rand(b, n, generator=generator) < self.eps
        mask = explore if self.spec.discrete else explore[..., None]
        actions = torch.where(mask, rand_actions, actions)
        if probs is not None:
            probs = (1.0 - self.eps) * probs + self.eps * rand_probs
        return actions, probs


class Mix(Behaviour):
    def __init__(self, text: str, spec: EnvSpec, parts: list[Behaviour]) -> None:
        super().__init__(text, spec)
        self.parts = parts
        self.has_probs = all(p.has_probs for p in parts)
        self.component = torch.zeros(0, dtype=torch.long)

    def bind(self, env):
        for part in self.parts:
            part.bind(env)

    def begin(self, ts, episode_index, generator):
        self.component = episode_index % len(self.parts)
        for part in self.parts:
            part.begin(ts, episode_index, generator)

    def act(self, ts, generator):
        outs = [part.act(ts, generator) for part in self.parts]  # every part acts so RNG use is fixed
        actions, probs = outs[0]
        for k, (a_k, p_k) in enumerate(outs[1:], start=1):
            pick = self.component == k
            actions = torch.where(pick.view(-1, *([1] * (actions.dim() - 1))), a_k, actions)
            if self.has_probs:
                probs = torch.where(pick[:, None, None], p_k, probs)
        return actions, (probs if self.has_probs else None)


class PerAgent(Behaviour):
    """``agents:S_1|...|S_N``: agent k acts as S_k (every part acts on the whole team so RNG use is fixed)."""

    def __init__(self, text: str, spec: EnvSpec, parts: list[Behaviour]) -> None:
        super().__init__(text, spec)
        self.parts = parts
        self.has_probs = all(p.has_probs for p in parts)

    def bind(self, env):
        for part in self.parts:
            part.bind(env)

    def begin(self, ts, episode_index, generator):
        for part in self.parts:
            part.begin(ts, episode_index, generator)

    def act(self, ts, generator):
        outs = [part.act(ts, generator) for part in self.parts]
        actions = torch.stack([a[:, k] for k, (a, _) in enumerate(outs)], dim=1)
        probs = torch.stack([p[:, k] for k, (_, p) in enumerate(outs)], dim=1) if self.has_probs else None
        return actions, probs


class Filter(Behaviour):
    def __init__(self, text: str, spec: EnvSpec, fraction: float, inner: Behaviour) -> None:
        super().__init__(text, spec)
        self.fraction, self.inner = fraction, inner
        self.has_probs = inner.has_probs
        self.threshold = math.nan

    def bind(self, env):
        max_return = getattr(env, "max_return", None)
        if max_return is None:
            raise BehaviourError(self.text, f"env {env.spec.env_id!r} does not define a maximum return (max_return)")
        self.set_max_return(float(max_return))
        self.inner.bind(env)

    def set_max_return(self, max_return: float) -> None:
        self.threshold = self.fraction * max_return

    def begin(self, ts, episode_index, generator):
        self.inner.begin(ts, episode_index, generator)

    def act(self, ts, generator):
        return self.inner.act(ts, generator)

    def accept(self, returns: torch.Tensor) -> torch.Tensor:
        return returns > self.threshold

    def describe(self) -> str:
        return f"return > {self.threshold:g}"


class Band(Filter):
    """Rejection sampling into lo * max_return <= return < hi * max_return (no upper bound when hi >= 1)."""

    def __init__(self, text: str, spec: EnvSpec, lo: float, hi: float, inner: Behaviour) -> None:
        super().__init__(text, spec, lo, inner)
        self.lo, self.hi = lo, hi
        self.upper = math.inf

    def set_max_return(self, max_return: float) -> None:
        self.threshold = self.lo * max_return
        self.upper = math.inf if self.hi >= 1.0 else self.hi * max_return

    def accept(self, returns: torch.Tensor) -> torch.Tensor:
        return (returns >= self.threshold) & (returns < self.upper)

    def describe(self) -> str:
        return f"{self.threshold:g} <= return" + ("" if math.isinf(self.upper) else f" < {self.upper:g}")


class GaussianNoise(Behaviour):
    """``noise:SIGMA:SPEC`` (continuous): inner actions + SIGMA * (high - low) / 2 * N(0, 1), clipped, padding kept 0."""

    def __init__(self, text: str, spec: EnvSpec, sigma: float, inner: Behaviour) -> None:
        super().__init__(text, spec)
        self.sigma, self.inner = sigma, inner
        self.mask: torch.Tensor | None = None

    def bind(self, env):
        mask = getattr(env, "action_mask", None)
        self.mask = None if mask is None else mask.float()
        self.inner.bind(env)

    def begin(self, ts, episode_index, generator):
        self.inner.begin(ts, episode_index, generator)

    def act(self, ts, generator):
        actions, _ = self.inner.act(ts, generator)
        s = self.spec
        eps = torch.randn(actions.shape, generator=generator)
        out = (actions + self.sigma * 0.5 * (s.action_high - s.action_low) * eps).clamp(s.action_low, s.action_high)
        if self.mask is not None:
            out = out * self.mask
        return out, None


# Named behaviours registered by other modules (e.g. trained policies shipped with the package):
# factory(text, spec) -> Behaviour.
_NAMED: dict[str, Callable[[str, EnvSpec], Behaviour]] = {}


def register_behaviour(name: str, factory: Callable[[str, EnvSpec], Behaviour]) -> None:
    """Make ``name`` usable in behaviour specs (e.g. a trained policy for SMAX)."""
    if ":" in name or "|" in name or name in PRESETS or name in ("uniform", "expert"):
        raise ValueError(f"register_behaviour: invalid or reserved name {name!r}")
    _NAMED[name] = factory


# ------------------------------------------------------------------- parsing
def _number(text: str, token: str) -> float:
    try:
        value = float(Fraction(token.strip()))
    except (ValueError, ZeroDivisionError):
        raise BehaviourError(text, f"{token.strip()!r} is not a number") from None
    return value


def _parse_probs(text: str, body: str, spec: EnvSpec) -> torch.Tensor:
    if not spec.discrete:
        raise BehaviourError(text, "probs: needs a discrete action space")
    groups = [g for g in body.split(";")]
    if len(groups) not in (1, spec.n_agents):
        raise BehaviourError(text, f"probs: gives {len(groups)} distributions; expected 1 or one per agent ({spec.n_agents})")
    rows = []
    for g in groups:
        values = [_number(text, v) for v in g.split(",")] if g.strip() else []
        if len(values) != spec.n_actions:
            raise BehaviourError(text, f"probs: {g!r} has {len(values)} probabilities; the env has {spec.n_actions} actions")
        if any(v < 0 or not math.isfinite(v) for v in values):
            raise BehaviourError(text, f"probs: {g!r} has a negative or non-finite probability")
        if abs(sum(values) - 1.0) > 1e-3:
            raise BehaviourError(text, f"probs: {g!r} sums to {sum(values):.6g}, not 1")
        rows.append([v / sum(values) for v in values])
    table = torch.tensor(rows, dtype=torch.float32)
    return table.expand(spec.n_agents, spec.n_actions).clone()


def _parse_joint(text: str, body: str, spec: EnvSpec) -> torch.Tensor:
    if not spec.discrete:
        raise BehaviourError(text, "joint: needs a discrete action space")
    joint = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            raise BehaviourError(text, "joint: empty joint action")
        if "-" in item or item.isdigit():
            try:
                acts = [int(x) for x in item.split("-")]
            except ValueError:
                raise BehaviourError(text, f"joint: {item!r} is not a '-'-separated list of action indices") from None
        elif item.isalpha():
            acts = [ord(c) - ord("A") for c in item.upper()]
        else:
            raise BehaviourError(text, f"joint: {item!r} must be letters (AB) or indices (0-1)")
        if len(acts) != spec.n_agents:
            raise BehaviourError(text, f"joint: {item!r} has {len(acts)} actions; the env has {spec.n_agents} agents")
        if any(a < 0 or a >= spec.n_actions for a in acts):
            raise BehaviourError(text, f"joint: {item!r} uses an action outside 0..{spec.n_actions - 1}")
        joint.append(acts)
    return torch.tensor(joint, dtype=torch.long)


def _fraction(text: str, token: str, what: str, upper: float | None = None) -> float:
    value = _number(text, token)
    if value < 0 or (upper is not None and value > upper):
        raise BehaviourError(text, f"{what} must be in [0, {upper}], got {value}" if upper is not None else f"{what} must be >= 0, got {value}")
    return value


def parse_behaviour(text: str, spec: EnvSpec, *, _top: bool = True, _full: str | None = None) -> Behaviour:
    """Parse a behaviour specification (grammar in the module docstring) for ``spec``."""
    if not isinstance(text, str) or not text.strip():
        raise BehaviourError(str(text), "empty behaviour specification")
    full = text if _full is None else _full
    t = text.strip()
    if t in PRESETS:
        return parse_behaviour(PRESETS[t], spec, _top=_top, _full=full)
    if t in _NAMED:
        return _NAMED[t](t, spec)
    head, sep, body = t.partition(":")
    head = head.strip()
    if t == "uniform":
        return Uniform(t, spec)
    if t == "expert":
        return Expert(t, spec)
    if not sep:
        known = ", ".join(["uniform", "expert", *PRESETS, *_NAMED])
        raise BehaviourError(full, f"unknown behaviour {t!r}; known names: {known}; or probs:, joint:, epsilon:, mix:, agents:, filter:, band:, noise:, policy:")
    if head == "probs":
        return Probs(t, spec, _parse_probs(full, body, spec))
    if head == "joint":
        return Joint(t, spec, _parse_joint(full, body, spec))
    if head == "band":
        lo, sep2, rest = body.partition(":")
        hi, sep3, inner = rest.partition(":")
        if not (sep2 and sep3) or not inner.strip():
            raise BehaviourError(full, "band: expects band:<lo>:<hi>:<spec> (fractions of the maximum return)")
        if not _top:
            raise BehaviourError(full, "band: must be the outermost part of the specification")
        lo_v, hi_v = _number(full, lo), _number(full, hi)
        if not (math.isfinite(lo_v) and math.isfinite(hi_v)) or lo_v >= hi_v:
            raise BehaviourError(full, f"band: needs finite bounds with lo < hi, got lo={lo_v:g}, hi={hi_v:g}")
        return Band(t, spec, lo_v, hi_v, parse_behaviour(inner, spec, _top=False, _full=full))
    if head in ("epsilon", "filter"):
        value, sep2, inner = body.partition(":")
        if not sep2 or not inner.strip():
            raise BehaviourError(full, f"{head}: expects {head}:<number>:<spec>")
        if head == "epsilon":
            eps = _fraction(full, value, "epsilon", 1.0)
            return Epsilon(t, spec, eps, parse_behaviour(inner, spec, _top=False, _full=full))
        if not _top:
            raise BehaviourError(full, "filter: must be the outermost part of the specification")
        if not math.isfinite(_number(full, value)):
            raise BehaviourError(full, "filter: the fraction must be finite")
        return Filter(t, spec, _number(full, value), parse_behaviour(inner, spec, _top=False, _full=full))
    if head == "mix":
        parts = body.split("|")
        if len(parts) < 2 or any(not p.strip() for p in parts):
            raise BehaviourError(full, "mix: expects at least two '|'-separated specifications")
        return Mix(t, spec, [parse_behaviour(p, spec, _top=False, _full=full) for p in parts])
    if head == "agents":
        parts = body.split("|")
        if len(parts) != spec.n_agents or any(not p.strip() for p in parts):
            raise BehaviourError(full, f"agents: expects one '|'-separated specification per agent "
                                       f"({spec.n_agents} agents, got {len(parts)} parts; a part may not contain mix:)")
        return PerAgent(t, spec, [parse_behaviour(p, spec, _top=False, _full=full) for p in parts])
    if head == "noise":
        if spec.discrete:
            raise BehaviourError(full, "noise: needs a continuous action space (use epsilon: for discrete envs)")
        value, sep2, inner = body.partition(":")
        if not sep2 or not inner.strip():
            raise BehaviourError(full, "noise: expects noise:<std>:<spec>")
        sigma = _fraction(full, value, "noise std")
        if not math.isfinite(sigma):
            raise BehaviourError(full, "noise: the std must be finite")
        return GaussianNoise(t, spec, sigma, parse_behaviour(inner, spec, _top=False, _full=full))
    if head == "policy" and not spec.discrete:  # a matd3_online checkpoint, e.g. policy:mpe_simple_spread/expert
        from lit_omarl.behaviour.matd3_online import actor_behaviour

        return actor_behaviour(t, spec)
    if head == "policy":  # a trained checkpoint acting greedily, e.g. policy:lit_omarl/assets/behaviour/smax_2s3z/expert.pt
        from lit_omarl.behaviour import policy_behaviour

        return policy_behaviour(t, spec)
    raise BehaviourError(full, f"unknown behaviour kind {head!r}; expected probs, joint, epsilon, mix, agents, filter, band, noise or policy")


# ----------------------------------------------------------------- generation
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lit-omarl")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def _seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the env and the behaviour from one user seed."""
    env_seed, policy_seed = np.random.SeedSequence(int(seed)).generate_state(2)
    return int(env_seed), int(policy_seed)


@contextmanager
def _single_threaded():
    """Run torch on one intra-op thread: toy batches are too small to gain from more, and
    parallel kernels can stall for milliseconds each when the other cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def rollout(env: BatchedEnv, behaviour: Behaviour, episode_index: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Run one batch of ``env.num_envs`` episodes to the end with ``behaviour``.

    Args:
        env: a batched env (reset here, no auto-reset).
        behaviour: acts on every step (``begin`` is called after the reset).
        episode_index: global indices of the B episodes (``mix:`` uses them).
        generator: the behaviour's random stream.

    Returns:
        Padded tensors of the schema-v1 layout with B episodes (zeros outside
        each episode): obs, state, actions, reward, terminated and filled (bool),
        avail_actions (discrete envs), behaviour_probs (if the behaviour has
        them) and won (if the env reports it).
    """
    spec, b = env.spec, env.num_envs
    t_max, n = spec.episode_limit, spec.n_agents
    ts = env.reset()
    behaviour.begin(ts, episode_index, generator)
    obs = torch.zeros(b, t_max + 1, n, spec.obs_dim)
    state = torch.zeros(b, t_max + 1, spec.state_dim)
    avail = torch.zeros(b, t_max + 1, n, spec.n_actions, dtype=torch.bool)
    actions = torch.zeros(b, t_max, n, dtype=torch.long) if spec.discrete else torch.zeros(b, t_max, n, spec.n_actions)
    reward = torch.zeros(b, t_max)
    terminated = torch.zeros(b, t_max, dtype=torch.bool)
    filled = torch.zeros(b, t_max, dtype=torch.bool)
    probs_buf = torch.zeros(b, t_max, n, spec.n_actions) if behaviour.has_probs else None
    won = None
    obs[:, 0], state[:, 0], avail[:, 0] = ts.obs, ts.state, ts.avail
    for t in range(t_max):
        active = env.active.clone()
        if not bool(active.any()):
            break
        a, p = behaviour.act(ts, generator)
        ts = env.step(a)
        m = active.view(-1, *([1] * (a.dim() - 1)))
        actions[:, t] = torch.where(m, a, torch.zeros_like(a))
        if probs_buf is not None and p is not None:
            probs_buf[:, t] = p * active[:, None, None]
        reward[:, t] = ts.reward * active
        terminated[:, t] = ts.terminated & active
        filled[:, t] = active
        obs[:, t + 1] = ts.obs * active[:, None, None]
        state[:, t + 1] = ts.state * active[:, None]
        avail[:, t + 1] = ts.avail & active[:, None, None]
        if "won" in ts.info:
            w = ts.info["won"].bool() & active
            won = w if won is None else won | w
    out = {"obs": obs, "state": state, "actions": actions, "reward": reward, "terminated": terminated, "filled": filled}
    if spec.discrete:
        out["avail_actions"] = avail
    if probs_buf is not None:
        out["behaviour_probs"] = probs_buf
    if won is not None:
        out["won"] = won
    return out


_rollout = rollout  # the former private name


_DTYPES = {"obs": np.float32, "state": np.float32, "reward": np.float32, "avail_actions": np.uint8, "terminated": np.uint8,
           "filled": np.uint8, "behaviour_probs": np.float32, "won": np.uint8}


def generate_dataset(
    env_id: str,
    behaviour: str,
    episodes: int,
    seed: int,
    out: str | Path | None = None,
    env_options: dict[str, Any] | None = None,
    batch_size: int = 1024,
    *,
    overwrite: bool = False,
    quality: str | None = None,
    max_attempts: int | None = None,
    extra_attrs: dict[str, Any] | None = None,
    min_transitions: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Roll out ``behaviour`` in ``env_id`` until ``episodes`` episodes are collected.

    Args:
        env_id, env_options: the env (``lit_omarl.envs.make``).
        behaviour: behaviour specification (module docstring).
        episodes: number of episodes in the dataset.
        seed: generation seed (env and behaviour streams derive from it).
        out: if given, the dataset is written there (``write_dataset``; an
            existing file is kept unless ``overwrite``).
        batch_size: episodes simulated in parallel (part of the determinism key).
        quality: label stored in the file (default: the behaviour text).
        max_attempts: cap on simulated episodes for ``filter:`` / ``band:``
            behaviours (default ``max(100_000, 1000 * episodes)``).
        extra_attrs: more file attributes (e.g. the recipe that asked for the
            dataset); they cannot replace the ones set here.
        min_transitions: stop at the shortest prefix of the episodes (in
            collection order) holding at least this many valid steps, for shares
            of transitions in tasks whose episodes vary in length; ``episodes``
            is then a cap (an error if it is reached first). The stream is the
            one of ``episodes`` episodes cut short: same seed, batch size and
            cap give the same episodes.

    Returns:
        ``(arrays, attrs)``: numpy arrays of schema v1 and the file attributes.
    """
    from lit_omarl.envs import make

    episodes, batch_size = int(episodes), int(batch_size)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if min_transitions is not None and int(min_transitions) < 1:
        raise ValueError(f"min_transitions must be >= 1, got {min_transitions}")
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out}: refusing to overwrite an existing dataset (pass overwrite=True)")
    options = dict(env_options or {})
    env_seed, policy_seed = _seeds(seed)
    env = make(env_id, num_envs=min(batch_size, episodes), seed=env_seed, **options)
    policy = parse_behaviour(behaviour, env.spec)
    filtering = isinstance(policy, Filter)
    if filtering and env.num_envs < batch_size:  # rejection sampling: use full batches
        env.close()
        env = make(env_id, num_envs=batch_size, seed=env_seed, **options)
    b = env.num_envs
    policy.bind(env)
    generator = torch.Generator().manual_seed(policy_seed)
    limit = max(100_000, 1000 * episodes) if max_attempts is None else int(max_attempts)

    chunks: dict[str, list[torch.Tensor]] = {}
    collected = started = simulated = transitions = 0
    want_steps = None if min_transitions is None else int(min_transitions)
    with _single_threaded():
        while collected < episodes and (want_steps is None or transitions < want_steps):
            # rejection sampling that cannot finish within `limit` attempts stops as soon as that is clear,
            # after at least 2000 attempts: even at the acceptance rate's rule-of-three upper bound
            # (collected + 3) / started, the missing episodes would need more than `limit` attempts
            hopeless = filtering and started >= 2000 and started * episodes / (collected + 3) > limit
            if filtering and (started >= limit or hopeless):
                raise ValueError(f"behaviour {behaviour!r}: only {collected} of {episodes} episodes passed the filter "
                                 f"({policy.describe()}) in {started} attempts (limit {limit}); widen the band / lower "
                                 "the fraction or change the behaviour")
            batch = rollout(env, policy, torch.arange(started, started + b), generator)
            started += b
            simulated += int(batch["filled"].sum())
            keep = policy.accept(batch["reward"].sum(1)) if filtering else torch.ones(b, dtype=torch.bool)
            idx = keep.nonzero().flatten()[: episodes - collected]
            if want_steps is not None:  # the shortest prefix reaching want_steps
                reached = (transitions + batch["filled"][idx].sum(1).cumsum(0) >= want_steps).nonzero().flatten()
                if len(reached):
                    idx = idx[: int(reached[0]) + 1]
                transitions += int(batch["filled"][idx].sum())
            for key, value in batch.items():
                chunks.setdefault(key, []).append(value.index_select(0, idx))
            collected += len(idx)
    env.close()
    if want_steps is not None and transitions < want_steps:
        raise ValueError(f"behaviour {behaviour!r}: {episodes} episodes (the cap) hold only {transitions} of the "
                         f"{want_steps} transitions asked for (min_transitions); raise the episode cap")

    spec = env.spec
    arrays = {}
    for key, parts in chunks.items():
        value = torch.cat(parts).numpy()
        arrays[key] = value.astype(_DTYPES.get(key, np.int64 if spec.discrete else np.float32))
    attrs: dict[str, Any] = {
        "spec": spec,
        "env": spec.env_id,
        "quality": quality if quality is not None else behaviour,
        "behaviour": behaviour,
        "seed": int(seed),
        "batch_size": b,
        "generator": f"lit_omarl {_version()} generate",
        "source": "generated",
        "simulated_steps": simulated,  # valid env steps of every simulated episode (kept or not)
    }
    if filtering:
        attrs["attempted_episodes"] = started
    for key, value in (extra_attrs or {}).items():
        if key in attrs:
            raise ValueError(f"extra_attrs: {key!r} is set by generate_dataset itself")
        attrs[key] = value
    if out is not None:
        from lit_omarl.data.schema import write_dataset

        write_dataset(out, arrays, attrs, overwrite=overwrite)
    return arrays, attrs
