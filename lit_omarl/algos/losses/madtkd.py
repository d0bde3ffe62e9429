"""Losses of MADTKD (decision-transformer students distilled from a centralised teacher).

Shapes: B episodes, T steps, N agents, A actions, E feature size; ``mask``
[B, T] is 1 on valid steps. Tested by hand in tests/test_madtkd.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_omarl.algos.losses import masked_log_softmax, masked_mean


def returns_to_go(reward: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """R_t = sum_{s >= t} r_s over valid steps (undiscounted, as in the Decision Transformer): [B, T] -> [B, T]."""
    r = reward * mask
    return r.flip(1).cumsum(1).flip(1) * mask


def distillation_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, avail: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """KL(teacher || student) over available actions, averaged over valid steps and agents.

        KL_i = sum_{a available} p_T(a) (log p_T(a) - log p_S(a)),   p = softmax over available actions

    (the CFCQL code's ``kl_div(log pi_student, pi_teacher)`` summed over available actions).

    Args:
        student_logits, teacher_logits: [B, T, N, A] (teacher detached by the caller).
        avail: [B, T, N, A] bool; mask: [B, T].
    """
    logp_s = masked_log_softmax(student_logits, avail)
    logp_t = masked_log_softmax(teacher_logits, avail)
    kl = (logp_t.exp() * (logp_t - logp_s) * avail).sum(-1)
    return masked_mean(kl, mask.unsqueeze(-1))


def relation_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Structural relation distillation between agents (MADTKD; the CFCQL code's ``loss_rel``).

        sum_{i != j} mean_{valid steps} Huber( cos(f^T_i, f^T_j), cos(f^S_i, f^S_j) )

    Huber with delta 1 (``F.huber_loss``); summed over ordered agent pairs as in the code.

    Args:
        student_features: [B, T, N, E] (with gradient).
        teacher_features: [B, T, N, E] (no gradient).
        mask: [B, T].
    """
    n = student_features.shape[-2]
    if n < 2:
        return student_features.new_zeros(())
    cos_s = F.cosine_similarity(student_features.unsqueeze(-2), student_features.unsqueeze(-3), dim=-1)  # [B, T, N, N]
    cos_t = F.cosine_similarity(teacher_features.unsqueeze(-2), teacher_features.unsqueeze(-3), dim=-1)
    off_diag = ~torch.eye(n, dtype=torch.bool, device=cos_s.device)
    per_pair = F.huber_loss(cos_s, cos_t.detach(), reduction="none", delta=1.0) * off_diag
    return masked_mean(per_pair.sum((-1, -2)), mask)


def madtkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    actions: torch.Tensor,
    avail: torch.Tensor,
    mask: torch.Tensor,
    kd_coef: float,
    relation_coef: float = 0.0,
    student_features: torch.Tensor | None = None,
    teacher_features: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Student objective: BC + kd_coef * KL(teacher || student) + relation_coef * relation.

        BC = - mean log p_S(a^data)   (masked softmax over available actions)

    Args:
        student_logits, teacher_logits: [B, T, N, A]; actions: [B, T, N] long;
        avail: [B, T, N, A] bool; mask: [B, T];
        kd_coef: weight of the distillation KL (code ``alpha`` 0.5);
        relation_coef: weight of the relation term (code ``beta`` 0.5; 0 = off);
        student_features, teacher_features: [B, T, N, E], needed iff relation_coef > 0.

    Returns:
        (total loss, {"bc", "kd_kl", "relation"} parts, detached).
    """
    logp = masked_log_softmax(student_logits, avail).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    bc = masked_mean(-logp, mask.unsqueeze(-1))
    kl = distillation_kl(student_logits, teacher_logits.detach(), avail, mask)
    total = bc + kd_coef * kl
    rel = bc.new_zeros(())
    if relation_coef > 0:
        if student_features is None or teacher_features is None:
            raise ValueError("relation_coef > 0 needs student_features and teacher_features")
        rel = relation_loss(student_features, teacher_features.detach(), mask)
        total = total + relation_coef * rel
    return total, {"bc": bc.detach(), "kd_kl": kl.detach(), "relation": rel.detach()}


__all__ = ["distillation_kl", "madtkd_loss", "relation_loss", "returns_to_go"]
