"""How much the task loss depends on each attention head, FFN neuron and hidden dimension of a model (ETD-Impt).

All three are first-order estimates on labelled batches, from one backward pass per batch, summed over batches:
- head h of layer l: |dL/dm_lh|, m being a mask of ones that multiplies each head's output where the attention-
  output projection reads it (a pre-hook on that projection: transformers 5 does not take `head_mask` everywhere);
- FFN neuron n of layer l: |sum(W1[n,:] * dW1[n,:]) + b1[n] * db1[n]| + |sum(W2[:,n] * dW2[:,n])|, the Taylor
  estimate of the loss change when the neuron's input and output weights are removed (DynaBERT's form; ModernBERT's
  gate rows count as input rows);
- hidden dimension i: sum, over every parameter entry that reads or writes dimension i of the residual stream
  (embeddings, Q/K/V and FFN input columns, attention- and FFN-output rows, LayerNorm gains and biases, the head),
  of |w * dL/dw|. Residual connections force one index set on every layer, so the score adds up all layers.
  Absolute values are taken per entry and per batch rather than summing signed products first: the entries of one
  dimension are of unlike kinds (an embedding row, a LayerNorm gain, a projection column), and a signed sum over
  them, or over batches, lets large opposite contributions cancel into a small score for a dimension the loss
  depends on heavily; the absolute saliency counts how much of the loss rests on the weights cut with it.
- head dimensions (when heads must shrink): the same |w * dL/dw| over the Q and K rows of that unit (and DeBERTa's
  position projections), or over its V row and attention-output column.
The model is left as it was: hooks only, gradients taken with torch.autograd.grad (no .grad is written), and its
training mode and requires_grad flags restored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from alembert.errors import AlembertError
from alembert.models.layout import Layout, layer_groups, takes_token_types
from alembert.models.roles import parameter_roles


@dataclass
class Importance:
    hidden: torch.Tensor  # (H,)
    heads: torch.Tensor  # (P, A), P = the model's layer modules (ALBERT: its shared groups)
    qk: torch.Tensor  # (P, A, d): query/key units of each head
    v: torch.Tensor  # (P, A, d): value units of each head
    ffn: torch.Tensor  # (P, F)


def importance(model: nn.Module, layout: Layout, batches: Iterable[dict]) -> Importance:
    """Scores of `model`'s heads, neurons and hidden dimensions on `batches` (dicts with input_ids,
    attention_mask, labels and, where the model takes them, token_type_ids)."""
    groups = layer_groups(model, layout)
    heads, size = layout.num_heads, layout.head_size
    device = next(model.parameters()).device
    mask = torch.ones(len(groups), heads, device=device, requires_grad=True)
    named = list(model.named_parameters())
    roles = {name: parameter_roles(layout, name) for name, _ in named}
    saliency = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in named}
    ffn = torch.zeros(len(groups), layout.ffn_size, device=device)
    head_scores = torch.zeros(len(groups), heads, device=device)
    keys = ("input_ids", "attention_mask", "labels", "start_positions", "end_positions") + (
        ("token_type_ids",) if takes_token_types(model) else ())
    state = model.training, {name: p.requires_grad for name, p in named}
    handles = [group.get_submodule(layout.attn_out_name).register_forward_pre_hook(_head_mask(mask, p, heads))
               for p, group in enumerate(groups)]
    model.eval()  # no dropout: the scores are of the model as it predicts
    count = 0
    try:
        for p in model.parameters():
            p.requires_grad_(True)
        for count, batch in enumerate(batches, 1):
            if "labels" not in batch and "start_positions" not in batch:
                raise AlembertError(f"importance: batch {count - 1} has no 'labels' (expected input_ids, "
                                    "attention_mask, labels and, for segment pairs, token_type_ids)")
            inputs = {k: v.to(device) for k, v in batch.items() if k in keys}
            loss = model(**inputs).loss
            grads = torch.autograd.grad(loss, [mask] + [p for _, p in named], allow_unused=True)
            head_scores += grads[0].abs()
            found = {name: (p.detach(), g) for (name, p), g in zip(named, grads[1:]) if g is not None}
            for name, (weight, grad) in found.items():
                saliency[name] += (weight * grad).abs()
            ffn += _taylor_ffn(layout, found, len(groups), device)
    finally:
        for handle in handles:
            handle.remove()
        model.train(state[0])
        for name, p in named:
            p.requires_grad_(state[1][name])
    if count == 0:
        raise AlembertError("importance: no batches to score the model on (expected labelled training batches)")
    hidden = torch.zeros(layout.hidden_size, device=device)
    qk = torch.zeros(len(groups), heads * size, device=device)
    v = torch.zeros_like(qk)
    for name, values in saliency.items():
        kinds, layer, _ = roles[name]
        for axis, kind in enumerate(kinds):
            if kind not in ("h", "q", "v", "qkv"):
                continue
            per_unit = values.sum(dim=[a for a in range(values.dim()) if a != axis]) if values.dim() > 1 else values
            if kind == "h":
                hidden += per_unit
            elif kind == "qkv":  # rows Q, K, V
                q_rows, k_rows, v_rows = per_unit.chunk(3)
                qk[layer] += q_rows + k_rows
                v[layer] += v_rows
            else:
                (qk if kind == "q" else v)[layer] += per_unit
    return Importance(hidden.cpu(), head_scores.cpu(), qk.view(-1, heads, size).cpu(), v.view(-1, heads, size).cpu(),
                      ffn.cpu())


def _head_mask(mask: torch.Tensor, layer: int, heads: int):
    """Multiply each head's share of the attention-output projection's input by its mask entry."""
    def hook(module, args):
        x = args[0]
        shape = x.shape
        masked = (x.view(*shape[:-1], heads, shape[-1] // heads) * mask[layer][:, None]).view(shape)
        return (masked,) + tuple(args[1:])
    return hook


def _taylor_ffn(layout: Layout, found: dict, layers: int, device) -> torch.Tensor:
    """This batch's |sum W1*dW1 + b1*db1| + |sum W2*dW2| per FFN neuron, (layers, F)."""
    scores = torch.zeros(layers, layout.ffn_size, device=device)
    for layer in range(layers):
        prefix = f"{layout.layers_path}.{layer}."
        into = torch.zeros(layout.ffn_size * (2 if layout.family == "modernbert" else 1), device=device)
        out = torch.zeros(layout.ffn_size, device=device)
        for name, total, axis in ((f"{layout.ffn_in_name}.weight", into, 1), (f"{layout.ffn_in_name}.bias", into, None),
                                  (f"{layout.ffn_out_name}.weight", out, 0)):
            if prefix + name in found:
                weight, grad = found[prefix + name]
                total += (weight * grad).sum(dim=axis) if axis is not None else weight * grad
        if layout.family == "modernbert":  # gated FFN: input rows, then the gate rows of the same neurons
            into = into[:layout.ffn_size] + into[layout.ffn_size:]
        scores[layer] = into.abs() + out.abs()
    return scores
