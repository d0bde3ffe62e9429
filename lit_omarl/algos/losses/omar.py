"""Losses of OMAR / ICQL in discrete action spaces (independent learners + CQL).

Shapes: B episodes, T steps, N agents, A actions; ``mask`` [B, T] is 1 on
valid steps. Every agent i has its own Q_i(o_i, .) (parameters shared with an
agent id) and its own policy pi_i; no mixer. Tested by hand in tests/test_omar.py.
"""

from __future__ import annotations

from typing import Literal

import torch

from lit_omarl.algos.losses import NEG_INF, masked_mean

OMAR_SIGMA_EPS = 0.01  # added to the refitted sigma after every iteration (CFCQL code's discrete OMAR)


def independent_cql_loss(
    q_all: torch.Tensor,
    actions: torch.Tensor,
    avail: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    alpha: float,
    mask_unavailable: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """TD + CQL(H) loss of N independent per-agent Q-functions.

        td_i  = (Q_i(o_i, a_i^data) - y_i)^2
        gap_i = log sum_j exp Q_i(o_i, j) - Q_i(o_i, a_i^data)
        loss  = mean_{valid steps, agents} td_i + alpha * mean_{valid steps, agents} gap_i

    The squared error carries no 0.5 factor (as the OMAR learner of the CFCQL
    code). The logsumexp runs over ALL actions, as in that code, unless
    ``mask_unavailable`` (then unavailable actions are excluded).

    Args:
        q_all: [B, T, N, A] online Q_i of all actions (with gradient).
        actions: [B, T, N] long dataset actions.
        avail: [B, T, N, A] bool available actions.
        targets: [B, T, N] TD targets y_i (no gradient).
        mask: [B, T].
        alpha: CQL weight.
        mask_unavailable: leave unavailable actions out of the logsumexp.

    Returns:
        (loss, cql gap without alpha, td part, Q_i(o_i, a_i^data) [B, T, N]).
    """
    q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    q_neg = q_all.masked_fill(~avail, NEG_INF) if mask_unavailable else q_all
    gap = torch.logsumexp(q_neg, dim=-1) - q_taken
    m = mask.unsqueeze(-1)
    td = masked_mean((q_taken - targets).pow(2), m)
    cql = masked_mean(gap, m)
    return td + alpha * cql, cql, td, q_taken


def bootstrap_values(
    target_q: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    next_probs: torch.Tensor,
    mode: Literal["data", "policy"],
) -> torch.Tensor:
    """Per-agent values V_i(o_t) [B, T+1, N] that the TD(lambda) targets bootstrap from.

    ``mode="data"`` (the CFCQL code's discrete OMAR): Q'_i(o_t, a_t^data), a
    SARSA target, wherever step t holds a dataset action; where it does not
    (the observation after a batch window or after an episode's last step)
    the policy expectation below is used instead.
    ``mode="policy"`` (the OMAR paper's actor-critic target): sum_a pi_i(a | o_t) Q'_i(o_t, a).

    Args:
        target_q: [B, T+1, N, A] target-network Q_i at o_0..o_T.
        actions: [B, T, N] dataset actions.
        mask: [B, T] valid steps.
        next_probs: [B, T+1, N, A] pi_i(. | o_t), 0 on unavailable actions.
        mode: "data" or "policy".
    """
    expected = (next_probs * target_q).sum(-1)
    if mode == "policy":
        return expected
    if mode != "data":
        raise ValueError(f"unknown bootstrap mode {mode!r}; expected 'data' or 'policy'")
    steps = actions.shape[1]
    taken = target_q[:, :steps].gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    valid = (mask > 0).unsqueeze(-1)
    return torch.cat([torch.where(valid, taken, expected[:, :steps]), expected[:, steps:]], dim=1)


def omar_index_search(
    q: torch.Tensor, avail: torch.Tensor, noise: torch.Tensor, sigma_eps: float = OMAR_SIGMA_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """OMAR's zeroth-order (CEM-like) search over discrete action indices.

    The CFCQL code's discrete OMAR treats the action index as a real number:
    start with mu = sigma = A / 2 and repeat, for each of the I noise slices,

        x_k     = clamp(mu + sigma * eps_k, 0, A - 1),  k = 1..K
        a_k     = floor(x_k + 0.5)                       (nearest index)
        q_k     = Q(a_k) if a_k is available else NEG_INF
        w_k     = softmax_k(q_k)
        mu      = sum_k w_k a_k
        sigma   = sqrt(mean_k ((a_k - mu) * avail(a_k))^2) + sigma_eps

    and return the best sample of the LAST iteration (first one on ties).

    Args:
        q: [..., A] Q-values (no gradient needed).
        avail: [..., A] bool.
        noise: [I, ..., K] standard-normal draws (I iterations, K samples).
        sigma_eps: floor added to sigma.

    Returns:
        (best sampled action [...] long, its value [...] (NEG_INF if unavailable)).
    """
    n_actions = q.shape[-1]
    mu = q.new_full(q.shape[:-1], n_actions / 2.0)
    sigma = q.new_full(q.shape[:-1], n_actions / 2.0)
    if noise.shape[0] < 1:
        raise ValueError("omar_index_search needs at least one iteration of noise")
    for eps in noise:
        x = (mu.unsqueeze(-1) + sigma.unsqueeze(-1) * eps).clamp(0.0, n_actions - 1.0)
        acts = torch.floor(x + 0.5).long()  # [..., K]
        ok = avail.gather(-1, acts)
        q_samples = q.gather(-1, acts).masked_fill(~ok, NEG_INF)
        w = torch.softmax(q_samples, dim=-1)
        mu = (w * acts.to(q.dtype)).sum(-1)
        dev = (acts.to(q.dtype) - mu.unsqueeze(-1)) * ok.to(q.dtype)
        sigma = dev.pow(2).mean(-1).sqrt() + sigma_eps
    best = q_samples.argmax(-1, keepdim=True)
    return acts.gather(-1, best).squeeze(-1), q_samples.gather(-1, best).squeeze(-1)


def omar_targets(
    q: torch.Tensor,
    avail: torch.Tensor,
    policy_actions: torch.Tensor,
    noise: torch.Tensor,
    sigma_eps: float = OMAR_SIGMA_EPS,
) -> torch.Tensor:
    """Regression target of the OMAR policy term: the search's best sample if its
    Q is strictly higher than Q(policy's greedy action), else the greedy action.

    Args:
        q: [..., A]; avail: [..., A] bool; policy_actions: [...] long (available);
        noise: [I, ..., K] as in :func:`omar_index_search`.

    Returns:
        [...] long target actions.
    """
    cem_actions, cem_q = omar_index_search(q, avail, noise, sigma_eps)
    pol_q = q.gather(-1, policy_actions.unsqueeze(-1)).squeeze(-1)
    return torch.where(cem_q > pol_q, cem_actions, policy_actions)


def policy_gradient_loss(
    logp: torch.Tensor,
    q: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    mode: Literal["dataset_advantage", "expected_q"] = "dataset_advantage",
) -> torch.Tensor:
    """Policy-improvement term of each agent's actor (Q is treated as a constant).

    ``"dataset_advantage"`` (the CFCQL code's discrete OMAR, COMA-style):

        - mean[ (Q_i(a^data) - sum_a pi_i(a) Q_i(a)) * log pi_i(a^data) ]

    ``"expected_q"`` (the exact discrete analogue of OMAR's deterministic
    policy gradient max_pi E[Q_i(o, pi(o))]):

        - mean[ sum_a pi_i(a) Q_i(a) ]

    Args:
        logp: [B, T, N, A] masked log-softmax of the policy (with gradient).
        q: [B, T, N, A] Q_i (detached here).
        actions: [B, T, N] dataset actions; mask: [B, T].
    """
    q = q.detach()
    probs = logp.exp()
    m = mask.unsqueeze(-1)
    if mode == "expected_q":
        return masked_mean(-(probs * q).sum(-1), m)
    if mode != "dataset_advantage":
        raise ValueError(f"unknown pg mode {mode!r}; expected 'dataset_advantage' or 'expected_q'")
    baseline = (probs.detach() * q).sum(-1)
    advantage = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - baseline
    logp_taken = logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return masked_mean(-advantage * logp_taken, m)


def target_nll(logp: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """- mean log pi_i(target_i): the OMAR regression of the policy onto the searched action."""
    return masked_mean(-logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1), mask.unsqueeze(-1))


def omar_actor_loss(pg: torch.Tensor, omar_nll: torch.Tensor | None, omar_coe: float) -> torch.Tensor:
    """(1 - omar_coe) * pg + omar_coe * omar_nll; plain ``pg`` without the OMAR term (ICQL)."""
    if omar_nll is None:
        return pg
    return (1.0 - omar_coe) * pg + omar_coe * omar_nll


__all__ = [
    "OMAR_SIGMA_EPS",
    "bootstrap_values",
    "independent_cql_loss",
    "omar_actor_loss",
    "omar_index_search",
    "omar_targets",
    "policy_gradient_loss",
    "target_nll",
]
