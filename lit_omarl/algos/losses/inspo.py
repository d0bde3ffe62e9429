"""Losses of InSPO (Liu et al., AAAI 2025), as pure functions of tensors.

Also home of the importance-resampling helpers that AlberDICE shares.

Shapes: B episodes, T steps (T = 1 for transition batches), A actions, N agents.
``weights`` [B, T] are the normalised sample weights of a resampled batch
(they sum to 1 over the batch, 0 on padded steps): a loss E_{D_rho}[f] is
``(weights * f).sum()``. Each function is tested by hand in tests/test_inspo.py.
"""

from __future__ import annotations

import math

import torch

from lit_omarl.algos.losses import NEG_INF


def resampling_ratio(
    log_pi_taken: torch.Tensor,
    log_mu_others: torch.Tensor,
    agent: int,
    geometric: bool = True,
    max_ratio: float = 0.0,
) -> torch.Tensor:
    """Importance ratio of the other agents' dataset actions (InSPO Eq. 14 and 23).

        rho^i = ( prod_{j != i} pi^j(a^j | o^j) / mu^{-i}(a^{-i} | s, a^i) ) ^ (1 / (N - 1))

    with the geometric mean (power 1 / (N - 1), Eq. 23) or the plain product
    (``geometric=False``, AlberDICE). One agent: rho = 1.

    Args:
        log_pi_taken: [..., N] log pi^j(a^j | o^j) of the dataset actions (current policies).
        log_mu_others: [..., N] log mu^{-i}(a^{-i} | s, a^i) of the autoregressive behaviour model.
        agent: i.
        geometric: take the (N - 1)-th root.
        max_ratio: clip rho at this value (<= 0: no clipping).

    Returns:
        [...] rho^i (no gradient).
    """
    n = log_pi_taken.shape[-1]
    if n == 1:
        return torch.ones_like(log_pi_taken[..., 0])
    with torch.no_grad():
        log_rho = log_pi_taken.sum(-1) - log_pi_taken[..., agent] - log_mu_others[..., agent]
        if geometric:
            log_rho = log_rho / (n - 1)
        if max_ratio > 0:
            log_rho = log_rho.clamp(max=math.log(max_ratio))
        return log_rho.clamp(min=-80.0).exp()


def importance_resample(
    ratio: torch.Tensor,
    mask: torch.Tensor,
    n_draws: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance resampling of a batch (Schlegel et al. 2019; InSPO Eq. 15).

    Draws ``n_draws`` (default: the number of valid steps) samples with
    replacement, each step with probability proportional to ``ratio * mask``,
    and returns how often each step was drawn divided by ``n_draws``: the
    weights of the resampled batch D_rho.

    Args:
        ratio: [B, T] non-negative ratios.
        mask: [B, T] valid steps.
        n_draws: number of draws.
        generator: torch.Generator on ratio's device.

    Returns:
        [B, T] weights summing to 1 (uniform over valid steps if every ratio is 0).
    """
    probs = (ratio * mask).flatten().double()
    valid = (mask.flatten() > 0).double()
    if not (probs.sum() > 0):
        probs = valid
    draws = int(n_draws or max(int(valid.sum()), 1))
    idx = torch.multinomial(probs / probs.sum(), draws, replacement=True, generator=generator)
    counts = torch.bincount(idx, minlength=probs.numel()).to(ratio.dtype)
    return (counts / draws).reshape(ratio.shape)


def normalised_weights(ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Self-normalised importance weights ratio * mask / sum(ratio * mask) (the expectation of
    :func:`importance_resample`, without its sampling noise)."""
    w = ratio * mask
    total = w.sum()
    if not (total > 0):
        w, total = mask.to(ratio.dtype), mask.sum().clamp_min(1.0)
    return w / total


def soft_state_value(
    q: torch.Tensor,
    log_pi: torch.Tensor,
    log_mu: torch.Tensor,
    avail: torch.Tensor,
    alpha: float | torch.Tensor,
    beta: float | torch.Tensor,
) -> torch.Tensor:
    """Local soft value of agent i (the bootstrap of InSPO Eq. 14):

        V^i(s) = sum_a pi^i(a|s) [ Q^i(s, a) - alpha (log pi^i(a|s) - log mu^i(a|s)) - beta log pi^i(a|s) ]
               = E_pi[Q^i] - alpha KL(pi^i || mu^i) + beta H(pi^i)

    Sums run over available actions.

    Args:
        q: [..., A] Q^i(s, .).
        log_pi, log_mu: [..., A] log-probabilities (masked log-softmax).
        avail: [..., A] bool.
        alpha, beta: temperatures (floats or 0-d tensors).

    Returns:
        [...]
    """
    pi = log_pi.exp() * avail
    inner = q - alpha * (log_pi - log_mu) - beta * log_pi
    return (pi * torch.where(avail, inner, torch.zeros_like(inner))).sum(-1)


def inspo_critic_loss(
    q_all: torch.Tensor,
    actions: torch.Tensor,
    target: torch.Tensor,
    avail: torch.Tensor,
    weights: torch.Tensor,
    cql_alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local Q loss of InSPO (Appendix B, Eq. 24) on the resampled batch:

        E_{D_rho}[ (Q^i(s, a^i) - y)^2 ] + alpha_CQL E_{D_rho}[ log sum_a exp Q^i(s, a) - Q^i(s, a^i) ]

    where a^i is the dataset action (a sample of mu^i) and the logsumexp runs
    over available actions.

    Args:
        q_all: [B, T, A] Q^i(s, .) (with gradient).
        actions: [B, T] long dataset actions a^i.
        target: [B, T] y (no gradient).
        avail: [B, T, A] bool.
        weights: [B, T] resampling weights (sum 1).
        cql_alpha: alpha_CQL (paper default 0.1).

    Returns:
        (loss, td part, cql part).
    """
    q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    td = (weights * (q_taken - target).pow(2)).sum()
    cql = (weights * (torch.logsumexp(q_all.masked_fill(~avail, NEG_INF), dim=-1) - q_taken)).sum()
    return td + cql_alpha * cql, td, cql


def inspo_policy_weights(
    advantage: torch.Tensor,
    log_mu_taken: torch.Tensor,
    alpha: float | torch.Tensor,
    beta: float | torch.Tensor,
    max_weight: float = 0.0,
) -> torch.Tensor:
    """Exponential weights of the in-sample policy update (InSPO Eq. 13 / 20):

        w = exp( (A^i(s, a^i) - beta log mu^i(a^i|s)) / (alpha + beta) ),   clipped at ``max_weight`` (> 0)
    """
    with torch.no_grad():
        logw = (advantage - beta * log_mu_taken) / (alpha + beta)
        if max_weight > 0:
            logw = logw.clamp(max=math.log(max_weight))
        return logw.exp()


def inspo_policy_loss(log_pi_taken: torch.Tensor, policy_weights: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """E_{D_rho}[ -w(s, a^i) log pi^i(a^i | s) ] (InSPO Eq. 20): all [B, T]."""
    return -(weights * policy_weights * log_pi_taken).sum()


def kl_categorical(log_p: torch.Tensor, log_q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_a p(a) (log p(a) - log q(a)) over available actions: [..., A] -> [...]."""
    diff = torch.where(avail, log_p - log_q, torch.zeros_like(log_p))
    return (log_p.exp() * avail * diff).sum(-1)


def alpha_temperature_loss(log_alpha: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, target_kl: float) -> torch.Tensor:
    """Auto-tuning loss of the KL temperature alpha (InSPO Appendix B, Eq. 25, sign as a controller):

        J(alpha) = E_s[ sum_i alpha (target_kl - KL(pi^i(.|s) || mu^i(.|s))) ]

    so alpha grows while the policies are further than ``target_kl`` from the
    behaviour policies (per agent) and shrinks otherwise. Eq. 25 prints
    alpha (KL - target) instead, whose minimisation would drive alpha the
    wrong way (the SAC loss it imitates is written for an entropy, i.e. -KL).

    Args:
        log_alpha: 0-d parameter, alpha = exp(log_alpha).
        kl: [B, T, N] per-agent KL (no gradient).
        mask: [B, T].
        target_kl: D_KL-bar (paper default 0.18).
    """
    per_state = (target_kl - kl.detach()).sum(-1)
    m = mask.to(kl.dtype)
    return log_alpha.exp() * (per_state * m).sum() / m.sum().clamp_min(1.0)
