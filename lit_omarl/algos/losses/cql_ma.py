"""Loss pieces of CQL-MA: per-agent CQL with a linear value decomposition (icq.md App. D.2, omac.md App. A.2)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_omarl.algos.losses import NEG_INF

CQLForm = Literal["local", "weighted"]


def cql_ma_gap(
    q_all: torch.Tensor,
    actions: torch.Tensor,
    avail: torch.Tensor,
    q_taken_tot: torch.Tensor,
    mixer_params: Any = None,
    form: CQLForm = "local",
) -> torch.Tensor:
    """Per-step CQL-MA regulariser [B, T] (to be minimised).

        "local"    (omac.md: imposed on the local Q-values):
                   sum_i [ log sum_{a available} exp Q_i(tau_i, a) - Q_i(tau_i, a_i) ]
        "weighted" (icq.md Eq. 58):
                   sum_i log sum_{a available} exp(k_i(s) Q_i(tau_i, a) + b(s)) - Q_tot(s, a_data)

    Args:
        q_all: [B, T, N, A] per-agent Qs (with gradient).
        actions: [B, T, N] dataset actions.
        avail: [B, T, N, A] bool.
        q_taken_tot: [B, T] Q_tot of the dataset actions (used by "weighted").
        mixer_params: ``LinearMixParams`` (k [B, T, N], b [B, T]) of a linear mixer (used by "weighted").
        form: "local" or "weighted".
    """
    if form == "local":
        lse = torch.logsumexp(q_all.masked_fill(~avail, NEG_INF), dim=-1)
        return (lse - q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)).sum(-1)
    if form == "weighted":
        if not (hasattr(mixer_params, "k") and hasattr(mixer_params, "b")):
            raise ValueError("cql_form='weighted' needs the linear mixer (mixer='linear'): it uses k_i(s) and b(s)")
        z = mixer_params.k.unsqueeze(-1) * q_all + mixer_params.b[..., None, None]
        return torch.logsumexp(z.masked_fill(~avail, NEG_INF), dim=-1).sum(-1) - q_taken_tot
    raise ValueError(f"unknown CQL-MA form {form!r}; expected 'local' or 'weighted'")
