"""The prediction loss of heads that predict per token, as one value per example.

Token classification: the hard-label and distillation losses of each scored position (a word's first sub-token,
where the label is not IGNORE), averaged over the example's scored positions: padding, special tokens and later
sub-tokens take no part, so a cached teacher (zeros at padding) and a live one give the same value.

Extractive QA: the start and the end logits over a window's real tokens are two distributions (padding is set to
MASKED, which softmax turns into exactly 0); the hard-label loss is the mean of the cross-entropies of the start
and end tokens, the distillation loss the mean of the start's and the end's (KL or soft cross-entropy between the
distributions; `kd: mse`: the squared difference of the logits over the real tokens).
"""
from __future__ import annotations

from typing import Callable

import torch

from alembert.losses.logits import LogitMSE

MASKED = -1e4  # a padded position's logit: exp(-1e4 - max) is 0 in float32, and it stays finite through / tau


def per_position_mean(values_of: Callable, student: torch.Tensor, other: torch.Tensor,
                      positions: torch.Tensor) -> torch.Tensor:
    """(B,): the mean over each example's `positions` (B, T) of `values_of(student rows, other rows)`, computed on
    the (B*T, C) rows of `student` (B, T, C) and `other` (B, T, C) or (B, T) labels."""
    size, length = positions.shape
    rows = values_of(student.reshape(size * length, -1), other.reshape(size * length, *other.shape[2:]))
    keep = positions.to(rows.dtype).reshape(size, length)
    return (rows.reshape(size, length) * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)


def span_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, 2) start/end logits as (B, 2, T), padded positions set to MASKED."""
    return logits.transpose(1, 2).masked_fill(~mask.bool()[:, None, :], MASKED)


def span_hard(hard: Callable, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,): the mean of the start and end cross-entropies; `logits` (B, 2, T) masked, `labels` (B, 2) tokens."""
    size, _, length = logits.shape
    return hard(logits.reshape(size * 2, length), labels.reshape(size * 2)).reshape(size, 2).mean(dim=1)


def span_distill(prediction_loss, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,): the distillation loss of the start and end distributions, (B, 2, T) masked each, their mean."""
    if isinstance(prediction_loss.distill, LogitMSE):
        keep = mask.to(student.dtype)[:, None, :]
        squared = ((student - teacher.detach()) / prediction_loss.distill.temperature).pow(2) * keep
        return squared.sum(dim=(1, 2)) / (2 * keep.sum(dim=(1, 2))).clamp_min(1)
    return prediction_loss.distill_per_example(student, teacher)
