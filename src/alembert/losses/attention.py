"""Attention losses: TinyBERT score MSE, MiniLM-style distribution KL, XtremeDistil's probability MSE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alembert.errors import AlembertError
from alembert.losses._reduce import weighted_mean

# Entries at or below this are taken to be additive-mask positions (TinyBERT's rule).
MASKED_SCORE = -100.0


def _check_scores(student: torch.Tensor, teacher: torch.Tensor, name: str) -> None:
    if student.dim() != 4 or teacher.dim() != 4:
        raise AlembertError(
            f"{name}: scores must have shape (batch, heads, tokens, tokens), got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    if student.shape[1] != teacher.shape[1]:
        raise AlembertError(
            f"{name} needs equal head counts: student has {student.shape[1]}, teacher {teacher.shape[1]}"
        )
    if student.shape != teacher.shape:
        raise AlembertError(
            f"{name}: student and teacher scores must have the same shape, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}"
        )


class AttentionScoreMSE(nn.Module):
    """MSE between pre-softmax scores (B, H, T, T), entries <= -100 zeroed in both first.

    Zeroing keeps the -10000 mask from dominating the loss. Without ``mask``: the mean over all elements (as
    TinyBERT, whose batches were padded to a fixed length). With ``mask`` (B, T): each example's mean over its
    real (query, key) pairs, so the value does not depend on how much padding its batch has, and padded
    positions, whose values are noise, never enter it.
    """

    def forward(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                mask: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(self.per_example(student_scores, teacher_scores, mask), weights, "attention_mse")

    def per_example(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_scores(student_scores, teacher_scores, "attention_mse")
        teacher_scores = teacher_scores.detach()
        student = student_scores.masked_fill(student_scores <= MASKED_SCORE, 0.0)
        teacher = teacher_scores.masked_fill(teacher_scores <= MASKED_SCORE, 0.0)
        squared = (student - teacher).pow(2)
        if mask is None:
            per_example = squared.flatten(1).mean(dim=1)
        else:
            batch, heads, tokens, _ = squared.shape
            if tuple(mask.shape) != (batch, tokens):
                raise AlembertError(
                    f"attention_mse: mask must have shape ({batch}, {tokens}), got {tuple(mask.shape)}"
                )
            real = mask.to(squared.dtype)
            pairs = real[:, None, :, None] * real[:, None, None, :]  # (B, 1, T, T)
            per_example = (squared * pairs).flatten(1).sum(dim=1) / (heads * pairs.flatten(1).sum(dim=1)).clamp_min(1)
        return per_example


class AttentionProbKL(nn.Module):
    """KL(A_T || A_S) between softmax(scores) rows, MiniLM's L_AT (also usable for value relations).

    Per example: KL summed over keys, averaged over heads and over the query rows that are real
    tokens (``mask`` (B, T), all rows when None); then averaged over examples.
    """

    def forward(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                mask: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        per_example = self.per_example(student_scores, teacher_scores, mask)
        return weighted_mean(per_example, weights, "attention_kl").to(student_scores.dtype)

    def per_example(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_scores(student_scores, teacher_scores, "attention_kl")
        batch, heads, tokens, _ = student_scores.shape
        log_s = F.log_softmax(student_scores.float(), dim=-1)
        log_t = F.log_softmax(teacher_scores.detach().float(), dim=-1)
        p_t = log_t.exp()
        # A key with p_T == 0 (e.g. a -inf mask) contributes 0 rather than 0 * -inf.
        terms = torch.where(p_t > 0, p_t * (log_t - log_s), torch.zeros_like(p_t))
        row_kl = terms.sum(dim=-1)  # (B, H, T)
        if mask is None:
            rows = torch.ones(batch, tokens, dtype=row_kl.dtype, device=row_kl.device)
        else:
            if tuple(mask.shape) != (batch, tokens):
                raise AlembertError(
                    f"attention_kl: mask must have shape ({batch}, {tokens}), got {tuple(mask.shape)}"
                )
            rows = mask.to(row_kl.dtype)
        # where(), not multiply: a padded row may be NaN when all its keys are -inf.
        kept = torch.where(rows[:, None, :] > 0, row_kl, torch.zeros_like(row_kl))
        return kept.sum(dim=(1, 2)) / (heads * rows.sum(dim=1).clamp_min(1))


class AttentionProbMSE(nn.Module):
    """MSE between attention probabilities softmax(scores) (B, H, T, T): XtremeDistil's attention loss (Keras 'mse'
    on the post-softmax maps). Per example: the mean over heads and its real (query, key) pairs (``mask`` (B, T));
    padded keys have probability 0 in both models, so only padded queries need leaving out."""

    def forward(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                mask: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(self.per_example(student_scores, teacher_scores, mask), weights, "attention_prob_mse")

    def per_example(self, student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_scores(student_scores, teacher_scores, "attention_prob_mse")
        squared = (F.softmax(student_scores.float(), dim=-1) - F.softmax(teacher_scores.detach().float(), dim=-1)
                   ).pow(2)
        batch, heads, tokens, _ = squared.shape
        if mask is None:
            return squared.flatten(1).mean(dim=1)
        if tuple(mask.shape) != (batch, tokens):
            raise AlembertError(f"attention_prob_mse: mask must have shape ({batch}, {tokens}), got "
                                f"{tuple(mask.shape)}")
        real = mask.to(squared.dtype)
        pairs = real[:, None, :, None] * real[:, None, None, :]
        squared = torch.where(pairs > 0, squared, torch.zeros_like(squared))  # a padded row may be NaN
        return squared.flatten(1).sum(dim=1) / (heads * pairs.flatten(1).sum(dim=1)).clamp_min(1)
