"""BC: behaviour cloning of each agent's policy (baseline of CFCQL and InSPO)."""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import policy_actions


@register_algorithm("bc")
class BC(OfflineMARLModule):
    """Per-agent behaviour cloning with parameters shared across agents.

    Loss (maximum likelihood of the dataset actions):

        - E_{(tau, a) ~ D} [ sum_i log pi(a_i | tau_i) ],   pi = softmax over available actions

    ``act(deterministic=False)`` samples from pi, ``deterministic=True`` takes
    its argmax. Evaluation samples by default (``eval_deterministic=None``):
    the BC numbers of InSPO's Table 1 are expected returns of the stochastic
    policy, and the CFCQL code evaluates its BC with a multinomial selector.

    Deviations: the CFCQL appendix describes a 3-layer MLP for discrete BC,
    its code uses the GRU agent; both are available through ``agent``.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        lr: Adam learning rate (CFCQL code's bc.yaml: 5e-4).
        grad_clip_norm: gradient-norm clipping (<= 0 disables).
        **kwargs: arguments of :class:`OfflineMARLModule` (gamma, agent,
            agent_hidden_dim, use_agent_id, use_last_action, eval settings, seed).
    """

    default_eval_deterministic = False

    def __init__(self, spec: dict | None = None, lr: float = 5e-4, grad_clip_norm: float = 10.0, **kwargs: Any) -> None:
        super().__init__(spec=spec, **kwargs)
        self.policy = self.make_agent_net(self.spec.n_actions)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.policy.parameters(), lr=self.hparams.lr)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        nll = self.policy_nll(self.policy, batch)
        self.optimise(self.main_optimizer(), nll, self.hparams.grad_clip_norm)
        self.log_train({"loss": nll.detach(), "nll": nll.detach()})

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.policy.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)
