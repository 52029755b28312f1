"""The one mapping from a task's kind to the model head that serves it: the Auto class a checkpoint loads with (and
a student is built with), the architecture suffix its config records, the outputs the head gives, and the
arguments its own loss reads.

Every part of the engine reads a head's outputs as one tensor, `head_logits`: (B, C) class logits for sequence
classification, (B, T, C) per-token tag logits for token classification, and (B, T, 2) for extractive QA, the
start logits in [..., 0] and the end logits in [..., 1].
"""
from __future__ import annotations

import torch
from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification)

from alembert.tasks.kinds import SEQUENCE, SPANS, TOKENS

AUTO_CLASSES = {SEQUENCE: AutoModelForSequenceClassification, TOKENS: AutoModelForTokenClassification,
                SPANS: AutoModelForQuestionAnswering}
SUFFIXES = {SEQUENCE: "ForSequenceClassification", TOKENS: "ForTokenClassification", SPANS: "ForQuestionAnswering"}
OUTPUT_NAMES = {SEQUENCE: ("logits",), TOKENS: ("logits",), SPANS: ("start_logits", "end_logits")}
PIPELINE_TAGS = {SEQUENCE: "text-classification", TOKENS: "token-classification", SPANS: "question-answering"}
DESCRIPTIONS = {SEQUENCE: "classification", TOKENS: "token-classification", SPANS: "question-answering"}


def auto_class(kind: str):
    return AUTO_CLASSES[kind]


def kind_of_architectures(architectures) -> str | None:
    """The kind whose head a config's `architectures` names (None: no head alembert knows)."""
    for name in architectures or ():
        for kind, suffix in SUFFIXES.items():
            if name.endswith(suffix):
                return kind
    return None


def kind_of_model(model) -> str:
    """The kind of a loaded model's head, by its class (a model of no known head: sequence classification)."""
    return kind_of_architectures([type(model).__name__]) or SEQUENCE


def per_token(kind: str) -> bool:
    """Whether the head gives its outputs per token (token classification and extractive QA)."""
    return kind != SEQUENCE


def output_width(kind: str, num_labels: int) -> int:
    """C, the last dimension of `head_logits`."""
    return 2 if kind == SPANS else num_labels


def head_logits(output) -> torch.Tensor:
    """A model output's logits as one tensor: `logits`, or start and end logits stacked on a last axis."""
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    return torch.stack([output.start_logits, output.end_logits], dim=-1)


def loss_targets(kind: str, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """A batch's labels as the arguments the head's own loss takes (`model(**inputs, **targets).loss`)."""
    if kind == SPANS:
        return {"start_positions": labels[:, 0], "end_positions": labels[:, 1]}
    return {"labels": labels}
