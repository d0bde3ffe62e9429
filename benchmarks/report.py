"""Markdown tables of the latest benchmark lines in benchmarks/results/*.jsonl (for benchmarks/README.md).

    python benchmarks/report.py [--results benchmarks/results]

For each shape of updates.jsonl the newest measurement of every algorithm is
used (a later line that measured only some algorithms replaces only those),
with the time and load average of the line it comes from. Lines measured on
another copy of the package (``machine.lit_omarl``, e.g. a "before" snapshot)
are left out; ab.jsonl is printed as its own table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("sampling", "forward_and_other", "regulariser", "backward", "optimizer", "target_update")


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]


REPO_PACKAGE = str((HERE.parent / "lit_omarl").resolve())


def of_this_tree(line: dict) -> bool:
    """False for lines measured on another copy of lit_omarl (e.g. a "before" snapshot via PYTHONPATH)."""
    measured = line.get("machine", {}).get("lit_omarl")
    return (measured is None or measured == REPO_PACKAGE)


def latest_updates(lines: list[dict]) -> dict[str, dict[str, tuple[dict, dict]]]:
    """shape -> algorithm -> (figures, line) of the newest line of this tree's code that measured it."""
    out: dict[str, dict[str, tuple[dict, dict]]] = {}
    for line in filter(of_this_tree, lines):
        for shape, algos in line.get("results", {}).items():
            for name, fig in algos.items():
                out.setdefault(shape, {})[name] = (fig, line)
    return out


def updates_table(shape: str, rows: dict[str, tuple[dict, dict]], reference: str = "cfcql") -> str:
    ref_cpu = rows.get(reference, ({}, {}))[0].get("cpu_s_per_update_bare")
    head = ("| algorithm | updates/s Trainer | updates/s bare | Trainer/bare (wall) | Trainer/bare (CPU) "
            "| s/update bare (wall) | CPU s/update bare | x CFCQL (CPU) | breakdown, CPU ms: "
            + " / ".join(PARTS) + " | peak RSS MB | load avg, 1 min |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in sorted(rows):
        fig, line = rows[name]
        if "load_avg_1_5_15_start" in fig:  # this algorithm's own measurement
            load = f"{fig['load_avg_1_5_15_start'][0]}-{fig['load_avg_1_5_15_end'][0]}"
        else:  # older lines: start and end of the whole sweep
            machine = line.get("machine", {})
            load = f"{machine.get('load_avg_1_5_15', ['?'])[0]}-{machine.get('load_avg_1_5_15_end', ['?'])[0]} (sweep)"
        if "skipped" in fig:
            lines.append(f"| {name} | skipped: {fig['skipped'][:80]} |" + " |" * (head.count("|") - 3))
            continue
        cpu = fig["cpu_s_per_update_bare"]
        parts = fig.get("breakdown_cpu_ms", {})
        breakdown = " / ".join(f"{parts[p]:.0f}" if p in parts else "-" for p in PARTS)
        ratio = f"{cpu / ref_cpu:.2f}" if ref_cpu else "-"
        lines.append(
            f"| {name} | {fig['updates_per_s_trainer']:.3f} | {fig['updates_per_s_bare']:.3f} "
            f"| {fig['trainer_over_bare_throughput']:.2f} | {fig['trainer_over_bare_throughput_cpu']:.2f} "
            f"| {fig['s_per_update_bare']['median_s']:.2f} | {cpu:.2f} | {ratio} | {breakdown} "
            f"| {fig['peak_rss_mb']:.0f} | {load} |"
        )
    return f"#### {shape}\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    results = Path(args.results)
    for shape, rows in latest_updates(read_lines(results / "updates.jsonl")).items():
        print(updates_table(shape, rows))
    ab = read_lines(results / "ab.jsonl")
    if ab:
        print("#### before / after, interleaved in one process (bench_ab.py)\n")
        print("| time (UTC) | threads | episode key | load (1 min) | algorithm | CPU s before | CPU s after | after / before (CPU) "
              "| wall s before | wall s after | after / before (wall) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for line in ab:
            load = f"{line['machine']['load_avg_1_5_15'][0]}-{line['machine']['load_avg_1_5_15_end'][0]}"
            for name, fig in line["results"].items():
                if "skipped" in fig:
                    continue
                c, w = fig["cpu_s_per_update"], fig["wall_s_per_update"]
                print(f"| {line['timestamp'][11:16]} | {line['machine']['threads']} | {'yes' if line.get('episode_index') else 'no'} "
                      f"| {load} | {name} | {c['before']:.3f} | {c['after']:.3f} | {fig['cpu_ratio_after_over_before']:.2f} "
                      f"| {w['before']:.3f} | {w['after']:.3f} | {fig['wall_ratio_after_over_before']:.2f} |")
        print()
    latest: dict[str, dict] = {}
    for line in read_lines(results / "overhead.jsonl"):  # newest line per (shape, batch)
        latest[f"{next(iter(line['shape']))}, batch {line['batch_episodes']}"] = line
    for key, line in latest.items():
        print(f"#### overhead: {key} ({line['timestamp']}, load at start {line['machine']['load_avg_1_5_15']})\n")
        print("| algorithm | s/update Trainer | bare | naive | Trainer/bare (wall) | Trainer/bare (CPU) "
              "| naive/ours (wall) | naive/ours (CPU) | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, fig in line["results"].items():
            if "skipped" in fig:
                print(f"| {name} | skipped: {fig['skipped'][:80]} | | | | | | | |")
                continue
            s = fig["s_per_update"]
            print(f"| {name} | {s['trainer']['median_s']:.3f} | {s['bare']['median_s']:.3f} | {s['naive']['median_s']:.3f} "
                  f"| {fig['trainer_over_bare_throughput']:.3f} | {fig['trainer_over_bare_throughput_cpu']:.3f} "
                  f"| {fig['naive_over_ours_time']:.2f} | {fig['naive_over_ours_cpu']:.2f} | {fig['peak_rss_mb_process']:.0f} |")
        print()


if __name__ == "__main__":
    main()
