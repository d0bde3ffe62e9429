"""IQL in CTDE form for continuous actions: a centralised critic Q(s, a^1..a^N), a state value V(s)
and advantage-weighted per-agent Gaussian policies (continuous counterpart of :mod:`lit_omarl.algos.iql`).

:class:`GaussianPolicyModule` holds the per-agent Gaussian policies shared by
IQL-C, AWAC-C (:mod:`lit_omarl.algos.awac_c`) and ICQ-C
(:mod:`lit_omarl.algos.icq_c`); :class:`CentralCriticGaussianAWR` adds the
centralised twin critic of IQL-C and AWAC-C.
"""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import AgentType, Batch, register_algorithm
from lit_omarl.algos.continuous_base import ContinuousModule
from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.advantage import (
    AWR_MAX_WEIGHT,
    awr_weights,
    expectile_loss,
    soft_update,
    squared_td_loss,
    value_targets,
    weighted_nll,
)
from lit_omarl.algos.losses.continuous import gaussian_noise_log_density
from lit_omarl.nets.continuous import CentralCritic, GaussianActor, make_actor
from lit_omarl.nets.coupled import mlp


class GaussianPolicyModule(ContinuousModule):
    """Per-agent Gaussian policies pi_i(a_i | tau_i) = N(tanh(f_i(tau_i)), diag(sigma_i^2)) (not registered).

    The Gaussian lives on actions normalised to [-1, 1] (``normalized``):
    log-likelihoods of dataset actions are computed there, samples are
    clipped to [-1, 1] and mapped back to the bounds; padded action dims are
    left out. The mean network is the CFCQL-C / OMAR actor (:func:`make_actor`:
    per-agent MLPs by default, shared with agent id, or GRU agents) and sigma_i
    a learned state-independent vector per agent (the IQL reference policy).
    ``act(deterministic=True)`` (default evaluation, as the IQL / AWAC
    references) returns the mean; ``deterministic=False`` samples.

    Args:
        spec: the dataset's EnvSpec as a dict.
        policy_lr: Adam learning rate of the policies.
        shared_actor: one mean network for all agents (agent id in the inputs).
        log_std_min, log_std_max: clamp of log sigma (-5, 2).
        grad_clip_norm: gradient-norm clip of each network update (<= 0 disables).
        agent, agent_hidden_dim, use_agent_id, use_last_action, gamma: see
            :class:`OfflineMARLModule` (MLP policies of width 256, no last action).
        **kwargs: arguments of :class:`ContinuousModule` / :class:`OfflineMARLModule`.
    """

    def __init__(
        self,
        spec: dict | None = None,
        policy_lr: float = 3e-4,
        shared_actor: bool = False,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        grad_clip_norm: float = 0.0,
        agent: AgentType = "mlp",
        agent_hidden_dim: int | None = 256,
        use_last_action: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, agent=agent, agent_hidden_dim=agent_hidden_dim, use_last_action=use_last_action,
                         **kwargs)
        s = self.spec
        mean_net = make_actor(agent, shared_actor, s.n_agents, self.agent_inputs.dim, s.n_actions, agent_hidden_dim)
        self.actor = GaussianActor(mean_net, s.n_agents, s.n_actions, log_std_min, log_std_max)

    # ---- acting ---------------------------------------------------------------------------------
    def to_bounds(self, normalized: torch.Tensor) -> torch.Tensor:
        """Normalised actions in [-1, 1] -> [low, high] (padded dims 0)."""
        return (self.low + (normalized + 1.0) * self.half_range) * self.action_mask

    def _continuous_actions(self, inputs: torch.Tensor, h: Any, deterministic: bool) -> tuple[torch.Tensor, Any]:
        mean, h = self.actor.step(inputs, h)
        return self.to_bounds(mean if deterministic else self.actor.sample(mean)), h

    # ---- training helpers -----------------------------------------------------------------------
    def policy_means(self, batch: Batch, include_last_obs: bool) -> torch.Tensor:
        """Normalised policy means [B, L(+1), N, A] over the batch's observations (with gradient)."""
        return self.actor.forward_seq(self.sequence_inputs(batch, include_last_obs=include_last_obs))[0]

    def log_probs(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi_i(a_i | tau_i) [..., N] of actions [..., N, A] (bounds) under N(mean, sigma^2) (normalised space)."""
        return gaussian_noise_log_density(self.normalized(actions) * self.action_mask - mean, self.actor.std(),
                                          self.action_mask)

    def sampled_joint_actions(self, mean: torch.Tensor, n_samples: int) -> torch.Tensor:
        """n joint actions from prod_i pi_i per step, in bounds: mean [..., N, A] -> [n, ..., N, A] (no gradient)."""
        with torch.no_grad():
            return self.to_bounds(self.actor.sample(mean.detach(), n_samples))

    def policy_update(self, optimizer_index: int, log_probs: torch.Tensor, weights: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
        """-E[w * log pi_i(a_i | tau_i)] over valid steps and agents, stepped on a raw secondary optimizer."""
        loss = weighted_nll(log_probs, weights, mask)
        self.step_optimizer(optimizer_index, loss, self.actor.parameters(), self.hparams.grad_clip_norm)
        return loss.detach()


class CentralCriticGaussianAWR(GaussianPolicyModule):
    """Per-agent Gaussian policies + an ensemble of centralised critics Q_k(s, a^1..a^N) (not registered).

    The critics are the CFCQL-C / MATD3+BC :class:`CentralCritic` (3-layer
    ReLU MLPs on the global state and the concatenated joint action), trained
    by the main optimizer (one global step per update), with soft-updated targets.

    Args:
        spec: the dataset's EnvSpec as a dict.
        lr: Adam learning rate of the critics (and of IQL's V).
        tau: soft target update rate.
        temperature: inverse temperature of the weights exp(temperature * A).
        max_weight: upper clip of the weights (100).
        critic_hidden_dim: hidden units of the critics (256).
        n_critics: critics in the ensemble (the minimum is used).
        **kwargs: arguments of :class:`GaussianPolicyModule`.
    """

    def __init__(
        self,
        spec: dict | None = None,
        lr: float = 3e-4,
        tau: float = 0.005,
        temperature: float = 3.0,
        max_weight: float = AWR_MAX_WEIGHT,
        critic_hidden_dim: int = 256,
        n_critics: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        problems = [f"{name} {why}, got {value}" for name, value, why, ok in (
            ("n_critics", n_critics, "must be >= 1", n_critics >= 1),
            ("tau", tau, "must be in (0, 1]", 0.0 < tau <= 1.0),
            ("temperature", temperature, "must be >= 0", temperature >= 0),
            ("max_weight", max_weight, "must be > 0", max_weight > 0),
        ) if not ok]
        if problems:
            raise ValueError("; ".join(problems))
        s = self.spec
        self.critic = CentralCritic(s.state_dim, s.n_agents, s.n_actions, critic_hidden_dim, n_critics)
        self.target_critic = CentralCritic(s.state_dim, s.n_agents, s.n_actions, critic_hidden_dim, n_critics)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.hparams.lr)  # main: counts global steps
        return [critic_opt, torch.optim.Adam(self.actor.parameters(), lr=self.hparams.policy_lr)]

    def awr_metrics(self, advantage: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Advantage, weight and policy-std summaries logged by IQL-C and AWAC-C."""
        return {"adv_mean": masked_mean(advantage, mask), "weight_mean": masked_mean(weights, mask),
                "policy_std_mean": self.actor.std().detach().mean()}

    def update_critic(self, state: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor,
                      mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_k E[(Q_k(s, a) - y)^2] stepped on the main optimizer; returns (loss, Q values [K, B, L])."""
        qs = self.critic(state, actions)
        loss = squared_td_loss(qs, targets, mask)
        self.optimise(self.main_optimizer(), loss, self.hparams.grad_clip_norm)
        return loss.detach(), qs.detach()


@register_algorithm("iql_c")
class IQLC(CentralCriticGaussianAWR):
    """IQL (Kostrikov et al. 2022) with a centralised critic, CTDE version, continuous actions.

        L_V  = E_D[ L_2^tau(min_k Qbar_k(s, a) - V(s)) ],   L_2^tau(u) = |tau - 1(u < 0)| u^2
        L_Q  = sum_k E_D[ (r + gamma (1 - d) V(s') - Q_k(s, a))^2 ]
        L_pi = -E_D[ min(exp(beta (min_k Qbar_k(s, a) - V(s))), 100) * (1/N) sum_i log pi_i(a_i | tau_i) ]

    a = the dataset joint action; pi_i a Gaussian with tanh mean and learned
    state-independent std on normalised actions (:class:`GaussianPolicyModule`).
    Update order as the reference: V, Q (main optimizer), policy, soft target update.

    Deviations: the reference IQL is single-agent; the CTDE form (one critic
    on state and joint action, every agent's log-likelihood weighted by the
    joint advantage and averaged over agents) mirrors the discrete ``iql``
    (cfcql.md App. C.3 gives no more detail). States are not normalised.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        expectile: tau (0.7).
        temperature: beta (3.0, the reference's locomotion setting).
        **kwargs: :class:`CentralCriticGaussianAWR` (lr, tau, max_weight,
            critic_hidden_dim, n_critics) and :class:`GaussianPolicyModule`
            (policy_lr, shared_actor, log_std_min, log_std_max, grad_clip_norm, agent, ...).
    """

    def __init__(self, spec: dict | None = None, expectile: float = 0.7, temperature: float = 3.0, **kwargs: Any) -> None:
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {expectile}")
        super().__init__(spec=spec, temperature=temperature, **kwargs)
        self.value = mlp(self.spec.state_dim, hidden=self.hparams.critic_hidden_dim, out_dim=1, layers=3)  # V(s)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opts = super().configure_optimizers()
        opts.append(torch.optim.Adam(self.value.parameters(), lr=self.hparams.lr))  # index 2
        return opts

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        s_now = state[:, :-1]
        with torch.no_grad():
            q_bar = self.target_critic(s_now, actions).amin(0)  # [B, L]
        v_all = self.value(state).squeeze(-1)  # [B, L+1]
        v_loss = masked_mean(expectile_loss(q_bar - v_all[:, :-1], hp.expectile), mask)
        self.step_optimizer(2, v_loss, self.value.parameters(), hp.grad_clip_norm)

        v_all = v_all.detach()
        q_loss, qs = self.update_critic(s_now, actions, value_targets(batch["reward"], batch["terminated"],
                                                                       v_all[:, 1:], hp.gamma), mask)
        advantage = q_bar - v_all[:, :-1]
        weights = awr_weights(advantage, hp.temperature, hp.max_weight)
        log_probs = self.log_probs(self.policy_means(batch, include_last_obs=False), actions)
        policy_loss = self.policy_update(1, log_probs, weights, mask)
        soft_update(self.target_critic, self.critic, hp.tau)

        self.log_train({
            "loss": q_loss + v_loss.detach() + policy_loss,
            "q_loss": q_loss,
            "v_loss": v_loss.detach(),
            "policy_loss": policy_loss,
            "q_mean": masked_mean(qs.amin(0), mask),
            "v_mean": masked_mean(v_all[:, :-1], mask),
            **self.awr_metrics(advantage, weights, mask),
        })
