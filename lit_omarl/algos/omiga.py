"""OMIGA: offline MARL with implicit global-to-local value regularisation (Wang et al., NeurIPS 2023).

A baseline column of InSPO's Tables 1-4. Value decomposition of both Q and V
with the same state-dependent non-negative linear weights, in-sample learning
of the local values and weighted behaviour cloning of the local policies.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import ensure_some_available, masked_mean
from lit_omarl.algos.losses.advantage import (
    policy_actions,
    soft_update,
    squared_td_loss,
    taken_log_probs,
    value_targets,
    weighted_nll,
)
from lit_omarl.algos.losses.omiga import omiga_policy_weights, omiga_value_loss, omiga_z
from lit_omarl.nets.coupled import WeightedSumMixer


@register_algorithm("omiga")
class OMIGA(OfflineMARLModule):
    """OMIGA, discrete actions (the official SMAC implementation's losses).

    Global problem: behaviour-regularised MARL, max_pi E[sum_t gamma^t (r_t - alpha f(pi(a|s) / mu(a|s)))]
    with f(x) = log x (reverse KL to the behaviour policy mu), whose optimum is
    pi*(a|s) proportional to mu(a|s) exp((Q_tot(s, a) - V_tot(s)) / alpha). With

        Q_tot(s, a) = sum_i w_i(s) Q_i(o_i, a_i) + b(s)
        V_tot(s)    = sum_i w_i(s) V_i(o_i)      + b(s)          (same w_i >= 0 and b)

    the exponent splits into sum_i w_i(s) (Q_i - V_i) / alpha, so the global
    regulariser is equivalent to N implicit local ones (Wang et al., Sec. 4):

        L_Q   = E_D[(Q_tot(s, a) - r - gamma (1 - d) Vbar_tot(s'))^2]                       (global TD)
        z_i   = clip(wbar_i(s) (Qbar_i(o_i, a_i) - V_i(o_i)) / alpha, -10, 10)
        L_V   = E_D[sum_i exp(z_i) + wbar_i(s) V_i(o_i) / alpha]                           (local values)
        L_pi  = -E_D[sum_i exp(z_i) log pi_i(a_i | o_i)]                                    (local weighted BC)

    Bars are soft-updated target networks (Q_i, V_i and the mixer; rate tau).
    The minimiser of L_V is V_i = (alpha / w_i) log E_mu[exp(w_i Qbar_i / alpha)]:
    a soft maximum over dataset actions only (in-sample, no OOD action is
    ever evaluated). L_V is computed as exp(-M) times the above with
    M = max(max z, -1) over the batch (the code's overflow guard; same minimiser).
    Update order per step: policy, Q + mixer (the main optimizer), V, then
    the three soft target updates.

    Evaluation samples the stochastic policy by default: InSPO's OMIGA numbers
    on XOR (0.00 / 0.21 / 0.05) are expected returns of the sampled policies
    (a deterministic policy would score 1, 0 or -2 on those games).

    Deviations from the official code (ZhengYinan-AIR/OMIGA):
        - The official code drops the constant "-1" of the f = log x
          regulariser's exponent (exp(z - 1)); we follow the code.
        - Termination comes from the dataset's ``terminated`` flag; the SMAC
          code detects it as state == next state.
        - The mixer sees the global state (the code: per-agent states
          concatenated); one hidden layer of ``mixer_hidden_dim`` units as the code.
        - Recurrent (GRU) agents over whole episodes are available through
          ``agent="rnn"``; the code's discrete version uses MLPs on single transitions.
        - The Q network outputs all actions' Q_i (the code's discrete variant);
          its MaMuJoCo variant feeds the action as input.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        alpha: regularisation temperature (code: 10; InSPO tunes it in
            {0.1, 0.5, 1, 3, 5, 7, 10}).
        lr: Adam learning rate of the Q, V, mixer and policy networks (5e-4).
        tau: soft target update rate (0.005).
        grad_clip_norm: gradient-norm clipping of every network (code: 1.0; <= 0 disables).
        mixer_hidden_dim: hidden units of the weight network w(s), b(s) (64).
        z_clip: |z_i| clip of the exponent (10).
        **kwargs: arguments of :class:`OfflineMARLModule` (gamma, agent,
            agent_hidden_dim, use_agent_id, use_last_action, eval settings, seed).
    """

    default_eval_deterministic = False

    def __init__(
        self,
        spec: dict | None = None,
        alpha: float = 10.0,
        lr: float = 5e-4,
        tau: float = 0.005,
        grad_clip_norm: float = 1.0,
        mixer_hidden_dim: int = 64,
        z_clip: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        s = self.spec
        self.q_net = self.make_agent_net(s.n_actions)
        self.v_net = self.make_agent_net(1)
        self.policy = self.make_agent_net(s.n_actions)
        self.mixer = WeightedSumMixer(s.n_agents, s.state_dim, mixer_hidden_dim)
        self.target_q = copy.deepcopy(self.q_net).requires_grad_(False)
        self.target_v = copy.deepcopy(self.v_net).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr = self.hparams.lr
        q_params = list(self.q_net.parameters()) + list(self.mixer.parameters())
        return [
            torch.optim.Adam(q_params, lr=lr),  # main: one global step per update
            torch.optim.Adam(self.v_net.parameters(), lr=lr),
            torch.optim.Adam(self.policy.parameters(), lr=lr),
        ]

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.policy.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        avail = ensure_some_available(batch["avail_actions"][:, :-1])
        inputs = self.sequence_inputs(batch, include_last_obs=True)  # [B, L+1, N, in]
        act = actions.unsqueeze(-1)

        # Global TD on Q_tot with the target V_tot(s').
        q_taken = self.q_net.forward_seq(inputs)[0][:, :-1].gather(-1, act).squeeze(-1)  # [B, L, N]
        q_tot = self.mixer(q_taken, state[:, :-1])
        with torch.no_grad():
            v_next = self.target_v.forward_seq(inputs)[0][:, 1:, :, 0]
            targets = value_targets(batch["reward"], batch["terminated"], self.target_mixer(v_next, state[:, 1:]), hp.gamma)
        q_loss = squared_td_loss(q_tot, targets, mask)

        # Local in-sample value and policy objectives.
        with torch.no_grad():
            q_bar = self.target_q.forward_seq(inputs)[0][:, :-1].gather(-1, act).squeeze(-1)
            w_bar = self.target_mixer.hyper(state[:, :-1]).w
        v = self.v_net.forward_seq(inputs)[0][:, :-1, :, 0]
        z = omiga_z(w_bar, q_bar, v, hp.alpha, hp.z_clip)
        v_loss = omiga_value_loss(z, w_bar, v, mask, hp.alpha)
        weights = omiga_policy_weights(z)
        logits, _ = self.policy.forward_seq(inputs[:, :-1])
        policy_loss = weighted_nll(taken_log_probs(logits, actions, avail), weights, mask)

        self.step_optimizer(2, policy_loss, self.policy.parameters(), hp.grad_clip_norm)
        self.optimise(self.main_optimizer(), q_loss, hp.grad_clip_norm)
        self.step_optimizer(1, v_loss, self.v_net.parameters(), hp.grad_clip_norm)
        for target, online in ((self.target_q, self.q_net), (self.target_v, self.v_net), (self.target_mixer, self.mixer)):
            soft_update(target, online, hp.tau)

        with torch.no_grad():
            m = mask.unsqueeze(-1)
            self.log_train({
                "loss": q_loss.detach() + v_loss.detach() + policy_loss.detach(),
                "q_loss": q_loss.detach(),
                "v_loss": v_loss.detach(),
                "policy_loss": policy_loss.detach(),
                "q_tot_mean": masked_mean(q_tot.detach(), mask),
                "target_mean": masked_mean(targets, mask),
                "v_mean": masked_mean(v.detach(), m),
                "weight_mean": masked_mean(weights, m),
                "weight_max": (weights * m).max(),
                "z_clipped_frac": masked_mean((z.detach().abs() >= hp.z_clip).float(), m),
            })

