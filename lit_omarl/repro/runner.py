"""Run a table's grid: skip finished runs, run the rest locally or on Ray, render the tables.

Every run lives in ``<runs-dir>/<run_id>/``, which is also the ``workdir``
handed to ``run_fn`` (logs, checkpoints). A run counts as finished only when
its ``result.json`` exists and parses; the driver writes that file
atomically (temporary file + ``os.replace``) after the run returned, so
killing the reproduction at any moment and running the same command again
neither loses nor duplicates a finished run. A run that raises gets an
``error.txt`` with its traceback instead, and is attempted again next time.
A workdir may hold leftovers of an interrupted attempt (e.g. checkpoints a
``run_fn`` can resume from).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import math
import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lit_omarl.repro.inputs import changed_configs, read_inputs
from lit_omarl.repro.render import RenderMeta, format_duration, write_outputs
from lit_omarl.utils.atomic import atomic_write_text
from lit_omarl.repro.table import ReproError, RunResult, RunSpec, TableSpec, load_callable

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
STALE_DIR = "_stale"

#: Version of what a run *does* beyond its :class:`RunSpec` (which names its
#: settings). A stored result of another protocol is not reused: its folder is
#: moved to ``<runs-dir>/_stale/`` and the run is trained again.
#: 1: the run seed seeded only ``seed_everything``; batch order and evaluation
#:    episodes used seed 0 for every seed (results before 2026-11-22).
#: 2: the run seed also seeds the DataModule (``data.seed``) and the module
#:    (``model.init_args.seed``).
RUN_PROTOCOL = 2


def lit_omarl_version() -> str:
    """The installed lit_omarl version ('unknown' when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lit-omarl")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class RunOutcome:
    """What one attempt of a run produced: scores, or the traceback of its failure."""

    run: RunSpec
    wall_time_s: float
    scores: dict[str, float] | None = None
    error: str | None = None
    version: str = "unknown"
    #: what the run recorded in its workdir's inputs.json (repro/inputs.py); travels with the
    #: outcome because a Ray worker's workdir stays on its node
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ReproductionReport:
    """Summary of one invocation of :func:`reproduce`."""

    table: str
    profile: str
    n_grid: int
    n_skipped: int
    outcomes: list[RunOutcome] = field(default_factory=list)
    n_results: int = 0
    md_path: Path | None = None
    csv_path: Path | None = None

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


# ---------------------------------------------------------------- the grid


def expand_grid(table: TableSpec, profile: str, seeds: Sequence[int] | None = None) -> list[RunSpec]:
    """Every run of ``table`` at ``profile``, seed-major (all cells of seed 0 first, so a
    partial reproduction already covers the whole table)."""
    if profile not in table.profiles:
        raise ReproError(f"table {table.name} has no profile {profile!r} (has {sorted(table.profiles)})")
    prof = table.profiles[profile]
    cells = [c for c in table.cells()
             if not prof.cells or any(fnmatch.fnmatchcase(f"{c.task}/{c.dataset}/{c.algorithm}", p) for p in prof.cells)]
    return [
        RunSpec(table.name, cell.task, cell.dataset, cell.algorithm, seed, profile,
                budget=dict(prof.budget), overrides=table.overrides_for(cell))
        for seed in (prof.seeds if seeds is None else seeds)
        for cell in cells
    ]


def select(runs: Sequence[RunSpec], pattern: str | None) -> list[RunSpec]:
    """Runs whose label ('task/dataset/algorithm/seedN') or run id matches the glob ``pattern``;
    a pattern without glob characters matches as a substring."""
    if not pattern:
        return list(runs)
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return [r for r in runs if fnmatch.fnmatchcase(r.label, pattern) or fnmatch.fnmatchcase(r.run_id, pattern)]


def run_dir(runs_dir: Path, run: RunSpec) -> Path:
    return runs_dir / run.run_id


# ---------------------------------------------------------------- result files


def check_scores(scores: Any, metric: str) -> dict[str, float]:
    """Validate what a ``run_fn`` returned: a mapping of score names to finite numbers including ``metric``."""
    if not isinstance(scores, Mapping):
        raise TypeError(f"run_fn must return a dict of scores, got {type(scores).__name__}")
    checked: dict[str, float] = {}
    for key, value in scores.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"score {key!r} is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"score {key!r} is not finite: {number}")
        checked[str(key)] = number
    if metric not in checked:
        raise KeyError(f"run_fn returned no {metric!r} score (got {sorted(checked)})")
    return checked


def load_result(runs_dir: Path, run: RunSpec, metric: str) -> RunResult | None:
    """The finished result of ``run``, or ``None`` when its result file is missing or invalid."""
    try:
        payload = json.loads((run_dir(runs_dir, run) / RESULT_FILE).read_text(encoding="utf-8"))
        if payload["run_id"] != run.run_id or RunSpec.from_dict(payload["run"]).run_id != run.run_id:
            return None
        if result_protocol(payload) != RUN_PROTOCOL or changed_configs(payload.get("inputs")):
            return None
        return RunResult(
            run=run,
            scores=check_scores(payload["scores"], metric),
            wall_time_s=float(payload["wall_time_s"]),
            version=str(payload.get("lit_omarl_version", "unknown")),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def result_protocol(payload: dict[str, Any]) -> int:
    """The :data:`RUN_PROTOCOL` a stored result was produced under (1 when it predates the field)."""
    return int(payload.get("protocol", 1))


def stale_reason(folder: Path) -> str | None:
    """Why the contents of a run folder must not be reused (``None``: they may).

    A result of another :data:`RUN_PROTOCOL`, or a result or interrupted attempt
    that trained a config whose content changed since (:mod:`lit_omarl.repro.inputs`).
    """
    try:
        payload = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
        protocol = result_protocol(payload)
        inputs = payload.get("inputs")
    except (OSError, ValueError, TypeError, AttributeError):
        protocol, inputs = None, None
    if protocol is not None and protocol != RUN_PROTOCOL:
        return f"protocol{protocol}"
    try:
        inputs = inputs or read_inputs(folder)
    except ValueError:
        return "unreadable-inputs"
    if changed_configs(inputs):
        return "config-changed"
    return None


def retire_stale(runs_dir: Path, run: RunSpec, stream: IO[str]) -> Path | None:
    """Move the folder of ``run`` aside when :func:`stale_reason` finds its contents stale.

    Its checkpoints would otherwise be resumed by the new attempt. Nothing is
    deleted: the folder goes to ``<runs-dir>/_stale/<run_id>.<reason>[.<k>]``
    (reason ``protocol<p>`` or ``config-changed``).
    """
    folder = run_dir(runs_dir, run)
    if not folder.is_dir():
        return None
    reason = stale_reason(folder)
    if reason is None:
        return None
    stale_root = runs_dir / STALE_DIR
    stale_root.mkdir(parents=True, exist_ok=True)
    target = stale_root / f"{run.run_id}.{reason}"
    k = 1
    while target.exists():
        target = stale_root / f"{run.run_id}.{reason}.{k}"
        k += 1
    folder.rename(target)
    why = (f"result of run protocol {reason.removeprefix('protocol')} (now {RUN_PROTOCOL})" if reason.startswith("protocol")
           else "trained a config whose content changed since" if reason == "config-changed"
           else "its inputs.json is unreadable")
    print(f"  {run.label}: {why}; moved to {target}; running it again", file=stream)
    return target


def write_outcome(runs_dir: Path, outcome: RunOutcome) -> Path:
    """Record an attempt: ``result.json`` when it succeeded, ``error.txt`` when it failed (both atomic)."""
    folder = run_dir(runs_dir, outcome.run)
    if outcome.ok:
        payload = {
            "run_id": outcome.run.run_id,
            "run": outcome.run.to_dict(),
            "scores": outcome.scores,
            "wall_time_s": outcome.wall_time_s,
            "lit_omarl_version": outcome.version,
            "protocol": RUN_PROTOCOL,
            "inputs": outcome.inputs,
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
        }
        atomic_write_text(folder / RESULT_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")
        (folder / ERROR_FILE).unlink(missing_ok=True)
        return folder / RESULT_FILE
    text = f"run {outcome.run.label} ({outcome.run.run_id}) failed after {outcome.wall_time_s:.1f} s\n\n{outcome.error}"
    atomic_write_text(folder / ERROR_FILE, text)
    return folder / ERROR_FILE


# ---------------------------------------------------------------- one run (inside a worker)


def _limit_torch_threads(threads: int | None) -> None:
    """Apply the per-worker thread budget to torch if the run imported it (never import it here)."""
    torch = sys.modules.get("torch")
    if threads is not None and torch is not None:
        torch.set_num_threads(threads)


def execute_run(run: RunSpec, run_fn: str, metric: str, workdir: str, threads: int | None) -> RunOutcome:
    """Import ``run_fn``, call it on ``run`` in ``workdir`` and return its outcome; never raises an Exception."""
    start = time.perf_counter()
    try:
        fn = load_callable(run_fn)
        _limit_torch_threads(threads)
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        scores = check_scores(fn(run, path), metric)
        return RunOutcome(run, time.perf_counter() - start, scores=scores, version=lit_omarl_version(),
                          inputs=read_inputs(path))
    except Exception:  # a failed run is recorded, not fatal
        return RunOutcome(run, time.perf_counter() - start, error=traceback.format_exc(), version=lit_omarl_version())


def _exit_when_orphaned(parent_pid: int) -> None:
    """Worker watchdog: if the driver dies (even by SIGKILL), stop instead of training for nobody."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def _init_worker(threads: int, parent_pid: int) -> None:
    """Pool initializer: thread budget, SIGINT left to the driver, orphan watchdog."""
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    _limit_torch_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


# ---------------------------------------------------------------- engines


@contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Set OMP/MKL thread counts while workers are spawned, so torch reads them at import."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update({name: str(threads) for name in THREAD_ENV_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_in_process(pending: Sequence[RunSpec], run_fn: str, metric: str, runs_dir: Path) -> Iterator[RunOutcome]:
    """Run one after another in this process (``--workers 0``; handy under a debugger)."""
    for run in pending:
        yield execute_run(run, run_fn, metric, str(run_dir(runs_dir, run)), None)


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes now (shutdown alone would wait for the runs in flight)."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _future_outcome(future: Future, run: RunSpec) -> RunOutcome:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        error = (f"a worker process died while this run was in flight ({exc}); it or a run beside it was "
                 "killed (e.g. out of memory or os._exit); every run in flight is marked failed\n")
    except Exception as exc:  # e.g. the run's outcome could not be sent back
        error = f"worker process failed: {exc!r}\n"
    return RunOutcome(run, 0.0, error=error, version=lit_omarl_version())


def _new_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))


def worker_threads(workers: int) -> int:
    """Threads per worker: the caller's ``OMP_NUM_THREADS`` if set, else ``cpus // workers``."""
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return max(1, (os.cpu_count() or 1) // workers)


def run_local(
    pending: Sequence[RunSpec], run_fn: str, metric: str, runs_dir: Path, workers: int
) -> Iterator[RunOutcome]:
    """Run in a 'spawn' process pool of ``workers`` processes, each with ``cpus // workers`` threads.

    An ``OMP_NUM_THREADS`` set by the caller wins (a shared machine: with more
    threads than free cores, OpenMP's spinning threads slow small networks
    down by an order of magnitude). At most ``workers`` runs are submitted at a time, so when a worker dies
    (out of memory, killed) only the runs in flight are marked failed and a
    fresh pool carries on with the rest.
    """
    threads = worker_threads(workers)
    queue = deque(pending)
    in_flight: dict[Future, RunSpec] = {}
    executor: ProcessPoolExecutor | None = None
    with _thread_env(threads):
        try:
            while queue or in_flight:
                if executor is None:
                    executor = _new_pool(workers, threads)
                while queue and len(in_flight) < workers:
                    run = queue.popleft()
                    future = executor.submit(execute_run, run, run_fn, metric, str(run_dir(runs_dir, run)), threads)
                    in_flight[future] = run
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    done, _ = wait(in_flight)  # every run in flight fails with the pool
                    executor.shutdown(wait=True)
                    executor = None
                for future in done:
                    yield _future_outcome(future, in_flight.pop(future))
        except BaseException:  # Ctrl-C, or the consumer stopped: do not leave runs training
            if executor is not None:
                _stop_workers(executor)
            raise
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


def import_ray() -> Any:
    """Import Ray or explain how to install it."""
    try:
        import ray
    except ImportError:
        raise ReproError(
            "--engine ray needs Ray, which is not installed: pip install 'lit-omarl[distributed]'"
        ) from None
    return ray


def _connect_ray(ray: Any) -> None:
    """Join the running cluster (``ray start``) if there is one, else start a local Ray."""
    if ray.is_initialized():
        return
    try:
        ray.init(address="auto")
    except ConnectionError:
        ray.init()


def run_ray(
    pending: Sequence[RunSpec], run_fn: str, metric: str, runs_dir: Path, num_gpus: float
) -> Iterator[RunOutcome]:
    """One Ray task per run (1 CPU, ``num_gpus`` GPUs); the driver writes the result files,
    so worker nodes need no shared file system (their workdirs stay on the node)."""
    ray = import_ray()
    _connect_ray(ray)
    task = ray.remote(num_cpus=1, num_gpus=num_gpus)(execute_run)
    refs = {task.remote(run, run_fn, metric, str(run_dir(runs_dir, run)), 1): run for run in pending}
    waiting = list(refs)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for ref in ready:
                try:
                    yield ray.get(ref)
                except Exception as exc:  # the task's worker died
                    yield RunOutcome(refs[ref], 0.0, error=f"Ray task failed: {exc!r}\n")
    except BaseException:
        for ref in waiting:
            ray.cancel(ref, force=True)
        raise


# ---------------------------------------------------------------- progress and the whole reproduction


class Progress:
    """One line per finished run on stderr: 'done k/total, ETA h:mm:ss (...)'."""

    def __init__(self, total: int, concurrency: int, stream: IO[str]) -> None:
        self.total, self.concurrency, self.stream = total, max(1, concurrency), stream
        self.done = 0
        self.failed = 0
        self.run_times: list[float] = []

    def eta_s(self) -> float:
        """Mean run time of the successful runs so far x remaining runs / concurrency."""
        if not self.run_times:
            return 0.0
        mean = sum(self.run_times) / len(self.run_times)
        return mean * (self.total - self.done) / self.concurrency

    def update(self, outcome: RunOutcome) -> None:
        self.done += 1
        if outcome.ok:
            self.run_times.append(outcome.wall_time_s)
        else:
            self.failed += 1
        eta = str(_dt.timedelta(seconds=round(self.eta_s())))
        status = "ok" if outcome.ok else "FAILED"
        failed = f", {self.failed} failed" if self.failed else ""
        print(f"done {self.done}/{self.total}{failed}, ETA {eta} ({status}: {outcome.run.label}, "
              f"{outcome.wall_time_s:.1f} s)", file=self.stream, flush=True)


def _outcomes(
    engine: str, pending: Sequence[RunSpec], table: TableSpec, runs_dir: Path, workers: int, num_gpus: float
) -> Iterator[RunOutcome]:
    if engine == "ray":
        return run_ray(pending, table.run_fn, table.metric, runs_dir, num_gpus)
    if engine != "local":
        raise ReproError(f"unknown engine {engine!r} (local or ray)")
    if workers == 0:
        return run_in_process(pending, table.run_fn, table.metric, runs_dir)
    return run_local(pending, table.run_fn, table.metric, runs_dir, min(workers, len(pending)))


def _report_failures(failed: Sequence[RunOutcome], runs_dir: Path, stream: IO[str]) -> None:
    print(f"{len(failed)} run(s) failed:", file=stream)
    for outcome in failed:
        last = (outcome.error or "").strip().splitlines()[-1:] or ["?"]
        print(f"  {outcome.run.label}: {last[0]}\n    see {run_dir(runs_dir, outcome.run) / ERROR_FILE}", file=stream)


def _run_unfinished(
    table: TableSpec,
    profile: str,
    selected: Sequence[RunSpec],
    runs_dir: Path,
    engine: str,
    workers: int,
    report: ReproductionReport,
    stream: IO[str],
) -> None:
    """Run the selected runs that have no valid result yet, recording every outcome as it arrives."""
    if not selected:
        raise ReproError(f"--only matches none of the {report.n_grid} runs of {table.name}")
    pending = [run for run in selected if load_result(runs_dir, run, table.metric) is None]
    report.n_skipped = len(selected) - len(pending)
    print(f"{table.name} [{profile}]: {len(selected)} runs selected, {report.n_skipped} already finished, "
          f"{len(pending)} to run (engine {engine}, runs in {runs_dir})", file=stream, flush=True)
    if not pending:
        return
    for run in pending:
        retire_stale(runs_dir, run, stream)
    if engine == "ray":
        import_ray()  # fail before preparing anything
    if table.prepare_fn:
        load_callable(table.prepare_fn)(pending, runs_dir)
    progress = Progress(len(pending), min(workers, len(pending)), stream)  # ETA assumes `workers` in parallel
    for outcome in _outcomes(engine, pending, table, runs_dir, workers, table.profiles[profile].num_gpus):
        write_outcome(runs_dir, outcome)
        progress.update(outcome)
        report.outcomes.append(outcome)


def reproduce(
    table: TableSpec,
    profile: str = "default",
    *,
    engine: str = "local",
    workers: int | None = None,
    out_dir: Path | None = None,
    runs_dir: Path | None = None,
    only: str | None = None,
    seeds: Sequence[int] | None = None,
    render_only: bool = False,
    command: str | None = None,
    stream: IO[str] | None = None,
) -> ReproductionReport:
    """Run every unfinished run of ``table`` at ``profile`` and render its markdown and CSV tables.

    Defaults: ``out_dir`` ./results, ``runs_dir`` ./runs/<table>/<profile>,
    ``workers`` the number of CPUs (0 = in this process). The tables always
    cover the whole grid; ``only`` restricts what is run. Failed runs do not
    stop the others; they are listed at the end and give ``exit_code`` 1.
    """
    stream = stream or sys.stderr
    grid = expand_grid(table, profile, seeds)
    prof = table.profiles[profile]
    out_dir = Path(out_dir) if out_dir is not None else Path.cwd() / "results"
    runs_dir = Path(runs_dir) if runs_dir is not None else Path.cwd() / "runs" / table.name / profile
    workers = (os.cpu_count() or 1) if workers is None else workers
    start = time.monotonic()
    report = ReproductionReport(table.name, profile, n_grid=len(grid), n_skipped=0)

    if not render_only:
        _run_unfinished(table, profile, select(grid, only), runs_dir, engine, workers, report, stream)

    results = [r for run in grid if (r := load_result(runs_dir, run, table.metric)) is not None]
    report.n_results = len(results)
    meta = RenderMeta(
        command=command or f"lit_omarl.repro.reproduce({table.name!r}, profile={profile!r})",
        profile=prof,
        seeds=tuple(seeds) if seeds is not None else prof.seeds,
        version=lit_omarl_version(),
        date=_dt.date.today().isoformat(),
        elapsed_s=None if render_only else time.monotonic() - start,
    )
    report.md_path, report.csv_path = write_outputs(table, results, meta, out_dir)
    print(f"wrote {report.md_path} and {report.csv_path} ({len(results)}/{len(grid)} runs finished, "
          f"{format_duration(time.monotonic() - start)})", file=stream)
    if report.failed:
        _report_failures(report.failed, runs_dir, stream)
    return report
