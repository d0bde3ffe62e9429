"""CFCQL Table 2 (cfcql.md Sec. 5.3): results on MaMuJoCo HalfCheetah 2x3 (normalized score).

    python reproductions/cfcql_table2.py                  # default profile (hours on a workstation CPU)
    python reproductions/cfcql_table2.py --profile smoke  # a few cells on 2-episode datasets, ~1-2 minutes
    python reproductions/cfcql_table2.py --profile paper

Datasets from lit_omarl's continuous recipe (OMAR's recipe on the MATD3
HalfCheetah-2x3 policies trained by lit_omarl); see lit_omarl/repro/mamujoco.py
for every deviation. Columns: ICQ = icq_c (MAICQ), TD3+BC = matd3_bc.
"""

from __future__ import annotations

from lit_omarl.repro import TableSpec, main
from lit_omarl.repro.mamujoco import mamujoco_table

ALGORITHMS = ("ICQ", "TD3+BC", "ICQL", "OMAR", "MACQL", "IQL", "AWAC", "CFCQL")
CONFIGS = {"ICQ": "icq_c", "TD3+BC": "matd3_bc", "ICQL": "icql_c", "OMAR": "omar_c", "MACQL": "macql_c",
           "IQL": "iql_c", "AWAC": "awac_c", "CFCQL": "cfcql_c"}
DATASETS = ("random", "medium_replay", "medium", "expert")  # the paper's Random / Med-rep / Medium / Expert

PAPER = {  # cfcql.md Table 2 ("Results on MaMuJoCo"), in ALGORITHMS order
    ("HalfCheetah-2x3", "random"): [(7.4, 0.0), (7.4, 0.0), (7.4, 0.0), (13.5, 7.0), (5.3, 0.5), (7.4, 0.0), (7.3, 0.0),
                                    (39.7, 4.0)],
    ("HalfCheetah-2x3", "medium_replay"): [(35.6, 2.7), (27.1, 5.5), (41.2, 10.1), (57.7, 5.1), (37.0, 7.1), (58.8, 6.8),
                                           (30.9, 1.6), (59.5, 8.2)],
    ("HalfCheetah-2x3", "medium"): [(73.6, 5.0), (75.5, 3.7), (50.4, 10.8), (80.4, 10.2), (51.5, 26.7), (81.3, 3.7),
                                    (71.2, 4.2), (80.5, 9.6)],
    ("HalfCheetah-2x3", "expert"): [(110.6, 3.3), (114.4, 3.8), (64.2, 24.9), (113.5, 4.3), (50.1, 20.1), (115.6, 4.2),
                                    (113.3, 4.1), (118.5, 4.9)],
}


def build_table() -> TableSpec:
    return mamujoco_table("cfcql_table2", "CFCQL Table 2: results on MaMuJoCo (normalized score)", ALGORITHMS, DATASETS,
                          "cfcql.md Table 2", PAPER, configs=CONFIGS,
                          smoke_cells=("HalfCheetah-2x3/expert/CFCQL", "HalfCheetah-2x3/random/OMAR",
                                       "HalfCheetah-2x3/medium/ICQ"))


if __name__ == "__main__":
    raise SystemExit(main(build_table()))
