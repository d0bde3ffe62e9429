"""Losses shared by the continuous-action learners (CFCQL-C, MACQL-C, OMAR-C / ICQL-C, MATD3+BC;
MABCQ / BCQ-C and ICQ-C at the end of the file).

Pure functions of tensors (random draws use torch's global generator, which
the training loop seeds and checkpoints); each is tested against a
hand-computed case in tests/test_continuous_algos.py.

Shapes: B episodes, T steps, N agents, A action dims, C sampled actions,
K critics of an ensemble (leading dimension of critic outputs). ``mask``
[B, T] is 1 on valid steps; ``dim_mask`` [N, A] is 1 on the real action
dims of each agent (agents with fewer dims are zero-padded, envs/continuous.py).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.icq import minibatch_softmax_weights
from lit_omarl.algos.losses.vae import normal_log_prob

WeightMode = Literal["softmin", "softmax"]


def step_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, T, ...] over valid steps (mask [B, T]) and all trailing dims."""
    return masked_mean(x, mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim()))))


def ensemble_step_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_k step_mean(x[k], mask) for x [K, B, T, ...] (one loss per critic, summed as TD3's twin losses)."""
    return sum(step_mean(xk, mask) for xk in x)


def uniform_actions(shape: tuple[int, ...], low: float, high: float, dim_mask: torch.Tensor | None = None,
                    device: torch.device | None = None) -> torch.Tensor:
    """Uniform draws in [low, high] of shape [..., A] (padded dims set to 0)."""
    x = low + (high - low) * torch.rand(shape, device=device)
    return x if dim_mask is None else x * dim_mask.to(x.dtype)


def uniform_log_density(dim_mask: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """log density of a uniform action over the real dims: -A_i log(high - low) per agent; dim_mask [N, A] -> [N]."""
    return -dim_mask.to(torch.float32).sum(-1) * math.log(high - low)


def gaussian_noise_log_density(noise: torch.Tensor, std: float, dim_mask: torch.Tensor | None = None) -> torch.Tensor:
    """sum over real dims of log N(noise_d; 0, std^2): the log density the CQL code assigns to a noisy policy
    action pi(o) + noise (clipping to the bounds ignored, as in the code). noise [..., A] -> [...]."""
    lp = normal_log_prob(noise, 0.0, std)
    if dim_mask is not None:
        lp = lp * dim_mask.to(lp.dtype)
    return lp.sum(-1)


def noisy_policy_samples(actions: torch.Tensor, n_samples: int, std: float, low: float, high: float,
                         dim_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """C noisy copies of policy actions: clamp(pi + eps, low, high), eps ~ N(0, std^2).

    actions [..., N, A] -> (samples [..., N, C, A], log density [..., N, C])."""
    noise = torch.randn(*actions.shape[:-1], n_samples, actions.shape[-1], dtype=actions.dtype, device=actions.device) * std
    if dim_mask is not None:
        noise = noise * dim_mask.unsqueeze(-2).to(noise.dtype)
    samples = (actions.unsqueeze(-2) + noise).clamp(low, high)
    if dim_mask is not None:
        samples = samples * dim_mask.unsqueeze(-2).to(samples.dtype)
    return samples, gaussian_noise_log_density(noise, std, None if dim_mask is None else dim_mask.unsqueeze(-2))


def counterfactual_joint_actions(actions: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Joint actions where only agent i's action is replaced by its samples, the others keep the dataset's.

        out[..., i, c, k, :] = samples[..., i, c, :] if k == i else actions[..., k, :]

    Args:
        actions: [..., N, A] dataset joint actions.
        samples: [..., N, C, A] candidate actions of each agent.

    Returns:
        [..., N, C, N, A]
    """
    n = samples.shape[-3]
    own = torch.eye(n, dtype=torch.bool, device=actions.device)[:, None, :, None]  # [N(i), 1, N(k), 1]
    data = actions[..., None, None, :, :]  # [..., 1, 1, N, A]
    cand = samples.unsqueeze(-2)  # [..., N, C, 1, A]
    return torch.where(own, cand, data).expand(*samples.shape[:-1], n, actions.shape[-1])


def soft_logsumexp(q: torch.Tensor, log_density: torch.Tensor | float | None, temperature: float = 1.0) -> torch.Tensor:
    """CQL(H)'s estimate of log-sum-exp over actions from C samples:

        temperature * log sum_c exp((Q(a_c) - log p(a_c)) / temperature)

    ``log_density`` (the sampler's log p, broadcast to q [..., C]) is the
    importance-sampling correction (the code's ``soft_q``); None drops it.
    Not divided by C (the code's convention). Returns [...]."""
    x = q if log_density is None else q - log_density
    return temperature * torch.logsumexp(x / temperature, dim=-1)


def cfcql_c_gap(q_cf: torch.Tensor, q_data: torch.Tensor, lam: torch.Tensor, log_density: torch.Tensor | float | None,
                temperature: float = 1.0) -> torch.Tensor:
    """Counterfactual CQL regulariser of CFCQL-C (paper Eq. 7 with sampled actions), per critic and step:

        sum_i lambda_i * T log sum_c exp((Q(s, a^i_c, a_data^{-i}) - log p_i(a^i_c)) / T) - Q(s, a_data)

    Args:
        q_cf: [K, ..., N, C] Q of the counterfactual joint actions (agent i's action = sample c).
        q_data: [K, ...] Q of the dataset joint action.
        lam: [..., N] agent weights (sum to 1).
        log_density: [..., N, C] (or broadcastable) log p of the samples; None = no correction.
        temperature: T (the code's ``lse_temp``, 1).

    Returns:
        [K, ...]
    """
    return (lam * soft_logsumexp(q_cf, log_density, temperature)).sum(-1) - q_data


def macql_c_gap(q_joint: torch.Tensor, q_data: torch.Tensor, log_density: torch.Tensor | float | None,
                temperature: float = 1.0) -> torch.Tensor:
    """MACQL regulariser with C sampled JOINT actions (all agents resampled at once), per critic and step:

        T log sum_c exp((Q(s, a_c) - log p(a_c)) / T) - Q(s, a_data);   q_joint [K, ..., C], q_data [K, ...] -> [K, ...]."""
    return soft_logsumexp(q_joint, log_density, temperature) - q_data


def independent_cql_c_gap(q_samples: torch.Tensor, q_data: torch.Tensor, log_density: torch.Tensor | float | None,
                          temperature: float = 1.0) -> torch.Tensor:
    """ICQL / OMAR regulariser of each agent's own critic Q_i(o_i, .):

        T log sum_c exp((Q_i(o_i, a_c) - log p(a_c)) / T) - Q_i(o_i, a_i^data);   [K, ..., N, C], [K, ..., N] -> [K, ..., N]."""
    return soft_logsumexp(q_samples, log_density, temperature) - q_data


def counterfactual_weights(log_beta: torch.Tensor, log_pi: torch.Tensor | float, temperature: float,
                           mode: WeightMode = "softmin") -> torch.Tensor:
    """Agent weights lambda_i of CFCQL-C from behaviour densities (paper Eq. 9, B.41, B.42), no gradient.

    With a deterministic policy, E_{pi_i}[pi_i / beta_i] ~ 1 / beta_i(pi_i(o_i) | s) (B.42); taking logs,
    r_i = log pi_i - log beta_i(pi_i(o_i) | s), and

        "softmin" (the CFCQL-C code, the sign of Eq. B.41):  lambda = softmax_i(-temperature * r_i)
        "softmax" (the sign of Eq. 9):                        lambda = softmax_i(+temperature * r_i)

    The code's log pi is the constant log density of its N(0, 0.2) sampling
    noise at 0, the same for every agent, so it cancels. temperature 0 gives 1/N.

    Args:
        log_beta: [..., N] log beta_i(pi_i(o_i) | s) (e.g. from :func:`~lit_omarl.algos.losses.vae.vae_log_prob`).
        log_pi: [..., N] or a constant.
    """
    if mode not in ("softmin", "softmax"):
        raise ValueError(f"unknown weight mode {mode!r}; expected 'softmin' or 'softmax'")
    with torch.no_grad():
        ratio = log_pi - log_beta
        sign = -1.0 if mode == "softmin" else 1.0
        return torch.softmax(sign * temperature * ratio, dim=-1)


def action_l2(normalized: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_i mean (a_i)^2 over valid steps and dims: the code's actor regulariser (weight 1e-3), on actions
    normalised to [-1, 1]. normalized [B, T, N, A] -> scalar."""
    return sum(step_mean(normalized[:, :, i].pow(2), mask) for i in range(normalized.shape[2]))


__all__ = [
    "action_l2",
    "cfcql_c_gap",
    "counterfactual_joint_actions",
    "counterfactual_weights",
    "ensemble_step_mean",
    "gaussian_noise_log_density",
    "independent_cql_c_gap",
    "macql_c_gap",
    "noisy_policy_samples",
    "soft_logsumexp",
    "step_mean",
    "uniform_actions",
    "uniform_log_density",
]


def cql_action_samples(pi_now: torch.Tensor, pi_next: torch.Tensor | None, n_samples: int, low: float, high: float,
                       noise_std: float, dim_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent actions at which the CQL terms push Q down, with their sampler's log density.

    C uniform actions in [low, high] (log density -A_i log(high - low)); with
    ``pi_next`` given (the code's MaMuJoCo setting) also C noisy policy
    actions pi_i(o_t) + eps and C noisy pi_i(o_{t+1}) + eps, eps ~ N(0, noise_std^2)
    (both evaluated at the CURRENT state / observation, as in the code).

    Args:
        pi_now: [..., N, A] policy actions at o_t (no gradient); its shape gives the uniform draws' shape.
        pi_next: [..., N, A] policy actions at o_{t+1}, or None (uniform samples only, the code's MPE setting).
        n_samples: C per source.
        dim_mask: [N, A] real action dims.

    Returns:
        (samples [..., N, C', A], log density [..., N, C']) with C' = C or 3 C.
    """
    shape = (*pi_now.shape[:-1], n_samples, pi_now.shape[-1])
    samples = [uniform_actions(shape, low, high, dim_mask.unsqueeze(-2), pi_now.device)]
    log_d = [uniform_log_density(dim_mask, low, high).to(pi_now.device)[:, None].expand(shape[:-1])]
    if pi_next is not None:
        for pi in (pi_now, pi_next):
            x, lp = noisy_policy_samples(pi.detach(), n_samples, noise_std, low, high, dim_mask)
            samples.append(x)
            log_d.append(lp)
    return torch.cat(samples, dim=-2), torch.cat(log_d, dim=-1)


__all__.append("cql_action_samples")


# ---- MABCQ / BCQ (mabcq.md Sec. 3.2-3.3) and continuous ICQ-MA pieces (issue 5 part 3) -------------


def soft_clipped_double_q(q: torch.Tensor, weight: float = 0.75) -> torch.Tensor:
    """BCQ's clipped double Q of an ensemble q [K, ...]: weight * min_k q_k + (1 - weight) * max_k q_k -> [...]."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"double-Q weight must be in [0, 1], got {weight}")
    return weight * q.amin(0) + (1.0 - weight) * q.amax(0)


def value_deviation_weights(v_next: torch.Tensor, q_hat: torch.Tensor, reward: torch.Tensor,
                            terminated: torch.Tensor, gamma: float, optimism: float,
                            min_scale: float = 1e-6) -> torch.Tensor:
    """MABCQ's value deviation lambda_vd (mabcq.md Sec. 3.2.1 and 3.3), no gradient:

        E_i       = (Qhat_i(s, a_i) - r) / gamma                 (estimate of E_{s'} V_i*(s'))
        lambda_vd = clip(1 + (V_i*(s') - E_i) / |E_i|, 1 - epsilon, 1 + epsilon)

    |E_i| is floored at ``min_scale`` (the ratio is undefined at 0; the clip
    bounds the result anyway). Terminal transitions (no next state whose
    probability could be re-weighted) get 1.

    Args:
        v_next: [...] V_i*(s') = Qhat_i(s', pihat_i(s')) (target networks).
        q_hat: [...] Qhat_i(s, a_i) of the dataset action (target network).
        reward, terminated: broadcastable to [...] (e.g. [B, T, 1] for [B, T, N]).
        gamma: discount (> 0).
        optimism: epsilon in [0, 1] (mabcq.md Table 6: 0.48 - 0.8).
    """
    if not 0.0 <= optimism <= 1.0:
        raise ValueError(f"optimism (epsilon) must be in [0, 1], got {optimism}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0 for the value deviation, got {gamma}")
    with torch.no_grad():
        expected = (q_hat - reward) / gamma
        dev = 1.0 + (v_next - expected) / expected.abs().clamp_min(min_scale)
        dev = dev.clamp(1.0 - optimism, 1.0 + optimism)
        return torch.where(terminated.to(torch.bool), torch.ones_like(dev), dev)


def transition_normalization_weights(mu_sa: torch.Tensor, mu_sas: torch.Tensor,
                                     max_weight: float | None = None) -> torch.Tensor:
    """MABCQ's transition normalization lambda_tn = 1 / P_B(s' | s, a_i) (mabcq.md Sec. 3.3), no gradient:

        lambda_tn = rho_N(0,I)(mu^1) / rho_N(0,I)(mu^2) = exp((|mu^2|^2 - |mu^1|^2) / 2)

    mu^1 = encoder mean of G^1(s, a_i), mu^2 = encoder mean of G^2(s, a_i, s')
    (latents of the same size, so the Gaussian constants cancel);
    ``max_weight`` clips the result from above (None: no clip, as the paper).

    Args:
        mu_sa: [..., Z]; mu_sas: [..., Z].

    Returns:
        [...]
    """
    if mu_sa.shape[-1] != mu_sas.shape[-1]:
        raise ValueError(f"transition normalization needs latents of one size, got {mu_sa.shape[-1]} and {mu_sas.shape[-1]}")
    with torch.no_grad():
        w = torch.exp(0.5 * (mu_sas.pow(2).sum(-1) - mu_sa.pow(2).sum(-1)))
        return w if max_weight is None else w.clamp(max=max_weight)


def icq_c_actor_loss(log_probs: torch.Tensor, advantage: torch.Tensor, coef: torch.Tensor, mask: torch.Tensor,
                     alpha: float, weighting: str = "code") -> tuple[torch.Tensor, torch.Tensor]:
    """Decomposed ICQ-MA actor loss (icq.md Eq. 18 with the mini-batch softmax of Eq. 56), continuous actions:

        "code":  w_i = k_i(s) * n * softmax_batch(A_i / alpha)
        "paper": w_i = n * softmax_batch(k_i(s) * A_i / alpha)
        loss     = - mean_{valid steps, agents} w_i * log pi_i(a_i | tau_i)

    The softmax runs over the episodes of the batch for every time step and
    agent (valid steps only), as
    :func:`~lit_omarl.algos.losses.icq.minibatch_softmax_weights`.

    Args:
        log_probs: [B, T, N] log pi_i(a_i | tau_i) of the dataset actions (with gradient).
        advantage: [B, T, N] A_i (no gradient).
        coef: [B, T, N] mixer coefficients k_i(s).
        mask: [B, T].

    Returns:
        (loss, weights [B, T, N]).
    """
    valid = (mask > 0).unsqueeze(-1).expand_as(advantage)
    if weighting == "code":
        w = coef * minibatch_softmax_weights(advantage, valid, alpha)
    elif weighting == "paper":
        w = minibatch_softmax_weights(coef * advantage, valid, alpha)
    else:
        raise ValueError(f"actor_weighting must be 'code' or 'paper', got {weighting!r}")
    w = w.detach()
    return masked_mean(-w * log_probs, mask.unsqueeze(-1)), w


__all__ += ["icq_c_actor_loss", "soft_clipped_double_q", "transition_normalization_weights", "value_deviation_weights"]
