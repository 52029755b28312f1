"""Loss terms: what a recipe's `losses:` entries become. Each term declares the features it needs from each model
and returns its values per example (and per layer pair); the objective weighs and reduces them in one place.

A loss type is registered with its recipe spec and a builder: `LOSSES.register("name", LossEntry(Spec, build))`,
where `build(spec, TermContext) -> Term`. A layer loss (compares one tensor per layer pair) needs only a module
with `per_example(student_x, teacher_x, mask) -> (B,)` and the kind of feature it reads: see `layer_loss`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from alembert.errors import AlembertError
from alembert.losses import (AttentionProbKL, AttentionProbMSE, AttentionScoreMSE, HiddenMSE, PKDLoss, PredictionLoss,
                             RelationKL)
from alembert.data.batch import IGNORE
from alembert.losses.positions import per_position_mean, span_distill, span_hard, span_logits
from alembert.mapping import attention_map, layer_map
from alembert.models.features import MASK_VALUE, FeatureRequest, Features, split_heads
from alembert.models.layout import Layout
from alembert.recipe.specs import (AttentionLossSpec, HiddenLossSpec, PKDLossSpec, PredictionLossSpec,
                                   RelationLossSpec)
from alembert.registry import LOSSES
from alembert.tasks.kinds import SEQUENCE, SPANS, TOKENS

QKV_INDEX = {"qq": 0, "kk": 1, "vv": 2}


@dataclass
class TermContext:
    field: str  # where the loss stands in the recipe, e.g. stages.0.losses.1
    student: Layout
    teacher: Layout | None
    regression: bool
    kind: str = SEQUENCE  # the task's kind (tasks/kinds.py): what the logits are of


@dataclass
class LossEntry:
    spec: type
    build: Callable[..., "Term"]


@dataclass
class Component:
    """One part of a term: values per example (B,) or per example and layer pair (B, P); `coef` scales it in the
    term; `rows` (B,) marks the examples it is averaged over (None: all)."""

    name: str
    values: torch.Tensor
    coef: float = 1.0
    rows: torch.Tensor | None = None


class Term(nn.Module):
    """A loss term. Subclasses set the requests and return their components. `pair_reduction`: how the objective
    reduces a component's values over layer pairs, "sum" (TinyBERT's sum over mapped layers, and most papers') or
    "mean" (PKD: its released code takes one MSE over every layer pair's normalised [CLS] vectors)."""

    pair_reduction = "sum"

    def __init__(self, spec):
        super().__init__()
        self.spec, self.name, self.weight = spec, spec.type, spec.weight
        self.student_request, self.teacher_request = FeatureRequest(), FeatureRequest()
        self.pairs: list[tuple[int, int]] = []
        self.reads_student_logits = False
        self.reads_teacher_logits = False

    @property
    def needs_teacher(self) -> bool:
        return self.reads_teacher_logits or not self.teacher_request.empty

    def components(self, student: Features, teachers: list[Features], labels: torch.Tensor, label_mask: torch.Tensor,
                   teacher_weights: torch.Tensor | None) -> list[Component]:
        raise NotImplementedError


class PredictionTerm(Term):
    """(1 - alpha) * the hard-label loss over labelled examples + alpha * the distillation loss, which with several
    teachers is each example's sum over teachers by its teacher weights."""

    def __init__(self, spec: PredictionLossSpec, context: TermContext):
        super().__init__(spec)
        self.loss = PredictionLoss(spec.alpha, spec.temperature, spec.kd, spec.tau_squared, context.regression)
        self.reads_student_logits = True
        self.reads_teacher_logits = spec.alpha > 0

    def components(self, student, teachers, labels, label_mask, teacher_weights):
        loss, logits, out = self.loss, student.logits.float(), []
        if loss.alpha < 1:
            out.append(Component(loss.hard_name, loss.hard.per_example(logits, labels), 1 - loss.alpha, label_mask))
        if loss.alpha > 0:
            values = [loss.distill_per_example(logits, t.logits.float()) for t in teachers]
            out.append(Component(loss.distill_name, over_teachers(values, teacher_weights), loss.alpha))
        return out


def over_teachers(values: list[torch.Tensor], teacher_weights: torch.Tensor | None) -> torch.Tensor:
    """(B,): each example's distillation values against each teacher, summed by its teacher weights (mean when
    there are none)."""
    values = torch.stack(values, dim=1)
    if teacher_weights is None:
        return values.mean(dim=1) if values.shape[1] > 1 else values[:, 0]
    return (values * teacher_weights.to(values.dtype)).sum(dim=1)


class TokenPredictionTerm(PredictionTerm):
    """The prediction loss of a token classifier: per scored token (a word's first sub-token), averaged over the
    example's scored tokens (losses/positions.py); examples without one do not count."""

    def components(self, student, teachers, labels, label_mask, teacher_weights):
        loss, logits, out = self.loss, student.logits.float(), []
        positions = labels != IGNORE
        scored = positions.any(dim=1)
        if loss.alpha < 1:
            hard = per_position_mean(loss.hard.per_example, logits, labels, positions)
            out.append(Component(loss.hard_name, hard, 1 - loss.alpha, label_mask & scored))
        if loss.alpha > 0:
            values = [per_position_mean(loss.distill_per_example, logits, t.logits.float(), positions)
                      for t in teachers]
            out.append(Component(loss.distill_name, over_teachers(values, teacher_weights), loss.alpha, scored))
        return out


class SpanPredictionTerm(PredictionTerm):
    """The prediction loss of an extractive QA head: over each window's start and end distributions
    (losses/positions.py)."""

    def components(self, student, teachers, labels, label_mask, teacher_weights):
        loss, mask, out = self.loss, student.attention_mask, []
        logits = span_logits(student.logits.float(), mask)
        if loss.alpha < 1:
            out.append(Component(loss.hard_name, span_hard(loss.hard.per_example, logits, labels), 1 - loss.alpha,
                                 label_mask))
        if loss.alpha > 0:
            values = [span_distill(loss, logits, span_logits(t.logits.float(), mask), mask) for t in teachers]
            out.append(Component(loss.distill_name, over_teachers(values, teacher_weights), loss.alpha))
        return out


class LayerTerm(Term):
    """A loss on pairs of layers: `loss.per_example(student_x, teacher_x, mask)` on each mapped pair, for the
    tensors of one kind (hidden states, attention scores, or Q/K/V projections)."""

    def __init__(self, spec, pairs, kind: str, loss: nn.Module, self_loss: nn.Module | None = None,
                 masked: bool = True, relations: tuple[int, ...] = (), cls_only: bool = False):
        super().__init__(spec)
        self.pairs, self.kind, self.loss, self.masked, self.relations = list(pairs), kind, loss, masked, relations
        self.cls_only = cls_only  # hidden states at the [CLS] position only
        self.self_loss = self_loss if self_loss is not None else loss  # student against itself: no projection
        self.student_request = FeatureRequest(**{kind: frozenset(s for s, _ in self.pairs)})
        self.teacher_request = FeatureRequest(**{kind: frozenset(t for _, t in self.pairs)})

    def pieces(self, features: Features, index: int) -> list[torch.Tensor]:
        """The tensors this term compares at one layer of one model."""
        if self.kind == "hidden":
            hidden = features.hidden[index].float()
            return [hidden[:, :1] if self.cls_only else hidden]
        if self.kind == "attention":
            return [features.scores[index].float()]
        qkv = features.qkv[index]
        return [qkv[r].float() for r in self.relations]

    def pair_values(self, a: Features, b: Features, pairs, mask, loss: nn.Module) -> torch.Tensor:
        """(B, P): the loss of `a`'s layers against `b`'s, per example and pair (summed over Q/K/V relations)."""
        mask = mask[:, :1] if self.cls_only else mask
        columns = []
        for s, t in pairs:
            columns.append(sum(loss.per_example(x, y, mask if self.masked else None)
                               for x, y in zip(self.pieces(a, s), self.pieces(b, t))))
        return torch.stack(columns, dim=1)

    def components(self, student, teachers, labels, label_mask, teacher_weights):
        return [Component(self.name, self.pair_values(student, teachers[0], self.pairs, student.attention_mask,
                                                      self.loss))]


class ResplitAttentionTerm(LayerTerm):
    """An attention loss between models of different head counts: both models' Q and K re-split into `heads`
    heads, their scores Q K^T / sqrt(d) rebuilt with the additive mask on padded keys, then compared as the
    model's own scores would be."""

    def __init__(self, spec, pairs, loss: nn.Module):
        super().__init__(spec, pairs, "qkv", loss, relations=(0, 1))
        self.heads = spec.heads

    def pieces(self, features: Features, index: int) -> list[torch.Tensor]:
        q, k = (split_heads(merge_heads(x.float()), self.heads) for x in features.qkv[index][:2])
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mask = features.attention_mask
        return [scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * MASK_VALUE]


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, d) to (B, T, H*d)."""
    return x.transpose(1, 2).flatten(2)


def _pairs(spec, context: TermContext, attention: bool, embeddings: bool = False) -> list[tuple[int, int]]:
    depths = (context.student.num_layers, context.teacher.num_layers)
    pairs = attention_map(spec.map, *depths, spec.layers) if attention else \
        layer_map(spec.map, *depths, spec.layers, include_embeddings=embeddings)
    if not pairs:
        raise AlembertError(f"{context.field}: map '{spec.map}' pairs no layers for these depths {depths}")
    return pairs


def _check_relation_heads(field: str, heads: int | None, student: Layout, teacher: Layout) -> None:
    """Before training: relation heads must split both widths, or the models' own head counts must agree."""
    if heads is None and student.num_heads != teacher.num_heads:
        raise AlembertError(f"{field}: student has {student.num_heads} heads and teacher {teacher.num_heads}; "
                            "set heads (relation heads both are re-split into)")
    for who, layout in (("student", student), ("teacher", teacher)):
        if heads is not None and layout.hidden_size % heads:
            raise AlembertError(f"{field}: heads {heads} does not divide the {who}'s width {layout.hidden_size}")


def layer_loss(spec_class, kind: str, make_loss: Callable, attention_pairs: bool = False) -> LossEntry:
    """A registry entry for a loss on layer pairs: `make_loss(student_width, teacher_width)` gives the module
    (its trainable projections train with the student); `kind` is 'hidden', 'attention' or 'qkv'."""
    def build(spec, context: TermContext) -> LayerTerm:
        widths = (context.student.hidden_size, context.teacher.hidden_size)
        return LayerTerm(spec, _pairs(spec, context, attention_pairs), kind, make_loss(*widths),
                         make_loss(widths[0], widths[0]))
    return LossEntry(spec_class, build)


def _prediction(spec, context):
    """One loss type for every kind of task: what a prediction is follows from the task's kind."""
    return {SEQUENCE: PredictionTerm, TOKENS: TokenPredictionTerm, SPANS: SpanPredictionTerm}[context.kind](spec,
                                                                                                        context)


def _hidden(spec, context):
    widths = (context.student.hidden_size, context.teacher.hidden_size)
    return LayerTerm(spec, _pairs(spec, context, False, spec.embeddings), "hidden", HiddenMSE(*widths),
                     HiddenMSE(widths[0], widths[0]), cls_only=spec.cls_only, masked=spec.positions == "real")


def _pkd(spec, context):  # PKD compares transformer layers only, at [CLS]
    widths = (context.student.hidden_size, context.teacher.hidden_size)
    term = LayerTerm(spec, _pairs(spec, context, False), "hidden", PKDLoss(*widths), PKDLoss(widths[0], widths[0]),
                     cls_only=True)
    # PKD's code (and CR-ILD's PKD_Loss) take one MSE over (batch, pairs, width): the mean over pairs, so beta keeps
    # its meaning whatever the student's depth (a sum would multiply PKD's beta grid by the M - 1 pairs)
    term.pair_reduction = "mean"
    return term


def _attention(spec, context):
    loss = {"attention_mse": AttentionScoreMSE, "attention_kl": AttentionProbKL,
            "attention_prob_mse": AttentionProbMSE}[spec.type]()
    if spec.heads is None:
        if context.student.num_heads != context.teacher.num_heads:  # said before training, not at the first batch
            raise AlembertError(f"{context.field}: {spec.type} compares each model's own heads, but the student has "
                                f"{context.student.num_heads} and the teacher {context.teacher.num_heads} (give the "
                                "student the teacher's head count, or set heads to re-split both)")
        return LayerTerm(spec, _pairs(spec, context, True), "attention", loss, masked=spec.positions == "real")
    for who, layout in (("student", context.student), ("teacher", context.teacher)):
        if (layout.num_heads * layout.head_size) % spec.heads:
            raise AlembertError(f"{context.field}: heads {spec.heads} does not divide the {who}'s attention width "
                                f"{layout.num_heads * layout.head_size}")
    term = ResplitAttentionTerm(spec, _pairs(spec, context, True), loss)
    term.masked = spec.positions == "real"
    return term


def _relation(spec, context):
    _check_relation_heads(context.field, spec.heads, context.student, context.teacher)
    return LayerTerm(spec, _pairs(spec, context, True), "qkv", RelationKL(spec.heads), masked=spec.masked,
                     relations=tuple(QKV_INDEX[r] for r in spec.relations))


LOSSES.register("prediction", LossEntry(PredictionLossSpec, _prediction))
LOSSES.register("hidden_mse", LossEntry(HiddenLossSpec, _hidden))
LOSSES.register("attention_mse", LossEntry(AttentionLossSpec, _attention))
LOSSES.register("attention_kl", LossEntry(AttentionLossSpec, _attention))
LOSSES.register("attention_prob_mse", LossEntry(AttentionLossSpec, _attention))
LOSSES.register("pkd", LossEntry(PKDLossSpec, _pkd))
LOSSES.register("relation", LossEntry(RelationLossSpec, _relation))
