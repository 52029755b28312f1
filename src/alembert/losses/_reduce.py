"""Shared reduction over examples (dim 0) with optional per-example weights.

Weighting rule used by every loss in this package: each example's terms are multiplied by its
weight and the normaliser is left as it would be without weights. For a per-example loss l_i this
is ``sum_i w_i * l_i / B`` (Meta-KD's "multiply by w_i, then average"), so weights of all ones
give exactly the unweighted value.
"""

from __future__ import annotations

import torch
from torch import nn

from alembert.errors import AlembertError


def check_weights(weights: torch.Tensor | None, batch: int, name: str) -> None:
    if weights is not None and tuple(weights.shape) != (batch,):
        raise AlembertError(
            f"{name}: weights must have shape ({batch},) (one per example), "
            f"got {tuple(weights.shape)}"
        )


def weighted_mean(per_example: torch.Tensor, weights: torch.Tensor | None, name: str) -> torch.Tensor:
    """Mean of a (B,) tensor of per-example losses, each scaled by its weight when given."""
    check_weights(weights, per_example.shape[0], name)
    if weights is None:
        return per_example.mean()
    return (weights.to(per_example.dtype) * per_example).sum() / per_example.shape[0]


def check_temperature(temperature: float, name: str) -> None:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature <= 0:
        raise AlembertError(f"{name}: temperature must be a number > 0, got {temperature!r}")


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name: str, what: str) -> None:
    if a.shape != b.shape:
        raise AlembertError(
            f"{name}: student and teacher {what} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def width_projection(student_dim: int, teacher_dim: int, name: str) -> nn.Module:
    """TinyBERT's ``fit_dense``: ``nn.Linear(ds, dt)`` when the widths differ, the parameter-free identity when
    they match; both widths checked."""
    for field, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AlembertError(f"{name}: {field} must be an integer >= 1, got {value!r}")
    return nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else nn.Identity()
