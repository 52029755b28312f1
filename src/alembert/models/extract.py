"""Students copied out of a teacher: chosen layers (depth), and optionally fewer hidden dimensions, heads and FFN
neurons (width), as Extract-Then-Distill (ETD) initialises them.

Width keeps one index set of hidden dimensions for the embeddings and every layer (the residual connections add
them up position by position), per layer a set of whole heads (their Q/K/V output blocks and attention-output
columns) and of FFN neurons, and, only when the student's head size is smaller, the same units inside every kept
head. Each parameter is sliced by what its axes index (models/roles.py). The sets are drawn at random (ETD-Rand,
seeded) or are the highest-scoring by `importance` (ETD-Impt); either way they stay in the teacher's order, so at
the teacher's width the student is the teacher's layers exactly. MPNet's relative position bias has one column a
head, shared by all layers, so MPNet keeps the same heads in every layer.

The student is a plain model of the teacher's class whose config states its sizes: it loads with `from_pretrained`
and needs no alembert.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from alembert.errors import AlembertError
from alembert.models.heads import auto_class, kind_of_model
from alembert.models.importance import Importance, importance
from alembert.models.layout import Layout, find_layout, layer_groups
from alembert.models.roles import parameter_roles

# config attribute names for each size field, BERT-style first, DistilBERT-style second
_SIZE_FIELDS = {
    "layers": ("num_hidden_layers", "n_layers"),
    "hidden": ("hidden_size", "dim"),
    "heads": ("num_attention_heads", "n_heads"),
    "ffn": ("intermediate_size", "hidden_dim"),
}
SELECT = ("random", "importance")


def set_size(config, field: str, value: int) -> None:
    for name in _SIZE_FIELDS[field]:
        if hasattr(config, name):
            setattr(config, name, value)
            return
    raise AlembertError(f"student.{field}: the {config.model_type} config has no field for it")


@dataclass(frozen=True)
class Width:
    hidden: int
    heads: int
    head_size: int
    ffn: int


@dataclass
class Plan:
    """Kept indices: hidden dimensions, and per teacher layer module the heads, the units inside each head (Q/K and
    V apart) and the FFN neurons."""
    hidden: torch.Tensor
    heads: dict[int, torch.Tensor]
    qk: dict[int, torch.Tensor]  # (heads, head_size) per layer
    v: dict[int, torch.Tensor]
    ffn: dict[int, torch.Tensor]

    def index(self, kind: str, layer: int | None, layout: Layout) -> torch.Tensor | None:
        """The kept positions along an axis of kind `kind` (models/roles.py) in teacher layer module `layer`."""
        if kind == "h":
            return self.hidden
        if kind == "a":  # MPNet: the same heads in every layer
            return next(iter(self.heads.values()))
        if kind == "f":
            return self.ffn[layer]
        if kind == "g":
            return torch.cat([self.ffn[layer], layout.ffn_size + self.ffn[layer]])
        if kind in ("q", "v", "qkv"):
            heads = self.heads[layer][:, None] * layout.head_size
            q, v = ((heads + dims[layer]).flatten() for dims in (self.qk, self.v))
            width = layout.num_heads * layout.head_size
            return {"q": q, "v": v, "qkv": torch.cat([q, width + q, 2 * width + v])}[kind]
        return None  # "-": kept whole


def student_config(source: nn.Module, layout: Layout, layer_ids: list[int], width: Width | None = None):
    """The teacher's config with the student's depth (and width)."""
    config = copy.deepcopy(source.config)
    if layout.shared_layers and getattr(config, "num_hidden_groups", 1) != 1:
        raise AlembertError(f"student.init extract: model type '{layout.family}' with {config.num_hidden_groups} layer "
                            "groups cannot be extracted (expected num_hidden_groups: 1)")
    if layout.family == "modernbert":
        if layer_ids[0] != 0:
            raise AlembertError(
                f"student.layer_ids: model type 'modernbert': the first extracted layer must be teacher layer 0, got "
                f"{layer_ids} (its first layer has no attention LayerNorm, so another layer's would be dropped); use "
                "extract: first, or explicit ids starting at 0")
        config.layer_types = [config.layer_types[i] for i in layer_ids]  # each layer keeps its attention type
    set_size(config, "layers", len(layer_ids))
    if width is None:
        return config
    for field in ("hidden", "heads", "ffn"):
        set_size(config, field, getattr(width, field))
    if getattr(config, "attention_head_size", None) is not None:
        config.attention_head_size = width.head_size
    embedding = getattr(config, "embedding_size", None)
    if embedding is not None and layout.embed_proj_path is None:
        config.embedding_size = width.hidden  # embeddings are on the residual stream: they narrow with it
    elif embedding is not None and embedding == width.hidden and layout.family != "albert":
        raise AlembertError(f"student.hidden: {width.hidden} equals the {layout.family} embedding_size, so the student "
                            "would have no embedding projection to take the teacher's; choose another width")
    if layout.first_output_path and getattr(config, "conv_groups", 1) != 1:
        raise AlembertError(f"student.hidden: model type '{layout.family}' with a grouped convolution (conv_groups "
                            f"{config.conv_groups}) cannot be narrowed (expected conv_groups: 1)")
    if getattr(config, "pooler_hidden_size", None) is not None:
        if config.pooler_hidden_size != layout.hidden_size:
            raise AlembertError(f"student.hidden: model type '{layout.family}' with a pooler of width "
                                f"{config.pooler_hidden_size} other than its hidden width cannot be narrowed")
        config.pooler_hidden_size = width.hidden
    return config


def student_width(layout: Layout, hidden: int | None, heads: int | None, ffn: int | None) -> Width:
    """The student's sizes: unset ones keep the teacher's head size and FFN ratio."""
    hidden = hidden or layout.hidden_size
    if heads is None:
        if hidden % layout.head_size:
            raise AlembertError(f"student.heads: give a number of heads for hidden {hidden} (the teacher's head size "
                                f"{layout.head_size} does not divide it)")
        heads = hidden // layout.head_size if hidden != layout.hidden_size else layout.num_heads
    ffn = ffn or max(1, round(layout.ffn_size * hidden / layout.hidden_size))
    for field, value, most in (("hidden", hidden, layout.hidden_size), ("heads", heads, layout.num_heads),
                               ("ffn", ffn, layout.ffn_size)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise AlembertError(f"student.{field}: expected an integer from 1 to the teacher's {most}, got {value!r}")
    if hidden % heads:
        raise AlembertError(f"student.hidden: {hidden} is not divisible by student.heads {heads}")
    size = hidden // heads
    if size > layout.head_size:
        raise AlembertError(f"student.heads: {heads} heads of {hidden} make heads of {size}, wider than the "
                            f"teacher's {layout.head_size}; use at least {-(-hidden // layout.head_size)} heads")
    if size < layout.head_size and layout.family == "modernbert":  # rotary embeddings act on whole heads
        raise AlembertError(f"student.heads: model type 'modernbert' keeps its head size {layout.head_size} (its "
                            f"rotary embedding is defined on whole heads); use a hidden width that is a multiple of "
                            f"{layout.head_size}, with hidden / {layout.head_size} heads")
    return Width(hidden, heads, size, ffn)


def plan(source: nn.Module, layout: Layout, layers: list[int], width: Width, select: str,
         batches: Iterable[dict] | None, seed: int) -> Plan:
    """The kept indices: the highest-scoring by importance on `batches`, or by seeded random scores (the top k of
    independent uniform scores is a uniform random subset of k)."""
    if select not in SELECT:
        raise AlembertError(f"student.select: '{select}' is not one of {', '.join(SELECT)}")
    if select == "random":
        generator = torch.Generator().manual_seed(seed)
        modules, heads, size = len(layer_groups(source, layout)), layout.num_heads, layout.head_size
        draw = lambda *shape: torch.rand(shape, generator=generator)  # noqa: E731
        scores = Importance(draw(layout.hidden_size), draw(modules, heads), draw(modules, heads, size),
                            draw(modules, heads, size), draw(modules, layout.ffn_size))
    elif batches is None:
        raise AlembertError("student.select importance: needs labelled training batches to score the teacher on")
    else:
        scores = importance(source, layout, batches)
    shared = None
    if layout.family == "mpnet":  # one bias column a head, shared by the layers: one head set for all
        shared = _top(scores.heads[layers].sum(0), width.heads)
    result = Plan(_top(scores.hidden, width.hidden), {}, {}, {}, {})
    for layer in layers:
        kept = shared if shared is not None else _top(scores.heads[layer], width.heads)
        result.heads[layer] = kept
        result.qk[layer] = _top(scores.qk[layer][kept], width.head_size)
        result.v[layer] = _top(scores.v[layer][kept], width.head_size)
        result.ffn[layer] = _top(scores.ffn[layer], width.ffn)
    return result


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Per row, the indices of the `keep` highest scores (the lower index first on ties), in ascending order."""
    order = torch.argsort(-scores, dim=-1, stable=True)[..., :keep]
    return order.sort(dim=-1).values


def extract(source: nn.Module, layer_ids: list[int], hidden: int | None = None, heads: int | None = None,
            ffn: int | None = None, select: str = "random", batches: Iterable[dict] | None = None,
            seed: int = 0) -> nn.Module:
    layout = find_layout(source)
    narrow = any(v is not None for v in (hidden, heads, ffn))
    if narrow and not layout.known:
        raise AlembertError(f"student.hidden/heads/ffn: model type '{layout.family}' is not one whose parameters "
                            "alembert knows how to narrow; extract depth only")
    if narrow and layout.shared_layers and getattr(source.config, "inner_group_num", 1) != 1:
        raise AlembertError(f"student.hidden/heads/ffn: model type 'albert' with inner_group_num "
                            f"{source.config.inner_group_num} cannot be narrowed (expected 1)")
    width = student_width(layout, hidden, heads, ffn) if narrow else None
    config = student_config(source, layout, layer_ids, width)
    modules = [0] if layout.shared_layers else list(dict.fromkeys(layer_ids))
    kept = plan(source, layout, modules, width, select, batches, seed) if narrow else None
    student = auto_class(kind_of_model(source)).from_config(config)  # the head of the source's kind
    source_state, parameters = source.state_dict(), dict(student.named_parameters())
    prefix = re.escape(layout.layers_path) + r"\.(\d+)\."
    new_state = {}
    for name, target in student.state_dict().items():
        match = None if layout.shared_layers else re.match(prefix, name)
        src_name = f"{layout.layers_path}.{layer_ids[int(match.group(1))]}.{name[match.end():]}" if match else name
        value = source_state[src_name]
        if kept is not None and name in parameters:
            kinds, layer, _ = parameter_roles(layout, src_name)
            for axis, kind in enumerate(kinds):
                index = kept.index(kind, layer, layout)
                if index is not None:
                    value = value.index_select(axis, index.to(value.device))
        if value.shape != target.shape:
            if name in parameters:  # a size the config and the slicing disagree on: a bug, not the user's input
                raise RuntimeError(f"extraction: {name} sliced to {tuple(value.shape)}, expected {tuple(target.shape)}")
            value = target  # a buffer sized by the config (e.g. position ids)
        new_state[name] = value.clone()
    student.load_state_dict(new_state)
    return student
