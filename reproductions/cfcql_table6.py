"""CFCQL Table 6 (cfcql.md App. D.4): component analysis on MaMuJoCo HalfCheetah 2x3 (normalized score).

    python reproductions/cfcql_table6.py                  # default profile (hours on a workstation CPU)
    python reproductions/cfcql_table6.py --profile smoke  # a few cells on 2-episode datasets, ~1-2 minutes
    python reproductions/cfcql_table6.py --profile paper

Columns: Default = CFCQL-C (cf_policy on, cf_target off, as the code); +CF_T =
the counterfactual target (cf_target=True); -CF_P = MADDPG's policy improvement
(cf_policy=False); MACQL = macql_c. Same datasets and deviations as
cfcql_table2.py (lit_omarl/repro/mamujoco.py).
"""

from __future__ import annotations

from lit_omarl.repro import TableSpec, main
from lit_omarl.repro.mamujoco import mamujoco_table

ALGORITHMS = ("Default", "+CF_T", "-CF_P", "MACQL")
CONFIGS = {"Default": "cfcql_c", "+CF_T": "cfcql_c", "-CF_P": "cfcql_c", "MACQL": "macql_c"}
DATASETS = ("random", "medium_replay", "medium", "expert")  # the paper's Random / Med-Rep / Medium / Expert

PAPER = {  # cfcql.md Table 6 ("Component Analysis on MaMuJoCo"), in ALGORITHMS order
    ("HalfCheetah-2x3", "random"): [(39.7, 4.0), (48.7, 1.8), (23.9, 9.2), (5.3, 0.5)],
    ("HalfCheetah-2x3", "medium_replay"): [(59.5, 8.2), (58.9, 9.6), (43.5, 5.6), (36.7, 7.1)],
    ("HalfCheetah-2x3", "medium"): [(80.5, 9.6), (76.2, 12.1), (43.8, 7.8), (51.5, 26.7)],
    ("HalfCheetah-2x3", "expert"): [(118.5, 4.9), (118.1, 6.9), (3.7, 3.1), (50.1, 20.1)],
}

#: CF_T needs the next step's dataset actions, which transition batches lack: +CF_T trains on whole episodes
CF_T = {"cf_target": True, "data.sampling": "episode", "data.batch_size": 1}


def build_table() -> TableSpec:
    return mamujoco_table(
        "cfcql_table6", "CFCQL Table 6: component analysis on MaMuJoCo (normalized score)", ALGORITHMS, DATASETS,
        "cfcql.md Table 6", PAPER, configs=CONFIGS,
        overrides={("*", "*", "+CF_T"): CF_T, ("*", "*", "-CF_P"): {"cf_policy": False}},
        smoke_cells=("HalfCheetah-2x3/expert/+CF_T", "HalfCheetah-2x3/random/-CF_P"),
        extra_deviations=("+CF_T: batches of one 1000-step episode (CF_T needs a_{t+1} of the dataset, which "
                          "lit_omarl's transition batches lack) instead of 256 transitions.",))


if __name__ == "__main__":
    raise SystemExit(main(build_table()))
