"""MABCQ vs per-agent BCQ update time, side by side in one process (mabcq.md Table 5: MABCQ < 2x BCQ).

Both learners (``mabcq`` and ``bcq_c``, the same networks and settings; MABCQ
adds G^2, lambda_vd and lambda_tn) run their own ``training_step`` in the bare
loop of benchmarks/common.py on transition batches of ``--batch`` from a
random schema-v1 file of the chosen shape. Blocks of ``--block`` updates
alternate between the two (order flipped every round) so that a change of
machine load hits both; medians of per-update CPU and wall seconds are
reported with the ratio MABCQ / BCQ (paper: 1.6 - 1.8 on a GPU).

    python benchmarks/bench_mabcq.py [--shape halfcheetah_2x3] [--batch 256] [--threads 1] [--rounds 5] [--block 20]

Prints one JSON line, also appended to benchmarks/results/mabcq.jsonl
(with a UTC timestamp and the machine record: CPU, torch, threads, load average).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

SHAPES = common.CONTINUOUS_SHAPES
LEARNERS = ("mabcq", "bcq_c")


def data_module(shape: str, batch: int, episodes: int = 100):
    return common.spec_of(shape), common.make_datamodule(shape, batch, episodes=episodes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="halfcheetah_2x3")
    parser.add_argument("--batch", type=int, default=256, help="transitions per update")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="blocks per learner")
    parser.add_argument("--block", type=int, default=20, help="timed updates per block")
    args = parser.parse_args(argv)
    if min(args.batch, args.threads, args.rounds, args.block) < 1:
        parser.error("--batch, --threads, --rounds and --block must be >= 1")

    import torch

    common.quiet()
    torch.set_num_threads(args.threads)
    load_start = [round(x, 2) for x in os.getloadavg()]
    spec, dm = data_module(args.shape, args.batch)
    loops = {name: common.BareLoop(common.make_model(name, spec, agent_hidden_dim=64), dm) for name in LEARNERS}
    for loop in loops.values():
        loop.timed_steps(3)  # warm-up (allocator, Adam state)

    cpu: dict[str, list[float]] = {n: [] for n in LEARNERS}
    wall: dict[str, list[float]] = {n: [] for n in LEARNERS}
    start = time.perf_counter()
    for r in range(args.rounds):
        for name in (LEARNERS if r % 2 == 0 else LEARNERS[::-1]):
            w, c = loops[name].timed_steps(args.block)
            wall[name] += w
            cpu[name] += c
    elapsed = time.perf_counter() - start

    results = {n: {"cpu_s_per_update": common.summary(cpu[n]), "wall_s_per_update": common.summary(wall[n])}
               for n in LEARNERS}
    ratio_cpu = median(cpu["mabcq"]) / median(cpu["bcq_c"])
    ratio_wall = median(wall["mabcq"]) / median(wall["bcq_c"])
    machine = common.machine_info()
    machine["load_avg_1_5_15_start"] = load_start
    common.emit({
        "benchmark": "mabcq",
        "command": " ".join(["python benchmarks/bench_mabcq.py", *(sys.argv[1:] if argv is None else argv)]),
        "shape": {"name": args.shape, **SHAPES[args.shape]},
        "batch_transitions": args.batch,
        "rounds": args.rounds,
        "block": args.block,
        "machine": machine,
        "elapsed_s": round(elapsed, 1),
        "results": results,
        "mabcq_over_bcq_cpu": round(ratio_cpu, 3),
        "mabcq_over_bcq_wall": round(ratio_wall, 3),
        "paper_table5_mabcq_over_bcq": {"HalfCheetah": 1.8, "Walker": 1.8, "Hopper": 1.78, "Ant": 1.82},
        "target_below_2x": ratio_cpu < 2.0,
    }, save_as="mabcq")


if __name__ == "__main__":
    main()
