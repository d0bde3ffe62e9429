"""InSPO: In-Sample Sequential Policy Optimization (Liu et al., AAAI 2025; papers/inspo.md).

Each agent keeps its own policy pi^i and local critic Q^i. Every update draws
an order of the agents and updates them one after the other; agent i_n sees the
already updated policies of i_1..i_{n-1} through an importance-resampled batch,
so its local Q-function estimates E_{pi_new^{i_{1:n-1}}, pi_old^{-i_{1:n}}}[Q(s, a)],
and its policy is trained in-sample (dataset actions only) towards the
closed-form solution of the maximum-entropy behaviour-regularised game.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import NEG_INF, ensure_some_available, masked_log_softmax, masked_mean, policy_actions
from lit_omarl.algos.losses.inspo import (
    alpha_temperature_loss,
    importance_resample,
    inspo_critic_loss,
    inspo_policy_loss,
    inspo_policy_weights,
    kl_categorical,
    normalised_weights,
    resampling_ratio,
    soft_state_value,
)
from lit_omarl.nets.agents import MLPAgent
from lit_omarl.nets.autoregressive import AutoregressiveBehaviour, SeparateAgents

UpdateOrder = Literal["random", "fixed", "semi_greedy"]


def gather_actions(x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """x[..., a] at the given actions: [..., A], [...] long -> [...]."""
    return x.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


@register_algorithm("inspo")
class InSPO(OfflineMARLModule):
    """InSPO (paper Algorithm 1 with the practical losses of Appendix B).

    Maximum-entropy behaviour-regularised Markov game (Eq. 9):

        max_pi E[ sum_t gamma^t ( r - alpha KL(pi(.|s) || mu(.|s)) + beta H(pi(.|s)) ) ]

    Algorithm 1 in iterations of ``iteration_steps`` updates: at the start of
    an iteration, pi_old (a snapshot of the policies) is taken and the agents
    are ordered (``update_order``: "random" = a random permutation as
    Algorithm 1, "fixed" = 0..N-1, "semi_greedy" = the agent with the largest
    expected improvement max_a A^i first, the rest random; Table 6). Every
    update of the iteration then runs, for n = 1..N and i = i_n:

    1. Importance resampling (Eq. 14, 15, 23):
       rho^i = ((pi_new^{i_{1:n-1}} pi_old^{-i_{1:n}})(a^{-i}|o) / mu^{-i}(a^{-i}|s, a^i))^(1/(N-1)),
       i.e. the current policies of the agents already updated in this
       iteration's order (including agent i_{n-1} a moment ago) and pi_old for
       the agents after i; mu^{-i} is an autoregressive behaviour model (Eq. 22).
       The batch is resampled with probabilities proportional to rho^i (D_rho).
    2. Local critic (Eq. 24) on D_rho:

           E[(Q^i(s, a^i) - y)^2] + alpha_CQL E[logsumexp_a Q^i(s, a) - Q^i(s, a^i)]
           y = r + gamma (1 - d) [ E_{pi^i}[Qbar^i(s', .)] - alpha KL(pi^i||mu^i)(s') + beta H(pi^i)(s') ]

    3. In-sample policy update (Eq. 13 / 20) on D_rho:

           - E[ exp((A^i(s, a^i) - beta log mu^i(a^i|s)) / (alpha + beta)) log pi^i(a^i|s) ],
           A^i(s, a^i) = Qbar^i(s, a^i) - E_{pi^i}[Qbar^i(s, .)]

       whose minimiser is pi^i ∝ mu^i exp((Q^i - beta log mu^i)/(alpha + beta)), the QRE policy of Eq. 12.

    With ``iteration_steps=1`` every update is one iteration (pi_old = the
    policies at the start of the update). Longer iterations let each agent
    approach its best response to pi_old / pi_new within the iteration, as the
    exact update of Algorithm 1 does.

    Qbar^i is a Polyak-averaged target of Q^i; mu^i is a behaviour-cloning
    policy (Eq. 21) and mu^{-i} the autoregressive model (Eq. 22), both
    pre-trained before the main loop. alpha is fixed or auto-tuned (Eq. 25,
    ``auto_alpha``) towards a per-agent target KL; beta decays exponentially,
    beta_k = beta * beta_decay^k (App. C.4). Switches: ``use_entropy=False`` is
    "InSPO w/o entropy" (beta = 0, Fig. 5a); ``sequential=False`` is "InSPO w/o
    SPO" (Fig. 5b): every agent's ratio uses pi_old for all the other agents,
    i.e. the agents are updated simultaneously. ``init_from_behaviour`` starts
    every policy at the behaviour model (pi_0 = mu).

    Networks (App. C.4): one policy network per agent (no parameter sharing,
    which sequential updates need), an MLP (3 layers, 256) for matrix games and
    Bridge or the GRU agent for SMAC-like tasks (``agent``); critics are 3-layer
    256 MLPs on the global state with one output per action.

    Deviations (the official code is not released):
        - alpha auto-tuning minimises alpha * (target - KL) summed over agents;
          Eq. 25 prints alpha * (KL - target), which would lower alpha when the
          KL is too large (see ``alpha_temperature_loss``).
        - The exponential policy weights are clipped at ``max_weight`` and the
          ratio rho at ``max_ratio`` (AlberDICE's code clips its ratio at 100).
        - Resampling draws, within each minibatch, as many samples as it has
          valid steps (``resampling="resample"``); "weights" uses the
          self-normalised ratios instead (no sampling noise).
        - One gradient step of critic and policy per agent and update (an
          iteration of Algorithm 1 spans ``iteration_steps`` updates); the
          behaviour models are pre-trained for ``behaviour_pretrain_steps``
          updates (MLP or GRU for mu^i as the agent, MLP on the state for mu^{-i}).
        - The critics bootstrap one step (no TD(lambda)); the KL and entropy of
          the other agents are left out of the target, as the paper does.
        - "semi_greedy" is our reading of Wang et al. (2023a): the agent with the
          largest mean max_a A^i(s, a) goes first, the others follow randomly.
        - Evaluation samples from the policies by default (like the BC baseline).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        actor_lr: Adam learning rate of the policies.
        critic_lr: Adam learning rate of the local critics.
        critic_hidden_dim: width of the critics' two hidden layers.
        tau: Polyak rate of the target critics.
        alpha: KL temperature (fixed) or its initial value (``auto_alpha``); the
            paper tunes it in {0.1, 0.5, 1, 3, 5}.
        auto_alpha: tune alpha towards ``target_kl`` (Eq. 25).
        target_kl: per-agent target KL D_KL-bar (paper: {0.08, 0.18, 0.3}, default 0.18).
        alpha_lr: Adam learning rate of log alpha.
        beta: initial entropy temperature (paper: {0, 5, 10}).
        beta_decay: beta_k = beta * beta_decay^k after k updates.
        use_entropy: False = "InSPO w/o entropy" (beta = 0).
        sequential: False = simultaneous update ("InSPO w/o SPO").
        update_order: "random", "fixed" or "semi_greedy".
        iteration_steps: updates per iteration k of Algorithm 1: pi_old (the
            policies the ratios of the not-yet-updated agents use) is a
            snapshot taken, and the agent order drawn, every this many updates.
            1 = every update is an iteration.
        init_from_behaviour: start every policy from the pre-trained behaviour
            model mu (pi_0 = mu, so KL(pi_0 || mu) = 0) instead of a random network.
        cql_alpha: alpha_CQL of the critic (paper default 0.1).
        max_weight: clip of the exponential policy weights (<= 0: none).
        max_ratio: clip of rho (<= 0: none).
        geometric_mean: rho with the (N-1)-th root (Eq. 23) or the plain product.
        resampling: "resample" (importance resampling, Eq. 15) or "weights".
        grad_clip_norm: gradient-norm clipping of every network (<= 0: none).
        behaviour_pretrain_steps: updates of behaviour pre-training (mu^i and mu^{-i}).
        behaviour_patience: stop pre-training after this many updates without a
            new minimum loss (0: run all steps).
        behaviour_lr: Adam learning rate of the behaviour models.
        behaviour_hidden_dim: width of the autoregressive behaviour MLP (None:
            the agent network's width, 256 for "mlp", 64 for "rnn").
        **kwargs: arguments of :class:`OfflineMARLModule` (gamma, agent,
            agent_hidden_dim, use_agent_id, use_last_action, eval settings, seed).
    """

    default_eval_deterministic = False

    def __init__(
        self,
        spec: dict | None = None,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        critic_hidden_dim: int = 256,
        tau: float = 0.005,
        alpha: float = 1.0,
        auto_alpha: bool = False,
        target_kl: float = 0.18,
        alpha_lr: float = 3e-4,
        beta: float = 0.0,
        beta_decay: float = 0.999,
        use_entropy: bool = True,
        sequential: bool = True,
        update_order: UpdateOrder = "random",
        iteration_steps: int = 1,
        init_from_behaviour: bool = False,
        cql_alpha: float = 0.1,
        max_weight: float = 100.0,
        max_ratio: float = 100.0,
        geometric_mean: bool = True,
        resampling: Literal["resample", "weights"] = "resample",
        grad_clip_norm: float = 10.0,
        behaviour_pretrain_steps: int = 1000,
        behaviour_patience: int = 20,
        behaviour_lr: float = 1e-3,
        behaviour_hidden_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if update_order not in ("random", "fixed", "semi_greedy"):
            raise ValueError(f"update_order must be 'random', 'fixed' or 'semi_greedy', got {update_order!r}")
        if resampling not in ("resample", "weights"):
            raise ValueError(f"resampling must be 'resample' or 'weights', got {resampling!r}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if iteration_steps < 1:
            raise ValueError(f"iteration_steps must be >= 1, got {iteration_steps}")
        s = self.spec
        self.actors = SeparateAgents([self.make_agent_net(s.n_actions) for _ in range(s.n_agents)])
        self.critics = torch.nn.ModuleList(MLPAgent(s.state_dim, s.n_actions, critic_hidden_dim) for _ in range(s.n_agents))
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        # pi_old of the current iteration (only needed when an iteration spans several updates)
        self.old_actors = copy.deepcopy(self.actors).requires_grad_(False) if iteration_steps > 1 else None
        self.register_buffer("iteration_order", torch.arange(s.n_agents))
        self.behaviour = self.make_agent_net(s.n_actions)  # mu^i (shared network, agent id input)
        ar_width = behaviour_hidden_dim or self.hparams.agent_hidden_dim or (256 if self.hparams.agent == "mlp" else 64)
        self.ar_behaviour = AutoregressiveBehaviour(s.state_dim, s.n_agents, s.n_actions, ar_width)
        log_alpha = torch.tensor(math.log(alpha))
        if auto_alpha:
            self.log_alpha = torch.nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)

    # ---- temperatures --------------------------------------------------------
    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def beta_at(self, step: int) -> float:
        """Entropy temperature after ``step`` updates (0 without entropy)."""
        hp = self.hparams
        return hp.beta * hp.beta_decay**step if hp.use_entropy else 0.0

    # ---- optimisers and behaviour models -------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        opts = [
            torch.optim.Adam(self.actors.parameters(), lr=hp.actor_lr),  # main: one global step per update
            torch.optim.Adam(self.critics.parameters(), lr=hp.critic_lr),
            torch.optim.Adam([*self.behaviour.parameters(), *self.ar_behaviour.parameters()], lr=hp.behaviour_lr),
        ]
        if hp.auto_alpha:
            opts.append(torch.optim.Adam([self.log_alpha], lr=hp.alpha_lr))
        return opts

    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        return self.hparams.behaviour_pretrain_steps, self.hparams.behaviour_patience

    def on_train_start(self) -> None:
        fresh = not bool(self.behaviour_trained)
        super().on_train_start()  # behaviour pre-training (skipped when resuming)
        if fresh and self.hparams.init_from_behaviour:
            for net in self.actors.nets:  # pi_0 = mu: same architecture and inputs
                net.load_state_dict(self.behaviour.state_dict())

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        """One step of BC (Eq. 21) and of the autoregressive model (Eq. 22)."""
        avail = ensure_some_available(batch["avail_actions"][:, :-1])
        log_mu_others = self.ar_behaviour.log_prob_others(batch["state"][:, :-1], batch["actions"], avail)
        loss = self.policy_nll(self.behaviour, batch) + masked_mean(-log_mu_others, batch["mask"].unsqueeze(-1))
        params = [*self.behaviour.parameters(), *self.ar_behaviour.parameters()]
        self._update(2, loss, params)
        return loss.detach()

    def _update(self, index: int, loss: torch.Tensor, params: Any, count: bool = False) -> None:
        self.step_optimizer(index, loss, params, self.hparams.grad_clip_norm, count=count)

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.actors.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)

    # ---- training ----------------------------------------------------------------
    def agent_order(self, scores: torch.Tensor) -> list[int]:
        """Update order of this step; ``scores`` [N] are the semi-greedy priorities."""
        n, mode = self.spec.n_agents, self.hparams.update_order
        if mode == "fixed":
            return list(range(n))
        perm = torch.randperm(n).tolist()
        if mode == "semi_greedy":
            first = int(scores.argmax())
            perm = [first] + [i for i in perm if i != first]
        return perm

    def _weights(self, rho: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.hparams.resampling == "weights":
            return normalised_weights(rho, mask)
        return importance_resample(rho, mask)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp, n = self.hparams, self.spec.n_agents
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        avail = ensure_some_available(batch["avail_actions"])  # [B, L+1, N, A]
        inputs = self.sequence_inputs(batch, include_last_obs=True)  # [B, L+1, N, in]
        alpha, beta = self.alpha, self.beta_at(self.trainer.global_step)
        cont = hp.gamma * (1.0 - batch["terminated"])

        with torch.no_grad():
            log_mu = masked_log_softmax(self.behaviour.forward_seq(inputs)[0], avail)  # [B, L+1, N, A]
            log_mu_taken = gather_actions(log_mu[:, :-1], actions)  # [B, L, N]
            log_mu_others = self.ar_behaviour.log_prob_others(state[:, :-1], actions, avail[:, :-1])
            log_pi = masked_log_softmax(self.actors.forward_seq(inputs)[0], avail)  # [B, L+1, N, A]
            log_pi_taken = gather_actions(log_pi[:, :-1], actions)  # current; refreshed after each agent's update
            q_bar = torch.stack([c.net(state) for c in self.target_critics], dim=2)  # [B, L+1, N, A]
            v_pi = (log_pi.exp() * avail * q_bar).sum(-1)  # E_{pi^i}[Qbar^i(s, .)]
            best = q_bar.masked_fill(~avail, NEG_INF).max(-1).values
            scores = ((best - v_pi)[:, :-1] * mask.unsqueeze(-1)).sum((0, 1))
            new_iteration = self.trainer.global_step % hp.iteration_steps == 0
            if new_iteration:  # Algorithm 1, lines 3-4: pi_old and a new agent order
                if self.old_actors is not None:
                    self.old_actors.load_state_dict(self.actors.state_dict())
                self.iteration_order.copy_(torch.tensor(self.agent_order(scores)))
            if self.old_actors is None:
                log_pi_old_taken = log_pi_taken.clone()
            else:
                old = masked_log_softmax(self.old_actors.forward_seq(inputs[:, :-1])[0], avail[:, :-1])
                log_pi_old_taken = gather_actions(old, actions)

        order = self.iteration_order.tolist()
        logs: dict[str, list[torch.Tensor]] = {k: [] for k in ("critic_loss", "td_loss", "cql", "policy_loss", "rho_mean", "ess", "policy_weight")}
        for pos, i in enumerate(order):
            a_i, av_i = actions[..., i], avail[..., i, :]
            with torch.no_grad():
                # pi_new for the agents updated before i in this iteration's order, pi_old for the others
                done = torch.zeros(n, dtype=torch.bool, device=mask.device)
                if hp.sequential:
                    done[order[:pos]] = True
                log_pi_mixed = torch.where(done, log_pi_taken, log_pi_old_taken)
                rho = resampling_ratio(log_pi_mixed, log_mu_others, i, hp.geometric_mean, hp.max_ratio)
                w = self._weights(rho, mask)
                v_next = soft_state_value(q_bar[:, 1:, i], log_pi[:, 1:, i], log_mu[:, 1:, i], av_i[:, 1:], alpha, beta)
                y = batch["reward"] + cont * v_next

            # local critic Q^i on D_rho (Eq. 24)
            q_i = self.critics[i].net(state[:, :-1])
            c_loss, td, cql = inspo_critic_loss(q_i, a_i, y, av_i[:, :-1], w, hp.cql_alpha)
            self._update(1, c_loss, list(self.critics[i].parameters()))

            # in-sample policy update on D_rho (Eq. 20)
            with torch.no_grad():
                adv = gather_actions(q_bar[:, :-1, i], a_i) - v_pi[:, :-1, i]
                pw = inspo_policy_weights(adv, log_mu_taken[..., i], alpha, beta, hp.max_weight)
            logits_i, _ = self.actors.agent_seq(i, inputs[:, :-1])
            logp_i = gather_actions(masked_log_softmax(logits_i, av_i[:, :-1]), a_i)
            p_loss = inspo_policy_loss(logp_i, pw, w)
            self._update(0, p_loss, list(self.actors.nets[i].parameters()), count=pos == n - 1)

            with torch.no_grad():
                if hp.sequential and pos < n - 1:  # later agents of this update see pi_new^i
                    new_logits, _ = self.actors.agent_seq(i, inputs[:, :-1])
                    log_pi_taken[..., i] = gather_actions(masked_log_softmax(new_logits, av_i[:, :-1]), a_i)
                for p, tp in zip(self.critics[i].parameters(), self.target_critics[i].parameters()):
                    tp.lerp_(p, hp.tau)
                for key, value in (("critic_loss", c_loss), ("td_loss", td), ("cql", cql), ("policy_loss", p_loss),
                                   ("rho_mean", masked_mean(rho, mask)), ("ess", 1.0 / w.pow(2).sum()),
                                   ("policy_weight", (w * pw).sum())):
                    logs[key].append(value.detach())

        with torch.no_grad():
            kl = kl_categorical(log_pi[:, :-1], log_mu[:, :-1], avail[:, :-1])  # [B, L, N]
        if hp.auto_alpha:
            self._update(3, alpha_temperature_loss(self.log_alpha, kl, mask, hp.target_kl), [self.log_alpha])
        metrics = {k: torch.stack(v).mean() for k, v in logs.items()}
        metrics.update(alpha=alpha, beta=beta, kl_mean=masked_mean(kl.mean(-1), mask))
        self.log_train(metrics)
