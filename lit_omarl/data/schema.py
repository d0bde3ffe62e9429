"""Dataset schema v1: validation, HDF5 writing and reading of episode datasets.

One file holds E episodes, episode-major and padded to T = ``spec.episode_limit``
steps (see ``docs/CONTRACTS.md`` for the table of keys). Every problem found in
a file or in a dict of arrays raises :class:`DatasetError`, whose message names
the file, the key and what is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from lit_omarl.spec import EnvSpec
from lit_omarl.utils.atomic import default_file_mode

FORMAT_VERSION = 1

FILE_KEY = "<file>"
MASK_KEYS = ("avail_actions", "terminated", "filled", "won")
OPTIONAL_KEYS = ("agent_reward", "behaviour_probs", "won")
# Attributes computed by the writer (they overwrite any value given by the caller).
WRITER_ATTRS = (
    "format_version", "spec", "env", "n_agents", "episode_limit",
    "n_episodes", "n_transitions", "return_mean", "return_std", "return_min", "return_max",
)
# Names of attributes that were JSON-encoded by the writer (dicts, lists, None).
_JSON_ATTRS = "json_attrs"

# Datasets are stored uncompressed. Measured on 5000 example episodes (222 MB,
# 3 agents, T=60, 1/3 padding): lzf made the file 1.5x smaller but writing 10x
# (0.2 s -> 2.0 s) and reading 7x (0.12 s -> 0.88 s) slower. Files are
# regenerated locally rather than downloaded, so load speed wins. Setting this
# to "lzf" or "gzip" switches on episode-chunked compression; readers need no change.
_COMPRESSION: str | None = None
_CHUNK_BYTES = 1 << 20
# Elements per slice when scanning big float arrays (bounds temporary memory).
_SCAN_ELEMENTS = 1 << 24


class DatasetError(ValueError):
    """A dataset (file or dict of arrays) violates schema v1.

    Attributes:
        path: the file (or ``"<memory>"``) the problem was found in.
        key: the array or attribute name, or ``"<file>"`` for file-level problems.
        problem: what is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.path}: key '{key}': {problem}")

    def __reduce__(self):  # keep the exception picklable (multiprocessing, Ray)
        return (type(self), (self.path, self.key, self.problem))


@dataclass(repr=False)
class EpisodeData:
    """The arrays and attributes of one dataset file (see schema v1)."""

    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = "<memory>"

    @property
    def spec(self) -> EnvSpec:
        return _coerce_spec(self.attrs.get("spec"), self.path)

    @property
    def n_episodes(self) -> int:
        return int(self.arrays["filled"].shape[0])

    def lengths(self) -> np.ndarray:
        """Number of filled steps of every episode, int64 [E]."""
        return episode_lengths(self.arrays)

    def returns(self) -> np.ndarray:
        """Sum of the team reward over the filled steps, float64 [E]."""
        filled = self.arrays["filled"].astype(bool)
        return np.where(filled, self.arrays["reward"], 0.0).sum(axis=1, dtype=np.float64)

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.arrays))
        return f"EpisodeData(path={self.path!r}, n_episodes={self.n_episodes}, keys=[{keys}])"


# ----------------------------------------------------------------------------- validation


def episode_lengths(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Number of filled steps of every episode of schema-v1 ``arrays``, int64 [E]."""
    return np.asarray(arrays["filled"]).astype(bool).sum(axis=1, dtype=np.int64)


def _expected_layout(spec: EnvSpec) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """key -> (allowed dtype names, axis names) for every key the spec admits."""
    floats, masks = ("float32",), ("uint8", "bool")
    layout = {
        "obs": (floats, ("E", "T+1", "N", "O")),
        "state": (floats, ("E", "T+1", "S")),
        "actions": (("int64",), ("E", "T", "N")) if spec.discrete else (floats, ("E", "T", "N", "A")),
        "avail_actions": (masks, ("E", "T+1", "N", "A")),
        "reward": (floats, ("E", "T")),
        "terminated": (masks, ("E", "T")),
        "filled": (masks, ("E", "T")),
        "agent_reward": (floats, ("E", "T", "N")),
        "behaviour_probs": (floats, ("E", "T", "N", "A")),
        "won": (masks, ("E",)),
    }
    return layout


def required_keys(spec: EnvSpec) -> tuple[str, ...]:
    """Keys every dataset of this spec must hold."""
    keys = ("obs", "state", "actions", "avail_actions", "reward", "terminated", "filled")
    return keys if spec.discrete else tuple(k for k in keys if k != "avail_actions")


def _axis_sizes(spec: EnvSpec) -> dict[str, tuple[int, str]]:
    T = spec.episode_limit
    return {
        "T": (T, f"episode_limit={T}"),
        "T+1": (T + 1, f"episode_limit+1={T + 1}"),
        "N": (spec.n_agents, f"n_agents={spec.n_agents}"),
        "O": (spec.obs_dim, f"obs_dim={spec.obs_dim}"),
        "S": (spec.state_dim, f"state_dim={spec.state_dim}"),
        "A": (spec.n_actions, f"n_actions={spec.n_actions}"),
    }


def _where(index: tuple, names: tuple[str, ...]) -> str:
    return ", ".join(f"{n} {int(i)}" for n, i in zip(names, index))


def _first(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _first_non_finite(a: np.ndarray) -> tuple | None:
    """Index of the first NaN/inf of ``a`` (scanned in slices along axis 0), or None."""
    if a.size == 0:
        return None
    step = max(1, _SCAN_ELEMENTS // max(1, a[:1].size))
    for start in range(0, a.shape[0], step):
        block = a[start:start + step]
        if not np.isfinite(block).all():
            idx = _first(~np.isfinite(block))
            return (idx[0] + start,) + idx[1:]
    return None


def _coerce_spec(spec: Any, path: str) -> EnvSpec:
    if spec is None:
        raise DatasetError(path, "spec", "missing attribute 'spec' (EnvSpec JSON)")
    try:
        if isinstance(spec, (str, bytes)):
            return EnvSpec.from_json(spec.decode() if isinstance(spec, bytes) else spec)
        return EnvSpec.from_dict(spec)
    except (TypeError, ValueError, KeyError) as exc:
        raise DatasetError(path, "spec", f"not a valid EnvSpec: {exc}") from None


def validate_arrays(arrays: Mapping[str, np.ndarray], spec: EnvSpec | dict, path: str | os.PathLike = "<memory>") -> None:
    """Check ``arrays`` against schema v1 and ``spec``; raise :class:`DatasetError` on the first problem.

    Masks (``avail_actions``, ``terminated``, ``filled``, ``won``) may be bool or
    uint8 (0/1). Keys not in the schema are allowed and not checked.
    """
    path = str(path)
    spec = _coerce_spec(spec, path)
    layout = _expected_layout(spec)
    names = ("episode", "step", "agent", "dim")

    # Presence, type, dtype and rank.
    for key in required_keys(spec):
        if key not in arrays:
            kind = "discrete" if spec.discrete else "continuous"
            raise DatasetError(path, key, f"required key is missing (required for {kind} actions: {', '.join(required_keys(spec))})")
    present = [k for k in layout if k in arrays]
    for key in present:
        a = arrays[key]
        dtypes, axes = layout[key]
        if not isinstance(a, np.ndarray):
            raise DatasetError(path, key, f"expected a numpy array, got {type(a).__name__}")
        if a.dtype.name not in dtypes:
            raise DatasetError(path, key, f"dtype is {a.dtype.name}, expected {' or '.join(dtypes)}")
        if a.ndim != len(axes):
            raise DatasetError(path, key, f"rank is {a.ndim} (shape {a.shape}), expected {len(axes)} axes [{', '.join(axes)}]")

    # Episode counts and the other dimensions.
    E = arrays["obs"].shape[0]
    for key in present:
        if arrays[key].shape[0] != E:
            raise DatasetError(path, key, f"has {arrays[key].shape[0]} episodes but 'obs' has {E} episodes")
    if E == 0:
        raise DatasetError(path, "obs", "dataset has 0 episodes (an empty dataset is not allowed)")
    sizes = _axis_sizes(spec)
    for key in present:
        shape, axes = arrays[key].shape, layout[key][1]
        for axis, (dim, name) in enumerate(zip(shape, axes)):
            if name != "E" and dim != sizes[name][0]:
                expected = tuple(E if n == "E" else sizes[n][0] for n in axes)
                raise DatasetError(
                    path, key,
                    f"shape {shape} does not match [{', '.join(axes)}] = {expected}: axis {axis} ({name}) is {dim}, "
                    f"spec says {sizes[name][1]}",
                )

    # Masks hold 0/1 only.
    for key in MASK_KEYS:
        if key in arrays and arrays[key].dtype != np.bool_ and (arrays[key] > 1).any():
            idx = _first(arrays[key] > 1)
            raise DatasetError(path, key, f"mask values must be 0 or 1, found {arrays[key][idx]} at index {idx}")

    # filled: a prefix of length >= 1 in every episode.
    filled = arrays["filled"].astype(bool)
    no_step = ~filled.any(axis=1)
    if no_step.any():
        e = int(np.argmax(no_step))
        raise DatasetError(path, "filled", f"episode {e} has no filled step (every episode needs a filled prefix of length >= 1)")
    restarts = filled[:, 1:] & ~filled[:, :-1]  # a filled step right after an unfilled one
    if restarts.any():
        e, t = _first(restarts)
        raise DatasetError(path, "filled", f"filled steps are not a contiguous prefix: episode {e} has filled step {t + 1} after unfilled step {t}")

    # terminated: at most once, only at the last filled step.
    last = filled & ~np.concatenate([filled[:, 1:], np.zeros_like(filled[:, :1])], axis=1)
    bad = arrays["terminated"].astype(bool) & ~last
    if bad.any():
        e, t = _first(bad)
        length = int(filled[e].sum())
        raise DatasetError(
            path, "terminated",
            f"set at episode {e}, step {t}, but it may only be set at the last filled step (step {length - 1}) of an episode",
        )

    # Finite values.
    float_keys = ["obs", "state", "reward", "agent_reward", "behaviour_probs"]
    if not spec.discrete:
        float_keys.append("actions")
    for key in float_keys:
        if key in arrays:
            idx = _first_non_finite(arrays[key])
            if idx is not None:
                raise DatasetError(path, key, f"contains non-finite values (NaN or inf), first at index {idx}")

    actions = arrays["actions"]
    if spec.discrete:
        A = spec.n_actions
        out = (actions < 0) | (actions >= A)
        if out.any():
            idx = _first(out)
            raise DatasetError(
                path, "actions",
                f"discrete action {int(actions[idx])} at {_where(idx, names)} is outside [0, {A}) (padding must use 0)",
            )
        avail = arrays["avail_actions"][:, :-1]
        taken = np.take_along_axis(avail, actions[..., None], axis=-1)[..., 0]
        unavailable = filled[:, :, None] & (taken == 0)
        if unavailable.any():
            idx = _first(unavailable)
            raise DatasetError(
                path, "actions",
                f"action {int(actions[idx])} at {_where(idx, names)} is not available (avail_actions is 0 on a filled step)",
            )
    else:
        low, high = spec.action_low, spec.action_high
        outside = filled[:, :, None, None] & ((actions < low) | (actions > high))
        if outside.any():
            idx = _first(outside)
            raise DatasetError(
                path, "actions",
                f"continuous action {float(actions[idx]):g} at {_where(idx, names)} is outside the bounds "
                f"[action_low, action_high] = [{low:g}, {high:g}]",
            )


# ----------------------------------------------------------------------------- writing


def _encode_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Turn user attributes into HDF5-storable values; dict/list/tuple/None become JSON strings."""
    out, json_keys = {}, []
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)) or value is None:
            out[key] = json.dumps(value, sort_keys=True)
            json_keys.append(key)
        elif isinstance(value, (str, bool, int, float, np.generic, np.ndarray)):
            out[key] = value
        else:
            raise TypeError(f"attribute {key!r}: cannot store a value of type {type(value).__name__} in HDF5")
    return out, json_keys


def _chunks(a: np.ndarray) -> tuple[int, ...] | None:
    if _COMPRESSION is None or a.ndim == 0 or a.size == 0:
        return None
    per_episode = max(1, a[:1].nbytes)
    return (max(1, min(a.shape[0], _CHUNK_BYTES // per_episode)),) + a.shape[1:]


def write_dataset(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Validate ``arrays`` and write them atomically to an HDF5 file at ``path``.

    ``attrs`` must hold ``spec`` (EnvSpec, dict or JSON string); other
    attributes (quality, behaviour, seed, generator, source, ...) are stored
    as given, dicts/lists as JSON. The writer adds format_version, env,
    n_agents, episode_limit, n_episodes, n_transitions and return statistics.
    Masks are stored as uint8. Raises FileExistsError if ``path`` exists and
    ``overwrite`` is False; a failed write leaves no file behind.
    """
    path = Path(path)
    if "spec" not in attrs:
        raise ValueError("write_dataset: attrs must contain 'spec' (an EnvSpec or its dict)")
    spec = _coerce_spec(attrs["spec"], str(path))
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: refusing to overwrite an existing dataset (pass overwrite=True)")
    validate_arrays(arrays, spec, str(path))

    data = EpisodeData(dict(arrays), {}, str(path))
    returns, lengths = data.returns(), data.lengths()
    user = {k: v for k, v in attrs.items() if k not in WRITER_ATTRS and k != _JSON_ATTRS}
    stored, json_keys = _encode_attrs(user)
    stored.update(
        format_version=FORMAT_VERSION,
        spec=spec.to_json(),
        env=spec.env_id,
        n_agents=spec.n_agents,
        episode_limit=spec.episode_limit,
        n_episodes=int(returns.shape[0]),
        n_transitions=int(lengths.sum()),
        return_mean=float(returns.mean()),
        return_std=float(returns.std()),
        return_min=float(returns.min()),
        return_max=float(returns.max()),
    )
    if json_keys:
        stored[_JSON_ATTRS] = json.dumps(sorted(json_keys))

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in stored.items():
                f.attrs[key] = value
            for key, a in arrays.items():
                a = np.asarray(a)
                if key in MASK_KEYS and a.dtype == np.bool_:
                    a = a.astype(np.uint8)
                chunks = _chunks(a)
                f.create_dataset(key, data=a, chunks=chunks, compression=_COMPRESSION if chunks else None)
        os.chmod(tmp, default_file_mode())  # mkstemp made it 0600
        _publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temporary file onto ``path`` atomically."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails atomically if path appeared meanwhile
    except FileExistsError:
        raise FileExistsError(f"{path}: refusing to overwrite an existing dataset (pass overwrite=True)") from None
    except OSError:  # file system without hard links
        if path.exists():
            raise FileExistsError(f"{path}: refusing to overwrite an existing dataset (pass overwrite=True)") from None
        os.replace(tmp, path)


# ----------------------------------------------------------------------------- reading


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_dataset(path: str | os.PathLike, *, validate: bool = True) -> EpisodeData:
    """Read every array and attribute of a dataset file (validated unless ``validate=False``).

    Raises :class:`DatasetError` for a missing, empty, non-HDF5 or corrupt
    file, a wrong or missing ``format_version`` or ``spec``, and (with
    ``validate``) any violation of schema v1.
    """
    name = str(path)
    path = Path(path)
    if not path.exists():
        raise DatasetError(name, FILE_KEY, "file does not exist")
    if not path.is_file():
        raise DatasetError(name, FILE_KEY, "not a regular file")
    if path.stat().st_size == 0:
        raise DatasetError(name, FILE_KEY, "file is empty (0 bytes)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(name, FILE_KEY, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    with f:
        attrs, key = {}, FILE_KEY
        try:
            for key in f.attrs:
                attrs[key] = _plain(f.attrs[key])
            if "format_version" not in attrs:
                raise DatasetError(name, "format_version", f"missing attribute 'format_version' (expected {FORMAT_VERSION})")
            if type(attrs["format_version"]) is not int or attrs["format_version"] != FORMAT_VERSION:
                raise DatasetError(
                    name, "format_version", f"format_version is {attrs['format_version']!r}, this reader supports {FORMAT_VERSION}"
                )
            spec = _coerce_spec(attrs.get("spec"), name)
            for key in json.loads(attrs.pop(_JSON_ATTRS, "[]")):
                if key in attrs:
                    attrs[key] = json.loads(attrs[key])
            arrays = {}
            for key, item in f.items():
                if isinstance(item, h5py.Dataset):
                    a = item[()]
                    if key in MASK_KEYS and a.dtype == np.bool_:
                        a = a.astype(np.uint8)
                    arrays[key] = a
        except DatasetError:
            raise
        except json.JSONDecodeError as exc:
            raise DatasetError(name, key, f"attribute is not valid JSON: {exc}") from None
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise DatasetError(name, key, f"cannot be read (truncated or corrupt file?): {exc}") from None
    for key, expected in (("env", spec.env_id), ("n_agents", spec.n_agents), ("episode_limit", spec.episode_limit)):
        if key in attrs and not np.array_equal(attrs[key], expected):
            raise DatasetError(name, key, f"attribute is {attrs[key]!r} but spec says {expected!r}")
    if validate:
        validate_arrays(arrays, spec, name)
    return EpisodeData(arrays, attrs, name)


# ----------------------------------------------------------------------------- examples


def example_arrays(spec: EnvSpec | dict, n_episodes: int, seed: int = 0, lengths=None, *, optional: bool = False) -> dict[str, np.ndarray]:
    """Random but valid arrays of schema v1 for ``spec`` (for tests and examples).

    Episodes get random obs/state/rewards, random available actions (at least
    one per agent and step) and actions drawn among them. Without ``lengths``,
    episodes 0, 3, 6, ... run to the time limit without terminating, episodes
    1, 4, ... terminate at a random length and the others terminate or time
    out at random. With ``lengths`` (ints in
    [1, T]) episodes shorter than T terminate and full-length ones alternate
    between time limit (even index) and termination (odd index).
    ``optional=True`` adds agent_reward, won and (discrete) behaviour_probs.
    Values outside the filled prefix are 0.
    """
    spec = EnvSpec.from_dict(spec)
    rng = np.random.default_rng(seed)
    E, T, N, O, S, A = n_episodes, spec.episode_limit, spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions
    idx = np.arange(E)
    if lengths is None:
        L = rng.integers(1, T + 1, size=E)
        L[idx % 3 == 0] = T
        term = (L < T) | (rng.random(E) < 0.5)
        term[idx % 3 == 0] = False
        term[idx % 3 == 1] = True
    else:
        L = np.asarray(lengths, dtype=np.int64).reshape(E)
        if (L < 1).any() or (L > T).any():
            raise ValueError(f"example_arrays: lengths must lie in [1, {T}], got {L.tolist()}")
        term = (L < T) | (idx % 2 == 1)

    steps = np.arange(T)
    filled = steps[None, :] < L[:, None]  # [E, T]
    seen = np.arange(T + 1)[None, :] <= L[:, None]  # [E, T+1]: obs up to and including step L
    terminated = filled & (steps[None, :] == (L - 1)[:, None]) & term[:, None]

    out: dict[str, np.ndarray] = {
        "obs": (rng.standard_normal((E, T + 1, N, O)) * seen[:, :, None, None]).astype(np.float32),
        "state": (rng.standard_normal((E, T + 1, S)) * seen[:, :, None]).astype(np.float32),
        "reward": (rng.standard_normal((E, T)) * filled).astype(np.float32),
        "terminated": terminated.astype(np.uint8),
        "filled": filled.astype(np.uint8),
    }
    if spec.discrete:
        avail = rng.random((E, T + 1, N, A)) < 0.7
        avail |= rng.integers(0, A, size=(E, T + 1, N))[..., None] == np.arange(A)  # >= 1 available
        avail &= seen[:, :, None, None]
        # Uniform behaviour over the available actions.
        scores = rng.random((E, T, N, A)) * avail[:, :T]
        actions = np.where(filled[:, :, None], scores.argmax(-1), 0)
        out["actions"] = actions.astype(np.int64)
        out["avail_actions"] = avail.astype(np.uint8)
        if optional:
            counts = np.maximum(avail[:, :T].sum(-1, keepdims=True), 1)
            probs = avail[:, :T] / counts * filled[:, :, None, None]
            out["behaviour_probs"] = probs.astype(np.float32)
    else:
        actions = rng.uniform(spec.action_low, spec.action_high, size=(E, T, N, A))
        actions = np.clip(actions.astype(np.float32), np.float32(spec.action_low), np.float32(spec.action_high))
        out["actions"] = np.where(filled[:, :, None, None], actions, np.float32(0.0))
    if optional:
        out["agent_reward"] = (rng.standard_normal((E, T, N)) * filled[:, :, None]).astype(np.float32)
        out["won"] = (term & (rng.random(E) < 0.5)).astype(np.uint8)
    return out
