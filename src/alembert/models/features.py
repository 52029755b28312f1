"""Features of an unmodified HF encoder, collected by forward hooks during its ordinary forward pass.

Hidden state 0 is the input of the first transformer layer (the embedding output, after ELECTRA's, DeBERTa's or
ALBERT's map to the hidden width), hidden state i the output of layer i, as HF's output_hidden_states gives them:
for DeBERTa-v2 with a convolution, hidden state 1 is the convolution's output that follows layer 1; ModernBERT's
last hidden state is after its final LayerNorm. Attention scores are rebuilt from the hooked Q and K projections by the
family's own rule (models/scores.py), so they come out the same whatever attention kernel (eager or SDPA) the model
runs; masked key positions get -10000 added, as in BERT's original code, which the TinyBERT attention loss relies
on. What a family cannot give right is refused by `check_request`, before training.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from alembert.errors import AlembertError
from alembert.models.heads import head_logits
from alembert.models.layout import Layout, find_layout, hook_layer_input, layer_groups, takes_token_types
from alembert.models.scores import MASK_VALUE, attention_scores, context_hooks, per_head, split_heads

__all__ = ["MASK_VALUE", "FeatureRequest", "Features", "FeatureTap", "TappedForward", "check_request", "split_heads"]


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


def check_request(target: Layout | nn.Module, request: FeatureRequest, loss_name: str = "features") -> None:
    """Refuse, in one line naming the family and the loss, a request that cannot be collected right for the model."""
    layout = target if isinstance(target, Layout) else find_layout(target)
    refusals = [(request.attention, "attention scores", layout.scores_refused,
                 "use hidden-state, Q/K/V relation or prediction losses"),
                (request.qkv, "Q/K/V", layout.qkv_refused, "use hidden-state or prediction losses")]
    for asked, what, why, instead in refusals:
        if asked and why:
            raise AlembertError(f"{loss_name}: model type '{layout.family}': {what} are not collected ({why}); "
                                f"{instead}")
    for kind, low in (("hidden", 0), ("attention", 1), ("qkv", 1)):
        outside = sorted(i for i in getattr(request, kind) if not low <= i <= layout.num_layers)
        if outside:
            raise AlembertError(f"{loss_name}: {kind} index {outside[0]} is out of range for a model with "
                                f"{layout.num_layers} layers (expected {low}..{layout.num_layers})")


class FeatureTap:
    """Registers only the hooks a FeatureRequest needs on `model`; `run(batch)` returns Features. `runner`, when set,
    runs the forward passes that build a graph: the tap's DistributedDataParallel-wrapped TappedForward.

    Stored tensors are keyed by layer depth (1-based). ALBERT runs one shared module at every depth, so its hooks
    fire once per application: a pre-hook on each group counts the applications, and the other hooks save under
    that count, which makes hidden state i the output of the i-th application."""

    def __init__(self, model: nn.Module, request: FeatureRequest):
        self.model = model
        self.runner: nn.Module | None = None
        self.request = request
        self.layout = find_layout(model)
        check_request(self.layout, request)
        self._takes_token_types = takes_token_types(model)
        self._handles: list = []
        self._store: dict = {}
        self._recording = True
        self._depth = 0
        if 0 in request.hidden:
            self._handles.append(hook_layer_input(model, self.layout, self._save_input))
        if self.layout.shared_layers:
            self._hook_shared()
        else:
            self._hook_layers()

    def _hook_layers(self) -> None:
        layers = layer_groups(self.model, self.layout)
        for index in sorted(self.request.hidden - {0}):
            module = layers[index - 1]
            if index == 1 and self.layout.first_output_path:
                module = self.model.get_submodule(self.layout.first_output_path)
            if index == self.layout.num_layers and self.layout.last_output_path:
                module = self.model.get_submodule(self.layout.last_output_path)
            self._handles.append(module.register_forward_hook(self._save_output(lambda i=index: i)))
        for layer in sorted(self.request.attention | self.request.qkv):
            self._hook_attention(layers[layer - 1], lambda i=layer: i, layer in self.request.attention)

    def _hook_shared(self) -> None:
        depth = lambda: self._depth  # noqa: E731
        for group in layer_groups(self.model, self.layout):
            self._handles.append(group.register_forward_pre_hook(self._count))
            if self.request.hidden - {0}:
                self._handles.append(group.register_forward_hook(self._save_output(depth)))
            if self.request.attention | self.request.qkv:
                self._hook_attention(group, depth, bool(self.request.attention))

    def _hook_attention(self, layer: nn.Module, depth, scores: bool) -> None:
        """Q/K/V of `layer` and what its family's score rule needs, saved under depth()."""
        if self.layout.qkv_fused:
            proj = layer.get_submodule(self.layout.qkv_names[0])
            self._handles.append(proj.register_forward_hook(self._save_projection(depth, "qkv")))
        else:
            for name, module_name in zip("qkv", self.layout.qkv_names):
                proj = layer.get_submodule(module_name)
                self._handles.append(proj.register_forward_hook(self._save_projection(depth, name)))
        self._handles += context_hooks(self.model, self.layout, layer, scores,
                                       lambda name, value: self._save(name, depth(), value))

    def _count(self, module, args):
        self._depth += 1

    def _save(self, name: str, depth: int, value) -> None:
        if self._recording:
            self._store[(name, depth)] = value

    def _save_input(self, x):
        self._save("hidden", 0, x)

    def _save_output(self, depth):
        def hook(module, args, output):
            self._save("hidden", depth(), output[0] if isinstance(output, tuple) else output)
        return hook

    def _save_projection(self, depth, name):
        def hook(module, args, output):
            if (name[0], depth()) in self._store:
                return  # DeBERTa also runs Q and K on its relative embeddings, after the tokens: the first call counts
            if name == "qkv":  # one fused projection: its rows are Q, then K, then V
                for part, x in zip("qkv", output.chunk(3, dim=-1)):
                    self._save(part, depth(), x)
            else:
                self._save(name, depth(), output)
        return hook

    def run(self, batch: dict[str, torch.Tensor]) -> Features:
        if self.runner is not None and torch.is_grad_enabled():
            return self.runner(batch)
        return self.collect(batch)

    def collect(self, batch: dict[str, torch.Tensor]) -> Features:
        """The model's forward pass on `batch`, with the requested features gathered by the hooks."""
        self._store, self._depth, self._recording = {}, 0, True
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if not self._takes_token_types:
            inputs.pop("token_type_ids", None)
        logits = head_logits(self.model(**inputs))
        mask = batch["attention_mask"]
        features = Features(logits=logits, attention_mask=mask)
        for index in self.request.hidden:
            features.hidden[index] = self._store[("hidden", index)]
        self._recording = False  # DeBERTa's score rule runs the layer's projections again: keep the store as it is
        try:
            for layer in self.request.attention | self.request.qkv:
                context = {name: value for (name, depth), value in self._store.items() if depth == layer}
                q, k, v = per_head(self.layout, context["q"], context["k"], context["v"], context)
                if layer in self.request.qkv:
                    features.qkv[layer] = (q, k, v)
                if layer in self.request.attention:
                    module = None if self.layout.shared_layers else layer_groups(self.model, self.layout)[layer - 1]
                    features.scores[layer] = attention_scores(self.layout, module, q, k, mask, context)
        finally:
            self._store, self._recording = {}, True
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
