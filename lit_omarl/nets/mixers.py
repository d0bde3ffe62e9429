"""Value-decomposition mixers Q_tot = f_s(Q_1, ..., Q_N).

Each mixer is split in two so that many candidate per-agent Q vectors at the
same state can be mixed without recomputing the state-conditioned part:

``hyper(states [..., S]) -> params``   (state-dependent weights, computed once)
``mix(qs, params)``                    qs [..., N] -> [...]  or  qs [..., K, N] -> [..., K]
``forward(qs, states) = mix(qs, hyper(states))``

The leading dims ``...`` of ``qs`` and ``states`` match (e.g. [B, T]); the
optional K dimension holds candidate joint actions (CFCQL's counterfactual
term mixes N * A candidates per state in one call). ``QMixer`` also has
``mix_counterfactual`` (the N * A single-agent deviations by a rank-one
update of the hidden pre-activation) and ``counterfactual_reduce`` (the same,
reduced per state with the gradient contracted in the forward pass: CFCQL's
hot path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

# Elements of the [rows, K, E] hidden layer processed per chunk by the fused
# candidate kernels: 2 MB temporaries stay in cache and in reused heap memory
# (no fresh page-faulted pages per step); measured faster than 8 or 16 MB chunks.
FUSED_CHUNK_ELEMENTS = 1 << 19


def _as_candidates(qs: torch.Tensor, params_batch_dims: int) -> tuple[torch.Tensor, bool]:
    """Returns qs as [..., K, N] and whether a K dim was added."""
    if qs.dim() == params_batch_dims + 1:
        return qs.unsqueeze(-2), True
    if qs.dim() == params_batch_dims + 2:
        return qs, False
    raise ValueError(f"qs must be [..., N] or [..., K, N] with the state's leading dims, got {tuple(qs.shape)}")


def _two_layer(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class _QMixCandidates(torch.autograd.Function):
    """Q_tot of K candidate Q vectors per state, chunked over states, nothing [R, K, E] kept.

    Forward: out[r, k] = w2[r] . elu(qs[r, k] @ w1[r] + b1[r]) + b2[r]. The
    hidden layer is recomputed chunk by chunk in the backward pass instead of
    being stored, so CFCQL's N * A (or MACQL's K sampled) candidates cost
    neither the memory of the full hidden tensor nor its page faults. The
    gradients are the ones autograd computes for the unfused expression.
    """

    @staticmethod
    def forward(ctx: Any, qs: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor):
        rows, k, _ = qs.shape
        step = max(1, FUSED_CHUNK_ELEMENTS // (k * w1.shape[-1]))
        out = qs.new_empty(rows, k, 1)
        for s in range(0, rows, step):
            e = s + step
            hidden = F.elu(torch.baddbmm(b1[s:e].unsqueeze(1), qs[s:e], w1[s:e]), inplace=True)
            torch.bmm(hidden, w2[s:e].unsqueeze(-1), out=out[s:e])
        ctx.save_for_backward(qs, w1, b1, w2)
        return out.squeeze(-1) + b2.unsqueeze(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor):
        qs, w1, b1, w2 = ctx.saved_tensors
        rows, k, _ = qs.shape
        step = max(1, FUSED_CHUNK_ELEMENTS // (k * w1.shape[-1]))
        grad_out = grad_out.contiguous()
        g_qs, g_w1, g_b1, g_w2 = (torch.empty_like(x) for x in (qs, w1, b1, w2))
        for s in range(0, rows, step):
            e = s + step
            g = grad_out[s:e].unsqueeze(-1)  # [c, K, 1]
            hidden = F.elu(torch.baddbmm(b1[s:e].unsqueeze(1), qs[s:e], w1[s:e]), inplace=True)
            torch.bmm(g.transpose(1, 2), hidden, out=g_w2[s:e].unsqueeze(1))
            # d pre = elu'(pre) * g * w2, with elu' computed from the elu output
            g_pre = torch.ops.aten.elu_backward(g * w2[s:e].unsqueeze(1), 1.0, 1, 1.0, True, hidden)
            torch.sum(g_pre, 1, out=g_b1[s:e])
            torch.bmm(g_pre, w1[s:e].transpose(1, 2), out=g_qs[s:e])
            torch.bmm(qs[s:e].transpose(1, 2), g_pre, out=g_w1[s:e])
        return g_qs, g_w1, g_b1, g_w2, grad_out.sum(-1)


class _QMixCounterfactual(torch.autograd.Function):
    """Q_tot of every single-agent deviation: agent i plays j, the others keep their taken Q.

    With base = q_taken @ W1 + b1, the hidden pre-activation of deviation
    (i, j) is base + (q[i, j] - q_taken[i]) * W1[i]: a rank-one update, so no
    [R, N * A, N] candidate tensor is built. Chunked over states and
    recomputed in the backward pass like :class:`_QMixCandidates`.
    """

    @staticmethod
    def _hidden(q, qt, w1, b1):
        base = torch.baddbmm(b1.unsqueeze(1), qt.unsqueeze(1), w1)  # [c, 1, E]
        delta = q - qt.unsqueeze(-1)  # [c, N, A]
        pre = torch.addcmul(base.unsqueeze(1), delta.unsqueeze(-1), w1.unsqueeze(2))  # [c, N, A, E]
        return F.elu(pre, inplace=True), delta

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, qt: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor):
        rows, n, a = q.shape
        e = w1.shape[-1]
        step = max(1, FUSED_CHUNK_ELEMENTS // (n * a * e))
        out = q.new_empty(rows, n * a, 1)
        for s in range(0, rows, step):
            hidden, _ = _QMixCounterfactual._hidden(q[s : s + step], qt[s : s + step], w1[s : s + step], b1[s : s + step])
            torch.bmm(hidden.flatten(1, 2), w2[s : s + step].unsqueeze(-1), out=out[s : s + step])
        ctx.save_for_backward(q, qt, w1, b1, w2)
        return out.view(rows, n, a) + b2[:, None, None]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor):
        q, qt, w1, b1, w2 = ctx.saved_tensors
        rows, n, a = q.shape
        e = w1.shape[-1]
        step = max(1, FUSED_CHUNK_ELEMENTS // (n * a * e))
        grad_out = grad_out.contiguous()
        g_q, g_qt, g_w1, g_b1, g_w2 = (torch.empty_like(x) for x in (q, qt, w1, b1, w2))
        for s in range(0, rows, step):
            sl = slice(s, s + step)
            w1c, qtc, g = w1[sl], qt[sl], grad_out[sl]
            c = w1c.shape[0]
            hidden, delta = _QMixCounterfactual._hidden(q[sl], qtc, w1c, b1[sl])
            torch.bmm(g.view(c, 1, n * a), hidden.view(c, n * a, e), out=g_w2[sl].unsqueeze(1))
            g_pre = torch.ops.aten.elu_backward(g.unsqueeze(-1) * w2[sl][:, None, None, :], 1.0, 1, 1.0, True, hidden)
            g_base = g_pre.sum((1, 2))  # [c, E]
            g_b1[sl] = g_base
            g_delta = torch.bmm(g_pre.view(c * n, a, e), w1c.reshape(c * n, e, 1)).view(c, n, a)
            g_q[sl] = g_delta
            # W1[i] enters through delta_i (its own deviations) and through base (everyone's)
            torch.addcmul((g_pre * delta.unsqueeze(-1)).sum(2), g_base.unsqueeze(1), qtc.unsqueeze(-1), out=g_w1[sl])
            g_qt[sl] = torch.bmm(w1c, g_base.unsqueeze(-1)).squeeze(-1) - g_delta.sum(-1)
        return g_q, g_qt, g_w1, g_b1, g_w2, grad_out.sum((1, 2))


# reduce(cand [c, N, A], rows slice) -> (value [c], d value / d cand [c, N, A], extras: tuple of [c, ...])
CounterfactualReduce = Callable[[torch.Tensor, slice], tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]]


class _QMixCounterfactualReduce(torch.autograd.Function):
    """A row-wise reduction of the single-deviation Q_tot's, with its gradient computed in the forward pass.

    For each state r, ``value[r] = reduce(cand[r])`` where ``cand[r, i, j]`` is
    Q_tot with agent i playing j and the others their taken Q (the rank-one
    update of :class:`_QMixCounterfactual`). ``reduce`` also returns
    ``g = d value / d cand`` (it depends on the row only), so while a chunk's
    hidden layer is still in cache the gradients of ``value[r]`` with respect to
    the kernel's inputs are contracted from it, with no recomputation in the
    backward pass, which only scales them by the incoming ``d loss / d value[r]``.
    With D = elu'(pre) = 1 + min(hidden, 0) and gp = g * w2 * D (d value / d pre):

        d w2 = sum_ij g hidden      d b1 = sum_ij gp      d b2 = sum_ij g
        d q[i, j] = g[i, j] (D[i, j] . (w1[i] * w2))
        d w1[i] = w2 * sum_j g[i, j] delta[i, j] D[i, j] + d b1 * qt[i]
        d qt[i] = w1[i] . d b1 - sum_j d q[i, j]

    Extras (e.g. CFCQL's lambda weights) are returned without gradient.
    """

    @staticmethod
    def forward(ctx: Any, q, qt, w1, b1, w2, b2, reduce: CounterfactualReduce):
        rows, n, a = q.shape
        e = w1.shape[-1]
        step = min(rows, max(1, FUSED_CHUNK_ELEMENTS // (n * a * e)))
        need_grad = any(ctx.needs_input_grad[:6])
        value = q.new_empty(rows)
        if need_grad:
            g_q, g_qt, g_w1, g_b1, g_w2, g_b2 = (torch.empty_like(x) for x in (q, qt, w1, b1, w2, b2))
        # chunk buffers: hidden layer, elu' and a scratch block, [c, N * A, E] each
        hid_buf, der_buf, tmp_buf = (q.new_empty(step, n * a, e) for _ in range(3))
        # left factor [c, N + 1, N * A] of one batched product with D: rows i < N hold (g delta)[i, :]
        # in block i (sum_j (g delta)[i, j] D[i, j] for every agent at once instead of N * c tiny
        # products; the off-diagonal blocks stay 0), row N holds g (sum_ij g D)
        blocks = q.new_zeros(step, n + 1, n * a) if need_grad else None
        extras: list[torch.Tensor] | None = None
        for s in range(0, rows, step):
            sl = slice(s, s + step)
            w1c, qtc, w2c = w1[sl], qt[sl], w2[sl]
            c = w1c.shape[0]
            hidden, deriv, tmp = hid_buf[:c], der_buf[:c], tmp_buf[:c]
            base = torch.baddbmm(b1[sl].unsqueeze(1), qtc.unsqueeze(1), w1c)  # [c, 1, E]
            delta = q[sl] - qtc.unsqueeze(-1)  # [c, N, A]
            pre = torch.addcmul(base.unsqueeze(1), delta.unsqueeze(-1), w1c.unsqueeze(2), out=hidden.view(c, n, a, e))
            # elu(x) = max(x, exp(min(x, 0)) - 1), and exp(min(x, 0)) is elu'(x): one exp for both
            torch.clamp(pre, max=0.0, out=deriv.view(c, n, a, e)).exp_()
            torch.maximum(hidden, torch.sub(deriv, 1.0, out=tmp), out=hidden)
            cand = torch.bmm(hidden, w2c.unsqueeze(-1)).view(c, n, a) + b2[sl, None, None]
            val, g, ext = reduce(cand, sl)
            value[sl] = val
            if extras is None:
                extras = [x.new_empty(rows, *x.shape[1:]) for x in ext]
            for out, x in zip(extras, ext):
                out[sl] = x
            if not need_grad:
                continue
            g = g.to(q.dtype)
            gf = g.view(c, 1, n * a)
            torch.bmm(gf, hidden, out=g_w2[sl].unsqueeze(1))
            g_b2[sl] = g.sum((1, 2))
            v = w1c * w2c.unsqueeze(1)  # [c, N, E]
            # D[i, j] . v[k] for all (i, j, k); the k = i entries are the ones needed
            dv = torch.bmm(deriv, v.transpose(1, 2)).view(c, n, a, n).diagonal(dim1=1, dim2=3)  # [c, A, N]
            g_qc = torch.mul(g, dv.transpose(1, 2))
            g_q[sl] = g_qc
            blk = blocks[:c]
            blk[:, :n].view(c, n, n, a).diagonal(dim1=1, dim2=2).copy_((g * delta).transpose(1, 2))
            blk[:, n] = gf.squeeze(1)
            prod = torch.bmm(blk, deriv).mul_(w2c.unsqueeze(1))  # [c, N + 1, E]
            g_b1c = prod[:, n]
            g_b1[sl] = g_b1c
            torch.addcmul(prod[:, :n], g_b1c.unsqueeze(1), qtc.unsqueeze(-1), out=g_w1[sl])
            g_qt[sl] = torch.bmm(w1c, g_b1c.unsqueeze(-1)).squeeze(-1) - g_qc.sum(-1)
        if need_grad:
            ctx.save_for_backward(g_q, g_qt, g_w1, g_b1, g_w2, g_b2)
        extras = extras or []
        ctx.mark_non_differentiable(*extras)
        return (value, *extras)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_value: torch.Tensor, *_unused: Any):
        g_q, g_qt, g_w1, g_b1, g_w2, g_b2 = ctx.saved_tensors
        gv = grad_value.contiguous()
        return (g_q * gv[:, None, None], g_qt * gv[:, None], g_w1 * gv[:, None, None], g_b1 * gv[:, None],
                g_w2 * gv[:, None], g_b2 * gv, None)


class QMixParams(NamedTuple):
    w1: torch.Tensor  # [..., N, E] (>= 0)
    b1: torch.Tensor  # [..., E]
    w2: torch.Tensor  # [..., E] (>= 0)
    b2: torch.Tensor  # [...]


class QMixer(nn.Module):
    """QMIX monotonic mixer (Rashid et al. 2018), pymarl2 layout.

    Q_tot = w2(s) . elu(Q @ W1(s) + b1(s)) + b2(s), with W1 = |hyper_w1(s)| and
    w2 = |hyper_w2(s)| so that dQ_tot / dQ_i >= 0. The weight hypernetworks have
    two layers (S -> hypernet_embed -> ReLU -> out); b2 is S -> embed -> ReLU -> 1.

    Args:
        n_agents: number of agents N.
        state_dim: global state size S.
        embed_dim: mixing embedding size E (pymarl ``mixing_embed_dim``, 32).
        hypernet_embed: hidden size of the hypernetworks (64).
    """

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_embed: int = 64) -> None:
        super().__init__()
        self.n_agents, self.embed_dim = n_agents, embed_dim
        self.hyper_w1 = _two_layer(state_dim, hypernet_embed, n_agents * embed_dim)
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = _two_layer(state_dim, hypernet_embed, embed_dim)
        self.hyper_b2 = _two_layer(state_dim, embed_dim, 1)

    def hyper(self, states: torch.Tensor) -> QMixParams:
        w1 = self.hyper_w1(states).abs().unflatten(-1, (self.n_agents, self.embed_dim))
        return QMixParams(w1, self.hyper_b1(states), self.hyper_w2(states).abs(), self.hyper_b2(states).squeeze(-1))

    # Mix K > 1 candidates per state with the chunked fused kernel (same values and gradients).
    fused_candidates: bool = True

    def mix(self, qs: torch.Tensor, params: QMixParams) -> torch.Tensor:
        cand, squeeze = _as_candidates(qs, params.b2.dim())
        lead = params.b2.shape
        if self.fused_candidates and not squeeze and cand.shape[-2] > 1 and cand.shape[:-2] == lead:
            n, e = params.w1.shape[-2:]
            out = _QMixCandidates.apply(
                cand.reshape(-1, *cand.shape[-2:]),
                params.w1.reshape(-1, n, e),
                params.b1.reshape(-1, e),
                params.w2.reshape(-1, e),
                params.b2.reshape(-1),
            )
            return out.reshape(*lead, cand.shape[-2])
        if squeeze:  # one Q vector per state: element-wise products beat batched 1 x N matrix products
            hidden = F.elu((qs.unsqueeze(-1) * params.w1).sum(-2) + params.b1)
            return (hidden * params.w2).sum(-1) + params.b2
        hidden = F.elu(torch.einsum("...kn,...ne->...ke", cand, params.w1) + params.b1.unsqueeze(-2))
        return torch.einsum("...ke,...e->...k", hidden, params.w2) + params.b2.unsqueeze(-1)

    def mix_counterfactual(self, q_all: torch.Tensor, q_taken: torch.Tensor, params: QMixParams) -> torch.Tensor | None:
        """Q_tot(s, j, a^{-i}) of every agent i and action j (CFCQL's counterfactual joint actions).

        Args:
            q_all: [..., N, A] per-agent Qs of all actions.
            q_taken: [..., N] per-agent Qs of the actions the others keep.
            params: ``hyper(states [...])``.

        Returns:
            [..., N, A], or None when the fused kernel does not apply (the
            caller then mixes explicit candidates with :meth:`mix`).
        """
        lead = params.b2.shape
        if not self.fused_candidates or q_all.shape[:-2] != lead or q_taken.shape[:-1] != lead:
            return None
        n, a = q_all.shape[-2:]
        e = params.w1.shape[-1]
        out = _QMixCounterfactual.apply(
            q_all.reshape(-1, n, a),
            q_taken.reshape(-1, n),
            params.w1.reshape(-1, n, e),
            params.b1.reshape(-1, e),
            params.w2.reshape(-1, e),
            params.b2.reshape(-1),
        )
        return out.reshape(*lead, n, a)

    def counterfactual_reduce(
        self,
        q_all: torch.Tensor,
        q_taken: torch.Tensor,
        params: QMixParams,
        reduce: CounterfactualReduce,
        rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...] | None:
        """A per-state reduction of the counterfactual Q_tot's of :meth:`mix_counterfactual`, fused.

        ``reduce(cand [c, N, A], sl)`` gets the candidates of the states ``sl``
        (a slice of the flattened, possibly row-selected states) and returns
        (value [c], d value / d cand [c, N, A], extras tuple of [c, ...]);
        only ``value`` is differentiable. No [states, N, A, E] tensor is kept
        and nothing is recomputed in the backward pass (see
        :class:`_QMixCounterfactualReduce`).

        Args:
            q_all: [..., N, A]; q_taken: [..., N]; params: ``hyper(states [...])``.
            reduce: the per-chunk reduction.
            rows: optional long indices into the flattened leading dims: only
                those states are computed (e.g. the valid steps of padded
                episodes); the others get value 0 and zero extras.

        Returns:
            (value [...], *extras [..., ...]) or None when the fused kernel does not apply.
        """
        lead = params.b2.shape
        if not self.fused_candidates or q_all.shape[:-2] != lead or q_taken.shape[:-1] != lead:
            return None
        n, a = q_all.shape[-2:]
        e = params.w1.shape[-1]
        flat = (q_all.reshape(-1, n, a), q_taken.reshape(-1, n), params.w1.reshape(-1, n, e),
                params.b1.reshape(-1, e), params.w2.reshape(-1, e), params.b2.reshape(-1))
        if rows is not None:
            flat = tuple(x.index_select(0, rows) for x in flat)
        out = _QMixCounterfactualReduce.apply(*flat, reduce)
        total = q_all.reshape(-1, n, a).shape[0]
        results = []
        for x in out:
            if rows is not None:
                x = x.new_zeros(total, *x.shape[1:]).index_copy(0, rows, x)
            results.append(x.reshape(*lead, *x.shape[1:]))
        return tuple(results)

    def forward(self, qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.mix(qs, self.hyper(states))


class LinearMixParams(NamedTuple):
    k: torch.Tensor  # [..., N], k >= 0, sum_i k_i = 1
    b: torch.Tensor  # [...]


class LinearMixer(nn.Module):
    """State-weighted linear mixer Q_tot = sum_i k_i(s) Q_i + b(s) (ICQ convention).

    k_i(s) = |w_i(s)| / sum_j |w_j(s)| with a two-layer hypernetwork w(s), so the
    coefficients are non-negative and sum to one (Q_tot is a convex combination
    of the Q_i plus a state bias); ``k(states)`` exposes them (ICQ weights each
    agent's actor loss by k_i). b(s) is S -> hypernet_embed -> ReLU -> 1.

    Args:
        n_agents: number of agents N.
        state_dim: global state size S.
        hypernet_embed: hidden size of the hypernetworks.
    """

    def __init__(self, n_agents: int, state_dim: int, hypernet_embed: int = 64) -> None:
        super().__init__()
        self.hyper_w = _two_layer(state_dim, hypernet_embed, n_agents)
        self.hyper_b = _two_layer(state_dim, hypernet_embed, 1)

    def k(self, states: torch.Tensor) -> torch.Tensor:
        w = self.hyper_w(states).abs() + 1e-8
        return w / w.sum(-1, keepdim=True)

    def hyper(self, states: torch.Tensor) -> LinearMixParams:
        return LinearMixParams(self.k(states), self.hyper_b(states).squeeze(-1))

    def mix(self, qs: torch.Tensor, params: LinearMixParams) -> torch.Tensor:
        cand, squeeze = _as_candidates(qs, params.b.dim())
        q_tot = (cand * params.k.unsqueeze(-2)).sum(-1) + params.b.unsqueeze(-1)
        return q_tot.squeeze(-1) if squeeze else q_tot

    def forward(self, qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.mix(qs, self.hyper(states))


class VDNMixer(nn.Module):
    """Q_tot = sum_i Q_i (Sunehag et al. 2018); no parameters, ``hyper`` returns None."""

    def __init__(self, n_agents: int = 0, state_dim: int = 0) -> None:
        super().__init__()

    def hyper(self, states: torch.Tensor) -> None:
        return None

    def mix(self, qs: torch.Tensor, params: None = None) -> torch.Tensor:
        return qs.sum(-1)

    def forward(self, qs: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        return qs.sum(-1)


def make_mixer(kind: str, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_embed: int = 64) -> nn.Module:
    """Builds a mixer by name: "qmix", "linear" or "vdn"."""
    if kind == "qmix":
        return QMixer(n_agents, state_dim, embed_dim, hypernet_embed)
    if kind == "linear":
        return LinearMixer(n_agents, state_dim, hypernet_embed)
    if kind == "vdn":
        return VDNMixer(n_agents, state_dim)
    raise ValueError(f"unknown mixer {kind!r}; expected 'qmix', 'linear' or 'vdn'")
