"""MACQL-C: multi-agent CQL on a centralised critic, continuous actions (cfcql.md Sec. 4.2, Eq. 3)."""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import Batch, register_algorithm
from lit_omarl.algos.cfcql_c import CentralCriticCQL
from lit_omarl.algos.losses.continuous import macql_c_gap


@register_algorithm("macql_c")
class MACQLC(CentralCriticCQL):
    """MACQL-C: the CFCQL-C learner with the naive joint-action CQL regulariser.

    Per critic k, with C joint actions a_c sampled for ALL agents at once:

        gap_k = T log sum_c exp((Q_k(s, a_c) - log p(a_c)) / T) - Q_k(s, a_data)

    a_c: uniform in the bounds (log p = -N A log(high - low)); with
    ``cql_policy_samples`` also the noisy joint policy actions at o and o'
    (log p = the summed Gaussian noise densities). The TD target, the actor
    update (counterfactual Eq. 10 by default, ``cf_policy=False`` = MADDPG's),
    the 5:1 critic / actor ratio and the target updates are those of
    :class:`~lit_omarl.algos.cfcql_c.CentralCriticCQL`.

    Deviations: as CFCQL-C (see :class:`~lit_omarl.algos.cfcql_c.CFCQLC`).
    The official code runs MACQL with the same script without ``--cf_cql``,
    which keeps its default counterfactual policy improvement; we do the same
    (``cf_policy=True``). The paper calls MACQL the "naive extension", with
    no further detail.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        **kwargs: see :class:`~lit_omarl.algos.cfcql_c.CentralCriticCQL` and
            :class:`~lit_omarl.algos.cfcql_c.CFCQLC` (cql_alpha, cql_n_samples,
            cql_temperature, cql_importance_sampling, cql_policy_samples,
            critic_actor_ratio, target_noise, cf_target, cf_policy, actor_lr, ...).
    """

    def __init__(self, spec: dict | None = None, **kwargs: Any) -> None:
        super().__init__(spec=spec, **kwargs)

    def conservative_gap(self, batch: Batch, q_data: torch.Tensor, pi: torch.Tensor) -> tuple[torch.Tensor, dict]:
        samples, log_d = self.cql_samples(pi)  # per agent [B, L, N, C, A], [B, L, N, C]
        joint = samples.transpose(-3, -2)  # [B, L, C, N, A]: sample c of every agent forms joint action c
        log_d = None if log_d is None else log_d.sum(-2)  # independent agents: densities multiply
        q_joint = self.critic(batch["state"][:, :-1].unsqueeze(-2), joint)  # [K, B, L, C]
        return macql_c_gap(q_joint, q_data, log_d, self.hparams.cql_temperature), {}
