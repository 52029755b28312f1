"""A stage's objective: the recipe's loss terms, what each needs from the models, and their weighted sum."""
from __future__ import annotations

import torch
from torch import nn

from alembert.errors import AlembertError
from alembert.losses import AttentionProbKL, AttentionScoreMSE, HiddenMSE, PredictionLoss
from alembert.mapping import attention_map, layer_map
from alembert.models.features import FeatureRequest, Features
from alembert.models.layout import Layout
from alembert.recipe import StageSpec


class Term(nn.Module):
    """One loss term of a recipe with the layer pairs it compares."""

    def __init__(self, name: str, weight: float, loss: nn.Module, pairs: list[tuple[int, int]]):
        super().__init__()
        self.name, self.weight, self.loss, self.pairs = name, weight, loss, pairs


class Objective(nn.Module):
    """Owns the loss modules (and their trainable projections) of one stage."""

    def __init__(self, stage: StageSpec, student: Layout, teacher: Layout | None, regression: bool):
        super().__init__()
        self.terms = nn.ModuleList()
        student_req, teacher_req = FeatureRequest(), FeatureRequest()
        for i, spec in enumerate(stage.losses):
            field = f"stages.{stage.name}.losses.{i}"
            if spec.type == "prediction":
                loss = PredictionLoss(spec.alpha, spec.temperature, spec.kd, spec.tau_squared, regression)
                self.terms.append(Term("prediction", spec.weight, loss, []))
                continue
            depths = (student.num_layers, teacher.num_layers)
            if spec.type == "hidden_mse":
                pairs = layer_map(spec.map, *depths, spec.layers, include_embeddings=spec.embeddings)
                loss = HiddenMSE(student.hidden_size, teacher.hidden_size)
                student_req |= FeatureRequest(hidden=frozenset(s for s, _ in pairs))
                teacher_req |= FeatureRequest(hidden=frozenset(t for _, t in pairs))
            else:
                pairs = attention_map(spec.map, *depths, spec.layers)
                loss = AttentionScoreMSE() if spec.type == "attention_mse" else AttentionProbKL()
                student_req |= FeatureRequest(attention=frozenset(s for s, _ in pairs))
                teacher_req |= FeatureRequest(attention=frozenset(t for _, t in pairs))
            if not pairs:
                raise AlembertError(f"{field}: map '{spec.map}' pairs no layers for these depths {depths}")
            self.terms.append(Term(spec.type, spec.weight, loss, pairs))
        self.student_request, self.teacher_request = student_req, teacher_req
        self.needs_teacher_logits = any(
            t.name == "prediction" and t.loss.alpha > 0 for t in self.terms)

    @property
    def needs_teacher(self) -> bool:
        return self.needs_teacher_logits or not self.teacher_request.empty

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor | None,
                weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        total = student.logits.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        # token losses average over real tokens only: padding carries no signal, and a teacher's outputs at padded
        # positions depend on the batch, which the teacher-output cache (like any reordering) changes
        mask = student.attention_mask
        for term in self.terms:
            if term.name == "prediction":
                value, sub = term.loss(student.logits.float(), teacher.logits.float() if teacher else None,
                                       labels, weights)
                parts.update(sub)
            elif term.name == "hidden_mse":
                value = sum(term.loss(student.hidden[s].float(), teacher.hidden[t].float(), mask, weights)
                            for s, t in term.pairs)
            elif term.name == "attention_mse":
                value = sum(term.loss(student.scores[s].float(), teacher.scores[t].float(), mask, weights)
                            for s, t in term.pairs)
            else:
                value = sum(term.loss(student.scores[s].float(), teacher.scores[t].float(), mask, weights)
                            for s, t in term.pairs)
            if term.name != "prediction":
                parts[term.name] = float(value.detach())
            total = total + term.weight * value
        parts["total"] = float(total.detach())
        return total, parts
