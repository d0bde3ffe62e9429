"""A small causal (decision) transformer over per-step (return, observation, action) tokens.

Each time step t contributes the tokens ``[R_t,] x_t, a_t`` (R_t optional)
embedded to ``embed_dim`` plus a learned embedding of the absolute time step
t; a pre-LayerNorm GPT stack with SLIDING-WINDOW causal attention (a token of
step t sees the tokens of steps t - context_length + 1 .. t that precede it)
predicts a_t from the output at the x_t token, which cannot see a_t.

Because positions are absolute time steps and the window is a fixed band,
running the whole episode in one pass (training) and running only the last
``history_steps`` steps (acting, see :attr:`DecisionTransformer.history_steps`)
give exactly the same outputs at the last step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sliding_window_causal_mask(steps: int, tokens_per_step: int, context_length: int, device=None) -> torch.Tensor:
    """[S, S] bool mask (True = may attend), S = steps * tokens_per_step.

    Query token q (step t_q) attends key token k (step t_k) iff k <= q and
    t_k > t_q - context_length.
    """
    idx = torch.arange(steps * tokens_per_step, device=device)
    step = idx // tokens_per_step
    causal = idx[None, :] <= idx[:, None]
    window = step[None, :] > step[:, None] - context_length
    return causal & window


class CausalSelfAttention(nn.Module):
    def __init__(self, embed_dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if embed_dim % n_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, e = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.n_heads, e // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, s, e))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)); x + mlp(ln(x)) (MLP 4x, GELU)."""

    def __init__(self, embed_dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, n_heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(), nn.Linear(4 * embed_dim, embed_dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class DecisionTransformer(nn.Module):
    """Causal transformer policy over (R, x, a) tokens of one agent's trajectory.

    Args:
        input_dim: size of the per-step input x_t (observation, agent id, ...).
        n_actions: number of discrete actions A.
        embed_dim: token embedding size.
        n_layers: transformer blocks.
        n_heads: attention heads.
        context_length: steps K each token can look back over (itself included).
        max_timestep: largest time step embedded (later steps reuse the last embedding).
        use_return: include the return token R_t (else tokens are x_t, a_t).
        dropout: dropout of attention, residual MLP and embeddings.
    """

    def __init__(
        self,
        input_dim: int,
        n_actions: int,
        embed_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 1,
        context_length: int = 20,
        max_timestep: int = 1000,
        use_return: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if context_length < 1:
            raise ValueError(f"context_length must be >= 1, got {context_length}")
        self.context_length, self.n_layers, self.use_return = context_length, n_layers, use_return
        self.tokens_per_step = 3 if use_return else 2
        self.max_timestep = max_timestep
        self.embed_x = nn.Linear(input_dim, embed_dim)
        self.embed_action = nn.Embedding(n_actions, embed_dim)
        self.embed_return = nn.Linear(1, embed_dim) if use_return else None
        self.embed_time = nn.Embedding(max_timestep + 1, embed_dim)
        self.embed_ln = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, n_actions)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def history_steps(self) -> int:
        """Steps an output can depend on: n_layers * (context_length - 1) + 1 (the receptive field)."""
        return self.n_layers * (self.context_length - 1) + 1

    def forward(
        self,
        inputs: torch.Tensor,
        actions: torch.Tensor,
        timesteps: torch.Tensor,
        returns: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits and features at every step.

        Args:
            inputs: [B, T, input_dim] x_t.
            actions: [B, T] long a_t (the last one may be a placeholder: no
                output depends on a_t at or before step t).
            timesteps: [B, T] long absolute time steps.
            returns: [B, T] return tokens R_t (required iff ``use_return``).

        Returns:
            logits [B, T, A] and features [B, T, embed_dim] (final-LN outputs at the x_t tokens).
        """
        b, t, _ = inputs.shape
        time = self.embed_time(timesteps.clamp(0, self.max_timestep))
        tokens = [self.embed_x(inputs) + time, self.embed_action(actions) + time]
        if self.use_return:
            if returns is None:
                raise ValueError("this DecisionTransformer was built with use_return=True: pass returns")
            tokens.insert(0, self.embed_return(returns.unsqueeze(-1)) + time)
        x = torch.stack(tokens, dim=2).reshape(b, t * self.tokens_per_step, -1)  # step-major token order
        x = self.drop(self.embed_ln(x))
        mask = sliding_window_causal_mask(t, self.tokens_per_step, self.context_length, x.device)
        for block in self.blocks:
            x = block(x, mask)
        x_pos = self.tokens_per_step - 2  # index of the x_t token within a step
        features = self.ln_f(x.reshape(b, t, self.tokens_per_step, -1)[:, :, x_pos])
        return self.head(features), features


def adamw_param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on Linear weights only (not on biases, LayerNorms, embeddings), as GPT/DT training does."""
    decay, no_decay = [], []
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            (decay if isinstance(sub, nn.Linear) and name == "weight" else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


__all__ = ["Block", "CausalSelfAttention", "DecisionTransformer", "adamw_param_groups", "sliding_window_causal_mask"]
