"""IQL in CTDE form: a centralised joint-action critic and advantage-weighted per-agent policies.

Baseline of CFCQL (cfcql.md Sec. 5, App. C.3: "IQL and AWAC: variants of
advantage weighted behaviour cloning ... implement a CTDE version similar to
TD3-BC", i.e. one centralised critic on the global state and the joint action,
decentralised per-agent policies). :class:`CentralCriticAWR` holds what IQL
and AWAC (:mod:`lit_omarl.algos.awac`) share.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import ensure_some_available, masked_mean
from lit_omarl.algos.losses.advantage import (
    AWR_MAX_WEIGHT,
    awr_weights,
    expectile_loss,
    policy_actions,
    soft_update,
    squared_td_loss,
    taken_log_probs,
    value_targets,
    weighted_nll,
)
from lit_omarl.nets.coupled import JointActionCritic, mlp


class CentralCriticAWR(OfflineMARLModule):
    """Shared part of the CTDE IQL / AWAC learners (not registered itself).

    Networks: per-agent policies pi_i(a_i | tau_i) (shared-parameter agent
    network with logits, GRU or MLP), an ensemble of ``n_critics`` centralised
    critics Q_k(s, a_1..a_N) (3-layer MLPs on the state and the joint-action
    one-hot; feed-forward, since the global state is available in training)
    and their soft-updated targets. The critic is trained by the main
    optimizer (one global step per update); the policy by a secondary one.
    Evaluation is greedy by default (the reference IQL / AWAC evaluate their
    deterministic action); ``eval_deterministic=False`` samples the policies.

    Args:
        spec: the dataset's EnvSpec as a dict.
        lr: Adam learning rate of the critics (and of IQL's V).
        policy_lr: Adam learning rate of the policies.
        tau: soft target update rate of the critics.
        temperature: inverse temperature of the weights exp(temperature * A).
        max_weight: upper clip of the advantage weights (100).
        critic_hidden_dim: hidden units of the centralised critics.
        n_critics: critics in the ensemble (the minimum is used, as in IQL / AWAC).
        grad_clip_norm: gradient-norm clipping (<= 0 disables).
        **kwargs: arguments of :class:`OfflineMARLModule`.
    """

    def __init__(
        self,
        spec: dict | None = None,
        lr: float = 3e-4,
        policy_lr: float = 3e-4,
        tau: float = 0.005,
        temperature: float = 3.0,
        max_weight: float = AWR_MAX_WEIGHT,
        critic_hidden_dim: int = 256,
        n_critics: int = 2,
        grad_clip_norm: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if n_critics < 1:
            raise ValueError(f"n_critics must be >= 1, got {n_critics}")
        s = self.spec
        self.policy = self.make_agent_net(s.n_actions)
        self.critic = JointActionCritic(s.state_dim, s.n_agents, s.n_actions, critic_hidden_dim, n_critics)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        return [
            torch.optim.Adam(self.critic.parameters(), lr=hp.lr),  # main
            torch.optim.Adam(self.policy.parameters(), lr=hp.policy_lr),
        ]

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.policy.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)

    def _policy_update(self, batch: Batch, logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """-E[w(s, a) * (1/N) sum_i log pi_i(a_i | tau_i)], stepped on the policy optimizer."""
        avail = ensure_some_available(batch["avail_actions"][:, : logits.shape[1]])
        loss = weighted_nll(taken_log_probs(logits, batch["actions"], avail), weights, batch["mask"])
        self.step_optimizer(1, loss, self.policy.parameters(), self.hparams.grad_clip_norm)
        return loss.detach()


@register_algorithm("iql")
class IQL(CentralCriticAWR):
    """IQL (Kostrikov et al. 2022) with a centralised critic, CTDE version.

        L_V  = E_D[ L_2^tau(min_k Qbar_k(s, a) - V(s)) ],   L_2^tau(u) = |tau - 1(u < 0)| u^2
        L_Q  = sum_k E_D[ (r + gamma (1 - d) V(s') - Q_k(s, a))^2 ]
        L_pi = -E_D[ min(exp(beta (min_k Qbar_k(s, a) - V(s))), 100) * (1/N) sum_i log pi_i(a_i | tau_i) ]

    a = the dataset joint action, s the global state; V(s) is an MLP on the
    state. The joint advantage weights every agent's log-likelihood (all
    agents share the weight of their joint action). Update order as the
    reference implementation: V, Q (main optimizer), policy, soft target update.

    Deviations: the reference IQL is single-agent and continuous; the discrete
    CTDE form (joint-action one-hot critic, categorical policies restricted to
    available actions, log-likelihood averaged over agents) is our choice, as
    the CFCQL paper does not describe its CTDE version beyond App. C.3.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        expectile: tau (0.7).
        temperature: beta (3.0 as the reference IQL's locomotion setting).
        **kwargs: see :class:`CentralCriticAWR` (lr, policy_lr, tau,
            max_weight, critic_hidden_dim, n_critics, grad_clip_norm) and
            :class:`OfflineMARLModule` (gamma, agent, eval settings, seed, ...).
    """

    def __init__(self, spec: dict | None = None, expectile: float = 0.7, temperature: float = 3.0, **kwargs: Any) -> None:
        super().__init__(spec=spec, temperature=temperature, **kwargs)
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {expectile}")
        self.value = mlp(self.spec.state_dim, self.hparams.critic_hidden_dim, 1, layers=3)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*super().configure_optimizers(), torch.optim.Adam(self.value.parameters(), lr=self.hparams.lr)]

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]

        with torch.no_grad():
            q_bar = self.target_critic(state[:, :-1], actions).min(0).values  # [B, L]
        v = self.value(state).squeeze(-1)  # [B, L+1]
        v_loss = masked_mean(expectile_loss(q_bar - v[:, :-1], hp.expectile), mask)
        self.step_optimizer(2, v_loss, self.value.parameters(), hp.grad_clip_norm)

        v = v.detach()
        targets = value_targets(batch["reward"], batch["terminated"], v[:, 1:], hp.gamma)
        qs = self.critic(state[:, :-1], actions)  # [K, B, L]
        q_loss = squared_td_loss(qs, targets, mask)
        self.optimise(self.main_optimizer(), q_loss, hp.grad_clip_norm)

        advantage = q_bar - v[:, :-1]
        weights = awr_weights(advantage, hp.temperature, hp.max_weight)
        logits, _ = self.policy.forward_seq(self.sequence_inputs(batch, include_last_obs=False))
        policy_loss = self._policy_update(batch, logits, weights)
        soft_update(self.target_critic, self.critic, hp.tau)

        self.log_train({
            "loss": q_loss.detach() + v_loss.detach() + policy_loss,
            "q_loss": q_loss.detach(),
            "v_loss": v_loss.detach(),
            "policy_loss": policy_loss,
            "q_mean": masked_mean(qs.detach().min(0).values, mask),
            "v_mean": masked_mean(v[:, :-1], mask),
            "adv_mean": masked_mean(advantage, mask),
            "weight_mean": masked_mean(weights, mask),
        })
