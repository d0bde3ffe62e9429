"""Train one (config, seed) through the same LightningCLI a user calls.

Reproductions call :func:`fit_config` so that a table cell is exactly
``lit-omarl fit --config <cell yaml>`` plus the profile's budget overrides.
An interrupted run resumes from ``<workdir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py

from lit_omarl.cli import build_cli
from lit_omarl.repro.inputs import config_path, record_config


def _flag(key: str, value: Any) -> str:
    if isinstance(value, (dict, list, bool)) or value is None:
        value = json.dumps(value)
    return f"--{key}={value}"


def fit_config(config: str, *, seed: int, workdir: Path, overrides: dict[str, Any] | None = None,
               progress_bar: bool = False) -> dict[str, float]:
    """Run ``fit`` for one config and seed; return the final evaluation metrics.

    ``seed`` sets ``seed_everything``, the model's ``seed`` and the data's ``seed``
    (the dataset itself, ``data.generate_seed``, stays the config's).

    ``overrides`` maps dotted LightningCLI keys (``trainer.max_steps``,
    ``model.init_args.cql_alpha``, ``data.episodes`` ...) to values.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    record_config(workdir, config)  # the runner reuses the run only while this content stays (repro/inputs.py)
    args = [
        "fit",
        "--config", str(config_path(config)),
        f"--seed_everything={seed}",
        # the run seed also seeds the model's own streams (evaluation episodes, sampled actions) and
        # the batch sampler, whose defaults (0) would otherwise be shared by every seed of a table
        f"--model.init_args.seed={seed}",
        f"--data.seed={seed}",
        f"--trainer.default_root_dir={workdir}",
        f"--trainer.enable_progress_bar={str(progress_bar).lower()}",
        "--trainer.logger.class_path=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.init_args.save_dir={workdir}",
        "--trainer.logger.init_args.name=tb",
        "--trainer.logger.init_args.version=0",
    ]
    args += [_flag(k, v) for k, v in (overrides or {}).items()]
    last = workdir / "tb" / "version_0" / "checkpoints" / "last.ckpt"
    if last.exists():
        args.append(f"--ckpt_path={last}")
    cli = build_cli(args, run=True)
    from lit_omarl.eval.callback import EvaluationCallback

    for cb in cli.trainer.callbacks:
        if isinstance(cb, EvaluationCallback) and cb.final_metrics is not None:
            metrics = dict(cb.final_metrics)
            # the behaviour's return (mean over the dataset) and ours relative to it (cfcql.md Fig. 2)
            # per-agent datasets (data.agent_paths): the mean over the agents' files
            files = getattr(cli.datamodule, "agent_paths", None) or [cli.datamodule.path]
            returns = []
            for file in files:
                with h5py.File(file, "r") as f:
                    returns.append(float(f.attrs["return_mean"]))
            behaviour = sum(returns) / len(returns)
            metrics["dataset_return_mean"] = behaviour
            if behaviour != 0:
                metrics["return_ratio"] = metrics["episode_return"] / behaviour
            return metrics
    raise RuntimeError(f"{config}: training finished without a final evaluation (final_eval_episodes must be > 0)")


#: Cell overrides read by the table's ``run_fn`` itself, not passed to the CLI:
#: ``config_algorithm`` (config directory of an ablation column) and ``recipe_quality``
#: (the generated dataset a SMAX table's display dataset stands for).
RUN_FN_OVERRIDES = ("config_algorithm", "recipe_quality")

# budget keys of a reproduction profile -> LightningCLI keys
BUDGET_KEYS = {
    "max_steps": "trainer.max_steps",
    "eval_every_steps": "model.init_args.eval_every_steps",
    "eval_episodes": "model.init_args.eval_episodes",
    "final_eval_episodes": "model.init_args.final_eval_episodes",
    "batch_size": "data.batch_size",
    "episodes": "data.episodes",
    # applied only to algorithms that have a behaviour model (others ignore it)
    "behaviour_pretrain_steps": "model.init_args.behaviour_pretrain_steps",
    "vae_lr": "model.init_args.vae_lr",
}
#: budget keys applied only to the models that take them (the others of the table ignore them)
OPTIONAL_BUDGET_KEYS = ("behaviour_pretrain_steps", "vae_lr")


def _model_accepts(config: str, arg: str) -> bool:
    """Whether the config's model class (or a parent it forwards **kwargs to) takes ``arg``."""
    import importlib
    import inspect

    import yaml

    class_path = yaml.safe_load(config_path(config).read_text())["model"]["class_path"]
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return any(arg in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in vars(c))


def cell_config(task: str, dataset: str, algorithm: str) -> str:
    """The shipped config of a table cell: ``configs/<algorithm>/<task>/<dataset>.yaml``."""
    return f"{algorithm.lower()}/{task}/{dataset}.yaml"


def cell_overrides(run, config: str, budget: Mapping[str, Any] | None = None) -> dict[str, Any]:  # noqa: ANN001
    """CLI overrides of one run: the profile's ``budget`` (default ``run.budget``) mapped by
    ``BUDGET_KEYS``, then the cell's overrides (model hyper-parameters unless dotted)."""
    overrides: dict[str, Any] = {}
    for key, value in (run.budget if budget is None else budget).items():
        if key not in BUDGET_KEYS:
            raise ValueError(f"{run.label}: unknown budget key {key!r} (known: {sorted(BUDGET_KEYS)})")
        if key in OPTIONAL_BUDGET_KEYS and not _model_accepts(config, key):
            continue
        overrides[BUDGET_KEYS[key]] = value
    for key, value in run.overrides.items():
        if key not in RUN_FN_OVERRIDES:
            overrides[key if "." in key else f"model.init_args.{key}"] = value
    return overrides


def config_algorithm(run) -> str:  # noqa: ANN001
    """The config directory of the run's column: the ``config_algorithm`` override or the column name."""
    return str(run.overrides.get("config_algorithm", run.algorithm)).lower()


def run_cell(run, workdir: Path) -> dict[str, float]:  # noqa: ANN001  (a lit_omarl.repro.RunSpec)
    """``run_fn`` of the reproduction runner: one table cell and seed through ``fit_config``.

    The profile's budget maps onto trainer/model/data keys (``BUDGET_KEYS``); the
    cell's overrides are model hyper-parameters (``cql_alpha``...) unless they
    already name a dotted CLI key (``data.batch_size``). The special override
    ``config_algorithm`` names the config directory of an ablation column
    (``"InSPO w/o entropy"`` -> ``{"config_algorithm": "inspo", "use_entropy": False}``).
    """
    config = cell_config(run.task, run.dataset, config_algorithm(run))
    return fit_config(config, seed=run.seed, workdir=workdir, overrides=cell_overrides(run, config))


#: Budget keys of the generated-data tables read by their prepare / run functions (which recipe file a
#: run trains on), never passed to the CLI: episodes per file, recipe seed, MABCQ's early-training source.
RECIPE_KEYS = ("recipe_episodes", "recipe_seed", "recipe_early")


def fit_recipe_cell(run, workdir: Path, data: Path | Sequence[Path], config: str,  # noqa: ANN001
                    extra_overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Train ``config`` (a RunSpec's cell overrides and budget, minus :data:`RECIPE_KEYS`) on a generated
    dataset: one file (``data.path``) or one file per agent (a list: ``data.agent_paths``);
    ``extra_overrides`` are further CLI keys (e.g. trainer callbacks)."""
    per_agent = not isinstance(data, (str, Path))
    files = [Path(p) for p in data] if per_agent else [Path(data)]
    if not files:
        raise FileNotFoundError(f"{run.label}: no per-agent dataset listed (see the prepare step's messages)")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{run.label}: dataset {path} does not exist (see the prepare step's messages)")
    budget = {k: v for k, v in run.budget.items() if k not in RECIPE_KEYS}
    overrides = cell_overrides(run, config, budget)
    source = {"data.agent_paths": [str(p) for p in files], "data.path": None} if per_agent else {"data.path": str(files[0])}
    overrides.update({**source, "data.env": None, "data.behaviour": None})
    overrides.update(extra_overrides or {})
    return fit_config(config, seed=run.seed, workdir=workdir, overrides=overrides)

