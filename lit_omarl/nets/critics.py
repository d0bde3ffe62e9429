"""Centralised per-agent critics and the bias-free linear mixer of ICQ-MA.

:class:`StateObsCritic` is ICQ-MA's feed-forward critic Q_i(s, o_i, i; .):
the global state, the agent's observation and its id one-hot go through a
256-256 ReLU MLP; the "dueling" head adds a scalar V to the A advantages
(Q = A + V, without subtracting the mean of A, as the official critic does).
Parameters are shared across agents (the id one-hot tells them apart).

:class:`BiasFreeLinearMixer` is :class:`~lit_omarl.nets.mixers.LinearMixer`
without the state bias b(s): Q_tot = sum_i k_i(s) Q_i, the mixer of the
official ICQ-MA code (the paper's Eq. 16 has a bias; ``LinearMixer`` keeps it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_omarl.nets.mixers import LinearMixer, LinearMixParams


def state_obs_id_inputs(state: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Per-agent critic inputs ``[state, obs_i, one-hot(i)]``.

    Args:
        state: [..., S] global states.
        obs: [..., N, O] observations (same leading dims).

    Returns:
        [..., N, S + O + N]
    """
    n = obs.shape[-2]
    eye = torch.eye(n, dtype=obs.dtype, device=obs.device).expand(*obs.shape[:-1], n)
    return torch.cat([state.unsqueeze(-2).expand(*obs.shape[:-1], state.shape[-1]), obs, eye], dim=-1)


class StateObsCritic(nn.Module):
    """Q_i(s, o_i, i; .) for all actions: in -> hidden -> ReLU -> hidden -> ReLU -> A (+ V if dueling).

    Args:
        input_dim: S + O + N (see :func:`state_obs_id_inputs`).
        n_actions: number of actions A.
        hidden_dim: width of both hidden layers (official: 256).
        dueling: add a scalar state-value head, Q = A + V (official: True).
    """

    def __init__(self, input_dim: int, n_actions: int, hidden_dim: int = 256, dueling: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc_a = nn.Linear(hidden_dim, n_actions)
        self.fc_v = nn.Linear(hidden_dim, 1) if dueling else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc2(F.relu(self.fc1(inputs))))
        q = self.fc_a(x)
        return q if self.fc_v is None else q + self.fc_v(x)


class BiasFreeLinearMixer(LinearMixer):
    """Q_tot = sum_i k_i(s) Q_i with k_i(s) >= 0, sum_i k_i = 1 (no state bias).

    Same interface as :class:`LinearMixer` (``k``, ``hyper``, ``mix``,
    ``forward``); ``hyper`` returns a zero bias so candidate mixing works unchanged.
    """

    def __init__(self, n_agents: int, state_dim: int, hypernet_embed: int = 64) -> None:
        super().__init__(n_agents, state_dim, hypernet_embed)
        del self.hyper_b  # no parameters that never receive a gradient

    def hyper(self, states: torch.Tensor) -> LinearMixParams:
        k = self.k(states)
        return LinearMixParams(k, k.new_zeros(k.shape[:-1]))


def make_linear_mixer(n_agents: int, state_dim: int, hypernet_embed: int = 64, bias: bool = True) -> LinearMixer:
    """The linear mixer with (``LinearMixer``) or without (``BiasFreeLinearMixer``) the state bias b(s)."""
    cls = LinearMixer if bias else BiasFreeLinearMixer
    return cls(n_agents, state_dim, hypernet_embed)
