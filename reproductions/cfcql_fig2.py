"""CFCQL Fig. 2(b) (cfcql.md Sec. 5.1): performance ratio to the behaviour policy on Equal_Line vs agent count.

    python reproductions/cfcql_fig2.py                  # default profile
    python reproductions/cfcql_fig2.py --profile smoke

Metric: return of the learned policy / mean return of the expert dataset.
Paper's claim: MACQL's ratio degrades dramatically as n grows; CFCQL's stays about stable.
Also writes results/cfcql_fig2.png (ratio vs n per algorithm) from the finished runs.
"""

import csv
from collections import defaultdict
from pathlib import Path

from lit_omarl.repro import PaperNumbers, Profile, TableSpec, main, plot_curves

AGENT_COUNTS = (2, 4, 6, 8, 10)
ALGORITHMS = ("CFCQL", "MACQL")

TABLE = TableSpec(
    name="cfcql_fig2",
    title="CFCQL Fig. 2(b): Equal_Line, return ratio to the behaviour policy vs number of agents",
    metric="return_ratio",
    tasks=("equal_line",),
    datasets=tuple(f"n{n}" for n in AGENT_COUNTS),
    algorithms=ALGORITHMS,
    profiles=(
        Profile("smoke", seeds=(0,), budget={"max_steps": 40, "eval_every_steps": 0, "final_eval_episodes": 8,
                                              "behaviour_pretrain_steps": 20, "episodes": 100},
                description="pipeline check: 40 updates, 1 seed"),
        Profile("default", seeds=(0, 1, 2), budget={"max_steps": 5000, "eval_every_steps": 1000, "final_eval_episodes": 128},
                description="5000 updates per run, 3 seeds, 128 evaluation episodes"),
        Profile("paper", seeds=(0, 1, 2, 3, 4), budget={"max_steps": 1_000_000, "eval_every_steps": 10_000, "final_eval_episodes": 128},
                num_gpus=0.25, description="5 seeds; the paper does not state its Equal_Line budget"),
    ),
    paper=PaperNumbers(source="cfcql.md Fig. 2(b) (a plot; no numbers given)"),
    run_fn="lit_omarl.repro.train:run_cell",
    deviations=(
        "The expert dataset comes from lit_omarl's scripted Equal_Line expert (equally spaced targets), not a "
        "trained QMIX policy; 1000 episodes of 25 steps.",
        "Agent counts 2-10 in steps of 2: the paper's figure does not list its exact x values.",
        "The paper's figure has no numbers; its claim is qualitative (MACQL degrades with n, CFCQL stays stable).",
    ),
)


def plot_ratio(results_dir: Path, profile: str) -> None:
    name = "cfcql_fig2" if profile == "default" else f"cfcql_fig2_{profile}"
    csv_path = results_dir / f"{name}.csv"
    if not csv_path.exists():
        return
    by_algo: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            by_algo[row["algorithm"]][int(row["dataset"][1:])].append(float(row["return_ratio"]))
    curves = {algo: (sorted(v), [sum(v[n]) / len(v[n]) for n in sorted(v)]) for algo, v in by_algo.items()}
    plot_curves(curves, results_dir / f"{name}.png", xlabel="number of agents n", ylabel="return / behaviour return")


if __name__ == "__main__":
    import sys

    code = main(TABLE)
    args = sys.argv[1:]
    profile = args[args.index("--profile") + 1] if "--profile" in args else "default"
    out = Path(args[args.index("--out") + 1]) if "--out" in args else Path("results")
    plot_ratio(out, profile)
    raise SystemExit(code)
