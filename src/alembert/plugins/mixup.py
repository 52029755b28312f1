"""MixUp at the embedding output and consistency regularisation (CR-ILD, Ko et al., EACL 2023), as plugins.

MixUp mixes each example with its partner in the reversed batch at the input of the first transformer layer, i.e.
after the embedding layer (word + position + type embeddings, LayerNorm, dropout, and ELECTRA's projection), so
teacher and student each mix their own embeddings of the same tokens with the same lambda. The attention mask is
the union of the two examples' masks. Consistency keeps the student's representations of the mix (its last-layer
attention and hidden states, as CR-ILD; or each distilled layer term's) close to its own on the clean input and on
the partner, weighted lambda and 1 - lambda.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import nn

from alembert.data.batch import Batch
from alembert.engine.objective import reduce
from alembert.engine.plugins import Plugin
from alembert.engine.terms import LayerTerm
from alembert.losses import AttentionProbKL, HiddenMSE
from alembert.models.features import FeatureRequest, Features
from alembert.models.layout import find_layout, hook_layer_input
from alembert.recipe.specs import AttentionLossSpec, ConsistencyOptions, HiddenLossSpec, MixUpOptions
from alembert.registry import PLUGINS

LAMBDA = "mixup_lambda"  # where MixUp leaves this step's lambda for consistency (Context.shared)


@PLUGINS.register("mixup")
class MixUp(Plugin):
    Options = MixUpOptions
    changes_inputs = True

    def sample(self) -> float:
        """lambda ~ Beta(alpha, alpha), folded to >= 0.5 so each mix stays closer to its own example."""
        lam = self.rng.betavariate(self.options.alpha, self.options.alpha)
        return max(lam, 1.0 - lam)

    @staticmethod
    def mixed_batch(batch: Batch) -> Batch:
        """The batch with each view's attention mask united with its partner's (a token is real if real in
        either)."""
        views = {name: dict(view, attention_mask=torch.maximum(view["attention_mask"],
                                                                view["attention_mask"].flip(0)))
                 for name, view in batch.views.items()}
        return replace(batch, views=views)

    @contextmanager
    def mixing(self, models: list[nn.Module], lam: float):
        """While active, every forward pass of `models` mixes the embedding output with its batch-reversed self."""
        def mix(x: torch.Tensor) -> torch.Tensor:
            return lam * x + (1.0 - lam) * x.flip(0)

        # prepend: feature taps on the same layer must see the mixed input (hidden state 0)
        handles = [hook_layer_input(m, find_layout(m), mix, prepend=True) for m in models]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def around_forward(self, batch, ctx):
        lam = self.sample()
        ctx.shared[LAMBDA] = lam
        with self.mixing([ctx.student, *ctx.live_teachers], lam):
            yield self.mixed_batch(batch)


@PLUGINS.register("consistency")
class Consistency(Plugin):
    """Needs mixup. The target is the student's own features on the clean inputs, computed without gradient and
    without dropout; the weight ramps up linearly with the 0-based epoch when `ramp` (0 in the first)."""

    Options = ConsistencyOptions

    def student_request(self, ctx) -> FeatureRequest:
        if not self.options.on:
            return FeatureRequest()  # the distilled terms' features, which the objective requests already
        last = find_layout(ctx.student).num_layers
        return FeatureRequest(**{("attention" if kind == "attention" else "hidden"): frozenset({last})
                                 for kind in self.options.on})

    def on_stage_start(self, ctx) -> None:
        self.terms = ctx.objective.layer_terms(self.options.released_script) if not self.options.on else \
            last_layer_terms(self.options.on, find_layout(ctx.student))

    def extra_losses(self, out, ctx) -> dict[str, torch.Tensor]:
        ramp = (ctx.micro // ctx.steps_per_epoch) / math.ceil(ctx.stage.epochs) if self.options.ramp else 1.0
        if not self.terms or ramp == 0 or LAMBDA not in ctx.shared:
            return {}
        clean = ctx.student_features(out.batch)
        return {"consistency": self.options.weight * ramp * consistency(out.student, clean, ctx.shared[LAMBDA],
                                                                        self.terms)}


def last_layer_terms(kinds: list[str], layout) -> list[LayerTerm]:
    """CR-ILD's consistency targets: the student's last-layer attention distributions (KL over real keys, averaged
    over real query rows) and hidden states (MSE over real tokens), each against the student's own, weight 1."""
    last, width, terms = layout.num_layers, layout.hidden_size, []
    if "attention" in kinds:
        spec = AttentionLossSpec(type="attention_kl", map="last")
        terms.append(LayerTerm(spec, [(last, last)], "attention", AttentionProbKL()))
    if "hidden" in kinds:
        spec = HiddenLossSpec(type="hidden_mse", map="last", embeddings=False)
        terms.append(LayerTerm(spec, [(last, last)], "hidden", HiddenMSE(width, width)))
    return terms


def consistency(mixed: Features, clean: Features, lam: float, terms) -> torch.Tensor:
    """sum over terms of lam * D(f(x_mix), f(x)) + (1 - lam) * D(f(x_mix), f(x_rev)) for each term's own D on the
    student's layers, where x_rev is the mixing partner; each side's mask is that of the clean input it compares
    to."""
    partner = clean.reversed_batch()
    total = mixed.logits.new_zeros((), dtype=torch.float32)
    for term in terms:
        same = [(s, s) for s, _ in term.pairs]
        values = lam * term.pair_values(mixed, clean, same, clean.attention_mask, term.self_loss) \
            + (1 - lam) * term.pair_values(mixed, partner, same, partner.attention_mask, term.self_loss)
        total = total + term.weight * reduce(values, None, None, None, term.pair_reduction)
    return total
