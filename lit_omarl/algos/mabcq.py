"""MABCQ (Jiang & Lu, "Offline Decentralized Multi-Agent Reinforcement Learning", 2021) and its Fig. 2 baselines.

Fully decentralised learners: agent i has its own conditional VAE G_i^1 of its
dataset actions, its own perturbation model xi_i and twin critic Q_i, and
learns from its own transitions (o_i, a_i, r, o'_i) only; no parameter,
gradient or value is shared between agents. MABCQ is per-agent BCQ whose TD
loss and perturbation objective are weighted by the value deviation lambda_vd
and the transition normalization lambda_tn (mabcq.md Sec. 3.2-3.3).

How the paper's per-agent datasets B_i map onto our batches. Agent i's
learner reads only its own slice of a batch - obs[:, :, i], actions[:, :, i],
the reward and obs[:, t+1, i], a sample of B_i = {(o_i, a_i, r, o'_i)}:

* one joint file (``data.path``): B_i is the projection of the joint dataset
  on agent i, with the team reward [B, L]. All learners see the same
  transition indices in one update (the paper samples each B_i separately);
  the learners stay independent, only their mini-batches are correlated.
* one file per agent (``data.agent_paths``, the paper's setting, mabcq.md
  Sec. 4.1, where each B_i comes from a different behaviour mixture): agent
  i's columns are drawn from file i independently of the other agents, with
  reward / terminated per agent [B, L, N] (column i from file i).

The learners here (MABCQ, BCQ-C, Behavior, DDPG-C) declare
``accepts_agent_datasets``; their updates take reward / terminated of either
shape (:func:`~lit_omarl.algos.omar_c.agent_reward_terminated`).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

from lit_omarl.algos.base import AgentType, Batch, register_algorithm
from lit_omarl.algos.continuous_base import ContinuousModule, frozen
from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.advantage import soft_update, value_targets
from lit_omarl.algos.losses.continuous import (
    ensemble_step_mean,
    soft_clipped_double_q,
    step_mean,
    transition_normalization_weights,
    value_deviation_weights,
)
from lit_omarl.algos.losses.vae import vae_elbo_loss
from lit_omarl.algos.omar_c import ICQLC, agent_reward_terminated
from lit_omarl.nets.continuous import AgentCritic, AgentPerturbation, AgentVAE


class AgentBehaviourVAE(ContinuousModule):
    """Per-agent conditional VAEs G_i^1(a_i | x_i) on each agent's own inputs (not registered).

    x_i = o_i (plus the agent id / previous action if asked; the networks are
    per agent, so the id is off by default). Trained by BCQ's negative ELBO
    (:func:`~lit_omarl.algos.losses.vae.vae_elbo_loss`, KL weight ``vae_beta``).
    Losses are averaged over agents: the agents share no parameter and Adam
    is invariant to the scale of a loss, so one summed update equals N
    separate ones (up to Adam's epsilon).

    Args:
        spec: the dataset's EnvSpec as a dict.
        latent_dim: VAE latent size (mabcq.md Table 6 "VAE hidden space": 10).
        vae_hidden_dim: width of the VAEs' two hidden layers (None = ``agent_hidden_dim``; Table 6: 64).
        vae_lr: Adam learning rate of the VAEs (Table 6, G: 1e-4).
        vae_beta: KL weight of the ELBO (BCQ: 0.5).
        agent_hidden_dim: width of every MLP (Table 6: (64, 64)).
        **kwargs: :class:`~lit_omarl.algos.continuous_base.ContinuousModule` / OfflineMARLModule arguments.
    """

    agent_types = ("mlp",)
    default_eval_deterministic = False  # the paper's policies draw fresh latents at every step
    accepts_agent_datasets = True  # per-agent VAEs on each agent's own inputs (data.agent_paths)

    def __init__(
        self,
        spec: dict | None = None,
        latent_dim: int = 10,
        vae_hidden_dim: int | None = None,
        vae_lr: float = 1e-4,
        vae_beta: float = 0.5,
        agent: AgentType = "mlp",
        agent_hidden_dim: int | None = 64,
        use_agent_id: bool = False,
        use_last_action: bool = False,
        gamma: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, agent=agent, agent_hidden_dim=agent_hidden_dim, use_agent_id=use_agent_id,
                         use_last_action=use_last_action, gamma=gamma, **kwargs)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if vae_beta < 0:
            raise ValueError(f"vae_beta must be >= 0, got {vae_beta}")
        s = self.spec
        self.hidden = 64 if agent_hidden_dim is None else int(agent_hidden_dim)
        self.vae_hidden = self.hidden if vae_hidden_dim is None else int(vae_hidden_dim)
        self.vae = AgentVAE(s.n_agents, self.agent_inputs.dim, s.n_actions, latent_dim, self.vae_hidden, self.low, self.high)

    def vae_loss(self, vae: AgentVAE, cond: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative ELBO of ``vae`` on the valid steps, padded action dims left out of the reconstruction."""
        recon, mean, std = vae(cond, actions)
        loss, _, _ = vae_elbo_loss(recon * self.action_mask, actions, mean, std, self.hparams.vae_beta, mask)
        return loss


@register_algorithm("mabcq")
class MABCQ(AgentBehaviourVAE):
    """MABCQ (mabcq.md Sec. 3.3, Eq. 1-2, Algorithm 1; Table 6 hyper-parameters).

    For every agent i (own networks; x = x_i, a = a_i, x' = x'_i):

        xi_i(x, a)  = clamp(a + Phi (high - low)/2 tanh(f_i(x, a)), low, high)
        pi_i(x)     = argmax_{a~_j} Q_i,1(x, a~_j),   a~_j = xi_i(x, a_j),  a_j ~ G_i^1(x), j = 1..n
        V_i(x')     = max_j [ c min_k Qbar_i,k(x', a~'_j) + (1 - c) max_k Qbar_i,k(x', a~'_j) ]
                      (a~'_j from the target xibar_i; c = ``double_q_weight``, BCQ's soft clipped double Q)
        y_i         = r + gamma (1 - d) V_i(x')
        lambda_vd   = clip(1 + (V_i(x') - E_i) / |E_i|, 1 - epsilon, 1 + epsilon),
                      E_i = (Qhat_i(x, a) - r) / gamma  (Sec. 3.3; Qhat with the same double-Q mix), 1 if d = 1
        lambda_tn   = N(mu^1; 0, I) / N(mu^2; 0, I),  mu^1 = mean of E_i^1(x, a), mu^2 = mean of E_i^2(x, a, x')
        L_Q   (1)   = sum_k E[ lambda_tn lambda_vd (Q_i,k(x, a) - y_i)^2 ]
        L_xi  (2)   = -E[ lambda_tn lambda_vd Q_i,1(x, xi_i(x, a)) ]

    G_i^1 = VAE of a given x, G_i^2 = VAE of a given (x, x') (same latent size),
    both fitted first (Algorithm 1 line 4: ``behaviour_pretrain_steps``
    ELBO updates, then frozen). Each update: critics (main optimizer, one
    global step), perturbation models, then soft target updates (rate ``tau``).
    The weights carry no gradient (target networks and frozen VAEs).
    ``use_lambda_tn`` / ``use_lambda_vd`` = False give the "w/o lambda_tn" /
    "w/o lambda_vd" ablations of Fig. 2; both off is BCQ (``bcq_c``).

    Acting (``act``): n latents per agent, decoded, perturbed, the best under
    Q_i,1. ``deterministic=False`` (default evaluation, the paper's policy)
    draws fresh latents z ~ N(0, I) clipped to [-0.5, 0.5] (BCQ);
    ``deterministic=True`` uses n fixed latents drawn once from ``seed``
    (checkpointed), so the action is a function of the observation.

    Deviations from the paper:
        - Inputs are the agent's own observation o_i, not the global state s:
          ``act()`` receives observations only (decentralised execution). In
          the paper's MaMuJoCo setting every agent observes the whole state.
        - E_i and V_i use BCQ's soft clipped double Q of the twin target
          critics (the paper writes one Qhat_i).
        - lambda_vd's denominator |E_i| is floored at 1e-6 and terminal
          transitions get lambda_vd = 1 (the paper leaves both cases open).
        - The paper's normalisers c_i are dropped (Sec. 3.3: a per-(s, a)
          scale of the sampling probability that does not change y_i); the
          loss is the importance-weighted one of Eq. 1-2 as written.
        - Eq. 2 perturbs the DATASET action a_i (``perturb_source="dataset"``,
          the default); BCQ's code perturbs a VAE sample (``"vae"``).
        - One batch per update for all agents (see the module docstring);
          team reward (the paper's shared reward r) with a joint file, each
          agent's own file's reward with ``data.agent_paths``.
        - Action bounds may be any [low, high]: Phi is in units of the
          half-range (Table 6's 0.05 for [-1, 1]).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        use_lambda_tn: weight by transition normalization (False: "w/o lambda_tn").
        use_lambda_vd: weight by value deviation (False: "w/o lambda_vd").
        optimism: epsilon, the clip of lambda_vd (Table 6: HalfCheetah 0.8,
            Walker 0.48, Hopper 0.8, Ant 0.64).
        perturbation: Phi (Table 6: 0.05), in units of (high - low) / 2.
        n_candidates: n sampled actions (Table 6: 10).
        critic_lr: Adam learning rate of Q (Table 6: 1e-3).
        perturbation_lr: Adam learning rate of xi (Table 6: 1e-4).
        tau: soft target update rate (BCQ: 0.005).
        double_q_weight: c of the soft clipped double Q (BCQ: 0.75).
        n_critics: critics per agent (BCQ: 2).
        critic_hidden_dim: width of critic and perturbation MLPs (None = ``agent_hidden_dim``, Table 6: 64).
        perturb_source: "dataset" (Eq. 2) or "vae" (BCQ's code).
        lambda_tn_max: upper clip of lambda_tn (None: none, as the paper; it
            reports lambda_tn in [0.2, 1.4] for almost all samples).
        behaviour_pretrain_steps, behaviour_patience: VAE fitting budget before
            Q-learning, and early stop after that many updates without a new
            minimum (0 = off).
        **kwargs: :class:`AgentBehaviourVAE` (latent_dim, vae_hidden_dim,
            vae_lr, vae_beta, agent_hidden_dim, gamma (0.99), seed, eval settings, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        use_lambda_tn: bool = True,
        use_lambda_vd: bool = True,
        optimism: float = 0.8,
        perturbation: float = 0.05,
        n_candidates: int = 10,
        critic_lr: float = 1e-3,
        perturbation_lr: float = 1e-4,
        tau: float = 0.005,
        double_q_weight: float = 0.75,
        n_critics: int = 2,
        critic_hidden_dim: int | None = None,
        perturb_source: Literal["dataset", "vae"] = "dataset",
        lambda_tn_max: float | None = None,
        behaviour_pretrain_steps: int = 5000,
        behaviour_patience: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if not 0.0 <= optimism <= 1.0:
            raise ValueError(f"optimism (epsilon) must be in [0, 1], got {optimism}")
        if perturbation < 0:
            raise ValueError(f"perturbation (Phi) must be >= 0, got {perturbation}")
        if n_candidates < 1 or n_critics < 1:
            raise ValueError(f"n_candidates and n_critics must be >= 1, got {n_candidates}, {n_critics}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if not 0.0 <= double_q_weight <= 1.0:
            raise ValueError(f"double_q_weight must be in [0, 1], got {double_q_weight}")
        if perturb_source not in ("dataset", "vae"):
            raise ValueError(f"perturb_source must be 'dataset' or 'vae', got {perturb_source!r}")
        if lambda_tn_max is not None and lambda_tn_max <= 0:
            raise ValueError(f"lambda_tn_max must be > 0 or None, got {lambda_tn_max}")
        if behaviour_pretrain_steps < 0:
            raise ValueError(f"behaviour_pretrain_steps must be >= 0, got {behaviour_pretrain_steps}")
        if self.hparams.gamma <= 0:
            raise ValueError(f"gamma must be > 0 (lambda_vd divides by it), got {self.hparams.gamma}")
        s = self.spec
        n, d, hidden = s.n_agents, self.agent_inputs.dim, self.hidden if critic_hidden_dim is None else int(critic_hidden_dim)
        self.critic = AgentCritic(n, d, s.n_actions, hidden, n_critics)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.perturb = AgentPerturbation(n, d, s.n_actions, hidden, perturbation * self.half_range, self.low, self.high)
        self.target_perturb = copy.deepcopy(self.perturb).requires_grad_(False)
        # G_i^2(a | x, x'): only needed for lambda_tn
        self.transition_vae = (AgentVAE(n, 2 * d, s.n_actions, self.vae.latent_dim, self.vae_hidden, self.low, self.high)
                               if use_lambda_tn else None)
        g = torch.Generator().manual_seed(int(self.hparams.seed))
        fixed = torch.randn(n_candidates, n, self.vae.latent_dim, generator=g).clamp(-0.5, 0.5)
        self.register_buffer("act_latents", fixed)  # latents of deterministic acting (checkpointed)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        opts = [
            torch.optim.Adam(self.critic.parameters(), lr=hp.critic_lr),  # main: counts global steps
            torch.optim.Adam(self.perturb.parameters(), lr=hp.perturbation_lr),
            torch.optim.Adam(self.vae.parameters(), lr=hp.vae_lr),
        ]
        if self.transition_vae is not None:
            opts.append(torch.optim.Adam(self.transition_vae.parameters(), lr=hp.vae_lr))
        return opts

    # ---- behaviour models (Algorithm 1, line 4) ---------------------------------------------
    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        return self.hparams.behaviour_pretrain_steps, self.hparams.behaviour_patience

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        """One ELBO step of every agent's G^1 (and G^2) on the batch's valid steps."""
        x = self.sequence_inputs(batch, include_last_obs=True)
        x_now, mask, actions = x[:, :-1], batch["mask"], batch["actions"]
        loss = self.vae_loss(self.vae, x_now, actions, mask)
        opts = [self.raw_optimizer(2)]
        if self.transition_vae is not None:
            loss = loss + self.vae_loss(self.transition_vae, torch.cat([x_now, x[:, 1:]], dim=-1), actions, mask)
            opts.append(self.raw_optimizer(3))
        for opt in opts:
            opt.zero_grad()
        loss.backward()
        for opt in opts:
            opt.step()
        return loss.detach()

    # ---- the BCQ policy -------------------------------------------------------------------------
    def candidates(self, x: torch.Tensor, perturb: AgentPerturbation, latents: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """n perturbed VAE actions per agent: x [..., N, D] -> (inputs [n, ..., N, D], actions [n, ..., N, A]).

        ``latents`` [n, N, Z] (None: fresh draws clipped to [-0.5, 0.5])."""
        n = self.hparams.n_candidates
        cond = x.unsqueeze(0).expand(n, *x.shape)
        if latents is not None:
            latents = latents.reshape(n, *([1] * (x.dim() - 2)), *latents.shape[1:])
        return cond, perturb(cond, self.vae.sample(cond, latents) * self.action_mask) * self.action_mask

    def target_value(self, x_next: torch.Tensor) -> torch.Tensor:
        """V_i(x') = max over n target-perturbed candidates of the soft clipped double Q: [..., N] -> [..., N]."""
        cond, cand = self.candidates(x_next, self.target_perturb)
        q = soft_clipped_double_q(self.target_critic(cond, cand), self.hparams.double_q_weight)  # [n, ..., N]
        return q.amax(0)

    def _continuous_actions(self, inputs: torch.Tensor, h: Any, deterministic: bool) -> tuple[torch.Tensor, Any]:
        cond, cand = self.candidates(inputs, self.perturb, self.act_latents if deterministic else None)
        best = self.critic(cond, cand, members=1)[0].argmax(0)  # [B, N]
        index = best[None, ..., None].expand(1, *cand.shape[1:])
        return cand.gather(0, index).squeeze(0), None

    # ---- training -------------------------------------------------------------------------------
    def transition_weights(self, x_now: torch.Tensor, x_next: torch.Tensor, actions: torch.Tensor,
                           reward: torch.Tensor, terminated: torch.Tensor, v_next: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lambda_tn * lambda_vd, lambda_vd, lambda_tn), each [B, L, N]; a switched-off weight is 1."""
        hp = self.hparams
        lam_vd = lam_tn = torch.ones_like(v_next)
        if hp.use_lambda_vd:
            q_hat = soft_clipped_double_q(self.target_critic(x_now, actions), hp.double_q_weight)
            lam_vd = value_deviation_weights(v_next, q_hat, reward, terminated, hp.gamma, hp.optimism)
        if hp.use_lambda_tn:
            mu_sa = self.vae.encode(x_now, actions)[0]
            mu_sas = self.transition_vae.encode(torch.cat([x_now, x_next], dim=-1), actions)[0]
            lam_tn = transition_normalization_weights(mu_sa, mu_sas, hp.lambda_tn_max)
        return lam_tn * lam_vd, lam_vd, lam_tn

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions = batch["mask"], batch["actions"]
        # team [B, L] -> [B, L, 1] shared by the agents; per-agent datasets: [B, L, N], agent i's own
        reward, terminated = agent_reward_terminated(batch, self.spec.n_agents)
        x = self.sequence_inputs(batch, include_last_obs=True)  # [B, L+1, N, D]
        x_now, x_next = x[:, :-1], x[:, 1:]
        with torch.no_grad():
            v_next = self.target_value(x_next)  # [B, L, N]
            targets = value_targets(reward, terminated, v_next, hp.gamma)
            weights, lam_vd, lam_tn = self.transition_weights(x_now, x_next, actions, reward, terminated, v_next)

        q = self.critic(x_now, actions)  # [K, B, L, N]
        critic_loss = ensemble_step_mean(weights * (q - targets).pow(2), mask)  # Eq. 1
        self.optimise(self.main_optimizer(), critic_loss, 0.0)

        if hp.perturb_source == "dataset":
            base = actions
        else:
            with torch.no_grad():
                base = self.vae.sample(x_now) * self.action_mask
        with frozen(self.critic):
            q_pi = self.critic(x_now, self.perturb(x_now, base) * self.action_mask, members=1)[0]  # [B, L, N]
            actor_loss = -step_mean(weights * q_pi, mask)  # Eq. 2
        self.step_optimizer(1, actor_loss, self.perturb.parameters(), 0.0)
        soft_update(self.target_critic, self.critic, hp.tau)
        soft_update(self.target_perturb, self.perturb, hp.tau)

        with torch.no_grad():
            m = mask.unsqueeze(-1)
            self.log_train({
                "loss": critic_loss.detach(),
                "td_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(),
                "q_taken_mean": masked_mean(q.detach().amin(0), m),
                "target_mean": masked_mean(targets, m),
                "lambda_vd_mean": masked_mean(lam_vd, m),
                "lambda_tn_mean": masked_mean(lam_tn, m),
                "weight_max": (weights * m).amax(),
                # Fig. 3's difference in value estimates among agents, max_i V_i - min_i V_i (here at s')
                "value_spread": masked_mean(v_next.amax(-1) - v_next.amin(-1), mask),
            })


@register_algorithm("bcq_c")
class BCQC(MABCQ):
    """Decentralised per-agent BCQ: :class:`MABCQ` without lambda_tn and lambda_vd (the "BCQ" curve of mabcq.md Fig. 2).

    Each agent runs continuous BCQ (Fujimoto et al. 2019) on its own
    transitions: VAE G_i^1, perturbation model, twin critics, soft clipped
    double-Q targets over n candidates. No G_i^2 is built. (The discrete
    BCQ-MA with a mixer is ``bcq``.)

    Args:
        spec: the dataset's EnvSpec as a dict.
        use_lambda_tn, use_lambda_vd: keep False for BCQ.
        **kwargs: arguments of :class:`MABCQ`.
    """

    def __init__(self, spec: dict | None = None, use_lambda_tn: bool = False, use_lambda_vd: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(spec=spec, use_lambda_tn=use_lambda_tn, use_lambda_vd=use_lambda_vd, **kwargs)


@register_algorithm("mabcq_behavior")
class MABCQBehavior(AgentBehaviourVAE):
    """The "Behavior" curve of mabcq.md Fig. 2: each agent acts with its own VAE G_i^1 (no Q-learning).

    Loss: the negative ELBO of :class:`AgentBehaviourVAE`, one Adam step per
    batch (the main optimizer). ``act(deterministic=False)`` (default
    evaluation) decodes z ~ N(0, I) clipped to [-0.5, 0.5], ``deterministic=True``
    decodes z = 0. Unlike ``bc_c`` (one VAE shared by the agents, with agent id),
    every agent has its own VAE, as MABCQ's G_i^1.

    Args:
        spec: the dataset's EnvSpec as a dict.
        **kwargs: arguments of :class:`AgentBehaviourVAE` (latent_dim, vae_hidden_dim, vae_lr, vae_beta, ...).
    """

    def __init__(self, spec: dict | None = None, **kwargs: Any) -> None:
        super().__init__(spec=spec, **kwargs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.vae.parameters(), lr=self.hparams.vae_lr)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        x = self.sequence_inputs(batch, include_last_obs=False)
        loss = self.vae_loss(self.vae, x, batch["actions"], batch["mask"])
        self.optimise(self.main_optimizer(), loss, 0.0)
        self.log_train({"loss": loss.detach()})

    def _continuous_actions(self, inputs: torch.Tensor, h: Any, deterministic: bool) -> tuple[torch.Tensor, Any]:
        z = inputs.new_zeros(self.vae.latent_dim) if deterministic else None
        return self.vae.sample(inputs, z) * self.action_mask, None


@register_algorithm("ddpg_c")
class DDPGC(ICQLC):
    """Independent DDPG per agent on its own transitions (the "DDPG" curve of mabcq.md Fig. 2).

    No action constraint, no transition re-weighting (mabcq.md Sec. 4.1):

        y_i  = r + gamma (1 - d) Qbar_i(x'_i, pibar_i(x'_i))
        L_Q  = E[(Q_i(x_i, a_i) - y_i)^2],   L_pi = -E[Q_i(x_i, pi_i(x_i))]

    Built on :class:`~lit_omarl.algos.omar_c.ICQLC` with one critic, CQL
    weight 0, no action regulariser, no target noise and no gradient clipping
    (its ``cql_gap`` metric is computed with one sample and has no effect).
    Defaults follow MABCQ's (the paper: "the same neural network
    architectures and hyperparameters"): MLPs (64, 64), critic lr 1e-3,
    actor lr 1e-4 (xi's), tau 0.005, gamma 0.99; evaluation is deterministic.

    Per-agent datasets (``data.agent_paths``): accepted with the default
    independent networks (every critic and actor sees agent i's own inputs
    and reward only); not with ``shared_critic`` or ``shared_actor`` (one
    network trained on all agents' data).

    Args:
        spec: the dataset's EnvSpec as a dict.
        **kwargs: arguments of :class:`~lit_omarl.algos.omar_c.OMARC`.
    """

    @property
    def accepts_agent_datasets(self) -> bool:  # type: ignore[override]
        return not (self.hparams.shared_critic or self.hparams.shared_actor)

    def __init__(self, spec: dict | None = None, cql_alpha: float = 0.0, cql_n_samples: int = 1, n_critics: int = 1,
                 action_reg: float = 0.0, target_noise: float = 0.0, actor_lr: float = 1e-4, critic_lr: float = 1e-3,
                 tau: float = 0.005, gamma: float = 0.99, grad_clip_norm: float = 0.0, use_agent_id: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(spec=spec, cql_alpha=cql_alpha, cql_n_samples=cql_n_samples, n_critics=n_critics,
                         action_reg=action_reg, target_noise=target_noise, actor_lr=actor_lr, critic_lr=critic_lr,
                         tau=tau, gamma=gamma, grad_clip_norm=grad_clip_norm, use_agent_id=use_agent_id, **kwargs)
