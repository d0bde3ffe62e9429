"""Centralised value networks of the in-sample learners.

* :class:`CoupledMixer` - OMAC's coupled value factorization (CVF) with
  coupled credit assignment (CCA): state-value weights w^v(s), Q weights
  w^q(s, a) and the shared state value V_share(s) (omac.md Eq. 2-3).
* :class:`WeightedSumMixer` - the linear decomposition sum_i w_i(s) Q_i + b(s)
  with w_i >= 0 (not normalised), used by OMIGA for both Q_tot and V_tot and by
  OMAC's "w/o CVF" ablation (the ICQ / OMAR structure).
* :class:`JointActionCritic` - an ensemble of MLP critics Q_k(s, a_1..a_N) on
  the global state and the joint action one-hot (CTDE IQL / AWAC).

Like the mixers of :mod:`lit_omarl.nets.mixers`, the state-conditioned part is
computed once by ``hyper`` and applied by ``mix`` to [..., N] or [..., K, N].
The formulas themselves are the pure functions of
:mod:`lit_omarl.algos.losses.omac`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 3) -> nn.Sequential:
    """``layers`` Linear layers with ReLU between them (layers >= 1)."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def joint_action_onehot(actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """[..., N] long -> [..., N * A] float (concatenated per-agent one-hots)."""
    return F.one_hot(actions, n_actions).float().flatten(-2)


class WeightedSumParams(NamedTuple):
    w: torch.Tensor  # [..., N] >= 0
    b: torch.Tensor  # [...]


class WeightedSumMixer(nn.Module):
    """Q_tot = sum_i w_i(s) Q_i + b(s), w_i(s) = |f_w(h(s))| >= 0, h(s) = ReLU(Linear(s)).

    One hidden layer of ``hidden_dim`` units shared by the two heads (the
    OMIGA code's MixNet, 64 units). The same weights mix local state values:
    V_tot = sum_i w_i(s) V_i + b(s).
    """

    def __init__(self, n_agents: int, state_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU())
        self.w_head = nn.Linear(hidden_dim, n_agents)
        self.b_head = nn.Linear(hidden_dim, 1)

    def hyper(self, states: torch.Tensor) -> WeightedSumParams:
        h = self.body(states)
        return WeightedSumParams(self.w_head(h).abs(), self.b_head(h).squeeze(-1))

    def mix(self, values: torch.Tensor, params: WeightedSumParams) -> torch.Tensor:
        if values.dim() == params.w.dim() + 1:  # candidates [..., K, N]
            return (values * params.w.unsqueeze(-2)).sum(-1) + params.b.unsqueeze(-1)
        return (values * params.w).sum(-1) + params.b

    def forward(self, values: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.mix(values, self.hyper(states))


class CoupledParams(NamedTuple):
    w_v: torch.Tensor  # [..., N] >= 0, state-value credit w^v(s)
    v_share: torch.Tensor  # [...], V_share(s)
    h_v: torch.Tensor  # [..., H], the shared state encoding h_v(s)


class CoupledMixer(nn.Module):
    """OMAC's coupled value factorization (omac.md Eq. 2-3).

        h_v(s) = f_v1(s),  h_q(s, a) = f_q1(s, onehot(a))
        w^v(s) = |f_v2(h_v(s))|
        w^q(s, a) = |f_q2(concat(h_v(s), h_q(s, a)))|      (coupled credit assignment)
        w^q(s, a) = |f_q2(h_q(s, a))|                      (coupled=False: "w/o CCA")
        V_share(s) = 3-layer MLP

    f_v1 and f_q1 are two ReLU layers, f_v2 / f_q2 one linear layer, so every
    weight path is a 3-layer ReLU MLP of ``hidden_dim`` units (64, omac.md A.1).
    With CCA the gradient of the Q loss through w^q also trains h_v, i.e. the
    encoder of w^v. The paper conditions on the joint observation o; we use the
    global state s, as the pymarl mixers do.
    """

    def __init__(self, n_agents: int, state_dim: int, n_actions: int, hidden_dim: int = 64, coupled: bool = True) -> None:
        super().__init__()
        self.n_actions, self.coupled = n_actions, coupled
        self.f_v1 = mlp(state_dim, hidden_dim, hidden_dim, layers=2)
        self.f_v2 = nn.Linear(hidden_dim, n_agents)
        self.f_q1 = mlp(state_dim + n_agents * n_actions, hidden_dim, hidden_dim, layers=2)
        self.f_q2 = nn.Linear(2 * hidden_dim if coupled else hidden_dim, n_agents)
        self.v_share = mlp(state_dim, hidden_dim, 1, layers=3)

    def hyper(self, states: torch.Tensor) -> CoupledParams:
        """The action-free part at states [..., S]: w^v, V_share and h_v."""
        h_v = F.relu(self.f_v1(states))
        return CoupledParams(self.f_v2(h_v).abs(), self.v_share(states).squeeze(-1), h_v)

    def q_weights(self, states: torch.Tensor, actions: torch.Tensor, params: CoupledParams) -> torch.Tensor:
        """w^q(s, a) [..., N] for joint actions [..., N] long at states [..., S]."""
        h_q = F.relu(self.f_q1(torch.cat([states, joint_action_onehot(actions, self.n_actions)], dim=-1)))
        if self.coupled:
            h_q = torch.cat([params.h_v, h_q], dim=-1)
        return self.f_q2(h_q).abs()


class JointActionCritic(nn.Module):
    """Ensemble of ``n_critics`` MLPs Q_k(s, onehot(a_1), .., onehot(a_N)) (CTDE critic).

    ``forward(states [..., S], actions [..., N] or [..., K, N]) -> [n_critics, ...(, K)]``.
    """

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, hidden_dim: int = 256, n_critics: int = 2) -> None:
        super().__init__()
        self.n_actions = n_actions
        in_dim = state_dim + n_agents * n_actions
        self.critics = nn.ModuleList(mlp(in_dim, hidden_dim, 1, layers=3) for _ in range(n_critics))

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if actions.dim() == states.dim() + 1:  # candidates [..., K, N]
            states = states.unsqueeze(-2).expand(*actions.shape[:-1], states.shape[-1])
        x = torch.cat([states, joint_action_onehot(actions, self.n_actions)], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.critics])
