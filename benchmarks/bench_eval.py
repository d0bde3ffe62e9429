"""Evaluation throughput: one 32-episode evaluation (what the evaluation callback runs) per environment.

For each environment, a policy acts greedily in ``--episodes`` parallel
episodes through ``lit_omarl.eval.rollout.evaluate`` (the code path of every
training run's evaluation callback). One untimed evaluation first (env
construction, JAX / MuJoCo start-up), then ``--repeats`` timed ones with new
seeds; reported per environment: seconds per evaluation (wall and process
CPU), episodes/s, env steps/s (steps of all parallel episodes), mean episode
length, and the one-off construction time.

Policies: SMAX the shipped expert QMIX GRU policy of the map (a trained policy
gives realistic episode lengths), MPE the shipped expert MATD3 actor of the
task, MaMuJoCo a freshly initialised MATD3 actor (episodes run to the time
limit whatever the actor does, unless the robot falls).

    python benchmarks/bench_eval.py [--envs smax/2s3z mpe/simple_spread mamujoco/HalfCheetah-2x3] [--threads 2]

Prints one JSON line, also appended to benchmarks/results/eval.jsonl.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

DEFAULT_ENVS = ("smax/2s3z", "mpe/simple_spread", "mpe/simple_tag", "mamujoco/HalfCheetah-2x3")


def policy_for(env_id: str) -> tuple[Any, str]:
    """The policy that acts in ``env_id`` and a description of it."""
    from lit_omarl.behaviour import ASSETS, load_policy
    from lit_omarl.behaviour.matd3_online import MATD3Policy, load_actor
    from lit_omarl.envs import make

    family, task = env_id.split("/", 1)
    if family == "smax":
        return load_policy(f"smax_{task}/expert"), f"shipped expert QMIX policy (smax_{task}/expert)"
    if family == "mpe":
        return load_actor(ASSETS / f"mpe_{task}" / "expert.pt"), f"shipped expert MATD3 actor (mpe_{task}/expert)"
    spec = make(env_id, num_envs=1, seed=0).spec
    return MATD3Policy(spec), "freshly initialised MATD3 actor (hidden 64)"


def measure(env_id: str, episodes: int, repeats: int) -> dict[str, Any]:
    from lit_omarl.eval.rollout import evaluate

    policy, described = policy_for(env_id)
    w0, c0 = time.perf_counter(), time.process_time()
    evaluate(policy, env_id, None, episodes=episodes, seed=0, deterministic=True)
    first = time.perf_counter() - w0, time.process_time() - c0
    wall = cpu = steps = 0.0
    for k in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = evaluate(policy, env_id, None, episodes=episodes, seed=1000 * (k + 1), deterministic=True)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
        steps += out["episode_length"] * episodes
    return {
        "policy": described,
        "episodes": episodes,
        "first_evaluation_s": round(first[0], 2),
        "s_per_evaluation": round(wall / repeats, 3),
        "cpu_s_per_evaluation": round(cpu / repeats, 3),
        "episodes_per_s": round(repeats * episodes / wall, 1),
        "env_steps_per_s": round(steps / wall),
        "env_steps_per_cpu_s": round(steps / cpu),
        "mean_episode_length": round(steps / (repeats * episodes), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="*", default=list(DEFAULT_ENVS))
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed evaluations per environment (after one untimed)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--label", default="", help="free text stored with the result line")
    a = p.parse_args()
    if a.episodes < 1 or a.repeats < 1:
        p.error("--episodes and --repeats must be >= 1")

    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    common.quiet()
    started = time.time()
    info = common.machine_info()
    results: dict[str, Any] = {}
    for env_id in a.envs:
        load = round(os.getloadavg()[0], 2)
        try:
            results[env_id] = {**measure(env_id, a.episodes, a.repeats), "load_avg_1min_start": load}
        except Exception as err:  # a simulator missing here must not stop the others
            results[env_id] = {"skipped": f"{type(err).__name__}: {err}"[:300]}
        print(f"{env_id}: {results[env_id]}", file=sys.stderr, flush=True)
    info["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    common.emit({"benchmark": "eval", "command": " ".join([Path(sys.executable).name, *sys.argv]),
                 "label": a.label, "machine": info, "elapsed_s": round(time.time() - started, 1),
                 "results": results}, save_as="eval")


if __name__ == "__main__":
    main()
