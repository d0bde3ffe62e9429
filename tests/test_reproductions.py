"""Every reproduction script's smoke profile runs end to end and writes its table."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "reproductions").glob("*.py") if not p.name.startswith("_"))


def test_there_are_reproduction_scripts():
    assert "inspo_table1.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_profile_writes_table_and_csv(script, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, str(ROOT / "reproductions" / script), "--profile", "smoke",
         "--out", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"), "--workers", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    if res.returncode != 0 and "has shipped behaviour policies" in res.stderr:
        # a SMAX table none of whose maps has trained behaviour policies yet (lit_omarl/assets/behaviour/)
        pytest.skip(res.stderr.strip().splitlines()[-1])
    assert res.returncode == 0, res.stderr[-3000:]
    name = script[:-3]
    table = (tmp_path / "results" / f"{name}_smoke.md").read_text()
    assert "| Task | Dataset |" in table
    if script not in PARTIAL_SMOKE:
        assert "n/a |" not in table.split("## IQM")[0]
    with open(tmp_path / "results" / f"{name}_smoke.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["profile"] == "smoke" for r in rows)
    if script in EXTRA_CHECKS:
        EXTRA_CHECKS[script](tmp_path / "results")
    # runs that trained shipped configs recorded their content (repro/inputs.py), and it is today's
    from lit_omarl.repro.inputs import changed_configs

    recorded = [json.loads(f.read_text()).get("inputs") or {} for f in (tmp_path / "runs").rglob("result.json")]
    assert all(changed_configs(inputs) == [] for inputs in recorded)
    if script == "inspo_table1.py":  # trains through fit_config
        assert recorded and all(inputs.get("configs") for inputs in recorded)


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_cfcql_fig1(results):
    """Second view (Fig. 1(c) returns) of the same runs, the PNG, and the curves in the CSV."""
    assert "| Task | Dataset |" in (results / "cfcql_fig1_return_smoke.md").read_text()
    assert (results / "cfcql_fig1_smoke.png").read_bytes()[:4] == b"\x89PNG"
    rows = _csv_rows(results / "cfcql_fig1_smoke.csv")
    assert len(rows) == 6 and {r["dataset"] for r in rows} == {"expert", "expert_gru"}
    for r in rows:  # 60 updates: 20 grid points of the Q curve, the final return at step 60
        assert sum(key.startswith("q_step_") and r[key] != "" for key in r) == 20
        assert float(r["return_step_60"]) == float(r["episode_return"])
        assert float(r["q_rel_error"]) == abs(float(r["q_final"]) - 100.0) / 100.0


def _check_mabcq_matrix(results):
    """The joint actions of mabcq.md: (a1, a2) = 5 from the data, (a2, a2) = 1 with vd, (a2, a1) = 6 with tn+vd."""
    joint = {r["algorithm"]: float(r["joint_payoff"]) for r in _csv_rows(results / "mabcq_matrix_joint_smoke.csv")}
    assert joint == {"dataset (Table 2)": 5.0, "vd (Table 3)": 1.0, "tn+vd (Table 4)": 6.0, "tn (not in paper)": 6.0}
    cells = {(r["task"], r["dataset"], r["algorithm"]): float(r["expected_return"])
             for r in _csv_rows(results / "mabcq_matrix_smoke.csv")}
    assert len(cells) == 16
    # tn+vd depends only on which outcomes occur (all four do): 26/6 and 37/7 exactly, as Table 4
    assert cells[("tn+vd (Table 4)", "agent 1", "a1")] == pytest.approx(26 / 6)
    assert cells[("tn+vd (Table 4)", "agent 2", "a1")] == pytest.approx(37 / 7)


def _smax_smoke_cells(name, cells):
    """SMAX tables: the smoke profile runs a few cells (Profile.cells), each with a win rate in [0, 1]."""
    def check(results):
        rows = _csv_rows(results / f"{name}_smoke.csv")
        assert {(r["task"], r["dataset"], r["algorithm"]) for r in rows} == cells
        assert all(0.0 <= float(r["win_rate"]) <= 1.0 for r in rows)
    return check


EXTRA_CHECKS = {"cfcql_fig1.py": _check_cfcql_fig1, "mabcq_matrix.py": _check_mabcq_matrix,
                "cfcql_table3.py": _smax_smoke_cells("cfcql_table3", {("2s3z", "expert", "CFCQL"), ("2s3z", "mixed", "BC")}),
                "inspo_table4.py": _smax_smoke_cells("inspo_table4", {("2s3z", "expert", "InSPO"), ("2s3z", "medium", "OMIGA")})}
# smoke profiles that run only some cells of their table (the others render as n/a)
PARTIAL_SMOKE = {"cfcql_table3.py", "inspo_table4.py", "omac_table4.py", "omac_table1.py", "cfcql_table1.py", "cfcql_table5.py",
                 "mabcq_fig2.py"}  # mabcq_fig2: smoke on HalfCheetah only, the other shipped robots' rows stay n/a


def _check_icq_fig1(results):
    """ICQ Fig. 2(b) / 7: n = 4 only, metric against the behaviour's true value, probe curve, claim section, PNG."""
    rows = _csv_rows(results / "icq_fig1_smoke.csv")
    assert {(r["dataset"], r["algorithm"]) for r in rows} == {("n4", "BCQ"), ("n4", "ICQ")}
    q_true = {"n4": 0.259375 + 99 * 0.7**4}  # the data's mean reward + 0.99 * 100 * 0.7^n
    for r in rows:
        assert float(r["q_rel_error"]) == pytest.approx(abs(float(r["q_final"]) - q_true[r["dataset"]]) / q_true[r["dataset"]],
                                                        abs=1e-6)
        assert sum(key.startswith("q0_step_") and r[key] != "" for key in r) == 6  # probed every 5 of 30 updates
        assert float(r["q0_final"]) == float(r["q0_step_30"])
        assert 0.0 <= float(r["v_policy_mc"]) <= 100 * (1 - 0.99**200) + 1e-3  # 200-step Monte-Carlo horizon
    table = (results / "icq_fig1_smoke.md").read_text()
    assert "## The paper's claim" in table and "| 4 | 24.03 |" in table
    assert (results / "icq_fig1_smoke.png").read_bytes()[:4] == b"\x89PNG"


EXTRA_CHECKS["icq_fig1.py"] = _check_icq_fig1
PARTIAL_SMOKE.add("icq_fig1.py")  # its smoke profile runs n = 4 only (Profile.cells)


def _check_inspo_table7(results):
    """InSPO Table 7: measured times of the two smoke runs (30 timed updates each), machine facts, the views."""
    rows = _csv_rows(results / "inspo_table7_smoke.csv")
    assert {(r["task"], r["dataset"], r["algorithm"]) for r in rows} == {("2s3z", "expert", "CFCQL"), ("2s3z", "expert", "InSPO")}
    for r in rows:
        assert float(r["updates_timed"]) == 30
        assert float(r["wall_s_per_1000_updates"]) > 0 and float(r["cpu_s_per_1000_updates"]) > 0
        assert float(r["loop_wall_s_per_1000_updates"]) >= float(r["wall_s_per_1000_updates"])
        assert float(r["cpu_count"]) >= 1 and float(r["torch_threads"]) >= 1
    for view in ("cpu", "loop", "load"):
        assert "| Task | Dataset |" in (results / f"inspo_table7_{view}_smoke.md").read_text()
    assert "os.cpu_count() =" in (results / "inspo_table7_smoke.md").read_text()


EXTRA_CHECKS.update({
    "inspo_table5.py": _smax_smoke_cells("inspo_table5", {("6h_vs_8z", "expert", "alpha=1"), ("6h_vs_8z", "medium", "auto KL=0.18")}),
    "inspo_table6.py": _smax_smoke_cells("inspo_table6", {("5m_vs_6m", "expert", "fixed"), ("6h_vs_8z", "medium", "semi-greedy")}),
    "inspo_table7.py": _check_inspo_table7,
})
PARTIAL_SMOKE.update({"inspo_table5.py", "inspo_table6.py", "inspo_table7.py"})


def _check_icq_fig4(results):
    """ICQ Fig. 4 on SMAX: every column on 2s3z, periodic test curves in the CSV (last point = final test),
    the return view and the PNG."""
    rows = _csv_rows(results / "icq_fig4_smoke.csv")
    assert {(r["task"], r["dataset"], r["algorithm"]) for r in rows} == {
        ("2s3z", "icq_mix", a) for a in ("ICQ-MA", "BC-MA", "QMIX", "BCQ-MA", "CQL-MA")}
    for r in rows:  # 20 updates, tests every 10
        assert 0.0 <= float(r["win_rate"]) <= 1.0 and r["win_rate_step_10"] != ""
        assert float(r["win_rate_step_20"]) == float(r["win_rate"])
        assert float(r["return_step_20"]) == float(r["episode_return"])
    assert "| Task | Dataset |" in (results / "icq_fig4_return_smoke.md").read_text()
    assert (results / "icq_fig4_smoke.png").read_bytes()[:4] == b"\x89PNG"


EXTRA_CHECKS["icq_fig4.py"] = _check_icq_fig4


def _mamujoco_smoke_cells(name, cells):
    """MaMuJoCo tables (cfcql_table2 / cfcql_table6): the smoke cells only, each with a finite normalized score."""
    def check(results):
        rows = _csv_rows(results / f"{name}_smoke.csv")
        assert {(r["task"], r["dataset"], r["algorithm"]) for r in rows} == cells
        for r in rows:
            assert abs(float(r["normalized_score"])) < 1e6 and abs(float(r["episode_return"])) < 1e6
        assert "HalfCheetah-2x3" in (results / f"{name}_smoke.md").read_text()
    return check


EXTRA_CHECKS.update({
    "cfcql_table2.py": _mamujoco_smoke_cells("cfcql_table2", {("HalfCheetah-2x3", "expert", "CFCQL"),
                                                              ("HalfCheetah-2x3", "random", "OMAR"),
                                                              ("HalfCheetah-2x3", "medium", "ICQ")}),
    "cfcql_table6.py": _mamujoco_smoke_cells("cfcql_table6", {("HalfCheetah-2x3", "expert", "+CF_T"),
                                                              ("HalfCheetah-2x3", "random", "-CF_P")}),
})
PARTIAL_SMOKE.update({"cfcql_table2.py", "cfcql_table6.py"})  # smoke runs 3 / 2 cells (Profile.cells)


def _check_mabcq_fig2(results):
    """Per-agent data for every column; the normalized view, the curves and the PNG of the same runs."""
    rows = _csv_rows(results / "mabcq_fig2_smoke.csv")
    assert {r["algorithm"] for r in rows} == {"MABCQ", "MABCQ w/o lambda_tn", "MABCQ w/o lambda_vd", "BCQ", "DDPG",
                                              "Behavior"} and {r["task"] for r in rows} == {"HalfCheetah-2x3"}
    cheetah = [line for line in (results / "mabcq_fig2_smoke.md").read_text().splitlines()
               if line.startswith("| HalfCheetah-2x3 |")]
    assert cheetah and all("n/a" not in line for line in cheetah)  # every column ran
    for r in rows:  # tests at 10 updates and the final one at 20
        assert r["return_step_10"] != "" and float(r["return_step_20"]) == float(r["episode_return"])
    assert "| Task | Dataset |" in (results / "mabcq_fig2_normalized_smoke.md").read_text()
    assert (results / "mabcq_fig2_smoke.png").read_bytes()[:4] == b"\x89PNG"


EXTRA_CHECKS["mabcq_fig2.py"] = _check_mabcq_fig2
