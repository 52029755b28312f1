"""A stage's objective: the recipe's loss terms, what each needs from the models, and their weighted sum."""
from __future__ import annotations

import torch
from torch import nn

from alembert.errors import AlembertError
from alembert.losses import AttentionProbKL, AttentionScoreMSE, HiddenMSE, PKDLoss, PredictionLoss, RelationKL
from alembert.mapping import attention_map, layer_map
from alembert.models.features import FeatureRequest, Features
from alembert.models.layout import Layout
from alembert.recipe import StageSpec

QKV_INDEX = {"qq": 0, "kk": 1, "vv": 2}


class Term(nn.Module):
    """One loss term of a recipe: its loss, the layer pairs it compares and, for consistency regularisation, the
    same comparison between two passes of the student (`self_loss`: no student-to-teacher projection)."""

    def __init__(self, spec, loss: nn.Module, pairs: list[tuple[int, int]], self_loss: nn.Module | None = None):
        super().__init__()
        self.name, self.weight, self.loss, self.pairs = spec.type, spec.weight, loss, pairs
        self.self_loss = self_loss if self_loss is not None else loss
        self.relations = [QKV_INDEX[r] for r in getattr(spec, "relations", [])]
        self.masked = getattr(spec, "masked", True)

    def _pieces(self, features: Features, index: int) -> list[torch.Tensor]:
        """The tensors this term compares at one layer of one model."""
        if self.name in ("hidden_mse", "pkd"):
            return [features.hidden[index].float()]
        if self.name in ("attention_mse", "attention_kl"):
            return [features.scores[index].float()]
        qkv = features.qkv[index]
        return [qkv[r].float() for r in self.relations]

    def compare(self, a: Features, b: Features, pairs, mask, weights, loss: nn.Module) -> torch.Tensor:
        """The loss of `a`'s layers against `b`'s, summed over layer pairs (and over Q/K/V relations)."""
        total = 0.0
        for s, t in pairs:
            for x, y in zip(self._pieces(a, s), self._pieces(b, t)):
                if self.name == "pkd":  # [CLS] only: no mask
                    total = total + loss(x, y, weights=weights)
                else:
                    total = total + loss(x, y, mask if self.masked else None, weights)
        return total


def _check_relation_heads(field: str, heads: int | None, student: Layout, teacher: Layout) -> None:
    """Before training: relation heads must split both widths, or the models' own head counts must agree."""
    if heads is None and student.num_heads != teacher.num_heads:
        raise AlembertError(f"{field}: student has {student.num_heads} heads and teacher {teacher.num_heads}; "
                            "set heads (relation heads both are re-split into)")
    for who, layout in (("student", student), ("teacher", teacher)):
        if heads is not None and layout.hidden_size % heads:
            raise AlembertError(f"{field}: heads {heads} does not divide the {who}'s width {layout.hidden_size}")


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
                self.terms.append(Term(spec, loss, []))
                continue
            depths = (student.num_layers, teacher.num_layers)
            self_loss = None
            if spec.type in ("hidden_mse", "pkd"):
                embeddings = spec.type == "hidden_mse" and spec.embeddings  # PKD compares transformer layers only
                pairs = layer_map(spec.map, *depths, spec.layers, include_embeddings=embeddings)
                widths = (student.hidden_size, teacher.hidden_size)
                kind = HiddenMSE if spec.type == "hidden_mse" else PKDLoss
                loss, self_loss = kind(*widths), kind(student.hidden_size, student.hidden_size)
                kind_of_request = "hidden"
            else:
                pairs = attention_map(spec.map, *depths, spec.layers)
                if spec.type == "relation":
                    loss = RelationKL(spec.heads)
                    kind_of_request = "qkv"
                else:
                    loss = AttentionScoreMSE() if spec.type == "attention_mse" else AttentionProbKL()
                    kind_of_request = "attention"
            if not pairs:
                raise AlembertError(f"{field}: map '{spec.map}' pairs no layers for these depths {depths}")
            if spec.type == "relation":
                _check_relation_heads(field, spec.heads, student, teacher)
            student_req |= FeatureRequest(**{kind_of_request: frozenset(s for s, _ in pairs)})
            teacher_req |= FeatureRequest(**{kind_of_request: frozenset(t for _, t in pairs)})
            self.terms.append(Term(spec, loss, pairs, self_loss))
        self.student_request, self.teacher_request = student_req, teacher_req
        self.student_logits_used = any(t.name == "prediction" for t in self.terms)
        self.needs_teacher_logits = any(
            t.name == "prediction" and t.loss.alpha > 0 for t in self.terms)

    @property
    def needs_teacher(self) -> bool:
        return self.needs_teacher_logits or not self.teacher_request.empty

    def forward(self, student: Features, teachers: list[Features], labels: torch.Tensor | None,
                weights: torch.Tensor | None = None, teacher_weights: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted sum of the terms. Several teachers (prediction terms only): teacher_weights (B, K) weigh
        each example's distillation loss against each; None with one teacher is that teacher alone."""
        teacher = teachers[0] if teachers else None
        teacher_logits = None
        if teacher is not None:
            teacher_logits = teacher.logits.float() if teacher_weights is None else \
                torch.stack([t.logits.float() for t in teachers], dim=1)
        total = student.logits.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        # token losses average over real tokens only: padding carries no signal, and a teacher's outputs at padded
        # positions depend on the batch, which the teacher-output cache (like any reordering) changes
        mask = student.attention_mask
        for term in self.terms:
            if term.name == "prediction":
                value, sub = term.loss(student.logits.float(), teacher_logits, labels, weights, teacher_weights)
                parts.update(sub)
            else:
                value = term.compare(student, teacher, term.pairs, mask, weights, term.loss)
                parts[term.name] = float(value.detach())
            total = total + term.weight * value
        parts["total"] = float(total.detach())
        return total, parts

    def consistency_terms(self, released_script: bool) -> list[Term]:
        """The terms consistency regularisation applies to: every distilled representation, or, as CR-ILD's
        released code, only attention-distribution KL and hidden MSE (so not its Q/K/V relations)."""
        if released_script:
            return [t for t in self.terms if t.name in ("attention_kl", "hidden_mse")]
        return [t for t in self.terms if t.name != "prediction"]

    def consistency(self, mixed: Features, clean: Features, lam: float, terms: list[Term]) -> torch.Tensor:
        """lam * D(f(x_mix), f(x)) + (1 - lam) * D(f(x_mix), f(x_rev)) for each term's own D on the student's
        layers, where x_rev is the mixing partner; each side's mask is that of the clean input it compares to."""
        partner = clean.reversed_batch()
        total = mixed.logits.new_zeros((), dtype=torch.float32)
        for term in terms:
            same = [(s, s) for s, _ in term.pairs]
            total = total + term.weight * (
                lam * term.compare(mixed, clean, same, clean.attention_mask, None, term.self_loss)
                + (1 - lam) * term.compare(mixed, partner, same, partner.attention_mask, None, term.self_loss))
        return total
