"""OMAR's zeroth-order policy target in continuous action spaces (Pan et al., ICML 2022).

Pure functions of tensors, tested by hand in tests/test_continuous_algos.py.
Shapes: ``...`` = any leading dims (e.g. [B, T, N]); C samples; A action dims;
I iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from lit_omarl.algos.losses.continuous import step_mean

SearchMode = Literal["softmax", "cem"]
SIGMA_EPS = 1e-10  # added to sigma before sampling (the code's Normal(mu, sigma + 1e-10))


def omar_search(
    q_fn: Callable[[torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    low: float,
    high: float,
    mode: SearchMode = "softmax",
    n_elites: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling search for argmax_a Q(a) (OMAR Eq. 6-7 and the official code).

    For each noise slice eps [..., C, A] (one per iteration):

        x_c = clamp(mu + (sigma + 1e-10) * eps_c, low, high),   q_c = Q(x_c)

    ``mode="softmax"`` (the code's MPE branch; OMAR paper's update):
        mu = sum_c softmax(q)_c x_c,   sigma = sqrt(mean_c (x_c - mu)^2)
    ``mode="cem"`` (the code's MaMuJoCo branch): the candidates of an
        iteration are the new samples plus the previous iteration's elites;
        the ``n_elites`` best give mu = their mean, sigma = their (unbiased) std.

    Returns the best candidate of the LAST iteration (first on ties) and its Q.

    Args:
        q_fn: [..., C, A] -> [..., C] (no gradient needed).
        mu, sigma: [..., A] initial mean / std (the code: 0 and 2 for actions in [-1, 1]).
        noise: [I, ..., C, A] standard-normal draws.
        low, high: action bounds.
        mode: "softmax" or "cem".
        n_elites: elites kept by "cem".

    Returns:
        (action [..., A], value [...]).
    """
    if noise.shape[0] < 1:
        raise ValueError("omar_search needs at least one iteration of noise")
    if mode not in ("softmax", "cem"):
        raise ValueError(f"unknown OMAR search mode {mode!r}; expected 'softmax' or 'cem'")
    elite_x = elite_q = None
    for eps in noise:
        x = (mu.unsqueeze(-2) + (sigma.unsqueeze(-2) + SIGMA_EPS) * eps).clamp(low, high)
        q = q_fn(x)
        if mode == "softmax":
            w = torch.softmax(q, dim=-1).unsqueeze(-1)
            mu = (w * x).sum(-2)
            sigma = (x - mu.unsqueeze(-2)).pow(2).mean(-2).sqrt()
        else:
            if elite_x is not None:
                x, q = torch.cat([x, elite_x], dim=-2), torch.cat([q, elite_q], dim=-1)
            top = q.topk(min(n_elites, q.shape[-1]), dim=-1).indices
            elite_q = q.gather(-1, top)
            elite_x = x.gather(-2, top.unsqueeze(-1).expand(*top.shape, x.shape[-1]))
            mu, sigma = elite_x.mean(-2), elite_x.std(-2)
    best = q.argmax(-1, keepdim=True)
    return x.gather(-2, best.unsqueeze(-1).expand(*best.shape, x.shape[-1])).squeeze(-2), q.gather(-1, best).squeeze(-1)


def omar_target(policy_action: torch.Tensor, policy_q: torch.Tensor, search_action: torch.Tensor,
                search_q: torch.Tensor) -> torch.Tensor:
    """The action the policy regresses to: the search's best if its Q is strictly higher, else the policy's
    own action (the code's max over [policy, search], first on ties). [..., A], [...], [..., A], [...] -> [..., A]."""
    return torch.where((search_q > policy_q).unsqueeze(-1), search_action, policy_action).detach()


def omar_actor_loss(pi: torch.Tensor, target: torch.Tensor | None, q_pi: torch.Tensor, mask: torch.Tensor,
                    omar_coe: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """OMAR's policy objective per agent (paper Eq. 8, code):

        omar_coe * E[(pi_i(o_i) - a*_i)^2] - (1 - omar_coe) * E[Q_i(o_i, pi_i(o_i))]

    and -E[Q_i(o_i, pi_i(o_i))] without a target (ICQL). The squared error is
    averaged over dims (``F.mse_loss``), steps and agents.

    Args:
        pi: [B, T, N, A] policy actions (with gradient); target: [B, T, N, A] or None.
        q_pi: [B, T, N] Q_i of the policy actions (with gradient to pi).
        mask: [B, T].

    Returns:
        (loss, mimic term or None).
    """
    q_term = step_mean(q_pi, mask)
    if target is None:
        return -q_term, None
    mimic = step_mean((pi - target.detach()).pow(2), mask)
    return omar_coe * mimic - (1.0 - omar_coe) * q_term, mimic


__all__ = ["SIGMA_EPS", "omar_actor_loss", "omar_search", "omar_target"]
