"""OMAC Table 1 (omac.md): data efficiency on 6h_vs_8z with 100% / 50% / 10% of the data, here on SMAX.

    python reproductions/omac_table1.py                  # default profile (needs the shipped 6h_vs_8z policies)
    python reproductions/omac_table1.py --profile smoke  # a few cells

Datasets as reproductions/omac_table4.py (OMAC return bands of the SMAX
recipe, 1000 episodes = 100%), cut to their first 500 (50%) and 100 (10%)
episodes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from omac_table4 import ALGORITHMS, EPISODES, OMAC_DEVIATIONS, omac_overrides  # noqa: E402

from lit_omarl.repro import TableSpec, main  # noqa: E402
from lit_omarl.repro.smax import parse_all_maps, smax_table  # noqa: E402

MAPS = ("6h_vs_8z",)
FRACTIONS = {"100%": 1.0, "50%": 0.5, "10%": 0.1}
DATASETS = tuple(f"{q} {f}" for q in ("good", "medium", "poor") for f in FRACTIONS)

PAPER = {  # omac.md Table 1, in ALGORITHMS order
    ("6h_vs_8z", "good 100%"): [(12.57, 0.47), (11.81, 0.12), (9.85, 0.28), (12.19, 0.23), (10.44, 0.20)],
    ("6h_vs_8z", "good 50%"): [(12.28, 0.43), (11.59, 0.43), (9.00, 0.27), (11.93, 0.52), (9.06, 0.38)],
    ("6h_vs_8z", "good 10%"): [(10.61, 0.18), (8.86, 0.21), (7.88, 0.19), (9.92, 0.10), (8.41, 0.16)],
    ("6h_vs_8z", "medium 100%"): [(12.17, 0.52), (11.56, 0.34), (10.81, 0.21), (11.77, 0.36), (11.59, 0.35)],
    ("6h_vs_8z", "medium 50%"): [(11.98, 0.32), (10.80, 0.25), (10.047, 0.11), (11.51, 0.33), (10.68, 0.23)],
    ("6h_vs_8z", "medium 10%"): [(10.86, 0.08), (9.47, 0.27), (8.27, 0.07), (9.92, 0.17), (8.61, 0.29)],
    ("6h_vs_8z", "poor 100%"): [(11.08, 0.36), (10.34, 0.23), (10.64, 0.20), (10.67, 0.19), (10.76, 0.11)],
    ("6h_vs_8z", "poor 50%"): [(10.84, 0.14), (9.97, 0.14), (9.87, 0.32), (10.39, 0.46), (9.99, 0.44)],
    ("6h_vs_8z", "poor 10%"): [(8.59, 0.21), (7.51, 0.22), (7.29, 0.09), (8.34, 0.19), (8.18, 0.39)],
}


def build_table(all_maps: bool) -> TableSpec:
    datasets = {name: (f"omac_{name.split()[0]}", round(EPISODES * FRACTIONS[name.split()[1]])) for name in DATASETS}
    return smax_table(
        "omac_table1", "OMAC Table 1: data efficiency on 6h_vs_8z (SMAX), average return",
        ALGORITHMS, MAPS, DATASETS, "omac.md Table 1", PAPER, all_maps=all_maps,
        smoke_cells=("*/medium 10%/OMAC", "*/poor 50%/ICQ"),
        overrides=omac_overrides(datasets, MAPS),
        metric="episode_return",
        hyper_parameters="as reproductions/omac_table4.py (omac.md Table 2)",
        extra_deviations=OMAC_DEVIATIONS,
    )


if __name__ == "__main__":
    all_maps, rest = parse_all_maps()
    raise SystemExit(main(build_table(all_maps), rest))
