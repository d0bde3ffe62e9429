"""OMAC's coupled value factorization as pure functions (omac.md Eq. 2, 5, 6).

Shapes: [..., N] per-agent values, [...] global ones; tested by hand in tests/test_omac.py.
"""

from __future__ import annotations

import torch

from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.advantage import expectile_loss


def coupled_v_tot(w_v: torch.Tensor, v_local: torch.Tensor, v_share: torch.Tensor) -> torch.Tensor:
    """V_tot(o) = sum_i w^v_i(o) V_i(o_i) + V_share(o)   (Eq. 2, first line)."""
    return (w_v * v_local).sum(-1) + v_share


def coupled_q_tot(v_tot: torch.Tensor, w_q: torch.Tensor, q_taken: torch.Tensor, v_local: torch.Tensor) -> torch.Tensor:
    """Q_tot(o, a) = V_tot(o) + sum_i w^q_i(o, a) (Q_i(o_i, a_i) - V_i(o_i))   (Eq. 2, second line)."""
    return v_tot + (w_q * (q_taken - v_local)).sum(-1)


def local_expectile_loss(q_target_taken: torch.Tensor, v_local: torch.Tensor, mask: torch.Tensor, expectile: float) -> torch.Tensor:
    """L_V = E_{(o_i, a_i) ~ D}[L_2^tau(Qbar_i(o_i, a_i) - V_i(o_i))], averaged over valid steps and agents (Eq. 5).

    Args:
        q_target_taken: [B, T, N] target-network Q_i of the dataset actions (no gradient).
        v_local: [B, T, N] V_i(o_i).
        mask: [B, T].
        expectile: tau.
    """
    return masked_mean(expectile_loss(q_target_taken.detach() - v_local, expectile), mask.unsqueeze(-1))
