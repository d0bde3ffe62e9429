"""BC-C: behaviour cloning of continuous actions with a VAE behaviour density (cfcql.md App. C.3)."""

from __future__ import annotations

from typing import Any

import torch

from lit_omarl.algos.base import AgentType, Batch, register_algorithm
from lit_omarl.algos.continuous_base import ContinuousModule
from lit_omarl.algos.losses.vae import vae_elbo_loss, vae_log_prob
from lit_omarl.nets.continuous import VAE


@register_algorithm("bc_c")
class BCC(ContinuousModule):
    """Per-agent behaviour cloning with a conditional VAE beta(a_i | x_i) (Wu et al.'s explicit density estimator).

    One VAE shared by the agents (x_i = [o_i, agent id]; + previous action with
    ``use_last_action``) is fitted to the dataset actions by the negative ELBO
    of the CFCQL-C code (:func:`~lit_omarl.algos.losses.vae.vae_elbo_loss`):

        L = E[ mean_d (dec(x_i, z) - a_i)_d^2 + beta mean_j KL(q(z_j | x_i, a_i) || N(0, 1)) ],  z ~ q(z | x_i, a_i)

    Acting decodes a latent: z = 0 (``deterministic``, the default evaluation)
    or z ~ N(0, I) clipped to [-0.5, 0.5] (the BCQ convention).
    :meth:`log_prob` gives the importance-sampling estimate of log beta(a_i | x_i)
    (CFCQL Eq. B.43).

    Deviations: the CFCQL paper names "the method of explicit estimation of
    behavior density in Wu et al." for its continuous BC without more detail;
    conditioning on each agent's own inputs (decentralised execution), one VAE
    shared by the agents and z = 0 for deterministic actions are our choices.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        lr: Adam learning rate (CFCQL-C code's VAE: 1e-4).
        vae_beta: KL weight beta (0.5).
        vae_hidden_dim: hidden units (750).
        latent_dim: latent size (None = 2 x action dim).
        grad_clip_norm: gradient-norm clipping (<= 0 disables).
        **kwargs: arguments of :class:`~lit_omarl.algos.continuous_base.ContinuousModule`
            and :class:`OfflineMARLModule` (use_agent_id, use_last_action, eval settings, seed, ...).
    """

    agent_types = ("mlp",)

    def __init__(
        self,
        spec: dict | None = None,
        lr: float = 1e-4,
        vae_beta: float = 0.5,
        vae_hidden_dim: int = 750,
        latent_dim: int | None = None,
        grad_clip_norm: float = 0.0,
        agent: AgentType = "mlp",
        use_last_action: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, agent=agent, use_last_action=use_last_action, **kwargs)
        if vae_beta < 0:
            raise ValueError(f"vae_beta must be >= 0, got {vae_beta}")
        s = self.spec
        self.vae = VAE(self.agent_inputs.dim, s.n_actions, latent_dim, vae_hidden_dim, s.action_low, s.action_high)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.vae.parameters(), lr=self.hparams.lr)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        x = self.sequence_inputs(batch, include_last_obs=False)  # [B, L, N, in]
        recon, mean, std = self.vae(x, batch["actions"])
        loss, rec, kl = vae_elbo_loss(recon, batch["actions"], mean, std, self.hparams.vae_beta, batch["mask"])
        self.optimise(self.main_optimizer(), loss, self.hparams.grad_clip_norm)
        self.log_train({"loss": loss.detach(), "recon_mse": rec.detach(), "kl": kl.detach()})

    def _continuous_actions(self, inputs: torch.Tensor, h: Any, deterministic: bool) -> tuple[torch.Tensor, Any]:
        return self.vae.sample(inputs, deterministic) * self.action_mask, None

    @torch.no_grad()
    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor, n_samples: int = 20,
                 last_action: torch.Tensor | None = None) -> torch.Tensor:
        """log beta(a_i | x_i) [B, N] of actions [B, N, A] at observations [B, N, O] (importance sampling)."""
        x = self.agent_inputs.build(obs.to(self.device), None if last_action is None else last_action.to(self.device))
        dims = self.action_mask.unsqueeze(0) if actions.dim() == 3 else self.action_mask
        return vae_log_prob(self.vae, x, actions.to(self.device), self.hparams.vae_beta, n_samples, 1, dims).squeeze(-1)
