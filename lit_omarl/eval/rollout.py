"""Batched policy rollouts: evaluation and anything else that runs a policy in an env.

The policy is anything with ``act(obs, avail, hidden, deterministic) ->
(actions, hidden)`` (every lit_omarl algorithm). All episodes of one batch run
in lockstep in one batched environment; there is no Python loop over envs.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch

from lit_omarl.envs.base import BatchedEnv
from lit_omarl.eval.scores import normalized_score


class Policy(Protocol):
    def act(self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any = None, deterministic: bool = True) -> tuple[torch.Tensor, Any]: ...


@torch.no_grad()
def run_episodes(policy: Policy, env: BatchedEnv, *, deterministic: bool, seed: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Run one batch of ``env.num_envs`` episodes to the end.

    Returns per-episode tensors: ``episode_return`` [B], ``episode_length`` [B],
    ``won`` [B] (only when the env reports wins) and ``env_steps`` (scalar).
    """
    ts = env.reset(seed=seed)
    b = env.num_envs
    returns = torch.zeros(b)
    lengths = torch.zeros(b, dtype=torch.long)
    won = None
    hidden = None
    env_steps = 0
    while env.active.any():
        active = env.active.clone()
        actions, hidden = policy.act(ts.obs.to(device), ts.avail.to(device), hidden, deterministic)
        ts = env.step(actions.cpu())
        returns += ts.reward * active
        lengths += active.long()
        env_steps += int(active.sum())
        if "won" in ts.info:
            won = ts.info["won"].bool() if won is None else (won | (ts.info["won"].bool() & active))
    out = {"episode_return": returns, "episode_length": lengths.float(), "env_steps": torch.tensor(env_steps)}
    if won is not None:
        out["won"] = won.float()
    return out


def evaluate(policy: Policy, env_id: str, env_options: dict | None, *, episodes: int, seed: int, deterministic: bool,
             max_envs: int = 256, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean return, win rate and normalized score of ``policy`` over ``episodes`` episodes.

    Episodes run in batches of at most ``max_envs`` parallel environments; batch k
    is seeded with ``seed + k`` so the result depends only on (policy, seed, episodes).
    """
    from lit_omarl.envs import make

    start = time.perf_counter()
    chunks: dict[str, list[torch.Tensor]] = {}
    env = None
    done, k, env_steps = 0, 0, 0
    while done < episodes:
        n = min(max_envs, episodes - done)
        if env is None or env.num_envs != n:
            env = make(env_id, num_envs=n, seed=seed, **(env_options or {}))
        out = run_episodes(policy, env, deterministic=deterministic, seed=seed + k, device=device)
        env_steps += int(out.pop("env_steps"))
        for key, value in out.items():
            chunks.setdefault(key, []).append(value)
        done += n
        k += 1
    per_episode = {key: torch.cat(v) for key, v in chunks.items()}
    elapsed = time.perf_counter() - start
    ret = per_episode["episode_return"]
    metrics = {
        "episode_return": float(ret.mean()),
        "episode_return_std": float(ret.std(unbiased=False)),
        "episode_length": float(per_episode["episode_length"].mean()),
        "episodes": float(episodes),
        "env_steps_per_sec": env_steps / max(elapsed, 1e-9),
    }
    if "won" in per_episode:
        metrics["win_rate"] = float(per_episode["won"].mean())
    score = normalized_score(env_id, env_options, metrics["episode_return"])
    if score is not None:
        metrics["normalized_score"] = score
    return metrics
