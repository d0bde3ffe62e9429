"""OMAC: offline MARL with coupled value factorization (Wang & Zhan, AAMAS 2023; omac.md)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import NEG_INF, ensure_some_available, masked_mean
from lit_omarl.algos.losses.advantage import (
    AWR_MAX_WEIGHT,
    awr_weights,
    policy_actions,
    soft_update,
    squared_td_loss,
    taken_log_probs,
    value_targets,
    weighted_nll,
)
from lit_omarl.algos.losses.omac import coupled_q_tot, coupled_v_tot, local_expectile_loss
from lit_omarl.nets.coupled import CoupledMixer, WeightedSumMixer


@register_algorithm("omac")
class OMAC(OfflineMARLModule):
    """OMAC (omac.md Sec. 4, Algorithm 1), discrete actions.

    Coupled value factorization (Eq. 2), with w^v, w^q >= 0:

        V_tot(o)    = sum_i w^v_i(o) V_i(o_i) + V_share(o)
        Q_tot(o, a) = V_tot(o) + sum_i w^q_i(o, a) (Q_i(o_i, a_i) - V_i(o_i))

    and coupled credit assignment (Eq. 3): w^v = |f_v2(h_v(o))|,
    w^q = |f_q2(concat(h_v(o), h_q(o, a)))| share the encoder h_v
    (:class:`~lit_omarl.nets.coupled.CoupledMixer`). Per training step:

        L_V  = E_D[ L_2^tau(Qbar_i(o_i, a_i) - V_i(o_i)) ],  L_2^tau(u) = |tau - 1(u < 0)| u^2      (Eq. 5)
        L_Q  = E_D[ (r + gamma (1 - d) V_tot(o') - Q_tot(o, a))^2 ]                                (Eq. 6)
        L_pi = -E_D[ min(exp(beta (Qbar_i(o_i, a_i) - V_i(o_i))), 100) log pi_i(a_i | o_i) ]       (Eq. 8)

    L_V trains the local V_i only (an upper expectile of the target local Q:
    an implicit in-sample max, Eq. 4). L_Q trains Q_i, w^v, w^q and V_share;
    the V_i inside Q_tot and V_tot(o') are detached. Qbar_i is a soft-updated
    target of Q_i (rate ``tau``, Algorithm 1 line 8).

    Ablations of omac.md Sec. 6.4:
        - ``coupled_value_factorization=False`` ("w/o CVF"): the linear
          decomposition of ICQ / OMAR, Q_tot = sum_i w_i(s) Q_i + b(s), with
          the same weights for V_tot(s') = sum_i w_i(s') V_i + b(s').
        - ``coupled_credit_assignment=False`` ("CVF w/o CCA"): w^v and w^q
          are two independent networks.
        - ``cvf_max_q=True`` ("CVF-maxQ"): no V network; V_i(o_i) is replaced
          by max_{a available} Q_i(o_i, a) (online, detached, inside Q_tot;
          target network for V_i(o'_i) and the policy's advantage).

    Evaluation is greedy (argmax of pi_i over available actions) by default;
    ``eval_deterministic=False`` samples. On multi-modal data such as Bridge's
    optimal episodes (either agent may yield) the per-agent argmax can pick
    incompatible modes and deadlock, where sampling would not.

    Deviations (there is no public OMAC code):
        - The policy is trained at every step alongside the values instead of
          after all value iterations (Algorithm 1 lines 10-12). The value
          updates never use the policy, so the fixed point is the same.
        - The advantage of Eq. 8 uses the target Qbar_i (as IQL), and the
          weights are clipped at ``max_weight`` (100, as IQL's code).
        - V_tot(o') of the TD target uses a soft-updated target copy of the
          mixer (V_share, w^v), for stability; the paper names a target only for Q_i.
        - The weight networks see the global state s instead of the joint observation o.
        - Q_i outputs all actions' values (pymarl style); recurrent agents over
          whole episodes are available (``agent="rnn"``); the paper uses
          3-layer MLPs of 256 units on observations.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        expectile: tau of Eq. 5 (0.7).
        temperature: beta of Eq. 8 (1.0; 0.5 on high-quality datasets).
        lr: Adam learning rate of the value networks (Q_i, V_i, mixer; 5e-4).
        policy_lr: Adam learning rate of the policy (5e-4).
        tau: soft target update rate (0.005).
        grad_clip_norm: gradient-norm clipping (<= 0 disables; the paper does not clip).
        mixer_hidden_dim: hidden units of the credit-assignment networks (64).
        max_weight: upper clip of the advantage weights.
        coupled_value_factorization: Eq. 2 (True) or linear decomposition ("w/o CVF").
        coupled_credit_assignment: share h_v between w^v and w^q (True) or not ("w/o CCA").
        cvf_max_q: replace V_i by max_a Q_i ("CVF-maxQ").
        **kwargs: arguments of :class:`OfflineMARLModule` (gamma, agent,
            agent_hidden_dim, use_agent_id, use_last_action, eval settings, seed).
    """

    def __init__(
        self,
        spec: dict | None = None,
        expectile: float = 0.7,
        temperature: float = 1.0,
        lr: float = 5e-4,
        policy_lr: float = 5e-4,
        tau: float = 0.005,
        grad_clip_norm: float = 0.0,
        mixer_hidden_dim: int = 64,
        max_weight: float = AWR_MAX_WEIGHT,
        coupled_value_factorization: bool = True,
        coupled_credit_assignment: bool = True,
        cvf_max_q: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {expectile}")
        s = self.spec
        self.q_net = self.make_agent_net(s.n_actions)
        self.target_q = copy.deepcopy(self.q_net).requires_grad_(False)
        self.v_net = None if cvf_max_q else self.make_agent_net(1)
        self.policy = self.make_agent_net(s.n_actions)
        if coupled_value_factorization:
            self.mixer = CoupledMixer(s.n_agents, s.state_dim, s.n_actions, mixer_hidden_dim, coupled_credit_assignment)
        else:
            self.mixer = WeightedSumMixer(s.n_agents, s.state_dim, mixer_hidden_dim)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        value_params = list(self.q_net.parameters()) + list(self.mixer.parameters())
        opts = [torch.optim.Adam(value_params, lr=hp.lr), torch.optim.Adam(self.policy.parameters(), lr=hp.policy_lr)]
        if self.v_net is not None:
            opts.append(torch.optim.Adam(self.v_net.parameters(), lr=hp.lr))
        return opts

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.policy.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)

    def _mix(self, mixer: torch.nn.Module, state: torch.Tensor, v_local: torch.Tensor,
             actions: torch.Tensor | None = None, q_taken: torch.Tensor | None = None) -> torch.Tensor:
        """V_tot(state) (actions None) or Q_tot(state, actions) of the chosen decomposition."""
        params = mixer.hyper(state)
        if isinstance(mixer, WeightedSumMixer):  # w/o CVF: sum_i w_i(s) X_i + b(s)
            return mixer.mix(v_local if q_taken is None else q_taken, params)
        v_tot = coupled_v_tot(params.w_v, v_local, params.v_share)
        if actions is None:
            return v_tot
        return coupled_q_tot(v_tot, mixer.q_weights(state, actions, params), q_taken, v_local)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        avail_all = ensure_some_available(batch["avail_actions"])  # [B, L+1, N, A]
        inputs = self.sequence_inputs(batch, include_last_obs=True)
        act = actions.unsqueeze(-1)

        q_all, _ = self.q_net.forward_seq(inputs)  # [B, L+1, N, A]
        with torch.no_grad():
            q_bar_all, _ = self.target_q.forward_seq(inputs)
            q_bar = q_bar_all[:, :-1].gather(-1, act).squeeze(-1)  # [B, L, N]
        metrics: dict[str, torch.Tensor] = {}

        # Local state values: expectile regression (Eq. 5), or max_a Q_i for CVF-maxQ.
        if self.v_net is None:
            v_cur = q_all[:, :-1].detach().masked_fill(~avail_all[:, :-1], NEG_INF).max(-1).values
            v_next = q_bar_all[:, 1:].masked_fill(~avail_all[:, 1:], NEG_INF).max(-1).values
            v_pi = q_bar_all[:, :-1].masked_fill(~avail_all[:, :-1], NEG_INF).max(-1).values
        else:
            v_all = self.v_net.forward_seq(inputs)[0][..., 0]  # [B, L+1, N]
            v_loss = local_expectile_loss(q_bar, v_all[:, :-1], mask, hp.expectile)
            v_all = v_all.detach()
            v_cur, v_next, v_pi = v_all[:, :-1], v_all[:, 1:], v_all[:, :-1]
            metrics["v_loss"] = v_loss.detach()

        # Global TD on the factorised Q_tot (Eq. 6).
        q_taken = q_all[:, :-1].gather(-1, act).squeeze(-1)
        q_tot = self._mix(self.mixer, state[:, :-1], v_cur, actions, q_taken)
        with torch.no_grad():
            v_tot_next = self._mix(self.target_mixer, state[:, 1:], v_next)
            targets = value_targets(batch["reward"], batch["terminated"], v_tot_next, hp.gamma)
        q_loss = squared_td_loss(q_tot, targets, mask)

        # Local advantage-weighted regression (Eq. 8).
        weights = awr_weights(q_bar - v_pi, hp.temperature, hp.max_weight)
        logits, _ = self.policy.forward_seq(inputs[:, :-1])
        policy_loss = weighted_nll(taken_log_probs(logits, actions, avail_all[:, :-1]), weights, mask)

        if self.v_net is not None:
            self.step_optimizer(2, v_loss, self.v_net.parameters(), hp.grad_clip_norm)
        self.optimise(self.main_optimizer(), q_loss, hp.grad_clip_norm)
        self.step_optimizer(1, policy_loss, self.policy.parameters(), hp.grad_clip_norm)
        soft_update(self.target_q, self.q_net, hp.tau)
        soft_update(self.target_mixer, self.mixer, hp.tau)

        with torch.no_grad():
            m = mask.unsqueeze(-1)
            metrics.update({
                "loss": q_loss.detach() + policy_loss.detach() + metrics.get("v_loss", 0.0),
                "q_loss": q_loss.detach(),
                "policy_loss": policy_loss.detach(),
                "q_tot_mean": masked_mean(q_tot.detach(), mask),
                "target_mean": masked_mean(targets, mask),
                "v_local_mean": masked_mean(v_cur, m),
                "adv_mean": masked_mean(q_bar - v_pi, m),
                "weight_mean": masked_mean(weights, m),
            })
        self.log_train(metrics)
