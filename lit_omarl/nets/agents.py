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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


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


# Elements of the per-chunk gate buffer of the fused GRU ([steps, rows, 4H]): the
# recurrence runs over a few time steps at a time, so the input projection, the
# saved gates and the backward's gate gradients live in cache-sized blocks that
# the allocator reuses instead of sequence-sized tensors on fresh pages.
GRU_CHUNK_ELEMENTS = 1 << 19


# Intra-op threads of the fused GRU (None: torch's setting). A pass is thousands of small
# operations ([B * N, H] element-wise ops and per-chunk products); with two OpenMP threads each
# one waits for the other thread to wake up, which cost 18 - 26 % more CPU time per CFCQL / QMIX
# update than one thread, and as much wall time on a loaded 2-core machine (benchmarks/README.md).
# On the idle machine, however, two threads were faster in wall time (CFCQL-D, SMAC 2s3z shape,
# batch 128, 2 threads: 0.66 s per update with None vs 0.84 s with 1), so the default is torch's
# setting; set 1 when the machine is shared.
GRU_THREADS: int | None = None


class _Threads:
    """Context: at most ``GRU_THREADS`` intra-op threads inside; torch's count restored after."""

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        if GRU_THREADS is not None and GRU_THREADS < self.saved:
            torch.set_num_threads(GRU_THREADS)

    def __exit__(self, *exc: Any) -> None:
        if torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)


def _chunk_steps(rows: int, hidden: int, steps: int) -> int:
    return max(1, min(steps, GRU_CHUNK_ELEMENTS // max(1, rows * 4 * hidden)))


def _time_major(x: torch.Tensor, s: int, e: int) -> torch.Tensor:
    """Steps s:e of a [B, T, N, D] tensor as a contiguous [(e - s) * B * N, D] block (rows (t, b, n))."""
    return x[:, s:e].transpose(0, 1).reshape(-1, x.shape[-1])


def _gru_agent_forward(inputs: torch.Tensor, h0: torch.Tensor, params: tuple, save: bool):
    """fc1 -> ReLU -> GRU -> fc2 over whole sequences, chunk by chunk of time steps.

    The gates are those of ``torch.nn.GRU``: r, z = sigmoid(gi + gh), n = tanh(gi_n + r gh_n),
    h' = (1 - z) n + z h, with gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh. Per chunk
    the input projection of the r, z gates (with b_hh's r, z part folded in) is
    written straight into the gate block ``S = [r, z, gh_n, n]`` of each step, so
    a step is two matrix products accumulating into S and four element-wise
    operations. With ``save`` the blocks and hidden states of every chunk are
    kept for the backward pass (fresh per chunk); otherwise one set is reused.

    Returns out [B, T, N, A], the last hidden state [B * N, H] and the saved chunks.
    """
    w1, b1, w_ih, b_ih, w_hh, b_hh, w2, b2 = params
    b, t, n, _ = inputs.shape
    rows, hid, a = b * n, w_hh.shape[1], w2.shape[0]
    h2 = 2 * hid
    c = _chunk_steps(rows, hid, t)
    out = inputs.new_empty(b, t, n, a)
    w1t, w2t = w1.t(), w2.t()
    w_rz_t, w_in_t = w_ih[:h2].t(), w_ih[h2:].t()
    w_hrz_t, w_hn_t = w_hh[:h2].t(), w_hh[h2:].t()
    b_rz, b_in, b_hn = b_ih[:h2] + b_hh[:h2], b_ih[h2:], b_hh[h2:]
    gin_all = inputs.new_empty(c * rows, hid)  # input projection of the n gate
    saved = []
    if not save:  # one set of buffers, reused by every chunk
        hb_all = inputs.new_empty(c + 1, rows, hid)
        sg_all = inputs.new_empty(c, rows, 4 * hid)
        x1_all = inputs.new_empty(c * rows, hid)
    h = h0
    for s in range(0, t, c):
        k = min(c, t - s)
        xin = _time_major(inputs, s, s + k)
        if save:
            x1 = torch.addmm(b1, xin, w1t).relu_()
            hb = inputs.new_empty(k + 1, rows, hid)
            sg = inputs.new_empty(k, rows, 4 * hid)
        else:
            x1 = torch.addmm(b1, xin, w1t, out=x1_all[: k * rows]).relu_()
            hb, sg = hb_all, sg_all[:k]
        torch.addmm(b_rz, x1, w_rz_t, out=sg.view(k * rows, 4 * hid)[:, :h2])
        gin = torch.addmm(b_in, x1, w_in_t, out=gin_all[: k * rows]).view(k, rows, hid)
        hb[0] = h
        for j in range(k):
            gate, hj = sg[j], hb[j]
            rz = gate[:, :h2].addmm_(hj, w_hrz_t).sigmoid_()
            ghn = torch.addmm(b_hn, hj, w_hn_t, out=gate[:, h2 : 3 * hid])
            new = torch.addcmul(gin[j], ghn, rz[:, :hid], out=gate[:, 3 * hid :]).tanh_()
            torch.lerp(new, hj, rz[:, hid:], out=hb[j + 1])  # (1 - z) n + z h
        y = torch.addmm(b2, hb[1 : k + 1].reshape(k * rows, hid), w2t)
        out[:, s : s + k] = y.view(k, b, n, a).transpose(0, 1)
        h = hb[k]
        if save:
            saved.append((s, k, x1, hb, sg))
    return out, h.clone(), saved


class _FusedGRUAgent(torch.autograd.Function):
    """Autograd of :func:`_gru_agent_forward`, backpropagating chunk by chunk in reverse.

    Within a step, the gate gradients are products of the incoming hidden-state
    gradient with coefficients computed per chunk from the saved gates; the
    weight gradients are one matrix product per chunk instead of one per step.
    The values are those autograd computes through ``torch.nn.GRU`` (up to
    floating-point summation order).
    """

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, h0: torch.Tensor, *params: torch.Tensor):
        with _Threads():
            out, h_last, saved = _gru_agent_forward(inputs, h0, params, save=True)
        ctx.save_for_backward(inputs, *params)
        ctx.chunks = saved
        return out, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor | None, grad_h: torch.Tensor | None):
        with _Threads():
            return _FusedGRUAgent._backward(ctx, grad_out, grad_h)

    @staticmethod
    def _backward(ctx: Any, grad_out: torch.Tensor | None, grad_h: torch.Tensor | None):
        inputs, w1, b1, w_ih, b_ih, w_hh, b_hh, w2, b2 = ctx.saved_tensors
        chunks = ctx.chunks  # kept: a retained graph may backpropagate again
        b, t, n, d = inputs.shape
        rows, hid, a = b * n, w_hh.shape[1], w2.shape[0]
        h1, h2 = hid, 2 * hid
        if grad_out is None:
            grad_out = inputs.new_zeros(b, t, n, a)
        dh = inputs.new_zeros(rows, hid) if grad_h is None else grad_h.reshape(rows, hid).clone()
        # the input-projection gradient is produced in gate order (n, r, z), the hidden one in (r, z, n)
        w_ih_nrz = torch.cat([w_ih[2 * hid :], w_ih[: 2 * hid]])
        g_w1, g_b1 = torch.zeros_like(w1), torch.zeros_like(b1)
        g_wih, g_bih = torch.zeros_like(w_ih), torch.zeros_like(b_ih)
        g_whh, g_bhh = torch.zeros_like(w_hh), torch.zeros_like(b_hh)
        g_w2, g_b2 = torch.zeros_like(w2), torch.zeros_like(b2)
        g_in = torch.zeros_like(inputs) if ctx.needs_input_grad[0] else None
        c = max(k for _, k, *_ in chunks)
        # d(gates) of a step = dh (the gradient of its output h) times per-step coefficients:
        #   [d a_n, d a_r, d a_z, d gh_n] = dh * [(1 - z)(1 - n^2), (1 - z)(1 - n^2) r (1 - r) gh_n,
        #                                         z (1 - z)(h_prev - n), (1 - z)(1 - n^2) r]
        # (a_* the pre-activations, gh = h_prev W_hh^T + b_hh), computed for a whole chunk at once;
        # the recurrence is then dh_prev = dy_prev + dh z + [d a_r, d a_z, d gh_n] W_hh.
        coef = inputs.new_empty(c, rows, 4, hid)
        grad = inputs.new_empty(c, rows, 4 * hid)
        tmp = inputs.new_empty(c, rows, hid)
        acc, dh_next = inputs.new_empty(rows, hid), inputs.new_empty(rows, hid)
        one = inputs.new_ones(())
        for s, k, x1, hb, sg in reversed(chunks):
            dout = _time_major(grad_out, s, s + k)  # [k * rows, A]
            dys = torch.mm(dout, w2).view(k, rows, hid)
            g_w2.addmm_(dout.t(), hb[1:].reshape(k * rows, hid))
            g_b2 += dout.sum(0)
            r, z, ghn, new = sg[..., :h1], sg[..., h1:h2], sg[..., h2 : 3 * hid], sg[..., 3 * hid :]
            cf, t1 = coef[:k], tmp[:k]
            a1 = torch.mul(torch.addcmul(one, new, new, value=-1, out=t1), torch.sub(one, z), out=cf[:, :, 0])
            a3 = torch.mul(a1, r, out=cf[:, :, 3])
            torch.mul(a3, ghn, out=cf[:, :, 1]).mul_(torch.sub(one, r, out=t1))
            torch.mul(torch.sub(hb[:-1], new, out=t1), z, out=cf[:, :, 2]).mul_(torch.sub(one, z))
            dh.add_(dys[k - 1])
            for j in range(k - 1, -1, -1):
                gj = grad[j]
                torch.mul(cf[j], dh.unsqueeze(1), out=gj.view(rows, 4, hid))
                nxt = torch.addcmul(dys[j - 1], dh, z[j], out=acc) if j > 0 else torch.mul(dh, z[j], out=acc)
                torch.addmm(nxt, gj[:, h1:], w_hh, out=dh_next)
                dh, dh_next = dh_next, dh
            gk = grad[:k].view(k * rows, 4 * hid)
            g_whh.addmm_(gk[:, h1:].t(), hb[:-1].reshape(k * rows, hid))
            g_bhh += gk[:, h1:].sum(0)
            dgi = gk[:, : 3 * hid]  # (n, r, z)
            g_nrz = torch.mm(dgi.t(), x1)
            g_wih[2 * hid :] += g_nrz[:h1]
            g_wih[: 2 * hid] += g_nrz[h1:]
            db = dgi.sum(0)
            g_bih[2 * hid :] += db[:h1]
            g_bih[: 2 * hid] += db[h1:]
            dpre = torch.ops.aten.threshold_backward(torch.mm(dgi, w_ih_nrz), x1, 0)  # ReLU
            g_w1.addmm_(dpre.t(), _time_major(inputs, s, s + k))
            g_b1 += dpre.sum(0)
            if g_in is not None:
                g_in[:, s : s + k] = torch.mm(dpre, w1).view(k, b, n, d).transpose(0, 1)
        g_h0 = dh if ctx.needs_input_grad[1] else None
        return g_in, g_h0, g_w1, g_b1, g_wih, g_bih, g_whh, g_bhh, g_w2, g_b2


class RNNAgent(nn.Module):
    """fc -> ReLU -> GRU -> fc (pymarl's RNN agent; hidden 64 by default).

    ``forward_seq`` runs the whole network over [B, T, N, in] (T > 1, CPU)
    with a fused, chunked implementation of the GRU recurrence
    (:class:`_FusedGRUAgent`: the values and gradients of ``torch.nn.GRU`` up
    to rounding; measured ~1.2x (forward + backward) and ~1.5x (inference) faster on a
    CPU core at the SMAC 2s3z batch shape); ``fused = False`` (class or
    instance attribute) runs the plain ``torch.nn.GRU`` instead, as do single
    steps (``step``, T = 1: acting) and other devices. Parameters and state
    dicts are those of ``fc1``, ``rnn`` (a ``torch.nn.GRU``) and ``fc2`` either way.
    """

    recurrent = True
    fused: bool = True

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.rnn = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def initial_hidden(self, batch_size: int, n_agents: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch_size, n_agents, self.hidden_dim, device=device)

    def _params(self) -> tuple[torch.Tensor, ...]:
        r = self.rnn
        return (self.fc1.weight, self.fc1.bias, r.weight_ih_l0, r.bias_ih_l0, r.weight_hh_l0, r.bias_hh_l0,
                self.fc2.weight, self.fc2.bias)

    def forward_seq(self, inputs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, n, _ = inputs.shape
        if not self.fused or t == 1 or inputs.device.type != "cpu":  # single steps (acting): nn.GRU has less overhead
            return self.forward_seq_reference(inputs, h0)
        params = self._params()
        h = inputs.new_zeros(b * n, self.hidden_dim) if h0 is None else h0.reshape(b * n, self.hidden_dim).to(inputs.dtype)
        if torch.is_grad_enabled() and (inputs.requires_grad or h.requires_grad or any(p.requires_grad for p in params)):
            out, h_last = _FusedGRUAgent.apply(inputs, h, *params)
        else:
            with torch.no_grad(), _Threads():
                out, h_last, _ = _gru_agent_forward(inputs, h, params, save=False)
        return out, h_last.reshape(b, n, self.hidden_dim)

    def forward_seq_reference(self, inputs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same network through ``torch.nn.GRU`` (the reference of the fused path)."""
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
