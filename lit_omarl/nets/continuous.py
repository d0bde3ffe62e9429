"""Networks of the continuous-action learners (CFCQL-C, MACQL-C, OMAR-C / ICQL-C, MATD3+BC, BC-C).

* :class:`EnsembleLinear` / :class:`EnsembleMLP` - M independent MLPs whose
  layers run as one batched matmul (members = agents, twin critics, or both).
* :class:`PerAgentMLP` - one 3-layer MLP per agent (no parameter sharing, as
  the OMAR / CFCQL-C code's per-agent policies) behind the agent-network
  interface (``forward_seq`` / ``step``) of :mod:`lit_omarl.nets.agents`.
* :func:`make_actor` - deterministic actor: shared agent network (GRU / MLP
  with agent id) or one network per agent; outputs pre-tanh values that
  :func:`squash` maps into ``[low, high]``.
* :class:`CentralCritic` - an ensemble (twin by default) of Q_k(s, a^1..a^N)
  on the global state and the concatenated joint action; the state part of
  the first layer is computed once per state and broadcast over candidate
  joint actions (CQL samples, counterfactual actions).
* :class:`AgentCritic` - independent Q_k^i(o_i, a_i) per agent (OMAR / ICQL).
* :class:`VAE` - conditional VAE p(a | c) (BCQ / Wu et al. style, hidden 750,
  latent 2 x action dim, tanh decoder scaled to the bounds) with the
  latent samples for the importance-sampling density estimate of CFCQL App. B.2
  (Eq. B.43, computed by :func:`lit_omarl.algos.losses.vae.vae_log_prob`).
* :class:`ContinuousAgentInputs` - agent inputs whose "last action" is the
  previous continuous action vector (zeros at t = 0) instead of a one-hot.
* :class:`AgentVAE` / :class:`AgentPerturbation` - one conditional VAE and one
  BCQ perturbation model per agent (MABCQ / per-agent BCQ).
* :class:`GaussianActor` - per-agent Gaussian policies with tanh means and
  state-independent stds on normalised actions (IQL-C, AWAC-C, ICQ-C).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lit_omarl.nets.agents import AgentInputs, RNNAgent, make_agent
from lit_omarl.nets.autoregressive import SeparateAgents

# Clamp of the VAE encoder's log std (CFCQL-C code).
LOG_STD_MIN, LOG_STD_MAX = -4.0, 15.0
# Last-layer init of deterministic actors (OMAR / CFCQL-C code: uniform(-3e-3, 3e-3), "prevent saturation").
ACTOR_OUT_INIT = 3e-3


def squash(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Maps unbounded actor outputs into [low, high]: low + (tanh(u) + 1) (high - low) / 2 (= tanh(u) on [-1, 1])."""
    if low == -1.0 and high == 1.0:
        return torch.tanh(u)
    return low + (torch.tanh(u) + 1.0) * (0.5 * (high - low))


@dataclass(frozen=True)
class ContinuousAgentInputs(AgentInputs):
    """``[obs, agent id one-hot, previous action]`` with the previous CONTINUOUS action vector (size A)."""

    def sequence(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """obs [B, T', N, O], actions float [B, L, N, A] (T' <= L + 1) -> [B, T', N, dim]."""
        last = None
        if self.use_last_action:
            prev = actions[:, : obs.shape[1] - 1].to(obs.dtype)
            last = torch.cat([prev.new_zeros(prev.shape[0], 1, *prev.shape[2:]), prev], dim=1)
        return self.build(obs, last)


class EnsembleLinear(nn.Module):
    """M independent linear layers: weight [M, in, out], bias [M, out] (nn.Linear's default init per member)."""

    def __init__(self, members: int, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, out_dim).uniform_(-bound, bound)) if bias else None

    @property
    def members(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor, members: int | None = None) -> torch.Tensor:
        """Per-member inputs x [M', ..., in] -> [M', ..., out] (the first M' = ``members`` members)."""
        m = self.members if members is None else members
        w = self.weight[:m]
        lead = x.shape[1:-1]
        flat = x.reshape(m, -1, x.shape[-1])
        out = torch.bmm(flat, w) if self.bias is None else torch.baddbmm(self.bias[:m].unsqueeze(1), flat, w)
        return out.reshape(m, *lead, w.shape[-1])

    def shared(self, x: torch.Tensor, members: int | None = None) -> torch.Tensor:
        """One input for every member: x [..., in] -> [M', ..., out]."""
        m = self.members if members is None else members
        w = self.weight[:m]
        out = x.reshape(-1, x.shape[-1]) @ w.permute(1, 0, 2).reshape(w.shape[1], -1)  # [R, M' * out]
        out = out.reshape(-1, m, w.shape[-1]).transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias[:m].unsqueeze(1)
        return out.reshape(m, *x.shape[:-1], w.shape[-1])


class EnsembleMLP(nn.Module):
    """M independent ReLU MLPs of ``layers`` linear layers; x [M, ..., in] (or shared [..., in]) -> [M, ..., out]."""

    def __init__(self, members: int, in_dim: int, hidden_dim: int, out_dim: int, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"EnsembleMLP needs at least one layer, got {layers}")
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(members, dims[i], dims[i + 1]) for i in range(layers))

    def forward(self, x: torch.Tensor, shared_input: bool = False, members: int | None = None) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer.shared(x, members) if (k == 0 and shared_input) else layer(x, members)
            if k < len(self.layers) - 1:
                x = F.relu(x)
        return x


class PerAgentMLP(nn.Module):
    """One 3-layer ReLU MLP per agent (no sharing), batched; agent-network interface without hidden state."""

    recurrent = False

    def __init__(self, n_agents: int, input_dim: int, output_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.mlp = EnsembleMLP(n_agents, input_dim, hidden_dim, output_dim, layers=3)

    def initial_hidden(self, batch_size: int, n_agents: int, device: torch.device | None = None) -> None:
        return None

    def forward_seq(self, inputs: torch.Tensor, h0: None = None) -> tuple[torch.Tensor, None]:
        """inputs [..., N, in] -> ([..., N, out], None); agent i's inputs go through agent i's MLP."""
        return self.mlp(inputs.movedim(-2, 0)).movedim(0, -2), None

    def step(self, inputs: torch.Tensor, h: None = None) -> tuple[torch.Tensor, None]:
        return self.forward_seq(inputs)


def make_actor(kind: str, shared: bool, n_agents: int, input_dim: int, action_dim: int, hidden_dim: int | None) -> nn.Module:
    """Deterministic actor network (pre-tanh outputs [.., N, A]) with a small last layer (uniform +-3e-3).

    Args:
        kind: "mlp" or "rnn".
        shared: one network for all agents (agent id in the inputs) or one per agent.
        hidden_dim: None = 64 (the MPE setting of the OMAR / CFCQL code; 256 for MaMuJoCo).
    """
    hidden = 64 if hidden_dim is None else int(hidden_dim)
    if shared:
        net = make_agent(kind, input_dim, action_dim, hidden)
        outs = [net.fc2 if isinstance(net, RNNAgent) else net.net[-1]]
    elif kind == "mlp":
        net = PerAgentMLP(n_agents, input_dim, action_dim, hidden)
        outs = [net.mlp.layers[-1]]
    else:
        net = SeparateAgents([make_agent(kind, input_dim, action_dim, hidden) for _ in range(n_agents)])
        outs = [n.fc2 if isinstance(n, RNNAgent) else n.net[-1] for n in net.nets]
    with torch.no_grad():
        for layer in outs:
            layer.weight.uniform_(-ACTOR_OUT_INIT, ACTOR_OUT_INIT)
    return net


def per_agent_parameters(net: nn.Module, n_agents: int) -> list[list[tuple[torch.Tensor, int | None]]]:
    """Agent i's parameters of an actor / critic as (tensor, member index or None for the whole tensor).

    A shared network gives every agent the whole parameter list (one group)."""
    if isinstance(net, SeparateAgents):
        return [[(p, None) for p in sub.parameters()] for sub in net.nets]
    if isinstance(net, PerAgentMLP):
        return [[(p, i) for p in net.parameters()] for i in range(n_agents)]
    if isinstance(net, AgentCritic) and not net.shared:
        k = net.n_critics
        return [[(p, c * n_agents + i) for p in net.parameters() for c in range(k)] for i in range(n_agents)]
    return [[(p, None) for p in net.parameters()]]


@torch.no_grad()
def clip_grad_norm_per_agent(net: nn.Module, n_agents: int, max_norm: float) -> torch.Tensor:
    """Clips the gradient norm of each agent's own parameters separately (the per-agent optimizers
    of the OMAR / CFCQL code clip each agent's policy / critic at 0.5); a shared network is clipped as a whole.

    Returns the per-group norms before clipping."""
    norms = []
    for group in per_agent_parameters(net, n_agents):
        grads = [(p.grad if m is None else p.grad[m]) for p, m in group if p.grad is not None]
        if not grads:
            continue
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        norms.append(norm)
        scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale)
    return torch.stack(norms) if norms else torch.zeros(0)


class CentralCritic(nn.Module):
    """K critics Q_k(s, a^1..a^N): 3-layer ReLU MLPs on [s, a^1, .., a^N] (twin by default, as TD3).

    ``forward(state [*s, S], joint [*j, N, A])`` with ``*s`` broadcastable
    against ``*j`` (e.g. ``state[..., None, :]`` for candidate joint actions
    [..., C, N, A]) returns [K', *broadcast] for the first K' = ``members``
    critics (``members=1``: Q_1 only, used by the actors). The first layer is
    W_s s + W_a a + b, so the state part is computed once per state.
    """

    def __init__(self, state_dim: int, n_agents: int, action_dim: int, hidden_dim: int = 64, n_critics: int = 2) -> None:
        super().__init__()
        if n_critics < 1:
            raise ValueError(f"n_critics must be >= 1, got {n_critics}")
        self.n_critics = n_critics
        self.state_in = EnsembleLinear(n_critics, state_dim, hidden_dim)
        self.action_in = EnsembleLinear(n_critics, n_agents * action_dim, hidden_dim, bias=False)
        self.body = EnsembleMLP(n_critics, hidden_dim, hidden_dim, 1, layers=2)

    def forward(self, state: torch.Tensor, joint: torch.Tensor, members: int | None = None) -> torch.Tensor:
        h = self.state_in.shared(state, members) + self.action_in.shared(joint.flatten(-2), members)
        return self.body(F.relu(h), members=members).squeeze(-1)


class AgentCritic(nn.Module):
    """Independent critics Q_k^i(x_i, a_i) of every agent (K per agent, twin by default; OMAR / ICQL).

    ``shared=False`` (the code): separate parameters per agent and critic;
    ``shared=True``: one ensemble for all agents (put the agent id in x_i).

    ``forward(x [..., N, D], actions [..., N, A] or [..., N, C, A])`` returns
    [K', ..., N] or [K', ..., N, C].
    """

    def __init__(self, n_agents: int, input_dim: int, action_dim: int, hidden_dim: int = 64, n_critics: int = 2,
                 shared: bool = False) -> None:
        super().__init__()
        if n_critics < 1:
            raise ValueError(f"n_critics must be >= 1, got {n_critics}")
        self.n_agents, self.n_critics, self.shared = n_agents, n_critics, shared
        self.mlp = EnsembleMLP(n_critics * (1 if shared else n_agents), input_dim + action_dim, hidden_dim, 1, layers=3)

    def forward(self, x: torch.Tensor, actions: torch.Tensor, members: int | None = None) -> torch.Tensor:
        k = self.n_critics if members is None else members
        candidates = actions.dim() == x.dim() + 1
        if candidates:
            x = x.unsqueeze(-2).expand(*actions.shape[:-1], x.shape[-1])
        inp = torch.cat([x, actions.to(x.dtype)], dim=-1)
        agent_dim = -3 if candidates else -2
        if self.shared:
            return self.mlp(inp, shared_input=True, members=k).squeeze(-1)
        per_agent = inp.movedim(agent_dim, 0)  # [N, ..., D]
        n = self.n_agents
        out = self.mlp(per_agent.repeat(k, *([1] * (per_agent.dim() - 1))), members=k * n)  # [K'N, ..., 1]
        out = out.squeeze(-1).reshape(k, n, *per_agent.shape[1:-1])
        return out.movedim(1, agent_dim + 1)  # outputs have no feature dim


class VAE(nn.Module):
    """Conditional VAE of actions given a context c (state, or an agent's inputs), as the CFCQL-C code's.

    Encoder [c, a] -> 2 x ReLU(hidden) -> (mean, log std clamped to [-4, 15]);
    decoder [c, z] -> 2 x ReLU(hidden) -> low + (tanh + 1) (high - low) / 2.

    Args:
        cond_dim: size of the context c.
        action_dim: size of the modelled action (the joint action N x A for CFCQL-C).
        latent_dim: None = 2 x action_dim (code default).
        hidden_dim: 750 (code default).
        low, high: action bounds.
    """

    def __init__(self, cond_dim: int, action_dim: int, latent_dim: int | None = None, hidden_dim: int = 750,
                 low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        self.latent_dim = 2 * action_dim if latent_dim is None else int(latent_dim)
        self.low, self.high = float(low), float(high)
        self.e1 = nn.Linear(cond_dim + action_dim, hidden_dim)
        self.e2 = nn.Linear(hidden_dim, hidden_dim)
        self.mean = nn.Linear(hidden_dim, self.latent_dim)
        self.log_std = nn.Linear(hidden_dim, self.latent_dim)
        self.d1 = nn.Linear(cond_dim + self.latent_dim, hidden_dim)
        self.d2 = nn.Linear(hidden_dim, hidden_dim)
        self.d3 = nn.Linear(hidden_dim, action_dim)

    def encode(self, cond: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.e2(F.relu(self.e1(torch.cat([cond, action], dim=-1)))))
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def decode(self, cond: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.d2(F.relu(self.d1(torch.cat([cond, z], dim=-1)))))
        return squash(self.d3(h), self.low, self.high)

    def forward(self, cond: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction with z = mean + std * eps, mean, std)."""
        mean, std = self.encode(cond, action)
        return self.decode(cond, mean + std * torch.randn_like(std)), mean, std

    def sample(self, cond: torch.Tensor, deterministic: bool, clip: float = 0.5) -> torch.Tensor:
        """Decoded action with z = 0 (deterministic) or z ~ N(0, I) clipped to [-clip, clip] (BCQ convention)."""
        z = cond.new_zeros(*cond.shape[:-1], self.latent_dim)
        if not deterministic:
            z = torch.randn_like(z).clamp(-clip, clip)
        return self.decode(cond, z)

    def latent_samples(self, cond: torch.Tensor, action: torch.Tensor, n_samples: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n_samples`` latents z ~ q(z | c, a) and their decodings, for density estimates.

        cond [..., C], action [..., D] -> (z [L, ..., Z], decoded [L, ..., D], mean [..., Z], std [..., Z]).
        """
        mean, std = self.encode(cond, action)
        z = mean + std * torch.randn(n_samples, *mean.shape, dtype=mean.dtype, device=mean.device)
        return z, self.decode(cond.expand(n_samples, *cond.shape), z), mean, std


__all__ = [
    "AgentCritic",
    "CentralCritic",
    "ContinuousAgentInputs",
    "EnsembleLinear",
    "EnsembleMLP",
    "PerAgentMLP",
    "VAE",
    "clip_grad_norm_per_agent",
    "make_actor",
    "per_agent_parameters",
    "squash",
]


# ---- MABCQ / BCQ per-agent networks and Gaussian policies (issue 5 part 3) ----------------------


class AgentVAE(nn.Module):
    """One conditional VAE p_i(a_i | c_i) per agent, no parameter sharing (MABCQ's G_i^1 and G_i^2).

    Agent axis at -2: ``cond`` [..., N, C], ``action`` [..., N, A]; all leading
    dims (batch, time, candidates) are batched through one
    :class:`PerAgentMLP` each for encoder and decoder (agent i's rows only
    meet agent i's weights). Encoder [c, a] -> 2 ReLU layers -> (mean, log std
    clamped to [-4, 15]); decoder [c, z] -> 2 ReLU layers -> tanh scaled to
    [low, high] (BCQ's VAE, with one output layer for mean and log std).

    Args:
        n_agents: N.
        cond_dim: size of each agent's context c_i.
        action_dim: A.
        latent_dim: None = 2 x action_dim (BCQ); MABCQ Table 6: 10.
        hidden_dim: width of the hidden layers (BCQ 750; MABCQ Table 6: 64).
        low, high: action bounds.
    """

    def __init__(self, n_agents: int, cond_dim: int, action_dim: int, latent_dim: int | None = None,
                 hidden_dim: int = 750, low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        self.latent_dim = 2 * action_dim if latent_dim is None else int(latent_dim)
        self.low, self.high = float(low), float(high)
        self.encoder = PerAgentMLP(n_agents, cond_dim + action_dim, 2 * self.latent_dim, hidden_dim)
        self.decoder = PerAgentMLP(n_agents, cond_dim + self.latent_dim, action_dim, hidden_dim)

    def encode(self, cond: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of q_i(z | c_i, a_i), each [..., N, Z]."""
        out, _ = self.encoder.forward_seq(torch.cat([cond, action.to(cond.dtype)], dim=-1))
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def decode(self, cond: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Decoded actions [..., N, A] in [low, high]."""
        out, _ = self.decoder.forward_seq(torch.cat([cond, z.to(cond.dtype)], dim=-1))
        return squash(out, self.low, self.high)

    def forward(self, cond: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction with z = mean + std * eps, mean, std), for the ELBO."""
        mean, std = self.encode(cond, action)
        return self.decode(cond, mean + std * torch.randn_like(std)), mean, std

    def sample(self, cond: torch.Tensor, latents: torch.Tensor | None = None, clip: float = 0.5) -> torch.Tensor:
        """Decoded actions at latents z ~ N(0, I) clipped to [-clip, clip] (BCQ), or at the given
        ``latents`` (broadcast against [..., N, Z])."""
        if latents is None:
            latents = torch.randn(*cond.shape[:-1], self.latent_dim, dtype=cond.dtype, device=cond.device).clamp(-clip, clip)
        return self.decode(cond, latents.to(cond.dtype).expand(*cond.shape[:-1], self.latent_dim))


class AgentPerturbation(nn.Module):
    """BCQ's perturbation model, one per agent: xi_i(c, a) = clamp(a + phi tanh(f_i([c, a])), low, high).

    ``phi`` is the largest change of each action entry in action units
    (MABCQ's Phi times the half-range of the bounds). Agent axis at -2.
    """

    def __init__(self, n_agents: int, cond_dim: int, action_dim: int, hidden_dim: int, phi: float,
                 low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        if phi < 0:
            raise ValueError(f"perturbation range phi must be >= 0, got {phi}")
        self.phi, self.low, self.high = float(phi), float(low), float(high)
        self.net = PerAgentMLP(n_agents, cond_dim + action_dim, action_dim, hidden_dim)

    def forward(self, cond: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        delta, _ = self.net.forward_seq(torch.cat([cond, action.to(cond.dtype)], dim=-1))
        return (action + self.phi * torch.tanh(delta)).clamp(self.low, self.high)


class GaussianActor(nn.Module):
    """Per-agent Gaussian policies N(tanh(f_i(x_i)), diag(sigma_i^2)) over actions normalised to [-1, 1].

    The mean network is any agent network of :func:`make_actor` (shared or
    per agent, MLP or GRU); sigma_i is a state-independent parameter per agent
    and action dim, exp(log_std) with log_std clamped to [log_std_min,
    log_std_max] (the IQL reference policy: tanh mean, learned state-independent
    log std). ``forward_seq`` / ``step`` return the means [..., N, A].
    """

    def __init__(self, mean_net: nn.Module, n_agents: int, action_dim: int, log_std_min: float = -5.0,
                 log_std_max: float = 2.0) -> None:
        super().__init__()
        if not log_std_min < log_std_max:
            raise ValueError(f"log_std_min ({log_std_min}) must be below log_std_max ({log_std_max})")
        self.mean_net = mean_net
        self.log_std = nn.Parameter(torch.zeros(n_agents, action_dim))
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)

    @property
    def recurrent(self) -> bool:
        return bool(getattr(self.mean_net, "recurrent", False))

    def std(self) -> torch.Tensor:
        """sigma [N, A]."""
        return self.log_std.clamp(self.log_std_min, self.log_std_max).exp()

    def forward_seq(self, inputs: torch.Tensor, h0=None):
        u, h = self.mean_net.forward_seq(inputs, h0)
        return torch.tanh(u), h

    def step(self, inputs: torch.Tensor, h=None):
        u, h = self.mean_net.step(inputs, h)
        return torch.tanh(u), h

    def sample(self, mean: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """Normalised actions clamp(mean + sigma eps, -1, 1): [..., N, A], or [n, ..., N, A] with ``n_samples``."""
        shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
        eps = torch.randn(shape, dtype=mean.dtype, device=mean.device)
        return (mean + self.std() * eps).clamp(-1.0, 1.0)


__all__ += ["AgentPerturbation", "AgentVAE", "GaussianActor"]
