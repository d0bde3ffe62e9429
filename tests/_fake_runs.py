"""Fake run functions for tests/test_repro.py, importable from spawned worker processes.

Scores are deterministic functions of the cell and the seed. Behaviour that
must not change run ids is controlled through environment variables, which
spawned workers inherit:

- ``FAKE_RUN_SLEEP_S``: seconds each run sleeps (to kill a reproduction mid-way).
- ``FAKE_RUN_INTERRUPT_AFTER``: raise KeyboardInterrupt when starting the k+1-th
  run of this process (simulates Ctrl-C in ``--workers 0`` mode).
- ``FAKE_RUN_CONFIG``: a config file each run records as trained (``repro/inputs.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lit_omarl.repro.inputs import record_config
from lit_omarl.repro.table import PaperNumbers, Profile, RunSpec, TableSpec

# Per-seed episode returns of the crafted table (seeds 0, 1, 2).
SCORES: dict[tuple[str, str, str], list[float]] = {
    ("t1", "d1", "A"): [1.0, 2.0, 3.0],  # mean 2, std 1; Welch vs B: p = 0.021 -> separable
    ("t1", "d1", "B"): [4.0, 5.0, 6.0],  # mean 5, std 1 -> best
    ("t1", "d1", "C"): [2.0, 4.0, 6.0],  # mean 4, std 2; Welch vs B: p = 0.48 -> '*'
    ("t1", "d2", "A"): [1.0, 1.0, 1.0],  # tied best with B
    ("t1", "d2", "B"): [1.0, 1.0, 1.0],
    ("t1", "d2", "C"): [0.0, 0.0, 0.0],  # constant and different from the best -> separable
}

_started = 0


def fake_run(run: RunSpec, workdir: Path) -> dict[str, float]:
    """Deterministic scores from (cell, seed); ``run.overrides`` 'fail' raises, 'crash' kills the process."""
    global _started
    _started += 1
    limit = os.environ.get("FAKE_RUN_INTERRUPT_AFTER")
    if limit is not None and _started > int(limit):
        raise KeyboardInterrupt
    (workdir / "pid").write_text(str(os.getpid()))
    if os.environ.get("FAKE_RUN_CONFIG"):
        record_config(workdir, os.environ["FAKE_RUN_CONFIG"])
    time.sleep(float(os.environ.get("FAKE_RUN_SLEEP_S", "0")))
    if run.overrides.get("crash"):
        os._exit(3)  # the worker process dies, as when killed for lack of memory
    if run.overrides.get("fail"):
        raise RuntimeError(f"planned failure of {run.label}")
    values = SCORES.get(tuple(run.cell))
    value = values[run.seed] if values and run.seed < len(values) else float(run.seed + len(run.algorithm))
    return {"episode_return": value, "win_rate": run.seed / 10}


def bad_scores(run: RunSpec, workdir: Path) -> dict[str, float]:
    """Returns no 'episode_return': every run fails validation."""
    return {"win_rate": 0.5}


def make_table(**changes: object) -> TableSpec:
    """The crafted 1 task x 2 datasets x 3 algorithms table with seeds 0, 1, 2 at 'default'."""
    settings: dict[str, object] = dict(
        name="fake_table",
        title="Fake table",
        metric="episode_return",
        tasks=("t1",),
        datasets=("d1", "d2"),
        algorithms=("A", "B", "C"),
        profiles=(
            Profile("smoke", seeds=(0,), budget={"max_steps": 1}, num_gpus=0.25),
            Profile("default", seeds=(0, 1, 2), budget={"max_steps": 10, "eval_episodes": 4}),
            Profile("paper", seeds=(0, 1, 2, 3, 4), budget={"max_steps": 1000}),
        ),
        paper=PaperNumbers(
            source="fake paper Table 1",
            values={
                ("t1", "d1", "A"): 6.0,
                ("t1", "d1", "B"): (5.1, 0.2),
                ("t1", "d1", "C"): (7.0, 0.5),
                ("t1", "d2", "A"): (1.0, 0.0),
            },
        ),
        run_fn="_fake_runs:fake_run",
        deviations=("Fake data instead of the paper's.",),
    )
    settings.update(changes)
    return TableSpec(**settings)  # type: ignore[arg-type]
