"""CQL-MA: per-agent conservative Q-learning with a linear value decomposition (ICQ / OMAC baseline)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, ConservativeQMIX, register_algorithm
from lit_omarl.algos.losses.cql_ma import CQLForm, cql_ma_gap


@register_algorithm("cql_ma")
class CQLMA(ConservativeQMIX):
    """CQL-MA (icq.md App. D.2 Eq. 58, omac.md App. A.2).

    The CQL(H) penalty imposed on each agent's local Q-values, the TD loss on
    Q_tot of a linear mixer Q_tot = sum_i k_i(s) Q_i + b(s):

        alpha * E[ sum_i ( log sum_{a available} exp Q_i(tau_i, a) - Q_i(tau_i, a_i) ) ]
          + E[ 0.5 * (Q_tot(s, a_data) - G_t)^2 ]

    (``cql_form="weighted"`` is Eq. 58 literally:
    sum_i log sum_a exp(k_i Q_i(a) + b) - Q_tot(s, a_data)). G_t is the
    double-Q TD(lambda) return of the target networks at the greedy available
    actions (the :class:`ConservativeQMIX` learner) and agents act greedily.

    Deviations: icq.md trains a separate actor with a decomposed policy
    gradient (Eq. 58, second line) and Tree-Backup targets; here CQL-MA is a
    value-based learner (greedy in Q_i, like discrete CQL) with TD(lambda)
    targets. Hyper-parameter defaults: alpha^CQL 2.0 (icq.md Table 4; omac.md
    uses 1.0), grad clip 20 (icq.md Table 4), lr 5e-4 and a linear mixer with bias (omac.md).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        cql_alpha: weight alpha^CQL of the penalty.
        cql_form: "local" (per-agent Q_i, omac.md) or "weighted" (Eq. 58; needs mixer="linear").
        lr, grad_clip_norm, td_lambda, mixer: as in :class:`ConservativeQMIX`, with this baseline's defaults.
        **kwargs: other arguments of :class:`ConservativeQMIX` (target_update_interval, ...) and of
            :class:`OfflineMARLModule` (gamma, agent, eval settings, seed, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        cql_alpha: float = 2.0,
        cql_form: CQLForm = "local",
        lr: float = 5e-4,
        grad_clip_norm: float = 20.0,
        td_lambda: float = 0.8,
        mixer: Literal["qmix", "linear", "vdn"] = "linear",
        **kwargs: Any,
    ) -> None:
        if cql_form not in ("local", "weighted"):
            raise ValueError(f"cql_form must be 'local' or 'weighted', got {cql_form!r}")
        if cql_form == "weighted" and mixer != "linear":
            raise ValueError(f"cql_form='weighted' uses k_i(s) and b(s) of the linear mixer; got mixer={mixer!r}")
        super().__init__(
            spec=spec, cql_alpha=cql_alpha, lr=lr, grad_clip_norm=grad_clip_norm, td_lambda=td_lambda, mixer=mixer, **kwargs
        )

    def conservative_gap(
        self, q_all: torch.Tensor, batch: Batch, avail: torch.Tensor, q_taken_tot: torch.Tensor, mixer_params: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gap = cql_ma_gap(q_all, batch["actions"], avail, q_taken_tot, mixer_params, self.hparams.cql_form)
        return gap, {}
