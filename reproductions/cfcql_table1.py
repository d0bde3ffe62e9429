"""CFCQL Table 1 (cfcql.md): MPE, OMAR / MACQL / IQL / CFCQL (normalized score).

    python reproductions/cfcql_table1.py                  # default profile: tasks with shipped behaviour policies
    python reproductions/cfcql_table1.py --profile smoke  # a few cells
    python reproductions/cfcql_table1.py --all-tasks

The four columns of cfcql_table5.py (the paper's Table 1 is a subset of its
Table 5); same datasets, configs and deviations.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cfcql_table5 import PAPER, build, cli  # noqa: E402

from lit_omarl.repro import TableSpec  # noqa: E402

ALGORITHMS = ("OMAR", "MACQL", "IQL", "CFCQL")


def build_table(all_tasks: bool) -> TableSpec:
    return build("cfcql_table1", "CFCQL Table 1: results on MPE (normalized score)", ALGORITHMS, PAPER, all_tasks,
                 smoke_cells=("CN/medium/CFCQL", "PP/expert/OMAR"))


if __name__ == "__main__":
    raise SystemExit(cli(build_table))
