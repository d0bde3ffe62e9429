"""Issue 8.3: a real reproduction killed at random moments and resumed gives the uninterrupted table.

The table is ``reproductions/inspo_table1.py``'s, run through the real runner
and ``lit_omarl.repro.train:run_cell`` (``lit-omarl fit`` per run) with a tiny
budget, a checkpoint every 3 updates, and two cells (BC: evaluation actions
sampled from the global RNG; CFCQL: behaviour model and target networks).

One chain of trials: the reproduction is started in a forked child and
SIGKILLed at a random moment (a seeded random event of a random run: its
start, a checkpoint, its result file; plus 0-100 ms), then started again and
killed again,
``KILLS`` times, and finally run to the end in this process. After every kill
no result file may be half-written, and result files already written must
never be written again (no duplicated run). The final markdown and CSV equal
those of an uninterrupted reproduction, scores bit for bit.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from lit_omarl.repro import Profile, main
from lit_omarl.repro.runner import RESULT_FILE, expand_grid, select

ROOT = Path(__file__).resolve().parents[1]
KILLS = 3
ONLY = "xor__b__[BC][CF]*"  # run ids of BC and CFCQL on XOR (b), seed 0
BUDGET = {"max_steps": 12, "eval_every_steps": 0, "final_eval_episodes": 20, "behaviour_pretrain_steps": 4,
          "episodes": 60, "batch_size": 8}
TIMING_COLUMNS = ("wall_time_s", "env_steps_per_sec")


def _table(cache: Path):
    spec = importlib.util.spec_from_file_location("_reliability_inspo_table1", ROOT / "reproductions" / "inspo_table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.TABLE
    profiles = tuple(Profile(name, seeds=(0,), budget=BUDGET) for name in ("smoke", "default", "paper"))
    tiny = {"checkpoint.every_n_train_steps": 3, "agent_hidden_dim": 8, "data.cache_dir": str(cache)}
    overrides = {**table.overrides, ("*", "*", "*"): tiny}
    return dataclasses.replace(table, profiles=profiles, overrides=overrides)


def _argv(root: Path) -> list[str]:
    return ["--profile", "smoke", "--workers", "0", "--runs-dir", str(root / "runs"), "--out", str(root / "results"),
            "--only", ONLY]


def _comparable(root: Path) -> tuple[str, list[dict]]:
    md = (root / "results" / "inspo_table1_smoke.md").read_text()
    rows = list(csv.DictReader(io.StringIO((root / "results" / "inspo_table1_smoke.csv").read_text())))
    return md[md.index("## Results"):], [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def _results(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted((root / "runs").glob(f"*/{RESULT_FILE}"))}


def _child(table, argv: list[str], log: Path) -> None:
    """Forked reproduction; 30 ms of sleep after each update (numerics untouched) widen the kill windows."""
    from lit_omarl.algos import base

    original = base.OfflineMARLModule.on_train_batch_end

    def slow(self, *args):
        original(self, *args)
        time.sleep(0.03)

    base.OfflineMARLModule.on_train_batch_end = slow
    with open(log, "a") as stream:
        os.dup2(stream.fileno(), 2)
        sys.stderr = stream
        main(table, argv)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return _table(tmp_path_factory.mktemp("repro_cache"))  # datasets generated once, shared by every run


@pytest.fixture(scope="module")
def reference(table, tmp_path_factory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("repro_reference")
    start = time.monotonic()
    assert main(table, _argv(root)) == 0
    return root, time.monotonic() - start


def _reached(root: Path, run_id: str, event) -> bool:
    """Whether the reproduction in ``root`` got to ``event`` of run ``run_id``: 'start' (its folder exists),
    a training step (its last.ckpt holds at least that step) or 'result' (its result file exists)."""
    folder = root / "runs" / run_id
    if event == "start":
        return folder.exists()
    if event == "result":
        return (folder / RESULT_FILE).exists()
    last = folder / "tb" / "version_0" / "checkpoints" / "last.ckpt"
    try:
        return torch.load(last, map_location="cpu", weights_only=True)["global_step"] >= event
    except (OSError, RuntimeError, EOFError):
        return False


def test_reproduction_killed_at_random_moments_resumes_to_the_same_table(table, reference, tmp_path):
    ref_root, _ = reference
    assert len(_results(ref_root)) == 2
    run_ids = [run.run_id for run in select(expand_grid(table, "smoke"), ONLY)]
    assert [r.split("__")[2] for r in run_ids] == ["BC", "CFCQL"]
    # the last run's result is followed only by rendering and the exit: not a point to kill at
    events = [(r, e) for r in run_ids for e in ("start", 3, 6, 9, 12, "result")][:-1]
    seed = int(os.environ.get("RELIABILITY_KILL_SEED", "8"))  # more trials: run again with other seeds
    rng = random.Random(seed)
    points = [events[i] for i in sorted(rng.sample(range(len(events)), KILLS))]  # later and later
    written: dict[Path, bytes] = {}
    log = tmp_path / "stderr.log"
    kills = []
    for run_id, event in points:
        child = multiprocessing.get_context("fork").Process(target=_child, args=(table, _argv(tmp_path), log))
        child.start()
        deadline = time.monotonic() + 120
        while child.is_alive() and not _reached(tmp_path, run_id, event) and time.monotonic() < deadline:
            time.sleep(0.005)
        child.join(timeout=rng.uniform(0.0, 0.1))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            kills.append((run_id.split("__")[2], event))
        results = _results(tmp_path)
        for path, data in results.items():  # every result file is whole
            payload = json.loads(data)
            assert payload["run_id"] == path.parent.name and "episode_return" in payload["scores"]
        for path, data in written.items():  # a finished run is never run (or written) again
            assert results[path] == data, path
        written = results
    print(f"reproduction kill/resume: seed {seed}, killed at {kills}")
    assert len(kills) == KILLS, (kills, log.read_text())
    # the last start runs whatever is left, in this process
    assert main(table, _argv(tmp_path)) == 0
    for path, data in written.items():
        assert _results(tmp_path)[path] == data, path
    assert len(_results(tmp_path)) == 2
    assert not list((tmp_path / "runs").glob(f"*/{RESULT_FILE}.*"))  # no stray copy beside a result
    assert _comparable(tmp_path) == _comparable(ref_root)
