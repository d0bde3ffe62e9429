"""Loss functions of the offline MARL algorithms, as pure functions of tensors.

Shapes: B episodes, T steps, N agents, A actions. ``mask`` [B, T] is 1 on
valid steps. Unavailable actions are masked with ``NEG_INF`` (-1e10, as in
the CFCQL code) rather than -inf so that logsumexp / softmax stay finite.
Each function is tested against a hand-computed case in tests/test_losses.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F

NEG_INF = -1e10
KL_EPS = 1e-5

MixFn = Callable[[torch.Tensor, Any], torch.Tensor]
LambdaMode = Literal["softmax", "uniform", "onehot"]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(x * m) / max(sum(m), 1), with ``mask`` broadcast to ``x``."""
    mask = mask.to(x.dtype).expand_as(x)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def ensure_some_available(avail: torch.Tensor) -> torch.Tensor:
    """Marks every action available where none is (padded steps have all-zero
    ``avail``); keeps argmax / logsumexp over such rows finite. Their loss is masked."""
    return avail | ~avail.any(-1, keepdim=True)


def td_lambda_targets(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    target_qs: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """TD(lambda) returns G_t of Q_tot, computed by a backward recursion.

        G_t = r_t + gamma * (1 - d_t) * [(1 - lambda) * Q'_{t+1} + lambda * C_{t+1}]
        C_{t+1} = G_{t+1} if step t+1 is valid else Q'_{t+1}

    where Q'_{t} = ``target_qs[:, t]`` is the (double-Q) target value at the
    observation of step t and d_t = ``terminated``. lambda = 0 gives one-step
    targets, lambda = 1 Monte-Carlo returns bootstrapped at the episode's end.
    This equals pymarl's ``build_td_lambda_targets`` on every valid step
    except one corner case, where pymarl is off: an episode truncated (not
    terminated) before the batch's last step is bootstrapped here from
    Q'(last obs of that episode), while pymarl uses the batch's final
    Q' discounted by (lambda * gamma)^padding.

    Args:
        rewards, terminated, mask: [B, T].
        target_qs: [B, T + 1] target values at obs 0..T.
        gamma: discount factor.
        td_lambda: lambda in [0, 1].

    Returns:
        [B, T] targets (0 on invalid steps).
    """
    steps = rewards.shape[1]
    valid = mask > 0
    cont = gamma * (1.0 - terminated.to(rewards.dtype))
    carry = target_qs[:, steps]  # C_T: bootstrap after the batch's last step
    out = []
    for t in range(steps - 1, -1, -1):
        g = rewards[:, t] + cont[:, t] * ((1.0 - td_lambda) * target_qs[:, t + 1] + td_lambda * carry)
        out.append(g)
        carry = torch.where(valid[:, t], g, target_qs[:, t])
    return torch.stack(out[::-1], dim=1) * mask.to(rewards.dtype)


def counterfactual_candidates(q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Per-agent Q vectors of every single-agent deviation from the dataset action.

    ``cand[..., i, j, k] = Q_k(a_k)`` for k != i and ``Q_i(j)`` for k = i.

    Args:
        q_all: [..., N, A] per-agent Q-values of all actions.
        actions: [..., N] long dataset actions.

    Returns:
        [..., N, A, N]
    """
    n = q_all.shape[-2]
    q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [..., N]
    own = torch.eye(n, dtype=torch.bool, device=q_all.device).unsqueeze(-2)  # [N(i), 1, N(k)]
    return torch.where(own, q_all.unsqueeze(-1), q_taken[..., None, None, :])


def cql_counterfactual_term(
    q_all: torch.Tensor,
    actions: torch.Tensor,
    avail: torch.Tensor,
    mixer_params: Any,
    mix_fn: MixFn,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent counterfactual logsumexp of CFCQL (paper Eq. 7).

        Q_tot^{(i,j)} = f_s(Q_1(a_1), .., Q_i(j), .., Q_N(a_N))     (others keep dataset actions)
        neg_i = log sum_{j available} exp Q_tot^{(i,j)}

    All N * A candidates are mixed in ONE call of ``mix_fn`` with the
    hypernetwork outputs ``mixer_params`` computed once per state; when
    ``mix_fn`` is the method of a mixer with ``mix_counterfactual`` (QMixer),
    that fused kernel computes the same values without building candidates.

    Args:
        q_all: [B, T, N, A] per-agent Qs of all actions (with gradient).
        actions: [B, T, N] dataset actions.
        avail: [B, T, N, A] bool available actions.
        mixer_params: ``mixer.hyper(states [B, T, S])``.
        mix_fn: ``mixer.mix``: ([B, T, K, N], params) -> [B, T, K].

    Returns:
        neg [B, T, N] and the candidate Q_tot [B, T, N, A] (NEG_INF where unavailable).
    """
    b, t, n, a = q_all.shape
    cand_qtot = None
    fused = getattr(getattr(mix_fn, "__self__", None), "mix_counterfactual", None)
    if fused is not None:  # QMixer: rank-one kernel, no [B, T, N * A, N] candidate tensor
        q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        cand_qtot = fused(q_all, q_taken, mixer_params)
    if cand_qtot is None:
        cand = counterfactual_candidates(q_all, actions).reshape(b, t, n * a, n)
        cand_qtot = mix_fn(cand, mixer_params).reshape(b, t, n, a)
    cand_qtot = cand_qtot.masked_fill(~avail, NEG_INF)
    return torch.logsumexp(cand_qtot, dim=-1), cand_qtot


def counterfactual_lambda(
    cand_qtot: torch.Tensor,
    behaviour_probs: torch.Tensor,
    avail: torch.Tensor,
    temperature: float,
    mode: LambdaMode = "softmax",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Agent weights lambda_i of the CFCQL regulariser (paper Eq. 8, 9, B.40, B.41).

        mu_i(j)   = softmax_j Q_tot^{(i,j)}                                   (Eq. B.40)
        ratio_i   = sum_{j available} (mu_i(j) + eps) log((mu_i(j) + eps) / (beta_i(j) + eps))
        lambda_i  = softmax_i(+temperature * ratio_i)                         (Eq. 9 with KL)

    ratio_i is KL(mu_i || beta_i) as the official code computes it
    (``kl_div(log(beta + eps), mu + eps)``, eps = 1e-5, summed over available
    actions). The sign is POSITIVE, as in Eq. 9 and the official code: agents
    whose Boltzmann policy deviates more from the behaviour policy get more
    weight; the minus sign of Eq. B.41 is not used. temperature 0 gives 1/N,
    a very large one the one-hot of Eq. 8. ``mode="uniform"`` forces 1/N,
    ``mode="onehot"`` the argmax (the official ``softmax_temp=100``).
    lambda is detached, as in the official code: the weights are not trained.

    Args:
        cand_qtot: [B, T, N, A] candidate Q_tot (NEG_INF where unavailable).
        behaviour_probs: [B, T, N, A] beta_i(j), 0 on unavailable actions.
        avail: [B, T, N, A] bool.
        temperature: tau >= 0.
        mode: "softmax", "uniform" or "onehot".

    Returns:
        lambda [B, T, N] (sums to 1 over agents, no gradient) and ratio [B, T, N].
    """
    with torch.no_grad():
        mu = torch.softmax(cand_qtot.masked_fill(~avail, NEG_INF), dim=-1)
        return _lambda_of_mu(mu, behaviour_probs, avail, temperature, mode)


def _lambda_of_mu(
    mu: torch.Tensor,
    behaviour_probs: torch.Tensor | None,
    avail: torch.Tensor,
    temperature: float,
    mode: LambdaMode,
    log_behaviour: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """lambda and KL ratio of :func:`counterfactual_lambda` from mu = softmax_j Q_tot^{(i,j)}
    (``log_behaviour`` = log(behaviour_probs + KL_EPS) if already computed)."""
    if log_behaviour is None:
        log_behaviour = torch.log(behaviour_probs + KL_EPS)
    mu_eps = mu + KL_EPS
    kl = mu_eps * (torch.log(mu_eps) - log_behaviour)
    ratio = (kl * avail).sum(-1)
    n = ratio.shape[-1]
    if mode == "uniform":
        lam = torch.full_like(ratio, 1.0 / n)
    elif mode == "onehot":
        lam = F.one_hot(ratio.argmax(-1), n).to(ratio.dtype)
    elif mode == "softmax":
        lam = torch.softmax(temperature * ratio, dim=-1)
    else:
        raise ValueError(f"unknown lambda mode {mode!r}; expected 'softmax', 'uniform' or 'onehot'")
    return lam, ratio


def cfcql_counterfactual_reduce(
    avail: torch.Tensor,
    behaviour_probs: torch.Tensor | None,
    temperature: float,
    mode: LambdaMode = "softmax",
) -> Callable[[torch.Tensor, slice], tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]]:
    """The CFCQL regulariser of one chunk of states, for ``QMixer.counterfactual_reduce``.

    Given the candidates ``cand [c, N, A]`` (Q_tot^{(i,j)}, unmasked) of the
    states ``sl`` it returns, as :func:`cql_counterfactual_term` +
    :func:`counterfactual_lambda` + :func:`cfcql_gap` compute them:

        value = sum_i lambda_i neg_i,   neg_i = log sum_{j available} exp Q_tot^{(i,j)}
        d value / d cand[i, j] = lambda_i mu_i(j)      (lambda is detached, mu = softmax_j)
        extras = (neg [c, N], lambda [c, N], ratio [c, N])

    Args:
        avail: [R, N, A] bool available actions of the flattened (selected) states.
        behaviour_probs: [R, N, A] beta, or None for uniform weights 1/N (then ratio is 0).
        temperature, mode: as in :func:`counterfactual_lambda`.
    """

    unavail = ~avail
    log_beta = None if behaviour_probs is None else torch.log(behaviour_probs + KL_EPS)
    avail_f = None if behaviour_probs is None else avail.to(log_beta.dtype)

    def reduce(cand: torch.Tensor, sl: slice) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        cand = cand.masked_fill(unavail[sl], NEG_INF)
        neg = torch.logsumexp(cand, dim=-1)
        mu = torch.exp(cand - neg.unsqueeze(-1))  # softmax_j (faster than torch.softmax over 11 actions)
        if log_beta is None:
            lam = torch.full_like(neg, 1.0 / neg.shape[-1])
            ratio = torch.zeros_like(neg)
        else:
            lam, ratio = _lambda_of_mu(mu, None, avail_f[sl], temperature, mode, log_beta[sl])
        return (lam * neg).sum(-1), mu.mul_(lam.unsqueeze(-1)), (neg, lam, ratio)

    return reduce


def conservative_td_loss(
    cql_gap: torch.Tensor,
    td_error: torch.Tensor,
    mask: torch.Tensor,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """alpha * masked_mean(cql_gap) + masked_mean(0.5 * td_error^2).

    Returns (loss, cql part without alpha, td part)."""
    cql = masked_mean(cql_gap, mask)
    td = masked_mean(0.5 * td_error.pow(2), mask)
    return alpha * cql + td, cql, td


def cfcql_gap(neg: torch.Tensor, lam: torch.Tensor, q_taken_tot: torch.Tensor) -> torch.Tensor:
    """Per-step CFCQL regulariser sum_i lambda_i neg_i - Q_tot(s, a_data): [B, T, N] x2, [B, T] -> [B, T]."""
    return (lam * neg).sum(-1) - q_taken_tot


def cfcql_loss(
    neg: torch.Tensor,
    lam: torch.Tensor,
    q_taken_tot: torch.Tensor,
    td_error: torch.Tensor,
    mask: torch.Tensor,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CFCQL-D objective (paper Eq. 7):

        alpha * E[sum_i lambda_i neg_i - Q_tot(s, a_data)] + E[0.5 * (Q_tot(s, a_data) - G)^2]

    Args:
        neg: [B, T, N] from :func:`cql_counterfactual_term`.
        lam: [B, T, N] from :func:`counterfactual_lambda`.
        q_taken_tot: [B, T] Q_tot of the dataset joint action.
        td_error: [B, T] Q_tot(s, a_data) - G_t.
        mask: [B, T].
        alpha: CQL weight.

    Returns:
        (loss, cql part without alpha, td part).
    """
    return conservative_td_loss(cfcql_gap(neg, lam, q_taken_tot), td_error, mask, alpha)


# Elements of the [rows, K, N, A] uniform draws made at once by sample_available_actions.
SAMPLE_CHUNK_ELEMENTS = 1 << 21


def sample_available_actions(
    avail: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform samples among available actions of each agent.

    Independent uniform per-agent choices are exactly uniform over the
    available joint actions (their set is a product). Each choice is the
    argmax of uniform draws u [..., K, N, A] over the available actions; the
    draws are made in chunks of leading rows, which consumes the generator
    exactly as one ``torch.rand(*avail.shape[:-2], K, N, A)`` call would
    (same samples) without materialising the whole tensor.

    Args:
        avail: [..., N, A] bool (each row with at least one True).
        n_samples: K.

    Returns:
        [..., K, N] long.
    """
    lead, (n, a) = avail.shape[:-2], avail.shape[-2:]
    unavail = ~avail.reshape(-1, 1, n, a)  # [R, 1, N, A]
    rows = unavail.shape[0]
    out = torch.empty(rows, n_samples, n, dtype=torch.long, device=avail.device)
    step = max(1, SAMPLE_CHUNK_ELEMENTS // (n_samples * n * a))
    values = None
    for s in range(0, rows, step):
        u = torch.rand((min(step, rows - s), n_samples, n, a), generator=generator, device=avail.device)
        values = u.new_empty(u.shape[:-1]) if values is None or values.shape != u.shape[:-1] else values
        # max(dim).indices is the first maximal index, as argmax, and faster for a short last dim
        torch.max(u.masked_fill_(unavail[s : s + step], -1.0), dim=-1, out=(values, out[s : s + step]))
    return out.reshape(*lead, n_samples, n)


def macql_term(
    q_all: torch.Tensor,
    avail: torch.Tensor,
    q_taken_tot: torch.Tensor,
    mixer_params: Any,
    mix_fn: MixFn,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MACQL regulariser (paper Eq. 3 with the CQL(H) logsumexp), per step:

        log sum_{k=1..K} exp Q_tot(s, a^k) - Q_tot(s, a_data),   a^k ~ Uniform(available joint actions)

    The K sampled joint actions are mixed in one call of ``mix_fn``. As in the
    official code, the sum is not divided by K (a constant shift of log K).

    Args:
        q_all: [B, T, N, A] per-agent Qs.
        avail: [B, T, N, A] bool.
        q_taken_tot: [B, T].
        mixer_params / mix_fn: as in :func:`cql_counterfactual_term`.
        n_samples: K joint actions per state.
        generator: torch.Generator on q_all's device for reproducible samples.

    Returns:
        [B, T]
    """
    samples = sample_available_actions(avail, n_samples, generator)  # [B, T, K, N]
    # gather per agent ([..., N, K] indices): its backward scatters into q_all's size, not K times it
    q_samples = q_all.gather(-1, samples.transpose(-1, -2)).transpose(-1, -2)  # [B, T, K, N]
    return torch.logsumexp(mix_fn(q_samples, mixer_params), dim=-1) - q_taken_tot


def masked_log_softmax(logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """log softmax over available actions (NEG_INF logits elsewhere)."""
    return torch.log_softmax(logits.masked_fill(~avail, NEG_INF), dim=-1)


def bc_nll(logits: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Behaviour-cloning loss -E[log pi(a_data | o)] with pi = softmax over available actions.

    Args:
        logits: [..., N, A]; actions: [..., N] long; avail: [..., N, A] bool;
        mask: [...] valid steps (broadcast over agents).
    """
    logp = masked_log_softmax(logits, avail).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return masked_mean(-logp, mask.unsqueeze(-1))


def policy_actions(logits: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
    """Greedy (argmax) or sampled actions of categorical policies restricted to available actions."""
    logits = logits.masked_fill(~avail, NEG_INF)
    if deterministic:
        return logits.argmax(-1)
    return torch.distributions.Categorical(logits=logits).sample()
