"""CFCQL Table 5 (cfcql.md App.): complete results on the Multi-agent Particle Environment (normalized score).

    python reproductions/cfcql_table5.py                  # default profile: tasks with shipped behaviour policies
    python reproductions/cfcql_table5.py --profile smoke  # a few cells, ~1-2 minutes
    python reproductions/cfcql_table5.py --all-tasks      # also tasks without shipped policies (World)

Datasets from lit_omarl's continuous recipe (OMAR's recipe on MATD3 policies
trained by lit_omarl); see lit_omarl/repro/mpe.py for every deviation.
"""

from __future__ import annotations

import argparse

from lit_omarl.repro import TableSpec, main
from lit_omarl.repro.mpe import mpe_table

ALGORITHMS = ("MAICQ", "MATD3-BC", "ICQL", "OMAR", "MACQL", "IQL", "AWAC", "CFCQL")
CONFIGS = {"MAICQ": "icq_c", "MATD3-BC": "matd3_bc", "ICQL": "icql_c", "OMAR": "omar_c", "MACQL": "macql_c",
           "IQL": "iql_c", "AWAC": "awac_c", "CFCQL": "cfcql_c"}
DATASETS = ("random", "medium_replay", "medium", "expert")

PAPER = {  # cfcql.md Table 5, in ALGORITHMS order
    ("CN", "random"): [(6.3, 3.5), (9.8, 4.9), (24.0, 9.8), (34.4, 5.3), (45.6, 8.7), (5.5, 1.1), (0.5, 3.7), (62.2, 8.1)],
    ("CN", "medium_replay"): [(13.6, 5.7), (15.4, 5.6), (20.0, 8.4), (37.9, 12.3), (25.5, 5.9), (10.8, 4.5), (2.7, 3), (52.2, 9.6)],
    ("CN", "medium"): [(29.3, 5.5), (29.3, 4.8), (34.1, 7.2), (47.9, 18.9), (14.3, 20.2), (28.2, 3.9), (25.7, 4.1), (65.0, 10.2)],
    ("CN", "expert"): [(104.0, 3.4), (108.3, 3.3), (98.2, 5.2), (114.9, 2.6), (12.2, 31), (103.7, 2.5), (103.3, 3.5), (112, 4)],
    ("PP", "random"): [(2.2, 2.6), (5.7, 3.5), (5.0, 8.2), (11.1, 2.8), (25.2, 11.5), (1.3, 1.6), (0.2, 1.0), (78.5, 15.6)],
    ("PP", "medium_replay"): [(34.5, 27.8), (28.7, 20.9), (24.8, 17.3), (47.1, 15.3), (11.9, 9.2), (23.2, 12), (8.3, 5.3), (71.1, 6)],
    ("PP", "medium"): [(63.3, 20.0), (65.1, 29.5), (61.7, 23.1), (66.7, 23.2), (55, 43.2), (53.6, 19.9), (50.9, 19.0), (68.5, 21.8)],
    ("PP", "expert"): [(113.0, 14.4), (115.2, 12.5), (93.9, 14.0), (116.2, 19.8), (108.4, 21.5), (109.3, 10.1), (106.5, 10.1), (118.2, 13.1)],
    ("World", "random"): [(1.0, 3.2), (2.8, 5.5), (0.6, 2.0), (5.9, 5.2), (11.7, 11), (2.9, 4.0), (-2.4, 2.0), (68, 20.8)],
    ("World", "medium_replay"): [(12.0, 9.1), (17.4, 8.1), (29.6, 13.8), (42.9, 19.5), (13.2, 16.2), (41.5, 9.5), (8.9, 5.1), (73.4, 23.2)],
    ("World", "medium"): [(71.9, 20.0), (73.4, 9.3), (58.6, 11.2), (74.6, 11.5), (67.4, 48.4), (70.5, 15.3), (63.9, 14.2), (93.8, 31.8)],
    ("World", "expert"): [(109.5, 22.8), (110.3, 21.3), (71.9, 28.1), (110.4, 25.7), (99.7, 31), (107.8, 17.7), (107.6, 15.6), (119.7, 26.4)],
}

#: the CFCQL-C code's alpha on spread per dataset (the config's value, 0.5, is its 'random' one)
CFCQL_ALPHA_CN = {"medium_replay": 1.0, "medium": 5.0, "expert": 2.5}


def cfcql_overrides() -> dict:
    return {("CN", dataset, "CFCQL"): {"cql_alpha": alpha} for dataset, alpha in CFCQL_ALPHA_CN.items()}


def build(name: str, title: str, algorithms: tuple[str, ...], paper: dict, all_tasks: bool,
          smoke_cells: tuple[str, ...]) -> TableSpec:
    columns = [ALGORITHMS.index(a) for a in algorithms]
    rows = {k: [v[i] for i in columns] for k, v in paper.items()}
    return mpe_table(name, title, algorithms, DATASETS, "cfcql.md " + title.split(":")[0].split(" ", 1)[1], rows,
                     all_tasks=all_tasks, smoke_cells=smoke_cells, configs={a: CONFIGS[a] for a in algorithms},
                     overrides={k: v for k, v in cfcql_overrides().items() if k[2] in algorithms})


def build_table(all_tasks: bool) -> TableSpec:
    return build("cfcql_table5", "CFCQL Table 5: complete results on MPE (normalized score)", ALGORITHMS, PAPER,
                 all_tasks, smoke_cells=("CN/expert/CFCQL", "CN/random/IQL", "CN/medium/MAICQ"))


def cli(build_fn) -> int:  # noqa: ANN001
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--all-tasks", action="store_true", help="every task of the paper, also those without shipped policies")
    ns, rest = pre.parse_known_args()
    return main(build_fn(ns.all_tasks), rest)


if __name__ == "__main__":
    raise SystemExit(cli(build_table))
