"""MaMuJoCo tables (cfcql.md Tables 2 and 6): the MPE machinery of :mod:`lit_omarl.repro.mpe` on HalfCheetah-2x3.

A cell ``(task, quality, algorithm)`` trains ``configs/<algorithm>/mamujoco/<task>.yaml``
with its data replaced by the recipe file ``mamujoco_<task>_<quality>.h5``
(:mod:`lit_omarl.behaviour.continuous_recipe`: random / medium_replay / medium /
expert from the task's shipped MATD3 policies in
``lit_omarl/assets/behaviour/mamujoco_<task>/``). ``prepare_mamujoco`` writes
the files a table needs once, before the runs (cached; never overwriting);
medium_replay re-runs the shipped MATD3 training up to the medium level, so it
costs about as long as that training did. The evaluation env is the dataset's
own (its env options); the metric is the normalized score against the
references measured from the same policies.

Normalized score: the evaluation reports it from the task's references in
:mod:`lit_omarl.envs.reference_returns` (measured from the shipped policies; a
run whose env options have no references fails instead of reporting a score).

Cost (measured 2026-11-22, 2 busy cores, load ~4, nice 10): seconds per update
CFCQL 0.17, OMAR 0.34 (CEM search), ICQ 0.10, IQL 0.016; so the default profile
(5000 updates, 3 seeds) of Table 2 is ~18 CPU-hours on such a machine, plus
the medium_replay re-run of the MATD3 training and 10 evaluation episodes of
1000 steps per run.

Budget keys, besides :data:`lit_omarl.repro.train.BUDGET_KEYS`: ``recipe_episodes``
(episodes of 1000 steps per generated dataset) and ``recipe_seed`` (as MPE).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lit_omarl.repro.mpe import PAPER_SEEDS, prepare_recipes, recipe_path
from lit_omarl.repro.table import Profile
from lit_omarl.repro.train import config_algorithm, fit_recipe_cell

if TYPE_CHECKING:
    from lit_omarl.repro.table import TableSpec

#: the table's task names -> env ids
TASKS = {"HalfCheetah-2x3": "mamujoco/HalfCheetah-2x3"}
DEFAULT_RECIPE_EPISODES = 100  # 100k transitions, a tenth of OMAR's 1M (1000 episodes of 1000 steps)
PAPER_RECIPE_EPISODES = 1000


def shipped_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """The table tasks whose MATD3 medium and expert policies (and policies.json) ship with lit_omarl."""
    from lit_omarl.behaviour import ASSETS
    from lit_omarl.behaviour.continuous_recipe import POLICIES, env_dir

    return tuple(t for t in tasks
                 if all((ASSETS / env_dir(TASKS[t]) / name).is_file() for name in ("medium.pt", "expert.pt", POLICIES)))


def recipe_file(task: str, quality: str, budget: dict[str, Any]) -> Path:
    return recipe_path(TASKS[task], quality, budget, DEFAULT_RECIPE_EPISODES)


def prepare_mamujoco(runs: Sequence[Any], runs_dir: Path) -> None:
    """Write every recipe dataset the pending ``runs`` need (a no-op for files already there)."""
    prepare_recipes(runs, TASKS, DEFAULT_RECIPE_EPISODES)


def run_mamujoco_cell(run, workdir: Path) -> dict[str, float]:  # noqa: ANN001  (a lit_omarl.repro.RunSpec)
    """``run_fn`` of the MaMuJoCo tables: the algorithm's MaMuJoCo config on the cell's recipe file."""
    path = recipe_file(run.task, run.dataset, dict(run.budget))
    metrics = fit_recipe_cell(run, workdir, path, f"{config_algorithm(run)}/mamujoco/{run.task}.yaml")
    if "normalized_score" not in metrics:
        raise RuntimeError(f"{run.label}: no reference returns of {TASKS[run.task]} for the dataset's env options "
                           "(lit_omarl/envs/reference_returns.py)")
    return metrics


def mamujoco_profiles(smoke_cells: Sequence[str]) -> tuple[Profile, ...]:
    return (
        Profile("smoke", seeds=(0,), cells=smoke_cells,
                budget={"max_steps": 20, "eval_every_steps": 0, "eval_episodes": 1, "final_eval_episodes": 2,
                        "recipe_episodes": 2},
                description="pipeline check of a few cells: 2-episode datasets (2000 steps), 20 updates, "
                            "2 evaluation episodes, 1 seed"),
        Profile("default", seeds=(0, 1, 2),
                budget={"max_steps": 5000, "eval_every_steps": 2500, "eval_episodes": 4, "final_eval_episodes": 10,
                        "recipe_episodes": DEFAULT_RECIPE_EPISODES},
                description=f"{DEFAULT_RECIPE_EPISODES}-episode datasets (100k transitions), 5000 updates of 256 "
                            "transitions, 3 seeds, 10 evaluation episodes"),
        Profile("paper", seeds=PAPER_SEEDS,
                budget={"max_steps": 1_000_000, "eval_every_steps": 10_000, "eval_episodes": 10,
                        "final_eval_episodes": 10, "recipe_episodes": PAPER_RECIPE_EPISODES},
                num_gpus=0.25,
                description="OMAR-sized datasets (1M transitions), 1e6 updates (OUR CHOICE: cfcql.md gives only "
                            "~5 h per seed), 5 seeds, 10 evaluation episodes (OMAR's code)"),
    )


#: per-dataset hyper-parameters of the official codes' HalfCheetah runs (lit_omarl/algos/cfcql_c.py, omar_c.py)
CFCQL_ALPHA = {"random": 0.1, "medium_replay": 0.4, "medium": 1.0, "expert": 1.7}
OMAR_ALPHA = {"random": 1.0, "medium_replay": 5.0, "medium": 1.0, "expert": 5.0}
OMAR_COE = {"random": 1.0, "medium_replay": 0.9, "medium": 0.7, "expert": 0.5}


def dataset_overrides(configs: dict[str, str]) -> dict:
    """cql_alpha (and OMAR's omar_coe) per dataset for the columns whose config is CFCQL / MACQL / OMAR / ICQL."""
    out: dict = {}
    for column, directory in configs.items():
        for dataset in CFCQL_ALPHA:
            if directory in ("cfcql_c", "macql_c"):
                out[("*", dataset, column)] = {"cql_alpha": CFCQL_ALPHA[dataset]}
            elif directory == "omar_c":
                out[("*", dataset, column)] = {"cql_alpha": OMAR_ALPHA[dataset], "omar_coe": OMAR_COE[dataset]}
            elif directory == "icql_c":
                out[("*", dataset, column)] = {"cql_alpha": OMAR_ALPHA[dataset]}
    return out


def mamujoco_table(name: str, title: str, algorithms: Sequence[str], datasets: Sequence[str], paper_source: str,
                   paper_rows: dict[tuple[str, str], list[Any]], *, smoke_cells: Sequence[str],
                   configs: dict[str, str], overrides: dict | None = None,
                   extra_deviations: Sequence[str] = ()) -> "TableSpec":
    """A MaMuJoCo table (tasks with shipped behaviour policies), ours beside the paper's."""
    from lit_omarl.repro.table import PaperNumbers, TableSpec

    tasks = shipped_tasks(tuple(TASKS))
    if not tasks:
        raise SystemExit(f"{name}: no MaMuJoCo task of the table has shipped behaviour policies "
                         f"(lit_omarl/assets/behaviour/mamujoco_<task>/); train them with "
                         "python -m lit_omarl.behaviour.matd3_online --env mamujoco/HalfCheetah-2x3 and ship them")
    cell_overrides_: dict = {("*", "*", col): {"config_algorithm": directory} for col, directory in configs.items()}
    for key, value in dataset_overrides(configs).items():
        cell_overrides_[key] = {"config_algorithm": configs[key[2]], **value}
    for key, value in (overrides or {}).items():
        cell_overrides_[key] = {**cell_overrides_.get(key, {}), **value}
    return TableSpec(
        name=name,
        title=title,
        metric="normalized_score",
        tasks=tasks,
        datasets=tuple(datasets),
        algorithms=tuple(algorithms),
        profiles=mamujoco_profiles(smoke_cells),
        paper=PaperNumbers.from_rows(paper_source, algorithms, {k: v for k, v in paper_rows.items() if k[0] in tasks}),
        run_fn="lit_omarl.repro.mamujoco:run_mamujoco_cell",
        prepare_fn="lit_omarl.repro.mamujoco:prepare_mamujoco",
        overrides=cell_overrides_,
        deviations=(
            "Environment: gymnasium-robotics MaMuJoCo HalfCheetah-2x3 over gymnasium's HalfCheetah-v5 behind "
            "lit_omarl's batched env (docs/CONTINUOUS.md); the paper used HalfCheetah-v2 (mujoco-py) and OMAR's "
            "agent_obsk 0; the env options here are those of the shipped policies (policies.json).",
            "Datasets: generated by lit_omarl with OMAR's recipe (`lit-omarl data continuous-recipe`) from MATD3 "
            "policies trained by lit_omarl (lit_omarl/assets/behaviour/mamujoco_HalfCheetah-2x3/), not OMAR's "
            "files; medium / expert with 0.1 Gaussian action noise; sizes per the profile (OMAR: 1M transitions); "
            "medium_replay = the buffer of a re-run of the MATD3 training up to the medium level.",
            "Normalized score: 100 (R - R_random) / (R_expert - R_random) with lit_omarl's references (uniform random "
            "actions: -283.0; the shipped expert, greedy: 8698.4; 1000 episodes each; lit_omarl/envs/reference_returns.py).",
            "Hyper-parameters: configs/<algo>/mamujoco/HalfCheetah-2x3.yaml (the official codes' HalfCheetah settings "
            "where lit_omarl records them: batch 256, gamma 0.99, hidden 256); CFCQL alpha 0.1 / 0.4 / 1 / 1.7 and "
            "OMAR alpha 1 / 5 / 1 / 5, coe 1 / 0.9 / 0.7 / 0.5 per dataset (the codes'); MACQL takes CFCQL's and "
            "ICQL OMAR's alphas (OUR CHOICE: not reported); ICQ trains on batches of one 1000-step episode.",
            "Inputs: every algorithm standardises observations and state with the dataset's mean and std "
            "(normalize_inputs, OUR CHOICE, as TD3+BC's code; the official CFCQL / OMAR codes feed raw inputs): "
            "HalfCheetah features have std 0.1 to 10; MATD3+BC on the expert data after 3000 updates returned -191 "
            "without it and 1,326 with it (docs/CONTINUOUS.md).",
            *extra_deviations,
            "Budget: see the profile row; far below the papers' training length.",
        ),
    )
