"""Build a student: (a) from a size spec in the teacher's architecture, (b) by extracting teacher layers, and
optionally fewer dimensions, heads and neurons (ETD), or (c) from any HF checkpoint. Every student is a plain HF
model that loads without alembert."""
from __future__ import annotations

import copy
from typing import Iterable

from torch import nn

from alembert.errors import AlembertError
from alembert.mapping import scaled_layer
from alembert.models.extract import extract, set_size
from alembert.models.heads import auto_class, kind_of_model
from alembert.models.layout import find_layout


def student_from_spec(teacher: nn.Module, layers: int, hidden: int | None = None, heads: int | None = None,
                      ffn: int | None = None, seed: int = 0) -> nn.Module:
    """A randomly initialised model of the teacher's architecture and head (its kind too), resized."""
    config = copy.deepcopy(teacher.config)
    layout = find_layout(teacher)
    hidden = hidden or layout.hidden_size
    heads = heads or layout.num_heads
    if hidden % heads:
        raise AlembertError(f"student.hidden: {hidden} is not divisible by student.heads {heads}")
    ffn = ffn or hidden * 4
    for field, value in (("layers", layers), ("hidden", hidden), ("heads", heads), ("ffn", ffn)):
        set_size(config, field, value)
    if getattr(config, "embedding_size", None) is not None and config.model_type == "electra":
        config.embedding_size = min(config.embedding_size, hidden)
    if getattr(config, "pooler_hidden_size", None) is not None:  # DeBERTa's pooler reads the hidden width
        config.pooler_hidden_size = hidden
    if getattr(config, "attention_head_size", None) is not None:
        config.attention_head_size = hidden // heads
    if getattr(config, "layer_types", None):  # ModernBERT: its pattern of global and local layers, at the new depth
        types = config.layer_types
        period = next((i for i, kind in enumerate(types) if i and kind == types[0]), len(types))
        config.layer_types = [types[i % period] for i in range(layers)]
    import torch

    torch.manual_seed(seed)
    return auto_class(kind_of_model(teacher)).from_config(config)


def pick_layers(how: str, teacher_layers: int, student_layers: int | None, explicit: list[int] | None) -> list[int]:
    """0-based teacher layer indices to copy. 'uniform' takes layers k, 2k, ... (1-based, TinyBERT's map), rounded
    half up as the uniform layer map rounds."""
    if how == "explicit":
        if not explicit:
            raise AlembertError("student.layer_ids: give the teacher layers to extract, e.g. [0, 3]")
        chosen = list(explicit)
    else:
        if not student_layers or student_layers < 1:
            raise AlembertError("student.layers: expected a positive number of layers to extract")
        if student_layers > teacher_layers:
            raise AlembertError(f"student.layers: {student_layers} exceeds the teacher's {teacher_layers} layers")
        if how == "first":
            chosen = list(range(student_layers))
        elif how == "uniform":  # the uniform layer map's rule, so each layer is distilled against its source
            chosen = [scaled_layer(m, student_layers, teacher_layers) - 1 for m in range(1, student_layers + 1)]
        else:
            raise AlembertError(f"student.extract: '{how}' is not one of uniform, first, explicit")
    for index in chosen:
        if not 0 <= index < teacher_layers:
            raise AlembertError(
                f"student.layer_ids: layer {index} is out of range for a model with {teacher_layers} layers "
                f"(expected 0..{teacher_layers - 1})"
            )
    return chosen


def extract_student(source: nn.Module, layer_ids: list[int], hidden: int | None = None, heads: int | None = None,
                    ffn: int | None = None, select: str = "random", batches: Iterable[dict] | None = None,
                    seed: int = 0) -> nn.Module:
    """Copy the embeddings, the chosen layers (in order) and the head of `source` into a shallower model; with
    `hidden`, `heads` or `ffn`, also narrower (Extract-Then-Distill): the dimensions, heads and FFN neurons kept are
    drawn at random with `seed` (ETD-Rand), or are the most important ones by the task loss on `batches`
    (ETD-Impt; dicts of input_ids, attention_mask, token_type_ids where used, and labels). Unset sizes keep the
    teacher's head size and FFN-to-hidden ratio. See models/extract.py."""
    return extract(source, layer_ids, hidden, heads, ffn, select, batches, seed)


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    return tokenizer_a.get_vocab() == tokenizer_b.get_vocab()
