"""OMAC tables (reproductions/omac_table1.py, omac_table4.py): how their cells map onto SMAX recipe files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reproductions"))

import omac_table1  # noqa: E402
import omac_table4  # noqa: E402

from lit_omarl.repro.runner import expand_grid  # noqa: E402
from lit_omarl.repro.smax import recipe_file, recipe_quality  # noqa: E402
from lit_omarl.repro.train import cell_overrides, config_algorithm  # noqa: E402


def _runs(module, profile="default"):
    return {r.label: r for r in expand_grid(module.build_table(all_maps=True), profile)}


def test_omac_table4_cells_use_the_omac_bands_and_baseline_configs():
    runs = _runs(omac_table4)
    assert len(runs) == 3 * 3 * 5 * 3  # maps x datasets x algorithms x seeds; corridor is not in SMAX
    assert not any(label.startswith("corridor") for label in runs)
    bcq = runs["5m_vs_6m/poor/BCQ-MA/seed1"]
    assert recipe_quality(bcq) == "omac_poor" and config_algorithm(bcq) == "bcq"
    assert recipe_file("5m_vs_6m", recipe_quality(bcq), dict(bcq.budget)).name == "smax_5m_vs_6m_omac_poor.h5"
    cli = cell_overrides(bcq, "bcq/smax/2s3z_expert.yaml", {})
    assert cli == {"data.max_episodes": 1000}  # recipe_quality / config_algorithm are not CLI keys
    assert config_algorithm(runs["6h_vs_8z/good/CQL-MA/seed0"]) == "cql_ma"
    # omac.md App. A.3: beta 0.5 on good / medium of 3s5z_vs_3s6z only
    assert runs["3s5z_vs_3s6z/good/OMAC/seed0"].overrides["temperature"] == 0.5
    assert runs["3s5z_vs_3s6z/medium/OMAC/seed0"].overrides["temperature"] == 0.5
    assert "temperature" not in runs["3s5z_vs_3s6z/poor/OMAC/seed0"].overrides
    assert "temperature" not in runs["6h_vs_8z/good/OMAC/seed0"].overrides


@pytest.mark.parametrize("dataset, quality, episodes", [("good 100%", "omac_good", 1000), ("medium 50%", "omac_medium", 500),
                                                        ("poor 10%", "omac_poor", 100)])
def test_omac_table1_fractions_cut_the_1000_episode_bands(dataset, quality, episodes):
    run = _runs(omac_table1)[f"6h_vs_8z/{dataset}/ICQ/seed2"]
    assert recipe_quality(run) == quality
    assert run.overrides["data.max_episodes"] == episodes


def test_omac_tables_report_returns_beside_the_paper():
    table = omac_table4.build_table(all_maps=True)
    assert table.metric == "episode_return"
    assert sum(d.startswith("Datasets:") for d in table.deviations) == 1  # the OMAC one replaces the CFCQL recipe's
    assert table.paper.values[("6h_vs_8z", "good", "OMAC")][0] == pytest.approx(12.57)
