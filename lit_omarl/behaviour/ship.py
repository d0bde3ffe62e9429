"""Pick a map's medium and expert policies from a ``qmix_online`` or ``mappo_online`` run and ship them.

    python -m lit_omarl.behaviour.ship --run RUN_DIR --map 5m_vs_6m [--eval-episodes 128] [--fraction 0.5] [--expert-candidates 1]

What it does (the same steps for every map, so shipping is reproducible):

1. Reads every checkpoint of the run (``final.pt``, ``winrate_*.pt``,
   ``step_*.pt`` with their ``.json`` metadata: the 32-episode greedy test
   at save time) and ``curve.jsonl``. A run continued from another one
   (``qmix_online --init-from``) is read with its ancestors: their
   checkpoints and tests up to the point where it went on, then its own.
2. **Metric.** Win rate, unless the best test win rate of the run is below
   ``--min-win-rate`` (default 0.2): then return (a map QMIX does not learn
   to win here still gets medium / expert policies ordered by return).
3. **Expert.** The checkpoint with the best test metric (ties: the later
   one), re-evaluated greedily on ``--eval-episodes`` fresh episodes. With
   ``--expert-candidates K`` (> 1) the K checkpoints with the best tests are
   re-evaluated and the best of them on re-evaluation is the expert: the
   best of many noisy 32-episode tests overstates its checkpoint (SMAX
   3s5z_vs_3s6z: 0.81 at save time, 0.58 on 128 fresh episodes).
4. **Medium.** ``target = fraction x expert`` (win rate; with K > 1 the
   expert's re-evaluated score), or for returns
   ``random + fraction x (expert - random)`` with ``random`` the first test of
   the run (epsilon 1, untrained net, env step 0). Among the checkpoints saved
   before the expert, the one whose test metric is closest to the target
   (ties: the earlier); re-evaluated like the expert.
5. Writes ``<dest>/smax_<map>/{expert,medium}.pt`` and ``.json`` (the save-time
   metadata plus the re-evaluation), ``curve.jsonl``, ``train_config.json``
   and a ``README.md`` with the table; and the curve PNG (win rate and return
   vs env steps, both picks marked). Existing files of another run are not
   overwritten unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lit_omarl.behaviour import ASSETS
from lit_omarl.utils.atomic import atomic_write_text


class ShipError(ValueError):
    """A run folder that cannot be shipped (the message names the folder and the problem)."""


@dataclass(frozen=True)
class Candidate:
    """One checkpoint of a run with its save-time test."""

    path: Path
    meta: dict[str, Any]

    @property
    def env_steps(self) -> int:
        return int(self.meta["env_steps"])

    def score(self, metric: str) -> float:
        return float(self.meta[metric])


def read_candidates(run: Path) -> list[Candidate]:
    """Every checkpoint of ``run`` with a readable ``.json`` twin, ordered by env steps (one per env-step
    count: ``final.pt`` when it repeats a periodic or milestone checkpoint)."""
    out = []
    for pt in sorted(run.glob("*.pt")):
        meta_path = pt.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            float(meta["win_rate"]), float(meta["return"]), int(meta["env_steps"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ShipError(f"{meta_path}: unreadable checkpoint metadata ({err})") from None
        out.append(Candidate(pt, meta))
    if not out:
        raise ShipError(f"{run}: no checkpoints (*.pt) in the run folder")
    by_steps: dict[int, Candidate] = {}  # the same weights saved twice (e.g. step_<n>.pt and final.pt): keep one
    for cand in sorted(out, key=lambda c: (c.path.name != "final.pt", c.path.name)):
        by_steps.setdefault(cand.env_steps, cand)
    return [by_steps[k] for k in sorted(by_steps)]


def read_config(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ShipError(f"{run / 'config.json'}: cannot read the run's config ({err})") from None


def run_chain(run: Path, limit: int = 20) -> list[Path]:
    """``run`` and the runs it continues (``init_from``), oldest first."""
    chain = [Path(run)]
    while (parent := read_config(chain[0]).get("init_from")):
        parent_run = Path(parent).parent
        if len(chain) >= limit or parent_run in chain:
            raise ShipError(f"{chain[0]}: init_from chain loops or is longer than {limit} runs")
        if not Path(parent).is_file():
            raise ShipError(f"{chain[0] / 'config.json'}: init_from {parent} does not exist")
        chain.insert(0, parent_run)
    return chain


def read_chain(run: Path) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Checkpoints and test curve of ``run`` and its ancestors; an ancestor counts up to the env step its
    child went on from (later checkpoints and tests of the ancestor are not part of this history)."""
    chain = run_chain(run)
    candidates: list[Candidate] = []
    curve: list[dict[str, Any]] = []
    for k, folder in enumerate(chain):
        own_c, own_curve = read_candidates(folder), read_curve(folder)
        if k + 1 < len(chain):
            init = read_config(chain[k + 1])["init_from"]
            until = next((c.env_steps for c in own_c if c.path.resolve() == Path(init).resolve()), None)
            if until is None:
                until = int(json.loads(Path(init).with_suffix(".json").read_text(encoding="utf-8"))["env_steps"])
            own_c = [c for c in own_c if c.env_steps <= until]
            own_curve = [p for p in own_curve if int(p["env_steps"]) < until]  # the child tests at `until` again
        candidates += own_c
        curve += own_curve
    by_steps: dict[int, Candidate] = {}
    for cand in candidates:  # the continuation point appears in both runs: keep the later run's copy
        by_steps[cand.env_steps] = cand
    return [by_steps[k] for k in sorted(by_steps)], curve


def read_curve(run: Path) -> list[dict[str, Any]]:
    path = run / "curve.jsonl"
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as err:
        raise ShipError(f"{path}: cannot read the training curve ({err})") from None


def choose_metric(candidates: Sequence[Candidate], min_win_rate: float) -> str:
    return "win_rate" if max(c.score("win_rate") for c in candidates) >= min_win_rate else "return"


def pick_expert(candidates: Sequence[Candidate], metric: str) -> Candidate:
    """Best save-time test; ties go to the later checkpoint."""
    return max(candidates, key=lambda c: save_time_rank(c, metric))


def save_time_rank(cand: Candidate, metric: str) -> tuple[float, int]:
    """Order of checkpoints by their save-time test (ties: the later checkpoint ranks higher)."""
    return cand.score(metric), cand.env_steps


def pick_expert_reevaluated(candidates: Sequence[Candidate], metric: str, k: int,
                            evaluate: Callable[[Candidate], dict[str, float]]) -> tuple[Candidate, dict[Path, dict[str, float]]]:
    """Of the ``k`` checkpoints with the best save-time tests, the one best on re-evaluation (``evaluate``;
    ties: the later checkpoint); also every re-evaluation by checkpoint path. A single 32-episode test
    overstates the checkpoint it selects (the best of many noisy tests); fresh episodes do not."""
    if k < 1:
        raise ShipError(f"--expert-candidates must be >= 1, got {k}")
    top = sorted(candidates, key=lambda c: save_time_rank(c, metric), reverse=True)[:k]
    results = {c.path: evaluate(c) for c in top}
    return max(top, key=lambda c: (results[c.path][metric], c.env_steps)), results


def medium_target(expert_score: float, metric: str, fraction: float, random_score: float) -> float:
    if metric == "win_rate":
        return fraction * expert_score
    return random_score + fraction * (expert_score - random_score)


def pick_medium(candidates: Sequence[Candidate], expert: Candidate, metric: str, target: float) -> Candidate:
    """The checkpoint saved before the expert whose test is closest to ``target`` (ties: the earlier)."""
    earlier = [c for c in candidates if c.env_steps < expert.env_steps]
    if not earlier:
        raise ShipError(f"{expert.path.parent}: no checkpoint before the expert ({expert.path.name}) to serve as medium")
    return min(earlier, key=lambda c: (abs(c.score(metric) - target), c.env_steps))


def reevaluate(path: Path, env_id: str, episodes: int, seed: int, num_envs: int) -> dict[str, float]:
    """Greedy win rate / return / length of a checkpoint over ``episodes`` fresh episodes."""
    from lit_omarl.behaviour import load_policy
    from lit_omarl.behaviour._online_common import greedy_test
    from lit_omarl.envs import make

    env = make(env_id, num_envs=min(num_envs, episodes), seed=seed)
    return greedy_test(load_policy(path), env, episodes, seed)


def plot(curve: Sequence[dict[str, Any]], picks: dict[str, Candidate], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["env_steps"] for row in curve]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "win_rate", "greedy test win rate"), (axes[1], "return", "greedy test return")):
        ax.plot(steps, [row[key] for row in curve], lw=1.2)
        for name, cand in picks.items():
            ax.scatter([cand.env_steps], [cand.score(key)], zorder=3, label=name)
        ax.set_xlabel("env steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)


def algorithm(config: dict[str, Any]) -> str:
    """The trainer of a run: 'mappo' (mappo_online records it) or 'qmix' (qmix_online runs record nothing)."""
    algo = str(config.get("algorithm", "qmix"))
    if algo not in ("qmix", "mappo"):
        raise ShipError(f"config.json: unknown 'algorithm' {algo!r} (qmix or mappo)")
    return algo


def readme(map_name: str, config: dict[str, Any], summary: dict[str, Any], rows: dict[str, dict[str, Any]],
           metric: str, fraction: float, command: str, min_win_rate: float = 0.2, best_win_rate: float = 0.0,
           expert_candidates: int = 1) -> str:
    algo = algorithm(config)
    lines = [
        f"# {algo.upper()} behaviour policies for smax/{map_name} (lit_omarl-trained)",
        "",
        f"Trained online by lit_omarl's own {algo.upper()} (lit_omarl/behaviour/{algo}_online.py) on SMAX {map_name}, "
        f"{config.get('num_envs')} parallel envs, {config.get('threads')} CPU thread(s), seed {config.get('seed')}, "
        f"{summary['env_steps']:,} env steps in {summary['minutes']:.0f} minutes (full settings in train_config.json; "
        f"the greedy test curve in curve.jsonl and results/smax_{map_name}_{algo}_curve.png).",
        "",
        f"Picked by `{command}` (lit_omarl/behaviour/ship.py): expert = "
        + (f"the checkpoint with the best 32-episode test {metric.replace('_', ' ')}" if expert_candidates <= 1 else
           f"of the {expert_candidates} checkpoints with the best 32-episode tests ({metric.replace('_', ' ')}), the "
           f"best on re-evaluation; the medium target uses its re-evaluated {metric.replace('_', ' ')}")
        + "; medium = the earlier checkpoint closest to "
        + (f"{fraction:g} x the expert's win rate." if metric == "win_rate" else
           f"random + {fraction:g} x (expert - random) in return (the run's win rates stay below the threshold)."),
        "",
        "| file | checkpoint | env steps | win rate / return at save time (32 episodes) | re-evaluated (episodes) |",
        "|---|---|---:|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name}.pt | {row['checkpoint']} | {row['env_steps']:,} | {row['win_rate']:.2f} / {row['return']:.3f} | "
                     f"{row['reeval_win_rate']:.2f} / {row['reeval_return']:.3f} ({row['reeval_episodes']}) |")
    if metric == "return":
        lines += ["", f"**Not expert-level:** no checkpoint of this run reached a test win rate of {min_win_rate:g} "
                      f"(best checkpoint {best_win_rate:.2f}); 'expert' is only the best return this run reached, and datasets "
                      "made from these policies are far weaker than the papers' expert data."]
    lines += ["", "State dicts only: load with `lit_omarl.behaviour.load_policy(path)` (torch.load weights_only=True).", ""]
    return "\n".join(lines)


def ship(run: Path, map_name: str, *, dest: Path = ASSETS, png: Path | None = None, fraction: float = 0.5,
         min_win_rate: float = 0.2, eval_episodes: int = 128, seed: int = 12345, num_envs: int = 64,
         overwrite: bool = False, command: str = "", expert_candidates: int = 1) -> dict[str, dict[str, Any]]:
    """Steps 1-5 of the module docstring; returns the rows of the README table."""
    run = Path(run)
    if not 0.0 < fraction < 1.0:
        raise ShipError(f"--fraction must be in (0, 1), got {fraction}")
    candidates, curve = read_chain(run)
    config = read_config(run)
    for folder in run_chain(run)[:-1]:
        if read_config(folder).get("env_id") != config.get("env_id"):
            raise ShipError(f"{run}: continues {folder}, which trained {read_config(folder).get('env_id')!r}")
    env_id = str(config.get("env_id", f"smax/{map_name}"))
    if env_id != f"smax/{map_name}":
        raise ShipError(f"{run}: the run trained {env_id!r}, not smax/{map_name}")
    out = Path(dest) / f"smax_{map_name}"
    if out.exists() and not overwrite:
        old = out / "train_config.json"
        if not old.is_file() or json.loads(old.read_text(encoding="utf-8")) != config:
            raise ShipError(f"{out}: already holds policies of another run; use --overwrite to replace them")

    metric = choose_metric(candidates, min_win_rate)
    expert, evaluated = pick_expert_reevaluated(  # K = 1: the best save-time test, re-evaluated once
        candidates, metric, expert_candidates, lambda c: reevaluate(c.path, env_id, eval_episodes, seed, num_envs))
    expert_score = evaluated[expert.path][metric] if expert_candidates > 1 else expert.score(metric)
    target = medium_target(expert_score, metric, fraction, float(curve[0][metric]) if curve else 0.0)
    medium = pick_medium(candidates, expert, metric, target)
    rows: dict[str, dict[str, Any]] = {}
    for name, cand in (("expert", expert), ("medium", medium)):
        result = evaluated.get(cand.path) or reevaluate(cand.path, env_id, eval_episodes, seed, num_envs)
        rows[name] = {**cand.meta, "shipped_as": f"{name}.pt", "selection_metric": metric,
                      "selection_target": target if name == "medium" else None,
                      "expert_candidates": expert_candidates,
                      "reeval_episodes": eval_episodes, "reeval_seed": seed,
                      **{f"reeval_{k}": v for k, v in result.items()}}
        print(f"{name}: {cand.path.name} ({cand.env_steps:,} env steps) test {metric} {cand.score(metric):.3f}; "
              f"re-evaluated on {eval_episodes}: win rate {result['win_rate']:.3f}, return {result['return']:.3f}",
              file=sys.stderr)
    if expert_candidates > 1:
        rows["expert"]["candidate_reevals"] = {c.name: r for c, r in evaluated.items()}

    out.mkdir(parents=True, exist_ok=True)
    for name, cand in (("expert", expert), ("medium", medium)):
        tmp = out / f".{name}.pt.tmp"
        shutil.copyfile(cand.path, tmp)
        tmp.replace(out / f"{name}.pt")
        atomic_write_text(out / f"{name}.json", json.dumps(rows[name], indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "train_config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(out / "curve.jsonl", "".join(json.dumps(row) + "\n" for row in curve))
    last = curve[-1] if curve else {"env_steps": expert.env_steps, "minutes": expert.meta.get("minutes", 0.0)}
    summary = {"env_steps": max(int(last["env_steps"]), candidates[-1].env_steps),
               "minutes": float(max(last.get("minutes", 0.0), candidates[-1].meta.get("minutes", 0.0)))}
    atomic_write_text(out / "README.md", readme(map_name, config, summary, rows, metric, fraction,
                                                command or f"python -m lit_omarl.behaviour.ship --run RUN --map {map_name}",
                                                min_win_rate, max(c.score("win_rate") for c in candidates),
                                                expert_candidates=expert_candidates))
    if png is not None:
        plot(curve, {"expert": expert, "medium": medium}, Path(png),
             f"{algorithm(config).upper()} on smax/{map_name} (lit_omarl, seed {config.get('seed')}): "
             "greedy tests of 32 episodes")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lit_omarl.behaviour.ship", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="a qmix_online or mappo_online output folder")
    p.add_argument("--map", required=True, help="SMAX map the run trained on")
    p.add_argument("--dest", type=Path, default=ASSETS, help="assets folder (default: lit_omarl/assets/behaviour)")
    p.add_argument("--png", type=Path, default=None, help="curve PNG (default results/smax_<map>_<qmix|mappo>_curve.png)")
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--min-win-rate", type=float, default=0.2)
    p.add_argument("--eval-episodes", type=int, default=128)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--expert-candidates", type=int, default=1, help="re-evaluate the K checkpoints with the best "
                   "save-time tests and ship the best of them as expert (default 1: the best save-time test)")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    command = "python -m lit_omarl.behaviour.ship " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        png = a.png if a.png is not None else Path("results") / f"smax_{a.map}_{algorithm(read_config(a.run))}_curve.png"
        rows = ship(a.run, a.map, dest=a.dest, png=png, fraction=a.fraction, min_win_rate=a.min_win_rate,
                    eval_episodes=a.eval_episodes, seed=a.seed, overwrite=a.overwrite, command=command,
                    expert_candidates=a.expert_candidates)
    except ShipError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({k: {"checkpoint": v["checkpoint"], "win_rate": v["reeval_win_rate"], "return": v["reeval_return"]}
                      for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
