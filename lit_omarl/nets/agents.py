"""Per-agent networks with parameters shared across agents.

Every agent network maps per-agent inputs to per-agent outputs (Q-values of
all actions or policy logits) and exposes one interface:

``forward_seq(inputs [B, T, N, in], h0=None) -> (out [B, T, N, out], h_last)``
    a whole sequence in one call (training on episode batches);
``step(inputs [B, N, in], h=None) -> (out [B, N, out], h)``
    one time step with an explicit hidden state (acting in an environment).

Agents share parameters; the one-hot agent id in the input distinguishes them
(the pymarl convention). :class:`AgentInputs` builds those inputs: the
observation, optionally the agent id one-hot and the previous action one-hot
(zeros at the first step of an episode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AgentInputs:
    """Builds ``[obs, agent id one-hot, last action one-hot]`` per agent.

    Attributes:
        obs_dim: per-agent observation size O.
        n_agents: number of agents N.
        n_actions: number of discrete actions A (size of the last-action one-hot).
        use_agent_id: append the agent id one-hot.
        use_last_action: append the previous action one-hot.
    """

    obs_dim: int
    n_agents: int
    n_actions: int
    use_agent_id: bool = True
    use_last_action: bool = True

    @property
    def dim(self) -> int:
        return self.obs_dim + self.n_agents * self.use_agent_id + self.n_actions * self.use_last_action

    def build(self, obs: torch.Tensor, last_action_onehot: torch.Tensor | None = None) -> torch.Tensor:
        """Inputs of one or many steps: obs [..., N, O] (+ last_action_onehot [..., N, A]) -> [..., N, dim]."""
        parts = [obs]
        if self.use_agent_id:
            eye = torch.eye(self.n_agents, dtype=obs.dtype, device=obs.device)
            parts.append(eye.expand(*obs.shape[:-1], self.n_agents))
        if self.use_last_action:
            if last_action_onehot is None:
                last_action_onehot = obs.new_zeros(*obs.shape[:-1], self.n_actions)
            parts.append(last_action_onehot.to(obs.dtype))
        return torch.cat(parts, dim=-1)

    def sequence(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Inputs of whole episodes from t = 0.

        Args:
            obs: [B, T', N, O] observations, T' <= L + 1.
            actions: [B, L, N] long dataset actions; the last action at step t
                is ``actions[:, t - 1]`` and zeros at t = 0.

        Returns:
            [B, T', N, dim]
        """
        last = None
        if self.use_last_action:
            steps = obs.shape[1]
            onehot = F.one_hot(actions[:, : steps - 1], self.n_actions).to(obs.dtype)
            last = torch.cat([onehot.new_zeros(onehot.shape[0], 1, *onehot.shape[2:]), onehot], dim=1)
        return self.build(obs, last)


class RNNAgent(nn.Module):
    """fc -> ReLU -> GRU -> fc (pymarl's RNN agent; hidden 64 by default).

    ``forward_seq`` runs ``torch.nn.GRU`` over [B * N, T, hidden] in one call;
    ``step`` runs the same GRU for a single step, so both give the same outputs.
    """

    recurrent = True

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.rnn = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def initial_hidden(self, batch_size: int, n_agents: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch_size, n_agents, self.hidden_dim, device=device)

    def forward_seq(self, inputs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, n, _ = inputs.shape
        x = F.relu(self.fc1(inputs))  # [B, T, N, H]
        x = x.permute(0, 2, 1, 3).reshape(b * n, t, self.hidden_dim)
        h_last = None if h0 is None else h0.reshape(1, b * n, self.hidden_dim)
        # nn.GRU allocates its input projection [T, B*N, 3H] at once; cutting long
        # sequences into segments of at most ~8 MB keeps that buffer in reused heap
        # memory instead of fresh page-faulted pages on every call. Same results.
        seg = max(8, (8 << 20) // (b * n * 3 * self.hidden_dim * x.element_size()))
        if t <= seg:
            y, h_last = self.rnn(x, h_last)  # [B*N, T, H], [1, B*N, H]
        else:
            parts = []
            for chunk in x.split(seg, dim=1):  # split, not slicing: the backward of a slice
                y, h_last = self.rnn(chunk, h_last)  # zero-fills a full-size gradient buffer each time
                parts.append(y)
            y = torch.cat(parts, dim=1)
        y = y.reshape(b, n, t, self.hidden_dim).permute(0, 2, 1, 3)
        return self.fc2(y), h_last.reshape(b, n, self.hidden_dim)

    def step(self, inputs: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.forward_seq(inputs.unsqueeze(1), h)
        return out.squeeze(1), h


class MLPAgent(nn.Module):
    """Three-layer ReLU MLP (hidden 256 by default); feed-forward, no hidden state."""

    recurrent = False

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )

    def initial_hidden(self, batch_size: int, n_agents: int, device: torch.device | None = None) -> None:
        return None

    def forward_seq(self, inputs: torch.Tensor, h0: None = None) -> tuple[torch.Tensor, None]:
        return self.net(inputs), None

    def step(self, inputs: torch.Tensor, h: None = None) -> tuple[torch.Tensor, None]:
        return self.net(inputs), None


AGENTS: dict[str, type[nn.Module]] = {"rnn": RNNAgent, "mlp": MLPAgent}


def make_agent(kind: str, input_dim: int, output_dim: int, hidden_dim: int | None = None) -> RNNAgent | MLPAgent:
    """Builds an agent network by name ("rnn" or "mlp"); ``hidden_dim=None`` keeps the type's default."""
    if kind not in AGENTS:
        raise ValueError(f"unknown agent type {kind!r}; expected one of {sorted(AGENTS)}")
    kwargs = {} if hidden_dim is None else {"hidden_dim": int(hidden_dim)}
    return AGENTS[kind](input_dim, output_dim, **kwargs)
