"""Autoregressive behaviour model of the other agents' joint action (AlberDICE / InSPO).

For every conditioning agent i and every other agent j != i the network gives

    mu(a^j | s, a^i, a^{k} for k < j, k != i)

so that the behaviour probability of the others' joint action given a^i factorises as

    log mu^{-i}(a^{-i} | s, a^i) = sum_{j != i} log mu(a^j | s, a^i, a^{k < j, k != i})

(InSPO Eq. 22; AlberDICE's "autoregressive data policy"). One feed-forward MLP
(3 layers, ReLU) is shared by all (i, j) pairs; its input is

    [s, one-hot(i), one-hot(j), one-hot(a^k) * 1{k = i or (k < j and k != i)} for k = 1..N]

i.e. the actions an agent may condition on are visible and the others zeroed.
All N * (N - 1) conditionals of a batch are evaluated in one call (teacher
forcing), also for joint actions that are not in the dataset (AlberDICE
evaluates sampled joint actions of the other agents).

:class:`SeparateAgents` holds one agent network per agent (no parameter
sharing) for the sequential-update methods that use these models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEG_INF = -1e10


def conditioning_mask(n_agents: int) -> torch.Tensor:
    """cond[i, j, k] = True when agent k's action is an input of mu(a^j | ...) conditioned on agent i.

    k = i, or k precedes j among the agents other than i. Rows j = i are all False (unused)."""
    idx = torch.arange(n_agents)
    i, j, k = idx[:, None, None], idx[None, :, None], idx[None, None, :]
    return ((k == i) | ((k < j) & (k != i))) & (j != i)


class AutoregressiveBehaviour(nn.Module):
    """mu(a^j | s, a^i, a^{k<j, k != i}) for all ordered pairs (i, j), j != i (see module docstring).

    Args:
        state_dim: size S of the conditioning input (the global state).
        n_agents: N.
        n_actions: A.
        hidden_dim: width of the two hidden layers.
    """

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions
        self.net = nn.Sequential(
            nn.Linear(state_dim + 2 * n_agents + n_agents * n_actions, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, n_actions),
        )
        self.register_buffer("cond", conditioning_mask(n_agents), persistent=False)

    def logits(self, state: torch.Tensor, joint: torch.Tensor, agent: int | None = None) -> torch.Tensor:
        """Logits of mu(a^j | s, conditioning actions of ``joint``).

        Args:
            state: [..., S].
            joint: [..., R, N] long: the joint action seen when conditioning on
                agent i, for R = N conditioning agents i (or R = 1: ``agent``).
            agent: condition on this agent only (R = 1).

        Returns:
            [..., R, N(j), A] (rows j = i are meaningless).
        """
        n, a = self.n_agents, self.n_actions
        rows = torch.arange(n, device=state.device) if agent is None else torch.tensor([agent], device=state.device)
        r = rows.numel()
        lead = state.shape[:-1]
        cond = self.cond[rows].to(state.dtype)  # [R, N(j), N(k)]
        onehot = F.one_hot(joint, a).to(state.dtype)  # [..., R, N(k), A]
        visible = onehot.unsqueeze(-3) * cond.unsqueeze(-1)  # [..., R, N(j), N(k), A]
        eye = torch.eye(n, dtype=state.dtype, device=state.device)
        x = torch.cat(
            [
                state[..., None, None, :].expand(*lead, r, n, state.shape[-1]),
                eye[rows][:, None, :].expand(*lead, r, n, n),  # one-hot(i)
                eye[None, :, :].expand(*lead, r, n, n),  # one-hot(j)
                visible.reshape(*lead, r, n, n * a),
            ],
            dim=-1,
        )
        return self.net(x)

    def log_prob_others(
        self, state: torch.Tensor, joint: torch.Tensor, avail: torch.Tensor, agent: int | None = None
    ) -> torch.Tensor:
        """log mu^{-i}(joint^{-i} | s, joint^i) for every agent i (or for ``agent`` only).

        Args:
            state: [..., S].
            joint: [..., N] long (the same joint action for every i) or [..., R, N].
            avail: [..., N, A] bool available actions (softmax over available ones only).
            agent: compute only for this conditioning agent (R = 1).

        Returns:
            [..., N] (or [...] with ``agent``); zeros when N = 1.
        """
        n = self.n_agents
        r = n if agent is None else 1
        if joint.dim() == state.dim():  # [..., N] -> [..., R, N]
            joint = joint.unsqueeze(-2).expand(*joint.shape[:-1], r, n)
        logits = self.logits(state, joint, agent).masked_fill(~avail.unsqueeze(-3), NEG_INF)
        taken = torch.log_softmax(logits, dim=-1).gather(-1, joint.unsqueeze(-1)).squeeze(-1)  # [..., R, N(j)]
        rows = torch.arange(n, device=state.device) if agent is None else torch.tensor([agent], device=state.device)
        others = rows[:, None] != torch.arange(n, device=state.device)[None, :]  # [R, N(j)]
        out = torch.where(others, taken, torch.zeros_like(taken)).sum(-1)
        return out if agent is None else out.squeeze(-1)


class SeparateAgents(nn.Module):
    """N agent networks WITHOUT parameter sharing, behind the interface of one shared agent network.

    Sequential-update methods (InSPO, AlberDICE) change one agent's policy while
    the others stay fixed, which a shared network cannot do. Agent i's network
    sees only agent i's inputs; hidden states (GRU) are stacked on the agent axis.

    Args:
        nets: one agent network per agent (``RNNAgent`` or ``MLPAgent``).
    """

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.recurrent = bool(getattr(nets[0], "recurrent", False))

    def __len__(self) -> int:
        return len(self.nets)

    def agent_seq(self, i: int, inputs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Agent i only: inputs [B, T, N, in] -> (out [B, T, out], h [B, 1, H] or None)."""
        out, h = self.nets[i].forward_seq(inputs[:, :, i : i + 1], h0)
        return out.squeeze(2), h

    def forward_seq(self, inputs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        outs, hs = [], []
        for i in range(len(self.nets)):
            out, h = self.nets[i].forward_seq(inputs[:, :, i : i + 1], None if h0 is None else h0[:, i : i + 1])
            outs.append(out)
            hs.append(h)
        return torch.cat(outs, dim=2), (torch.cat(hs, dim=1) if self.recurrent else None)

    def step(self, inputs: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, h = self.forward_seq(inputs.unsqueeze(1), h)
        return out.squeeze(1), h
