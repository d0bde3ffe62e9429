"""Losses of AlberDICE (Matsunaga et al., NeurIPS 2023), as pure functions of tensors.

AlberDICE optimises one agent i at a time (the others fixed) with the
KL-regularised DICE dual of OptiDICE, on a batch resampled with the ratio
pi^{-i}(a^{-i}|s) / mu^{-i}(a^{-i}|s, a^i) (see :mod:`lit_omarl.algos.losses.inspo`
for the resampling helpers). ``weights`` [B, T] are the resampled batch's
weights (sum 1, 0 on padded steps). Tested by hand in tests/test_alberdice.py.
"""

from __future__ import annotations

import math

import torch

from lit_omarl.algos.losses import NEG_INF


def dice_residual(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    nu: torch.Tensor,
    nu_next: torch.Tensor,
    others_kl: torch.Tensor,
    alpha: float,
    gamma: float,
    nu_absorbing: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Advantage-like residual of agent i's value nu_i:

        e_i(s, a) = r - alpha * kl^{-i}(s, a^i) + gamma * nu_i(s'') - nu_i(s)

    where s'' = s' on non-terminal steps and the absorbing state (value
    ``nu_absorbing``) after a terminal step, and kl^{-i} is the other agents'
    log-ratio log(pi^{-i} / mu^{-i}) (``others_kl``).
    All [B, T]; gradients flow into ``nu`` and ``nu_next``.
    """
    boot = (1.0 - terminated) * nu_next + terminated * nu_absorbing
    return reward - alpha * others_kl + gamma * boot - nu


def absorbing_mass(terminated: torch.Tensor, mask: torch.Tensor, steps_per_terminal: float) -> float:
    """Share p of absorbing-state transitions in the data when every terminal step is followed
    by ``steps_per_terminal`` absorbing self-loops: p = m n_term / (n_valid + m n_term)."""
    n_term = float((terminated * mask).sum())
    n_valid = float(mask.sum())
    extra = steps_per_terminal * n_term
    return extra / (n_valid + extra) if extra > 0 else 0.0


def absorbing_value(
    e_without_abs: torch.Tensor,
    terminated: torch.Tensor,
    weights: torch.Tensor,
    p_abs: float,
    alpha: float,
    gamma: float,
) -> torch.Tensor:
    """Closed-form minimiser nu_abs of the dual over the absorbing state's value.

    With terminal residuals e_k = b_k + gamma nu_abs (``e_without_abs`` = b) and the
    absorbing self-loop residual -(1 - gamma) nu_abs of data share p, setting the
    derivative of log[(1 - p) sum_k w_k exp(e_k / alpha) + p exp(-(1 - gamma) nu_abs / alpha)]
    to zero gives

        nu_abs = alpha [ log(p (1 - gamma)) - log((1 - p) gamma) - log sum_{k terminal} w_k exp(b_k / alpha) ]

    Returns a 0-d tensor without gradient (0 when there is no terminal step or p = 0).
    """
    with torch.no_grad():
        term = (terminated > 0) & (weights > 0)
        if p_abs <= 0 or gamma <= 0 or not bool(term.any()):
            return e_without_abs.new_zeros(())
        log_t = torch.logsumexp(weights[term].log() + e_without_abs[term] / alpha, dim=0)
        return alpha * (math.log(p_abs * (1 - gamma)) - math.log((1 - p_abs) * gamma) - log_t)


def dice_nu_loss(
    e: torch.Tensor,
    weights: torch.Tensor,
    mean_ratio: torch.Tensor | float,
    nu_init: torch.Tensor,
    alpha: float,
    gamma: float,
    p_abs: float = 0.0,
    nu_absorbing: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """KL-regularised DICE dual of agent i (OptiDICE / AlberDICE, f = KL, normalised):

        L(nu) = (1 - gamma) E_{s0}[nu(s0)] + alpha log E_{D'}[ rho exp(e_nu / alpha) ]

    D' is the data plus absorbing self-loops of share ``p_abs`` (residual
    -(1 - gamma) nu_abs, ratio E_D[rho]); with the resampled batch D_rho,

        E_{D'}[rho exp(e / alpha)] = E_D[rho] [ (1 - p) E_{D_rho}[exp(e / alpha)] + p exp(-(1 - gamma) nu_abs / alpha) ].

    Args:
        e: [B, T] residuals (with gradient through nu).
        weights: [B, T] resampling weights (sum 1).
        mean_ratio: E_D[rho] (a constant: no gradient).
        nu_init: [K] nu at the initial-state samples (with gradient).
        alpha: KL temperature.
        gamma: discount.
        p_abs: share of absorbing transitions (0: none).
        nu_absorbing: nu_abs.

    Returns:
        scalar loss.
    """
    log_w = torch.where(weights > 0, weights.clamp_min(1e-30).log(), torch.full_like(weights, NEG_INF))
    terms = (e / alpha + log_w).flatten()
    if p_abs > 0:
        e_abs = -(1.0 - gamma) * torch.as_tensor(nu_absorbing, dtype=e.dtype, device=e.device).reshape(1)
        terms = torch.cat([terms + math.log(1.0 - p_abs), e_abs / alpha + math.log(p_abs)])
    soft = alpha * torch.logsumexp(terms, dim=0)
    return (1.0 - gamma) * nu_init.mean() + soft + alpha * math.log(max(float(mean_ratio), 1e-30))


def e_network_loss(
    e_all: torch.Tensor,
    actions: torch.Tensor,
    e_target: torch.Tensor,
    avail: torch.Tensor,
    mu_probs: torch.Tensor,
    weights: torch.Tensor,
    cql_coeff: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Regression of e_i(s, a^i) onto the residual plus a CQL term towards the data policy:

        E_{D_rho}[ (e(s, a^i) - e_target)^2 ] + c E_{D_rho}[ logsumexp_a e(s, a) - sum_a mu^i(a|s) e(s, a) ]

    Args:
        e_all: [B, T, A] e-network outputs (with gradient).
        actions: [B, T] long dataset actions of agent i.
        e_target: [B, T] residuals (no gradient).
        avail: [B, T, A] bool.
        mu_probs: [B, T, A] behaviour probabilities mu^i(.|s) (0 on unavailable actions).
        weights: [B, T] resampling weights.
        cql_coeff: c.

    Returns:
        (loss, regression part, cql part).
    """
    taken = e_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    reg = (weights * (taken - e_target).pow(2)).sum()
    lse = torch.logsumexp(e_all.masked_fill(~avail, NEG_INF), dim=-1)
    cql = (weights * (lse - (mu_probs * e_all).sum(-1))).sum()
    return reg + cql_coeff * cql, reg, cql


def i_projection_loss(
    log_pi: torch.Tensor,
    e_all: torch.Tensor,
    log_mu: torch.Tensor,
    avail: torch.Tensor,
    weights: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """Policy extraction of AlberDICE (the I-projection of pi* ∝ mu^i exp(e_i / alpha)):

        E_{s ~ D_rho}[ - sum_a pi(a|s) e_i(s, a) + alpha KL(pi(.|s) || mu^i(.|s)) ]

    Args:
        log_pi: [B, T, A] masked log-softmax of agent i's policy (with gradient).
        e_all: [B, T, A] e-network outputs (no gradient).
        log_mu: [B, T, A] behaviour log-probabilities.
        avail: [B, T, A] bool.
        weights: [B, T].
        alpha: KL temperature.
    """
    pi = log_pi.exp() * avail
    inner = torch.where(avail, -e_all + alpha * (log_pi - log_mu), torch.zeros_like(e_all))
    return (weights * (pi * inner).sum(-1)).sum()
