"""Render finished runs into ``results/<table>.md`` (ours beside the paper) and ``results/<table>.csv``.

Rendering is a pure function of the table declaration, the finished runs and
a small :class:`RenderMeta` (command, date, timings): everything below the
header is byte-for-byte reproducible from the same per-run scores, and the
CSV differs only in its ``wall_time_s`` column.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lit_omarl.repro import stats
from lit_omarl.repro.table import Cell, Profile, RunResult, TableSpec
from lit_omarl.utils.atomic import atomic_write_text

NOT_RUN = "n/a"
NOT_REPORTED = "—"


@dataclass(frozen=True)
class RenderMeta:
    """What the header states besides the table declaration.

    Attributes:
        command: the exact shell command that produced the outputs.
        profile: the profile that was run.
        seeds: the seeds of every cell (the profile's or ``--seeds``).
        version: lit_omarl version.
        date: ISO date of the rendering.
        elapsed_s: wall-clock time of this invocation (``None`` for ``--render-only``).
    """

    command: str
    profile: Profile
    seeds: Sequence[int]
    version: str
    date: str
    elapsed_s: float | None = None


@dataclass
class RowAnalysis:
    """The statistics of one (task, dataset) row."""

    task: str
    dataset: str
    samples: dict[str, list[float]]
    summaries: dict[str, stats.Summary] = field(default_factory=dict)
    best: list[str] = field(default_factory=list)
    not_separable: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- helpers


def output_stem(table: TableSpec, profile: str) -> str:
    """'<table>' for the default profile, '<table>_<profile>' otherwise (a smoke run never
    overwrites the committed default table)."""
    return table.name if profile == "default" else f"{table.name}_{profile}"


def format_number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no '-0.00'


def format_duration(seconds: float) -> str:
    """'12.3 s', '4.5 min', '2 h 03 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def _md(text: object) -> str:
    """Escape a value for a markdown table cell."""
    return str(text).replace("|", "\\|")


def group_scores(table: TableSpec, results: Sequence[RunResult]) -> dict[Cell, list[float]]:
    """Per-cell scores of ``table.metric``, in seed order."""
    grouped: dict[Cell, list[tuple[int, float]]] = {}
    for result in results:
        grouped.setdefault(result.run.cell, []).append((result.run.seed, float(result.scores[table.metric])))
    return {cell: [score for _, score in sorted(pairs)] for cell, pairs in grouped.items()}


def analyze_rows(table: TableSpec, results: Sequence[RunResult]) -> list[RowAnalysis]:
    """Summaries, best algorithm(s) and Welch markers of every row."""
    scores = group_scores(table, results)
    rows = []
    for task, dataset in table.row_keys():
        samples = {a: scores.get(Cell(task, dataset, a), []) for a in table.algorithms}
        row = RowAnalysis(task, dataset, samples)
        row.summaries = {a: s for a, x in samples.items() if (s := stats.summarize(x)) is not None}
        row.best = stats.best_keys({a: s.mean for a, s in row.summaries.items()}, table.higher_is_better)
        row.not_separable = [
            a for a in row.summaries
            if a not in row.best and any(stats.separable(samples[a], samples[b]) is False for b in row.best)
        ]
        rows.append(row)
    return rows


# ---------------------------------------------------------------- markdown


def _ours_cell(table: TableSpec, row: RowAnalysis, algorithm: str, n_seeds: int) -> str:
    summary = row.summaries.get(algorithm)
    if summary is None:
        return NOT_RUN
    text = format_number(summary.mean, table.decimals)
    if summary.std is not None:
        text += f" ± {format_number(summary.std, table.decimals)}"
    if algorithm in row.best:
        text = f"**{text}**"
    elif algorithm in row.not_separable:
        text += "*"
    if summary.n < n_seeds:
        text += f" ({summary.n}/{n_seeds} seeds)"
    return text


def _paper_cell(table: TableSpec, cell: Cell) -> str:
    value = table.paper.get(cell)
    if value is None:
        return NOT_REPORTED
    mean, std = value
    text = format_number(mean, table.decimals)
    return text if std is None else f"{text} ± {format_number(std, table.decimals)}"


def _header(table: TableSpec, meta: RenderMeta, results: Sequence[RunResult], n_runs: int) -> list[str]:
    profile = meta.profile
    budget = ", ".join(f"{k}={v}" for k, v in profile.budget.items()) or "(none)"
    compute = f"{format_duration(sum(r.wall_time_s for r in results))} summed over {len(results)} runs"
    if meta.elapsed_s is not None:
        compute += f"; this invocation took {format_duration(meta.elapsed_s)} elapsed"
    facts = [
        ("Command", f"`{meta.command}`"),
        ("Profile", f"{profile.name}" + (f" ({profile.description})" if profile.description else "")),
        ("Budget per run", budget + (f"; {profile.num_gpus:g} GPU under --engine ray" if profile.num_gpus else "")),
        ("Seeds", ", ".join(map(str, meta.seeds))
         + ("" if tuple(meta.seeds) == tuple(profile.seeds) else f" (--seeds; the profile has {list(profile.seeds)})")),
        ("Runs finished", f"{len(results)}/{n_runs}"),
        ("Compute", compute),
        ("lit_omarl", meta.version),
        ("Date", meta.date),
        ("Paper numbers", table.paper.source or "none given"),
    ]
    lines = [f"# {table.title}", "", "Generated by lit_omarl's reproduction runner; do not edit by hand.", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {_md(v)} |" for k, v in facts]
    lines += ["", "## Deviations from the paper", ""]
    lines += [f"- {d}" for d in table.deviations] or ["- none stated"]
    return lines


def _results_section(table: TableSpec, rows: Sequence[RowAnalysis], n_seeds: int) -> list[str]:
    direction = "higher" if table.higher_is_better else "lower"
    lines = [
        "## Results",
        "",
        f"Metric: `{table.metric}` ({direction} is better), the final score of each run. "
        "'ours' is the mean ± sample standard deviation (ddof=1) over seeds (no ± with one seed); "
        f"**bold**: best mean of the row; *: a two-sided Welch t-test at {stats.ALPHA:.0%} cannot separate "
        "the cell from the row's best (tested only with >= 2 seeds on both sides; equal constant "
        f"scores count as not separable); {NOT_RUN}: no finished run; (k/n seeds): only k of n seeds "
        f"finished; {NOT_REPORTED}: not reported by the paper.",
        "",
    ]
    head = ["Task", "Dataset"] + [f"{_md(a)} {side}" for a in table.algorithms for side in ("ours", "paper")]
    lines += ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (2 * len(table.algorithms))]
    for row in rows:
        cells = [_md(row.task), _md(row.dataset)]
        for algorithm in table.algorithms:
            cells.append(_ours_cell(table, row, algorithm, n_seeds))
            cells.append(_paper_cell(table, Cell(row.task, row.dataset, algorithm)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _iqm_section(table: TableSpec, rows: Sequence[RowAnalysis]) -> list[str]:
    strata = {a: [row.samples[a] for row in rows] for a in table.algorithms}
    estimates = {a: stats.iqm_with_ci(s) for a, s in strata.items()}
    found = {a: e.value for a, e in estimates.items() if e is not None}
    top = stats.best_keys(found, table.higher_is_better)[:1]
    lines = [
        "## IQM across tasks and datasets",
        "",
        f"Interquartile mean of the per-run `{table.metric}` pooled over every row (as they are, not "
        f"normalised), with a {stats.CONFIDENCE:.0%} percentile stratified-bootstrap CI "
        f"({stats.BOOTSTRAP_REPS} resamples of the seeds within each task x dataset, random state "
        f"{stats.BOOTSTRAP_SEED}). Rows: rows with at least one finished run."
        + (f" P(improvement): probability that a run of the algorithm beats one of {top[0]} on the same row, "
           "averaged over rows (rliable)." if top else ""),
        "",
    ]
    head = ["Algorithm", "IQM", "95% CI", "Rows", "Runs"] + ([f"P(improvement over {_md(top[0])})"] if top else [])
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    d = table.decimals
    for algorithm, estimate in estimates.items():
        if estimate is None:
            cells = [_md(algorithm), NOT_RUN, NOT_RUN, f"0/{len(rows)}", "0"] + ([NOT_RUN] if top else [])
        else:
            cells = [
                _md(algorithm),
                format_number(estimate.value, d),
                f"[{format_number(estimate.low, d)}, {format_number(estimate.high, d)}]",
                f"{estimate.n_strata}/{len(rows)}",
                str(estimate.n_values),
            ]
            if top:
                poi = stats.probability_of_improvement(strata[algorithm], strata[top[0]], table.higher_is_better)
                cells.append("ref." if algorithm == top[0] else NOT_RUN if poi is None else f"{poi:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _paper_best(table: TableSpec, row: RowAnalysis) -> list[str]:
    means = {}
    for algorithm in table.algorithms:
        value = table.paper.get(Cell(row.task, row.dataset, algorithm))
        if value is not None:
            means[algorithm] = value[0]
    return stats.best_keys(means, table.higher_is_better)


def _agreement_section(table: TableSpec, rows: Sequence[RowAnalysis]) -> list[str]:
    lines = [
        "## Agreement with the paper",
        "",
        "Per row: our best algorithm(s) by mean against the paper's best by mean. match: they share an "
        "algorithm; within noise: the paper's best is one of our * cells; differs: otherwise; "
        f"{NOT_RUN}: no finished run or no paper number in the row.",
        "",
    ]
    counts = {"match": 0, "within noise": 0, "differs": 0, NOT_RUN: 0}
    for row in rows:
        paper_best = _paper_best(table, row)
        if not row.best or not paper_best:
            verdict = NOT_RUN
        elif set(paper_best) & set(row.best):
            verdict = "match"
        elif set(paper_best) & set(row.not_separable):
            verdict = "within noise"
        else:
            verdict = "differs"
        counts[verdict] += 1
        ours = ", ".join(row.best) or NOT_RUN
        if row.not_separable:
            ours += f" (not separable: {', '.join(row.not_separable)})"
        paper = ", ".join(paper_best) or NOT_REPORTED
        lines.append(f"- {row.task} / {row.dataset}: ours {ours}; paper {paper} -> {verdict}")
    lines += ["", "Summary: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" (of {len(rows)} rows)."]
    return lines


def render_markdown(table: TableSpec, results: Sequence[RunResult], meta: RenderMeta) -> str:
    """The whole markdown page: header, ours-vs-paper table, IQM table, agreement section."""
    rows = analyze_rows(table, results)
    n_runs = len(table.cells()) * len(meta.seeds)
    sections = [
        _header(table, meta, results, n_runs),
        _results_section(table, rows, len(meta.seeds)),
        _iqm_section(table, rows),
        _agreement_section(table, rows),
    ]
    return "\n".join(line for section in sections for line in [*section, ""])


# ---------------------------------------------------------------- csv


def render_csv(table: TableSpec, results: Sequence[RunResult]) -> str:
    """One line per run: table, profile, cell, seed, every score (the table's metric first), wall time, run id."""
    extra = sorted({key for r in results for key in r.scores} - {table.metric})
    metrics = [table.metric, *extra]
    order = {cell: i for i, cell in enumerate(table.cells())}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "profile", "task", "dataset", "algorithm", "seed", *metrics, "wall_time_s", "run_id"])
    for r in sorted(results, key=lambda r: (order.get(r.run.cell, len(order)), r.run.seed)):
        scores = [repr(float(r.scores[m])) if m in r.scores else "" for m in metrics]
        run = r.run
        writer.writerow([table.name, run.profile, run.task, run.dataset, run.algorithm, run.seed,
                         *scores, f"{r.wall_time_s:.3f}", run.run_id])
    return buffer.getvalue()


def write_outputs(
    table: TableSpec, results: Sequence[RunResult], meta: RenderMeta, out_dir: Path
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>.md`` and ``.csv`` atomically; returns both paths."""
    stem = output_stem(table, meta.profile.name)
    md_path, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    atomic_write_text(md_path, render_markdown(table, results, meta))
    atomic_write_text(csv_path, render_csv(table, results))
    return md_path, csv_path


# ---------------------------------------------------------------- plots


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    *,
    xlabel: str = "gradient steps",
    ylabel: str = "episode_return",
    title: str | None = None,
) -> Path:
    """Save learning curves ``{label: (steps, values)}`` as a PNG (Agg canvas, no pyplot state), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, (steps, values) in curves.items():
        axes.plot(steps, values, label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    if curves:
        axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
