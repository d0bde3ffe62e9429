"""SMAX (JaxMARL's JAX re-implementation of SMAC) behind the batched protocol.

``make("smax/<map>", num_envs=B, seed=s)`` runs B episodes of a SMAX map
against JaxMARL's scripted heuristic enemy (``HeuristicEnemySMAX``, the
setting of JaxMARL's own SMAX baselines). Maps: every name of JaxMARL's
scenario table, e.g. ``2s3z``, ``3s_vs_5z``, ``5m_vs_6m``, ``6h_vs_8z``,
``3s5z_vs_3s6z``, ``3m``, ``8m``, ``3s5z``, ``10m_vs_11m``, ``smacv2_5_units``.

Facts taken from jaxmarl's source (0.2.0), which this module relies on:

* Per-agent observations ``obs["ally_i"]``, the global state
  ``obs["world_state"]`` and ``get_avail_actions(state)`` (given the
  wrapper's state object) are stacked to [B, N, O], [B, S], [B, N, A].
  Actions: 0-3 moves (up, right, down, left), 4 stop (always available; the
  only one of a dead unit), 5.. attack enemy k. Observations are scaled to
  about [-1, 1] by SMAX; layouts differ from SC2 SMAC.
* ``world_state`` is not scaled: per unit [health fraction, x, y, weapon
  cooldown, unit-type one-hot] (zeros for dead units), then every unit's
  team and integer unit type. Positions reach 32 and the cooldown of a unit
  that does not shoot decreases without bound (-0.5 per step), which puts
  the hypernetworks of QMIX-style mixers far off scale (a fresh QMixer gives
  Q_tot ~ 30 for all-zero agent Qs). DEVIATION: by default we scale it the
  way SMAX scales observations: x / map width, y / map height, cooldown /
  the unit type's weapon cooldown clipped to [0, 1], unit type / (number of
  types - 1); ``raw_state=True`` gives ``world_state`` unchanged.
* The team reward of a step is the allies' (all allies get the same value):
  the fraction of enemy health removed, divided by the number of enemies,
  plus ``won_battle_bonus`` (1) on the step where every enemy is dead while
  an ally lives. The maximum episode return is therefore 2 (``max_return``).
* SMAX gives a win only through that bonus; its log wrapper derives
  ``won`` as "the team reward of the final step >= 1". We read the same
  event from the state (all enemies dead and some ally alive), which is
  exactly the condition under which the bonus is paid (a draw, both teams
  dead, pays no bonus and is not a win).
* SMAX ends an episode when a team is dead or after ``max_steps`` (100)
  steps, both as ``done``. We report the first as ``terminated`` and the
  second, with no team dead, as ``truncated`` (via ``spec.episode_limit``).
* ``MultiAgentEnv.step`` auto-resets finished episodes; we call the raw
  ``step_env`` instead, and additionally keep the JAX state of finished
  episodes frozen, so our protocol's no-auto-reset semantics hold.

Speed: reset and step of all B episodes are one ``jax.jit(jax.vmap(...))``
each, compiled ahead of time once per (map, options, B) per process and
cached (:data:`_COMPILED`; ``episode_limit`` is applied outside JAX and
needs no compile of its own). Compiling costs seconds to tens of seconds, so
JAX's persistent compilation cache is switched on (directory
``$LIT_OMARL_JAX_CACHE``, default ``~/.cache/lit_omarl/jax``; set it to
``off`` to disable; a directory the user configured in JAX is kept): later
processes load the compiled step in well under a second. The step is compiled
at XLA backend optimisation level ``$LIT_OMARL_SMAX_XLA_OPT`` (default 1;
measured on 2s3z with B = 64, CPU seconds: level 3 compiles in 7.5-9 s and
steps in 2.4-4.5 ms, level 1 in 4-5 s and 2.5-5 ms, level 0 in 2.5 s and
5-12 ms); reset, run once per batch of episodes, at level 0. Stepping alone
runs ~19k env steps per CPU second at B = 256 (benchmarks/bench_smax.py).
Outputs reach torch zero-copy through DLPack. Importing this module does not
import JAX; the first env does (without jaxmarl's package imports, ~12 s saved).

Randomness: ``reset()`` draws a 64-bit JAX key from the env's torch
generator (``reset(seed)`` reseeds it); step k of a batch uses
``fold_in(key, k)`` split over the B episodes, so a run is a function of
(map, options, B, seed) only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

BENCHMARK_MAPS = ("2s3z", "3s_vs_5z", "5m_vs_6m", "6h_vs_8z", "3s5z_vs_3s6z")
EPISODE_LIMIT = 100  # SMAX's max_steps
AttackMode = Literal["closest", "random"]


# ------------------------------------------------------------------ JAX loading
def _import_smax() -> types.ModuleType:
    """``jaxmarl.environments.smax`` without jaxmarl's package ``__init__`` files.

    ``import jaxmarl`` imports every JaxMARL environment (about 12 s of module-level
    JAX work, and a print on stdout); SMAX needs none of them. Unless jaxmarl is
    already imported, its two package modules are stood in for by empty packages
    while the SMAX subpackage loads, then removed again, so a later ``import
    jaxmarl`` runs the real ``__init__`` (reusing the loaded submodules).
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    name = "jaxmarl.environments.smax"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("jaxmarl") if "jaxmarl" not in sys.modules else None
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        stubs = {}
        for pkg, path in (("jaxmarl", root), ("jaxmarl.environments", root / "environments")):
            module = types.ModuleType(pkg)
            module.__path__ = [str(path)]
            stubs[pkg] = sys.modules[pkg] = module
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - layout changed: fall back to the ordinary import
            for key in [k for k in sys.modules if k.startswith("jaxmarl")]:
                del sys.modules[key]
        finally:
            for pkg, module in stubs.items():
                if sys.modules.get(pkg) is module:
                    del sys.modules[pkg]
    with contextlib.redirect_stdout(io.StringIO()):  # jaxmarl prints while importing
        return importlib.import_module(name)


def _configure_jax() -> Any:
    import jax

    if not getattr(_configure_jax, "done", False):
        cache = os.environ.get("LIT_OMARL_JAX_CACHE", str(Path.home() / ".cache" / "lit_omarl" / "jax"))
        if cache.lower() not in ("", "0", "off", "none") and not jax.config.jax_compilation_cache_dir:
            try:
                Path(cache).mkdir(parents=True, exist_ok=True)
                jax.config.update("jax_compilation_cache_dir", cache)
                jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
            except OSError:  # read-only home: compile every time
                pass
        _configure_jax.done = True
    return jax


def smax_maps() -> list[str]:
    """All map names of the installed jaxmarl (imports JAX, compiles nothing)."""
    return sorted(_import_smax().smax_env.MAP_NAME_TO_SCENARIO)


# ------------------------------------------------------------------ compiled core
@dataclass
class _Compiled:
    """The jaxmarl env and its compiled batched reset / step for one (map, options, B)."""

    env: Any
    reset: Any  # (key u32[2]) -> (obs, state, avail, jax_state)
    # (key u32[2], k i32, jax_state, actions i32[B, N], active bool[B])
    #     -> (obs, state, avail, reward, terminated, won, jax_state)
    step: Any
    compile_seconds: float


_COMPILED: dict[tuple, _Compiled] = {}


def _jax_env(map_name: str, attack_mode: str, enemy_shoots: bool) -> Any:
    """The jaxmarl env object (cheap: nothing is compiled). SMAX's own ``max_steps`` is
    irrelevant here: episode ends are computed from the units alive and ``spec.episode_limit``."""
    smax = _import_smax()
    maps = sorted(smax.smax_env.MAP_NAME_TO_SCENARIO)
    if map_name not in maps:
        raise ValueError(f"smax: unknown map {map_name!r}; known maps: {', '.join(maps)}")
    if attack_mode not in ("closest", "random"):
        raise ValueError(f"smax: attack_mode must be 'closest' or 'random', got {attack_mode!r}")
    return smax.HeuristicEnemySMAX(scenario=smax.smax_env.MAP_NAME_TO_SCENARIO[map_name], attack_mode=attack_mode,
                                   enemy_shoots=bool(enemy_shoots), see_enemy_actions=True, walls_cause_death=True)


def smax_spec(map_name: str, *, attack_mode: AttackMode = "closest", enemy_shoots: bool = True,
              episode_limit: int = EPISODE_LIMIT, raw_state: bool = False) -> EnvSpec:
    """The EnvSpec of ``smax/<map_name>`` without compiling anything (imports JAX)."""
    if int(episode_limit) < 1:
        raise ValueError(f"smax: episode_limit must be >= 1, got {episode_limit}")
    env = _jax_env(map_name, attack_mode, enemy_shoots)
    options = {"attack_mode": attack_mode, "enemy_shoots": bool(enemy_shoots), "episode_limit": int(episode_limit),
               "raw_state": bool(raw_state)}
    return EnvSpec(env_id=f"smax/{map_name}", n_agents=int(env.num_allies), obs_dim=int(env.obs_size),
                   state_dim=int(env.state_size), n_actions=int(env.num_ally_actions),
                   episode_limit=int(episode_limit), env_options=options)


def _build(map_name: str, attack_mode: str, enemy_shoots: bool, raw_state: bool, b: int) -> _Compiled:
    import time

    jax = _configure_jax()
    jnp = jax.numpy
    env = _jax_env(map_name, attack_mode, enemy_shoots)
    agents, n_allies, units = list(env.agents), env.num_allies, env.num_allies + env.num_enemies
    n_own = len(env.own_features)  # health, x, y, cooldown, unit type one-hot
    size = jnp.array([env.map_width, env.map_height], dtype=jnp.float32)

    def stack(d: dict) -> Any:
        return jnp.stack([d[a] for a in agents])

    def global_state(world_state, state):
        """SMAX's world_state, scaled like its observations unless ``raw_state``."""
        if raw_state:
            return world_state
        feats = world_state[: units * n_own].reshape(units, n_own)
        cooldown = jnp.clip(feats[:, 3] / env.unit_type_weapon_cooldowns[state.state.unit_types], 0.0, 1.0)
        feats = feats.at[:, 1:3].divide(size).at[:, 3].set(cooldown)
        types = world_state[units * n_own + units:] / max(1, len(env.unit_type_names) - 1)
        return jnp.concatenate([feats.reshape(-1), world_state[units * n_own: units * n_own + units], types])

    def reset_one(key):
        obs, state = env.reset(key)
        return (stack(obs), global_state(obs["world_state"], state),
                stack(env.get_avail_actions(state)).astype(bool), state)

    def step_one(key, state, actions, active):
        obs, new, reward, _, _ = env.step_env(key, state, {a: actions[i] for i, a in enumerate(agents)})
        new = jax.tree.map(lambda x, y: jnp.where(active, x, y), new, state)  # finished episodes stay frozen
        alive = new.state.unit_alive
        allies_dead, enemies_dead = ~alive[:n_allies].any(), ~alive[n_allies:].any()
        return (stack(obs), global_state(obs["world_state"], new), stack(env.get_avail_actions(new)).astype(bool),
                reward[agents[0]].astype(jnp.float32), allies_dead | enemies_dead, enemies_dead & ~allies_dead, new)

    def reset_all(key):
        return jax.vmap(reset_one)(jax.random.split(key, b))

    def step_all(key, k, state, actions, active):
        keys = jax.random.split(jax.random.fold_in(key, k), b)
        return jax.vmap(step_one)(keys, state, actions, active)

    level = int(os.environ.get("LIT_OMARL_SMAX_XLA_OPT", "1"))
    start = time.perf_counter()
    key = np.zeros(2, dtype=np.uint32)
    # reset runs once per batch of episodes: cheapest compile
    reset = jax.jit(reset_all).lower(key).compile(compiler_options={"xla_backend_optimization_level": 0})
    state = jax.eval_shape(reset_all, key)[3]
    actions = jax.ShapeDtypeStruct((b, len(agents)), jnp.int32)
    active = jax.ShapeDtypeStruct((b,), jnp.bool_)
    k = jax.ShapeDtypeStruct((), jnp.int32)
    lowered = jax.jit(step_all).lower(key, k, state, actions, active)
    step = lowered.compile(compiler_options={"xla_backend_optimization_level": level})
    return _Compiled(env, reset, step, time.perf_counter() - start)


def _compiled(map_name: str, attack_mode: str, enemy_shoots: bool, raw_state: bool, b: int) -> _Compiled:
    key = (map_name, attack_mode, enemy_shoots, raw_state, b, os.environ.get("LIT_OMARL_SMAX_XLA_OPT", "1"))
    if key not in _COMPILED:
        _COMPILED[key] = _build(map_name, attack_mode, enemy_shoots, raw_state, b)
    return _COMPILED[key]


def _torch(x: Any) -> torch.Tensor:
    """A JAX CPU array as a torch tensor sharing its memory (DLPack), else a copy."""
    try:
        return torch.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError):
        return torch.from_numpy(np.array(x))


# ------------------------------------------------------------------ the env
class SMAXEnv(BatchedEnv):
    """B SMAX episodes of one map (see module docstring).

    Attributes:
        compile_seconds: time spent compiling for this (map, options, B) in this
            process (0 when the compiled functions were already cached).
        max_return: 2.0 (all enemy health plus the win bonus).
    """

    max_return = 2.0

    def __init__(self, map_name: str, num_envs: int = 1, seed: int = 0, *, attack_mode: AttackMode = "closest",
                 enemy_shoots: bool = True, episode_limit: int = EPISODE_LIMIT, raw_state: bool = False) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        spec = smax_spec(map_name, attack_mode=attack_mode, enemy_shoots=enemy_shoots, episode_limit=episode_limit,
                         raw_state=raw_state)
        cached = len(_COMPILED)
        self._core = _compiled(map_name, attack_mode, bool(enemy_shoots), bool(raw_state), int(num_envs))
        self.compile_seconds = self._core.compile_seconds if len(_COMPILED) > cached else 0.0
        super().__init__(spec, num_envs, seed)
        self.map_name = map_name
        self._key = np.zeros(2, dtype=np.uint32)
        self._k = 0
        self._jax_state: Any = None

    def _reset(self) -> TimeStep:
        # a 64-bit JAX key from the torch generator: the run depends only on (map, options, B, seed)
        words = torch.randint(0, 2**32, (2,), generator=self.generator, dtype=torch.int64)
        self._key = words.numpy().astype(np.uint32)
        self._k = 0
        obs, state, avail, self._jax_state = self._core.reset(self._key)
        b = self.num_envs
        return TimeStep(obs=_torch(obs), state=_torch(state), avail=_torch(avail), reward=torch.zeros(b),
                        terminated=torch.zeros(b, dtype=torch.bool), truncated=torch.zeros(b, dtype=torch.bool),
                        info={"won": torch.zeros(b, dtype=torch.bool)})

    def _step(self, actions: torch.Tensor) -> TimeStep:
        acts = actions.detach().cpu().clamp(0, self.spec.n_actions - 1).numpy().astype(np.int32)
        active = self.active.numpy().copy()
        out = self._core.step(self._key, np.int32(self._k), self._jax_state, acts, active)
        obs, state, avail, reward, terminated, won, self._jax_state = out
        self._k += 1
        b = self.num_envs
        return TimeStep(obs=_torch(obs), state=_torch(state), avail=_torch(avail), reward=_torch(reward),
                        terminated=_torch(terminated), truncated=torch.zeros(b, dtype=torch.bool),
                        info={"won": _torch(won)})


def make_smax(env_id: str, *, num_envs: int = 1, seed: int = 0, attack_mode: AttackMode = "closest",
              enemy_shoots: bool = True, episode_limit: int = EPISODE_LIMIT, raw_state: bool = False) -> SMAXEnv:
    """Factory of ``smax/<map>`` (registered in :mod:`lit_omarl.envs`).

    Args:
        attack_mode: target choice of the heuristic enemy ("closest" or "random").
        enemy_shoots: whether the heuristic enemy attacks at all.
        episode_limit: SMAX's ``max_steps`` (episodes end as truncated there).
        raw_state: the global state exactly as SMAX's ``world_state`` (unscaled
            positions, unbounded negative weapon cooldowns, integer unit types)
            instead of the scaled version (module docstring).
    """
    head, _, map_name = env_id.partition("/")
    if head != "smax" or not map_name:
        raise ValueError(f"smax: expected an id 'smax/<map>' (e.g. smax/2s3z), got {env_id!r}")
    return SMAXEnv(map_name, num_envs, seed, attack_mode=attack_mode, enemy_shoots=enemy_shoots,
                   episode_limit=episode_limit, raw_state=raw_state)
