"""OMIGA's local objectives as pure functions (Wang et al. 2023, official-code form).

Shapes: [B, T, N] per-agent terms, mask [B, T]; tested by hand in tests/test_omiga.py.
"""

from __future__ import annotations

import torch

from lit_omarl.algos.losses import masked_mean


def omiga_z(w: torch.Tensor, q_target_taken: torch.Tensor, v_local: torch.Tensor, alpha: float, clip: float = 10.0) -> torch.Tensor:
    """z_i = clip(w_i(s) (Qbar_i(o_i, a_i) - V_i(o_i)) / alpha, -clip, clip); gradient only through V_i.

    w_i(s) comes from the target mixer and Qbar_i from the target Q network (both detached).
    """
    return (w.detach() * (q_target_taken.detach() - v_local) / alpha).clamp(-clip, clip)


def omiga_value_loss(z: torch.Tensor, w: torch.Tensor, v_local: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """Local value loss  E[ exp(z_i - M) + exp(-M) w_i(s) V_i(o_i) / alpha ]  over valid steps and agents.

    This is exp(-M) times the implicit local regulariser exp(z_i) + w_i V_i / alpha,
    whose minimiser satisfies E_mu[exp(w_i (Qbar_i - V_i) / alpha)] = 1, i.e.
    V_i = (alpha / w_i) log E_{a_i ~ mu_i}[exp(w_i Qbar_i / alpha)]. The positive
    factor exp(-M), M = max(max z, -1) over the batch's valid entries (detached),
    only prevents overflow; it does not move the minimiser.

    Args:
        z: [B, T, N] from :func:`omiga_z`.
        w: [B, T, N] target-mixer weights (detached).
        v_local: [B, T, N] V_i(o_i) (with gradient).
        mask: [B, T].
        alpha: regularisation temperature.
    """
    valid = mask.unsqueeze(-1).expand_as(z) > 0
    m = z.detach().masked_fill(~valid, float("-inf")).max().clamp_min(-1.0)
    loss = torch.exp(z - m) + torch.exp(-m) * w.detach() * v_local / alpha
    return masked_mean(loss, mask.unsqueeze(-1))


def omiga_policy_weights(z: torch.Tensor) -> torch.Tensor:
    """Weights exp(z_i) of the local weighted behaviour cloning (no gradient; z is already clipped)."""
    return torch.exp(z.detach())
