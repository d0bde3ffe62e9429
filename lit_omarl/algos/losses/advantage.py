"""Shared pieces of the in-sample / advantage-weighted learners (IQL, AWAC, OMAC, OMIGA).

Pure functions of tensors (plus the target / secondary-optimizer update
helpers), written once and imported by the four algorithm modules; each is
tested against a hand-computed case in tests/test_iql_awac.py.

Shapes: B episodes, T steps, N agents, A actions, K candidate joint actions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from lit_omarl.algos.losses import NEG_INF, masked_log_softmax, masked_mean, policy_actions  # noqa: F401 (re-exported)

# Largest weight of advantage-weighted regression (IQL / AWAC reference code: 100).
AWR_MAX_WEIGHT = 100.0


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squared loss L_2^tau(u) = |tau - 1(u < 0)| u^2, elementwise (IQL Eq. 5, OMAC Eq. 5).

    Args:
        diff: u = target - prediction (e.g. Q(s, a) - V(s)).
        expectile: tau in (0, 1); tau = 0.5 gives 0.5 * u^2 (least squares).

    Returns:
        a tensor shaped like ``diff`` (mask and average it yourself).
    """
    if not 0.0 < expectile < 1.0:
        raise ValueError(f"expectile must be in (0, 1), got {expectile}")
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.pow(2)


def value_targets(reward: torch.Tensor, terminated: torch.Tensor, v_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """One-step targets y = r + gamma * (1 - d) * V(s') of an in-sample learner (no gradient).

    Args:
        reward, terminated: [B, T].
        v_next: [B, T] value of the next state / observation (V(s') or V_tot(o')).
    """
    return (reward + gamma * (1.0 - terminated.to(reward.dtype)) * v_next).detach()


def squared_td_loss(q: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """E[(Q - y)^2] over valid steps (OMAC Eq. 6, OMIGA and IQL critics); q [..., B, T] broadcast against mask [B, T].

    A leading ensemble dimension of ``q`` is summed (one loss per critic, as IQL's twin critics).
    """
    err = (q - targets.detach()).pow(2)
    if err.dim() == mask.dim():
        return masked_mean(err, mask)
    return sum(masked_mean(e, mask) for e in err.flatten(0, err.dim() - mask.dim() - 1))


def awr_weights(
    advantage: torch.Tensor,
    temperature: float,
    max_weight: float = AWR_MAX_WEIGHT,
    min_weight: float = 0.0,
) -> torch.Tensor:
    """Advantage-weighted-regression weights clip(exp(temperature * A), min_weight, max_weight), no gradient.

    IQL uses temperature beta (``exp(beta * A)``), AWAC 1 / lambda; both clip at 100.
    OMIGA clips its exponent to [-10, 10], i.e. weights in [e^-10, e^10].
    """
    with torch.no_grad():
        return torch.exp(temperature * advantage).clamp(min=min_weight, max=max_weight)


def taken_log_probs(logits: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """log pi_i(a_i | tau_i) of the dataset actions, softmax over available actions.

    Args:
        logits: [..., N, A]; actions: [..., N] long; avail: [..., N, A] bool.

    Returns:
        [..., N]
    """
    return masked_log_softmax(logits, avail).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def weighted_nll(log_probs: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantage-weighted behaviour cloning -E[w * log pi(a | o)] over valid steps and agents.

    Args:
        log_probs: [B, T, N] log pi_i(a_i | tau_i).
        weights: [B, T, N] or [B, T] (one weight per joint action, broadcast over agents); no gradient.
        mask: [B, T] valid steps.
    """
    if weights.dim() == log_probs.dim() - 1:
        weights = weights.unsqueeze(-1)
    return masked_mean(-weights.detach() * log_probs, mask.unsqueeze(-1))


@torch.no_grad()
def soft_update(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    """Polyak averaging theta' <- tau * theta + (1 - tau) * theta' (buffers copied)."""
    for p_t, p in zip(target.parameters(), online.parameters()):
        p_t.lerp_(p, tau)
    for b_t, b in zip(target.buffers(), online.buffers()):
        b_t.copy_(b)


def all_joint_actions(n_agents: int, n_actions: int, device: torch.device | None = None) -> torch.Tensor:
    """Every joint action, [A^N, N] long, in lexicographic order (agent 0 slowest)."""
    grid = list(itertools.product(range(n_actions), repeat=n_agents))
    return torch.tensor(grid, dtype=torch.long, device=device).reshape(-1, n_agents)


def joint_policy_expectation(
    q_fn: Callable[[torch.Tensor], torch.Tensor],
    probs: torch.Tensor,
    max_enumerate: int = 4096,
    n_samples: int = 16,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E_{a ~ prod_i pi_i}[Q(a)] of a joint-action critic under a product of per-agent policies.

    Exact when A^N <= ``max_enumerate`` (every joint action, weighted by
    prod_i pi_i(a_i)); otherwise the mean over ``n_samples`` joint actions
    sampled from the policies.

    Args:
        q_fn: joint actions [..., K, N] long -> Q [..., K] (leading dims those of ``probs``).
        probs: [..., N, A] per-agent action probabilities (0 on unavailable actions).
        max_enumerate: largest joint action space that is enumerated.
        n_samples: Monte-Carlo samples otherwise.
        generator: for reproducible samples.

    Returns:
        [...]
    """
    *lead, n, a = probs.shape
    if a**n <= max_enumerate:
        joint = all_joint_actions(n, a, probs.device)  # [K, N]
        joint = joint.expand(*lead, *joint.shape)  # [..., K, N]
        p = probs.unsqueeze(-3).expand(*lead, joint.shape[-2], n, a)
        p_joint = p.gather(-1, joint.unsqueeze(-1)).squeeze(-1).prod(-1)  # [..., K]
        return (p_joint * q_fn(joint)).sum(-1)
    flat = probs.reshape(-1, a).clamp_min(0.0)
    samples = torch.multinomial(flat + (flat.sum(-1, keepdim=True) == 0), n_samples, True, generator=generator)
    joint = samples.reshape(*lead, n, n_samples).transpose(-1, -2)  # [..., K, N]
    return q_fn(joint).mean(-1)

