"""AlberDICE: alternating best response with stationary DIstribution Correction Estimation
(Matsunaga et al., NeurIPS 2023; baseline of InSPO Tables 1-3).

The agents take turns: agent i optimises its policy while the others are
fixed, solving the single-agent problem "maximise return subject to a KL
constraint between the induced state-action distribution and the data's" in
its DICE dual form. Alternating these best responses converges to a Nash
policy of the regularised game and never picks out-of-distribution joint
actions, because agent i's data is reweighted by how likely the other agents'
dataset actions are under their current policies.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.inspo import gather_actions
from lit_omarl.algos.losses import ensure_some_available, masked_log_softmax, masked_mean, policy_actions
from lit_omarl.algos.losses.alberdice import (
    absorbing_mass,
    absorbing_value,
    dice_nu_loss,
    dice_residual,
    e_network_loss,
    i_projection_loss,
)
from lit_omarl.algos.losses.inspo import importance_resample, normalised_weights, resampling_ratio
from lit_omarl.nets.agents import MLPAgent
from lit_omarl.nets.autoregressive import AutoregressiveBehaviour, SeparateAgents


@register_algorithm("alberdice")
class AlberDICE(OfflineMARLModule):
    """AlberDICE with the KL divergence (the official code's setting).

    Agent i's problem with pi^{-i} fixed (paper, Sec. 4): maximise
    E_{d^pi}[r] - alpha KL(d^{pi^i, pi^{-i}}(s, a^i, a^{-i}) || d^D(s, a^i, a^{-i})),
    a single-agent OptiDICE problem whose reward carries the other agents'
    log-ratio; its dual over nu_i(s) is solved on data resampled towards
    pi^{-i}, and the optimal correction w_i = softmax(e_i / alpha) is turned
    into agent i's policy by an I-projection (out-of-sample: it evaluates
    e_i at every action, which InSPO points out). Alternating these best
    responses gives a Nash policy of the regularised game.

    For each update and each agent i in turn (order 0..N-1, or random):

    1. Ratio of the others (product, clipped at ``max_ratio``):
       rho^i = prod_{j != i} pi^j(a^j|o^j) / mu^{-i}(a^{-i}|s, a^i), with the
       autoregressive behaviour model mu^{-i}; the batch is importance-resampled
       with probabilities proportional to rho^i (D_rho).
    2. Others' KL: kl^i(s, a^i) = E_{a~^{-i} ~ pi^{-i}} [log pi^{-i}(a~^{-i}) - log mu^{-i}(a~^{-i}|s, a^i)]
       from ``n_kl_samples`` samples; residual
       e_i = r - alpha kl^i + gamma nu_i(s') - nu_i(s) (s' = the absorbing state after a terminal step).
    3. nu_i minimises the dual (1 - gamma) E[nu_i(s)] + alpha log E_D'[rho^i exp(e_i / alpha)]
       (D' = the data plus absorbing self-loops)
       (+ a gradient penalty on interpolated states, ``nu_grad_penalty``).
    4. e-network e_i(s, .) regresses e_i on D_rho with a CQL term
       ``cql_coeff`` (logsumexp_a e - E_{mu^i} e).
    5. Policy extraction (I-projection): pi^i minimises
       E_{D_rho}[ -sum_a pi^i(a|o) e_i(s, a) + alpha KL(pi^i || mu^i) ].

    alpha decays geometrically from ``alpha_start`` to ``alpha_end`` over
    ``alpha_decay_steps`` updates (default: the trainer's max_steps), as the code's
    alpha_start 5 -> alpha_end 0.001 over t_max. mu^i is a behaviour-cloning
    policy and mu^{-i} the autoregressive model, both pre-trained.

    What we implement from the paper and its code (dematsunaga/alberdice), and
    the deviations:
        - The official learner; networks: one policy per agent (MLP 3 x
          ``agent_hidden_dim``, or the GRU agent, which the code does not
          support), nu_i and e_i as 3-layer MLPs on the state (e_i with one
          output per action instead of a (state, one-hot action) input).
        - The behaviour models are pre-trained for ``behaviour_pretrain_steps``
          updates instead of being trained alongside; mu^{-i} is one shared
          MLP over (i, j) pairs (see :mod:`lit_omarl.nets.autoregressive`).
        - Absorbing states: the code pads every terminated episode with
          absorbing states up to the episode limit (an extra state feature).
          We bootstrap terminal steps from an absorbing value nu_abs^i whose
          self-loops make up a share p of the data (``absorbing_steps`` per
          terminal step) and take the minimiser over nu_abs in closed form
          (``absorbing_value``); without them the normalised dual is unbounded
          for terminating episodes. The initial-state term uses every dataset
          state, as the code does.
        - The others' KL evaluates the autoregressive model at the sampled
          joint action (the code reads the probabilities of the sampled actions
          from the model conditioned on the dataset actions).
        - Resampling draws as many samples as the batch has valid steps.
        - Evaluation samples from the policies (the code's Bridge setting).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        lr: Adam learning rate of the policies (code: 1e-4).
        nu_lr: Adam learning rate of nu and e networks (code: 1e-4).
        critic_hidden_dim: width of the nu and e networks (code: 128).
        alpha_start: initial KL temperature (code: 5).
        alpha_end: final KL temperature (code: 0.001).
        alpha_decay_steps: updates over which alpha decays (None: trainer.max_steps).
        cql_coeff: CQL weight of the e-network (code: 0.1).
        nu_grad_penalty: gradient-penalty weight of nu (code: 0.1; 0 = none).
        max_ratio: clip of rho (code: 100; <= 0 = none).
        n_kl_samples: samples of the others' actions for their KL (code: 16).
        absorbing_steps: absorbing self-loop transitions counted per terminal
            step (None: the episode limit; the code pads each terminated
            episode with absorbing steps up to the limit).
        update_order: "fixed" (0..N-1, the code) or "random".
        resampling: "resample" (the code) or "weights" (self-normalised ratios).
        grad_clip_norm: gradient-norm clipping (code: none, 0).
        behaviour_pretrain_steps: updates of behaviour pre-training (mu^i and mu^{-i}).
        behaviour_patience: early stop of pre-training (0: run all steps).
        behaviour_lr: Adam learning rate of the behaviour models.
        behaviour_hidden_dim: width of the autoregressive model (None: the agent's width).
        **kwargs: arguments of :class:`OfflineMARLModule`.
    """

    default_eval_deterministic = False

    def __init__(
        self,
        spec: dict | None = None,
        lr: float = 1e-4,
        nu_lr: float = 1e-4,
        critic_hidden_dim: int = 128,
        alpha_start: float = 5.0,
        alpha_end: float = 0.001,
        alpha_decay_steps: int | None = None,
        cql_coeff: float = 0.1,
        nu_grad_penalty: float = 0.1,
        max_ratio: float = 100.0,
        n_kl_samples: int = 16,
        absorbing_steps: float | None = None,
        update_order: Literal["fixed", "random"] = "fixed",
        resampling: Literal["resample", "weights"] = "resample",
        grad_clip_norm: float = 0.0,
        behaviour_pretrain_steps: int = 1000,
        behaviour_patience: int = 20,
        behaviour_lr: float = 1e-3,
        behaviour_hidden_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if update_order not in ("fixed", "random"):
            raise ValueError(f"update_order must be 'fixed' or 'random', got {update_order!r}")
        if resampling not in ("resample", "weights"):
            raise ValueError(f"resampling must be 'resample' or 'weights', got {resampling!r}")
        if alpha_start <= 0 or alpha_end <= 0:
            raise ValueError(f"alpha_start and alpha_end must be > 0, got {alpha_start}, {alpha_end}")
        s = self.spec
        self.actors = SeparateAgents([self.make_agent_net(s.n_actions) for _ in range(s.n_agents)])
        self.nu_nets = torch.nn.ModuleList(MLPAgent(s.state_dim, 1, critic_hidden_dim) for _ in range(s.n_agents))
        self.e_nets = torch.nn.ModuleList(MLPAgent(s.state_dim, s.n_actions, critic_hidden_dim) for _ in range(s.n_agents))
        self.behaviour = self.make_agent_net(s.n_actions)
        ar_width = behaviour_hidden_dim or self.hparams.agent_hidden_dim or (256 if self.hparams.agent == "mlp" else 64)
        self.ar_behaviour = AutoregressiveBehaviour(s.state_dim, s.n_agents, s.n_actions, ar_width)

    def alpha_at(self, step: int) -> float:
        hp = self.hparams
        total = hp.alpha_decay_steps or (self.trainer.max_steps if self._trainer is not None else 0)
        frac = min(step / total, 1.0) if total and total > 0 else 0.0
        return hp.alpha_start * (hp.alpha_end / hp.alpha_start) ** frac

    # ---- optimisers, behaviour models, acting -----------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        return [
            torch.optim.Adam(self.actors.parameters(), lr=hp.lr),  # main: one global step per update
            torch.optim.Adam([*self.nu_nets.parameters()], lr=hp.nu_lr),
            torch.optim.Adam([*self.e_nets.parameters()], lr=hp.nu_lr),
            torch.optim.Adam([*self.behaviour.parameters(), *self.ar_behaviour.parameters()], lr=hp.behaviour_lr),
        ]

    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        return self.hparams.behaviour_pretrain_steps, self.hparams.behaviour_patience

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        avail = ensure_some_available(batch["avail_actions"][:, :-1])
        log_mu_others = self.ar_behaviour.log_prob_others(batch["state"][:, :-1], batch["actions"], avail)
        loss = self.policy_nll(self.behaviour, batch) + masked_mean(-log_mu_others, batch["mask"].unsqueeze(-1))
        self._update(3, loss, [*self.behaviour.parameters(), *self.ar_behaviour.parameters()])
        return loss.detach()

    def _update(self, index: int, loss: torch.Tensor, params: Any, count: bool = False) -> None:
        self.step_optimizer(index, loss, params, self.hparams.grad_clip_norm, count=count)

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.actors.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)

    # ---- training ------------------------------------------------------------------
    def _others_kl(self, i: int, log_pi: torch.Tensor, state: torch.Tensor, actions: torch.Tensor,
                   avail: torch.Tensor) -> torch.Tensor:
        """E_{a~ ~ pi^{-i}}[log pi^{-i}(a~) - log mu^{-i}(a~ | s, a^i)] [B, L] by sampling (no gradient)."""
        k, n = self.hparams.n_kl_samples, self.spec.n_agents
        if n == 1 or k <= 0:
            return torch.zeros_like(actions[..., 0], dtype=log_pi.dtype)
        samples = torch.distributions.Categorical(logits=log_pi).sample((k,))  # [K, B, L, N]
        samples[..., i] = actions[..., i]  # agent i keeps its dataset action
        logp = gather_actions(log_pi.expand(k, *log_pi.shape), samples)  # [K, B, L, N]
        log_pi_others = logp.sum(-1) - logp[..., i]
        state_k = state.expand(k, *state.shape)
        log_mu_others = self.ar_behaviour.log_prob_others(state_k, samples, avail.expand(k, *avail.shape), agent=i)
        return (log_pi_others - log_mu_others).mean(0)

    def _nu_gradient_penalty(self, nu_net: torch.nn.Module, states: torch.Tensor) -> torch.Tensor:
        """E ||grad_s nu(s)||^2 at random interpolations of pairs of dataset states."""
        perm = torch.randperm(states.shape[0], device=states.device)
        eps = torch.rand(states.shape[0], 1, device=states.device)
        inter = (eps * states + (1 - eps) * states[perm]).requires_grad_(True)
        (grad,) = torch.autograd.grad(nu_net.net(inter).sum(), inter, create_graph=True)
        return grad.pow(2).sum(-1).mean()

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp, n = self.hparams, self.spec.n_agents
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        avail = ensure_some_available(batch["avail_actions"])
        inputs = self.sequence_inputs(batch, include_last_obs=False)  # [B, L, N, in]
        alpha = self.alpha_at(self.trainer.global_step)
        valid_states = state[:, :-1][mask > 0]  # [M, S]
        terminal = batch["terminated"] * mask
        steps = self.spec.episode_limit if hp.absorbing_steps is None else hp.absorbing_steps
        p_abs = absorbing_mass(batch["terminated"], mask, float(steps))

        with torch.no_grad():
            log_mu = masked_log_softmax(self.behaviour.forward_seq(inputs)[0], avail[:, :-1])  # [B, L, N, A]
            log_mu_others = self.ar_behaviour.log_prob_others(state[:, :-1], actions, avail[:, :-1])  # [B, L, N]
            log_pi = masked_log_softmax(self.actors.forward_seq(inputs)[0], avail[:, :-1])

        order = list(range(n)) if hp.update_order == "fixed" else torch.randperm(n).tolist()
        logs: dict[str, list[torch.Tensor]] = {k: [] for k in ("nu_loss", "e_loss", "e_cql", "policy_loss", "others_kl", "ess", "e_taken")}
        for pos, i in enumerate(order):
            a_i, av_i = actions[..., i], avail[:, :-1, i]
            with torch.no_grad():
                rho = resampling_ratio(gather_actions(log_pi, actions), log_mu_others, i, geometric=False, max_ratio=hp.max_ratio)
                w = normalised_weights(rho, mask) if hp.resampling == "weights" else importance_resample(rho, mask)
                kl = self._others_kl(i, log_pi, state[:, :-1], actions, avail[:, :-1])

            # nu_i: the DICE dual, with the absorbing state's value in closed form
            nu_all = self.nu_nets[i].net(state).squeeze(-1)  # [B, L+1]
            nu_abs = absorbing_value(batch["reward"] - alpha * kl - nu_all[:, :-1].detach(), terminal, w, p_abs, alpha, hp.gamma)
            e = dice_residual(batch["reward"], batch["terminated"], nu_all[:, :-1], nu_all[:, 1:], kl, alpha, hp.gamma, nu_abs)
            nu_loss = dice_nu_loss(e, w, masked_mean(rho, mask), nu_all[:, :-1][mask > 0], alpha, hp.gamma, p_abs, nu_abs)
            if hp.nu_grad_penalty > 0:
                nu_loss = nu_loss + hp.nu_grad_penalty * self._nu_gradient_penalty(self.nu_nets[i], valid_states)
            self._update(1, nu_loss, list(self.nu_nets[i].parameters()))

            # e_i: regression of the residual + CQL towards mu^i
            e_all = self.e_nets[i].net(state[:, :-1])
            e_loss, e_reg, e_cql = e_network_loss(e_all, a_i, e.detach(), av_i, log_mu[..., i, :].exp() * av_i, w, hp.cql_coeff)
            self._update(2, e_loss, list(self.e_nets[i].parameters()))

            # policy extraction (I-projection)
            logits_i, _ = self.actors.agent_seq(i, inputs)
            p_loss = i_projection_loss(masked_log_softmax(logits_i, av_i), e_all.detach(), log_mu[..., i, :], av_i, w, alpha)
            self._update(0, p_loss, list(self.actors.nets[i].parameters()), count=pos == n - 1)

            with torch.no_grad():
                if pos < n - 1:  # the next agent best-responds to the updated policy
                    log_pi[..., i, :] = masked_log_softmax(self.actors.agent_seq(i, inputs)[0], av_i)
                for key, value in (("nu_loss", nu_loss), ("e_loss", e_reg), ("e_cql", e_cql), ("policy_loss", p_loss),
                                   ("others_kl", masked_mean(kl, mask)), ("ess", 1.0 / w.pow(2).sum()),
                                   ("e_taken", (w * gather_actions(e_all, a_i)).sum())):
                    logs[key].append(value.detach())
        metrics = {k: torch.stack(v).mean() for k, v in logs.items()}
        metrics["alpha"] = alpha
        self.log_train(metrics)
