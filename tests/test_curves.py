"""Learning curves stored as scores and drawn from the CSV (lit_omarl.repro.curves)."""

import csv

import pytest

from lit_omarl.repro.curves import curve_on_grid, curves_from_csv, grid, plot_panels, q_summaries


def test_grid_is_even_and_ends_at_max_steps():
    assert grid(100, 4) == [25, 50, 75, 100]
    assert grid(3, 20) == [1, 2, 3]  # fewer points than requested: no duplicates
    with pytest.raises(ValueError, match="max_steps"):
        grid(0)


def test_curve_on_grid_averages_each_window():
    # values logged at 0-based steps 0..9 count as 1..10 updates; windows (0, 5] and (5, 10]
    points = [(s, float(s)) for s in range(10)]
    assert curve_on_grid(points, [5, 10]) == {5: 2.0, 10: 7.0}
    assert curve_on_grid([(49, 3.0), (99, 5.0)], [50, 75, 100]) == {50: 3.0, 100: 5.0}  # empty window left out


def test_q_summaries():
    points = [(s, float(v)) for s, v in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 100])]
    out = q_summaries(points, q_true=100.0)
    # last 10% of 12 values = the last one (100); peak 200
    assert out == {"q_final": 100.0, "q_peak": 200.0, "q_rel_error": 0.0}
    assert q_summaries([]) == {}


def test_curves_from_csv_and_plot(tmp_path):
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "algorithm", "seed", "q_step_10", "q_step_20", "return_step_20", "q_final"])
        w.writerow(["d", "QMIX", 0, 1.0, 2.0, 0.5, 9])
        w.writerow(["d", "QMIX", 1, 3.0, "", 0.7, 9])
    q = curves_from_csv(path, "q")
    assert q == {("d", "QMIX"): {10: [1.0, 3.0], 20: [2.0]}}
    assert curves_from_csv(path, "return") == {("d", "QMIX"): {20: [0.5, 0.7]}}
    png = plot_panels([{"curves": {"QMIX": q[("d", "QMIX")]}, "ylabel": "Q", "log": True, "hline": (100, "true")}],
                      tmp_path / "out" / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_fn_needs_a_step_budget(tmp_path):
    from lit_omarl.repro import RunSpec
    from lit_omarl.repro.curves import run_cell_with_curves

    run = RunSpec("t", "mmdp", "expert", "QMIX", seed=0, profile="smoke", budget={"q_true": 100.0})
    with pytest.raises(ValueError, match="max_steps"):
        run_cell_with_curves(run, tmp_path)
