"""Per-head Q/K/V and pre-softmax attention scores of one layer, rebuilt per family from hooked tensors.

Rebuilding from the hooked projections, rather than reading the model's attention weights, gives the same scores
whatever kernel the model runs (eager or SDPA) and keeps the gradient. Each family's rule adds exactly what its own
attention adds to Q·K:
- BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, ALBERT: Q·Kᵀ/√d;
- MPNet: Q·Kᵀ/√d plus the relative position bias that its encoder computes once per pass (hooked there);
- DeBERTa-v2/v3: Q·Kᵀ/√(d·s) plus the disentangled content-to-position and position-to-content terms, with s = 1 +
  the number of those terms; the terms come from the layer's own `disentangled_attention_bias`, fed with the
  relative positions and the (dropped-out) relative embeddings that the layer itself received.
Padded keys then get BERT's additive -10000, which the TinyBERT attention loss relies on. ModernBERT's Q and K are
taken after its rotary embedding (the layer's cos/sin, hooked); its scores are refused in `layout.py`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from alembert.models.layout import Layout

MASK_VALUE = -10000.0


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def context_hooks(model: nn.Module, layout: Layout, layer: nn.Module, scores: bool,
                  save: Callable[[str, object], None]) -> list:
    """Hooks on `layer` (and, for MPNet, its encoder) that save what the family's rule needs besides Q, K and V."""
    handles = []
    if layout.family == "modernbert":
        def rotary(module, args, kwargs):
            save("rotary", kwargs["position_embeddings"])
        handles.append(layer.get_submodule("attn").register_forward_pre_hook(rotary, with_kwargs=True))
    if not scores:
        return handles
    if layout.scores_rule == "mpnet":
        bias = model.get_submodule(f"{model.base_model_prefix}.encoder.relative_attention_bias")
        # (T, T, H) bucket lookups, shared by every layer of the pass
        handles.append(bias.register_forward_hook(lambda module, args, output: save("position_bias", output)))
    elif layout.scores_rule == "deberta":
        attention = layer.get_submodule("attention.self")

        def positions(module, args, kwargs):
            save("relative_pos", kwargs.get("relative_pos"))
        handles.append(attention.register_forward_pre_hook(positions, with_kwargs=True))
        if getattr(attention, "relative_attention", False):
            handles.append(attention.pos_dropout.register_forward_hook(
                lambda module, args, output: save("rel_embeddings", output)))
    return handles


def per_head(layout: Layout, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, context: dict):
    """(B, T, W) projections -> (B, H, T, d) each, as the layer's attention uses them."""
    q, k, v = (split_heads(x, layout.num_heads) for x in (q, k, v))
    if layout.family == "modernbert":
        from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb

        cos, sin = context["rotary"]
        q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)
    return q, k, v


def attention_scores(layout: Layout, layer: nn.Module, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor,
                     context: dict) -> torch.Tensor:
    """(B, H, T, T) pre-softmax scores of one layer, padded keys at +MASK_VALUE."""
    if layout.scores_rule == "deberta":
        scores = _deberta(layer.get_submodule("attention.self"), q, k, context)
    else:
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if layout.scores_rule == "mpnet":
            scores = scores + context["position_bias"].permute(2, 0, 1).unsqueeze(0).to(scores.dtype)
    return scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * MASK_VALUE


def _deberta(attention: nn.Module, q: torch.Tensor, k: torch.Tensor, context: dict) -> torch.Tensor:
    batch, heads, length, size = q.shape
    factor = 1 + sum(term in attention.pos_att_type for term in ("c2p", "p2c"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(size * factor)
    if getattr(attention, "relative_attention", False):
        flat_q, flat_k = (x.reshape(batch * heads, length, size) for x in (q, k))
        bias = attention.disentangled_attention_bias(flat_q, flat_k, context["relative_pos"],
                                                     context["rel_embeddings"], factor)
        scores = scores + bias.view(batch, heads, length, length)
    return scores
