"""Before / after on the same load: updates of two versions of lit_omarl interleaved in one process.

On a shared machine the load changes from one minute to the next, so two
separate benchmark runs (old code, then new code) compare the load as much as
the code. This script imports a second copy of the package (``--before DIR``:
a directory holding an older ``lit_omarl/``, e.g. ``git worktree add /tmp/prev
HEAD~1`` or a copy taken before a change), renamed ``lit_omarl_before`` in a
temporary directory, builds the same algorithm from both copies (same seed,
same datamodule, same batches) and alternates single bare updates between
them (order swapped every round), recording CPU and wall seconds of each.
The ratios after / before of the medians are the figures to read.

    python benchmarks/bench_ab.py --before /tmp/prev --algorithms cfcql qmix [--threads 1] [--rounds 12]
        [--dataset real.h5 --max-episodes 1000]    # real episodes (padding) instead of full-length ones

Prints one JSON line, also appended to benchmarks/results/ab.jsonl.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402


def renamed_copy(src_root: Path, dest_root: Path, name: str = "lit_omarl_before") -> Path:
    """Copy ``src_root/lit_omarl`` to ``dest_root/<name>`` with its absolute imports renamed."""
    src = src_root / "lit_omarl"
    if not (src / "__init__.py").exists():
        raise SystemExit(f"--before {src_root}: no lit_omarl package there")
    dest = dest_root / name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "assets"))
    if (src / "assets").exists():  # large files: link, do not copy
        (dest / "assets").symlink_to((src / "assets").resolve())
    pattern = re.compile(r"\blit_omarl\b")
    for path in dest.rglob("*.py"):
        text = path.read_text()
        path.write_text(pattern.sub(name, text))
    return dest


def run_one(name: str, shape: str, batch: int, rounds: int, before_pkg: str, episode_index: bool,
            dataset: str | None = None, max_episodes: int | None = None) -> dict:
    import importlib

    import torch

    load_start = [round(x, 2) for x in os.getloadavg()]
    dm = common.make_datamodule(shape, batch, episode_index=episode_index, path=dataset, max_episodes=max_episodes)
    spec = dm.spec if dataset else common.spec_of(shape)
    loops = {}
    for tag, pkg in (("before", before_pkg), ("after", "lit_omarl")):
        algos = importlib.import_module(f"{pkg}.algos")
        cls = algos.ALGORITHMS[name]
        torch.manual_seed(0)
        model = cls(spec=spec.to_dict(), **common.fast_overrides(cls))
        loops[tag] = common.BareLoop(model, dm)  # includes the (shortened) pre-training
        loops[tag].timed_steps(2)  # warm-up
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    wall: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(rounds):
        for tag in ("before", "after") if r % 2 == 0 else ("after", "before"):
            w, c = loops[tag].timed_steps(1)
            wall[tag] += w
            cpu[tag] += c
    med = {k: statistics.median(v) for k, v in cpu.items()}
    wmed = {k: statistics.median(v) for k, v in wall.items()}
    return {
        "rounds": rounds,
        "cpu_s_per_update": {k: round(v, 4) for k, v in med.items()},
        "cpu_s_min": {k: round(min(v), 4) for k, v in cpu.items()},
        "wall_s_per_update": {k: round(v, 4) for k, v in wmed.items()},
        "wall_s_min": {k: round(min(v), 4) for k, v in wall.items()},
        "cpu_ratio_after_over_before": round(med["after"] / med["before"], 4),
        "wall_ratio_after_over_before": round(wmed["after"] / wmed["before"], 4),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "threads": torch.get_num_threads(),
        "load_avg_1_5_15_start": load_start,
        "load_avg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="directory containing the older lit_omarl/ package")
    parser.add_argument("--algorithms", nargs="+", default=["cfcql", "qmix"])
    parser.add_argument("--shape", default="smac_2s3z", choices=sorted(common.SHAPES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12, help="update pairs (order alternates)")
    parser.add_argument("--no-episode-index", dest="episode_index", action="store_false",
                        help="batches without the datamodule's 'episode' key (CFCQL then recomputes the behaviour probabilities every update)")
    parser.add_argument("--dataset", help="a real dataset file instead of the synthetic full-length episodes of --shape")
    parser.add_argument("--max-episodes", type=int, default=1000, help="with --dataset: its first episodes only")
    parser.add_argument("--label", default="")
    parser.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "default"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--before-pkg-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        common.quiet()
        sys.path.insert(0, args.before_pkg_dir)
        try:
            out = run_one(args.child, args.shape, args.batch, args.rounds, "lit_omarl_before", args.episode_index,
                          args.dataset, args.max_episodes if args.dataset else None)
        except Exception as err:
            out = {"skipped": f"{type(err).__name__}: {err}"[:300]}
        common.emit(out)
        return

    info = common.machine_info()
    info["omp_wait_policy"] = args.omp_wait_policy
    started = time.time()
    results = {}
    if not args.dataset:
        common.dataset_file(args.shape, 256)
    with tempfile.TemporaryDirectory(prefix="lit_omarl_ab_") as tmp:
        renamed_copy(Path(args.before).resolve(), Path(tmp))
        for name in args.algorithms:
            cmd = [sys.executable, __file__, "--before", args.before, "--child", name, "--before-pkg-dir", tmp,
                   "--shape", args.shape, "--batch", str(args.batch), "--threads", str(args.threads),
                   "--rounds", str(args.rounds)] + ([] if args.episode_index else ["--no-episode-index"])
            if args.dataset:
                cmd += ["--dataset", args.dataset, "--max-episodes", str(args.max_episodes)]
            results[name] = common.run_child(cmd, name, args.omp_wait_policy)
    info["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    common.emit({
        "benchmark": "ab",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "before": str(Path(args.before).resolve()),
        "shape": {args.shape: common.SHAPES[args.shape]} if not args.dataset else None,
        "dataset": args.dataset and {"path": args.dataset, "max_episodes": args.max_episodes},
        "batch_episodes": args.batch,
        "episode_index": args.episode_index,
        "label": args.label,
        "machine": info,
        "elapsed_s": round(time.time() - started, 1),
        "results": results,
    }, save_as="ab")


if __name__ == "__main__":
    main()
