"""Losses of the conditional VAE behaviour model (CFCQL-C's density estimator, BC-C).

Pure functions of tensors, tested by hand in tests/test_continuous_algos.py.
The VAE network is :class:`lit_omarl.nets.continuous.VAE`.
"""

from __future__ import annotations

import math

import torch

from lit_omarl.algos.losses import masked_mean

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl_to_standard(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(0, 1)) per latent dimension: -0.5 (1 + log std^2 - mean^2 - std^2)."""
    return -0.5 * (1.0 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2))


def vae_elbo_loss(
    recon: torch.Tensor,
    action: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO of the CFCQL-C code's VAE (its ``train_vae.py``), per row then averaged:

        L = mean_d (recon_d - a_d)^2 + beta * mean_j KL(N(mean_j, std_j^2) || N(0, 1))

    i.e. the reconstruction MSE and the KL are both MEANS over their
    dimensions (as ``F.mse_loss`` / ``.mean()`` in the code), weighted by beta (0.5).

    Args:
        recon, action: [..., D] decoded and data actions.
        mean, std: [..., Z] encoder outputs.
        beta: KL weight.
        mask: [...] rows to average over (None = all; a [B, T] step mask is broadcast over extra dims).

    Returns:
        (loss, reconstruction part, KL part without beta).
    """
    rec = (recon - action).pow(2).mean(-1)
    kl = gaussian_kl_to_standard(mean, std).mean(-1)
    if mask is None:
        rec_m, kl_m = rec.mean(), kl.mean()
    else:
        m = mask.reshape(*mask.shape, *([1] * (rec.dim() - mask.dim())))
        rec_m, kl_m = masked_mean(rec, m), masked_mean(kl, m)
    return rec_m + beta * kl_m, rec_m, kl_m


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor | float, std: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2)."""
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    return -0.5 * ((x - mean) / std).pow(2) - torch.log(std) - 0.5 * LOG_2PI


def importance_log_density(
    action: torch.Tensor,
    decoded: torch.Tensor,
    dec_std: float,
    z: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    groups: int = 1,
    dim_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Importance-sampling estimate of log beta(a_g | c) for each group g of action dims (CFCQL Eq. B.43).

        w_{g,l} = log p(a_g | z_l, c) + log p(z_l) - log q(z_l | c, a),   z_l ~ q(z | c, a)
        log beta_g = logsumexp_l w_{g,l} - log L

    p(a | z, c) = N(decoded, dec_std^2) per dimension (the code: dec_std =
    sqrt(beta / 4)), p(z) = N(0, I), q = N(mean, std^2). As in the CFCQL-C
    code, the joint action a = (a^1, .., a^N) is encoded once and the decoder
    likelihood is split into the N agents' chunks (``groups`` = N) that share
    the latent terms; dims outside ``dim_mask`` (padding) are left out.

    Args:
        action: [..., D], D divisible by ``groups``.
        decoded: [L, ..., D] decoder means at the L latents.
        dec_std: decoder standard deviation.
        z: [L, ..., Z] latents; mean, std: [..., Z] encoder outputs.
        groups: number of consecutive equal chunks of the D dims.
        dim_mask: [D] (or broadcastable to [..., D]) 1 on real dims.

    Returns:
        [..., groups]
    """
    log_px = normal_log_prob(action.unsqueeze(0), decoded, dec_std)  # [L, ..., D]
    if dim_mask is not None:
        log_px = log_px * dim_mask.to(log_px.dtype)
    log_px = log_px.reshape(*log_px.shape[:-1], groups, log_px.shape[-1] // groups).sum(-1)  # [L, ..., G]
    log_pz = normal_log_prob(z, 0.0, 1.0).sum(-1)
    log_qz = normal_log_prob(z, mean.unsqueeze(0), std.unsqueeze(0)).sum(-1)
    w = log_px + (log_pz - log_qz).unsqueeze(-1)
    return torch.logsumexp(w, dim=0) - math.log(z.shape[0])


def vae_log_prob(vae, cond: torch.Tensor, action: torch.Tensor, beta: float, n_samples: int, groups: int = 1,
                 dim_mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`importance_log_density` of a :class:`~lit_omarl.nets.continuous.VAE` with ``n_samples`` latents
    and decoder std sqrt(beta / 4): cond [..., C], action [..., D] -> [..., groups]."""
    z, decoded, mean, std = vae.latent_samples(cond, action, n_samples)
    return importance_log_density(action, decoded, math.sqrt(beta / 4.0), z, mean, std, groups, dim_mask)


__all__ = ["gaussian_kl_to_standard", "importance_log_density", "normal_log_prob", "vae_elbo_loss", "vae_log_prob"]
