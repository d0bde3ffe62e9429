"""mabcq.md Fig. 2 (and Fig. 3's value spread) on MaMuJoCo: per-agent datasets, learning curves.

A cell ``(task, "mabcq", column)`` trains ``configs/<column's config>/mamujoco/<task>.yaml`` on the
task's per-agent datasets B_0 ... B_{N-1} of :mod:`lit_omarl.behaviour.mabcq_recipe` (passed as
``data.agent_paths``: agent i's learner reads only file i). ``prepare_mabcq`` writes them once before
the runs (cached, never overwriting). Budget keys besides :data:`lit_omarl.repro.train.BUDGET_KEYS`:

* ``recipe_episodes``: episodes per agent's file of the fixed-length task, HalfCheetah (the recipe's
  shares: 20 % early training, 35 % own medium / others expert, 35 % own expert / others medium,
  10 % all expert);
* ``recipe_transitions``: transitions per agent's file of the tasks whose episodes end early (Walker2d,
  Hopper, Ant: the shares count transitions there, :mod:`lit_omarl.behaviour.mabcq_recipe`). Each key
  applies only to its kind of task (a profile's budget is shared by every task); a task without its
  key gets the recipe's default size (min(1M transitions, 5 x its replay buffer)) in the folder
  ``lit-omarl data mabcq-recipe --env ENV`` writes (it reads the replay buffer to know the size);
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

#: the table's task names -> env ids (mabcq.md Table 6: HalfCheetah 2 agents, Walker 2, Hopper 3, Ant 4 with the
#: 27-dimensional state; the Ant policies' env options drop the contact forces)
TASKS = {"HalfCheetah-2x3": "mamujoco/HalfCheetah-2x3", "Walker2d-2x3": "mamujoco/Walker2d-2x3",
         "Hopper-3x1": "mamujoco/Hopper-3x1", "Ant-4x2": "mamujoco/Ant-4x2"}
DEFAULT_RECIPE_EPISODES = 720  # all the HalfCheetah-2x3 replay buffer allows (144 early episodes = 20 %)
SPREAD_TAG = "train/value_spread"


def shipped_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """The tasks whose MATD3 medium and expert policies ship with lit_omarl."""
    from lit_omarl.behaviour import ASSETS
    from lit_omarl.behaviour.continuous_recipe import env_dir

    return tuple(t for t in tasks if all((ASSETS / env_dir(TASKS[t]) / f"{q}.pt").is_file() for q in ("medium", "expert")))


#: tasks whose episodes always run to the limit (HalfCheetah never terminates): their recipe counts episodes
FIXED_LENGTH = ("HalfCheetah-2x3",)


def _size(task: str, budget: dict[str, Any]) -> dict[str, int]:
    """The recipe size of ``task`` in a budget: ``{"episodes": E}`` (fixed-length task), ``{"transitions": T}``
    (the others) or {} (the recipe's default size)."""
    key = "episodes" if task in FIXED_LENGTH else "transitions"
    return {key: int(budget[f"recipe_{key}"])} if f"recipe_{key}" in budget else {}


def recipe_dir(task: str, budget: dict[str, Any]) -> Path:
    """Folder of the task's per-agent files at the budget's recipe settings."""
    from lit_omarl.behaviour.continuous_recipe import env_dir
    from lit_omarl.behaviour.mabcq_recipe import default_dir, default_out_dir, default_transitions_dir

    seed = int(budget.get("recipe_seed", 0))
    size = _size(task, budget)
    if "episodes" in size:
        out = default_out_dir(TASKS[task], size["episodes"], seed)
    elif "transitions" in size:
        out = default_transitions_dir(TASKS[task], size["transitions"], seed)
    early = str(budget.get("recipe_early", "medium_replay"))
    if not size and early == "medium_replay":  # the recipe's default size: the folder its command line writes
        return default_dir(TASKS[task], seed)
    if not size:
        out = default_out_dir(TASKS[task], 0, seed).with_name(f"{env_dir(TASKS[task])}_default_s{seed}")
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

    settings = {}  # one folder lookup per (task, recipe settings): without a size key it reads the replay buffer
    for run in runs:
        budget = dict(run.budget)
        recipe_keys = tuple(sorted((k, v) for k, v in budget.items() if k.startswith("recipe_")))
        settings[(run.task, recipe_keys)] = (run.task, budget)
    needed = {recipe_dir(task, budget): (task, budget) for task, budget in settings.values()}
    for folder, (task, budget) in sorted(needed.items()):
        env_id = TASKS[task]
        replay = _early_file(env_id, str(budget.get("recipe_early", "medium_replay")), folder)
        mabcq_recipe(env_id, folder, seed=int(budget.get("recipe_seed", 0)), replay=replay, **_size(task, budget))


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


__all__ = ["DEFAULT_RECIPE_EPISODES", "FIXED_LENGTH", "TASKS", "agent_files", "prepare_mabcq", "recipe_dir", "run_mabcq_cell",
           "shipped_tasks"]
