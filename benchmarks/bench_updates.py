"""Gradient updates per second of every registered algorithm on batches shaped like the papers'.

For each algorithm of ``lit_omarl.algos.ALGORITHMS`` (new ones are measured
automatically) and each batch shape (``--shapes``; default ``common.SHAPES``:
SMAC 2s3z: 5 agents, obs 80, state 120, 11 actions, 120 steps; SMAX 2s3z: obs
127, state 120, 10 actions, 100 steps; also ``bridge`` (a small discrete task)
and the continuous ``halfcheetah_2x3``, ``ant_4x2``, ``mpe_spread`` of
``common.CONTINUOUS_SHAPES``), a fresh process trains on batches sampled from a
resident dataset of full-length random episodes in /tmp (episode batches for
discrete shapes, transition batches for continuous ones; ``--batch`` or the
shape's ``common.DEFAULT_BATCH``) and reports:

* updates/s inside the Lightning Trainer and in a bare PyTorch loop running
  the module's own ``training_step``, measured in pairs: each Trainer update
  is followed by one update of an identical copy of the module in the bare
  loop (``common.paired_steps``), so both see the same machine load; medians
  of the per-update wall times and their ratio (also in CPU time);
* the breakdown of a bare update: sampling / forward_and_other /
  regulariser (``conservative_gap``) / backward / optimizer (clip + step) /
  target update;
* peak resident memory of the process.

Timing starts after ``common.WARMUP_UPDATES`` untimed updates (a fit start
empties per-fit caches). Pairs: ``--rounds`` x ``--budget`` seconds' worth (3 to
60); the breakdown block: ``--budget`` seconds' worth (2 to 30); an algorithm
whose warm-up update takes more than 4x the budget gets 2 pairs (its Trainer
overhead is negligible at that cost).

An algorithm that cannot run on a shape (continuous only, needs other batch
keys, ...) is reported with its error and skipped.

    python benchmarks/bench_updates.py [--algorithms cfcql macql] [--shapes smac_2s3z] [--threads 2]

Prints one JSON line, also appended to benchmarks/results/updates.jsonl
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


def run_one(name: str, shape: str, batch: int, budget_s: float, rounds: int, episode_index: bool = True,
            updates_per_step: int = 1) -> dict:
    import torch

    from lit_omarl.algos import ALGORITHMS

    load_start = [round(x, 2) for x in os.getloadavg()]
    spec = common.spec_of(shape)
    cls = ALGORITHMS[name]
    if not (cls.supports_continuous if shape in common.CONTINUOUS_SHAPES else cls.supports_discrete):
        return {"skipped": f"does not support {spec.action_type} actions"}
    dm = common.make_datamodule(shape, batch, episode_index=episode_index)
    rss_data = common.current_rss_mb()
    model = common.make_model(name, spec)
    bare = common.BareLoop(model, dm)  # includes the (shortened) pre-training
    warm, _ = bare.timed_steps(2)
    bare.detach()
    per_update = max(min(warm), 1e-4)
    # Trainer vs bare: pairs of one Trainer update and one update of an identical copy in a bare loop
    # pairs of one training step (updates_per_step updates) each: rounds x budget seconds' worth, 3 to 60
    n = int(min(60, max(3, rounds * budget_s / (per_update * updates_per_step))))
    if per_update > 4 * budget_s:  # a slow algorithm: its Trainer overhead is negligible, measure less
        n = 2
    pairs = common.paired_steps(model, dm, n, updates_per_step=updates_per_step)
    t_wall, t_cpu, b_wall, b_cpu = (pairs[k] for k in ("trainer_wall", "trainer_cpu", "bare_wall", "bare_cpu"))
    k = int(min(30, max(2, budget_s / per_update)))

    bare = common.BareLoop(model, dm)
    bare.timed_steps(common.WARMUP_UPDATES)  # before the probes: they count every update they see
    segments = common.Segments()
    common.instrument(bare, segments)
    wall, cpu = bare.timed_steps(k)
    total, total_cpu = sum(wall), sum(cpu)
    parts = {key: v / total for key, v in segments.total.items()}
    parts["forward_and_other"] = max(0.0, 1.0 - sum(parts.values()))
    cpu_ms = {key: v / len(cpu) * 1e3 for key, v in segments.cpu.items()}
    cpu_ms["forward_and_other"] = max(0.0, total_cpu / len(cpu) * 1e3 - sum(cpu_ms.values()))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {
        "timed_pairs": n,
        "timed_updates_breakdown": k,
        "updates_per_s_trainer": round(1.0 / med(t_wall), 4),
        "updates_per_s_bare": round(1.0 / med(b_wall), 4),
        "s_per_update_trainer": common.summary(t_wall),
        "s_per_update_bare": common.summary(b_wall),
        "cpu_s_per_update_trainer": round(med(t_cpu), 4),
        "cpu_s_per_update_bare": round(med(b_cpu), 4),
        "trainer_over_bare_throughput": round(med(b_wall) / med(t_wall), 4),
        "trainer_over_bare_throughput_cpu": round(med(b_cpu) / med(t_cpu), 4),
        "breakdown_fraction": {key: round(v, 4) for key, v in sorted(parts.items())},
        "breakdown_ms": {key: round(v * total / len(wall) * 1e3, 2) for key, v in sorted(parts.items())},
        "breakdown_cpu_ms": {key: round(v, 2) for key, v in sorted(cpu_ms.items())},
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "rss_after_data_mb": round(rss_data, 1),
        "threads": torch.get_num_threads(),
        "episode_index": episode_index,
        "updates_per_step": updates_per_step,
        "load_avg_1_5_15_start": load_start,
        "load_avg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    from lit_omarl.algos import ALGORITHMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="*", default=None, help="default: every registered algorithm")
    parser.add_argument("--shapes", nargs="*", default=list(common.SHAPES), choices=sorted(common.ALL_SHAPES),
                        help="SMAC/SMAX-like (episode batches) and continuous (transition batches) shapes")
    parser.add_argument("--batch", type=int, default=None,
                        help="episodes (discrete shapes) or transitions (continuous) per batch; default per shape: "
                        + ", ".join(f"{k} {v}" for k, v in common.DEFAULT_BATCH.items()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per timed block (sets updates per block)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Trainer/bare pairs = rounds x budget / time of a training step (3 to 60)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per algorithm and shape")
    parser.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "default"],
                        help="OMP_WAIT_POLICY of the measuring processes; passive keeps busy-waiting threads "
                        "from stealing the CPU on a shared, oversubscribed machine")
    parser.add_argument("--label", default="", help="free text stored with the result line (e.g. which code version)")
    parser.add_argument("--no-episode-index", dest="episode_index", action="store_false",
                        help="batches without the datamodule's 'episode' key (CFCQL then recomputes the behaviour probabilities every update)")
    parser.add_argument("--updates-per-step", type=int, default=1,
                        help="updates per Lightning training step in the Trainer (data.updates_per_step)")
    parser.add_argument("--child", nargs=2, metavar=("ALGORITHM", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        common.quiet()
        try:
            out = run_one(*args.child, args.batch, args.budget, args.rounds, args.episode_index, args.updates_per_step)
        except Exception as err:  # one algorithm failing on a shape must not stop the others
            out = {"skipped": f"{type(err).__name__}: {err}"[:300]}
        common.emit(out)
        return

    names = args.algorithms or sorted(ALGORITHMS)
    started = time.time()
    results: dict[str, dict] = {shape: {} for shape in args.shapes}
    import torch

    torch.set_num_threads(args.threads)  # what the child processes use, for the record
    info = common.machine_info()
    info["omp_wait_policy"] = args.omp_wait_policy
    for shape in args.shapes:
        common.dataset_file(shape, 256)
        batch = args.batch or common.DEFAULT_BATCH[shape]
        for name in names:
            cmd = [sys.executable, __file__, "--child", name, shape, "--batch", str(batch),
                   "--threads", str(args.threads), "--budget", str(args.budget), "--rounds", str(args.rounds),
                   "--updates-per-step", str(args.updates_per_step)]
            cmd += [] if args.episode_index else ["--no-episode-index"]
            results[shape][name] = common.run_child(cmd, f"{shape} {name}", args.omp_wait_policy, args.timeout)
    info["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    common.emit({
        "benchmark": "updates",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "batch_episodes": args.batch,
        "batch_per_shape": {s: args.batch or common.DEFAULT_BATCH[s] for s in args.shapes},
        "episode_index": args.episode_index,
        "updates_per_step": args.updates_per_step,
        "label": args.label,
        "shapes": {s: common.ALL_SHAPES[s] for s in args.shapes},
        "machine": info,
        "elapsed_s": round(time.time() - started, 1),
        "results": results,
    }, save_as="updates")


if __name__ == "__main__":
    main()
