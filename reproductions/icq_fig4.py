"""ICQ Fig. 4 (icq.md Sec. 6.1): "Performance comparison in offline StarCraft II tasks", here on SMAX.

    python reproductions/icq_fig4.py                  # default profile: 15 runs of 5000 updates (measured on the
                                                      # shared 2-core machine: 0.15-0.35 s per update, ICQ-MA the
                                                      # slowest: roughly 4-6 CPU hours in all)
    python reproductions/icq_fig4.py --profile smoke  # every column on 2s3z, tiny budget, ~1-2 minutes
    python reproductions/icq_fig4.py --profile paper  # ~40k updates, 5 seeds
    python reproductions/icq_fig4.py --all-maps       # also the SMAX maps without shipped policies

Columns: ICQ-MA, BC-MA, offline QMIX, BCQ-MA, CQL-MA (lit_omarl's ICQ, BC, QMIX, BCQMA, CQLMA).

Maps. icq.md Table 2 has ten SMAC maps. In SMAX (jaxmarl) exist 2s3z, 3s5z, 10m_vs_11m and 27m_vs_30m;
only 2s3z has shipped QMIX behaviour policies (lit_omarl/assets/behaviour/smax_2s3z/), so the others
are not run by default (train and ship their policies, then --all-maps). MMM, 2s_vs_3z, 3s_vs_3z,
so_many_baneling, 2c_vs_64zg and MMM2 do not exist in SMAX.

Dataset (row ``icq_mix``). icq.md: 3000 trajectories per map of DOP training runs whose behaviour
policies are split into three levels by average episode return (App. E Table 3, good 15-20, medium
10-15, poor 0-10 of SMAC's max 20), evenly mixed. Ours: the OMAC return bands of
``lit-omarl data smax-recipe`` (omac_good / omac_medium / omac_poor: the normalised return R / R_max
of one pool of episodes of the map's QMIX behaviour policies -- expert, medium, epsilon-0.5 medium --
cut into [2/3, 1], [1/3, 2/3), [0, 1/3); on SMAX good = won episodes) with ``recipe_episodes`` = 1000
episodes per band, and the mixture = all 1000 episodes of each band interleaved good, medium, poor,
good, ... = 3000 episodes (lit_omarl/repro/icq.py). ICQ's own thresholds cannot be used: a SMAX loss
returns at most R_max / 2, so ICQ's medium level (0.5-0.75 R_max) would be empty.

Outputs: ``results/icq_fig4.md`` / ``.csv`` (final test win rate, mean +- std over seeds; the CSV also
holds the periodic evaluations ``win_rate_step_<k>`` / ``return_step_<k>``), ``results/icq_fig4_return.md``
(final return of the same runs) and ``results/icq_fig4.png`` (test win rate and return vs updates, drawn
from the CSV). Fig. 4 gives curves only, no numbers: the tables show ours alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lit_omarl.repro import PaperNumbers, Profile, TableSpec, main
from lit_omarl.repro.curves import plot_task_curves, render_view
from lit_omarl.repro.smax import PAPER_SEEDS, parse_all_maps, run_maps, smax_table
from lit_omarl.repro.table import build_parser

ALGORITHMS = ("ICQ-MA", "BC-MA", "QMIX", "BCQ-MA", "CQL-MA")
MAPS = ("2s3z", "3s5z", "10m_vs_11m", "27m_vs_30m")  # the icq.md Table 2 maps that exist in SMAX
NOT_IN_SMAX = ("MMM", "2s_vs_3z", "3s_vs_3z", "so_many_baneling", "2c_vs_64zg", "MMM2")
DATASET = "icq_mix"
EPISODES_PER_BAND = 1000  # 3 x 1000 = icq.md's 3000 trajectories per map

COLUMNS = {"ICQ-MA": "icq", "BC-MA": "bc", "QMIX": "qmix", "BCQ-MA": "bcq", "CQL-MA": "cql_ma"}  # config dirs
OVERRIDES = {("*", "*", column): {"config_algorithm": directory} for column, directory in COLUMNS.items()}
OVERRIDES[("*", "*", "CQL-MA")] = {"config_algorithm": "cql_ma", "cql_alpha": 2.0}  # icq.md Table 4 alpha^CQL

PROFILES = (
    Profile("smoke", seeds=(0,), budget={"max_steps": 20, "eval_every_steps": 10, "eval_episodes": 4,
                                          "final_eval_episodes": 8, "batch_size": 4, "behaviour_pretrain_steps": 10,
                                          "recipe_episodes": 16},
            description="pipeline check: 16 episodes per band (48 in the mixture), 20 updates, evaluation every "
                        "10, 1 seed"),
    Profile("default", seeds=(0, 1, 2), budget={"max_steps": 5000, "eval_every_steps": 250, "eval_episodes": 32,
                                                 "final_eval_episodes": 128, "batch_size": 32,
                                                 "behaviour_pretrain_steps": 1000,
                                                 "recipe_episodes": EPISODES_PER_BAND},
            description="3000-episode mixture, 5000 updates of 32 episodes (1/8 of the paper's ~40k), 32-episode "
                        "tests every 250 updates, 128-episode final test, 3 seeds"),
    Profile("paper", seeds=PAPER_SEEDS, budget={"max_steps": 40_000, "eval_every_steps": 1000, "eval_episodes": 32,
                                                 "final_eval_episodes": 640, "batch_size": 32,
                                                 "recipe_episodes": EPISODES_PER_BAND},
            num_gpus=0.25,
            description="ICQ code: batch 32 episodes (icq.md Table 4: 16), ~40k iterations, 5 seeds (icq.md "
                        "Sec. 6.1); 32-episode tests every 1000 updates and a 640-episode final test (Fig. 4's "
                        "evaluation schedule, 'ten times every 50 episodes', has no SMAX equivalent)"),
)

DEVIATIONS = (
    f"Datasets: icq.md's are 3000 trajectories per map of DOP training runs, behaviour policies in three levels "
    f"by their average episode return (App. E Table 3: good 15-20, medium 10-15, poor 0-10 of SMAC's max 20), "
    f"evenly mixed. Ours (row {DATASET}): the return bands omac_good / omac_medium / omac_poor of "
    f"`lit-omarl data smax-recipe` (normalised return R/R_max of one pool of episodes of the map's QMIX "
    f"behaviour policies -- expert, medium, epsilon-0.5 medium -- in [2/3, 1], [1/3, 2/3), [0, 1/3); on SMAX "
    f"good = won episodes), {EPISODES_PER_BAND} episodes per band (profile key recipe_episodes), all of them "
    f"interleaved good, medium, poor = {3 * EPISODES_PER_BAND} episodes (lit_omarl/repro/icq.py). ICQ's own "
    f"thresholds do not carry over: a SMAX loss returns at most R_max/2, so its medium level (0.5-0.75 R_max) "
    f"would be empty; and ICQ classifies behaviour policies, we classify episodes.",
    "Metric: final greedy test win rate (results/icq_fig4_return.md: SMAX return, in [0, 2]); the curves (CSV "
    "columns win_rate_step_<k> / return_step_<k>, results/icq_fig4.png) are the periodic test evaluations, the "
    "last point the final test.",
    "Fig. 4 has no numbers (curves only): no paper column; compare orderings and shapes of the curves.",
)


def maps_deviation(all_maps: bool) -> str:
    """Which maps of icq.md Table 2 run, and why the others do not."""
    running = run_maps(MAPS, all_maps)
    unshipped = [m for m in MAPS if m not in running]
    text = f"Maps of icq.md Table 2 run here: {', '.join(running)}. "
    if unshipped:
        text += (f"Not run: {', '.join(unshipped)} (in SMAX, but no shipped behaviour policies: train them with "
                 "`python -m lit_omarl.behaviour.qmix_online`, ship them, run with --all-maps); ")
    return text + ", ".join(NOT_IN_SMAX) + " do not exist in SMAX (docs/SMAX.md)."


def build_table(all_maps: bool) -> TableSpec:
    table = smax_table(
        "icq_fig4", "ICQ Fig. 4: test win rate on offline StarCraft-style tasks (SMAX), three-level mixture data",
        ALGORITHMS, MAPS, (DATASET,), "icq.md Fig. 4", {}, all_maps=all_maps, smoke_cells=(),
        overrides=OVERRIDES, metric="win_rate",
        hyper_parameters="ICQ-MA critic alpha 1000, lambda 0.8, RMSprop (official code); CQL-MA alpha 2.0 and "
                         "BCQ-MA threshold 0.3 (icq.md Table 4); offline QMIX: lit_omarl.repro.icq.QMIX_SMAX "
                         "(no shipped SMAX config; lr 5e-4, grad clip 20, TD(0.8), QMIX mixer 32); batch 32 episodes "
                         "as ICQ's code (icq.md Table 4: 16), not 128",
        extra_deviations=(*DEVIATIONS, maps_deviation(all_maps)),
    )
    return dataclasses.replace(
        table, profiles=PROFILES, run_fn="lit_omarl.repro.icq:run_icq_cell",
        prepare_fn="lit_omarl.repro.icq:prepare_icq_mix",
        paper=PaperNumbers(source="icq.md Fig. 4 (learning curves only, no numbers given)"))


def return_view(table: TableSpec) -> TableSpec:
    return dataclasses.replace(
        table, name="icq_fig4_return", metric="episode_return",
        title="ICQ Fig. 4 (same runs): final test return on SMAX (in [0, 2]; a win returns 2)")


def plot(table: TableSpec, results_dir: Path, profile: str) -> Path | None:
    """results/icq_fig4[_<profile>].png from the CSV: test win rate and return vs updates, per map."""
    return plot_task_curves(table, results_dir, profile,
                            (("win_rate", "test win rate"), ("return", "test return (SMAX, max 2)")), ALGORITHMS,
                            DATASET, "ICQ Fig. 4 on SMAX (mean over seeds, band = min-max)")


if __name__ == "__main__":
    all_maps, rest = parse_all_maps()
    TABLE = build_table(all_maps)
    code = main(TABLE, rest)
    args = build_parser(TABLE).parse_args(rest)
    render_view(TABLE, return_view(TABLE), rest)
    plot(TABLE, Path(args.out) if args.out is not None else Path.cwd() / "results", args.profile)
    raise SystemExit(code)
