"""SMAX throughput: batched evaluation (32 episodes) and generation-like rollouts (B=256, random policy).

Prints one JSON line, also appended to benchmarks/results/smax.jsonl. Rates
are env steps (summed over parallel episodes, done episodes not counted) per
second of wall time and per second of this process's CPU time (the latter is
the figure to compare on a busy shared machine).
Compile times are cold (JAX's persistent cache is off unless --use-cache).

    python benchmarks/bench_smax.py [--map 2s3z] [--gen-envs 256] [--eval-episodes 32] [--use-cache]
        [--checkpoint runs/qmix_2s3z/final.pt]   # evaluate a trained qmix_online policy (default: random init)
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


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--map", default="2s3z")
    p.add_argument("--gen-envs", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="timed batches per measurement (after one warm-up)")
    p.add_argument("--use-cache", action="store_true", help="keep JAX's persistent compilation cache on")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--checkpoint", help="qmix_online checkpoint to evaluate (default: a randomly initialised GRU policy)")
    a = p.parse_args()
    if not a.use_cache:
        os.environ["LIT_OMARL_JAX_CACHE"] = "off"

    import torch

    torch.set_num_threads(a.threads)
    from lit_omarl.behaviour.qmix_online import QMIXPolicy

    torch.manual_seed(0)
    from lit_omarl.data.generate import generate_dataset
    from lit_omarl.envs import make
    from lit_omarl.envs.smax import _import_smax
    from lit_omarl.eval.rollout import run_episodes

    env_id = f"smax/{a.map}"
    _, import_s, _ = _timed(_import_smax)
    started = time.time()
    info = common.machine_info()  # torch threads set above; load average at the start
    result: dict[str, object] = {"benchmark": "smax", "command": " ".join([Path(sys.executable).name, *sys.argv]),
                                 "machine": info, "env": env_id, "import_s": round(import_s, 2),
                                 "xla_opt_level": int(os.environ.get("LIT_OMARL_SMAX_XLA_OPT", "1")),
                                 "torch_threads": a.threads, "cpus": os.cpu_count(),
                                 "load_avg_1min": round(os.getloadavg()[0], 2)}

    # batched evaluation: a QMIX GRU policy, greedy, 32 episodes in one batch
    env, make_s, _ = _timed(lambda: make(env_id, num_envs=a.eval_episodes, seed=0))
    result["compile_s_eval"] = round(env.compile_seconds, 2)
    policy = QMIXPolicy.load(a.checkpoint) if a.checkpoint else QMIXPolicy(env.spec)
    result["eval_policy"] = a.checkpoint or "random-init QMIX GRU (greedy)"
    run_episodes(policy, env, deterministic=True, seed=0)  # warm-up
    steps = wall = cpu = 0.0
    for k in range(a.repeats):
        out, w, c = _timed(lambda: run_episodes(policy, env, deterministic=True, seed=1 + k))
        steps, wall, cpu = steps + int(out["env_steps"]), wall + w, cpu + c
    result.update(eval_episodes=a.eval_episodes, eval_s_per_evaluation=round(wall / a.repeats, 3),
                  eval_cpu_s_per_evaluation=round(cpu / a.repeats, 3),
                  eval_episodes_per_s=round(a.repeats * a.eval_episodes / wall, 2),
                  eval_steps_per_s=round(steps / wall), eval_steps_per_cpu_s=round(steps / cpu),
                  eval_mean_episode_length=round(steps / (a.repeats * a.eval_episodes), 1))

    # raw env step of the evaluation batch (no policy): stop everywhere
    env.reset(seed=0)
    stop = torch.full((env.num_envs, env.spec.n_agents), 4)
    _, w, c = _timed(lambda: [env.step(stop) for _ in range(20)])
    result["env_step_ms_b%d" % env.num_envs] = round(1e3 * c / 20, 3)

    # generation-like: uniform random behaviour, B parallel episodes, the generator's own recorder
    b = a.gen_envs
    genv, _, _ = _timed(lambda: make(env_id, num_envs=b, seed=0))
    result["compile_s_gen"] = round(genv.compile_seconds, 2)
    genv.close()
    generate_dataset(env_id, "uniform", episodes=b, seed=0, batch_size=b)  # warm-up (same compiled core)
    steps = wall = cpu = 0.0
    for k in range(a.repeats):
        (arrays, _), w, c = _timed(lambda: generate_dataset(env_id, "uniform", episodes=b, seed=1 + k, batch_size=b))
        steps, wall, cpu = steps + int(arrays["filled"].sum()), wall + w, cpu + c
    result.update(gen_envs=b, gen_steps_per_s=round(steps / wall), gen_steps_per_cpu_s=round(steps / cpu),
                  gen_mean_episode_length=round(steps / (a.repeats * b), 1))
    genv2 = make(env_id, num_envs=b, seed=0)
    genv2.reset(seed=0)
    stop = torch.full((b, genv2.spec.n_agents), 4)
    _, w, c = _timed(lambda: [genv2.step(stop) for _ in range(10)])
    result["env_step_ms_b%d" % b] = round(1e3 * c / 10, 3)
    result["env_only_steps_per_cpu_s_b%d" % b] = round(b * 10 / c)
    info["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    result["elapsed_s"] = round(time.time() - started, 1)
    common.emit(result, save_as="smax")


if __name__ == "__main__":
    main()
