"""QMIX trained offline: the naive value-decomposition baseline (CFCQL Fig. 1, ICQ Fig. 4)."""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import Batch, ConservativeQMIX, register_algorithm
from lit_omarl.algos.losses import masked_mean


@register_algorithm("qmix")
class QMIX(ConservativeQMIX):
    """Plain QMIX (Rashid et al. 2018) on a fixed dataset, without any offline correction.

    Loss, over the shared agent network and the monotonic mixer:

        E[ 0.5 * (Q_tot(s, a_data) - G_t)^2 ]

    with G_t the double-Q TD(lambda) return of the target networks at the
    online network's greedy AVAILABLE actions, i.e. :class:`ConservativeQMIX`
    with the regulariser switched off (the CFCQL code with ``global_cql_alpha``
    0). The greedy bootstrap evaluates joint actions the dataset never shows,
    which is why its Q estimates over-estimate offline (cfcql.md Fig. 1(b)):
    watch ``train/q_taken_mean`` against the true values.

    Deviations: none beyond those of :class:`ConservativeQMIX` (TD(lambda)
    targets of a truncated episode shorter than the batch, see ``td_lambda_targets``).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        cql_alpha: must stay 0 (no regulariser); the argument exists so that
            checkpoints and configs of the learner round-trip.
        **kwargs: arguments of :class:`ConservativeQMIX` (lr, grad_clip_norm,
            td_lambda, target_update_interval, mixer, ...) and of
            :class:`OfflineMARLModule` (gamma, agent, eval settings, seed, ...).
    """

    def __init__(self, spec: dict | None = None, cql_alpha: float = 0.0, **kwargs: Any) -> None:
        if cql_alpha != 0.0:
            raise ValueError(f"QMIX has no conservative regulariser: cql_alpha must be 0, got {cql_alpha} (see cfcql / macql / cql_ma)")
        super().__init__(spec=spec, cql_alpha=0.0, **kwargs)

    def conservative_gap(
        self, q_all: torch.Tensor, batch: Batch, avail: torch.Tensor, q_taken_tot: torch.Tensor, mixer_params: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():  # logged only: how far the greedy joint action's value is above the data's
            greedy = q_all.masked_fill(~avail, -torch.inf).amax(-1)
            gap = self.mixer.mix(greedy, mixer_params) - q_taken_tot
        return torch.zeros_like(q_taken_tot), {"greedy_gap_mean": masked_mean(gap, batch["mask"])}
