"""TD3 pieces of the continuous actor-critics (target smoothing, TD3+BC actor loss).

Pure functions of tensors, tested by hand in tests/test_continuous_algos.py.
"""

from __future__ import annotations

import torch

from lit_omarl.algos.losses.continuous import step_mean


def smoothed_target_actions(actions: torch.Tensor, noise_std: float, noise_clip: float | None, low: float,
                            high: float, noise: torch.Tensor | None = None) -> torch.Tensor:
    """TD3's target policy smoothing: clamp(a + clip(eps * std, -c, c), low, high), eps ~ N(0, 1).

    ``noise_clip`` None leaves the noise unclipped (the CFCQL-C code's ``action_noise``);
    ``noise`` gives the standard-normal draws (default: fresh ones)."""
    if noise_std <= 0:
        return actions
    eps = torch.randn_like(actions) if noise is None else noise
    eps = eps * noise_std
    if noise_clip is not None:
        eps = eps.clamp(-noise_clip, noise_clip)
    return (actions + eps).clamp(low, high)


def td3_bc_actor_loss(q_pi: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                      alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TD3+BC actor loss (Fujimoto & Gu 2021, Eq. 3 and its code):

        lambda = alpha / E|Q(s, pi)|   (no gradient)
        L      = -lambda * E[Q(s, pi)] + E[(pi - a_data)^2]

    The squared error is averaged over steps, agents and dims (``F.mse_loss``).

    Args:
        q_pi: [B, T] (joint policy action) or [B, T, N] (one counterfactual Q per agent), with gradient.
        pi: [B, T, N, A] policy actions; actions: [B, T, N, A] dataset actions; mask: [B, T].
        alpha: the BC trade-off (2.5).

    Returns:
        (loss, lambda, BC term).
    """
    lmbda = alpha / step_mean(q_pi.abs(), mask).detach().clamp_min(1e-8)
    bc = step_mean((pi - actions).pow(2), mask)
    return -lmbda * step_mean(q_pi, mask) + bc, lmbda, bc


__all__ = ["smoothed_target_actions", "td3_bc_actor_loss"]
