"""Helpers shared by the continuous-action environments (MaMuJoCo, MPE).

Padding. Agents of one task may have observations (MaMuJoCo HalfCheetah-6x1:
9, 9, 8, 9, 9, 8) or actions (MPE world: the leader also speaks) of different
sizes. Batched tensors use the largest size; agent ``i``'s real features are
the prefix ``[:size_i]`` and the tail is zero. An env describes this with

* ``agent_obs_dims`` / ``agent_action_dims``: tuples of the real sizes;
* ``obs_mask`` [N, O] / ``action_mask`` [N, A]: bool, True on real entries.

``env.spec.env_options`` rebuilds the env, so anyone holding only a spec
(e.g. of a dataset) gets the masks with ``make(spec.env_id, **spec.env_options)``.
Padded action entries are ignored by the env (never checked, never applied).

Out-of-bound actions (option ``out_of_bounds``):

* ``"clip"`` (default): actions are clipped to ``[spec.action_low,
  spec.action_high]`` before they reach the simulator, so the reward is the
  one of the action actually applied (gymnasium's MuJoCo control cost is
  computed on the action it is given, while MuJoCo itself clamps the control:
  without clipping the two would disagree). Datasets must store actions in
  bounds (schema v1), so generators should store the clipped action
  (:func:`clip_actions`).
* ``"error"``: any real entry of an active episode outside the bounds raises
  ``ValueError`` naming the env, episode, agent, dimension and value.

Non-finite actions (NaN, inf) of active episodes always raise ``ValueError``.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

OutOfBounds = Literal["clip", "error"]
OUT_OF_BOUNDS = ("clip", "error")


def padding_mask(sizes: Sequence[int], width: int | None = None) -> torch.Tensor:
    """bool [N, width]: row i is True on its first ``sizes[i]`` entries."""
    width = max(sizes) if width is None else int(width)
    return torch.arange(width)[None, :] < torch.tensor([int(s) for s in sizes])[:, None]


def check_out_of_bounds_option(env_id: str, value: str) -> str:
    if value not in OUT_OF_BOUNDS:
        raise ValueError(f"{env_id}: option out_of_bounds must be one of {', '.join(OUT_OF_BOUNDS)}, got {value!r}")
    return value


def clip_actions(actions: torch.Tensor, low: float, high: float, action_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Actions clipped to [low, high], with padded entries (``~action_mask``) set to 0."""
    out = actions.clamp(low, high)
    if action_mask is not None:
        out = out * action_mask.to(out.dtype)
    return out


def prepare_actions(env_id: str, actions: torch.Tensor, active: torch.Tensor, low: float, high: float,
                    action_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Validate continuous actions [B, N, A] of the active episodes and return them clipped, float64, padding zeroed.

    Raises ValueError for non-finite real entries of active episodes, and (``mode="error"``)
    for real entries outside [low, high].
    """
    a = actions.detach().to("cpu", torch.float64)
    real = action_mask[None].expand_as(a) & active[:, None, None].expand_as(a)
    bad = real & ~torch.isfinite(a)
    if bad.any():
        b, i, k = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{env_id}: non-finite action {a[b, i, k].item()} in env {b}, agent {i}, dim {k}")
    if mode == "error":
        out = real & ((a < low) | (a > high))
        if out.any():
            b, i, k = (int(v) for v in out.nonzero()[0])
            raise ValueError(f"{env_id}: action {a[b, i, k].item():.6g} in env {b}, agent {i}, dim {k} is outside "
                             f"[{low}, {high}] ({int(out.sum())} entries out of bounds; option out_of_bounds='clip' clips them)")
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a))  # inactive / padded garbage must not poison the sim
    return clip_actions(a, low, high, action_mask)


# ---------------------------------------------------------------------- benchmark
def benchmark(env_id: str, num_envs: int = 32, seed: int = 0, episodes: int = 1, **options) -> dict:
    """Roll out uniform random actions in ``num_envs`` parallel episodes until all are done.

    Returns env steps (active episode-steps), wall seconds (rollout only, env
    construction excluded) and env steps per second.
    """
    import time

    from lit_omarl.envs import make

    t0 = time.perf_counter()
    env = make(env_id, num_envs=num_envs, seed=seed, **options)
    build = time.perf_counter() - t0
    spec = env.spec
    g = torch.Generator().manual_seed(seed)
    steps, seconds = 0, 0.0
    for _ in range(episodes):
        start = time.perf_counter()
        env.reset()
        while bool(env.active.any()):
            u = torch.rand(num_envs, spec.n_agents, spec.n_actions, generator=g)
            steps += int(env.active.sum())
            env.step(spec.action_low + (spec.action_high - spec.action_low) * u)
        seconds += time.perf_counter() - start
    env.close()
    return {"env": env_id, "num_envs": num_envs, "episodes_per_env": episodes, "env_steps": steps,
            "seconds": round(seconds, 3), "build_seconds": round(build, 3), "env_steps_per_s": round(steps / seconds, 1)}


if __name__ == "__main__":  # python -m lit_omarl.envs.continuous ENV_ID [NUM_ENVS] [EPISODES]
    import json
    import sys

    args = sys.argv[1:]
    if not args:
        raise SystemExit("usage: python -m lit_omarl.envs.continuous ENV_ID [NUM_ENVS] [EPISODES]")
    print(json.dumps(benchmark(args[0], int(args[1]) if len(args) > 1 else 32, episodes=int(args[2]) if len(args) > 2 else 1)))
