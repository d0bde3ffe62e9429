"""Loss pieces of BCQ-MA: the discrete BCQ action filter (icq.md App. D.2, omac.md App. A.2)."""

from __future__ import annotations

import torch


def bcq_allowed_actions(behaviour_probs: torch.Tensor, avail: torch.Tensor, threshold: float) -> torch.Tensor:
    """Actions an agent may choose under discrete BCQ.

        allowed_i(a) = avail_i(a) and G_i(a | tau_i) / max_{a' available} G_i(a' | tau_i) >= threshold

    G_i is the behaviour model. The most likely available action always
    passes (ratio 1), so the set is never empty; ``threshold`` 0 allows every
    available action (plain Q-learning), 1 only the behaviour's argmax.

    Args:
        behaviour_probs: [..., A] G_i(a | tau_i).
        avail: [..., A] bool (each row with at least one True).
        threshold: tau in [0, 1] (icq.md zeta = 0.3, omac.md 0.3).

    Returns:
        [..., A] bool.
    """
    p = behaviour_probs.masked_fill(~avail, 0.0)
    ratio = p / p.amax(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    return avail & (ratio >= threshold)
