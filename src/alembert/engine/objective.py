"""A stage's objective: its loss terms (from the loss registry), what they need from the models, and the one place
where their per-example, per-layer-pair values are weighted and reduced to the loss."""
from __future__ import annotations

import torch
from torch import nn

from alembert.engine.plugins import Weights
from alembert.engine.terms import LayerTerm, TermContext
from alembert.models.features import FeatureRequest, Features, check_request
from alembert.models.layout import Layout
from alembert.registry import LOSSES
from alembert.tasks.kinds import SEQUENCE


def reduce(values: torch.Tensor, rows: torch.Tensor | None, example: torch.Tensor | None,
           pairs: torch.Tensor | None, pair_reduction: str = "sum") -> torch.Tensor:
    """(B,) or (B, P) values to a scalar: pair weights, then the sum over pairs (or their mean, `pair_reduction`
    "mean": PKD); example weights; then the mean over the rows that count. A weight scales its example's value and
    leaves the normaliser as it is, so weights of all ones give the unweighted value (Meta-KD's "multiply by w_i,
    then average"); under "mean" a pair weight likewise scales its pair and the divisor stays P."""
    if values.dim() == 2:
        count = values.shape[1]
        values = (values * pairs.to(values.dtype)).sum(dim=1) if pairs is not None else values.sum(dim=1)
        if pair_reduction == "mean":
            values = values / max(count, 1)
    if example is not None:
        values = values * example.to(values.dtype)
    if rows is None or bool(rows.all()):  # every row counts: the plain mean (the same arithmetic as ever)
        return values.mean()
    keep = rows.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp_min(1)


class Objective(nn.Module):
    """Owns a stage's terms (and their trainable projections)."""

    def __init__(self, stage, student: Layout, teacher: Layout | None, regression: bool, kind: str = SEQUENCE):
        super().__init__()
        self.terms = nn.ModuleList()
        for i, spec in enumerate(stage.losses):
            context = TermContext(f"stages.{stage.name}.losses.{i}", student, teacher, regression, kind)
            term = LOSSES.get(spec.type, context.field).build(spec, context)
            # a feature the model's family cannot give is refused now, before any stage trains
            check_request(student, term.student_request, f"{context.field} ({spec.type}, student)")
            if teacher is not None:
                check_request(teacher, term.teacher_request, f"{context.field} ({spec.type}, teacher)")
            self.terms.append(term)
        self.student_request = _union(t.student_request for t in self.terms)
        self.teacher_request = _union(t.teacher_request for t in self.terms)
        self.student_logits_used = any(t.reads_student_logits for t in self.terms)
        self.needs_teacher_logits = any(t.reads_teacher_logits for t in self.terms)

    @property
    def needs_teacher(self) -> bool:
        return any(t.needs_teacher for t in self.terms)

    def forward(self, student: Features, teachers: list[Features], labels: torch.Tensor, label_mask: torch.Tensor,
                weights: Weights | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted sum of the terms, and each part's value for the log."""
        weights = weights or Weights()
        total = student.logits.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        for index, term in enumerate(self.terms):
            for part in term.components(student, teachers, labels, label_mask, weights.teacher):
                value = reduce(part.values, part.rows, weights.example, weights.pairs.get(index), term.pair_reduction)
                parts[part.name] = float(value.detach())
                total = total + term.weight * part.coef * value
        parts["total"] = float(total.detach())
        return total, parts

    def layer_terms(self, released_script: bool = False) -> list[LayerTerm]:
        """The terms on layer pairs: what consistency regularisation applies to. released_script: only attention
        KL and hidden MSE, as CR-ILD's released code (so not its Q/K/V relations)."""
        terms = [t for t in self.terms if isinstance(t, LayerTerm)]
        return [t for t in terms if t.name in ("attention_kl", "hidden_mse")] if released_script else terms


def _union(requests) -> FeatureRequest:
    total = FeatureRequest()
    for request in requests:
        total = total | request
    return total
