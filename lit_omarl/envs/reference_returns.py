"""Measured reference returns of the continuous tasks (random and expert), for normalized scores.

normalized = 100 * (return - random) / (expert - random)  (D4RL's convention, as OMAR / CFCQL report it;
REFERENCE.md: "use D4RL's formula with fixed per-task references").

* random: mean episode return of uniform random actions in [action_low, action_high];
* expert: mean greedy return of the MATD3 actors shipped in
  ``lit_omarl/assets/behaviour/<env dir>/expert.pt`` (the behaviour policy of the expert dataset: the
  run's final actors, or with ``ship --expert-candidates K`` the best of its K best checkpoints
  re-evaluated on other episodes than these; ``policies.json`` says which).

Both measured on 1000 episodes (seed 12345, batches of 250 parallel episodes seeded 12345 + k) by::

    python -m lit_omarl.behaviour.continuous_recipe references --env ENV_ID [--option KEY=VALUE]

(the command :func:`lit_omarl.behaviour.continuous_recipe.ship_policies` runs when the policies are shipped;
the numbers and the load average are also in the assets folder's ``policies.json``). They are returns in
OUR environments (mpe2 rewards; docs/CONTINUOUS.md), not comparable with OMAR's MPE fork.

Options matter: a reference is valid only for the env options it was measured with (``env_options``
below, e.g. the prey of simple_tag); :func:`reference_returns` returns None for other options.
"""

from __future__ import annotations

from typing import Any

# env id -> measured references and how
REFERENCES: dict[str, dict[str, Any]] = {
    # measured 2026-11-22 by `python -m lit_omarl.behaviour.continuous_recipe ship --run RUN ...` (load average 6.1 on
    # 2 cores; 1000 episodes each, std random 7.80, expert 3.25); expert = mpe_simple_spread/expert.pt (MATD3, 1.35M steps)
    "mpe/simple_spread": {
        "random": -25.917743682861328,
        "expert": -9.977113723754883,
        "episodes": 1000,
        "env_options": {},
        "command": "python -m lit_omarl.behaviour.continuous_recipe references --env mpe/simple_spread",
    },
    # measured 2026-11-22 the same way (load average 1.6; std random 5.13, expert 29.14) with the shipped prey
    # (prey_policy="pretrained", lit_omarl/assets/behaviour/mpe_prey/simple_tag.pt); expert = mpe_simple_tag/expert.pt
    # (MATD3, 1.5M steps). Returns against the default "heuristic" prey are NOT normalized by these numbers.
    "mpe/simple_tag": {
        "random": 1.440000057220459,
        "expert": 41.06999969482422,
        "episodes": 1000,
        "env_options": {"prey_policy": "pretrained"},
        "command": "python -m lit_omarl.behaviour.continuous_recipe references --env mpe/simple_tag --option prey_policy=pretrained",
    },
    # measured 2026-11-22 by `python -m lit_omarl.behaviour.continuous_recipe ship --run RUN ...` (load average 1.80 on
    # 2 cores; 1000 episodes each, std random 9.25, expert 23.59) with the shipped world prey
    # (prey_policy="pretrained", lit_omarl/assets/behaviour/mpe_prey/simple_world_comm.pt); expert =
    # mpe_simple_world_comm/expert.pt (MATD3, 1.5M steps). Not valid against the default "heuristic" prey.
    "mpe/simple_world_comm": {
        "random": 4.332912445068359,
        "expert": 53.870967864990234,
        "episodes": 1000,
        "env_options": {"prey_policy": "pretrained"},
        "command": "python -m lit_omarl.behaviour.continuous_recipe references --env mpe/simple_world_comm --option prey_policy=pretrained",
    },
    # measured 2026-11-22 by `python -m lit_omarl.behaviour.continuous_recipe ship --run RUN ...` (load average 2.3 on
    # 2 cores; 1000 episodes each, std random 80.4, expert 782.8); expert = mamujoco_HalfCheetah-2x3/expert.pt
    # (MATD3, 570,624 env steps in 45 min; lit_omarl/assets/behaviour/mamujoco_HalfCheetah-2x3/policies.json)
    "mamujoco/HalfCheetah-2x3": {
        "random": -282.99676513671875,
        "expert": 8698.392578125,
        "episodes": 1000,
        "env_options": {},
        "command": "python -m lit_omarl.behaviour.continuous_recipe references --env mamujoco/HalfCheetah-2x3",
    },
    # measured 2026-11-22 by `python -m lit_omarl.behaviour.continuous_recipe ship --run RUN --expert-candidates 5 ...`
    # (load average 1.95 on 2 cores; 1000 episodes each, std random 15.8, expert 636.3); expert =
    # mamujoco_Hopper-3x1/expert.pt (MATD3 step_400002.pt, the best of 5 re-evaluated checkpoints of a 473,955-step,
    # 50-minute run; lit_omarl/assets/behaviour/mamujoco_Hopper-3x1/policies.json)
    "mamujoco/Hopper-3x1": {
        "random": 16.822803497314453,
        "expert": 2046.5177001953125,
        "episodes": 1000,
        "env_options": {},
        "command": "python -m lit_omarl.behaviour.continuous_recipe references --env mamujoco/Hopper-3x1",
    },
    # measured 2026-11-22 by `python -m lit_omarl.behaviour.continuous_recipe ship --run RUN --expert-candidates 5 ...`
    # (load average 2.29 on 2 cores; 1000 episodes each, std random 6.0, expert 1066.5); expert =
    # mamujoco_Walker2d-2x3/expert.pt (MATD3 step_550000.pt, the best of 5 re-evaluated checkpoints of a
    # 607,425-step, 55-minute run; lit_omarl/assets/behaviour/mamujoco_Walker2d-2x3/policies.json)
    "mamujoco/Walker2d-2x3": {
        "random": 1.649835467338562,
        "expert": 2839.342041015625,
        "episodes": 1000,
        "env_options": {},
        "command": "python -m lit_omarl.behaviour.continuous_recipe references --env mamujoco/Walker2d-2x3",
    },
    # measured 2026-11-22 by `python -m lit_omarl.behaviour.continuous_recipe ship --run RUN --expert-candidates 5 ...`
    # (load average 1.67 on 2 cores; 1000 episodes each, std random 96.7, expert 378.7) with the
    # 27-dimensional state of mabcq.md Table 6 (no contact forces); expert = mamujoco_Ant-4x2/expert.pt (MATD3
    # step_550004.pt, the best of 5 re-evaluated checkpoints of a 619,916-step, 75-minute run;
    # lit_omarl/assets/behaviour/mamujoco_Ant-4x2/policies.json). Not valid for the default 105-dimensional Ant.
    "mamujoco/Ant-4x2": {
        "random": -57.7551383972168,
        "expert": 2444.42822265625,
        "episodes": 1000,
        "env_options": {"gym_kwargs": {"include_cfrc_ext_in_observation": False}},
        "command": "python -m lit_omarl.behaviour.continuous_recipe references --env mamujoco/Ant-4x2 "
                   "--option 'gym_kwargs={\"include_cfrc_ext_in_observation\": false}'",
    },
}

# the flat (random, expert) view, shaped like lit_omarl.eval.scores.REFERENCE_RETURNS; it ignores env options
# (simple_tag's numbers hold for the shipped prey only): prefer reference_returns(env_id, env_options)
REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    env: (float(r["random"]), float(r["expert"])) for env, r in REFERENCES.items()
    if r["random"] is not None and r["expert"] is not None
}

# options that do not change the task's returns (bookkeeping defaults recorded in every spec)
_NEUTRAL = {"episode_limit": 25, "action_mode": "xy", "backend": "torch", "team_reward": "mean", "out_of_bounds": "clip",
            "local_ratio": 0.5}


# MaMuJoCo's defaults (lit_omarl.envs.mamujoco), recorded in every spec of that family
_NEUTRAL_MAMUJOCO = {"agent_obsk": 1, "episode_limit": 1000}


def _normal(options: dict[str, Any] | None, env_id: str = "") -> dict[str, Any]:
    neutral = {**_NEUTRAL, **_NEUTRAL_MAMUJOCO} if env_id.startswith("mamujoco/") else _NEUTRAL
    out = {k: v for k, v in (options or {}).items() if not (k in neutral and v == neutral[k])}
    out.pop("backend", None)  # the mpe2 backend is the same task
    out.pop("out_of_bounds", None)
    return out


def reference_returns(env_id: str, env_options: dict[str, Any] | None = None) -> tuple[float, float] | None:
    """(random, expert) of ``env_id`` with ``env_options`` (None if not measured for these options)."""
    ref = REFERENCES.get(env_id)
    if ref is None or ref["random"] is None or ref["expert"] is None:
        return None
    if _normal(env_options, env_id) != _normal(ref["env_options"], env_id):
        return None
    return float(ref["random"]), float(ref["expert"])


def normalized_score(env_id: str, env_options: dict[str, Any] | None, episode_return: float) -> float | None:
    """:func:`lit_omarl.eval.scores.normalized_score` (which falls back to the references here)."""
    from lit_omarl.eval.scores import normalized_score as score

    return score(env_id, env_options, episode_return)


__all__ = ["REFERENCES", "REFERENCE_RETURNS", "normalized_score", "reference_returns"]
