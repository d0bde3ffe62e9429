"""MACQL: multi-agent CQL on the joint action space (CFCQL paper Sec. 4.2, baseline).

The single-agent CQL(H) regulariser applied to Q_tot as if the team were one
agent; the logsumexp over the exponentially large joint action space is
estimated from uniformly sampled joint actions.
"""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import Batch, ConservativeQMIX, register_algorithm
from lit_omarl.algos.losses import macql_term
from lit_omarl.utils.rng import CheckpointedGenerator


@register_algorithm("macql")
class MACQL(ConservativeQMIX):
    """MACQL with a QMIX backbone (the CFCQL code's ``raw_cql`` variant).

    Loss (paper Eq. 3 with CQL's logsumexp form):

        alpha * E_s[ log sum_{k=1..K} exp Q_tot(s, a^k) - Q_tot(s, a_data) ]
          + E[ 0.5 * (Q_tot(s, a_data) - G_t)^2 ],      a^k ~ Uniform(available joint actions)

    with the same QMIX learner, double-Q TD(lambda) targets and target copies
    as :class:`~lit_omarl.algos.cfcql.CFCQL`. The K samples of a state are
    mixed in one call reusing the mixer's hypernetwork outputs, and drawn from
    a ``torch.Generator`` seeded with ``seed`` (its state is checkpointed).

    Deviations from the official code (thu-rllab/CFCQL, ``raw_cql=True``):
        - Joint actions are drawn uniformly among AVAILABLE actions. The
          official code draws among all actions and multiplies Q_tot of a
          sample containing an unavailable action by 0, so such samples enter
          the logsumexp as exp(0).
        - The logsumexp is not divided by K (as in the code: a constant shift).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        cql_alpha: weight alpha of the regulariser (official default 50; its
            README uses 5 for 2s3z medium).
        n_samples: K sampled joint actions per state (official 100).
        **kwargs: arguments of :class:`ConservativeQMIX` (lr, td_lambda,
            target_update_interval, mixer, ...) and of
            :class:`OfflineMARLModule` (gamma, agent, eval settings, seed, ...).
    """

    def __init__(self, spec: dict | None = None, cql_alpha: float = 50.0, n_samples: int = 100, **kwargs: Any) -> None:
        super().__init__(spec=spec, cql_alpha=cql_alpha, **kwargs)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.sample_rng = CheckpointedGenerator(self.hparams.seed, "macql_generator")

    def conservative_gap(
        self, q_all: torch.Tensor, batch: Batch, avail: torch.Tensor, q_taken_tot: torch.Tensor, mixer_params: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        generator = self.sample_rng.get(q_all.device)
        gap = macql_term(q_all, avail, q_taken_tot, mixer_params, self.mixer.mix, self.hparams.n_samples, generator)
        return gap, {}
