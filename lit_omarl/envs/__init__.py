"""Registry of batched environments.

``make(env_id, num_envs=1, seed=0, **options)`` builds a :class:`BatchedEnv`
(see ``envs/base.py``) running ``num_envs`` episodes at once.

Ids are resolved exactly first, then by the longest registered prefix
followed by ``/`` (so a family such as ``smax`` can serve ``smax/2s3z``). A
factory is called as ``factory(env_id, num_envs=..., seed=..., **options)``;
its keyword parameters are the env's options, so unknown options fail before
anything is built. A factory can also be given as the string
``"package.module:function"``, imported on first use, so optional backends
(JAX, MuJoCo) cost nothing until asked for.

Built-in ids and options (defaults):
* ``matrix`` (``payoff``: K x K nested list, required), ``matrix/xor``,
  ``matrix/mne``, ``matrix/mabcq`` (no options);
* ``mmdp`` (``n_agents`` 5, alias ``n``; ``episode_limit`` 10);
* ``icq_mmdp`` (``n_agents`` 4, alias ``n``; ``episode_limit`` 100): ICQ's two-state MMDP;
* ``equal_line`` (``n`` 3; ``episode_limit`` 25);
* ``bridge`` (``episode_limit`` 50);
* ``smax/<map>`` (extra ``smax``), ``mamujoco/<Robot>-<conf>`` (extra ``mujoco``,
  ``envs/mamujoco.py``), ``mpe/<task>`` (``envs/mpe.py``): optional backends,
  imported on first use.
``env.spec.env_options`` always rebuilds the same task.

Optional extras an env may offer (used by ``lit_omarl.data.generate``):
``expert()`` returning a scripted policy with ``begin(ts, generator)`` (new
batch of episodes) and ``act(ts, generator) -> actions``; and ``max_return``,
the largest possible episode return (for ``filter:`` behaviours).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Union

from lit_omarl.envs.base import BatchedEnv, TimeStep

Factory = Callable[..., BatchedEnv]

_FACTORIES: dict[str, Union[Factory, str]] = {}
_IDS: dict[str, tuple[str, ...]] = {}
_RESERVED = ("env_id", "num_envs", "seed")


def register(prefix: str, factory: Union[Factory, str], *, ids: tuple[str, ...] | list[str] | None = None, overwrite: bool = False) -> None:
    """Register ``factory`` for ``prefix`` and every ``prefix/<name>``.

    ``ids`` lists the concrete ids shown by :func:`list_envs` (default: the
    prefix itself). Re-registering a prefix needs ``overwrite=True``.
    """
    if not prefix or prefix.endswith("/"):
        raise ValueError(f"register: invalid prefix {prefix!r}")
    if prefix in _FACTORIES and not overwrite:
        raise ValueError(f"register: {prefix!r} is already registered (pass overwrite=True to replace it)")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise TypeError(f"register: factory for {prefix!r} must be callable or 'module:function', got {factory!r}")
    _FACTORIES[prefix] = factory
    _IDS[prefix] = tuple(ids) if ids else (prefix,)


def list_envs() -> list[str]:
    """All known env ids (families without a fixed list appear as ``prefix/*``)."""
    return sorted({i for ids in _IDS.values() for i in ids})


def _resolve(env_id: str) -> Factory:
    if not isinstance(env_id, str):
        raise ValueError(f"env id must be a string, got {env_id!r}")
    key = env_id if env_id in _FACTORIES else None
    if key is None:
        prefixes = [p for p in _FACTORIES if env_id.startswith(p + "/")]
        key = max(prefixes, key=len) if prefixes else None
    if key is None:
        raise ValueError(f"unknown env id {env_id!r}; known ids: {', '.join(list_envs())}")
    factory = _FACTORIES[key]
    if isinstance(factory, str):
        module, _, name = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), name)
        except ImportError as err:
            raise ValueError(f"env {env_id!r} needs an optional dependency that is not installed: {err}") from err
        _FACTORIES[key] = factory
    return factory


def env_options(env_id: str) -> dict[str, Any]:
    """The options of ``env_id`` with their defaults (``inspect.Parameter.empty`` if required)."""
    params = inspect.signature(_resolve(env_id)).parameters
    return {name: p.default for name, p in params.items() if name not in _RESERVED and p.kind is p.KEYWORD_ONLY}


def make(env_id: str, num_envs: int = 1, seed: int = 0, **options: Any) -> BatchedEnv:
    """Build ``num_envs`` parallel episodes of ``env_id``.

    Raises ValueError for an unknown id (listing the known ones) and TypeError
    for an option the env does not have (naming it and the known options).
    """
    factory = _resolve(env_id)
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [n for n, p in params.items() if n not in _RESERVED and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"{env_id}: unknown option(s) {', '.join(map(repr, unknown))}; known options: {', '.join(known) or 'none'}")
    return factory(env_id, num_envs=int(num_envs), seed=int(seed), **options)


def _register_builtins() -> None:
    from lit_omarl.envs.bridge import make_bridge
    from lit_omarl.envs.equal_line import make_equal_line
    from lit_omarl.envs.matrix import PRESETS, make_matrix
    from lit_omarl.envs.icq_mmdp import make_icq_mmdp
    from lit_omarl.envs.mmdp import make_mmdp

    register("matrix", make_matrix, ids=["matrix"] + [f"matrix/{name}" for name in PRESETS])
    register("mmdp", make_mmdp)
    register("icq_mmdp", make_icq_mmdp)
    register("equal_line", make_equal_line)
    register("bridge", make_bridge)
    register("smax", "lit_omarl.envs.smax:make_smax", ids=[f"smax/{m}" for m in ("2s3z", "3s_vs_5z", "5m_vs_6m", "6h_vs_8z", "3s5z_vs_3s6z")] + ["smax/*"])
    register("mamujoco", "lit_omarl.envs.mamujoco:make_mamujoco", ids=[f"mamujoco/{t}" for t in ("HalfCheetah-2x3", "HalfCheetah-6x1", "Walker2d-2x3", "Hopper-3x1", "Ant-2x4", "Ant-4x2")] + ["mamujoco/*"])
    register("mpe", "lit_omarl.envs.mpe:make_mpe", ids=[f"mpe/{t}" for t in ("simple_spread", "simple_tag", "simple_world_comm")])
    # real StarCraft II SMAC (optional: package smac + the StarCraft II binary); sc2/<map> is the id the cfcql-h5 importer writes
    register("smac", "lit_omarl.envs.smac_real:make_smac", ids=["smac/*"])
    register("sc2", "lit_omarl.envs.smac_real:make_smac", ids=["sc2/*"])


_register_builtins()

__all__ = ["BatchedEnv", "TimeStep", "env_options", "list_envs", "make", "register"]
