"""LightningDataModule over one dataset file, with batches cut from resident tensors.

The whole dataset is loaded once into torch tensors that stay on the training
device; a batch is a handful of index operations on them (no per-step Python
collation, no worker processes). Two sampling modes share one batch format
(see docs/CONTRACTS.md):

* ``episode``: whole episodes from t=0 for recurrent agents; the batch is cut
  to the longest valid episode in it (padding beyond is skipped).
* ``transition``: single steps as windows [t, t+1] (L = 1) for feed-forward agents.

The dataset either exists at ``path`` or is generated there (or in the cache)
from ``env`` + ``behaviour`` + ``episodes`` + ``generate_seed``; a file that
exists but was generated with other settings is never overwritten.

With ``agent_paths`` every agent has its own dataset (MABCQ's decentralised
setting, mabcq.md Sec. 4.1): agent i's columns of a batch are transitions of
file i, drawn independently of the other files (docs/CONTRACTS.md, "Per-agent
datasets").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import h5py
import lightning as L
import numpy as np
import torch

from lit_omarl.spec import EnvSpec

# Dataset keys the batches are made of (others, e.g. agent_reward or won, are not loaded).
_USED_KEYS = ("obs", "state", "actions", "avail_actions", "reward", "terminated", "filled", "behaviour_probs")


def default_cache_dir() -> Path:
    """Where generated datasets are cached: $LIT_OMARL_CACHE or ~/.cache/lit_omarl/datasets."""
    return Path(os.environ.get("LIT_OMARL_CACHE", Path.home() / ".cache" / "lit_omarl" / "datasets")).expanduser()


def read_spec(path: str | Path) -> EnvSpec:
    """Read the EnvSpec of a dataset file from its attributes (cheap: no arrays)."""
    from lit_omarl.data.schema import DatasetError, _coerce_spec

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("spec")
    except FileNotFoundError:
        raise DatasetError(str(path), "<file>", "file does not exist") from None
    except OSError as err:
        raise DatasetError(str(path), "<file>", f"not a readable HDF5 file ({err})") from None
    if raw is None:
        raise DatasetError(str(path), "spec", "attribute missing: not a lit_omarl dataset (import it with `lit-omarl data import`)")
    return _coerce_spec(raw, str(path))


def generated_path(env: str, behaviour: str, episodes: int, seed: int, env_options: dict | None, cache_dir: Path) -> Path:
    """Cache location of a generated dataset: readable name + hash of every setting."""
    key = json.dumps({"env": env, "behaviour": behaviour, "episodes": episodes, "seed": seed, "env_options": env_options or {}}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{env}_{behaviour}_{episodes}ep_s{seed}")
    return cache_dir / f"{slug}_{digest}.h5"


class OfflineDataModule(L.LightningDataModule):
    """Offline multi-agent dataset served as episode or transition batches.

    Args:
        path: HDF5 dataset file (schema v1). If it does not exist and ``env`` /
            ``behaviour`` are given, the dataset is generated there. If None,
            generated datasets go to ``cache_dir``.
        batch_size: episodes (episode sampling) or transitions (transition sampling) per batch.
        sampling: ``episode`` (recurrent agents) or ``transition`` (feed-forward agents).
        max_episodes: use only the first episodes of the file (CFCQL uses the first 5000);
            only those are read from disk and validated.
        seed: seed of the batch sampler (its state is saved in checkpoints).
        env: env id to generate from, e.g. ``matrix/xor`` (only with ``behaviour``).
        env_options: options of the env (e.g. ``{"n": 5}`` for equal_line).
        behaviour: behaviour specification of ``lit_omarl.data.generate`` (e.g. ``xor-b``).
        episodes: number of episodes to generate.
        generate_seed: seed of the generation.
        cache_dir: where generated datasets live when ``path`` is None.
        updates_per_step: batches handed to one Lightning training step (a :class:`BatchGroup`);
            the module makes one update per batch, so ``trainer.global_step`` still counts
            updates. Lightning has a fixed cost per training step (tenths of a ms on a CPU); groups of K spread
            that over K updates (for small models whose updates take a few ms).
            ``trainer.max_steps`` is honoured exactly; ``checkpoint.every_n_train_steps``
            must be a multiple of K.
        agent_paths: one dataset file per agent instead of ``path`` (exclusive with ``path`` and
            ``env`` / ``behaviour``): N files of the same env (equal EnvSpecs, N = its
            n_agents); agent i's obs / actions / avail_actions and reward / terminated
            column i come from file i. Transition sampling only; ``max_episodes`` applies
            to each file. Only modules with ``accepts_agent_datasets = True`` (the
            decentralised per-agent learners) can be fitted on it. ``path`` then names
            the first file (the one the spec is read from).
    """

    def __init__(
        self,
        path: str | None = None,
        batch_size: int = 32,
        sampling: Literal["episode", "transition"] = "episode",
        max_episodes: int | None = None,
        seed: int = 0,
        env: str | None = None,
        env_options: dict[str, Any] | None = None,
        behaviour: str | None = None,
        episodes: int = 1000,
        generate_seed: int = 0,
        cache_dir: str | None = None,
        updates_per_step: int = 1,
        agent_paths: list[str] | None = None,
    ) -> None:
        super().__init__()
        if updates_per_step < 1:
            raise ValueError(f"data.updates_per_step must be >= 1, got {updates_per_step}")
        self.updates_per_step = int(updates_per_step)
        if sampling not in ("episode", "transition"):
            raise ValueError(f"data.sampling must be 'episode' or 'transition', got {sampling!r}")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.agent_paths: list[Path] | None = None
        self._agent_data: list[OfflineDataModule] | None = None
        if agent_paths is not None:
            self._init_agent_datasets(agent_paths, path, env, behaviour, batch_size, sampling, max_episodes, seed)
            return
        if (env is None) != (behaviour is None):
            raise ValueError("data.env and data.behaviour must be given together (to generate a dataset)")
        if path is None and env is None:
            raise ValueError("data.path is required (or data.env + data.behaviour to generate a dataset)")
        self.batch_size = batch_size
        self.sampling = sampling
        self.max_episodes = max_episodes
        self.seed = seed
        self._generate = None if env is None else dict(env_id=env, behaviour=behaviour, episodes=episodes, seed=generate_seed, env_options=env_options or {})
        if path is None:
            path = str(generated_path(env, behaviour, episodes, generate_seed, env_options, Path(cache_dir) if cache_dir else default_cache_dir()))
        self.path = Path(path).expanduser()
        if self.path.exists():
            self._check_generated_match()
            self._spec = read_spec(self.path)
        elif self._generate is not None:
            from lit_omarl.envs import make

            self._spec = make(env, num_envs=1, seed=0, **(env_options or {})).spec
        else:
            from lit_omarl.data.schema import DatasetError

            raise DatasetError(str(self.path), "<file>", "file does not exist (give data.env and data.behaviour to generate it)")
        self.generator = torch.Generator().manual_seed(seed)
        self._tensors: dict[str, torch.Tensor] | None = None

    def _init_agent_datasets(self, agent_paths: list[str], path: str | None, env: str | None, behaviour: str | None,
                             batch_size: int, sampling: str, max_episodes: int | None, seed: int) -> None:
        """``agent_paths``: one single-file data module per agent (file i serves agent i), one shared sampler."""
        from lit_omarl.data.schema import DatasetError

        if path is not None or env is not None or behaviour is not None:
            raise ValueError("data.agent_paths (one dataset per agent) excludes data.path and data.env / data.behaviour "
                             "(one joint dataset): give only one of them")
        if sampling != "transition":
            raise ValueError(f"data.agent_paths supports only data.sampling='transition' (each agent's transitions are "
                             f"drawn from its own file; episodes of different files do not line up), got {sampling!r}")
        if isinstance(agent_paths, (str, os.PathLike)) or len(agent_paths) == 0:
            raise ValueError(f"data.agent_paths must be a non-empty list of dataset files (one per agent), got {agent_paths!r}")
        paths = [Path(p).expanduser() for p in agent_paths]
        specs = [read_spec(p) for p in paths]  # DatasetError for a missing or foreign file
        first = specs[0]
        for p, spec in zip(paths[1:], specs[1:]):
            if spec != first:
                a, b = first.to_dict(), spec.to_dict()
                diff = ", ".join(f"{k}: {b.get(k)!r} (first file: {a.get(k)!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
                raise DatasetError(str(p), "spec", f"differs from the spec of {paths[0]} (data.agent_paths must all "
                                   f"be datasets of the same env): {diff}")
        if len(paths) != first.n_agents:
            raise ValueError(f"data.agent_paths lists {len(paths)} files but {paths[0]} is a dataset of "
                             f"{first.n_agents} agents ({first.env_id}): give exactly one file per agent")
        self.batch_size = batch_size
        self.sampling = sampling
        self.max_episodes = max_episodes
        self.seed = seed
        self._generate = None
        self.path = paths[0]
        self.agent_paths = paths
        self._spec = first
        # File i's own sampler is unused: one generator draws the agents' batches in turn (agent 0 first), so the
        # sampler position is a single state (state_dict, ExactResume).
        self._agent_data = [OfflineDataModule(str(p), batch_size=batch_size, sampling="transition",
                                              max_episodes=max_episodes, seed=seed) for p in paths]
        self.generator = torch.Generator().manual_seed(seed)
        self._tensors = None

    # ---- spec, linked into the model by LightningCLI -----------------------
    @property
    def spec(self) -> dict[str, Any]:
        """The dataset's EnvSpec as a plain dict (what ``model.spec`` receives)."""
        return self._spec.to_dict()

    @property
    def env_spec(self) -> EnvSpec:
        return self._spec

    # ---- data preparation --------------------------------------------------
    def _check_generated_match(self) -> None:
        """An existing file at a generation target must come from the same settings."""
        if self._generate is None:
            return
        with h5py.File(self.path, "r") as f:
            attrs = {k: f.attrs[k] for k in ("env", "behaviour", "seed", "n_episodes") if k in f.attrs}
        want = {"env": self._generate["env_id"], "behaviour": self._generate["behaviour"], "seed": self._generate["seed"], "n_episodes": self._generate["episodes"]}
        diff = {k: (attrs.get(k), v) for k, v in want.items() if k in attrs and str(attrs[k]) != str(v)}
        if diff:
            detail = ", ".join(f"{k}: file has {a!r}, config asks {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"{self.path}: exists but was not generated with these settings ({detail}); it is not overwritten. Choose another data.path.")

    def prepare_data(self) -> None:
        if self.path.exists() or self._generate is None:
            return
        from lit_omarl.data.generate import generate_dataset

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            generate_dataset(out=str(self.path), **self._generate)
        except FileExistsError:
            pass  # a concurrent run generated the same (deterministic) file first
        self._check_generated_match()

    def setup(self, stage: str | None = None) -> None:
        if self._agent_data is not None:
            self._check_module_accepts_agent_datasets()
        if self._loaded():
            return
        self.prepare_data()  # harmless when already there; makes setup() enough outside a Trainer
        device = torch.device("cpu")
        if self.trainer is not None:
            device = self.trainer.strategy.root_device
        self.load(device)

    def _loaded(self) -> bool:
        if self._agent_data is not None:
            return all(d._tensors is not None for d in self._agent_data)
        return self._tensors is not None

    def _check_module_accepts_agent_datasets(self) -> None:
        """Per-agent datasets only suit learners that train each agent on its own data (``accepts_agent_datasets``)."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        if module is None or getattr(module, "accepts_agent_datasets", False):
            return
        raise ValueError(f"data.agent_paths gives each agent its own dataset (MABCQ's decentralised setting); "
                         f"{type(module).__name__} learns from joint transitions and cannot use it "
                         f"(only modules with accepts_agent_datasets = True can)")

    def load(self, device: torch.device | str = "cpu") -> None:
        """Load the file once into resident tensors on ``device``."""
        if self._agent_data is not None:
            for data in self._agent_data:
                data.load(device)
            return
        arrays, spec = self._read_arrays()
        if spec != self._spec:
            raise ValueError(f"{self.path}: spec changed since the data module was built")
        e = arrays["reward"].shape[0] if self.max_episodes is None else min(self.max_episodes, arrays["reward"].shape[0])
        t = {}
        t["obs"] = torch.from_numpy(np.ascontiguousarray(arrays["obs"][:e]))
        t["state"] = torch.from_numpy(np.ascontiguousarray(arrays["state"][:e]))
        t["actions"] = torch.from_numpy(np.ascontiguousarray(arrays["actions"][:e]))
        if spec.discrete:
            t["avail_actions"] = torch.from_numpy(arrays["avail_actions"][:e].astype(bool))
        t["reward"] = torch.from_numpy(arrays["reward"][:e].astype(np.float32))
        t["terminated"] = torch.from_numpy(arrays["terminated"][:e].astype(np.float32))
        t["mask"] = torch.from_numpy(arrays["filled"][:e].astype(np.float32))
        if "behaviour_probs" in arrays:
            t["behaviour_probs"] = torch.from_numpy(arrays["behaviour_probs"][:e].astype(np.float32))
        self._tensors = {k: v.to(device) for k, v in t.items()}
        lengths = t["mask"].sum(1).long()
        self.lengths = lengths.to(device)
        # valid (episode, step) pairs for transition sampling
        valid = t["mask"].bool().nonzero()
        self._valid_e = valid[:, 0].to(device)
        self._valid_t = valid[:, 1].to(device)
        self.n_episodes = e
        self.n_transitions = int(valid.shape[0])

    def _read_arrays(self) -> tuple[dict[str, np.ndarray], EnvSpec]:
        """The arrays training uses. With ``max_episodes`` below the file's count only that
        prefix of the used keys is read (and validated), so a subset of a large file never
        occupies the memory of the whole file."""
        from lit_omarl.data.schema import FORMAT_VERSION, read_dataset, validate_arrays

        if self.max_episodes is not None:
            with h5py.File(self.path, "r") as f:
                version = f.attrs.get("format_version")
                total = f["reward"].shape[0] if "reward" in f else None
                if version == FORMAT_VERSION and total is not None and self.max_episodes < total:
                    keys = [k for k in _USED_KEYS if k in f]
                    arrays = {k: f[k][: self.max_episodes] for k in keys}
                    spec = read_spec(self.path)
                    validate_arrays(arrays, spec, str(self.path))
                    return arrays, spec
        data = read_dataset(self.path)  # the whole file, validated (raises the schema's errors)
        return data.arrays, data.spec

    def input_statistics(self) -> dict[str, torch.Tensor]:
        """Mean and std + 1e-3 of the observations ([N, O], per agent and feature) and of the state ([S])
        over the valid steps of the data used for training (``normalize_inputs`` of the continuous modules;
        with ``agent_paths`` agent i's observations come from file i and the state from file 0)."""
        if not self._loaded():
            self.setup()
        if self._agent_data is not None:
            parts = [data.input_statistics() for data in self._agent_data]
            out = {key: torch.stack([p[key][i] for i, p in enumerate(parts)]) for key in ("obs_mean", "obs_std")}
            out.update({key: parts[0][key] for key in ("state_mean", "state_std")})
            return out
        t = self._tensors
        assert t is not None
        valid = t["mask"].bool()
        out = {}
        for key, values in (("obs", t["obs"][:, : valid.shape[1]][valid]), ("state", t["state"][:, : valid.shape[1]][valid])):
            x = values.double()
            out[f"{key}_mean"] = x.mean(0).float()
            out[f"{key}_std"] = (x.std(0, unbiased=False) + 1e-3).float()
        return out

    # ---- sampling ----------------------------------------------------------
    def sample(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """One batch in the CONTRACTS.md format, on the training device."""
        if not self._loaded():
            self.setup()
        b = batch_size or self.batch_size
        if self._agent_data is not None:
            return self._compose([data._draw_transitions(b, self.generator) for data in self._agent_data])
        if self.sampling == "episode":
            idx = torch.randint(self.n_episodes, (b,), generator=self.generator).to(self.lengths.device)
            length = int(self.lengths[idx].max())
            batch = self._cut(idx, None, length)
            batch["episode"] = idx  # dataset index of each episode: lets a frozen model cache per-episode values
            return batch
        return self._draw_transitions(b, self.generator)

    def _draw_transitions(self, b: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``b`` transition windows drawn uniformly over the valid steps with ``generator``."""
        k = torch.randint(self.n_transitions, (b,), generator=generator).to(self._valid_e.device)
        return self._cut(self._valid_e[k], self._valid_t[k], 1)

    def _compose(self, parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One batch from per-agent samples: agent i's columns from ``parts[i]`` (file i), reward and
        terminated per agent [B, L, N], the step valid only where every file's is, state of file 0."""
        batch = {key: torch.stack([p[key][:, :, i] for i, p in enumerate(parts)], dim=2)
                 for key in ("obs", "actions", "avail_actions")}
        if all("behaviour_probs" in p for p in parts):
            batch["behaviour_probs"] = torch.stack([p["behaviour_probs"][:, :, i] for i, p in enumerate(parts)], dim=2)
        batch["state"] = parts[0]["state"]  # meaningless for per-agent data: only for decentralised learners' shapes
        batch["reward"] = torch.stack([p["reward"] for p in parts], dim=-1)
        batch["terminated"] = torch.stack([p["terminated"] for p in parts], dim=-1)
        batch["mask"] = torch.stack([p["mask"] for p in parts], dim=0).amin(0)
        return batch

    def _cut(self, idx: torch.Tensor, start: torch.Tensor | None, length: int) -> dict[str, torch.Tensor]:
        t = self._tensors
        assert t is not None
        if start is None:
            steps = slice(0, length)
            steps_p1 = slice(0, length + 1)
            batch = {k: v[idx, steps_p1] if k in ("obs", "state", "avail_actions") else v[idx, steps] for k, v in t.items()}
        else:
            offs = torch.arange(length + 1, device=idx.device)
            rows = idx[:, None]
            cols = start[:, None] + offs
            batch = {
                k: v[rows, cols] if k in ("obs", "state", "avail_actions") else v[rows, cols[:, :length]]
                for k, v in t.items()
            }
        if "avail_actions" not in batch:  # continuous: all actions "available"
            obs = batch["obs"]
            batch["avail_actions"] = torch.ones(*obs.shape[:3], self._spec.n_actions, dtype=torch.bool, device=obs.device)
        return batch

    def train_dataloader(self) -> Iterator[dict[str, torch.Tensor]]:
        return _Batches(self)

    # ---- checkpointed sampler position ------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator_state": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "generator_state" in state_dict:
            self.generator.set_state(state_dict["generator_state"])


class BatchGroup(tuple):
    """Batches for consecutive updates within one Lightning training step (``data.updates_per_step``)."""


class _Batches:
    """An endless iterable of batches (training length is set by trainer.max_steps)."""

    def __init__(self, dm: OfflineDataModule) -> None:
        self.dm = dm

    def __iter__(self) -> Iterator[dict[str, torch.Tensor] | BatchGroup]:
        k = self.dm.updates_per_step
        while True:
            yield self.dm.sample() if k == 1 else BatchGroup(self.dm.sample() for _ in range(k))
