"""Every reproduction script's smoke profile runs end to end and writes its table."""

import csv
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
    assert res.returncode == 0, res.stderr[-3000:]
    name = script[:-3]
    table = (tmp_path / "results" / f"{name}_smoke.md").read_text()
    assert "| Task | Dataset |" in table and "n/a |" not in table.split("## IQM")[0]
    with open(tmp_path / "results" / f"{name}_smoke.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["profile"] == "smoke" for r in rows)
