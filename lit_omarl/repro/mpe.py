"""MPE tables (cfcql.md Tables 1 and 5): datasets from the continuous recipe, one config per algorithm.

A cell ``(task, quality, algorithm)`` trains ``configs/<algorithm>/mpe/simple_spread.yaml``
with its data replaced by the recipe file ``mpe_<task>_<quality>.h5``
(:mod:`lit_omarl.behaviour.continuous_recipe`: random / medium_replay / medium /
expert from the task's shipped MATD3 policies). ``prepare_mpe`` writes the
files a table needs once, before the runs (cached; never overwriting). The
evaluation env is the dataset's own (its env options, e.g. the shipped prey of
simple_tag), and the metric is the normalized score against the references
measured from the same policies (:mod:`lit_omarl.envs.reference_returns`).

Budget keys of MPE profiles, besides :data:`lit_omarl.repro.train.BUDGET_KEYS`:
``recipe_episodes`` (episodes per generated dataset) and ``recipe_seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from lit_omarl.repro.table import Profile, TableSpec
from lit_omarl.repro.train import config_algorithm, fit_recipe_cell

PAPER_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_RECIPE_EPISODES = 10_000  # a quarter of OMAR's 1M transitions (40,000 episodes of 25 steps)
#: the table's task names -> env ids (tag and world with the shipped prey, as the papers use OMAR's fixed prey)
TASKS = {"CN": "mpe/simple_spread", "PP": "mpe/simple_tag", "World": "mpe/simple_world_comm"}


def shipped_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """The table tasks whose MATD3 medium and expert policies ship with lit_omarl."""
    from lit_omarl.behaviour import ASSETS
    from lit_omarl.behaviour.continuous_recipe import env_dir

    return tuple(t for t in tasks if all((ASSETS / env_dir(TASKS[t]) / f"{q}.pt").is_file() for q in ("medium", "expert")))


def recipe_path(env_id: str, quality: str, budget: dict[str, Any], default_episodes: int) -> Path:
    """The continuous-recipe file of ``env_id`` / ``quality`` for a run's budget (``recipe_episodes``, ``recipe_seed``)."""
    from lit_omarl.behaviour.continuous_recipe import dataset_path, default_out_dir

    episodes = int(budget.get("recipe_episodes", default_episodes))
    return dataset_path(default_out_dir(env_id, episodes, int(budget.get("recipe_seed", 0))), env_id, quality)


def recipe_file(task: str, quality: str, budget: dict[str, Any]) -> Path:
    return recipe_path(TASKS[task], quality, budget, DEFAULT_RECIPE_EPISODES)


def prepare_recipes(runs: Sequence[Any], tasks: dict[str, str], default_episodes: int) -> None:
    """Write every continuous-recipe dataset the pending ``runs`` need (``tasks``: table task -> env id;
    a no-op for files already there)."""
    from lit_omarl.behaviour.continuous_recipe import continuous_recipe, default_out_dir

    needed: dict[tuple[str, int, int], set[str]] = {}
    for run in runs:
        key = (run.task, int(run.budget.get("recipe_episodes", default_episodes)), int(run.budget.get("recipe_seed", 0)))
        needed.setdefault(key, set()).add(run.dataset)
    for (task, episodes, seed), qualities in sorted(needed.items()):
        env_id = tasks[task]
        continuous_recipe(env_id, out_dir=default_out_dir(env_id, episodes, seed), episodes=episodes, seed=seed,
                          qualities=sorted(qualities))


def prepare_mpe(runs: Sequence[Any], runs_dir: Path) -> None:
    """Write every recipe dataset the pending ``runs`` need (a no-op for files already there)."""
    prepare_recipes(runs, TASKS, DEFAULT_RECIPE_EPISODES)


def run_mpe_cell(run, workdir: Path) -> dict[str, float]:  # noqa: ANN001  (a lit_omarl.repro.RunSpec)
    """``run_fn`` of the MPE tables: the algorithm's MPE config on the cell's recipe file."""
    path = recipe_file(run.task, run.dataset, dict(run.budget))
    return fit_recipe_cell(run, workdir, path, f"{config_algorithm(run)}/mpe/simple_spread.yaml")


def mpe_profiles(smoke_cells: Sequence[str]) -> tuple[Profile, ...]:
    return (
        Profile("smoke", seeds=(0,), cells=smoke_cells,
                budget={"max_steps": 20, "eval_every_steps": 0, "eval_episodes": 4, "final_eval_episodes": 8,
                        "batch_size": 64, "recipe_episodes": 40},
                description="pipeline check of a few cells: 40-episode datasets, 20 updates, 1 seed"),
        Profile("default", seeds=(0, 1, 2),
                budget={"max_steps": 5000, "eval_every_steps": 1000, "eval_episodes": 32, "final_eval_episodes": 128,
                        "recipe_episodes": DEFAULT_RECIPE_EPISODES},
                description=f"{DEFAULT_RECIPE_EPISODES}-episode datasets, 5000 updates of 1024 transitions, 3 seeds, "
                            "128 evaluation episodes"),
        Profile("paper", seeds=PAPER_SEEDS,
                budget={"max_steps": 100_000, "eval_every_steps": 5000, "eval_episodes": 32, "final_eval_episodes": 128,
                        "recipe_episodes": 40_000},
                num_gpus=0.25,
                description="OMAR-sized datasets (1M transitions), 1e5 updates, 5 seeds"),
    )


#: the official CFCQL-C code's learning rates: 0.01 on spread (the value in these configs), 1e-3 on the other MPE tasks
OTHER_TASK_LR = {"actor_lr": 1e-3, "critic_lr": 1e-3}
SPREAD_LR_CONFIGS = ("cfcql_c", "macql_c", "omar_c", "icql_c")


def mpe_table(name: str, title: str, algorithms: Sequence[str], datasets: Sequence[str], paper_source: str,
              paper_rows: dict[tuple[str, str], list[Any]], *, all_tasks: bool, smoke_cells: Sequence[str],
              configs: dict[str, str], overrides: dict | None = None) -> TableSpec:
    """An MPE table: tasks with shipped behaviour policies (all with ``all_tasks``), ours beside the paper's."""
    from lit_omarl.repro.table import PaperNumbers

    tasks = tuple(TASKS) if all_tasks else shipped_tasks(tuple(TASKS))
    if not tasks:
        raise SystemExit(f"{name}: no MPE task of the table has shipped behaviour policies; train them with "
                         "python -m lit_omarl.behaviour.matd3_online and use --all-tasks")
    missing = [t for t in TASKS if t not in tasks]
    cell_overrides_: dict = {("*", "*", col): {"config_algorithm": directory} for col, directory in configs.items()}
    for task in tasks:
        for column, directory in configs.items():
            if task != "CN" and directory in SPREAD_LR_CONFIGS:
                cell_overrides_[(task, "*", column)] = {"config_algorithm": directory, **OTHER_TASK_LR}
    cell_overrides_.update(overrides or {})
    return TableSpec(
        name=name,
        title=title,
        metric="normalized_score",
        tasks=tasks,
        datasets=tuple(datasets),
        algorithms=tuple(algorithms),
        profiles=mpe_profiles(smoke_cells),
        paper=PaperNumbers.from_rows(paper_source, algorithms, {k: v for k, v in paper_rows.items() if k[0] in tasks}),
        run_fn="lit_omarl.repro.mpe:run_mpe_cell",
        prepare_fn="lit_omarl.repro.mpe:prepare_mpe",
        overrides=cell_overrides_,
        deviations=(
            "Environment: lit_omarl's batched torch MPE (checked step by step against mpe2, docs/CONTINUOUS.md); "
            "CN = simple_spread; PP = simple_tag and World = simple_world_comm, both with lit_omarl's trained prey "
            "(prey_policy='pretrained'; OMAR's pretrained prey does not ship with anything we can download).",
            "Datasets: generated by lit_omarl with OMAR's recipe (`lit-omarl data continuous-recipe`) from MATD3 "
            "policies trained by lit_omarl (lit_omarl/assets/behaviour/mpe_<task>/), not OMAR's files; medium / "
            "expert with 0.1 Gaussian action noise; sizes per the profile (OMAR: 1M transitions).",
            "Normalized score: 100 (R - R_random) / (R_expert - R_random) with lit_omarl's references (uniform random "
            "actions; the shipped expert, greedy), lit_omarl/envs/reference_returns.py.",
            ("Tasks: only tasks with shipped behaviour policies run by default; not run here: " + ", ".join(missing) + ".")
            if missing else "Tasks: every task of the paper's table.",
            "Hyper-parameters: configs/<algo>/mpe/simple_spread.yaml for every task (learning rates 1e-3 instead of "
            "0.01 off spread, as the CFCQL-C code); CFCQL alpha per dataset only where the code gives it (spread).",
            "Budget: see the profile row; far below the papers' training length.",
        ),
    )
