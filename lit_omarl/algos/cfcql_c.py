"""CFCQL-C: Counterfactual Conservative Q-Learning, continuous actions (Shao et al., NeurIPS 2023).

A MADDPG-style learner (one centralised twin critic Q(s, a^1..a^N), one
deterministic actor per agent) trained offline with a counterfactual CQL
regulariser: each agent's action is resampled with the other agents' dataset
actions held fixed, and the N per-agent penalties are averaged with weights
lambda_i. :class:`CentralCriticCQL` is the learner shared with MACQL-C
(:mod:`lit_omarl.algos.macql_c`), which resamples all agents' actions at once.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, register_algorithm
from lit_omarl.algos.continuous_base import ContinuousActorCritic, frozen
from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.advantage import soft_update, squared_td_loss, value_targets
from lit_omarl.algos.losses.continuous import (
    action_l2,
    cfcql_c_gap,
    counterfactual_joint_actions,
    counterfactual_weights,
    cql_action_samples,
    ensemble_step_mean,
    step_mean,
)
from lit_omarl.algos.losses.td3 import smoothed_target_actions
from lit_omarl.algos.losses.vae import vae_elbo_loss, vae_log_prob
from lit_omarl.nets.continuous import VAE, CentralCritic


class CentralCriticCQL(ContinuousActorCritic):
    """Centralised twin critic + per-agent deterministic actors + a CQL regulariser (subclasses: ``conservative_gap``).

    Critic loss (K = 2 critics, one Adam step, gradient norm clipped at ``grad_clip_norm``):

        y      = r + gamma (1 - d) min_k Qbar_k(s', a'),   a' = clamp(pibar(o') + N(0, target_noise^2))
        L_Q    = sum_k E[(Q_k(s, a) - y)^2] + cql_alpha * sum_k E[gap_k(s, a)]

    with ``cf_target`` (CF_T of cfcql.md Table 6): Qbar_k(s', a') replaced by
    (1/N) sum_i Qbar_k(s', pibar_i(o'_i), a'^{-i}_data) (whole episodes needed).
    Actor loss, once every ``critic_actor_ratio`` critic updates, with the updated critic:

        cf_policy (Eq. 10, CF_P):  -(1/N) sum_i E[Q_1(s, pi_i(o_i), a_data^{-i})]
        otherwise (MADDPG PI):     -E[Q_1(s, pi_1(o_1), .., pi_N(o_N))]
        + action_reg * sum_i E[pi_i^2] (normalised actions), mixed as
          (1 - bc_weight) * that + bc_weight * E[(pi - a_data)^2]

    Targets are soft-updated (rate ``tau``) after every ``critic_actor_ratio`` critic updates.
    """

    def __init__(
        self,
        spec: dict | None = None,
        cql_alpha: float = 1.0,
        cql_n_samples: int = 10,
        cql_temperature: float = 1.0,
        cql_importance_sampling: bool = True,
        cql_policy_samples: bool = False,
        cql_sample_noise: float = 0.2,
        critic_actor_ratio: int = 5,
        target_noise: float = 0.05,
        cf_target: bool = False,
        cf_policy: bool = True,
        action_reg: float = 1e-3,
        bc_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if cql_n_samples < 1 or critic_actor_ratio < 1:
            raise ValueError(f"cql_n_samples and critic_actor_ratio must be >= 1, got {cql_n_samples}, {critic_actor_ratio}")
        if cql_temperature <= 0:
            raise ValueError(f"cql_temperature must be > 0, got {cql_temperature}")
        if not 0.0 <= bc_weight <= 1.0:
            raise ValueError(f"bc_weight must be in [0, 1], got {bc_weight}")
        s, hp = self.spec, self.hparams
        self.critic = CentralCritic(s.state_dim, s.n_agents, s.n_actions, hp.critic_hidden_dim, hp.n_critics)
        self.target_critic = CentralCritic(s.state_dim, s.n_agents, s.n_actions, hp.critic_hidden_dim, hp.n_critics)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.hparams.cf_target and getattr(dm, "sampling", "episode") == "transition":
            raise ValueError(f"{type(self).__name__} with cf_target=True needs the next step's dataset actions: "
                             "use data.sampling='episode' (or cf_target=False)")
        super().setup(stage)

    # ---- pieces ----------------------------------------------------------------
    def cql_samples(self, pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-agent sampled actions [B, L, N, C', A] and their log density [B, L, N, C'] (None without IS)."""
        hp = self.hparams
        pi_now, pi_next = pi[:, :-1], (pi[:, 1:] if hp.cql_policy_samples else None)
        samples, log_d = cql_action_samples(pi_now, pi_next, hp.cql_n_samples, self.low, self.high,
                                            hp.cql_sample_noise * self.half_range, self.action_mask)
        return samples, (log_d if hp.cql_importance_sampling else None)

    def conservative_gap(self, batch: Batch, q_data: torch.Tensor, pi: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Per-critic regulariser [K, B, L] and extra metrics; pi [B, L+1, N, A] = online policy actions (no gradient)."""
        raise NotImplementedError

    def target_values(self, batch: Batch, next_pi: torch.Tensor) -> torch.Tensor:
        """[K, B, L] target-critic values at s' (joint target-policy action, or CF_T's counterfactual mean)."""
        s_next = batch["state"][:, 1:]
        q_joint = self.target_critic(s_next, next_pi)
        if not self.hparams.cf_target:
            return q_joint
        actions, mask = batch["actions"], batch["mask"]
        data_next = torch.cat([actions[:, 1:], torch.zeros_like(actions[:, :1])], dim=1)  # a_{t+1} of the dataset
        has_next = torch.cat([mask[:, 1:] > 0, torch.zeros_like(mask[:, :1], dtype=torch.bool)], dim=1)
        cand = counterfactual_joint_actions(data_next, next_pi.unsqueeze(-2)).squeeze(-3)  # [B, L, N(i), N, A]
        q_cf = self.target_critic(s_next.unsqueeze(-2), cand).mean(-1)
        return torch.where(has_next, q_cf, q_joint)  # no next dataset action (episode end): joint target action

    def actor_loss(self, batch: Batch, pi: torch.Tensor, pi_norm: torch.Tensor) -> tuple[torch.Tensor, dict]:
        hp = self.hparams
        state, actions, mask = batch["state"][:, :-1], batch["actions"], batch["mask"]
        with frozen(self.critic):
            if hp.cf_policy:
                cand = counterfactual_joint_actions(actions, pi.unsqueeze(-2)).squeeze(-3)  # [B, L, N(i), N, A]
                q_pi = self.critic(state.unsqueeze(-2), cand, members=1)[0]  # [B, L, N]
            else:
                q_pi = self.critic(state, pi, members=1)[0]  # [B, L]
            pg = -step_mean(q_pi, mask)
            loss = pg + hp.action_reg * action_l2(pi_norm, mask)
            if hp.bc_weight > 0:
                loss = (1.0 - hp.bc_weight) * loss + hp.bc_weight * step_mean((pi - actions).pow(2), mask)
        return loss, {"actor_loss": loss.detach(), "actor_q": -pg.detach()}

    # ---- training ------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        phase = self.trainer.global_step % hp.critic_actor_ratio  # 0: critic + actor; else critic only
        with torch.no_grad():
            next_pi, _ = self.policy_outputs(self.target_actor, batch)
            next_pi = smoothed_target_actions(next_pi[:, 1:], hp.target_noise * self.half_range, None, self.low, self.high)
            q_next = self.target_values(batch, next_pi * self.action_mask).min(0).values
            targets = value_targets(batch["reward"], batch["terminated"], q_next, hp.gamma)
        with torch.set_grad_enabled(phase == 0):  # [B, L+1, N, A]; a graph only when the actor is updated
            pi_all, pi_norm_all = self.policy_outputs(self.actor, batch)

        q_data = self.critic(state[:, :-1], actions)  # [K, B, L]
        td = squared_td_loss(q_data, targets, mask)
        gap, metrics = self.conservative_gap(batch, q_data, pi_all.detach())
        cql = ensemble_step_mean(gap, mask)
        loss = td + hp.cql_alpha * cql
        self.step_critic(loss)

        if phase == 0:
            actor_loss, actor_metrics = self.actor_loss(batch, pi_all[:, :-1], pi_norm_all[:, :-1])
            self.step_actor(actor_loss)
            metrics.update(actor_metrics)
        if phase == hp.critic_actor_ratio - 1:
            soft_update(self.target_critic, self.critic, hp.tau)
            soft_update(self.target_actor, self.actor, hp.tau)

        with torch.no_grad():
            metrics.update({
                "loss": loss.detach(),
                "td_loss": td.detach(),
                "cql_gap": cql.detach(),
                "q_taken_mean": masked_mean(q_data.detach().min(0).values, mask),
                "target_mean": masked_mean(targets, mask),
            })
        self.log_train(metrics)


@register_algorithm("cfcql_c")
class CFCQLC(CentralCriticCQL):
    """CFCQL-C (paper Algorithm 1, continuous branch; Eq. 7, 9, 10, B.42, B.43).

    Critic regulariser (Eq. 7 with C sampled actions per agent, per critic k):

        gap_k = sum_i lambda_i T log sum_c exp((Q_k(s, a^i_c, a_data^{-i}) - log p(a^i_c)) / T) - Q_k(s, a_data)

    a^i_c: C uniform actions in the bounds (log p = -A log(high - low)) and,
    with ``cql_policy_samples`` (the code's HalfCheetah setting), C noisy
    pi_i(o_i) + N(0, 0.2^2) and C noisy pi_i(o'_i) + N(0, 0.2^2) (log p =
    the Gaussian noise density); ``cql_importance_sampling=False`` drops log p.
    Everything else (TD target, CF_T, CF_P policy improvement, update ratio)
    is in :class:`CentralCriticCQL`.

    Agent weights: ``softmax_temp`` 0 gives lambda_i = 1/N (the paper's tables
    report tau = 0). With tau > 0 a VAE of the joint action given the state is
    pre-trained (ELBO, :func:`~lit_omarl.algos.losses.vae.vae_elbo_loss`) and

        log beta_i = IS estimate of log beta_i(pi_i(o_i) | s) (Eq. B.43, ``vae_samples`` latents)
        lambda     = softmax_i(-tau (log pi_i - log beta_i))   ("softmin", the code; B.41's sign)
                  or softmax_i(+tau (log pi_i - log beta_i))   ("softmax", Eq. 9's sign)

    with the code's constant log pi (it cancels), from the current policy's
    joint action; the weights get no gradient.

    Deviations from the official code (thu-rllab/CFCQL, ``continuous/``):
        - One batch per update: the code's group of ``ca_ratio`` = 5 updates
          (critic + actor, then 4 critic-only, then soft target updates) is
          spread over 5 consecutive batches with the same order.
        - All agents and critics are evaluated in one batched pass; the code
          loops over agents. Per-agent gradient clipping (0.5) is kept.
        - No BatchNorm on the network inputs (the code's ``in_fn``): it makes
          a policy's action depend on the batch it is evaluated in.
        - Other agents keep their exact dataset actions in the counterfactual
          samples (the code adds U(-1e-5, 1e-5) noise), and the noisy
          policy samples at o' are paired with the current dataset actions of
          the others (the code pairs them with the NEXT step's dataset actions
          while still evaluating Q at the current state).
        - Each noisy policy sample is corrected by its own noise density (the
          code's HalfCheetah branch pairs the o-samples' Q with the
          o'-samples' densities and vice versa).
        - CF_T bootstraps from the joint target action where the episode has
          no next dataset action (its last step).
        - The critic sees the dataset's global state; on MPE the code uses the
          concatenated observations as the state.
        - The VAE is pre-trained inside ``fit`` on the training batches
          (behaviour pre-training, checkpointed) instead of by a separate
          script (1e5 updates of batch 256). Policies are evaluated
          deterministically (no exploration noise), as in the code.
        - Actions may have any bounds [low, high] (the code assumes [-1, 1]):
          uniform samples cover [low, high] and every noise std is in units
          of (high - low) / 2; the action regulariser acts on actions
          normalised to [-1, 1]. Identical to the code for [-1, 1].

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        cql_alpha: CQL weight (code default 1; per task in its config map,
            e.g. MPE spread 0.5 / 1 / 5 / 2.5, HalfCheetah 0.1 / 0.4 / 1 / 1.7
            for random / medium-replay / medium / expert).
        cql_n_samples: C sampled actions per source (code 10).
        cql_temperature: T of the log-sum-exp (code ``lse_temp`` 1).
        cql_importance_sampling: subtract the samples' log density (code ``soft_q``, on).
        cql_policy_samples: add noisy policy samples at o and o' (code: HalfCheetah only).
        cql_sample_noise: std of those samples' noise (code 0.2).
        critic_actor_ratio: critic updates per actor update (code ``ca_ratio`` 5).
        target_noise: std of the target-action noise, unclipped (code 0.05).
        cf_target: CF_T of Table 6 (off by default, as the code).
        cf_policy: CF_P of Table 6, the counterfactual policy improvement of Eq. 10 (on; False = "-CF_P").
        action_reg: weight of the squared-action regulariser (code 1e-3).
        bc_weight: weight of a BC term mixed into the actor loss (code ``bc_tau`` 0).
        softmax_temp: tau of the agent weights (0 = 1/N, no VAE).
        lambda_mode: "softmin" (code) or "softmax" (Eq. 9's sign).
        vae_hidden_dim, vae_beta, vae_lr, vae_samples: the VAE (code 750, 0.5, 1e-4, 20 latents).
        behaviour_pretrain_steps, behaviour_patience: VAE pre-training budget
            (code 1e5 updates) and early stop (0 = off).
        **kwargs: :class:`~lit_omarl.algos.continuous_base.ContinuousActorCritic`
            (actor_lr, critic_lr, tau, grad_clip_norm, shared_actor,
            critic_hidden_dim, n_critics, agent, gamma, ...). Defaults are the
            code's MPE setting (lr 1e-3 (spread: 1e-2), tau 0.01, gamma 0.95,
            hidden 64, batch 1024); HalfCheetah: lr 3e-4, tau 0.005, gamma
            0.99, hidden 256, batch 256, ``cql_policy_samples=True``.
    """

    def __init__(
        self,
        spec: dict | None = None,
        softmax_temp: float = 0.0,
        lambda_mode: Literal["softmin", "softmax"] = "softmin",
        vae_hidden_dim: int = 750,
        vae_beta: float = 0.5,
        vae_lr: float = 1e-4,
        vae_samples: int = 20,
        behaviour_pretrain_steps: int = 100_000,
        behaviour_patience: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if softmax_temp < 0:
            raise ValueError(f"softmax_temp must be >= 0, got {softmax_temp}")
        if lambda_mode not in ("softmin", "softmax"):
            raise ValueError(f"lambda_mode must be 'softmin' or 'softmax', got {lambda_mode!r}")
        s = self.spec
        self.vae = None
        if softmax_temp > 0:
            self.vae = VAE(s.state_dim, s.n_agents * s.n_actions, None, vae_hidden_dim, s.action_low, s.action_high)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opts = super().configure_optimizers()
        if self.vae is not None:
            opts.append(torch.optim.Adam(self.vae.parameters(), lr=self.hparams.vae_lr))
        return opts

    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        if self.vae is None:
            return 0, 0
        return self.hparams.behaviour_pretrain_steps, self.hparams.behaviour_patience

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        """One ELBO step of the joint-action VAE beta(a^1..a^N | s) on the batch's valid steps."""
        joint = batch["actions"].flatten(-2)
        recon, mean, std = self.vae(batch["state"][:, :-1], joint)
        loss, _, _ = vae_elbo_loss(recon, joint, mean, std, self.hparams.vae_beta, batch["mask"])
        opt = self.raw_optimizer(2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    def agent_weights(self, state: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        """lambda [B, L, N] at states [B, L, S] for the policy's joint actions pi [B, L, N, A]."""
        hp = self.hparams
        n = self.spec.n_agents
        if self.vae is None:
            return pi.new_full((*pi.shape[:-2], n), 1.0 / n)
        with torch.no_grad():
            log_beta = vae_log_prob(self.vae, state, pi.flatten(-2), hp.vae_beta, hp.vae_samples, groups=n,
                                    dim_mask=self.action_mask.flatten())
        return counterfactual_weights(log_beta, 0.0, hp.softmax_temp, hp.lambda_mode)

    def conservative_gap(self, batch: Batch, q_data: torch.Tensor, pi: torch.Tensor) -> tuple[torch.Tensor, dict]:
        state, actions, mask = batch["state"][:, :-1], batch["actions"], batch["mask"]
        samples, log_d = self.cql_samples(pi)  # [B, L, N, C, A]
        cand = counterfactual_joint_actions(actions, samples)  # [B, L, N(i), C, N, A]
        q_cf = self.critic(state[:, :, None, None, :], cand)  # [K, B, L, N, C]
        lam = self.agent_weights(state, pi[:, :-1])
        gap = cfcql_c_gap(q_cf, q_data, lam, log_d, self.hparams.cql_temperature)
        metrics = {"lambda_max_mean": masked_mean(lam.max(-1).values, mask)}
        return gap, metrics
