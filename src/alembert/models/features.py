"""Features of an unmodified HF encoder, collected by forward hooks during its ordinary forward pass.

Hidden state 0 is the input of the first transformer layer (the embedding output, after ELECTRA's projection),
hidden state i the output of layer i. Attention scores are rebuilt from the hooked Q and K projections, so they
come out the same whatever attention kernel (eager or SDPA) the model runs; masked key positions get -10000
added, as in BERT's original code, which the TinyBERT attention loss relies on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from alembert.models.layout import find_layout, get_layers, takes_token_types

MASK_VALUE = -10000.0


@dataclass(frozen=True)
class FeatureRequest:
    """What the losses need from one model: hidden-state indices (0..L), attention layers (1..L), Q/K/V layers."""

    hidden: frozenset[int] = frozenset()
    attention: frozenset[int] = frozenset()
    qkv: frozenset[int] = frozenset()

    def __or__(self, other: FeatureRequest) -> FeatureRequest:
        return FeatureRequest(self.hidden | other.hidden, self.attention | other.attention, self.qkv | other.qkv)

    @property
    def empty(self) -> bool:
        return not (self.hidden or self.attention or self.qkv)


@dataclass
class Features:
    logits: torch.Tensor
    attention_mask: torch.Tensor
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)  # index -> (B, T, D)
    scores: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B, H, T, T), pre-softmax, masked
    qkv: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # (B, H, T, d) each

    def to(self, device) -> Features:
        return Features(self.logits.to(device), self.attention_mask.to(device),
                        {i: h.to(device) for i, h in self.hidden.items()},
                        {i: s.to(device) for i, s in self.scores.items()},
                        {i: tuple(x.to(device) for x in qkv) for i, qkv in self.qkv.items()})

    def reversed_batch(self) -> Features:
        """The same features with the examples in reverse order: MixUp's partners."""
        flip = lambda x: x.flip(0)  # noqa: E731
        return Features(flip(self.logits), flip(self.attention_mask), {i: flip(h) for i, h in self.hidden.items()},
                        {i: flip(s) for i, s in self.scores.items()},
                        {i: tuple(flip(x) for x in qkv) for i, qkv in self.qkv.items()})

    def attention_probs(self, layer: int) -> torch.Tensor:
        return self.scores[layer].softmax(dim=-1)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


class FeatureTap:
    """Registers only the hooks a FeatureRequest needs on `model`; `run(batch)` returns Features. `runner`, when set,
    runs the forward passes that build a graph: the tap's DistributedDataParallel-wrapped TappedForward."""

    def __init__(self, model: nn.Module, request: FeatureRequest):
        self.model = model
        self.runner: nn.Module | None = None
        self.request = request
        self.layout = find_layout(model)
        self._takes_token_types = takes_token_types(model)
        self._handles: list = []
        self._store: dict = {}
        layers = get_layers(model, self.layout)
        proj_layers = request.attention | request.qkv
        for index in sorted(request.hidden):
            if index == 0:
                self._handles.append(layers[0].register_forward_pre_hook(self._save_input, with_kwargs=True))
            else:
                self._handles.append(layers[index - 1].register_forward_hook(self._save_output(index)))
        for layer in sorted(proj_layers):
            for name, module_name in zip("qkv", self.layout.qkv_names):
                module = layers[layer - 1].get_submodule(module_name)
                self._handles.append(module.register_forward_hook(self._save_projection(layer, name)))

    def _save_input(self, module, args, kwargs):
        self._store[("hidden", 0)] = args[0] if args else next(iter(kwargs.values()))

    def _save_output(self, index):
        def hook(module, args, output):
            self._store[("hidden", index)] = output[0] if isinstance(output, tuple) else output
        return hook

    def _save_projection(self, layer, name):
        def hook(module, args, output):
            self._store[(name, layer)] = output
        return hook

    def run(self, batch: dict[str, torch.Tensor]) -> Features:
        if self.runner is not None and torch.is_grad_enabled():
            return self.runner(batch)
        return self.collect(batch)

    def collect(self, batch: dict[str, torch.Tensor]) -> Features:
        """The model's forward pass on `batch`, with the requested features gathered by the hooks."""
        self._store = {}
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if not self._takes_token_types:
            inputs.pop("token_type_ids", None)
        logits = self.model(**inputs).logits
        mask = batch["attention_mask"]
        heads = self.layout.num_heads
        features = Features(logits=logits, attention_mask=mask)
        for index in self.request.hidden:
            features.hidden[index] = self._store[("hidden", index)]
        for layer in self.request.attention | self.request.qkv:
            q, k, v = (split_heads(self._store[(n, layer)], heads) for n in "qkv")
            if layer in self.request.qkv:
                features.qkv[layer] = (q, k, v)
            if layer in self.request.attention:
                scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
                scores = scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * MASK_VALUE
                features.scores[layer] = scores
        self._store = {}
        return features

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TappedForward(nn.Module):
    """A FeatureTap's forward pass as a module, for DistributedDataParallel to wrap. DDP waits for a gradient for every
    parameter reachable from what forward returns, so the logits go out detached when no loss of the stage reads
    them: the head (and, e.g., a last layer's feed-forward block that only the logits depend on) then takes no part."""

    def __init__(self, tap: FeatureTap, logits_used: bool):
        super().__init__()
        self.model = tap.model
        self.tap, self.logits_used = tap, logits_used

    def forward(self, batch: dict[str, torch.Tensor]) -> Features:
        features = self.tap.collect(batch)
        if not self.logits_used:
            features.logits = features.logits.detach()
        return features
