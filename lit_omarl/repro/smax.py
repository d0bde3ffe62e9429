"""SMAX tables (cfcql.md Table 3, inspo.md Table 4): datasets from the SMAX recipe, one config per algorithm.

A cell ``(map, quality, algorithm)`` trains ``configs/<algorithm>/smax/2s3z_expert.yaml``
with its data replaced by the recipe file ``smax_<map>_<quality>.h5``
(:mod:`lit_omarl.behaviour.recipe`: medium / expert / mixed from the map's
shipped QMIX behaviour policies, medium_replay from a replay dump of a
behaviour run). ``prepare_smax`` writes the files a table needs once, before
the runs (the recipe reuses identical files and never overwrites others).

Budget keys of SMAX profiles, besides :data:`lit_omarl.repro.train.BUDGET_KEYS`:
``recipe_episodes`` (episodes per generated dataset) and ``recipe_seed``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from lit_omarl.repro.table import Profile, TableSpec
from lit_omarl.repro.train import config_algorithm, fit_recipe_cell

PAPER_SEEDS = (0, 1, 2, 3, 4)
#: Environment variable naming a folder of replay dumps ``<map>/replay_winrate_*.h5`` (medium_replay).
REPLAY_ENV = "LIT_OMARL_SMAX_REPLAY_DIR"


def smax_config(run) -> str:  # noqa: ANN001
    return f"{config_algorithm(run)}/smax/2s3z_expert.yaml"


def shipped_maps() -> tuple[str, ...]:
    """SMAX maps whose medium and expert behaviour policies ship with lit_omarl."""
    from lit_omarl.behaviour import ASSETS

    return tuple(sorted(d.name[len("smax_"):] for d in ASSETS.glob("smax_*")
                        if (d / "medium.pt").is_file() and (d / "expert.pt").is_file()))


#: Marker ``lit_omarl.behaviour.ship`` writes into the README of behaviour policies that never became expert-level.
NOT_EXPERT_MARKER = "**Not expert-level:**"


def parse_all_maps(argv: Sequence[str] | None = None) -> tuple[bool, list[str]]:
    """``--all-maps`` of a SMAX table script (every map of the paper, also those without shipped behaviour
    policies) and the remaining arguments for :func:`lit_omarl.repro.main`."""
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--all-maps", action="store_true")
    ns, rest = pre.parse_known_args(argv)
    return ns.all_maps, rest


def not_expert_maps(maps: Sequence[str]) -> dict[str, str]:
    """Maps of ``maps`` whose shipped 'expert' policy is flagged not expert-level in its README,
    each with a short note (the re-evaluated win rate of the 'expert' policy when recorded)."""
    from lit_omarl.behaviour import ASSETS

    flagged: dict[str, str] = {}
    for map_name in maps:
        folder = ASSETS / f"smax_{map_name}"
        readme = folder / "README.md"
        if not readme.is_file() or NOT_EXPERT_MARKER not in readme.read_text():
            continue
        note = "flagged not expert-level in its README"
        try:
            info = json.loads((folder / "expert.json").read_text())
            note += (f"; its 'expert' policy wins {float(info['reeval_win_rate']):.2f} of "
                     f"{int(info['reeval_episodes'])} re-evaluation episodes")
        except (OSError, KeyError, TypeError, ValueError):
            pass
        flagged[map_name] = note
    return flagged


def not_expert_deviation(maps: Sequence[str]) -> tuple[str, ...]:
    """A deviation line naming the maps of ``maps`` without expert-level behaviour policies (empty if none)."""
    flagged = not_expert_maps(maps)
    if not flagged:
        return ()
    return ("Behaviour policies not expert-level: " + "; ".join(f"{m} ({note})" for m, note in flagged.items())
            + ". Every dataset of such a map comes from that weak QMIX run ('expert' is only its best checkpoint), "
              "far weaker than the paper's data, so its rows do not test the paper's setting.",)


def replay_dump(map_name: str) -> Path | None:
    """The medium_replay source of a map: the replay dump ``replay_winrate_*.h5`` (the highest
    milestone) of a qmix_online run folder ``$LIT_OMARL_SMAX_REPLAY_DIR/<map>`` or
    ``$LIT_OMARL_SMAX_REPLAY_DIR/smax_<map>_*`` (e.g. the folder of a ``--stop-at-win-rate`` run)."""
    root = os.environ.get(REPLAY_ENV)
    if not root:
        return None
    root_path = Path(root).expanduser()
    folders = [root_path / map_name, *sorted(root_path.glob(f"smax_{map_name}_*")), root_path / f"smax_{map_name}"]
    for folder in folders:
        dumps = sorted(folder.glob("replay_winrate_*.h5"))
        if dumps:
            return dumps[-1]
    return None


def recipe_quality(run) -> str:  # noqa: ANN001
    """The recipe dataset of a run: its ``recipe_quality`` override (e.g. OMAC's display name
    ``good`` -> ``omac_good``) or the table's dataset name."""
    return str(run.overrides.get("recipe_quality", run.dataset))


def recipe_file(map_name: str, quality: str, budget: dict[str, Any]) -> Path:
    from lit_omarl.behaviour.recipe import dataset_path, default_out_dir

    episodes, seed = int(budget.get("recipe_episodes", 5000)), int(budget.get("recipe_seed", 0))
    return dataset_path(default_out_dir(map_name, episodes, seed), map_name, quality)


def prepare_smax(runs: Sequence[Any], runs_dir: Path) -> None:
    """Write every recipe dataset the pending ``runs`` need (a no-op for files already there)."""
    from lit_omarl.behaviour.recipe import smax_recipe

    needed: dict[tuple[str, int, int], set[str]] = {}
    for run in runs:
        key = (run.task, int(run.budget.get("recipe_episodes", 5000)), int(run.budget.get("recipe_seed", 0)))
        needed.setdefault(key, set()).add(recipe_quality(run))
    for (map_name, episodes, seed), qualities in sorted(needed.items()):
        if map_name not in shipped_maps():
            print(f"SMAX {map_name}: no shipped behaviour policies; its runs will fail (train them with "
                  f"`python -m lit_omarl.behaviour.qmix_online --map {map_name}` and add them to lit_omarl/assets)")
            continue
        replay = replay_dump(map_name)
        if "medium_replay" in qualities and replay is None:
            print(f"SMAX {map_name}: no replay dump in ${REPLAY_ENV}/{map_name}/; medium_replay runs will fail")
            qualities = qualities - {"medium_replay"}
        if qualities:
            smax_recipe(map_name, episodes=episodes, seed=seed, replay=replay, qualities=sorted(qualities))


def run_smax_cell(run, workdir: Path, *, extra_overrides: dict[str, Any] | None = None) -> dict[str, float]:  # noqa: ANN001
    """``run_fn`` of the SMAX tables: the algorithm's SMAX config on the cell's recipe file
    (``run`` is a lit_omarl.repro.RunSpec; ``extra_overrides`` are further CLI keys, e.g. trainer callbacks)."""
    path = recipe_file(run.task, recipe_quality(run), dict(run.budget))
    return fit_recipe_cell(run, workdir, path, smax_config(run), extra_overrides)


#: File of :class:`UpdateTimer` in a run's workdir.
TIMING_FILE = "update_timing.json"


def _machine_facts() -> dict[str, float]:
    """CPU count, CPUs this process may use, torch threads and the 1-minute load average, as numbers."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return {"cpu_count": float(os.cpu_count() or 0), "cpus_usable": float(usable),
            "torch_threads": float(torch.get_num_threads()), "load_avg_1min": float(os.getloadavg()[0])}


def _update_timer_class() -> type:
    """Build :class:`UpdateTimer` (here, so that importing this module does not import Lightning)."""
    import time

    import lightning as L

    from lit_omarl.utils.atomic import atomic_write_text

    class UpdateTimer(L.Callback):
        """Wall-clock and process CPU time of the gradient updates of a run, written to ``path`` (JSON).

        An update is timed from ``on_train_batch_start`` to the ``on_train_batch_end`` of this
        callback (the whole ``training_step``: forward, backward and every optimiser step; trainer
        callbacks run before the module's, so the evaluation callback is outside). The first
        ``warmup`` updates of the process are not counted. The loop figures time everything from the
        first counted update's start to the end of training (also batch sampling, logging and
        checkpoints). ``behaviour_pretrain_s`` is the time from ``on_train_start`` to the first
        update (the behaviour pre-training of the module's ``on_train_start``; ~0 when resumed).
        A resumed run times only the updates of its last attempt.
        """

        def __init__(self, path: str, warmup: int = 10) -> None:
            self.path, self.warmup = Path(path), int(warmup)
            self.seen = 0
            self.n = 0
            self.wall = self.cpu = 0.0
            self._t: tuple[float, float] | None = None
            self._loop: tuple[float, float] | None = None
            self._train_start: float | None = None
            self.pretrain_s = 0.0
            self.facts_start: dict[str, float] = {}

        def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            self._train_start = time.perf_counter()
            self.facts_start = _machine_facts()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            now = (time.perf_counter(), time.process_time())
            if self.seen == 0 and self._train_start is not None:
                self.pretrain_s = now[0] - self._train_start
            self.seen += 1
            if self.seen > self.warmup:
                self._t = now
                if self._loop is None:
                    self._loop = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            if self._t is None:
                return
            self.wall += time.perf_counter() - self._t[0]
            self.cpu += time.process_time() - self._t[1]
            self.n += 1
            self._t = None

        def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            if self.n == 0 or self._loop is None:
                return
            loop_wall = time.perf_counter() - self._loop[0]
            loop_cpu = time.process_time() - self._loop[1]
            end = _machine_facts()
            k = 1000.0 / self.n
            payload = {
                "updates_timed": self.n,
                "wall_s_per_1000_updates": self.wall * k,
                "cpu_s_per_1000_updates": self.cpu * k,
                "loop_wall_s_per_1000_updates": loop_wall * k,
                "loop_cpu_s_per_1000_updates": loop_cpu * k,
                "behaviour_pretrain_s": self.pretrain_s,
                "cpu_count": end["cpu_count"],
                "cpus_usable": end["cpus_usable"],
                "torch_threads": end["torch_threads"],
                "load_avg_1min_start": self.facts_start.get("load_avg_1min", end["load_avg_1min"]),
                "load_avg_1min_end": end["load_avg_1min"],
            }
            atomic_write_text(self.path, json.dumps(payload, indent=2, sort_keys=True) + "\n")

    UpdateTimer.__module__ = __name__
    UpdateTimer.__qualname__ = "UpdateTimer"
    return UpdateTimer


def __getattr__(name: str) -> Any:
    """``UpdateTimer`` (a Lightning callback, built on first access; the CLI imports it by class path)."""
    if name == "UpdateTimer":
        cls = _update_timer_class()
        globals()["UpdateTimer"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_smax_cell_timed(run, workdir: Path) -> dict[str, float]:  # noqa: ANN001  (a lit_omarl.repro.RunSpec)
    """``run_fn`` of timing tables: :func:`run_smax_cell` with :class:`UpdateTimer` attached; the scores
    are the final evaluation plus the timer's numbers (see :class:`UpdateTimer`)."""
    max_steps = int(run.budget.get("max_steps", 0))
    warmup = min(10, max_steps // 4)
    timing_path = Path(workdir) / TIMING_FILE
    callback = {"class_path": "lit_omarl.repro.smax.UpdateTimer",
                "init_args": {"path": str(timing_path), "warmup": warmup}}
    scores = run_smax_cell(run, workdir, extra_overrides={"trainer.callbacks": [callback]})
    if not timing_path.is_file():
        raise RuntimeError(f"{run.label}: training finished without {timing_path}")
    timing = json.loads(timing_path.read_text())
    return {**scores, **{k: float(v) for k, v in timing.items()}}


def smax_profiles(smoke_cells: Sequence[str]) -> tuple[Profile, ...]:
    """Budgets of the SMAX tables; the smoke profile runs only ``smoke_cells`` ('map/dataset/algorithm' globs)."""
    return (
        Profile("smoke", seeds=(0,), cells=smoke_cells, budget={"max_steps": 20, "eval_every_steps": 0, "eval_episodes": 4,
                                              "final_eval_episodes": 8, "batch_size": 4,
                                              "behaviour_pretrain_steps": 10, "recipe_episodes": 16},
                description="pipeline check of a few cells: 16-episode datasets, 20 updates, 1 seed"),
        Profile("default", seeds=(0, 1, 2), budget={"max_steps": 2000, "eval_every_steps": 1000, "eval_episodes": 32,
                                                     "final_eval_episodes": 128, "batch_size": 32,
                                                     "behaviour_pretrain_steps": 1000, "recipe_episodes": 5000},
                description="5000-episode datasets, 2000 updates of 32 episodes, 3 seeds, 128 evaluation episodes"),
        Profile("paper", seeds=PAPER_SEEDS, budget={"max_steps": 100_000, "eval_every_steps": 10_000, "eval_episodes": 32,
                                                   "final_eval_episodes": 640, "batch_size": 128,
                                                   "recipe_episodes": 5000},
                num_gpus=0.25,
                description="CFCQL code: batch 128 episodes, 32-episode evaluations, 640-episode final evaluation, "
                            "5 seeds; 1e5 updates (the code counts 1e7 dataset timesteps; how many updates that is "
                            "depends on episode lengths)"),
    )


def run_maps(maps: Sequence[str], all_maps: bool) -> tuple[str, ...]:
    """The maps of a SMAX table that run: all with ``all_maps``, else those with shipped behaviour policies."""
    return tuple(maps) if all_maps else tuple(m for m in maps if m in shipped_maps())


def smax_table(
    name: str,
    title: str,
    algorithms: Sequence[str],
    maps: Sequence[str],
    datasets: Sequence[str],
    paper_source: str,
    paper_rows: dict[tuple[str, str], list[Any]],
    *,
    all_maps: bool,
    smoke_cells: Sequence[str],
    overrides: dict | None = None,
    hyper_parameters: str = "",
    metric: str = "win_rate",
    extra_deviations: Sequence[str] = (),
) -> TableSpec:
    """A SMAX table: the rows of ``maps`` with shipped behaviour policies (all with ``all_maps``),
    the paper's numbers beside ours, and the deviations every SMAX table shares, including the maps whose
    behaviour policies are not expert-level (``extra_deviations`` starting with "Datasets:" replace the
    CFCQL-recipe one)."""
    from lit_omarl.repro.table import PaperNumbers

    running = run_maps(maps, all_maps)
    if not running:
        raise SystemExit(f"{name}: no map of the table ({', '.join(maps)}) has shipped behaviour policies; "
                         "train them (python -m lit_omarl.behaviour.qmix_online) and use --all-maps")
    missing = [m for m in maps if m not in running]
    return TableSpec(
        name=name,
        title=title,
        metric=metric,
        tasks=running,
        datasets=tuple(datasets),
        algorithms=tuple(algorithms),
        profiles=smax_profiles(smoke_cells),
        paper=PaperNumbers.from_rows(paper_source, algorithms, {k: v for k, v in paper_rows.items() if k[0] in running}),
        run_fn="lit_omarl.repro.smax:run_smax_cell",
        prepare_fn="lit_omarl.repro.smax:prepare_smax",
        overrides=overrides or {},
        deviations=(
            "Simulator: SMAX (jaxmarl) instead of StarCraft II SMAC: same unit types and map names, different "
            "dynamics, observations (e.g. 2s3z obs 127 / state 120 / 10 actions vs SMAC's 80 / 120 / 11) and "
            "100-step episodes; the paper's numbers are on SMAC and are shown only for orientation.",
*(() if any(d.startswith("Datasets:") for d in extra_deviations) else (
            "Datasets: generated by lit_omarl with CFCQL's recipe (cfcql.md App. C.2) from QMIX behaviour policies "
            "trained by lit_omarl (lit_omarl/assets/behaviour/smax_<map>/; `lit-omarl data smax-recipe`); mixed = "
            f"medium and expert episodes interleaved; medium_replay = a behaviour run's replay dump (${REPLAY_ENV}).",)),
            ("Maps: only maps with shipped behaviour policies run by default; not run here: " + ", ".join(missing) + ".")
            if missing else "Maps: every map of the paper's table.",
            "Hyper-parameters: configs/<algo>/smax/2s3z_expert.yaml for every map (GRU agents 64; batch 32 episodes in "
            "the default profile vs the papers' 128)" + (f"; {hyper_parameters}" if hyper_parameters else "") + ".",
            "Budget: see the profile row; far below the papers' training length.",
            *not_expert_deviation(running),
            *extra_deviations,
        ),
    )
