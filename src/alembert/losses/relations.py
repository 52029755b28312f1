"""Self-relation KL: MiniLM's value relation and MiniLMv2's Q-Q / K-K / V-V relations with relation heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from alembert.errors import AlembertError
from alembert.losses._reduce import weighted_mean

# Logit given to padded keys. Replaced (masked_fill), not added, so padded values cannot leak in at
# all. Finite rather than -inf so that a row with no real key (an all-padding example) stays a
# finite uniform row instead of NaN, whose gradient would poison the student even when the row is
# dropped later. A real query row always holds its own key, whose logit x.x / sqrt(d) is >= 0, so
# exp(-10000 - max) underflows to exactly 0 in float32: padded keys get probability 0, not "small".
MASKED_RELATION = -10000.0


def relation_logits(x: torch.Tensor, heads: int | None = None, name: str = "RelationKL") -> torch.Tensor:
    """X X^T / sqrt(d_r) per head, in float32, for one projection x (B, H, T, d) in head-split layout.

    With ``heads`` the H heads are merged back to (B, T, H*d) and re-split into ``heads`` relation
    heads of width d_r = H*d / heads (MiniLMv2), so that models with different head counts can be
    compared; without, d_r = d and the model's own heads are used. Returns (B, heads or H, T, T).
    """
    batch, own_heads, tokens, head_dim = x.shape
    x = x.float()  # X X^T can overflow in half precision
    if heads is not None:
        width = own_heads * head_dim
        if width % heads:
            raise AlembertError(f"{name}: width {width} is not divisible by heads={heads} relation heads")
        x = x.transpose(1, 2).reshape(batch, tokens, heads, width // heads).transpose(1, 2)
    return x @ x.transpose(-1, -2) / math.sqrt(x.shape[-1])


class RelationKL(nn.Module):
    """KL(R_T || R_S) between rows of R = softmax(X X^T / sqrt(d_r)), X one of Q, K, V (B, H, T, d).

    ``heads``: number of relation heads both sides are re-split into (MiniLMv2); None uses each
    model's own heads, which must then be equal in number (MiniLM's value relation, CR-ILD).

    Reduction: per example the KL summed over keys, averaged over relation heads and over the query
    rows that are real tokens; then the mean over examples, each scaled by its weight when ``weights``
    (B,) is given. With ``mask`` (B, T) padded keys are left out of the softmax on both sides and
    padded query rows are not averaged; without it every position counts (CR-ILD's released script
    masks nothing here).
    """

    def __init__(self, heads: int | None = None):
        super().__init__()
        if heads is not None and (isinstance(heads, bool) or not isinstance(heads, int) or heads < 1):
            raise AlembertError(f"RelationKL: heads must be an integer >= 1 or None, got {heads!r}")
        self.heads = heads

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(self.per_example(student, teacher, mask), weights, "RelationKL").to(student.dtype)

    def per_example(self, student: torch.Tensor, teacher: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        if (student.dim() != 4 or teacher.dim() != 4 or student.shape[0] != teacher.shape[0]
                or student.shape[2] != teacher.shape[2]):
            raise AlembertError(
                f"RelationKL: expected student and teacher projections (batch, heads, tokens, head_dim) with "
                f"the same batch and tokens, got {tuple(student.shape)} and {tuple(teacher.shape)}"
            )
        if self.heads is None and student.shape[1] != teacher.shape[1]:
            raise AlembertError(
                f"RelationKL needs equal head counts without relation heads: student has {student.shape[1]}, "
                f"teacher {teacher.shape[1]}; set heads to re-split both into that many relation heads"
            )
        batch, _, tokens, _ = student.shape
        logits_s = relation_logits(student, self.heads)
        logits_t = relation_logits(teacher.detach(), self.heads)
        if mask is None:
            rows = torch.ones(batch, tokens, device=logits_s.device)
        else:
            if tuple(mask.shape) != (batch, tokens):
                raise AlembertError(f"RelationKL: mask must have shape ({batch}, {tokens}), got {tuple(mask.shape)}")
            rows = mask.to(logits_s.dtype)
            padded_keys = (rows == 0)[:, None, None, :]
            logits_s = logits_s.masked_fill(padded_keys, MASKED_RELATION)
            logits_t = logits_t.masked_fill(padded_keys, MASKED_RELATION)
        log_s = F.log_softmax(logits_s, dim=-1)
        log_t = F.log_softmax(logits_t, dim=-1)
        p_t = log_t.exp()
        # A key with p_T == 0 contributes 0 (the limit of p log p), not 0 * (log 0 - log q).
        terms = torch.where(p_t > 0, p_t * (log_t - log_s), torch.zeros_like(p_t))
        row_kl = terms.sum(dim=-1)  # (B, heads, T)
        heads = row_kl.shape[1]
        return (row_kl * rows[:, None, :]).sum(dim=(1, 2)) / (heads * rows.sum(dim=1).clamp_min(1))
