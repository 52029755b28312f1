"""Losses on the prediction layer: Hinton KD, hard-label CE, logit/regression MSE, and their mix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alembert.errors import AlembertError
from alembert.losses._reduce import check_same_shape, check_temperature, weighted_mean

KD_KINDS = ("kl", "soft_ce")


class KDLoss(nn.Module):
    """Soft-target loss at temperature tau, summed over classes and averaged over examples.

    ``kind='kl'``: KL(p_T || p_S); ``kind='soft_ce'``: -sum p_T log p_S (same gradient, value offset
    by the teacher's entropy). ``tau_squared`` multiplies by tau^2 (Hinton / CR-ILD); TinyBERT-style
    code omits it. ``average_classes=True`` also divides by the number of classes, reproducing
    TinyBERT-style ``.mean()`` over batch x classes.
    """

    def __init__(self, temperature: float = 1.0, kind: str = "kl", tau_squared: bool = True,
                 average_classes: bool = False):
        super().__init__()
        check_temperature(temperature, "KDLoss")
        if kind not in KD_KINDS:
            raise AlembertError(f"KDLoss: kind must be one of {', '.join(KD_KINDS)}, got {kind!r}")
        self.temperature = float(temperature)
        self.kind = kind
        self.tau_squared = tau_squared
        self.average_classes = average_classes

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.reduce(self.per_example(student_logits, teacher_logits), weights)

    def per_example(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Each example's loss, (B,), before the example weights and tau^2."""
        check_same_shape(student_logits, teacher_logits, "KDLoss", "logits")
        tau = self.temperature
        log_p_s = F.log_softmax(student_logits / tau, dim=-1)
        log_p_t = F.log_softmax(teacher_logits.detach() / tau, dim=-1)
        p_t = log_p_t.exp()
        if self.kind == "kl":
            # xlogy-style guard: a class with p_T == 0 contributes 0, not 0 * -inf.
            terms = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), torch.zeros_like(p_t))
        else:
            terms = -p_t * log_p_s
        per_example = terms.sum(dim=-1)
        if per_example.dim() > 1:  # extra dims (e.g. tokens) are averaged like examples' parts
            per_example = per_example.flatten(1).mean(dim=1)
        if self.average_classes:
            per_example = per_example / student_logits.shape[-1]
        return per_example

    def reduce(self, per_example: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        loss = weighted_mean(per_example, weights, "KDLoss")
        return loss * self.temperature ** 2 if self.tau_squared else loss


class HardLabelCE(nn.Module):
    """Cross-entropy against integer class labels, averaged over examples."""

    def forward(self, student_logits: torch.Tensor, labels: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(self.per_example(student_logits, labels), weights, "HardLabelCE")

    @staticmethod
    def per_example(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(student_logits, labels.long(), reduction="none")


class LogitMSE(nn.Module):
    """MSE between z_S / tau and z_T / tau, averaged over all elements (CR-ILD regression KD)."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        check_temperature(temperature, "LogitMSE")
        self.temperature = float(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.reduce(self.per_example(student_logits, teacher_logits), weights)

    def per_example(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        check_same_shape(student_logits, teacher_logits, "LogitMSE", "logits")
        diff = (student_logits - teacher_logits.detach()) / self.temperature
        return diff.pow(2).reshape(diff.shape[0], -1).mean(dim=1)

    def reduce(self, per_example: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(per_example, weights, "LogitMSE")


class RegressionMSE(nn.Module):
    """MSE between a scalar prediction, shape (B, 1) or (B,), and float labels (B,)."""

    def forward(self, predictions: torch.Tensor, labels: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(self.per_example(predictions, labels), weights, "RegressionMSE")

    @staticmethod
    def per_example(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if predictions.dim() == 2 and predictions.shape[1] == 1:
            predictions = predictions.squeeze(1)
        if predictions.shape != labels.shape:
            raise AlembertError(
                f"RegressionMSE: predictions must have shape (B,) or (B, 1) matching labels "
                f"{tuple(labels.shape)}, got {tuple(predictions.shape)}"
            )
        return (predictions - labels.to(predictions.dtype)).pow(2)


class PredictionLoss(nn.Module):
    """(1 - alpha) * hard-label term + alpha * distillation term.

    Classification: HardLabelCE + KDLoss, parts ``'ce'`` and ``'kd'``.
    Regression: RegressionMSE + LogitMSE, parts ``'mse'`` and ``'kd_mse'``.
    ``kind='mse'`` on classification: HardLabelCE + LogitMSE, parts ``'ce'`` and ``'logit_mse'``.
    A term whose coefficient is 0 is skipped (so teacher_logits may be None when alpha == 0 and
    labels may be None when alpha == 1) and is absent from the parts dict.

    Several teachers: teacher_logits (B, K, C) with teacher_weights (B, K); each example's distillation loss is
    sum_k w_k * loss(student, teacher k), so an example whose weights are all 0 learns from no teacher.
    """

    def __init__(self, alpha: float = 0.5, temperature: float = 1.0, kind: str = "kl",
                 tau_squared: bool = True, regression: bool = False,
                 average_classes: bool = False):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise AlembertError(f"PredictionLoss: alpha must be a number in [0, 1], got {alpha!r}")
        check_temperature(temperature, "PredictionLoss")
        self.alpha = float(alpha)
        self.regression = regression
        if regression:
            self.hard, self.distill = RegressionMSE(), LogitMSE(temperature)
            self.hard_name, self.distill_name = "mse", "kd_mse"
        elif kind == "mse":  # match the raw logits instead of the distributions
            self.hard, self.distill = HardLabelCE(), LogitMSE(temperature)
            self.hard_name, self.distill_name = "ce", "logit_mse"
        else:
            self.hard = HardLabelCE()
            self.distill = KDLoss(temperature, kind, tau_squared, average_classes)
            self.hard_name, self.distill_name = "ce", "kd"

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                labels: torch.Tensor | None, weights: torch.Tensor | None = None,
                teacher_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        total = student_logits.new_zeros(())
        parts: dict[str, float] = {}
        if self.alpha < 1:
            if labels is None:
                raise AlembertError(
                    f"PredictionLoss: labels are needed when alpha < 1 (alpha={self.alpha})"
                )
            hard = self.hard(student_logits, labels, weights)
            total = total + (1 - self.alpha) * hard
            parts[self.hard_name] = float(hard.detach())
        if self.alpha > 0:
            if teacher_logits is None:
                raise AlembertError(
                    f"PredictionLoss: teacher_logits are needed when alpha > 0 (alpha={self.alpha})"
                )
            distill = self._distill(student_logits, teacher_logits, weights, teacher_weights)
            total = total + self.alpha * distill
            parts[self.distill_name] = float(distill.detach())
        return total, parts

    def distill_per_example(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """(B,): each example's distillation loss against one teacher, tau^2 included where it applies."""
        values = self.distill.per_example(student_logits, teacher_logits)
        scale = getattr(self.distill, "tau_squared", False)
        return values * self.distill.temperature ** 2 if scale else values

    def _distill(self, student_logits, teacher_logits, weights, teacher_weights) -> torch.Tensor:
        if teacher_weights is None:
            return self.distill(student_logits, teacher_logits, weights)
        if teacher_logits.dim() != 3 or teacher_weights.shape != teacher_logits.shape[:2]:
            raise AlembertError(f"PredictionLoss: teacher_weights {tuple(teacher_weights.shape)} must be (B, K) for "
                                f"teacher_logits (B, K, C) {tuple(teacher_logits.shape)}")
        per_teacher = torch.stack([self.distill.per_example(student_logits, teacher_logits[:, k])
                                   for k in range(teacher_logits.shape[1])], dim=1)
        return self.distill.reduce((per_teacher * teacher_weights.to(per_teacher.dtype)).sum(dim=1), weights)
