"""MixUp at the embedding output (CR-ILD): each example is mixed with its partner in the reversed batch.

The mix happens at the input of the first transformer layer, i.e. after the embedding layer (word + position +
type embeddings, LayerNorm, dropout, and ELECTRA's projection), so teacher and student each mix their own
embeddings of the same tokens with the same lambda. The attention mask is the union of the two examples' masks.
"""
from __future__ import annotations

import random
from contextlib import contextmanager

import torch
from torch import nn

from alembert.models.layout import find_layout, get_layers


class MixUp:
    def __init__(self, alpha: float, seed: int):
        self.alpha = alpha
        self.rng = random.Random(seed)

    def sample(self) -> float:
        """lambda ~ Beta(alpha, alpha), folded to >= 0.5 so each mix stays closer to its own example."""
        lam = self.rng.betavariate(self.alpha, self.alpha)
        return max(lam, 1.0 - lam)

    @staticmethod
    def mixed_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch with each attention mask united with its partner's (a token is real if real in either)."""
        mask = batch["attention_mask"]
        return dict(batch, attention_mask=torch.maximum(mask, mask.flip(0)))

    @contextmanager
    def mixing(self, models: list[nn.Module], lam: float):
        """While active, every forward pass of `models` mixes the embedding output with its batch-reversed self."""
        def mix(x: torch.Tensor) -> torch.Tensor:
            return lam * x + (1.0 - lam) * x.flip(0)

        def hook(module, args, kwargs):
            if args:
                return (mix(args[0]),) + tuple(args[1:]), kwargs
            key = next(iter(kwargs))
            return args, dict(kwargs, **{key: mix(kwargs[key])})

        # prepend: feature taps on the same layer must see the mixed input (hidden state 0)
        handles = [get_layers(m, find_layout(m))[0].register_forward_pre_hook(hook, with_kwargs=True, prepend=True)
                   for m in models]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
