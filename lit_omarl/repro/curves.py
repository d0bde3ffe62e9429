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

Optional per-run extras (keys of the run's budget or overrides, never passed to
the model): ``q_probes`` + ``probe_every_steps`` attach :class:`JointQProbe`,
which logs Q_tot of fixed (state, observations, joint action) inputs along
training (``probe/<name>``, stored as ``<name>_step_<k>`` and ``<name>_final``);
``mc_horizon`` adds ``v_policy_mc``, the discounted return of the final greedy
policy from a reset, rolled out for that many steps (a Monte-Carlo true value).
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
    dataset's joint actions; gives ``q_rel_error``), ``q_probes`` / ``probe_every_steps``
    (:class:`JointQProbe`; curves ``<name>_step_<k>`` and ``<name>_final``) and
    ``mc_horizon`` (``v_policy_mc``, see :func:`policy_value_mc`); each may also be a
    per-cell override, which wins over the budget. Adds
    ``trainer.log_every_n_steps`` so that every run logs about ``LOG_POINTS`` points,
    (the run's seed also seeds the model's streams and the batch sampler: see
    :func:`lit_omarl.repro.train.fit_config`).
    """
    from lit_omarl.repro.train import run_cell

    budget, cell = dict(run.budget), dict(run.overrides)
    extras = {key: cell.pop(key, budget.pop(key, None)) for key in EXTRA_KEYS}  # per-cell values win
    q_true = extras["q_true"]
    max_steps = int(budget.get("max_steps", 0))
    if max_steps < 1:
        raise ValueError(f"{run.label}: the budget needs max_steps >= 1 to draw curves, got {budget.get('max_steps')}")
    overrides = {
        "trainer.log_every_n_steps": max(1, max_steps // LOG_POINTS),
        **cell,
    }
    probes = extras["q_probes"]
    if probes:
        clash = {"q", "return"} & set(probes)
        if clash:
            raise ValueError(f"{run.label}: probe names {sorted(clash)} clash with the q / return curves")
        every = int(extras["probe_every_steps"] or max(1, max_steps // LOG_POINTS))
        overrides["trainer.callbacks"] = [{"class_path": "lit_omarl.repro.curves.JointQProbe",
                                           "init_args": {"probes": probes, "every_n_steps": every}}]
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
    for name in probes or {}:
        points = read_scalars(logdir, f"{PROBE_PREFIX}{name}")
        scores.update({f"{name}_step_{s}": v for s, v in curve_on_grid(points, steps).items()})
        if points:
            scores[f"{name}_final"] = max(points)[1]  # the value after the last probed update
    if extras["mc_horizon"]:
        model = load_final_model(logdir)
        scores["v_policy_mc"] = policy_value_mc(model, horizon=int(extras["mc_horizon"]))
    return scores


# keys of a run's budget / overrides read by run_cell_with_curves itself (never handed to the model)
EXTRA_KEYS = ("q_true", "q_probes", "probe_every_steps", "mc_horizon")
PROBE_PREFIX = "probe/"


def _joint_q(model: Any, obs: Any, state: Any, actions: Any) -> Any:
    """Q_tot(s, a) [B] of one-step inputs (obs [B, N, O], state [B, S], actions long [B, N]).

    Uses ``model.joint_q`` when the algorithm defines it; otherwise knows the two
    value-decomposition layouts of lit_omarl: a critic on [state, obs_i, id_i] + mixer
    (ICQ) and a shared agent network on the agent inputs + mixer (QMIX, BCQ-MA, CFCQL...).
    """
    if callable(getattr(model, "joint_q", None)):
        return model.joint_q(obs, state, actions)
    if hasattr(model, "critic") and hasattr(model, "mixer") and not hasattr(model, "agent"):
        from lit_omarl.nets.critics import state_obs_id_inputs

        q_all = model.critic(state_obs_id_inputs(state, obs))  # [B, N, A]
    elif hasattr(model, "agent") and hasattr(model, "mixer"):
        inputs = model.agent_inputs.build(obs)[:, None]  # [B, 1, N, in]: one step from the start of an episode
        q_all = model.agent.forward_seq(inputs)[0][:, 0]
    else:
        raise TypeError(f"{type(model).__name__}: no per-agent Q network + mixer to probe (define joint_q)")
    taken = q_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # [B, N]
    return model.mixer(taken[:, None], state[:, None])[:, 0]


def _probe_tensors(probe: Mapping[str, Any], model: Any) -> tuple[Any, Any, Any]:
    """(obs [1, N, O], state [1, S], actions [1, N]) of a probe; ``actions: "greedy"`` asks the model."""
    import torch

    obs = torch.tensor(probe["obs"], dtype=torch.float32, device=model.device)[None]
    state = torch.tensor(probe["state"], dtype=torch.float32, device=model.device)[None]
    if probe["actions"] == "greedy":
        avail = torch.ones(*obs.shape[:2], model.spec.n_actions, dtype=torch.bool, device=model.device)
        actions, _ = model.act(obs, avail, None, deterministic=True)
    else:
        actions = torch.tensor(probe["actions"], dtype=torch.long, device=model.device)[None]
    return obs, state, actions


def _make_probe_class() -> type:
    """Builds :class:`JointQProbe` on first use, so importing this module does not import Lightning / torch."""
    import lightning as L

    class JointQProbe(L.Callback):
        """Logs Q_tot of fixed inputs every ``every_n_steps`` updates, as ``probe/<name>``.

        Args:
            probes: ``{name: {"obs": N x O list, "state": S list, "actions": N list | "greedy"}}``
                ("greedy": the model's own greedy joint action at that observation, all actions available).
            every_n_steps: probe after every this many gradient updates (never at step 0).

        The value after k updates is logged at step k - 1, Lightning's step of the k-th
        update, so :func:`curve_on_grid` counts it as k like the training metrics.
        """

        def __init__(self, probes: dict[str, dict[str, Any]], every_n_steps: int = 50) -> None:
            if every_n_steps < 1:
                raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
            for name, probe in probes.items():
                missing = {"obs", "state", "actions"} - set(probe)
                if missing:
                    raise ValueError(f"probe {name!r} misses {sorted(missing)}")
            self.probes = dict(probes)
            self.every_n_steps = int(every_n_steps)

        def probe(self, model: Any) -> dict[str, float]:
            """Q_tot of every probe under the model's current parameters."""
            import torch

            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    return {name: float(_joint_q(model, *_probe_tensors(p, model))[0]) for name, p in self.probes.items()}
            finally:
                model.train(was_training)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            step = trainer.global_step
            if step == 0 or step % self.every_n_steps:
                return
            values = self.probe(pl_module)
            for logger in trainer.loggers:
                logger.log_metrics({f"{PROBE_PREFIX}{k}": v for k, v in values.items()}, step=step - 1)

    JointQProbe.__module__, JointQProbe.__qualname__ = __name__, "JointQProbe"
    return JointQProbe


def __getattr__(name: str) -> Any:  # PEP 562: ``lit_omarl.repro.curves.JointQProbe`` (a LightningCLI class_path)
    if name == "JointQProbe":
        cls = _make_probe_class()
        globals()["JointQProbe"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_final_model(logdir: Path) -> Any:
    """The model of ``<logdir>/checkpoints/last.ckpt`` (class from the checkpoint's saved config), on CPU, in eval mode."""
    import importlib

    import torch
    import yaml

    logdir = Path(logdir)
    config = yaml.safe_load((logdir / "config.yaml").read_text()) if (logdir / "config.yaml").exists() else None
    if config is None:
        config = yaml.safe_load((logdir.parents[1] / "config.yaml").read_text())
    module, _, name = config["model"]["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    model = cls.load_from_checkpoint(logdir / "checkpoints" / "last.ckpt", map_location=torch.device("cpu"), weights_only=False)
    return model.eval()


def policy_value_mc(model: Any, *, horizon: int, seed: int = 0, episodes: int = 1) -> float:
    """Monte-Carlo value of the model's greedy policy: the mean discounted return (``model.hparams.gamma``)
    from a reset of the model's env, with the env's time limit set to ``horizon`` (option ``episode_limit``)."""
    import torch

    from lit_omarl.envs import make

    spec = model.spec
    options = {**(spec.env_options or {}), "episode_limit": int(horizon)}
    env = make(spec.env_id, num_envs=episodes, seed=seed, **options)
    gamma = float(model.hparams.gamma)
    ts, hidden, discount = env.reset(seed=seed), None, 1.0
    total = torch.zeros(episodes)
    with torch.no_grad():
        while env.active.any():
            active = env.active.clone()
            actions, hidden = model.act(ts.obs, ts.avail, hidden, deterministic=True)
            ts = env.step(actions.cpu())
            total += discount * ts.reward * active
            discount *= gamma
    return float(total.mean())


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


def plot_task_curves(table: Any, results_dir: Path, profile: str, curves: Sequence[tuple[str, str]],
                     algorithms: Sequence[str], dataset: str, title: str) -> Path | None:
    """``results/<table>[_<profile>].png`` from the table's CSV: one panel per (curve, task), one line per
    algorithm (``curves``: (curve name of the ``<curve>_step_<k>`` columns, y label)); None without data."""
    from lit_omarl.repro.render import output_stem

    stem = output_stem(table, profile)
    csv_path = Path(results_dir) / f"{stem}.csv"
    if not csv_path.exists():
        return None
    panels = []
    for curve, ylabel in curves:
        by_cell = curves_from_csv(csv_path, curve, group_by=("task", "algorithm"))
        for task in table.tasks:
            lines = {algo: by_cell[(task, algo)] for algo in algorithms if (task, algo) in by_cell}
            if lines:
                styles = {algo: f"C{list(algorithms).index(algo)}.-" for algo in lines}
                panels.append({"curves": lines, "ylabel": ylabel, "styles": styles, "title": f"{task} ({dataset})"})
    if not panels:
        return None
    return plot_panels(panels, Path(results_dir) / f"{stem}.png", title=title)


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
