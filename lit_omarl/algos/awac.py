"""AWAC in CTDE form: centralised joint-action critic evaluated under the joint policy,
advantage-weighted per-agent policies (baseline of CFCQL, cfcql.md App. C.3)."""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import Batch, register_algorithm
from lit_omarl.algos.iql import CentralCriticAWR
from lit_omarl.algos.losses import ensure_some_available, masked_log_softmax, masked_mean
from lit_omarl.algos.losses.advantage import (
    awr_weights,
    joint_policy_expectation,
    soft_update,
    squared_td_loss,
    value_targets,
)
from lit_omarl.utils.rng import CheckpointedGenerator


@register_algorithm("awac")
class AWAC(CentralCriticAWR):
    """AWAC (Nair et al. 2020) with a centralised critic, CTDE version.

    With pi(a | s) = prod_i pi_i(a_i | tau_i) the product of the per-agent policies:

        V^pi(s) = E_{a ~ pi}[ min_k Q_k(s, a) ]
        L_Q     = sum_k E_D[ (r + gamma (1 - d) E_{a' ~ pi(.|s')}[min_k Qbar_k(s', a')] - Q_k(s, a))^2 ]
        A(s, a) = min_k Q_k(s, a) - V^pi(s)                       (critics after their update, no gradient)
        L_pi    = -E_D[ min(exp(A(s, a) / lambda), 100) * (1/N) sum_i log pi_i(a_i | tau_i) ]

    ``temperature`` is 1 / lambda. The expectations over joint actions are
    exact (all A^N joint actions weighted by prod_i pi_i) when A^N <=
    ``max_enumerate``, otherwise Monte-Carlo with ``n_action_samples`` joint
    actions drawn from the policies. Update order as the reference
    implementation: critic (main optimizer), policy, soft target update.

    Deviations: the reference AWAC is single-agent and continuous, and
    estimates V^pi and the bootstrap with one sampled action; with discrete
    actions we take the exact expectation where it is affordable. The
    log-likelihood is averaged over agents and every agent is weighted by the
    joint advantage (our CTDE choice; App. C.3 gives no further detail).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        temperature: 1 / lambda of the weights exp(A / lambda) (reference: lambda = 1).
        max_enumerate: largest joint action space A^N evaluated exactly.
        n_action_samples: joint actions sampled per state otherwise.
        **kwargs: see :class:`~lit_omarl.algos.iql.CentralCriticAWR` (lr,
            policy_lr, tau, max_weight, critic_hidden_dim, n_critics,
            grad_clip_norm) and :class:`OfflineMARLModule` (gamma, agent, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        temperature: float = 1.0,
        max_enumerate: int = 4096,
        n_action_samples: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, temperature=temperature, **kwargs)
        self.sample_rng = CheckpointedGenerator(self.hparams.seed, "awac_generator")

    def _expected_q(self, critic: torch.nn.Module, state: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """E_{a ~ prod_i pi_i}[min_k Q_k(state, a)]: state [B, T, S], probs [B, T, N, A] -> [B, T]."""
        hp = self.hparams
        return joint_policy_expectation(
            lambda joint: critic(state, joint).min(0).values,
            probs, hp.max_enumerate, hp.n_action_samples, self.sample_rng.get(self.device),
        )

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        avail = ensure_some_available(batch["avail_actions"])
        logits_all, _ = self.policy.forward_seq(self.sequence_inputs(batch, include_last_obs=True))
        with torch.no_grad():
            probs = masked_log_softmax(logits_all, avail).exp() * avail  # [B, L+1, N, A]
            v_next = self._expected_q(self.target_critic, state[:, 1:], probs[:, 1:])
            targets = value_targets(batch["reward"], batch["terminated"], v_next, hp.gamma)
        qs = self.critic(state[:, :-1], actions)
        q_loss = squared_td_loss(qs, targets, mask)
        self.optimise(self.main_optimizer(), q_loss, hp.grad_clip_norm)

        with torch.no_grad():
            q_taken = self.critic(state[:, :-1], actions).min(0).values
            v_pi = self._expected_q(self.critic, state[:, :-1], probs[:, :-1])
            advantage = q_taken - v_pi
        weights = awr_weights(advantage, hp.temperature, hp.max_weight)
        policy_loss = self._policy_update(batch, logits_all[:, :-1], weights)
        soft_update(self.target_critic, self.critic, hp.tau)

        self.log_train({
            "loss": q_loss.detach() + policy_loss,
            "q_loss": q_loss.detach(),
            "policy_loss": policy_loss,
            "q_mean": masked_mean(q_taken, mask),
            "v_pi_mean": masked_mean(v_pi, mask),
            "adv_mean": masked_mean(advantage, mask),
            "weight_mean": masked_mean(weights, mask),
        })
