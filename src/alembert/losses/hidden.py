"""TinyBERT hidden-state / embedding loss: MSE(H_S W_h, H_T) with a learned projection."""

from __future__ import annotations

import torch
from torch import nn

from alembert.errors import AlembertError
from alembert.losses._reduce import weighted_mean, width_projection


class HiddenMSE(nn.Module):
    """MSE between projected student states (B, T, ds) and teacher states (B, T, dt).

    The projection is ``nn.Linear(ds, dt)`` when widths differ (TinyBERT's ``fit_dense``) and the
    identity, with no parameters, when they match. One instance is meant to be called once per
    mapped layer pair so that all pairs share the projection.

    Averaging: over all elements, padding included (as TinyBERT does); with ``mask`` (B, T) only
    over real tokens: sum of squared errors on real tokens / (number of real tokens * dt).
    ``weights`` (B,) scale each example's squared errors with that normaliser unchanged.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.projection = width_projection(student_dim, teacher_dim, "HiddenMSE")
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim

    def forward(self, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                mask: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(self.per_example(student_hidden, teacher_hidden, mask), weights, "HiddenMSE")

    def per_example(self, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B,): each example's squared error over its real tokens, divided by the batch's mean count of real
        tokens times dt, so their mean is the batch's token-weighted MSE."""
        if student_hidden.shape[-1] != self.student_dim or teacher_hidden.shape[-1] != self.teacher_dim:
            raise AlembertError(
                f"HiddenMSE: expected widths {self.student_dim} (student) and {self.teacher_dim} "
                f"(teacher), got {student_hidden.shape[-1]} and {teacher_hidden.shape[-1]}"
            )
        if student_hidden.shape[:-1] != teacher_hidden.shape[:-1]:
            raise AlembertError(
                f"HiddenMSE: student and teacher must agree on (batch, tokens), got "
                f"{tuple(student_hidden.shape[:-1])} and {tuple(teacher_hidden.shape[:-1])}"
            )
        squared = (self.projection(student_hidden) - teacher_hidden.detach()).pow(2)
        # Per-position sum over the width, shape (B, T) (or (B,) for pooled vectors).
        per_position = squared.sum(dim=-1)
        if mask is None:
            keep = torch.ones_like(per_position)
        else:
            if tuple(mask.shape) != tuple(per_position.shape):
                raise AlembertError(
                    f"HiddenMSE: mask must have shape {tuple(per_position.shape)}, got {tuple(mask.shape)}"
                )
            keep = mask.to(per_position.dtype)
        batch = per_position.shape[0]
        sums = (per_position * keep).reshape(batch, -1).sum(dim=1)
        return sums * batch / (keep.sum().clamp_min(1) * self.teacher_dim)
