"""InSPO Table 7 (inspo.md App. C.6): training time of InSPO vs CFCQL, here measured on SMAX datasets.

    python reproductions/inspo_table7.py                  # default profile: maps with shipped behaviour policies
    python reproductions/inspo_table7.py --profile smoke  # two runs, ~1-2 minutes

Every run trains the algorithm's SMAX config (as in reproductions/inspo_table4.py)
on a recipe dataset with a timing callback (lit_omarl.repro.smax.UpdateTimer):
the table reports wall-clock seconds per 1000 gradient updates (= milliseconds
per update); further views of the same runs give the process CPU time, the
whole training loop (with batch sampling, logging, checkpoints) and the load
average of the machine during each run. "InSPO w/o SPO" (simultaneous updates,
not in the paper's table) isolates the cost of the sequential scheme.

Times depend on the machine and on what else runs on it: runs go one at a time
(``--workers 1``) unless ``--workers`` is given, and every run records the CPU
count, torch threads and load average it saw (CSV columns).

The paper's Table 7 is an image in inspo.md: its numbers are not available here.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

from lit_omarl.repro import Profile, TableSpec, main
from lit_omarl.repro.curves import render_view
from lit_omarl.repro.smax import PAPER_SEEDS, parse_all_maps, run_maps, smax_table

ALGORITHMS = ("CFCQL", "InSPO", "InSPO w/o SPO")
MAPS = ("2s3z", "3s_vs_5z", "5m_vs_6m", "6h_vs_8z")
DATASETS = ("medium", "expert")
METRIC = "wall_s_per_1000_updates"
VIEWS = {  # name suffix -> (score, title)
    "cpu": ("cpu_s_per_1000_updates", "process CPU seconds per 1000 gradient updates"),
    "loop": ("loop_wall_s_per_1000_updates",
             "wall-clock seconds per 1000 updates of the whole training loop (with batch sampling, logging, checkpoints)"),
    "load": ("load_avg_1min_start", "1-minute load average of the machine when each run's training loop started"),
}
PAPER_SOURCE = "inspo.md Table 7 (not available: the table is an image in inspo.md; no paper numbers shown)"


def timing_profiles() -> tuple[Profile, ...]:
    """Budgets of the timing table: no periodic evaluation (it would sit inside the loop figures)."""
    return (
        Profile("smoke", seeds=(0,), cells=("2s3z/expert/CFCQL", "2s3z/expert/InSPO"),
                budget={"max_steps": 40, "eval_every_steps": 0, "eval_episodes": 4, "final_eval_episodes": 4,
                        "batch_size": 4, "behaviour_pretrain_steps": 10, "recipe_episodes": 16},
                description="pipeline check: 16-episode datasets, 40 updates of 4 episodes (30 timed), 1 seed"),
        Profile("default", seeds=(0, 1, 2),
                budget={"max_steps": 200, "eval_every_steps": 0, "eval_episodes": 32, "final_eval_episodes": 32,
                        "batch_size": 128, "behaviour_pretrain_steps": 20, "recipe_episodes": 5000},
                description="5000-episode datasets, 200 updates of 128 episodes (the paper's batch; 190 timed), "
                            "behaviour pre-training cut to 20 updates (it is not timed), 3 seeds"),
        Profile("paper", seeds=PAPER_SEEDS,
                budget={"max_steps": 100_000, "eval_every_steps": 0, "eval_episodes": 32, "final_eval_episodes": 32,
                        "batch_size": 128, "recipe_episodes": 5000},
                num_gpus=0.25,
                description="batch 128 episodes, 1e5 updates (the SMAX tables' reading of the paper's 1e7 steps), "
                            "5 seeds, 32 final evaluation episodes"),
    )


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        load = "%.2f / %.2f / %.2f" % os.getloadavg()
    except OSError:
        load = "unknown"
    threads = os.environ.get("OMP_NUM_THREADS") or "unset (the runner gives each worker cpus // workers threads)"
    return (f"Machine: times are measured, not typed; {platform.system()} {platform.machine()}, {cpu}, "
            f"os.cpu_count() = {os.cpu_count()}, OMP_NUM_THREADS = {threads}, load average (1/5/15 min) "
            f"{load} when this page was written. Other jobs on the machine slow the runs down (a load average "
            "above the CPU count means the runs shared their CPUs); each run's CPU count, usable CPUs, torch "
            "threads and load averages at the start of its training loop and at its end are in the CSV and the _load view. "
            "CPU seconds (the _cpu view) are less sensitive to other jobs than wall-clock seconds.")


def build_table(all_maps: bool) -> TableSpec:
    maps = run_maps(MAPS, all_maps)
    spec = smax_table(
        "inspo_table7", "InSPO Table 7: training time of InSPO vs CFCQL, wall-clock seconds per 1000 gradient "
                        "updates (= ms per update) on SMAX datasets",
        ALGORITHMS, MAPS, DATASETS, PAPER_SOURCE, {}, all_maps=all_maps,
        smoke_cells=(),
        overrides={("*", "*", "InSPO w/o SPO"): {"config_algorithm": "inspo", "sequential": False}},
        metric=METRIC,
        hyper_parameters="CFCQL and InSPO as in inspo_table4 (the configs' defaults); 'InSPO w/o SPO' = InSPO with "
                         "sequential false (every agent's ratio uses pi_old; agents are still updated one after "
                         "another), not in the paper's table",
        extra_deviations=(
            "Paper numbers: inspo.md's Table 7 is an image whose numbers are not in the text, so none are shown. "
            "The text says that 'sequential updates do increase the training time' (inspo.md App. C.6); the "
            "paper's runs took about 1.5 h per seed on SMAC on RTX 3090 / A30 GPUs (App. C.3).",
            "Measure: an update is timed from on_train_batch_start to on_train_batch_end (forward, backward and "
            "every optimiser step of the update, incl. InSPO's per-agent critic and policy steps); the first "
            "min(10, max_steps // 4) updates of each run are not timed; behaviour pre-training, dataset loading "
            "and the final evaluation are outside (the pre-training time is the CSV column behaviour_pretrain_s, "
            "the whole run's time wall_time_s). Lower is better; the table's bold / Welch markers compare times.",
            "Hardware: CPU only here (the paper used GPUs), so absolute times are not comparable with the paper's; "
            "compare the ratio InSPO / CFCQL.",
            machine_line(),
        ),
    )
    deviations = tuple(
        "Budget: a few hundred timed updates per run in the default profile; a time per update needs no full "
        "training run (the paper profile trains as long as the SMAX tables' paper profile)." if d.startswith("Budget:")
        else f"Maps: {', '.join(maps)} (inspo.md Table 4's maps with shipped behaviour policies); which maps the "
             "paper's Table 7 covers is not known (image)." if d.startswith("Maps:")
        else d.replace("batch 32 episodes in the default profile vs the papers' 128",
                       "batch 128 episodes as the papers in the default and paper profiles")
        for d in spec.deviations)
    return dataclasses.replace(spec, profiles=timing_profiles(), higher_is_better=False, deviations=deviations,
                               run_fn="lit_omarl.repro.smax:run_smax_cell_timed")


def views(table: TableSpec) -> list[TableSpec]:
    return [dataclasses.replace(table, name=f"{table.name}_{suffix}", metric=metric,
                                title=f"InSPO Table 7 (same runs): {title}")
            for suffix, (metric, title) in VIEWS.items()]


if __name__ == "__main__":
    all_maps, rest = parse_all_maps()
    if not any(a == "--workers" or a.startswith("--workers=") for a in rest):
        rest = [*rest, "--workers", "1"]  # timing: one run at a time unless asked otherwise
    table = build_table(all_maps)
    code = main(table, rest)
    for view in views(table):
        render_view(table, view, rest)
    raise SystemExit(code)
