"""mabcq.md Fig. 2 (and Fig. 3's value spread) on MaMuJoCo: per-agent datasets, learning curves.

A cell ``(task, "mabcq", column)`` trains ``configs/<column's config>/mamujoco/<task>.yaml`` on the
task's per-agent datasets B_0 ... B_{N-1} of :mod:`lit_omarl.behaviour.mabcq_recipe` (passed as
``data.agent_paths``: agent i's learner reads only file i). ``prepare_mabcq`` writes them once before
the runs (cached, never overwriting). Budget keys besides :data:`lit_omarl.repro.train.BUDGET_KEYS`:

* ``recipe_episodes``: episodes per agent's file (the recipe's shares: 20 % early training, 35 %
  own medium / others expert, 35 % own expert / others medium, 10 % all expert);
* ``recipe_seed``: the recipe seed (default 0);
* ``recipe_early``: where the 20 % early-training episodes come from: ``"medium_replay"`` (default;
  the continuous recipe's replay buffer of the behaviour training up to the medium level, re-run if
  missing: as long as that training took) or ``"uniform"`` (uniform random actions: a stand-in for
  pipeline checks only, stated in the smoke profile's description).

Scores per run: the final evaluation (``episode_return``, ``normalized_score``), the periodic test
returns as ``return_step_<k>`` (the curves of Fig. 2) and, for the Q-learners, the logged spread of
the agents' values at s' (``max_i V_i - min_i V_i``, Fig. 3's "difference in value estimates") as
``value_spread_step_<k>`` on a 20-point grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from lit_omarl.repro.train import config_algorithm, fit_recipe_cell

#: the table's task names -> env ids
TASKS = {"HalfCheetah-2x3": "mamujoco/HalfCheetah-2x3"}
DEFAULT_RECIPE_EPISODES = 720  # all the HalfCheetah-2x3 replay buffer allows (144 early episodes = 20 %)
SPREAD_TAG = "train/value_spread"


def recipe_dir(task: str, budget: dict[str, Any]) -> Path:
    """Folder of the task's per-agent files at the budget's recipe settings."""
    from lit_omarl.behaviour.mabcq_recipe import default_out_dir

    out = default_out_dir(TASKS[task], int(budget.get("recipe_episodes", DEFAULT_RECIPE_EPISODES)),
                          int(budget.get("recipe_seed", 0)))
    early = str(budget.get("recipe_early", "medium_replay"))
    return out if early == "medium_replay" else out.with_name(f"{out.name}_early-{early}")


def agent_files(task: str, budget: dict[str, Any]) -> list[Path]:
    from lit_omarl.behaviour.mabcq_recipe import agent_paths

    return [Path(p) for p in agent_paths(recipe_dir(task, budget), TASKS[task])]


def _early_file(env_id: str, early: str, folder: Path) -> Path | None:
    """The ``replay`` argument of the recipe: None (the continuous recipe's medium_replay) or a stand-in file."""
    if early == "medium_replay":
        return None
    if early != "uniform":
        raise ValueError(f"budget key recipe_early: 'medium_replay' or 'uniform', got {early!r}")
    from lit_omarl.data.generate import generate_dataset

    path = folder / "early_uniform.h5"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        generate_dataset(env_id, "uniform", 100, 0, out=path, batch_size=100)
    return path


def prepare_mabcq(runs: Sequence[Any], runs_dir: Path) -> None:  # noqa: ARG001  (prepare_fn of a TableSpec)
    """Write the per-agent datasets of every (task, recipe settings) the pending ``runs`` need."""
    from lit_omarl.behaviour.mabcq_recipe import mabcq_recipe

    needed = {}
    for run in runs:
        budget = dict(run.budget)
        needed[recipe_dir(run.task, budget)] = (run.task, budget)
    for folder, (task, budget) in sorted(needed.items()):
        env_id = TASKS[task]
        replay = _early_file(env_id, str(budget.get("recipe_early", "medium_replay")), folder)
        mabcq_recipe(env_id, folder, episodes=int(budget.get("recipe_episodes", DEFAULT_RECIPE_EPISODES)),
                     seed=int(budget.get("recipe_seed", 0)), replay=replay)


def run_mabcq_cell(run: Any, workdir: Path) -> dict[str, float]:
    """``run_fn``: the column's MaMuJoCo config on the per-agent files, plus the curves (module docstring)."""
    from lit_omarl.repro.curves import curve_on_grid, grid, read_scalars
    from lit_omarl.repro.icq import eval_curves

    files = agent_files(run.task, dict(run.budget))
    scores = fit_recipe_cell(run, workdir, files, f"{config_algorithm(run)}/mamujoco/{run.task}.yaml")
    max_steps = int(run.budget.get("max_steps", 0))
    if max_steps > 0:
        logdir = Path(workdir) / "tb" / "version_0"
        scores.update(eval_curves(logdir, scores, max_steps))
        spread = curve_on_grid(read_scalars(logdir, SPREAD_TAG), grid(max_steps))
        scores.update({f"value_spread_step_{step}": value for step, value in spread.items()})
    return scores


__all__ = ["DEFAULT_RECIPE_EPISODES", "TASKS", "agent_files", "prepare_mabcq", "recipe_dir", "run_mabcq_cell"]
