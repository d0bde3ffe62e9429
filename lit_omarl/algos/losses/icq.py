"""Loss pieces of ICQ-MA (icq.md Sec. 4, App. D.1; official YiqinYang/ICQ ICQ-MA).

The partition functions Z of the implicit-constraint weights are approximated
by a softmax over the mini-batch (App. D.1, Eq. 56): a weight is
``n * softmax_over_batch(x / alpha)``, n being the number of valid entries,
so that the weights average to one. Shapes: B episodes, T steps, N agents,
A actions; ``mask`` [B, T] marks valid steps.
"""

from __future__ import annotations

from typing import Literal

import torch

from lit_omarl.algos.losses import masked_mean, td_lambda_targets

ActorWeighting = Literal["code", "paper"]


def minibatch_softmax_weights(values: torch.Tensor, valid: torch.Tensor, alpha: float) -> torch.Tensor:
    """``n_valid * softmax(values / alpha)`` over dim 0 (the mini-batch), among valid entries only.

    Each column (every index of the other dims) is normalised separately;
    invalid entries get weight 0 and do not enter the normalisation. With a
    large ``alpha`` every valid weight tends to 1, with a small one the
    largest value of the column takes all the mass n.

    Args:
        values: [B, ...].
        valid: bool, same shape.
        alpha: temperature > 0.

    Returns:
        [B, ...] non-negative weights (no gradient).
    """
    with torch.no_grad():
        logits = (values / alpha).masked_fill(~valid, -torch.inf)
        top = logits.amax(0, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # columns without valid entries
        e = torch.exp(logits - top)
        w = e / e.sum(0, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
        return w * valid.sum(0, keepdim=True).to(values.dtype)


def icq_critic_targets(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    next_q_tot: torch.Tensor,
    alpha: float,
    gamma: float,
    td_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TD(lambda) targets of the ICQ-MA critic (icq.md Eq. 19-20 with Eq. 56).

        rho_t  = n * softmax_batch(Q'_tot(s_t, a_t) / alpha)        (per time index t)
        G_t    = TD(lambda) return of r with bootstrap values rho_{t+1} * Q'_tot(s_{t+1}, a_{t+1})

    Only (s, a) pairs of the dataset enter the targets. The weights are
    normalised over the episodes of the batch whose observation t is valid
    (obs 0 always, obs t >= 1 when step t - 1 is valid).

    Args:
        rewards, terminated, mask: [B, T].
        next_q_tot: [B, T + 1] target Q_tot at every observation (no gradient).
        alpha: critic temperature (official 1000).
        gamma, td_lambda: discount and lambda (official 0.99, 0.8).

    Returns:
        targets [B, T] (0 on invalid steps) and the weights rho [B, T + 1].
    """
    obs_valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1) > 0
    rho = minibatch_softmax_weights(next_q_tot, obs_valid, alpha)
    targets = td_lambda_targets(rewards, terminated, mask, rho * next_q_tot, gamma, td_lambda)
    return targets, rho


def icq_actor_loss(
    log_pi: torch.Tensor,
    q_all: torch.Tensor,
    actions: torch.Tensor,
    coef: torch.Tensor,
    mask: torch.Tensor,
    alpha: float,
    weighting: ActorWeighting = "code",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decomposed ICQ-MA actor loss (icq.md Eq. 18 with Eq. 56).

        adv_i = Q_i(tau, a_i) - sum_a pi_i(a | tau_i) Q_i(tau, a)
        "code":  w_i = k_i(s) * n * softmax_batch(adv_i / alpha)        (official code)
        "paper": w_i = n * softmax_batch(k_i(s) * adv_i / alpha)        (Eq. 17-18: exp(w^i Q^i / alpha) / Z^i)
        loss    = - mean_{valid steps, agents} w_i * log pi_i(a_i | tau_i)

    The softmax runs over the episodes of the batch separately for every
    time step and agent (valid steps only). Weights carry no gradient.

    Args:
        log_pi: [B, T, N, A] log-probabilities of the actor over available actions (with gradient).
        q_all: [B, T, N, A] per-agent critic values (no gradient).
        actions: [B, T, N] dataset actions.
        coef: [B, T, N] mixer coefficients k_i(s) (no gradient).
        mask: [B, T].
        alpha: actor temperature (official 0.1).
        weighting: "code" or "paper" (see above).

    Returns:
        (loss, weights [B, T, N], advantages [B, T, N]).
    """
    pi = log_pi.detach().exp()
    q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    adv = q_taken - (pi * q_all).sum(-1)
    valid = (mask > 0).unsqueeze(-1).expand_as(adv)
    if weighting == "code":
        w = coef * minibatch_softmax_weights(adv, valid, alpha)
    elif weighting == "paper":
        w = minibatch_softmax_weights(coef * adv, valid, alpha)
    else:
        raise ValueError(f"unknown actor weighting {weighting!r}; expected 'code' or 'paper'")
    w = w.detach()
    logp_taken = log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return masked_mean(-w * logp_taken, mask.unsqueeze(-1)), w, adv
