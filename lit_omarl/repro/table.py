"""Declaring a reproduction table once: its grid, budgets, the paper's numbers and how to run one cell.

A reproduction script (``reproductions/<paper>_<table>.py``) builds one
:class:`TableSpec` and hands it to :func:`main`::

    TABLE = TableSpec(
        name="inspo_table1", title="InSPO Table 1: XOR game", metric="episode_return",
        tasks=("matrix/xor",), datasets=("uniform",), algorithms=("BC", "InSPO"),
        profiles=(Profile("smoke", seeds=(0,), budget={"max_steps": 50}),
                  Profile("default", seeds=(0, 1, 2), budget={"max_steps": 2000}),
                  Profile("paper", seeds=(0, 1, 2, 3, 4), budget={"max_steps": 100_000})),
        paper=PaperNumbers.from_rows("inspo.md Table 1", ("BC", "InSPO"),
                                     {("matrix/xor", "uniform"): [(0.5, 0.1), (1.0, 0.0)]}),
        run_fn="lit_omarl.repro.tasks:run_offline",
        deviations=("Budget: 2000 gradient steps instead of 100k.",),
    )

    if __name__ == "__main__":
        raise SystemExit(main(TABLE))

``run_fn`` is ``"module:function"`` (imported again inside every worker
process, so it must be importable there); it receives ``(run: RunSpec,
workdir: Path)`` and returns the run's final scores ``{metric: float, ...}``.
The ``if __name__ == "__main__"`` guard is required: workers are started with
the 'spawn' method, which imports the script again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import itertools
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

PROFILE_NAMES = ("smoke", "default", "paper")
WILDCARD = "*"


class ReproError(RuntimeError):
    """A reproduction cannot start (bad option, missing optional dependency); shown without a traceback."""


class Cell(NamedTuple):
    """One cell of a results table: an algorithm trained on one dataset of one task."""

    task: str
    dataset: str
    algorithm: str


def _canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace, the input of run ids."""
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run settings must be plain JSON values (str, int, float, bool, list, dict): {exc}") from exc


def _slug(text: str) -> str:
    """A file-name-safe version of ``text`` ('smax/2s3z' -> 'smax-2s3z')."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run; its :attr:`run_id` names the run's folder.

    Attributes:
        table: name of the table the run belongs to.
        task, dataset, algorithm: the cell (algorithm is the table's display name).
        seed: the run's seed.
        profile: profile name ('smoke', 'default', 'paper').
        budget: the profile's per-run budget, e.g. ``{"max_steps": 2000, "eval_episodes": 32}``.
        overrides: per-cell configuration overrides declared by the table.
    """

    table: str
    task: str
    dataset: str
    algorithm: str
    seed: int
    profile: str
    budget: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cell(self) -> Cell:
        return Cell(self.task, self.dataset, self.algorithm)

    @property
    def label(self) -> str:
        """Human-readable name, e.g. 'smax/2s3z/medium/CFCQL/seed0'; what ``--only`` matches."""
        return f"{self.task}/{self.dataset}/{self.algorithm}/seed{self.seed}"

    @property
    def run_id(self) -> str:
        """Stable id: readable slug + the first 10 hex digits of the SHA-256 of :meth:`to_dict`.

        Any change of budget or overrides gives a new id, so a stored result
        always matches the settings that produced it.
        """
        digest = hashlib.sha256(_canonical_json(self.to_dict()).encode()).hexdigest()[:10]
        parts = (self.task, self.dataset, self.algorithm, f"seed{self.seed}", digest)
        return "__".join(_slug(part) for part in parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in every result file)."""
        return {
            "table": self.table,
            "task": self.task,
            "dataset": self.dataset,
            "algorithm": self.algorithm,
            "seed": int(self.seed),
            "profile": self.profile,
            "budget": dict(self.budget),
            "overrides": dict(self.overrides),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        return cls(
            table=str(data["table"]),
            task=str(data["task"]),
            dataset=str(data["dataset"]),
            algorithm=str(data["algorithm"]),
            seed=int(data["seed"]),
            profile=str(data["profile"]),
            budget=dict(data.get("budget") or {}),
            overrides=dict(data.get("overrides") or {}),
        )

    def __hash__(self) -> int:  # the dict fields are not hashable; the id is
        return hash(self.run_id)


@dataclass(frozen=True)
class RunResult:
    """A finished run as read back from its ``result.json``."""

    run: RunSpec
    scores: Mapping[str, float]
    wall_time_s: float
    version: str = "unknown"


@dataclass(frozen=True)
class Profile:
    """A scale at which the whole table is run.

    Attributes:
        name: 'smoke' (seconds, for CI), 'default' (a workstation CPU) or 'paper' (the paper's budget).
        seeds: the seeds run for every cell.
        budget: free-form per-run budget handed to ``run_fn`` as ``run.budget``;
            name units in keys (``max_steps``, ``eval_episodes``).
        num_gpus: GPUs (may be fractional, e.g. 0.25) each run requests under ``--engine ray``.
        description: one line shown in the table header.
        cells: glob patterns over 'task/dataset/algorithm'; when given, the profile runs only
            the matching cells (e.g. a smoke profile that proves the pipeline on one row).
    """

    name: str
    seeds: Sequence[int]
    budget: Mapping[str, Any] = field(default_factory=dict)
    num_gpus: float = 0.0
    description: str = ""
    cells: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "cells", tuple(str(c) for c in self.cells))
        object.__setattr__(self, "budget", dict(self.budget))
        if not self.seeds:
            raise ValueError(f"Profile {self.name!r} needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Profile {self.name!r} repeats a seed: {self.seeds}")
        if self.num_gpus < 0:
            raise ValueError(f"Profile {self.name!r}: num_gpus must be >= 0, got {self.num_gpus}")
        _canonical_json(self.budget)


PaperValue = tuple[float, float | None]


def _paper_value(value: Any) -> PaperValue | None:
    """Normalise ``None``, ``mean`` or ``(mean, std)`` / ``(mean, None)`` to ``(mean, std | None)``."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (float(value), None)
    mean, std = value
    return (float(mean), None if std is None else float(std))


@dataclass(frozen=True)
class PaperNumbers:
    """The published numbers of a table.

    Attributes:
        source: where they come from, e.g. 'inspo.md Table 1'.
        values: ``{(task, dataset, algorithm): (mean, std) | (mean, None) | None}``;
            a missing key or ``None`` means the paper reports no number.
    """

    source: str = ""
    values: Mapping[tuple[str, str, str], PaperValue | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        normalised = {Cell(*key): _paper_value(value) for key, value in self.values.items()}
        object.__setattr__(self, "values", normalised)

    @classmethod
    def from_rows(
        cls,
        source: str,
        algorithms: Sequence[str],
        rows: Mapping[tuple[str, str], Sequence[Any]],
    ) -> PaperNumbers:
        """Build from the table's own layout: one list per (task, dataset) row, in ``algorithms`` order."""
        values: dict[tuple[str, str, str], Any] = {}
        for (task, dataset), row in rows.items():
            if len(row) != len(algorithms):
                raise ValueError(
                    f"paper row {task}/{dataset} has {len(row)} entries for {len(algorithms)} algorithms"
                )
            for algorithm, value in zip(algorithms, row):
                values[(task, dataset, algorithm)] = value
        return cls(source=source, values=values)

    def get(self, cell: tuple[str, str, str]) -> PaperValue | None:
        return self.values.get(Cell(*cell))


@dataclass(frozen=True)
class TableSpec:
    """A published table declared once: grid, metric, budgets, paper numbers, deviations.

    Attributes:
        name: file stem of the outputs, e.g. 'inspo_table1'.
        title: heading of the rendered table.
        metric: key of the score ``run_fn`` returns that the table reports, e.g. 'episode_return'.
        tasks, datasets, algorithms: the grid (algorithms are display names).
        profiles: at least 'smoke', 'default' and 'paper' (a mapping by name or a sequence).
        run_fn: ``"module:function"``, called as ``fn(run: RunSpec, workdir: Path) -> dict[str, float]``.
        paper: the published numbers.
        higher_is_better: direction of ``metric``.
        deviations: every difference from the paper's setting (simulator, data, budget), shown in the header.
        prepare_fn: optional ``"module:function"`` called once before the runs as
            ``fn(runs: list[RunSpec], runs_dir: Path)`` (e.g. to generate datasets).
        overrides: ``{(task, dataset, algorithm): {key: value}}``; any element
            may be ``"*"``; matching entries are merged, more specific ones last.
        rows: optional subset of (task, dataset) rows (default: every task x dataset).
        decimals: digits after the point in the rendered table.
    """

    name: str
    title: str
    metric: str
    tasks: Sequence[str]
    datasets: Sequence[str]
    algorithms: Sequence[str]
    profiles: Mapping[str, Profile] | Sequence[Profile]
    run_fn: str
    paper: PaperNumbers = field(default_factory=PaperNumbers)
    higher_is_better: bool = True
    deviations: Sequence[str] = ()
    prepare_fn: str | None = None
    overrides: Mapping[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)
    rows: Sequence[tuple[str, str]] | None = None
    decimals: int = 2

    def __post_init__(self) -> None:
        for name in ("tasks", "datasets", "algorithms", "deviations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        profiles = self.profiles
        if not isinstance(profiles, Mapping):
            profiles = {profile.name: profile for profile in profiles}
        object.__setattr__(self, "profiles", dict(profiles))
        if self.rows is not None:
            object.__setattr__(self, "rows", tuple((str(t), str(d)) for t, d in self.rows))
        object.__setattr__(self, "overrides", {Cell(*key): dict(value) for key, value in self.overrides.items()})
        self._validate()

    def _validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"TableSpec.name must be a file stem like 'inspo_table1', got {self.name!r}")
        for name in ("tasks", "datasets", "algorithms"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"TableSpec {self.name}: {name} must be non-empty and unique, got {values}")
        missing = [name for name in PROFILE_NAMES if name not in self.profiles]
        if missing:
            raise ValueError(f"TableSpec {self.name}: missing profiles {missing}")
        for key, profile in self.profiles.items():
            if key != profile.name:
                raise ValueError(f"TableSpec {self.name}: profile stored as {key!r} is named {profile.name!r}")
        for path in (self.run_fn, self.prepare_fn):
            if path is not None and not re.fullmatch(r"[\w.]+:[\w.]+", path):
                raise ValueError(f"TableSpec {self.name}: {path!r} is not a 'module:function' path")
        rows = set(self.row_keys())
        for task, dataset in rows:
            if task not in self.tasks or dataset not in self.datasets:
                raise ValueError(f"TableSpec {self.name}: row {task}/{dataset} is not in tasks x datasets")
        for cell in self.paper.values:
            if (cell.task, cell.dataset) not in rows or cell.algorithm not in self.algorithms:
                raise ValueError(f"TableSpec {self.name}: paper number for unknown cell {tuple(cell)}")
        for cell in self.overrides:
            for part, allowed in zip(cell, (self.tasks, self.datasets, self.algorithms)):
                if part != WILDCARD and part not in allowed:
                    raise ValueError(f"TableSpec {self.name}: override key {tuple(cell)} names unknown {part!r}")

    def row_keys(self) -> tuple[tuple[str, str], ...]:
        """The (task, dataset) rows of the table, in display order."""
        if self.rows is not None:
            return tuple(self.rows)
        return tuple(itertools.product(self.tasks, self.datasets))

    def cells(self) -> list[Cell]:
        """Every (task, dataset, algorithm) cell, row by row."""
        return [Cell(task, dataset, algo) for task, dataset in self.row_keys() for algo in self.algorithms]

    def overrides_for(self, cell: Cell) -> dict[str, Any]:
        """Merge every override entry matching ``cell``; entries with fewer wildcards win."""
        matching = [
            (sum(part == WILDCARD for part in key), key)
            for key in self.overrides
            if all(part in (WILDCARD, value) for part, value in zip(key, cell))
        ]
        merged: dict[str, Any] = {}
        for _, key in sorted(matching, key=lambda item: -item[0]):
            merged.update(self.overrides[key])
        return merged


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the function."""
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} of {path!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ImportError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})")
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path!r} is not callable")
    return target


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def _positive_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("--workers must be >= 0")
    return value


def build_parser(table: TableSpec) -> argparse.ArgumentParser:
    """The command line of every reproduction script."""
    parser = argparse.ArgumentParser(
        description=f"Reproduce {table.title}: run every task x dataset x algorithm x seed "
        f"(skipping finished runs) and write results/{table.name}.md and .csv.",
    )
    parser.add_argument("--profile", choices=sorted(table.profiles), default="default",
                        help="scale of the reproduction (default: %(default)s)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local process pool or a Ray cluster (default: %(default)s)")
    parser.add_argument("--workers", type=_positive_or_zero, default=os.cpu_count() or 1,
                        help="parallel local runs (default: number of CPUs, %(default)s); "
                        "0 runs everything in this process (for debugging)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory of the rendered tables (default: ./results)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help=f"directory of per-run results (default: ./runs/{table.name}/<profile>)")
    parser.add_argument("--only", default=None, metavar="PATTERN",
                        help="run only runs whose label 'task/dataset/algorithm/seedN' or run id "
                        "matches this glob (a plain word matches as a substring)")
    parser.add_argument("--seeds", type=_seed_list, default=None,
                        help="comma-separated seeds replacing the profile's, e.g. 0,1")
    parser.add_argument("--render-only", action="store_true",
                        help="do not run anything; render the tables from finished runs")
    return parser


def command_line(argv: Sequence[str]) -> str:
    """The shell command that reproduces this invocation, e.g. 'python reproductions/x.py --profile smoke'."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("<script>")
    try:
        script = script.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join(["python", str(script), *argv])


def main(table: TableSpec, argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of a reproduction script; returns the process exit code.

    0 when every selected run finished, 1 when a run failed, 2 on a usage
    error (e.g. ``--engine ray`` without Ray installed), 130 when interrupted.
    """
    from lit_omarl.repro.runner import reproduce  # runner imports this module

    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(table).parse_args(args_list)
    try:
        report = reproduce(
            table,
            args.profile,
            engine=args.engine,
            workers=args.workers,
            out_dir=args.out,
            runs_dir=args.runs_dir,
            only=args.only,
            seeds=args.seeds,
            render_only=args.render_only,
            command=command_line(args_list),
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; run the same command again to resume.", file=sys.stderr)
        return 130
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return report.exit_code

