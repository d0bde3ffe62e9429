"""The reproduction runner: grid -> resumable runs -> markdown/CSV tables, and its statistics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # spawned workers inherit sys.path and import _fake_runs
    sys.path.insert(0, str(TESTS_DIR))

from _fake_runs import make_table  # noqa: E402

from lit_omarl.repro import PaperNumbers, Profile, RunSpec, main, plot_curves, reproduce, stats  # noqa: E402
from lit_omarl.repro.runner import RESULT_FILE, RUN_PROTOCOL, expand_grid, select, worker_threads  # noqa: E402

N_RUNS = 18  # 2 rows x 3 algorithms x 3 seeds


@pytest.fixture(autouse=True)
def _no_fake_env(monkeypatch):
    monkeypatch.delenv("FAKE_RUN_SLEEP_S", raising=False)
    monkeypatch.delenv("FAKE_RUN_INTERRUPT_AFTER", raising=False)
    monkeypatch.delenv("FAKE_RUN_CONFIG", raising=False)


def _args(root: Path, *extra: str, workers: int = 0) -> list[str]:
    return ["--workers", str(workers), "--runs-dir", str(root / "runs"), "--out", str(root / "results"), *extra]


def _results(root: Path) -> list[Path]:
    return sorted((root / "runs").glob(f"*/{RESULT_FILE}"))


def _comparable(root: Path, stem: str = "fake_table") -> tuple[str, str]:
    """The markdown from '## Results' on and the CSV without its wall-time column."""
    md = (root / "results" / f"{stem}.md").read_text()
    lines = (root / "results" / f"{stem}.csv").read_text().splitlines()
    column = lines[0].split(",").index("wall_time_s")
    csv = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != column) for line in lines)
    return md[md.index("## Results"):], csv


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, str]:
    """Outputs of an uninterrupted in-process reproduction of the fake table."""
    root = tmp_path_factory.mktemp("reference")
    assert main(make_table(), _args(root)) == 0
    return _comparable(root)


# ---------------------------------------------------------------- declaration


def test_run_id_is_stable_readable_and_setting_sensitive():
    run = RunSpec("t", "smax/2s3z", "medium", "CFCQL", 0, "default", budget={"max_steps": 10})
    assert run.run_id == RunSpec.from_dict(json.loads(json.dumps(run.to_dict()))).run_id
    assert run.run_id.startswith("smax-2s3z__medium__CFCQL__seed0__")
    assert run.run_id == "smax-2s3z__medium__CFCQL__seed0__" + run.run_id[-10:]
    # Pinned: a change of the id format would orphan every stored result.
    assert RunSpec("t", "a", "b", "c", 0, "default", {"x": 1}).run_id == "a__b__c__seed0__26b11a81e7"
    changed = RunSpec("t", "smax/2s3z", "medium", "CFCQL", 0, "default", budget={"max_steps": 11})
    assert changed.run_id != run.run_id
    assert RunSpec("t", "smax/2s3z", "medium", "CFCQL", 0, "default", budget={"max_steps": 10},
                   overrides={"lr": 1e-3}).run_id != run.run_id


def test_table_validation_catches_typos():
    with pytest.raises(ValueError, match="unknown cell"):
        make_table(paper=PaperNumbers("x", {("t1", "d3", "A"): 1.0}))
    with pytest.raises(ValueError, match="missing profiles"):
        make_table(profiles=(Profile("default", seeds=(0,)),))
    with pytest.raises(ValueError, match="module:function"):
        make_table(run_fn="not a path")


def test_overrides_merge_specific_over_wildcard():
    table = make_table(overrides={("*", "*", "A"): {"lr": 1, "tau": 2}, ("t1", "d1", "A"): {"lr": 3}})
    assert table.overrides_for(("t1", "d1", "A")) == {"lr": 3, "tau": 2}
    assert table.overrides_for(("t1", "d2", "A")) == {"lr": 1, "tau": 2}
    assert table.overrides_for(("t1", "d2", "B")) == {}


def test_paper_numbers_from_rows():
    paper = PaperNumbers.from_rows("src", ("A", "B"), {("t1", "d1"): [(0.5, 0.1), None]})
    assert paper.get(("t1", "d1", "A")) == (0.5, 0.1)
    assert paper.get(("t1", "d1", "B")) is None


def test_grid_is_seed_major_and_only_selects():
    grid = expand_grid(make_table(), "default")
    assert len(grid) == N_RUNS and [r.seed for r in grid[:6]] == [0] * 6
    assert [r.label for r in select(grid, "d1/B")] == [f"t1/d1/B/seed{s}" for s in (0, 1, 2)]
    assert len(select(grid, "t1/*/seed0")) == 6


# ---------------------------------------------------------------- statistics


def test_iqm_and_mean_std_on_hand_computed_inputs():
    assert stats.iqm([1, 2, 3, 4]) == pytest.approx(2.5)
    assert stats.iqm([1, 1, 1, 1, 2, 3]) == pytest.approx(1.25)  # drops one value at each end
    summary = stats.summarize([1.0, 2.0, 3.0])
    assert (summary.mean, summary.std, summary.n) == (2.0, 1.0, 3)  # ddof=1
    assert stats.summarize([5.0]).std is None
    assert stats.summarize([]) is None


def test_welch_marker_rules():
    assert stats.welch_p_value([1, 2, 3], [4, 5, 6]) == pytest.approx(0.02131, abs=1e-4)
    assert stats.separable([1, 2, 3], [4, 5, 6]) is True
    assert stats.separable([2, 4, 6], [4, 5, 6]) is False
    assert stats.separable([1, 1, 1], [1, 1, 1]) is False  # identical constants: not separable
    assert stats.separable([0, 0, 0], [1, 1, 1]) is True
    assert stats.separable([1], [4, 5, 6]) is None  # one seed: not testable
    assert stats.best_keys({"A": 1.0, "B": 1.0, "C": 0.0}) == ["A", "B"]
    assert stats.best_keys({"A": 1.0, "C": 0.0}, higher_is_better=False) == ["C"]


def test_stratified_bootstrap_ci_is_deterministic_and_brackets_iqm():
    strata = [[1.0, 2.0, 3.0], [10.0, 11.0, 12.0, 13.0]]
    first = stats.iqm_with_ci(strata)
    assert first == stats.iqm_with_ci(strata)
    assert first.low <= first.value <= first.high and first.low < first.high
    assert (first.n_strata, first.n_values) == (2, 7)
    assert stats.stratified_bootstrap_ci([[2.0, 2.0], [2.0]]) == (2.0, 2.0)
    # A stratum is never emptied or mixed: one value per stratum gives a degenerate CI.
    assert stats.stratified_bootstrap_ci([[1.0], [3.0], [5.0], [7.0]]) == (4.0, 4.0)


def test_probability_of_improvement():
    assert stats.probability_of_improvement([[2, 4, 6], [0, 0]], [[4, 5, 6], [1]]) == pytest.approx((3 / 9 + 0) / 2)
    assert stats.probability_of_improvement([[1]], [[1]]) == 0.5
    assert stats.probability_of_improvement([[]], [[1]]) is None


# ---------------------------------------------------------------- running and rendering


def test_full_grid_in_a_process_pool_renders_the_right_numbers(tmp_path, reference):
    assert main(make_table(), _args(tmp_path, workers=2)) == 0
    assert len(_results(tmp_path)) == N_RUNS
    md = (tmp_path / "results" / "fake_table.md").read_text()
    assert "| t1 | d1 | 2.00 ± 1.00 | 6.00 | **5.00 ± 1.00** | 5.10 ± 0.20 | 4.00 ± 2.00* | 7.00 ± 0.50 |" in md
    assert "| t1 | d2 | **1.00 ± 0.00** | 1.00 ± 0.00 | **1.00 ± 0.00** | — | 0.00 ± 0.00 | — |" in md
    # IQM of pooled runs: A [1,1,1,1,2,3] -> 1.25, B -> 2.75, C [0,0,0,2,4,6] -> 1.5; P(C > B) = (3/9 + 0)/2
    assert "| A | 1.25 |" in md and "| B | 2.75 |" in md and "| C | 1.50 |" in md
    assert "| C | 1.50 | " in md and md.split("| C | 1.50 |")[1].splitlines()[0].endswith("| 2/2 | 6 | 0.17 |")
    assert "- t1 / d1: ours B (not separable: C); paper C -> within noise" in md
    assert "- t1 / d2: ours A, B; paper A -> match" in md
    assert "Fake data instead of the paper's." in md and "fake paper Table 1" in md
    assert "`python " in md and "--workers 2" in md
    csv = (tmp_path / "results" / "fake_table.csv").read_text().splitlines()
    assert csv[0] == "table,profile,task,dataset,algorithm,seed,episode_return,win_rate,wall_time_s,run_id"
    assert len(csv) == 1 + N_RUNS
    assert csv[1].startswith("fake_table,default,t1,d1,A,0,1.0,0.0,")
    assert csv[3].startswith("fake_table,default,t1,d1,A,2,3.0,0.2,")
    result = json.loads(_results(tmp_path)[0].read_text())
    assert {"run", "run_id", "scores", "wall_time_s", "lit_omarl_version"} <= set(result)
    assert _comparable(tmp_path) == reference  # pool and in-process give the same table


def test_rerun_skips_every_finished_run(tmp_path, reference):
    table = make_table()
    assert main(table, _args(tmp_path)) == 0
    before = {p: p.stat().st_mtime_ns for p in _results(tmp_path)}
    report = reproduce(table, workers=0, runs_dir=tmp_path / "runs", out_dir=tmp_path / "results")
    assert report.outcomes == [] and report.n_skipped == N_RUNS and report.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in _results(tmp_path)} == before
    assert _comparable(tmp_path) == reference


def test_deleted_and_corrupt_results_are_rerun_to_the_same_table(tmp_path, reference):
    assert main(make_table(), _args(tmp_path)) == 0
    results = _results(tmp_path)
    results[0].unlink()
    results[1].write_text('{"run_id": "trunc')  # e.g. a file written by something non-atomic
    report = reproduce(make_table(), workers=0, runs_dir=tmp_path / "runs", out_dir=tmp_path / "results")
    assert len(report.outcomes) == 2 and report.n_skipped == N_RUNS - 2
    assert _comparable(tmp_path) == reference


def test_results_of_an_older_run_protocol_are_moved_aside_and_rerun(tmp_path, reference):
    assert main(make_table(), _args(tmp_path)) == 0
    old = _results(tmp_path)[0]
    payload = json.loads(old.read_text())
    assert payload["protocol"] == RUN_PROTOCOL
    del payload["protocol"]  # as written before the field existed (protocol 1)
    payload["scores"] = {k: v + 1000.0 for k, v in payload["scores"].items()}  # must not reach the table
    old.write_text(json.dumps(payload))
    (old.parent / "last.ckpt").write_text("old weights")  # would be resumed if left in place
    report = reproduce(make_table(), workers=0, runs_dir=tmp_path / "runs", out_dir=tmp_path / "results")
    assert len(report.outcomes) == 1 and report.n_skipped == N_RUNS - 1
    stale = tmp_path / "runs" / "_stale" / f"{old.parent.name}.protocol1"
    assert json.loads((stale / RESULT_FILE).read_text())["scores"] == payload["scores"]  # kept, not deleted
    assert (stale / "last.ckpt").read_text() == "old weights" and not (old.parent / "last.ckpt").exists()
    assert json.loads(old.read_text())["protocol"] == RUN_PROTOCOL
    assert _comparable(tmp_path) == reference


def test_config_digest_recorded_and_checked(tmp_path):
    from lit_omarl.repro.inputs import CONFIG_DIR, changed_configs, config_path, read_inputs, record_config
    from lit_omarl.utils.digest import sha256_file

    assert read_inputs(tmp_path) == {}
    shipped = "inspo/xor/a.yaml"
    assert config_path(shipped) == CONFIG_DIR / shipped
    digest = record_config(tmp_path, shipped)
    assert digest == sha256_file(CONFIG_DIR / shipped)
    local = tmp_path / "local.yaml"
    local.write_text("a: 1\n")
    record_config(tmp_path, str(local))  # merged, not replaced
    inputs = read_inputs(tmp_path)
    assert inputs == {"configs": {shipped: digest, str(local): sha256_file(local)}}
    assert changed_configs(inputs) == [] and changed_configs(None) == []
    local.write_text("a: 2\n")
    assert changed_configs(inputs) == [str(local)]
    local.unlink()
    assert changed_configs(inputs) == [str(local)]  # a deleted config counts as changed
    (tmp_path / "inputs.json").write_text('{"configs": [1]}')
    with pytest.raises(ValueError, match="inputs.json"):
        read_inputs(tmp_path)
    with pytest.raises(FileNotFoundError, match="lit-omarl configs"):
        config_path("no/such/config.yaml")


def test_runs_of_an_edited_config_are_moved_aside_and_rerun(tmp_path, monkeypatch, reference):
    config = tmp_path / "cell.yaml"
    config.write_text("model: {lr: 0.1}\n")
    monkeypatch.setenv("FAKE_RUN_CONFIG", str(config))
    assert main(make_table(), _args(tmp_path)) == 0
    results = _results(tmp_path)
    assert len(results) == N_RUNS
    recorded = json.loads(results[0].read_text())["inputs"]["configs"]
    assert list(recorded) == [str(config)] and len(recorded[str(config)]) == 64
    # unchanged config: everything is reused
    report = reproduce(make_table(), workers=0, runs_dir=tmp_path / "runs", out_dir=tmp_path / "results")
    assert report.n_skipped == N_RUNS and not report.outcomes
    # an interrupted attempt trained the old content too: its checkpoint must not be resumed
    grid = expand_grid(make_table(), "default")
    partial = tmp_path / "runs" / grid[0].run_id
    (partial / RESULT_FILE).unlink()
    (partial / "last.ckpt").write_text("old weights")
    config.write_text("model: {lr: 0.2}\n")  # edited: no stored run may be reused
    report = reproduce(make_table(), workers=0, runs_dir=tmp_path / "runs", out_dir=tmp_path / "results")
    assert report.n_skipped == 0 and len(report.outcomes) == N_RUNS
    stale = sorted(p.name for p in (tmp_path / "runs" / "_stale").iterdir())
    assert stale == sorted(f"{run.run_id}.config-changed" for run in grid)
    assert (tmp_path / "runs" / "_stale" / f"{grid[0].run_id}.config-changed" / "last.ckpt").exists()
    assert not (partial / "last.ckpt").exists()
    assert _comparable(tmp_path) == reference


def test_interrupt_keeps_finished_runs_and_resume_completes(tmp_path, monkeypatch, reference):
    monkeypatch.setenv("FAKE_RUN_INTERRUPT_AFTER", "5")
    monkeypatch.setattr("_fake_runs._started", 0)
    assert main(make_table(), _args(tmp_path)) == 130
    assert len(_results(tmp_path)) == 5
    monkeypatch.delenv("FAKE_RUN_INTERRUPT_AFTER")
    assert main(make_table(), _args(tmp_path)) == 0
    assert _comparable(tmp_path) == reference


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigkill_then_resume_neither_loses_nor_duplicates_runs(tmp_path, reference):
    script = tmp_path / "fake_repro.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "from _fake_runs import make_table\n"
        "from lit_omarl.repro import main\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit(main(make_table()))\n"
    )
    env = {**os.environ, "FAKE_RUN_SLEEP_S": "0.3"}
    proc = subprocess.Popen([sys.executable, str(script), *_args(tmp_path, workers=2)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not _results(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    finished = {p: p.read_bytes() for p in _results(tmp_path)}
    assert 1 <= len(finished) < N_RUNS

    if Path("/proc").is_dir():  # the orphaned workers stop by themselves
        pids = {int(p.read_text()) for p in (tmp_path / "runs").glob("*/pid")}
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in pids)

    report = reproduce(make_table(), workers=0, runs_dir=tmp_path / "runs", out_dir=tmp_path / "results")
    assert report.exit_code == 0 and len(report.outcomes) == N_RUNS - len(finished)
    assert {p: p.read_bytes() for p in finished} == finished  # finished runs untouched
    assert _comparable(tmp_path) == reference


def test_failed_runs_are_reported_and_exit_non_zero(tmp_path, capsys):
    table = make_table(overrides={("t1", "d2", "C"): {"fail": True}})
    assert main(table, _args(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "3 run(s) failed" in err and "planned failure of t1/d2/C/seed0" in err and "done 18/18, 3 failed" in err
    errors = list((tmp_path / "runs").glob("*/error.txt"))
    assert len(errors) == 3 and "RuntimeError: planned failure" in errors[0].read_text()
    assert len(_results(tmp_path)) == N_RUNS - 3
    md = (tmp_path / "results" / "fake_table.md").read_text()
    assert "| t1 | d2 | **1.00 ± 0.00** | 1.00 ± 0.00 | **1.00 ± 0.00** | — | n/a | — |" in md


def test_a_dying_worker_fails_only_the_runs_in_flight(tmp_path, capsys):
    table = make_table(overrides={("t1", "d2", "C"): {"crash": True}})
    assert main(table, _args(tmp_path, "--seeds", "0", workers=2)) == 1
    failed = list((tmp_path / "runs").glob("*/error.txt"))
    assert 1 <= len(failed) <= 2 and "worker process died" in failed[0].read_text()
    assert len(_results(tmp_path)) == 6 - len(failed)  # a fresh pool ran the rest


def test_invalid_scores_count_as_failures(tmp_path):
    assert main(make_table(run_fn="_fake_runs:bad_scores"), _args(tmp_path, "--only", "seed0")) == 1
    assert "no 'episode_return' score" in next((tmp_path / "runs").glob("*/error.txt")).read_text()


def test_only_seeds_and_render_only(tmp_path, capsys):
    assert main(make_table(), _args(tmp_path, "--only", "d1/B", "--seeds", "0,1")) == 0
    csv = (tmp_path / "results" / "fake_table.csv").read_text().splitlines()
    assert [line.split(",")[4:6] for line in csv[1:]] == [["B", "0"], ["B", "1"]]
    md_path = tmp_path / "results" / "fake_table.md"
    assert "| t1 | d1 | n/a | 6.00 | **4.50 ± 0.71** |" in md_path.read_text()
    md_path.unlink()
    capsys.readouterr()
    assert main(make_table(), _args(tmp_path, "--render-only", "--seeds", "0,1")) == 0
    assert "runs selected" not in capsys.readouterr().err and md_path.exists()
    assert main(make_table(), _args(tmp_path, "--only", "nothing-matches")) == 2


def test_smoke_profile_writes_its_own_files(tmp_path):
    assert main(make_table(), _args(tmp_path, "--profile", "smoke")) == 0
    assert (tmp_path / "results" / "fake_table_smoke.md").exists()
    assert not (tmp_path / "results" / "fake_table.md").exists()
    md = (tmp_path / "results" / "fake_table_smoke.md").read_text()
    assert "max_steps=1" in md and "| t1 | d1 | 1.00 | 6.00 | **4.00** |" in md  # one seed: no ±


def test_ray_engine_without_ray_explains_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    assert main(make_table(), _args(tmp_path, "--engine", "ray")) == 2
    assert "pip install 'lit-omarl[distributed]'" in capsys.readouterr().err
    assert _results(tmp_path) == []


class _Ref:
    """A finished object reference of the fake Ray (hashable, like Ray's)."""

    def __init__(self, value: object) -> None:
        self.value = value


def test_ray_engine_with_a_fake_ray(tmp_path, monkeypatch):
    calls: dict[str, list] = {"init": [], "options": []}

    def init(address=None):
        calls["init"].append(address)
        if address == "auto":
            raise ConnectionError("no cluster")

    def remote(**options):
        calls["options"].append(options)
        return lambda fn: types.SimpleNamespace(remote=lambda *args: _Ref(fn(*args)))

    fake = types.SimpleNamespace(
        is_initialized=lambda: False, init=init, remote=remote, get=lambda ref: ref.value,
        wait=lambda refs, num_returns: (refs[:num_returns], refs[num_returns:]), cancel=lambda *a, **k: None,
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert main(make_table(), _args(tmp_path, "--engine", "ray", "--profile", "smoke")) == 0
    assert calls["init"] == ["auto", None] and calls["options"] == [{"num_cpus": 1, "num_gpus": 0.25}]
    assert len(_results(tmp_path)) == 6


def test_plot_curves_writes_a_png(tmp_path):
    path = plot_curves({"A": (np.arange(5), np.arange(5) ** 2), "B": ([0, 4], [1, 2])}, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_worker_threads_respects_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert worker_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_threads(4) == 3


def test_worker_threads_default_splits_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert worker_threads(2) == 4
    assert worker_threads(16) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # empty: ignored
    assert worker_threads(4) == 2


def test_profile_cells_restrict_the_grid():
    profiles = (
        Profile("smoke", seeds=(0,), cells=("t1/d2/*", "*/d1/A")),
        Profile("default", seeds=(0, 1)),
        Profile("paper", seeds=(0,)),
    )
    table = make_table(profiles=profiles)
    labels = [r.label for r in expand_grid(table, "smoke")]
    assert labels == ["t1/d1/A/seed0", "t1/d2/A/seed0", "t1/d2/B/seed0", "t1/d2/C/seed0"]
    assert len(expand_grid(table, "default")) == 2 * 6  # no patterns: every cell
