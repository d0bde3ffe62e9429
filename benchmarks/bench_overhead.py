"""The same update three ways, side by side in one process: Lightning Trainer, bare loop, naive reference.

For CFCQL, MACQL and BC (one fresh process each) on a SMAC-2s3z-shaped batch
of ``--batch`` full-length episodes:

* ``trainer``: ``trainer.fit`` of the module (CSV logger every 50 steps, as a
  real run), each update timed from the end of the previous one;
* ``bare``: the module's own ``training_step`` in a plain loop (no Trainer),
  on an identical copy of the module, one update right after each Trainer
  update (``common.paired_steps``);
* ``naive``: benchmarks/naive_cfcql.py, the same loss computed pymarl-style
  (per-step unrolls, the full mixer once per counterfactual candidate or
  sampled joint action); tests/test_naive_reference.py checks it gives our
  loss and gradients.

Trainer / bare pairs and blocks of naive updates are interleaved (so a change
of machine load hits all three) and medians of per-update wall and CPU seconds are reported, with the
ratios ``trainer_over_bare_throughput`` (target >= 0.95) and
``naive_over_ours_time`` (target >= 3).

    python benchmarks/bench_overhead.py [--algorithms cfcql macql bc] [--batch 128] [--threads 2]

Prints one JSON line, also appended to benchmarks/results/overhead.jsonl
(with a UTC timestamp and the machine record: CPU, torch, threads, load average).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402


def run_one(name: str, shape: str, batch: int, rounds: int, budget_s: float, compare_logging: bool = False) -> dict:
    from naive_cfcql import naive_learner

    load_start = [round(x, 2) for x in os.getloadavg()]
    spec = common.spec_of(shape)
    dm = common.make_datamodule(shape, batch)
    model = common.make_model(name, spec)
    bare = common.BareLoop(model, dm)
    warm, _ = bare.timed_steps(2)
    bare.detach()
    naive = naive_learner(model)
    start = time.perf_counter()
    naive.update(dm.sample())
    naive_once = time.perf_counter() - start
    k = int(min(20, max(2, budget_s / max(min(warm), 1e-4))))
    k_naive = int(min(k, max(1, budget_s / naive_once)))

    modes = ("trainer", "bare", "naive") + (("trainer_log_every_step",) if compare_logging else ())
    times: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in modes}
    for _ in range(rounds):
        if compare_logging:  # the old log_train: self.log of every metric on every step
            model._logs_this_step = lambda: True
            w, c = common.trainer_steps(model, dm, k)
            del model._logs_this_step
            times["trainer_log_every_step"][0].extend(w)
            times["trainer_log_every_step"][1].extend(c)
        pairs = common.paired_steps(model, dm, k)  # Trainer update i, then the bare copy's update i
        times["trainer"][0].extend(pairs["trainer_wall"])
        times["trainer"][1].extend(pairs["trainer_cpu"])
        times["bare"][0].extend(pairs["bare_wall"])
        times["bare"][1].extend(pairs["bare_cpu"])
        for _ in range(k_naive):
            w0, c0 = time.perf_counter(), time.process_time()
            naive.update(dm.sample())
            times["naive"][0].append(time.perf_counter() - w0)
            times["naive"][1].append(time.process_time() - c0)

    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    wall = {m: med(v[0]) for m, v in times.items()}
    cpu = {m: med(v[1]) for m, v in times.items()}
    return {
        "s_per_update": {m: common.summary(v[0]) for m, v in times.items()},
        "cpu_s_per_update": {m: round(v, 4) for m, v in cpu.items()},
        "updates_per_s": {m: round(1.0 / v, 4) for m, v in wall.items()},
        "trainer_over_bare_throughput": round(wall["bare"] / wall["trainer"], 4),
        "trainer_over_bare_throughput_cpu": round(cpu["bare"] / cpu["trainer"], 4),
        "naive_over_ours_time": round(wall["naive"] / wall["bare"], 3),
        "naive_over_trainer_time": round(wall["naive"] / wall["trainer"], 3),
        "naive_over_ours_cpu": round(cpu["naive"] / cpu["bare"], 3),
        "peak_rss_mb_process": round(common.peak_rss_mb(), 1),
        "load_avg_1_5_15_start": load_start,
        "load_avg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
        **({"trainer_log_every_step_over_bare_throughput": round(wall["bare"] / wall["trainer_log_every_step"], 4)}
           if compare_logging else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="*", default=["cfcql", "macql", "bc"])
    parser.add_argument("--shape", default="smac_2s3z", choices=sorted({**common.SHAPES, **common.EXTRA_SHAPES}))
    parser.add_argument("--compare-logging", action="store_true",
                        help="also time the Trainer with self.log of every metric on every step (the old log_train)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per timed block")
    parser.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "default"],
                        help="OMP_WAIT_POLICY of the measuring processes; passive keeps busy-waiting threads "
                        "from stealing the CPU on a shared, oversubscribed machine")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        common.quiet()
        try:
            out = run_one(args.child, args.shape, args.batch, args.rounds, args.budget, args.compare_logging)
        except Exception as err:
            out = {"skipped": f"{type(err).__name__}: {err}"[:300]}
        common.emit(out)
        return

    import torch

    torch.set_num_threads(args.threads)  # what the child processes use, for the record
    info = common.machine_info()
    info["omp_wait_policy"] = args.omp_wait_policy
    common.dataset_file(args.shape, 256)
    started = time.time()
    results = {}
    for name in args.algorithms:
        cmd = [sys.executable, __file__, "--child", name, "--shape", args.shape, "--batch", str(args.batch),
               "--threads", str(args.threads), "--rounds", str(args.rounds), "--budget", str(args.budget)]
        if args.compare_logging:
            cmd.append("--compare-logging")
        results[name] = common.run_child(cmd, name, args.omp_wait_policy)
    info["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    common.emit({
        "benchmark": "overhead",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "shape": {args.shape: {**common.SHAPES, **common.EXTRA_SHAPES}[args.shape]},
        "batch_episodes": args.batch,
        "machine": info,
        "elapsed_s": round(time.time() - started, 1),
        "results": results,
    }, save_as="overhead")


if __name__ == "__main__":
    main()
