"""Learning curves of reproduction runs: read from TensorBoard, stored as scores, plotted from the CSV.

The runner keeps one ``result.json`` of scalar scores per run and the CSV has
one line per run. A figure that shows curves (e.g. cfcql.md Fig. 1: Q
estimates and returns over training) therefore stores each curve as a fixed
grid of scores, ``<curve>_step_<k>``, read from the run's TensorBoard events
after training; the plot is drawn from the CSV, so the committed CSV alone
regenerates the PNG.

:func:`run_cell_with_curves` is a ``run_fn`` for :class:`~lit_omarl.repro.TableSpec`:
:func:`lit_omarl.repro.train.run_cell` plus the curves and summaries of
``train/q_taken_mean`` (the mixed Q of the dataset's joint actions).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CURVE_POINTS = 20  # grid points per curve
LOG_POINTS = 200  # training-log points per run (sets trainer.log_every_n_steps)
Q_TAG = "train/q_taken_mean"
_STEP_KEY = re.compile(r"^(?P<curve>.+)_step_(?P<step>\d+)$")


def read_scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every event of ``tag`` under ``logdir`` (empty when the tag was never logged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = Path(logdir)
    if not logdir.is_dir():
        raise FileNotFoundError(f"{logdir}: no TensorBoard log folder (did the run log with TensorBoardLogger?)")
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return []
    return [(int(e.step), float(e.value)) for e in events.Scalars(tag)]


def eval_history(logdir: Path) -> list[dict[str, float]]:
    """The periodic evaluations of a run (``final_eval.json`` written by the evaluation callback); [] if none."""
    import json

    path = Path(logdir) / "final_eval.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("history", []))


def grid(max_steps: int, points: int = CURVE_POINTS) -> list[int]:
    """``points`` evenly spaced steps ending at ``max_steps`` (fewer when max_steps < points)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return sorted({max(1, round(k * max_steps / points)) for k in range(1, points + 1)})


def curve_on_grid(points: Sequence[tuple[int, float]], steps: Sequence[int]) -> dict[int, float]:
    """Mean of the logged values in each grid window (previous grid step, step]; windows without a value are left out.

    A value logged at step s (Lightning's 0-based ``global_step`` of the update) counts as step s + 1
    (the number of updates done), so a run of 100 updates logging at 49 and 99 fills the window ending at 100.
    """
    out: dict[int, float] = {}
    previous = 0
    for step in steps:
        window = [v for s, v in points if previous < s + 1 <= step and math.isfinite(v)]
        if window:
            out[step] = sum(window) / len(window)
        previous = step
    return out


def q_summaries(points: Sequence[tuple[int, float]], q_true: float | None = None) -> dict[str, float]:
    """``q_final`` (mean of the last 10% of the logged values), ``q_peak`` (max), and with ``q_true``
    ``q_rel_error`` = |q_final - q_true| / |q_true|."""
    values = [v for _, v in sorted(points) if math.isfinite(v)]
    if not values:
        return {}
    tail = values[-max(1, len(values) // 10):]
    out = {"q_final": sum(tail) / len(tail), "q_peak": max(values)}
    if q_true is not None and q_true != 0:
        out["q_rel_error"] = abs(out["q_final"] - q_true) / abs(q_true)
    return out


def run_cell_with_curves(run: Any, workdir: Path) -> dict[str, float]:
    """``run_fn``: :func:`lit_omarl.repro.train.run_cell`, then the Q and return curves as scores.

    Budget keys besides those of ``run_cell``: ``q_true`` (the true value of the
    dataset's joint actions; gives ``q_rel_error``). Adds
    ``trainer.log_every_n_steps`` so that every run logs about ``LOG_POINTS`` points,
    (the run's seed also seeds the model's streams and the batch sampler: see
    :func:`lit_omarl.repro.train.fit_config`).
    """
    from lit_omarl.repro.train import run_cell

    budget = dict(run.budget)
    q_true = budget.pop("q_true", None)
    max_steps = int(budget.get("max_steps", 0))
    if max_steps < 1:
        raise ValueError(f"{run.label}: the budget needs max_steps >= 1 to draw curves, got {budget.get('max_steps')}")
    overrides = {
        "trainer.log_every_n_steps": max(1, max_steps // LOG_POINTS),
        **dict(run.overrides),
    }
    try:
        scores = dict(run_cell(dataclasses.replace(run, budget=budget, overrides=overrides), workdir))
    except SystemExit as exc:  # LightningCLI exits on a bad config: record a failed run, do not kill the worker
        raise RuntimeError(f"{run.label}: LightningCLI exited with status {exc.code} (bad configuration?)") from None
    logdir = Path(workdir) / "tb" / "version_0"
    q_points = read_scalars(logdir, Q_TAG)
    steps = grid(max_steps)
    scores.update({f"q_step_{s}": v for s, v in curve_on_grid(q_points, steps).items()})
    scores.update(q_summaries(q_points, None if q_true is None else float(q_true)))
    returns = {int(h["step"]): float(h["episode_return"]) for h in eval_history(logdir)}
    returns[max_steps] = float(scores["episode_return"])  # the final evaluation (more episodes) wins
    scores.update({f"return_step_{s}": v for s, v in sorted(returns.items()) if 0 < s <= max_steps})
    return scores


def curves_from_csv(path: Path, curve: str, group_by: Sequence[str] = ("dataset", "algorithm")) -> dict[tuple[str, ...], dict[int, list[float]]]:
    """``{group: {step: [value per run]}}`` of the ``<curve>_step_<k>`` columns of a results CSV."""
    groups: dict[tuple[str, ...], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            key = tuple(row[name] for name in group_by)
            for column, value in row.items():
                match = _STEP_KEY.match(column or "")
                if match and match["curve"] == curve and value not in ("", None):
                    groups[key][int(match["step"])].append(float(value))
    return {k: dict(v) for k, v in groups.items()}


def plot_panels(
    panels: Sequence[Mapping[str, Any]],
    path: Path,
    *,
    title: str | None = None,
) -> Path:
    """Side-by-side panels of curves, saved atomically as a PNG.

    Each panel: ``curves`` ``{label: {step: [values]}}`` (mean over runs drawn as a
    line, min-max as a band), ``ylabel``, optional ``xlabel``, ``log`` (log y axis),
    ``hline`` (value, label) drawn dotted, ``styles`` ``{label: matplotlib fmt}``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6 * len(panels), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    for index, panel in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        for label, by_step in panel["curves"].items():
            steps = sorted(by_step)
            if not steps:
                continue
            means = [sum(by_step[s]) / len(by_step[s]) for s in steps]
            style = panel.get("styles", {}).get(label, "-")
            (line,) = axes.plot(steps, means, style, label=label)
            if any(len(by_step[s]) > 1 for s in steps):
                axes.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                                  color=line.get_color(), alpha=0.15, linewidth=0)
        if panel.get("hline") is not None:
            value, label = panel["hline"]
            axes.axhline(value, linestyle=":", color="black", label=label)
        if panel.get("log"):
            axes.set_yscale("log")
        axes.set_xlabel(panel.get("xlabel", "gradient steps"))
        axes.set_ylabel(panel["ylabel"])
        if panel.get("title"):
            axes.set_title(panel["title"], fontsize=10)
        axes.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def render_view(table: Any, view: Any, argv: Sequence[str] | None = None) -> tuple[Path, Path] | None:
    """Render ``view`` (a copy of ``table`` with another name / metric / title) from ``table``'s finished runs.

    Reads the same command-line options as :func:`lit_omarl.repro.main` (profile,
    --seeds, --out, --runs-dir); returns the written (md, csv) paths, or None
    when no run of the profile has finished.
    """
    import datetime as dt
    import sys

    from lit_omarl.repro.render import RenderMeta, write_outputs
    from lit_omarl.repro.runner import expand_grid, lit_omarl_version, load_result
    from lit_omarl.repro.table import build_parser, command_line

    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(table).parse_args(args_list)
    grid_runs = expand_grid(table, args.profile, args.seeds)
    runs_dir = Path(args.runs_dir) if args.runs_dir is not None else Path.cwd() / "runs" / table.name / args.profile
    results = [r for run in grid_runs if (r := load_result(runs_dir, run, view.metric)) is not None]
    if not results:
        return None
    profile = table.profiles[args.profile]
    meta = RenderMeta(command=command_line(args_list), profile=profile,
                      seeds=tuple(args.seeds) if args.seeds is not None else profile.seeds,
                      version=lit_omarl_version(), date=dt.date.today().isoformat(), elapsed_s=None)
    out = Path(args.out) if args.out is not None else Path.cwd() / "results"
    return write_outputs(view, results, meta, out)
