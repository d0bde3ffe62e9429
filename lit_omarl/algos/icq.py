"""ICQ-MA: Implicit Constraint Q-learning for offline multi-agent RL (Yang et al., NeurIPS 2021).

An actor-critic that never evaluates an action absent from the dataset: the
critic is trained SARSA-style on dataset next actions re-weighted by the
implicit-constraint ratio rho = exp(Q / alpha) / Z, and each agent's policy is
an advantage-weighted behaviour cloning, decomposed through a linear mixer.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import ensure_some_available, masked_log_softmax, masked_mean, policy_actions
from lit_omarl.algos.losses.icq import ActorWeighting, icq_actor_loss, icq_critic_targets
from lit_omarl.nets.critics import StateObsCritic, make_linear_mixer, state_obs_id_inputs


@register_algorithm("icq")
class ICQ(OfflineMARLModule):
    """ICQ-MA (icq.md Sec. 4.2, Algorithm 2, App. D.1; official code YiqinYang/ICQ, ICQ-MA).

    Value decomposition (Eq. 16, linear mixer; no bias by default, as the code):

        Q_tot(s, a) = sum_i k_i(s) Q_i(s, o_i, a_i),   k_i >= 0, sum_i k_i = 1

    Critic (Eq. 19-20 with the mini-batch softmax for Z, App. D.1 Eq. 56),
    minimised over the critic and the mixer:

        rho_t = B_t * softmax_{episodes of the batch}( Q'_tot(s_t, a_t) / alpha_critic )
        L_Q   = E[ (Q_tot(s_t, a_t) - G_t)^2 ],   G_t = TD(lambda) return bootstrapped on rho_t * Q'_tot(s_t, a_t)

    with target networks Q' (hard copy every ``target_update_interval``
    critic updates) and only dataset actions a_t. Actor (Eq. 18 with Eq. 56),
    trained after the critic on the updated critic:

        adv_i = Q_i(a_i) - sum_a pi_i(a) Q_i(a)
        L_pi  = - E_{t, i}[ k_i(s) * B_t * softmax_{episodes}( adv_i / alpha_actor ) * log pi_i(a_i | tau_i) ]

    (``actor_weighting="paper"`` uses softmax(k_i * adv_i / alpha_actor)
    instead, the exp(w^i Q^i / alpha) of Eq. 17.) B_t is the number of valid
    entries of the softmax. The critic is the main optimizer
    (``trainer.global_step`` counts critic updates); the actor steps its raw
    optimizer. ``act()`` takes the argmax of pi over available actions by
    default (the official test mode, ``test_greedy``); ``deterministic=False``
    samples pi.

    Deviations from the official code:
        - One critic update per batch with the loss averaged over all valid
          steps; the code makes one update per time step of the batch, so its
          ``target_update_interval`` (600) counts per-time-step updates.
          Both agree on one-step data (e.g. the MMDP set).
        - The mini-batch softmaxes run over valid entries only and are scaled
          by their number (the code includes padded episodes and scales by B).
        - Where the dataset has no next action (the observation after the last
          step of a truncated episode, hence every bootstrap of transition
          batches), the bootstrap is the expected target value under the
          current actor, sum_i k_i sum_a pi_i(a) Q'_i(a) (exact for a linear
          mixer). The code reads pymarl's zero padding (action 0) there; its
          single-agent version drops such transitions.
        - The mixer's k_i(s) come from one two-layer hypernetwork |w(s)|
          normalised to sum 1 (the code normalises |W1(s)| |w2(s)| of a QMIX
          hypernetwork); ``mixer_bias=True`` adds the paper's b(s).
        - TD(lambda) targets bootstrap a truncated episode shorter than the
          batch from its own last observation (see ``td_lambda_targets``).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        actor_lr: learning rate of the actor (official 5e-4).
        critic_lr: learning rate of critic and mixer (official 1e-4).
        optimizer: "rmsprop" (official code; alpha 0.99, eps 1e-5) or "adam"
            (the paper's Table 4).
        grad_clip_norm: gradient-norm clipping of actor and critic (official 20; <= 0 disables).
        td_lambda: lambda of the critic's TD(lambda) targets (official 0.8).
        target_update_interval: critic updates between hard target copies (official 600).
        critic_alpha: temperature of the critic's rho (official 1000; paper 1000 or 100).
        actor_alpha: temperature of the actor's advantage weights (official 0.1).
        actor_weighting: "code" (k_i * softmax(adv / alpha)) or "paper" (softmax(k_i * adv / alpha)).
        critic_hidden_dim: width of the critic's two hidden layers (official 256).
        dueling: critic head Q = A + V (official True).
        mixer_hypernet_dim: hidden size of the mixer's hypernetwork (official mixing embed 32).
        mixer_bias: add the state bias b(s) of Eq. 16 (the official code has none).
        **kwargs: arguments of :class:`OfflineMARLModule` (gamma, agent, agent_hidden_dim,
            use_agent_id, use_last_action, eval settings, seed); they shape the actor.
    """

    default_eval_deterministic = True

    def __init__(
        self,
        spec: dict | None = None,
        actor_lr: float = 5e-4,
        critic_lr: float = 1e-4,
        optimizer: Literal["rmsprop", "adam"] = "rmsprop",
        grad_clip_norm: float = 20.0,
        td_lambda: float = 0.8,
        target_update_interval: int = 600,
        critic_alpha: float = 1000.0,
        actor_alpha: float = 0.1,
        actor_weighting: ActorWeighting = "code",
        critic_hidden_dim: int = 256,
        dueling: bool = True,
        mixer_hypernet_dim: int = 32,
        mixer_bias: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {optimizer!r}")
        if actor_weighting not in ("code", "paper"):
            raise ValueError(f"actor_weighting must be 'code' or 'paper', got {actor_weighting!r}")
        if critic_alpha <= 0 or actor_alpha <= 0:
            raise ValueError(f"critic_alpha and actor_alpha must be > 0, got {critic_alpha}, {actor_alpha}")
        if target_update_interval < 1:
            raise ValueError(f"target_update_interval must be >= 1, got {target_update_interval}")
        s = self.spec
        self.actor = self.make_agent_net(s.n_actions)  # policy logits
        self.critic = StateObsCritic(s.state_dim + s.obs_dim + s.n_agents, s.n_actions, critic_hidden_dim, dueling)
        self.mixer = make_linear_mixer(s.n_agents, s.state_dim, mixer_hypernet_dim, bias=mixer_bias)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams

        def make(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
            if hp.optimizer == "adam":
                return torch.optim.Adam(params, lr=lr)
            return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-5)  # pymarl's optim_alpha / optim_eps

        critic = make(list(self.critic.parameters()) + list(self.mixer.parameters()), hp.critic_lr)
        return [critic, make(list(self.actor.parameters()), hp.actor_lr)]  # critic first: the main optimizer

    # ---- acting ----------------------------------------------------------------
    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.actor.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)

    # ---- training --------------------------------------------------------------
    @staticmethod
    def bootstrap_values(q_all: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-agent values [B, L+1, N] at every observation: Q_i(a_t) of the dataset action where
        step t is valid, else the expectation sum_a pi_i(a) Q_i(a) (no dataset action there)."""
        expected = (pi * q_all).sum(-1)
        taken = q_all[:, :-1].gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        head = torch.where(mask[..., None] > 0, taken, expected[:, :-1])
        return torch.cat([head, expected[:, -1:]], dim=1)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        avail = ensure_some_available(batch["avail_actions"])  # [B, L+1, N, A]
        logits, _ = self.actor.forward_seq(self.sequence_inputs(batch, include_last_obs=True))
        log_pi = masked_log_softmax(logits, avail)  # [B, L+1, N, A]
        critic_in = state_obs_id_inputs(state, batch["obs"])  # [B, L+1, N, S+O+N]

        # Critic: SARSA-style targets on dataset actions, re-weighted by rho (Eq. 19, 56).
        with torch.no_grad():
            next_q = self.bootstrap_values(self.target_critic(critic_in), log_pi.exp(), actions, mask)
            next_q_tot = self.target_mixer(next_q, state)  # [B, L+1]
            targets, rho = icq_critic_targets(
                batch["reward"], batch["terminated"], mask, next_q_tot, hp.critic_alpha, hp.gamma, hp.td_lambda
            )
        q_all = self.critic(critic_in[:, :-1])
        q_taken_tot = self.mixer(q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1), state[:, :-1])
        td_error = q_taken_tot - targets
        critic_loss = masked_mean(td_error.pow(2), mask)
        self.optimise(self.main_optimizer(), critic_loss, hp.grad_clip_norm)
        if self.trainer.global_step % hp.target_update_interval == 0:
            self.target_critic.load_state_dict(self.critic.state_dict())
            self.target_mixer.load_state_dict(self.mixer.state_dict())

        # Actor: advantage-weighted cloning on the updated critic (Eq. 18, 56); a secondary optimizer.
        with torch.no_grad():
            q_new = self.critic(critic_in[:, :-1])
            coef = self.mixer.k(state[:, :-1])
        actor_loss, weights, adv = icq_actor_loss(
            log_pi[:, :-1], q_new, actions, coef, mask, hp.actor_alpha, hp.actor_weighting
        )
        opt = self.raw_optimizer(1)
        opt.zero_grad()
        self.manual_backward(actor_loss)
        if hp.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), hp.grad_clip_norm)
        opt.step()

        with torch.no_grad():
            obs_valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
            step_mask = mask[..., None].expand_as(weights)
            self.log_train({
                "loss": critic_loss.detach(),
                "critic_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(),
                "q_taken_mean": masked_mean(q_taken_tot.detach(), mask),
                "target_mean": masked_mean(targets, mask),
                "td_error_abs": masked_mean(td_error.detach().abs(), mask),
                "critic_weight_max": (rho * obs_valid)[:, 1:].max(),
                "actor_weight_max": (weights * step_mask).max(),
                "advantage_mean": masked_mean(adv, step_mask),
                "pi_max_mean": masked_mean(log_pi[:, :-1].exp().amax(-1), step_mask),
            })
