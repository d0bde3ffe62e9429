"""AWAC in CTDE form for continuous actions: a centralised critic evaluated under the joint Gaussian
policy, advantage-weighted per-agent policies (continuous counterpart of :mod:`lit_omarl.algos.awac`)."""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import Batch, register_algorithm
from lit_omarl.algos.iql_c import CentralCriticGaussianAWR
from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.advantage import awr_weights, soft_update, value_targets


@register_algorithm("awac_c")
class AWACC(CentralCriticGaussianAWR):
    """AWAC (Nair et al. 2020) with a centralised critic, CTDE version, continuous actions.

    With pi(a | s) = prod_i pi_i(a_i | tau_i) (Gaussian per agent, :class:`~lit_omarl.algos.iql_c.GaussianPolicyModule`):

        y       = r + gamma (1 - d) (1/M) sum_m min_k Qbar_k(s', a'_m),       a'_m ~ pi(. | s')
        L_Q     = sum_k E_D[ (y - Q_k(s, a))^2 ]
        V^pi(s) = (1/M) sum_m min_k Q_k(s, a_m),                              a_m ~ pi(. | s)
        A(s, a) = min_k Q_k(s, a) - V^pi(s)                  (critics after their update, no gradient)
        L_pi    = -E_D[ min(exp(A(s, a) / lambda), 100) * (1/N) sum_i log pi_i(a_i | tau_i) ]

    M = ``n_action_samples`` joint actions drawn from the policies (each
    agent's Gaussian sample clipped to the bounds); ``temperature`` is 1 / lambda.
    Update order as the reference: critic (main optimizer), policy, soft target update.

    Deviations: the reference AWAC is single-agent and uses one sampled
    action for V^pi and the bootstrap (``n_action_samples=1``, the default);
    the CTDE form mirrors the discrete ``awac`` (every agent weighted by the
    joint advantage, log-likelihoods averaged over agents; cfcql.md App. C.3
    gives no more detail).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        temperature: 1 / lambda (reference lambda = 1).
        n_action_samples: M joint actions per state for V^pi and the bootstrap.
        **kwargs: see :class:`~lit_omarl.algos.iql_c.CentralCriticGaussianAWR` (lr, tau,
            max_weight, critic_hidden_dim, n_critics) and
            :class:`~lit_omarl.algos.iql_c.GaussianPolicyModule` (policy_lr, shared_actor, ...).
    """

    def __init__(self, spec: dict | None = None, temperature: float = 1.0, n_action_samples: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(spec=spec, temperature=temperature, **kwargs)
        if n_action_samples < 1:
            raise ValueError(f"n_action_samples must be >= 1, got {n_action_samples}")

    def policy_value(self, critic: torch.nn.Module, state: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Monte-Carlo E_{a ~ pi}[min_k Q_k(s, a)]: state [B, L, S], means [B, L, N, A] -> [B, L]."""
        joint = self.sampled_joint_actions(mean, self.hparams.n_action_samples)  # [M, B, L, N, A]
        with torch.no_grad():
            return critic(state, joint).amin(0).mean(0)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        means = self.policy_means(batch, include_last_obs=True)  # [B, L+1, N, A]
        targets = value_targets(batch["reward"], batch["terminated"],
                                self.policy_value(self.target_critic, state[:, 1:], means[:, 1:]), hp.gamma)
        q_loss, _ = self.update_critic(state[:, :-1], actions, targets, mask)

        with torch.no_grad():
            q_taken = self.critic(state[:, :-1], actions).amin(0)
            advantage = q_taken - self.policy_value(self.critic, state[:, :-1], means[:, :-1])
        weights = awr_weights(advantage, hp.temperature, hp.max_weight)
        policy_loss = self.policy_update(1, self.log_probs(means[:, :-1], actions), weights, mask)
        soft_update(self.target_critic, self.critic, hp.tau)

        self.log_train({
            "loss": q_loss + policy_loss,
            "q_loss": q_loss,
            "policy_loss": policy_loss,
            "q_mean": masked_mean(q_taken, mask),
            "v_pi_mean": masked_mean(q_taken - advantage, mask),
            **self.awr_metrics(advantage, weights, mask),
        })
