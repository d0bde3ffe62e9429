"""Importers of third-party offline MARL datasets into dataset schema v1.

Two source layouts are supported, both written by pymarl-style episode
buffers (episode-major, padded to ``T + 1`` time slots where ``T`` is the
episode limit):

``pymarl-npy`` (:func:`import_pymarl_npy`)
    A folder of ``.npy`` files, one per buffer field: ``obs`` [E, T+1, N, O],
    ``state`` [E, T+1, S], ``actions`` [E, T+1, N, 1], ``avail_actions``
    [E, T+1, N, A], ``reward`` / ``terminated`` / ``filled`` [E, T+1, 1],
    an optional redundant ``actions_onehot`` [E, T+1, N, A] and an optional
    ``meta.json``. The AlberDICE Bridge datasets use this layout.

``cfcql-h5`` (:func:`import_cfcql_h5`)
    One HDF5 file ``<map>_<quality>.h5`` (CFCQL / ICQ SMAC data) holding the
    same fields as top-level datasets, plus optional behaviour probabilities
    ``probs`` [E, T+1, N, A].

Trailing singleton dimensions (``actions``, ``reward``, ``terminated``,
``filled``) may be present or absent.

A third, transition-major layout has its own converter (see its docstring):

``omar-npy`` (:func:`import_omar_npy`)
    An OMAR folder ``<env>/<quality>/seed_<k>_data`` of flat per-agent
    transitions ``obs_<i>``, ``acs_<i>``, ``rews_<i>``, ``next_obs_<i>``,
    ``dones_<i>`` (+ ``states_<i>``, ``next_states_<i>``) ``.npy``
    (continuous actions; MPE and MaMuJoCo HalfCheetah); episodes are
    recovered from ``dones``, the episode limit and the continuity of
    ``next_obs`` / ``obs``.

Conversion convention (the one of the pymarl / CFCQL learners)
---------------------------------------------------------------
pymarl's ``filled`` marks ``L + 1`` slots of an episode of ``L`` steps: slots
``0..L-1`` hold transitions and slot ``L`` holds the observation reached after
the last step (plus an action the runner picked there, which is never used).
A learner treats step ``t`` as valid iff ``t < T``, ``filled[t] == 1`` and no
``terminated`` flag occurs before ``t``. The importer therefore computes, per
episode, the number ``L`` of valid steps and writes:

* ``filled[t] = 1`` for ``t < L`` (our ``T`` = pymarl ``T + 1`` minus one);
* ``actions``, ``reward``, ``behaviour_probs`` at ``0..L-1``;
  ``terminated[L-1]`` = the source's ``terminated[L-1]`` (kept as is, even
  when ``L == T``: some sources flag time-limit ends as terminated, see
  ``clear_terminated_at_limit``);
* ``obs``, ``state``, ``avail_actions`` at ``0..L`` (slot ``L`` is the final
  observation);
* zeros everywhere else. Nonzero source values that fall outside the kept
  slots are counted per field and reported in the attribute
  ``padding_nonzero_dropped`` (a JSON object) and
  ``padding_nonzero_dropped_total``. In pymarl buffers the action of slot
  ``L`` is typically nonzero, so a nonzero count for ``actions`` is normal.

Episodes without a single valid step (unused buffer slots) are skipped and
counted in the attribute ``empty_episodes_dropped``. Other reported
attributes: ``n_source_episodes``; ``n_terminated_at_limit`` (episodes of
length T whose last step is flagged terminated, e.g. 491 of the 1000 Bridge
``buffer_mix`` episodes); ``episodes_without_final_obs`` (slot L unfilled in
the source, so the final observation is zeros); ``env_check`` (outcome of the
registry cross-check); ``source_ignored_keys``; ``source_meta`` (the verbatim
``meta.json`` of an npy folder); plus ``quality``, ``behaviour`` ("imported"),
``source`` (absolute path), ``source_format`` and ``generator``
("lit_omarl <version> import <format>").

Memory: sources are read lazily (``np.load(mmap_mode='r')`` or h5py
datasets) and converted in chunks of episodes into preallocated output
arrays, so a conversion holds about one full copy of the data plus a chunk.

Errors (a missing file or key, a file of the wrong kind, disagreeing shapes,
an ``actions_onehot`` that is not the one-hot of ``actions``, dimensions that
disagree with the given spec or the environment registry) raise
:class:`~lit_omarl.data.schema.DatasetError` naming the offending file and
key; nothing is written in that case.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lit_omarl.data.schema import FILE_KEY, DatasetError, validate_arrays, write_dataset
from lit_omarl.spec import EnvSpec

__all__ = [
    "IMPORTERS",
    "import_cfcql_h5",
    "import_dataset",
    "import_omar_npy",
    "import_pymarl_npy",
    "guess_quality",
]

#: Fields every source must provide.
REQUIRED_FIELDS = ("obs", "state", "actions", "avail_actions", "reward", "terminated", "filled")
#: Fields a source may provide.
OPTIONAL_FIELDS = ("actions_onehot", "probs")

#: Target size of one chunk of source episodes read into memory at once.
_CHUNK_BYTES = 64 * 2**20

#: Dataset quality names recognised in folder / file names (longest first
#: wins), mapped to the name written in the ``quality`` attribute.
_QUALITY_ALIASES = {
    "medium_replay": "medium_replay",
    "medium-replay": "medium_replay",
    "mediumreplay": "medium_replay",
    "expert": "expert",
    "medium": "medium",
    "mixed": "mixed",
    "mix": "mixed",
    "optimal": "optimal",
    "random": "random",
    "poor": "poor",
    "good": "good",
    "replay": "replay",
}


# --------------------------------------------------------------------------
# Sources: uniform lazy access to the fields of an npy folder or an h5 file
# --------------------------------------------------------------------------
class _Source:
    """Lazy, read-only access to the padded fields of one source dataset."""

    #: path of the source (folder or file), used for provenance
    root: Path
    #: the fields by name: memory-mapped arrays or HDF5 datasets (anything with shape, dtype, slicing)
    _fields: Any

    def has(self, name: str) -> bool:
        return name in self._fields

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._fields[name].shape)

    def dtype(self, name: str) -> np.dtype:
        return self._fields[name].dtype

    def read(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Episodes ``start:stop`` of field ``name`` as an in-memory array."""
        return np.asarray(self._fields[name][start:stop])

    def where(self, name: str) -> tuple[str, str]:
        """(path, key) naming field ``name`` in error messages."""
        raise NotImplementedError

    def error(self, name: str, problem: str) -> DatasetError:
        path, key = self.where(name)
        return DatasetError(path, key, problem)

    def extra_keys(self) -> list[str]:
        """Names present in the source that the importer does not use."""
        return []


class _NpyFolderSource(_Source):
    """A pymarl ``.npy`` folder; arrays are memory-mapped, never loaded whole."""

    def __init__(self, folder: Path) -> None:
        self.root = folder
        self._fields: dict[str, np.ndarray] = {}
        for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            file = folder / f"{name}.npy"
            if not file.exists():
                if name in REQUIRED_FIELDS:
                    raise DatasetError(str(file), name, "required file is missing from the pymarl .npy folder")
                continue
            try:
                array = np.load(file, mmap_mode="r", allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - any failure means "not a usable .npy"
                raise DatasetError(str(file), name, f"not a readable .npy array ({type(exc).__name__}: {exc})") from exc
            if not isinstance(array, np.ndarray):
                raise DatasetError(str(file), name, "expected a single .npy array, found an .npz archive")
            self._fields[name] = array

    def where(self, name: str) -> tuple[str, str]:
        return str(self.root / f"{name}.npy"), name

    def extra_keys(self) -> list[str]:
        known = {f"{n}.npy" for n in REQUIRED_FIELDS + OPTIONAL_FIELDS} | {"meta.json"}
        return sorted(p.name for p in self.root.iterdir() if p.name not in known)


class _H5Source(_Source):
    """Top-level datasets of an open HDF5 file (read slice by slice)."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.root = path
        self._fields = handle
        for name in REQUIRED_FIELDS:
            if name not in handle:
                raise DatasetError(str(path), name, "required dataset is missing from the HDF5 file")
        for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            if name in handle and not hasattr(handle[name], "shape"):
                raise DatasetError(str(path), name, "expected an HDF5 dataset, found a group")

    def where(self, name: str) -> tuple[str, str]:
        return str(self.root), name

    def extra_keys(self) -> list[str]:
        return sorted(k for k in self._fields.keys() if k not in REQUIRED_FIELDS + OPTIONAL_FIELDS)


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------
def _layout(src: _Source) -> dict[str, int]:
    """Check ranks and agreement of all fields; return E, T1 (= T+1), N, O, S, A."""

    def ranked(name: str, rank: int) -> tuple[int, ...]:
        shape = src.shape(name)
        if len(shape) != rank:
            raise src.error(name, f"expected rank {rank}, got shape {shape}")
        return shape

    def squeezable(name: str, rank: int) -> tuple[int, ...]:
        """A field of rank ``rank`` with an optional trailing singleton dim."""
        shape = src.shape(name)
        if len(shape) == rank + 1 and shape[-1] == 1:
            return shape[:-1]
        if len(shape) != rank:
            raise src.error(name, f"expected shape of rank {rank} (optionally with a trailing 1), got {shape}")
        return shape

    E, T1, N, O = ranked("obs", 4)
    dims = {"E": E, "T1": T1, "N": N, "O": O}
    if E < 1:
        raise src.error("obs", "holds no episodes")
    if T1 < 2:
        raise src.error("obs", f"time axis has {T1} slot(s); a padded buffer needs T+1 >= 2")
    if N < 1 or O < 1:
        raise src.error("obs", f"empty agent or feature axis in shape {(E, T1, N, O)}")
    expected: dict[str, tuple[str, ...]] = {
        "state": ("E", "T1", "S"),
        "avail_actions": ("E", "T1", "N", "A"),
        "actions": ("E", "T1", "N"),
        "reward": ("E", "T1"),
        "terminated": ("E", "T1"),
        "filled": ("E", "T1"),
        "actions_onehot": ("E", "T1", "N", "A"),
        "probs": ("E", "T1", "N", "A"),
    }
    for name, axes in expected.items():
        if not src.has(name):
            continue
        if name in ("actions", "reward", "terminated", "filled"):
            shape = squeezable(name, len(axes))
        else:
            shape = ranked(name, len(axes))
        for axis, size in zip(axes, shape):
            if axis not in dims:
                if size < 1:
                    raise src.error(name, f"axis {axis} is empty in shape {src.shape(name)}")
                dims[axis] = size
            elif dims[axis] != size:
                what = {"E": "episode count", "T1": "time length (T+1)", "N": "agent count"}.get(axis, axis)
                raise src.error(
                    name,
                    f"{what} {size} disagrees with {dims[axis]} found in "
                    f"{'obs' if axis in ('E', 'T1', 'N') else 'an earlier field'} (shape {src.shape(name)})",
                )
    return dims


def _flat_time(array: np.ndarray) -> np.ndarray:
    """[E, T1] view of a per-step scalar field stored as [E, T1] or [E, T1, 1]."""
    return array.reshape(array.shape[0], array.shape[1])


# --------------------------------------------------------------------------
# Spec resolution and the optional registry cross-check
# --------------------------------------------------------------------------
_DIM_FIELD = {
    "n_agents": "obs",
    "obs_dim": "obs",
    "state_dim": "state",
    "n_actions": "avail_actions",
    "episode_limit": "filled",
}


def _data_dims(dims: Mapping[str, int]) -> dict[str, int]:
    return {
        "n_agents": dims["N"],
        "obs_dim": dims["O"],
        "state_dim": dims["S"],
        "n_actions": dims["A"],
        "episode_limit": dims["T1"] - 1,
    }


def _check_spec_dims(spec: EnvSpec, dims: Mapping[str, int], src: _Source, origin: str) -> None:
    if not spec.discrete:
        raise src.error("actions", f"{origin} {spec.env_id!r} is continuous; pymarl-style data has discrete actions")
    for dim, value in _data_dims(dims).items():
        expected = getattr(spec, dim)
        if expected != value:
            raise src.error(_DIM_FIELD[dim], f"{dim} is {value} in the data but {expected} in {origin} {spec.env_id!r}")


def _registry_spec(env_id: str, env_options: Mapping[str, Any]) -> tuple[EnvSpec | None, str]:
    """Spec of ``env_id`` from ``lit_omarl.envs.make`` if that can be built here.

    Best effort: the registry may not exist yet, may not know the id (e.g.
    ``sc2/<map>``) or may need an optional dependency. Any such failure skips
    the cross-check and is reported as the reason string.
    """
    try:
        from lit_omarl.envs import make  # lazy: the registry is optional here
    except Exception as exc:  # noqa: BLE001
        return None, f"skipped (no environment registry: {type(exc).__name__})"
    try:
        env = make(env_id, num_envs=1, seed=0, **dict(env_options))
    except Exception as exc:  # noqa: BLE001 - unknown id, missing optional dependency, ...
        return None, f"skipped (cannot build {env_id!r}: {type(exc).__name__}: {exc})"
    spec = getattr(env, "spec", None)
    close = getattr(env, "close", None)
    if callable(close):
        close()
    if not isinstance(spec, EnvSpec):
        return None, f"skipped ({env_id!r} has no EnvSpec)"
    return spec, "ok"


def _resolve_spec(
    spec_or_env_id: EnvSpec | Mapping[str, Any] | str,
    dims: Mapping[str, int],
    src: _Source,
    env_options: Mapping[str, Any] | None,
    check_env: bool,
) -> tuple[EnvSpec, str]:
    """The EnvSpec of the imported data and the outcome of the registry check.

    A given spec is checked against the data. An env id gets its dimensions
    from the data, cross-checked (when possible) against the registry's env.
    """
    if isinstance(spec_or_env_id, (EnvSpec, Mapping)):
        spec = EnvSpec.from_dict(spec_or_env_id)
        if env_options is not None:
            spec = replace(spec, env_options=dict(env_options))
        _check_spec_dims(spec, dims, src, "the given spec of")
        return spec, "skipped (spec given)"
    if not isinstance(spec_or_env_id, str) or not spec_or_env_id:
        raise ValueError(f"an env id (e.g. 'bridge') or an EnvSpec is required, got {spec_or_env_id!r}")
    env_id = spec_or_env_id
    options = dict(env_options or {})
    if check_env:
        env_spec, status = _registry_spec(env_id, options)
        if env_spec is not None:
            _check_spec_dims(env_spec, dims, src, "the registered environment")
            return replace(env_spec, env_options=options or dict(env_spec.env_options)), status
    else:
        status = "skipped (disabled)"
    return EnvSpec(env_id=env_id, action_type="discrete", env_options=options, **_data_dims(dims)), status


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------
def _episode_lengths(src: _Source, dims: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Valid lengths L [E] and source terminated flags [E, T+1] (bool).

    Step ``t < T`` is valid iff ``filled[t]`` and no termination before ``t``;
    the valid steps must form a prefix of each episode.
    """
    T = dims["T1"] - 1
    filled = _flat_time(src.read("filled")) != 0
    terminated = _flat_time(src.read("terminated")) != 0
    term_before = np.zeros_like(terminated[:, :T])
    term_before[:, 1:] = np.cumsum(terminated[:, : T - 1], axis=1) > 0
    valid = filled[:, :T] & ~term_before
    lengths = valid.sum(axis=1)
    prefix = np.arange(T)[None, :] < lengths[:, None]
    holes = np.nonzero((valid != prefix).any(axis=1))[0]
    if holes.size:
        e = int(holes[0])
        raise src.error(
            "filled",
            f"valid steps are not a contiguous prefix in {holes.size} episode(s), first episode {e}: "
            f"filled = {filled[e].astype(int).tolist()}",
        )
    return lengths.astype(np.int64), terminated


def _keep_masks(lengths: np.ndarray, T1: int) -> tuple[np.ndarray, np.ndarray]:
    """[E, T+1] masks of kept slots: 0..L (observation-like) and 0..L-1 (steps).

    Episodes with L == 0 are skipped, so nothing of them is kept."""
    t = np.arange(T1)[None, :]
    L = lengths[:, None]
    return (t <= L) & (L > 0), t < L


def _expand(mask: np.ndarray, ndim: int) -> np.ndarray:
    """Append singleton axes to ``mask`` so it broadcasts against an ``ndim`` array."""
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))


def _check_onehot(
    src: _Source, onehot: np.ndarray, actions: np.ndarray, valid: np.ndarray, episodes: np.ndarray, A: int
) -> None:
    """Require ``actions_onehot == one_hot(actions)`` on the valid steps."""
    in_range = (actions >= 0) & (actions < A)
    if not in_range[valid].all():
        e, t, i = (int(v) for v in np.argwhere(~in_range & valid[..., None])[0])
        raise src.error(
            "actions", f"action {int(actions[e, t, i])} outside [0, {A}) at episode {int(episodes[e])} step {t} agent {i}"
        )
    expected = np.eye(A, dtype=bool)[actions]
    mismatch = ((onehot != 0) != expected).any(axis=-1) | ((onehot != 0) & (onehot != 1)).any(axis=-1)
    mismatch &= valid[..., None]
    if mismatch.any():
        e, t, i = (int(v) for v in np.argwhere(mismatch)[0])
        raise src.error(
            "actions_onehot",
            f"differs from one_hot(actions) on {int(mismatch.sum())} agent-step(s); first at episode "
            f"{int(episodes[e])} step {t} agent {i}: {onehot[e, t, i].tolist()} vs action {int(actions[e, t, i])}",
        )


def _chunks(n: int, per_chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, per_chunk):
        yield start, min(n, start + per_chunk)


def _convert(
    src: _Source,
    spec_or_env_id: EnvSpec | Mapping[str, Any] | str,
    env_options: Mapping[str, Any] | None,
    *,
    check_env: bool,
    clear_terminated_at_limit: bool,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Convert a padded pymarl-style source to schema-v1 arrays (see module doc)."""
    dims = _layout(src)
    spec, env_check = _resolve_spec(spec_or_env_id, dims, src, env_options, check_env)
    T1, N, O, S, A = dims["T1"], dims["N"], dims["O"], dims["S"], dims["A"]
    T = T1 - 1

    all_lengths, src_terminated = _episode_lengths(src, dims)
    kept = np.nonzero(all_lengths > 0)[0]
    if kept.size == 0:
        raise src.error("filled", "no episode has a valid step")
    E = int(kept.size)
    lengths = all_lengths[kept]
    row = np.arange(E)

    arrays: dict[str, np.ndarray] = {
        "obs": np.zeros((E, T1, N, O), np.float32),
        "state": np.zeros((E, T1, S), np.float32),
        "actions": np.zeros((E, T, N), np.int64),
        "avail_actions": np.zeros((E, T1, N, A), np.uint8),
        "reward": np.zeros((E, T), np.float32),
        "terminated": np.zeros((E, T), np.uint8),
        "filled": (np.arange(T)[None, :] < lengths[:, None]).astype(np.uint8),
    }
    has_probs = src.has("probs")
    if has_probs:
        arrays["behaviour_probs"] = np.zeros((E, T, N, A), np.float32)

    # terminated: the source flag at the last valid step only.
    last_flag = src_terminated[kept, lengths - 1]
    arrays["terminated"][row, lengths - 1] = last_flag
    at_limit = (lengths == T) & last_flag
    n_terminated_at_limit = int(at_limit.sum())
    if clear_terminated_at_limit:
        arrays["terminated"][row[at_limit], T - 1] = 0

    # Nonzero source values outside the kept slots, per field. Slots kept are
    # 0..L for observation-like fields and 0..L-1 for step fields; nothing is
    # kept of skipped (empty) episodes nor of the redundant actions_onehot.
    dropped = {name: 0 for name in REQUIRED_FIELDS + OPTIONAL_FIELDS if src.has(name)}
    slot_keep_all, step_keep_all = _keep_masks(all_lengths, T1)
    src_filled = _flat_time(src.read("filled")) != 0
    dropped["filled"] = int(np.count_nonzero(src_filled[~slot_keep_all]))
    # pymarl fills slot L with the final observation; an episode whose slot L
    # is unfilled (ended early without a termination flag) keeps zeros there.
    no_final_obs = int(np.count_nonzero(~src_filled[kept, lengths]))
    dropped["terminated"] = int(np.count_nonzero(src_terminated) - np.count_nonzero(last_flag))

    per_episode_bytes = T1 * (N * (O + 3 * A) + S) * 8
    per_chunk = max(1, _CHUNK_BYTES // per_episode_bytes)
    n_src = int(dims["E"])
    for start, stop in _chunks(n_src, per_chunk):
        local = np.nonzero(all_lengths[start:stop] > 0)[0]  # kept episodes, chunk-relative
        first = int(np.searchsorted(kept, start))
        out = slice(first, first + local.size)
        slot_keep, step_keep = slot_keep_all[start:stop], step_keep_all[start:stop]

        def take(name: str, keep: np.ndarray) -> np.ndarray:
            """Kept episodes of this chunk of ``name``, zero outside ``keep``; count dropped nonzeros."""
            data = src.read(name, start, stop)
            dropped[name] += int(np.count_nonzero(data[~keep]))
            data = data[local]
            return np.where(_expand(keep[local], data.ndim), data, 0)

        arrays["obs"][out] = take("obs", slot_keep)
        arrays["state"][out] = take("state", slot_keep)

        avail = take("avail_actions", slot_keep)
        bad = (avail != 0) & (avail != 1)
        if bad.any():
            e = int(kept[first + np.nonzero(bad.any(axis=(1, 2, 3)))[0][0]])
            values = np.unique(avail[bad])[:5].tolist()
            raise src.error("avail_actions", f"values must be 0 or 1; episode {e} holds {values}")
        arrays["avail_actions"][out] = avail

        actions = take("actions", step_keep)[:, :T].reshape(local.size, T, N)
        if not np.issubdtype(actions.dtype, np.integer):
            if not np.issubdtype(actions.dtype, np.floating) or not np.isfinite(actions).all():
                raise src.error("actions", f"discrete actions must be finite numbers, got dtype {actions.dtype}")
            if (actions != np.round(actions)).any():
                raise src.error("actions", "discrete actions must be integers, found non-integral values")
        arrays["actions"][out] = actions

        arrays["reward"][out] = take("reward", step_keep)[:, :T].reshape(local.size, T)

        if has_probs:
            probs = take("probs", step_keep)[:, :T]
            if not np.isfinite(probs).all():
                raise src.error("probs", "behaviour probabilities must be finite on valid steps")
            arrays["behaviour_probs"][out] = probs

        if src.has("actions_onehot"):
            onehot = src.read("actions_onehot", start, stop)
            dropped["actions_onehot"] += int(np.count_nonzero(onehot[~step_keep]))
            _check_onehot(src, onehot[local, :T], arrays["actions"][out], step_keep[local, :T], kept[out], A)

    info = {
        "n_source_episodes": n_src,
        "empty_episodes_dropped": n_src - E,
        "padding_nonzero_dropped": dropped,
        "padding_nonzero_dropped_total": int(sum(dropped.values())),
        "n_terminated_at_limit": n_terminated_at_limit,
        "episodes_without_final_obs": no_final_obs,
        "cleared_terminated_at_limit": bool(clear_terminated_at_limit),
        "env_check": env_check,
        "source_ignored_keys": src.extra_keys(),
    }
    return arrays, {"spec": spec, **info}


# --------------------------------------------------------------------------
# Provenance helpers
# --------------------------------------------------------------------------
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lit-omarl")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return getattr(__import__("lit_omarl"), "__version__", "unknown")


def _quality_and_stem(name: str) -> tuple[str | None, str]:
    """Split a folder / file stem into (quality, rest), e.g. ``2s3z_medium_replay``
    -> ("medium_replay", "2s3z") and ``buffer_mix`` -> ("mixed", "buffer")."""
    lowered = name.lower()
    for alias in sorted(_QUALITY_ALIASES, key=len, reverse=True):
        if lowered == alias:
            return _QUALITY_ALIASES[alias], ""
        for sep in ("_", "-"):
            if lowered.endswith(sep + alias):
                return _QUALITY_ALIASES[alias], name[: -len(alias) - 1]
    return None, name


def guess_quality(src: str | os.PathLike) -> str:
    """Dataset quality from a source name: ``buffer_optimal`` -> ``optimal``,
    ``buffer_mix`` -> ``mixed``, ``3s_vs_5z_medium_replay.h5`` -> ``medium_replay``.

    Unknown names give ``"unknown"``."""
    path = Path(src)
    stem = path.stem if path.suffix.lower() in (".h5", ".hdf5") else path.name
    quality, _ = _quality_and_stem(stem)
    return quality or "unknown"


def _smac_map(src_file: Path) -> str | None:
    """Map name of a CFCQL SMAC file ``<map>_<quality>.h5`` (None if it has no quality suffix)."""
    quality, rest = _quality_and_stem(src_file.stem)
    return rest if quality is not None and rest else None


def _finish(
    arrays: dict[str, np.ndarray],
    attrs: dict[str, Any],
    *,
    fmt: str,
    src: Path,
    out: str | os.PathLike | None,
    overwrite: bool,
    quality: str | None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Add provenance attributes, validate against the source path, write if asked."""
    attrs = {
        **attrs,
        "quality": quality or guess_quality(src),
        "behaviour": "imported",
        "source": str(src),
        "source_format": fmt,
        "generator": f"lit_omarl {_version()} import {fmt}",
    }
    validate_arrays(arrays, attrs["spec"], str(src))  # errors name the source, not the output
    if out is not None:
        write_dataset(out, arrays, attrs, overwrite=overwrite)
    return arrays, attrs


def _check_out(out: str | os.PathLike | None, overwrite: bool) -> None:
    """Fail before any work if ``out`` exists and may not be replaced."""
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out}: refusing to overwrite an existing dataset (pass overwrite=True)")


# --------------------------------------------------------------------------
# Public importers
# --------------------------------------------------------------------------
def import_pymarl_npy(
    src_dir: str | os.PathLike,
    spec_or_env_id: EnvSpec | Mapping[str, Any] | str,
    *,
    out: str | os.PathLike | None = None,
    env_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    quality: str | None = None,
    check_env: bool = True,
    clear_terminated_at_limit: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Import a pymarl episode-major ``.npy`` folder (e.g. the AlberDICE Bridge buffers).

    Args:
        src_dir: folder holding ``obs.npy``, ``state.npy``, ``actions.npy``,
            ``avail_actions.npy``, ``reward.npy``, ``terminated.npy``,
            ``filled.npy`` and optionally ``actions_onehot.npy`` (checked
            against ``actions`` on valid steps, then dropped) and
            ``meta.json`` (kept verbatim in the attribute ``source_meta``).
        spec_or_env_id: an :class:`EnvSpec` (checked against the data) or an
            env id such as ``"bridge"`` (dimensions inferred from the data
            and, when ``lit_omarl.envs.make`` can build that id and
            ``check_env`` is true, cross-checked against the environment).
        out: if given, the schema-v1 HDF5 file to write.
        env_options: options of ``lit_omarl.envs.make`` stored in the spec.
        overwrite: replace an existing ``out``.
        quality: the ``quality`` attribute (default: guessed from the folder name).
        check_env: cross-check the dimensions against the env registry.
        clear_terminated_at_limit: zero ``terminated`` of episodes that end
            exactly at the episode limit (sources that flag time-limit ends as
            terminations); off by default so the import is lossless.

    Returns:
        ``(arrays, attrs)``: schema-v1 arrays and the attributes written (see
        the module docstring for the conversion and the reported counts).
    """
    _check_out(out, overwrite)
    folder = Path(src_dir).resolve()
    if not folder.exists():
        raise DatasetError(str(folder), FILE_KEY, "source folder does not exist")
    if not folder.is_dir():
        hint = " (an HDF5 file: use the cfcql-h5 importer)" if _is_hdf5(folder) else ""
        raise DatasetError(str(folder), FILE_KEY, f"expected a folder of pymarl .npy files, got a file{hint}")
    source = _NpyFolderSource(folder)
    arrays, attrs = _convert(
        source, spec_or_env_id, env_options, check_env=check_env, clear_terminated_at_limit=clear_terminated_at_limit
    )
    meta = folder / "meta.json"
    if meta.exists():
        attrs["source_meta"] = meta.read_text()
    return _finish(arrays, attrs, fmt="pymarl-npy", src=folder, out=out, overwrite=overwrite, quality=quality)


def import_cfcql_h5(
    src_file: str | os.PathLike,
    spec_or_env_id: EnvSpec | Mapping[str, Any] | str | None = None,
    *,
    out: str | os.PathLike | None = None,
    env_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    quality: str | None = None,
    check_env: bool = True,
    clear_terminated_at_limit: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Import a CFCQL / ICQ SMAC dataset file ``<map>_<quality>.h5``.

    The file holds top-level datasets ``state``, ``obs``, ``actions``,
    ``avail_actions``, ``reward``, ``terminated``, ``filled`` and optionally
    ``probs`` (behaviour probabilities, written as ``behaviour_probs``) and
    ``actions_onehot``, all padded like a pymarl buffer ([E, T+1, ...]).

    ``spec_or_env_id`` defaults to ``sc2/<map>`` with the map taken from the
    file name (the data come from StarCraft II, not SMAX); pass an env id or
    an :class:`EnvSpec` to override. Other arguments as in
    :func:`import_pymarl_npy`.
    """
    _check_out(out, overwrite)
    path = Path(src_file).resolve()
    if not path.exists():
        raise DatasetError(str(path), FILE_KEY, "source file does not exist")
    if path.is_dir():
        hint = " (it holds .npy files: use the pymarl-npy importer)" if any(path.glob("*.npy")) else ""
        raise DatasetError(str(path), FILE_KEY, f"expected an HDF5 file, got a folder{hint}")
    if not _is_hdf5(path):
        raise DatasetError(str(path), FILE_KEY, "not an HDF5 file (wrong format or corrupt)")
    if spec_or_env_id is None:
        map_name = _smac_map(path)
        if map_name is None:
            raise ValueError(
                f"{path}: cannot derive the SMAC map from the file name (expected '<map>_<quality>.h5'); pass an env id"
            )
        spec_or_env_id = f"sc2/{map_name}"

    import h5py

    with h5py.File(path, "r") as handle:
        source = _H5Source(path, handle)
        arrays, attrs = _convert(
            source, spec_or_env_id, env_options, check_env=check_env, clear_terminated_at_limit=clear_terminated_at_limit
        )
    return _finish(arrays, attrs, fmt="cfcql-h5", src=path, out=out, overwrite=overwrite, quality=quality)


def _is_hdf5(path: Path) -> bool:
    try:
        import h5py

        return path.is_file() and h5py.is_hdf5(path)
    except Exception:  # noqa: BLE001
        return False


# --------------------------------------------------------------------------
# OMAR .npy transition folders (omar-npy)
# --------------------------------------------------------------------------
#: OMAR's env names (the ``<env>`` folder of ``<env>/<quality>/seed_<k>_data``)
#: -> our env id and the options of OMAR's setting.
OMAR_ENVS: dict[str, tuple[str, dict[str, Any]]] = {
    "simple_spread": ("mpe/simple_spread", {}),
    "simple_tag": ("mpe/simple_tag", {}),
    "simple_world": ("mpe/simple_world_comm", {}),
    "HalfCheetah-v2": ("mamujoco/HalfCheetah-2x3", {"agent_obsk": 0}),
}
#: Per-agent files of an OMAR folder (``<field>_<i>.npy``) and the optional state pair.
OMAR_FIELDS = ("obs", "acs", "rews", "next_obs", "dones")
OMAR_STATE_FIELDS = ("states", "next_states")
_OMAR_DEFAULT_LIMIT = {"mpe": 25, "mamujoco": 1000}


class _OmarFolder:
    """Memory-mapped per-agent arrays of an OMAR folder, with shape checks; errors name file and key."""

    def __init__(self, folder: Path) -> None:
        self.root = folder
        hint = ("an OMAR dataset folder (<env>/<quality>/seed_<k>_data) holds, per agent i, obs_<i>.npy, "
                "acs_<i>.npy, rews_<i>.npy, next_obs_<i>.npy, dones_<i>.npy (+ states_<i>.npy, next_states_<i>.npy)")
        if not (folder / "obs_0.npy").exists():
            raise DatasetError(str(folder / "obs_0.npy"), "obs_0", f"required file is missing: {hint}")
        k = 0
        while (folder / f"obs_{k}.npy").exists():
            k += 1
        self.n_agents = k
        stray = sorted(p.name for p in folder.glob("*_*.npy") if self._agent_of(p.name) is not None
                       and self._agent_of(p.name) >= k)
        if stray:
            raise DatasetError(str(folder / f"obs_{k}.npy"), f"obs_{k}",
                               f"required file is missing, but files of agent(s) >= {k} exist ({', '.join(stray[:4])})")
        with_state = [(folder / f"states_{i}.npy").exists() for i in range(k)]
        self.has_state = all(with_state)
        if any(with_state) and not self.has_state:
            i = with_state.index(False)
            raise DatasetError(str(folder / f"states_{i}.npy"), f"states_{i}", "missing while other agents have states_<i>.npy")
        fields = OMAR_FIELDS + (OMAR_STATE_FIELDS if self.has_state else ())
        self.arrays: dict[str, np.ndarray] = {}
        for i in range(k):
            for field in fields:
                key = f"{field}_{i}"
                file = folder / f"{key}.npy"
                if not file.exists():
                    raise DatasetError(str(file), key, f"required file is missing: {hint}")
                try:
                    array = np.load(file, mmap_mode="r", allow_pickle=False)
                except Exception as exc:  # noqa: BLE001 - any failure means "not a usable .npy"
                    raise DatasetError(str(file), key, f"not a readable .npy array ({type(exc).__name__}: {exc})") from exc
                if not isinstance(array, np.ndarray):
                    raise DatasetError(str(file), key, "expected a single .npy array, found an .npz archive")
                if array.dtype.kind not in "fiub":
                    raise DatasetError(str(file), key, f"expected numbers, got dtype {array.dtype}")
                self.arrays[key] = array
        self.M = int(self.arrays["obs_0"].shape[0]) if self.arrays["obs_0"].ndim else 0
        for key, array in self.arrays.items():
            field = key.rsplit("_", 1)[0]
            if field in ("rews", "dones"):
                ok = array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)
                want = "[M] or [M, 1]"
            else:
                ok = array.ndim == 2 and array.shape[1] >= 1
                want = "[M, dim]"
            if not ok:
                raise self.error(key, f"expected shape {want}, got {array.shape}")
            if array.shape[0] != self.M:
                raise self.error(key, f"holds {array.shape[0]} transitions but obs_0.npy holds {self.M}")
        if self.M < 1:
            raise self.error("obs_0", "holds no transitions")
        for i in range(k):
            if self.arrays[f"next_obs_{i}"].shape != self.arrays[f"obs_{i}"].shape:
                raise self.error(f"next_obs_{i}", f"shape {self.arrays[f'next_obs_{i}'].shape} differs from obs_{i}.npy "
                                                  f"{self.arrays[f'obs_{i}'].shape}")
            if self.has_state and self.arrays[f"states_{i}"].shape != self.arrays["states_0"].shape:
                raise self.error(f"states_{i}", f"shape {self.arrays[f'states_{i}'].shape} differs from states_0.npy")
            if self.has_state and self.arrays[f"next_states_{i}"].shape != self.arrays["states_0"].shape:
                raise self.error(f"next_states_{i}", f"shape {self.arrays[f'next_states_{i}'].shape} differs from states_0.npy")
        self.obs_dims = tuple(int(self.arrays[f"obs_{i}"].shape[1]) for i in range(k))
        self.act_dims = tuple(int(self.arrays[f"acs_{i}"].shape[1]) for i in range(k))

    @staticmethod
    def _agent_of(name: str) -> int | None:
        stem, _, index = name[:-4].rpartition("_")
        return int(index) if stem in OMAR_FIELDS + OMAR_STATE_FIELDS and index.isdigit() else None

    def error(self, key: str, problem: str) -> DatasetError:
        return DatasetError(str(self.root / f"{key}.npy"), key, problem)

    def get(self, key: str) -> np.ndarray:
        array = np.asarray(self.arrays[key], dtype=np.float64)
        return array.reshape(self.M, -1)


def _omar_env(folder: Path) -> tuple[str, dict[str, Any]] | None:
    """(env id, options) from ``.../<env>/<quality>/seed_<k>_data`` (None if the path does not say)."""
    for part in (folder.parent.parent.name, folder.parent.name, folder.name):
        if part in OMAR_ENVS:
            env_id, options = OMAR_ENVS[part]
            return env_id, dict(options)
    return None


def _omar_registry(env_id: str, options: Mapping[str, Any]) -> tuple[EnvSpec | None, dict[str, Any], str]:
    """The registered env's spec and per-agent sizes (best effort, like :func:`_registry_spec`)."""
    try:
        from lit_omarl.envs import make
    except Exception as exc:  # noqa: BLE001
        return None, {}, f"skipped (no environment registry: {type(exc).__name__})"
    try:
        env = make(env_id, num_envs=1, seed=0, **dict(options))
    except Exception as exc:  # noqa: BLE001 - unknown id, missing optional dependency, ...
        return None, {}, f"skipped (cannot build {env_id!r}: {type(exc).__name__}: {exc})"
    extra = {k: tuple(getattr(env, k)) for k in ("agent_obs_dims", "agent_action_dims") if hasattr(env, k)}
    spec = getattr(env, "spec", None)
    close = getattr(env, "close", None)
    if callable(close):
        close()
    if not isinstance(spec, EnvSpec):
        return None, {}, f"skipped ({env_id!r} has no EnvSpec)"
    return spec, extra, "ok"


def _omar_segments(src: _OmarFolder, n: int, T: int, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Episode starts, lengths and 'ended by done' flags of the flat transition stream, and the
    number of episodes (not counting the last) that end early without ``dones``.

    An episode ends after transition t when a learner's ``dones[t]`` is set, when
    it reaches T transitions, or (``split="auto"``) when the stream is not
    continuous: some agent's ``next_obs[t]`` differs from its ``obs[t+1]``.
    With ``split="auto"``, a stream that stays continuous past T transitions is an error.
    """
    M = src.M
    done = np.zeros(M, dtype=bool)
    for i in range(n):
        done |= src.get(f"dones_{i}")[:, 0] != 0
    end = done.copy()
    end[-1] = True
    if split == "auto" and M > 1:
        cont = np.ones(M - 1, dtype=bool)
        for i in range(src.n_agents):
            nxt, nob = src.get(f"next_obs_{i}")[:-1], src.get(f"obs_{i}")[1:]
            cont &= (np.abs(nxt - nob) <= 1e-6 * (1.0 + np.abs(nob))).all(axis=1)
        end[:-1] |= ~cont
    ends = np.nonzero(end)[0]
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if split == "auto" and (lengths > T).any():
        e = int(np.nonzero(lengths > T)[0][0])
        t = int(starts[e] + T - 1)
        raise src.error("next_obs_0", f"the transition stream stays continuous past episode_limit={T} at transition {t} "
                                      f"(next_obs[{t}] == obs[{t + 1}] for every agent): the data have longer episodes "
                                      f"than the env (wrong env or episode_limit?)")
    # cut natural segments into pieces of at most T transitions (split="fixed")
    pieces = -(-lengths // T)
    seg = np.repeat(np.arange(len(starts)), pieces)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    ep_starts = starts[seg] + k * T
    ep_lengths = np.minimum(T, lengths[seg] - k * T)
    ep_done = done[ep_starts + ep_lengths - 1]
    short = (ep_lengths < T) & ~ep_done
    short[-1] = False  # the stream may stop mid-episode
    return ep_starts, ep_lengths, ep_done, int(short.sum())


def import_omar_npy(
    src_dir: str | os.PathLike,
    spec_or_env_id: EnvSpec | Mapping[str, Any] | str | None = None,
    *,
    out: str | os.PathLike | None = None,
    env_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    quality: str | None = None,
    check_env: bool = True,
    n_agents: int | None = None,
    team_reward: str | None = None,
    split: str = "auto",
    clip_actions: bool = False,
    allow_short_episodes: bool = False,
    clear_terminated_at_limit: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Import an OMAR dataset folder ``<env>/<quality>/seed_<k>_data`` (continuous actions).

    Layout (REFERENCE.md; OMAR's ``ReplayBuffer.load_batch_data``): flat
    transitions, one set of files per agent ``i`` (all agents of the env, the
    prey of tag / world included, predators first): ``obs_<i>.npy`` [M, O_i],
    ``acs_<i>.npy`` [M, A_i], ``rews_<i>.npy`` [M], ``next_obs_<i>.npy``
    [M, O_i], ``dones_<i>.npy`` [M]; HalfCheetah also ``states_<i>.npy`` /
    ``next_states_<i>.npy`` [M, S] (the same state copied per agent). No
    episode boundaries are stored (and MPE ``dones`` are all 0).

    Conversion:

    * Learning agents: the first ``spec.n_agents`` agents (from the spec, the
      registered env, ``n_agents``, or all agents); the others (prey) are
      only used for the MPE state.
    * Episodes: split where a learner's ``dones`` is set (terminated), after
      ``episode_limit`` transitions (truncated), and (``split="auto"``) where
      the stream is discontinuous, i.e. some agent's ``next_obs[t]`` differs
      from its ``obs[t+1]``. ``split="fixed"`` ignores continuity. A
      discontinuity before the limit without ``dones`` is an error unless
      ``allow_short_episodes`` (it suggests a wrong layout or interleaved
      parallel rollouts); the last episode of the stream may be short.
      Continuity across the limit is an error (longer episodes than the env).
    * obs / state at 0..L-1 from ``obs`` / ``states``, slot L from the last
      ``next_obs`` / ``next_states``. Without state files (MPE) the state is
      the concatenation of all agents' observations, prey included (mpe2's
      ``state()``). Observations and actions are zero-padded to the largest
      agent; per-agent sizes are checked against the registered env.
    * reward: the team reward of the env's ``team_reward`` option ("mean"
      over the learners by default, or "first"); the learners' rewards are
      kept in ``agent_reward``.
    * Actions outside [action_low, action_high] are an error naming the file,
      transition and value, unless ``clip_actions`` (count in ``n_actions_clipped``).

    ``spec_or_env_id`` defaults to the env of the folder path (``simple_spread``
    -> ``mpe/simple_spread``, ``simple_tag`` -> ``mpe/simple_tag``,
    ``simple_world`` -> ``mpe/simple_world_comm``, ``HalfCheetah-v2`` ->
    ``mamujoco/HalfCheetah-2x3`` with ``agent_obsk=0``). OMAR's MPE fork
    differs from mpe2 (REFERENCE.md, ``envs/mpe.py``), so the sizes may agree
    while the reward scales do not. ``quality`` defaults to the ``<quality>``
    folder (``medium-replay`` -> ``medium_replay``). Other arguments as in
    :func:`import_pymarl_npy`.
    """
    _check_out(out, overwrite)
    folder = Path(src_dir).resolve()
    if not folder.exists():
        raise DatasetError(str(folder), FILE_KEY, "source folder does not exist")
    if not folder.is_dir():
        raise DatasetError(str(folder), FILE_KEY, "expected an OMAR dataset folder of .npy files, got a file")
    if split not in ("auto", "fixed"):
        raise ValueError(f"omar-npy: split must be 'auto' or 'fixed', got {split!r}")
    src = _OmarFolder(folder)

    # ---- spec
    options = dict(env_options or {})
    extra: dict[str, Any] = {}
    if isinstance(spec_or_env_id, (EnvSpec, Mapping)):
        spec = EnvSpec.from_dict(spec_or_env_id)
        if env_options is not None:
            spec = replace(spec, env_options=options)
        env_check = "skipped (spec given)"
    else:
        if spec_or_env_id is None:
            derived = _omar_env(folder)
            if derived is None:
                raise ValueError(f"{folder}: cannot derive the env from the path (expected <env>/<quality>/seed_<k>_data "
                                 f"with <env> one of {', '.join(OMAR_ENVS)}); pass an env id")
            env_id, default_options = derived
            options = {**default_options, **options}
        else:
            env_id = str(spec_or_env_id)
        spec, env_check = None, "skipped (disabled)"
        if check_env:
            spec, extra, env_check = _omar_registry(env_id, options)
        if spec is None:
            family = env_id.partition("/")[0]
            limit = options.get("episode_limit", _OMAR_DEFAULT_LIMIT.get(family))
            if limit is None:
                raise ValueError(f"{folder}: the episode limit of {env_id!r} is unknown; pass env_options={{'episode_limit': T}}")
            n = int(n_agents) if n_agents is not None else src.n_agents
            n = min(n, src.n_agents)
            state_dim = int(src.arrays["states_0"].shape[1]) if src.has_state else sum(src.obs_dims)
            spec = EnvSpec(env_id=env_id, n_agents=n, obs_dim=max(src.obs_dims[:n]), state_dim=state_dim,
                           n_actions=max(src.act_dims[:n]), action_type="continuous", episode_limit=int(limit),
                           env_options=options)
        elif env_options is not None or spec_or_env_id is None:
            spec = replace(spec, env_options={**spec.env_options, **options})
    if spec.discrete:
        raise src.error("acs_0", f"{spec.env_id!r} has discrete actions; OMAR data are continuous")
    N, T = spec.n_agents, spec.episode_limit
    if n_agents is not None and int(n_agents) != N:
        raise ValueError(f"{folder}: n_agents={n_agents} disagrees with the {N} learning agents of {spec.env_id!r}")
    if src.n_agents < N:
        raise src.error(f"obs_{src.n_agents}", f"required file is missing: {spec.env_id!r} has {N} learning agents, "
                                                f"the folder holds files of {src.n_agents}")
    want_obs = extra.get("agent_obs_dims")
    want_act = extra.get("agent_action_dims")
    for i in range(N):
        o, a = src.obs_dims[i], src.act_dims[i]
        if (want_obs and o != want_obs[i]) or o > spec.obs_dim:
            raise src.error(f"obs_{i}", f"agent {i} observes {o} features but {spec.env_id!r} gives it "
                                        f"{want_obs[i] if want_obs else f'at most {spec.obs_dim}'}")
        if (want_act and a != want_act[i]) or a > spec.n_actions:
            raise src.error(f"acs_{i}", f"agent {i} has {a} action entries but {spec.env_id!r} gives it "
                                        f"{want_act[i] if want_act else f'at most {spec.n_actions}'}")
    if src.has_state:
        s_dim, state_source = int(src.arrays["states_0"].shape[1]), "states_<i>.npy (agent 0's copy)"
        if s_dim != spec.state_dim:
            raise src.error("states_0", f"state size {s_dim} but {spec.env_id!r} has state_dim {spec.state_dim}")
    else:
        s_dim = sum(src.obs_dims)
        state_source = f"concatenated obs_0..obs_{src.n_agents - 1} (all agents)"
        if s_dim != spec.state_dim:
            raise src.error(f"obs_{src.n_agents - 1}", f"without states_<i>.npy the state is the concatenation of all "
                            f"{src.n_agents} agents' observations ({'+'.join(map(str, src.obs_dims))} = {s_dim}), "
                            f"but {spec.env_id!r} has state_dim {spec.state_dim}")
    mode = team_reward or spec.env_options.get("team_reward", "mean")
    if mode not in ("mean", "first"):
        raise ValueError(f"omar-npy: team_reward must be 'mean' or 'first', got {mode!r}")

    # ---- values: finite, actions in bounds
    for key in src.arrays:
        if key.startswith("acs_") and int(key[4:]) >= N:
            continue
        data = src.get(key)
        bad = ~np.isfinite(data)
        if bad.any():
            m, d = (int(v) for v in np.argwhere(bad)[0])
            raise src.error(key, f"non-finite value {data[m, d]} at transition {m}, entry {d}")
    n_clipped = 0
    for i in range(N):
        acs = src.get(f"acs_{i}")
        out_b = (acs < spec.action_low) | (acs > spec.action_high)
        if out_b.any():
            if not clip_actions:
                m, d = (int(v) for v in np.argwhere(out_b)[0])
                raise src.error(f"acs_{i}", f"action {acs[m, d]:.6g} at transition {m}, entry {d} is outside "
                                            f"[{spec.action_low}, {spec.action_high}] ({int(out_b.sum())} entries; "
                                            f"pass clip_actions=True to clip them)")
            n_clipped += int(out_b.sum())

    # ---- episodes
    starts, lengths, ended_by_done, n_short = _omar_segments(src, N, T, split)
    if n_short and not allow_short_episodes:
        e = int(np.nonzero((lengths < T) & ~ended_by_done)[0][0])
        t = int(starts[e] + lengths[e] - 1)
        raise src.error("next_obs_0", f"{n_short} episode(s) end before episode_limit={T} without dones: the stream "
                                      f"is discontinuous (next_obs[{t}] != obs[{t + 1}] for some agent); wrong layout, "
                                      f"interleaved parallel rollouts or a different episode limit? "
                                      f"(allow_short_episodes=True keeps them as truncated episodes)")
    E = len(starts)
    step = np.arange(T)[None, :]
    valid = step < lengths[:, None]  # [E, T]
    idx = np.where(valid, starts[:, None] + step, 0)  # transition of each (episode, step)
    last = starts + lengths - 1
    O, A, S = spec.obs_dim, spec.n_actions, spec.state_dim

    def episodes(key: str, next_key: str, width: int) -> np.ndarray:
        cur, nxt = src.get(key), src.get(next_key)
        out_arr = np.zeros((E, T + 1, width), np.float32)
        out_arr[:, :T, : cur.shape[1]] = np.where(valid[..., None], cur[idx], 0.0)
        out_arr[np.arange(E), lengths, : cur.shape[1]] = nxt[last]
        return out_arr

    arrays: dict[str, np.ndarray] = {
        "obs": np.stack([episodes(f"obs_{i}", f"next_obs_{i}", O) for i in range(N)], axis=2),
        "actions": np.zeros((E, T, N, A), np.float32),
        "agent_reward": np.zeros((E, T, N), np.float32),
        "terminated": np.zeros((E, T), np.uint8),
        "filled": valid.astype(np.uint8),
    }
    if src.has_state:
        arrays["state"] = episodes("states_0", "next_states_0", S)
    else:
        arrays["state"] = np.concatenate([episodes(f"obs_{i}", f"next_obs_{i}", d) for i, d in enumerate(src.obs_dims)], axis=-1)
    for i in range(N):
        acs = np.clip(src.get(f"acs_{i}"), spec.action_low, spec.action_high)
        arrays["actions"][:, :, i, : acs.shape[1]] = np.where(valid[..., None], acs[idx], 0.0)
        arrays["agent_reward"][:, :, i] = np.where(valid, src.get(f"rews_{i}")[:, 0][idx], 0.0)
    team = arrays["agent_reward"].mean(axis=-1) if mode == "mean" else arrays["agent_reward"][:, :, 0]
    arrays["reward"] = np.where(valid, team, 0.0).astype(np.float32)
    arrays["terminated"][np.arange(E), lengths - 1] = ended_by_done
    at_limit = ended_by_done & (lengths == T)
    if clear_terminated_at_limit:
        arrays["terminated"][np.nonzero(at_limit)[0], T - 1] = 0
    arrays = {k: arrays[k] for k in ("obs", "state", "actions", "reward", "terminated", "filled", "agent_reward")}

    info = {
        "spec": spec,
        "env_check": env_check,
        "n_source_transitions": src.M,
        "n_source_agents": src.n_agents,
        "non_learning_agents": list(range(N, src.n_agents)),
        "state_source": state_source,
        "team_reward": mode,
        "split": split,
        "n_short_episodes": n_short,
        "partial_last_episode": bool(lengths[-1] < T and not ended_by_done[-1]),
        "n_terminated_at_limit": int(at_limit.sum()),
        "cleared_terminated_at_limit": bool(clear_terminated_at_limit),
        "n_actions_clipped": n_clipped,
        "source_ignored_keys": sorted(p.name for p in folder.iterdir() if p.suffix != ".npy" or _OmarFolder._agent_of(p.name) is None),
    }
    if quality is None:
        quality = _quality_and_stem(folder.parent.name)[0] or guess_quality(folder)
    return _finish(arrays, info, fmt="omar-npy", src=folder, out=out, overwrite=overwrite, quality=quality)


#: Source formats understood by :func:`import_dataset` (the CLI's ``--format``).
IMPORTERS: dict[str, Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]] = {
    "pymarl-npy": import_pymarl_npy,
    "cfcql-h5": import_cfcql_h5,
    "omar-npy": import_omar_npy,
}


def import_dataset(
    fmt: str,
    src: str | os.PathLike,
    env_id: str | EnvSpec | None,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    env_options: Mapping[str, Any] | None = None,
) -> Path:
    """Convert ``src`` (format ``fmt``, a key of :data:`IMPORTERS`) to the schema-v1 file ``out``.

    ``env_id`` may be None only for formats that can derive it (``cfcql-h5``:
    ``sc2/<map>``). Returns the written path.
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown import format {fmt!r}; known formats: {', '.join(sorted(IMPORTERS))}")
    if env_id is None and fmt == "pymarl-npy":
        raise ValueError(f"{src}: the pymarl-npy format needs an env id (e.g. --env bridge)")
    args = (src,) if env_id is None else (src, env_id)
    IMPORTERS[fmt](*args, out=out, env_options=env_options, overwrite=overwrite)
    return Path(out)
