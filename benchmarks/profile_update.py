"""Where the time of one update goes: CPU seconds of named methods inside one bare update.

For each algorithm (one fresh process each, 1 thread by default), one warm-up
update and then one timed update of the bare loop on a batch of ``--batch``
full-length episodes, with the methods listed in ``PROBES`` (those the module
has) and ``manual_backward`` timed by ``common.Segments``. Nested probes are
each counted in full (e.g. a per-agent optimizer step includes its backward).
With ``--ops N`` the N most expensive torch operators of the timed update are
listed too (``top_ops_self_cpu_ms``: torch.profiler's "self CPU time", which is
the wall-clock time spent in each operator on the calling thread, so it is
inflated when the machine is oversubscribed); the profiler also adds a little
overhead to the probes' CPU seconds.

    python benchmarks/profile_update.py --algorithms alberdice madtkd awac inspo [--shape smac_2s3z] [--ops 15]

Prints one JSON line, also appended to benchmarks/results/profile.jsonl.
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

# (owner attribute path, method, label); "" = the module itself
PROBES = [
    ("", "conservative_gap", "regulariser (conservative_gap)"),
    ("", "_others_kl", "others' KL: sampled joint actions x autoregressive MLP"),
    ("", "_nu_gradient_penalty", "nu gradient penalty (double backward)"),
    ("", "_expected_q", "E_pi[Q] over joint actions"),
    ("", "run_agents", "transformer forwards (student and teacher)"),
    ("", "_step", "per-agent optimizer steps (incl. backward)"),
    ("ar_behaviour", "log_prob_others", "autoregressive behaviour MLP"),
    ("actors", "agent_seq", "per-agent actor GRU runs"),
    ("agent", "forward_seq", "agent network forward"),
    ("target_agent", "forward_seq", "target agent forward"),
    ("behaviour", "forward_seq", "behaviour model forward"),
]


def run_one(name: str, shape: str, batch: int, ops: int, episode_index: bool = True) -> dict:
    import torch

    dm = common.make_datamodule(shape, batch, episode_index=episode_index)
    model = common.make_model(name, common.spec_of(shape))
    bare = common.BareLoop(model, dm)
    bare.timed_steps(1)
    seg = common.Segments()
    for owner_path, attr, label in PROBES:
        owner = model if not owner_path else getattr(model, owner_path, None)
        if owner is not None and callable(getattr(owner, attr, None)):
            seg.wrap(owner, attr, label)
    seg.wrap(model, "manual_backward", "backward (through manual_backward)")
    load_start = [round(x, 2) for x in os.getloadavg()]
    if ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall, cpu = bare.timed_steps(1)
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:ops]
        top_ops = {e.key: round(e.self_cpu_time_total / 1e3, 1) for e in top}
    else:
        wall, cpu = bare.timed_steps(1)
        top_ops = None
    out = {
        "cpu_s_per_update": round(cpu[0], 3),
        "wall_s_per_update": round(wall[0], 3),
        "cpu_s": {k: round(v, 3) for k, v in seg.cpu.items()},
        "threads": torch.get_num_threads(),
        "load_avg_1_5_15_start": load_start,
        "load_avg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
    }
    if top_ops is not None:
        out["top_ops_self_cpu_ms"] = top_ops
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="+", default=["cfcql"])
    parser.add_argument("--shape", default="smac_2s3z", choices=sorted(common.SHAPES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ops", type=int, default=0, help="also list the N most expensive torch operators")
    parser.add_argument("--label", default="", help="free text stored with the result line (e.g. which code version)")
    parser.add_argument("--no-episode-index", dest="episode_index", action="store_false",
                        help="batches without the datamodule's 'episode' key (CFCQL then recomputes the behaviour probabilities every update)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        common.quiet()
        try:
            out = run_one(args.child, args.shape, args.batch, args.ops, args.episode_index)
        except Exception as err:
            out = {"skipped": f"{type(err).__name__}: {err}"[:300]}
        common.emit(out)
        return

    info = common.machine_info()
    started = time.time()
    results = {}
    common.dataset_file(args.shape, 256)
    for name in args.algorithms:
        cmd = [sys.executable, __file__, "--child", name, "--shape", args.shape, "--batch", str(args.batch),
               "--threads", str(args.threads), "--ops", str(args.ops)]
        cmd += [] if args.episode_index else ["--no-episode-index"]
        results[name] = common.run_child(cmd, name, "passive")
    info["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    common.emit({
        "benchmark": "profile",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "shape": {args.shape: common.SHAPES[args.shape]},
        "batch_episodes": args.batch,
        "episode_index": args.episode_index,
        "label": args.label,
        "machine": info,
        "elapsed_s": round(time.time() - started, 1),
        "results": results,
    }, save_as="profile")


if __name__ == "__main__":
    main()
