"""BCQ-MA: discrete batch-constrained Q-learning per agent with a linear value decomposition (ICQ / OMAC baseline)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, behaviour_probs, register_algorithm
from lit_omarl.algos.losses import ensure_some_available, masked_log_softmax, masked_mean
from lit_omarl.algos.losses.bcq import bcq_allowed_actions
from lit_omarl.algos.qmix import QMIX


@register_algorithm("bcq")
class BCQMA(QMIX):
    """BCQ-MA (icq.md App. D.2 Eq. 57, omac.md App. A.2), discrete BCQ (Fujimoto et al. 2019) per agent.

    :class:`~lit_omarl.algos.qmix.QMIX` restricted to batch-constrained
    actions. A behaviour model G_i(a | tau_i) (the agent network with policy
    logits, shared across agents, trained by maximum likelihood on the
    dataset actions at every step) defines each agent's allowed actions

        allowed_i(tau_i) = { a available : G_i(a | tau_i) / max_a' G_i(a' | tau_i) >= threshold }

    and the Q-learner (linear mixer Q_tot = sum_i k_i(s) Q_i + b(s)) maximises
    only over them:

        E[ 0.5 * (Q_tot(s, a_data) - G_t)^2 ],   G_t bootstrapped on Q'_tot(s', argmax_{allowed} Q_i(tau'_i, .))

    (double Q: argmax of the online Q_i among allowed actions, evaluated by
    the target networks; one-step targets by default as Eq. 57). Agents act
    greedily among their allowed actions. Since Q_tot is monotonic in each
    Q_i, the per-agent argmax is the joint argmax over allowed joint actions.

    Deviations: the perturbation model xi of Eq. 57 (continuous BCQ) is, for
    discrete actions, the threshold mask above (as icq.md describes it); the
    threshold test is ">= threshold" so the behaviour's argmax is always
    allowed (icq.md marks "<= zeta" as unfamiliar). The behaviour model is a
    separate network (discrete BCQ shares the trunk with the Q-network) and
    may optionally be pre-trained before the main loop.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        threshold: tau (icq.md zeta = 0.3, omac.md 0.3).
        behaviour_lr: Adam learning rate of the behaviour model.
        behaviour_pretrain_steps: optional pre-training updates of the behaviour model (0 = none; it
            is also updated at every training step).
        behaviour_patience: early stop of pre-training after this many updates without a new minimum.
        lr, grad_clip_norm, td_lambda, mixer: as in :class:`ConservativeQMIX`, with this baseline's defaults.
        **kwargs: other arguments of :class:`QMIX` / :class:`ConservativeQMIX` (target_update_interval, ...)
            and of :class:`OfflineMARLModule` (gamma, agent, eval settings, seed, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        threshold: float = 0.3,
        behaviour_lr: float = 1e-3,
        behaviour_pretrain_steps: int = 0,
        behaviour_patience: int = 20,
        lr: float = 5e-4,
        grad_clip_norm: float = 20.0,
        td_lambda: float = 0.0,
        mixer: Literal["qmix", "linear", "vdn"] = "linear",
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        super().__init__(spec=spec, lr=lr, grad_clip_norm=grad_clip_norm, td_lambda=td_lambda, mixer=mixer, **kwargs)
        self.behaviour = self.make_agent_net(self.spec.n_actions)
        self._extra: dict[str, torch.Tensor] = {}

    # ---- behaviour model -------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [super().configure_optimizers(), torch.optim.Adam(self.behaviour.parameters(), lr=self.hparams.behaviour_lr)]

    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        return self.hparams.behaviour_pretrain_steps, self.hparams.behaviour_patience

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        loss = self.policy_nll(self.behaviour, batch)  # secondary optimizer 1: not a global step
        self.step_optimizer(1, loss, self.behaviour.parameters(), self.hparams.grad_clip_norm)
        return loss.detach()

    # ---- training: the base learner maximises over the allowed actions only -----
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        nll = self.behaviour_update(batch)
        avail = ensure_some_available(batch["avail_actions"])
        with torch.no_grad():
            probs = behaviour_probs(self.behaviour, self.sequence_inputs(batch, include_last_obs=True), avail)
            allowed = bcq_allowed_actions(probs, avail, self.hparams.threshold)
        mask = batch["mask"][..., None]
        self._extra = {
            "behaviour_nll": nll,
            "allowed_frac": masked_mean(allowed[:, :-1].sum(-1) / avail[:, :-1].sum(-1), mask),
        }
        super().training_step({**batch, "avail_actions": allowed}, batch_idx)

    def conservative_gap(
        self, q_all: torch.Tensor, batch: Batch, avail: torch.Tensor, q_taken_tot: torch.Tensor, mixer_params: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return torch.zeros_like(q_taken_tot), self._extra  # no regulariser; logs the behaviour metrics

    # ---- acting: greedy among allowed actions ----------------------------------
    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        h_q, h_b = (None, None) if h is None else h
        q, h_q = self.agent.step(inputs, h_q)
        logits, h_b = self.behaviour.step(inputs, h_b)
        return torch.cat([q, logits], dim=-1), (h_q, h_b)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        q, logits = out.split(self.spec.n_actions, dim=-1)
        allowed = bcq_allowed_actions(masked_log_softmax(logits, avail).exp(), avail, self.hparams.threshold)
        return q.masked_fill(~allowed, -torch.inf).argmax(-1)
