"""ICQ-MA for continuous actions (icq.md Sec. 4, App. D.1): implicit constraint Q-learning with a linear
mixer of per-agent critics Q_i(s, o_i, a_i) and decomposed advantage-weighted Gaussian policies."""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, register_algorithm
from lit_omarl.algos.iql_c import GaussianPolicyModule
from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.continuous import icq_c_actor_loss
from lit_omarl.algos.losses.icq import icq_critic_targets
from lit_omarl.nets.continuous import AgentCritic
from lit_omarl.nets.critics import make_linear_mixer, state_obs_id_inputs


@register_algorithm("icq_c")
class ICQC(GaussianPolicyModule):
    """ICQ-MA, continuous actions (icq.md Eq. 16-20 with the mini-batch softmax of Eq. 56; the discrete ``icq``'s design).

    Value decomposition (Eq. 16; bias-free linear mixer by default, as the official ICQ-MA code):

        Q_tot(s, a) = sum_i k_i(s) Q_i(s, o_i, a_i),   k_i >= 0, sum_i k_i = 1

    Q_i is one MLP shared by the agents on [s, o_i, one-hot(i), a_i]
    (continuous input action instead of the discrete code's one output per
    action). Critic and mixer minimise (Eq. 19-20, 56)

        rho_t = n * softmax_{episodes of the batch}( Q'_tot(s_t, a_t) / alpha_critic )
        L_Q   = E[ (Q_tot(s_t, a_t) - G_t)^2 ],   G_t = TD(lambda) return bootstrapped on rho_t Q'_tot(s_t, a_t)

    with target networks Q' (hard copy every ``target_update_interval`` critic
    updates) and dataset actions a_t only. Per-agent Gaussian policies
    (:class:`~lit_omarl.algos.iql_c.GaussianPolicyModule`), trained after the
    critic on the updated critic (Eq. 18, 56):

        A_i   = Q_i(s, o_i, a_i) - (1/M) sum_m Q_i(s, o_i, a~_m),   a~_m ~ pi_i(. | tau_i)
        L_pi  = - E_{t, i}[ k_i(s) n softmax_{episodes}( A_i / alpha_actor ) log pi_i(a_i | tau_i) ]

    (``actor_weighting="paper"``: softmax(k_i A_i / alpha_actor), Eq. 17's
    exp(w^i Q^i / alpha).) M = ``n_baseline_samples``; 0 drops the baseline
    (A_i = Q_i, Eq. 18 as written). The critic is the main optimizer.

    Deviations:
        - icq.md evaluates continuous actions only in its single-agent D4RL
          form; this multi-agent continuous learner combines ICQ-MA (Sec. 4.2)
          with a Gaussian policy. The advantage baseline is a Monte-Carlo
          estimate of E_{pi_i} Q_i (the discrete code sums over all actions).
        - Where the dataset has no next action (the observation after an
          episode's last step, so every bootstrap of transition batches), Q'_i
          is evaluated at the policy's mean action.
        - Adam by default (the paper's Table 4; the discrete official code
          uses RMSprop, ``optimizer="rmsprop"``).
        - The mini-batch softmaxes, TD(lambda) and mixer are those of the
          discrete ``icq`` (see its deviations).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        policy_lr: learning rate of the policies (discrete official 5e-4).
        critic_lr: learning rate of critic and mixer (official 1e-4).
        optimizer: "adam" or "rmsprop" (alpha 0.99, eps 1e-5).
        grad_clip_norm: gradient-norm clip of actor and critic (official 20; <= 0 disables).
        td_lambda: lambda of the TD(lambda) targets (official 0.8).
        target_update_interval: critic updates between hard target copies (official 600).
        critic_alpha: temperature of the critic's rho (official 1000).
        actor_alpha: temperature of the actor's weights (official 0.1).
        actor_weighting: "code" or "paper" (see above).
        n_baseline_samples: M policy samples for the advantage baseline (0 = no baseline).
        critic_hidden_dim: width of the critic's two hidden layers (official 256).
        mixer_hypernet_dim: hidden size of the mixer's hypernetwork (official 32).
        mixer_bias: add the state bias b(s) of Eq. 16.
        **kwargs: :class:`~lit_omarl.algos.iql_c.GaussianPolicyModule` (shared_actor,
            log_std_min, log_std_max, agent, agent_hidden_dim, gamma, seed, eval settings, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        policy_lr: float = 5e-4,
        critic_lr: float = 1e-4,
        optimizer: Literal["adam", "rmsprop"] = "adam",
        grad_clip_norm: float = 20.0,
        td_lambda: float = 0.8,
        target_update_interval: int = 600,
        critic_alpha: float = 1000.0,
        actor_alpha: float = 0.1,
        actor_weighting: Literal["code", "paper"] = "code",
        n_baseline_samples: int = 10,
        critic_hidden_dim: int = 256,
        mixer_hypernet_dim: int = 32,
        mixer_bias: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, policy_lr=policy_lr, grad_clip_norm=grad_clip_norm, **kwargs)
        choices = {"optimizer": (optimizer, ("adam", "rmsprop")), "actor_weighting": (actor_weighting, ("code", "paper"))}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        for name, value, ok, rule in (("critic_alpha", critic_alpha, critic_alpha > 0, "> 0"),
                                      ("actor_alpha", actor_alpha, actor_alpha > 0, "> 0"),
                                      ("target_update_interval", target_update_interval, target_update_interval >= 1, ">= 1"),
                                      ("td_lambda", td_lambda, 0.0 <= td_lambda <= 1.0, "in [0, 1]"),
                                      ("n_baseline_samples", n_baseline_samples, n_baseline_samples >= 0, ">= 0")):
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {value}")
        s = self.spec
        self.critic = AgentCritic(s.n_agents, s.state_dim + s.obs_dim + s.n_agents, s.n_actions, critic_hidden_dim,
                                  n_critics=1, shared=True)
        self.mixer = make_linear_mixer(s.n_agents, s.state_dim, mixer_hypernet_dim, bias=mixer_bias)
        self.target_critic, self.target_mixer = (copy.deepcopy(m).requires_grad_(False) for m in (self.critic, self.mixer))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams

        def make(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
            if hp.optimizer == "rmsprop":
                return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-5)
            return torch.optim.Adam(params, lr=lr)

        critic = make([*self.critic.parameters(), *self.mixer.parameters()], hp.critic_lr)
        return [critic, make(list(self.actor.parameters()), hp.policy_lr)]  # critic first: the main optimizer

    def bootstrap_actions(self, actions: torch.Tensor, mask: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """Actions [B, L+1, N, A] at every observation: the dataset's a_t where step t is valid, else the policy mean."""
        policy = self.to_bounds(means.detach())
        head = torch.where(mask[:, :, None, None] > 0, actions, policy[:, :-1])
        return torch.cat([head, policy[:, -1:]], dim=1)

    def advantages(self, x_now: torch.Tensor, actions: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """A_i = Q_i(a_i) - mean_m Q_i(a~_m), a~_m ~ pi_i (no gradient): [B, L, N]."""
        with torch.no_grad():
            q_taken = self.critic(x_now, actions, members=1)[0]
            if self.hparams.n_baseline_samples == 0:
                return q_taken
            samples = self.sampled_joint_actions(means, self.hparams.n_baseline_samples)  # [M, B, L, N, A]
            q_samples = self.critic(x_now, samples.movedim(0, -2), members=1)[0]  # [B, L, N, M]
            return q_taken - q_samples.mean(-1)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        x = state_obs_id_inputs(state, batch["obs"])  # [B, L+1, N, S+O+N]
        means = self.policy_means(batch, include_last_obs=True)  # [B, L+1, N, A]

        # Critic: SARSA-style targets on dataset actions, re-weighted by rho (Eq. 19, 56).
        with torch.no_grad():
            next_q = self.target_critic(x, self.bootstrap_actions(actions, mask, means), members=1)[0]  # [B, L+1, N]
            targets, rho = icq_critic_targets(batch["reward"], batch["terminated"], mask,
                                              self.target_mixer(next_q, state), hp.critic_alpha, hp.gamma, hp.td_lambda)
        q_tot = self.mixer(self.critic(x[:, :-1], actions, members=1)[0], state[:, :-1])
        critic_loss = masked_mean((q_tot - targets).pow(2), mask)
        self.optimise(self.main_optimizer(), critic_loss, hp.grad_clip_norm)
        if self.trainer.global_step % hp.target_update_interval == 0:  # hard copies (Algorithm 2)
            for target, online in ((self.target_critic, self.critic), (self.target_mixer, self.mixer)):
                target.load_state_dict(online.state_dict())

        # Actor: decomposed advantage-weighted likelihood on the updated critic (Eq. 18, 56).
        adv = self.advantages(x[:, :-1], actions, means[:, :-1])
        with torch.no_grad():
            coef = self.mixer.k(state[:, :-1])
        actor_loss, weights = icq_c_actor_loss(self.log_probs(means[:, :-1], actions), adv, coef, mask,
                                               hp.actor_alpha, hp.actor_weighting)
        self.step_optimizer(1, actor_loss, self.actor.parameters(), hp.grad_clip_norm)

        with torch.no_grad():
            step_mask = mask.unsqueeze(-1).expand_as(weights)
            obs_valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
            self.log_train({
                "loss": critic_loss.detach(),
                "q_tot_mean": masked_mean(q_tot.detach(), mask),
                "actor_loss": actor_loss.detach(),
                "target_mean": masked_mean(targets, mask),
                "critic_weight_max": (rho * obs_valid)[:, 1:].max(),
                "actor_weight_max": (weights * step_mask).max(),
                "advantage_mean": masked_mean(adv, step_mask),
                "policy_std_mean": self.actor.std().mean(),
            })
