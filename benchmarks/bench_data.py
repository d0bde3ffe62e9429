"""Dataset loading: time and resident memory per GB of HDF5, and the largest dataset that trains in 24 GiB.

1. Writes schema-v1 files of a few hundred MB of random full-length episodes
   in /tmp (``lit_omarl.data.schema.example_arrays`` + ``write_dataset``;
   never in the repository), SMAC-2s3z- and SMAX-2s3z-shaped.
2. In a fresh process per file: ``OfflineDataModule(path).setup()`` (read,
   validate, convert to resident tensors): load seconds per GB of file, the
   resident memory it adds over the raw array bytes (target <= 1.2x), the
   peak during loading, and the time of one episode batch of 128.
3. Estimates the largest dataset that trains on a 24 GiB machine for the
   SMAX 6h_vs_8z shape (obs 179, state 168, 13 actions, 6 agents, 100 steps;
   cfcql.md App. D.5 uses 50,000 episodes of 6h_vs_8z): resident bytes per
   episode (the DataModule's dtypes) and the measured working set of a CFCQL
   update at batch 128 on that shape.

    python benchmarks/bench_data.py [--episodes 1200]

Prints one JSON line, also appended to benchmarks/results/data.jsonl
(with a UTC timestamp and the machine record: CPU, torch, threads, load average).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

GIB = 1024**3
MACHINE_GIB = 24


def resident_bytes_per_episode(shape: str, behaviour_probs: bool = False) -> dict[str, int]:
    """Bytes one episode occupies in OfflineDataModule's resident tensors (its dtypes, docs/CONTRACTS.md)."""
    d = {**common.SHAPES, **common.EXTRA_SHAPES}[shape]
    t, n, o, s, a = d["episode_limit"], d["n_agents"], d["obs_dim"], d["state_dim"], d["n_actions"]
    out = {
        "obs": (t + 1) * n * o * 4,  # float32
        "state": (t + 1) * s * 4,
        "actions": t * n * 8,  # int64
        "avail_actions": (t + 1) * n * a,  # bool
        "reward": t * 4,
        "terminated": t * 4,  # float32 (uint8 in the file)
        "mask": t * 4,  # float32 (filled, uint8 in the file)
        "transition_index": t * 16,  # (episode, step) int64 pairs of valid steps
    }
    if behaviour_probs:
        out["behaviour_probs"] = t * n * a * 4
    out["total"] = sum(out.values())
    return out


def file_bytes_per_episode(shape: str) -> int:
    """Bytes of one episode in a schema-v1 file (required keys, uncompressed)."""
    d = {**common.SHAPES, **common.EXTRA_SHAPES}[shape]
    t, n, o, s, a = d["episode_limit"], d["n_agents"], d["obs_dim"], d["state_dim"], d["n_actions"]
    return (t + 1) * n * o * 4 + (t + 1) * s * 4 + t * n * 8 + (t + 1) * n * a + t * 4 + t + t


def child_load(path: str) -> dict:
    import h5py
    import torch

    from lit_omarl.data.datamodule import OfflineDataModule

    with h5py.File(path, "r") as f:
        raw = {k: f[k].size * f[k].dtype.itemsize for k in f.keys()}
    gc.collect()
    rss0, peak0 = common.current_rss_mb(), common.peak_rss_mb()
    start = time.perf_counter()
    dm = OfflineDataModule(path=path, batch_size=128, sampling="episode", seed=0)
    dm.setup("fit")
    load_s = time.perf_counter() - start
    gc.collect()
    rss1 = common.current_rss_mb()
    held = sum(v.numel() * v.element_size() for v in dm._tensors.values())
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        dm.sample()
        times.append(time.perf_counter() - t0)
    file_gb = Path(path).stat().st_size / 1e9
    raw_bytes = sum(raw.values())
    return {
        "file": path,
        "file_gb": round(file_gb, 4),
        "episodes": dm.n_episodes,
        "raw_array_mb": round(raw_bytes / 2**20, 1),
        "load_s": round(load_s, 3),
        "load_s_per_gb": round(load_s / file_gb, 3),
        "resident_added_mb": round(rss1 - rss0, 1),
        "resident_over_raw": round((rss1 - rss0) * 2**20 / raw_bytes, 4),
        "tensor_bytes_over_raw": round(held / raw_bytes, 4),
        "load_peak_added_mb": round(max(common.peak_rss_mb(), peak0) - rss0, 1),
        "load_peak_over_raw": round((max(common.peak_rss_mb(), peak0) - rss0) * 2**20 / raw_bytes, 4),
        "sample_batch128_ms": round(sorted(times)[len(times) // 2] * 1e3, 2),
        "threads": torch.get_num_threads(),
    }


def child_train(shape: str) -> dict:
    """Resident working set of CFCQL updates at batch 128 on ``shape`` (small dataset)."""
    dm = common.make_datamodule(shape, 128, episodes=256)
    gc.collect()
    before = common.current_rss_mb()
    data_mb = sum(v.numel() * v.element_size() for v in dm._tensors.values()) / 2**20
    model = common.make_model("cfcql", common.spec_of(shape))
    loop = common.BareLoop(model, dm)
    loop.timed_steps(2)
    return {
        "rss_before_model_mb": round(before - data_mb, 1),
        "update_peak_added_mb": round(common.peak_rss_mb() - before, 1),
    }


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=common.child_env("passive"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": f"exit {proc.returncode}: {proc.stderr[-300:]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=1200, help="episodes per test file (~0.3 GB)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--child-train", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.child_load or args.child_train:
        common.quiet()
        common.emit(child_load(args.child_load) if args.child_load else child_train(args.child_train))
        return

    started = time.time()
    info = common.machine_info()
    loads = {}
    for shape in common.SHAPES:
        t0 = time.perf_counter()
        path = common.dataset_file(shape, args.episodes)
        loads[shape] = {"write_s": round(time.perf_counter() - t0, 2), **run_child("--child-load", str(path))}
        print(f"{shape}: {json.dumps(loads[shape])}", file=sys.stderr, flush=True)

    big = "smax_6h_vs_8z"
    per_ep = resident_bytes_per_episode(big)
    common.dataset_file(big, 256)  # written here, so the child's peak memory is its training only
    train = run_child("--child-train", big)
    # Loading holds, besides the resident tensors, the uint8 avail_actions of the file and a 0/1
    # check of it (per episode), and fixed-size validation blocks (measured on the test files).
    per_ep_loading = per_ep["total"] + 2 * per_ep["avail_actions"]
    fixed_mb = max((v["load_peak_added_mb"] - v["resident_added_mb"] for v in loads.values() if "load_peak_added_mb" in v), default=0.0)
    base_mb = train.get("rss_before_model_mb", 0.0)
    budget_train = MACHINE_GIB * GIB - (base_mb + train.get("update_peak_added_mb", 0.0)) * 2**20
    budget_load = MACHINE_GIB * GIB - (base_mb + fixed_mb) * 2**20
    max_resident = int(budget_train // per_ep["total"])
    max_loading = int(budget_load // per_ep_loading)
    paper = 50_000
    estimate = {
        "shape": {big: common.EXTRA_SHAPES[big]},
        "resident_bytes_per_episode": per_ep,
        "file_bytes_per_episode": file_bytes_per_episode(big),
        "loading_bytes_per_episode": per_ep_loading,
        "loading_fixed_extra_mb": round(fixed_mb, 1),
        "training_working_set": train,
        "machine_gib": MACHINE_GIB,
        "max_episodes_resident": max_resident,  # dataset + process + CFCQL update at batch 128
        "max_episodes_loading_peak": max_loading,  # dataset + loading temporaries
        "max_episodes": min(max_resident, max_loading),
        "paper_episodes": paper,
        "paper_dataset_resident_gib": round(paper * per_ep["total"] / GIB, 2),
        "paper_fits": paper <= min(max_resident, max_loading),
        # CFCQL's code trains on the first 5000 episodes of the file (data.max_episodes=5000)
        "paper_fits_with_max_episodes_5000": 5000 <= min(max_resident, max_loading),
    }
    info["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    common.emit({
        "benchmark": "data",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": info,
        "elapsed_s": round(time.time() - started, 1),
        "load": loads,
        "largest_dataset_24gib": estimate,
    }, save_as="data")


if __name__ == "__main__":
    main()
