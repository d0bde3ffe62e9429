"""MATD3+BC: TD3+BC (Fujimoto & Gu, NeurIPS 2021) with a centralised critic (baseline of cfcql.md Tables 2, 5)."""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import AgentType, Batch, register_algorithm
from lit_omarl.algos.continuous_base import ContinuousActorCritic, frozen
from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.advantage import soft_update, squared_td_loss, value_targets
from lit_omarl.algos.losses.continuous import counterfactual_joint_actions
from lit_omarl.algos.losses.td3 import smoothed_target_actions, td3_bc_actor_loss
from lit_omarl.nets.continuous import CentralCritic


@register_algorithm("matd3_bc")
class MATD3BC(ContinuousActorCritic):
    """MATD3+BC: centralised twin critic Q_k(s, a^1..a^N), per-agent deterministic actors, BC-regularised.

        a'    = clamp(pibar(o') + clip(N(0, policy_noise^2), -noise_clip, noise_clip), low, high)
        y     = r + gamma (1 - d) min_k Qbar_k(s', a')
        L_Q   = sum_k E[(Q_k(s, a) - y)^2]                                     (every update)
        lam   = alpha / E|Q_1(s, pi)|                                           (no gradient)
        L_pi  = -lam E[Q_1(s, pi_1(o_1), .., pi_N(o_N))] + E[(pi(o) - a)^2]      (every policy_freq updates)

    With ``cf_policy`` the actor term uses CFCQL's counterfactual Q_1(s,
    pi_i(o_i), a_data^{-i}) per agent instead of the joint policy action.
    Targets are soft-updated after each actor update (TD3). Noise scales are
    in units of the action half-range.

    Deviations: the CFCQL paper takes TD3+BC's open-source code and makes "a
    CTDE version with centralised critic" without details; the joint
    (MADDPG-style) policy improvement is our reading. TD3+BC normalises
    states with dataset statistics; we do not (the environments' observations
    are used as they are). Evaluation is deterministic.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        alpha: BC trade-off (TD3+BC: 2.5).
        policy_freq: critic updates per actor update (2).
        policy_noise: target smoothing noise std (0.2).
        noise_clip: target smoothing noise clip (0.5).
        cf_policy: counterfactual policy improvement (CFCQL Eq. 10) instead of the joint one.
        actor_lr, critic_lr, tau, gamma, critic_hidden_dim, agent_hidden_dim,
        grad_clip_norm: TD3+BC's defaults (3e-4, 3e-4, 0.005, 0.99, 256, 256, no clipping).
        **kwargs: :class:`~lit_omarl.algos.continuous_base.ContinuousActorCritic`
            (shared_actor, n_critics, agent, agent_action_dims, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        alpha: float = 2.5,
        policy_freq: int = 2,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        cf_policy: bool = False,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        tau: float = 0.005,
        gamma: float = 0.99,
        critic_hidden_dim: int = 256,
        agent: AgentType = "mlp",
        agent_hidden_dim: int | None = 256,
        grad_clip_norm: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, actor_lr=actor_lr, critic_lr=critic_lr, tau=tau, gamma=gamma,
                         critic_hidden_dim=critic_hidden_dim, agent=agent, agent_hidden_dim=agent_hidden_dim,
                         grad_clip_norm=grad_clip_norm, **kwargs)
        if policy_freq < 1:
            raise ValueError(f"policy_freq must be >= 1, got {policy_freq}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        s, hp = self.spec, self.hparams
        self.critic = CentralCritic(s.state_dim, s.n_agents, s.n_actions, hp.critic_hidden_dim, hp.n_critics)
        self.target_critic = CentralCritic(s.state_dim, s.n_agents, s.n_actions, hp.critic_hidden_dim, hp.n_critics)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        update_actor = (self.trainer.global_step + 1) % hp.policy_freq == 0  # TD3: it % freq == 0, it from 1
        with torch.no_grad():
            next_pi, _ = self.policy_outputs(self.target_actor, batch)
            next_pi = smoothed_target_actions(next_pi[:, 1:], hp.policy_noise * self.half_range,
                                              hp.noise_clip * self.half_range, self.low, self.high)
            q_next = self.target_critic(state[:, 1:], next_pi * self.action_mask).min(0).values
            targets = value_targets(batch["reward"], batch["terminated"], q_next, hp.gamma)
        q_data = self.critic(state[:, :-1], actions)  # [K, B, L]
        critic_loss = squared_td_loss(q_data, targets, mask)
        self.step_critic(critic_loss)

        metrics = {
            "loss": critic_loss.detach(),
            "td_loss": critic_loss.detach(),
            "q_taken_mean": masked_mean(q_data.detach().min(0).values, mask),
            "target_mean": masked_mean(targets, mask),
        }
        if update_actor:
            pi = self.policy_outputs(self.actor, batch, include_last_obs=False)[0]
            with frozen(self.critic):
                if hp.cf_policy:
                    cand = counterfactual_joint_actions(actions, pi.unsqueeze(-2)).squeeze(-3)  # [B, L, N, N, A]
                    q_pi = self.critic(state[:, :-1].unsqueeze(-2), cand, members=1)[0]  # [B, L, N]
                else:
                    q_pi = self.critic(state[:, :-1], pi, members=1)[0]  # [B, L]
                actor_loss, lmbda, bc = td3_bc_actor_loss(q_pi, pi, actions, mask, hp.alpha)
            self.step_actor(actor_loss)
            soft_update(self.target_critic, self.critic, hp.tau)
            soft_update(self.target_actor, self.actor, hp.tau)
            metrics.update({"actor_loss": actor_loss.detach(), "bc_mse": bc.detach(), "lambda": lmbda})
        self.log_train(metrics)
