"""A plugin that owns trainable parameters: learned loss weights for the layer pairs of a stage's layer terms.

Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018) balances several losses by learning a
log-variance s_i per loss: the total is sum_i exp(-s_i) * L_i + s_i, so a loss that stays large is down-weighted
while the + s_i term keeps the weights from collapsing to zero. Here each (layer term, layer pair) of the stage
gets its own s, trained with the student by the stage's optimizer: the pair weights are exp(-s) and the extra
loss is sum(s). An example of the plugin protocol's parameters, pair weights and extra losses.

    imports: [docs/examples/uncertainty_weights.py]
    stages:
      - name: ild
        plugins: [{type: uncertainty_weights}]
        losses: [{type: hidden_mse}, {type: attention_mse}]
"""
from __future__ import annotations

import torch
from torch import nn

from alembert.engine.plugins import Plugin
from alembert.engine.terms import LayerTerm
from alembert.recipe import PluginOptions
from alembert.registry import PLUGINS


@PLUGINS.register("uncertainty_weights")
class UncertaintyWeights(Plugin):
    class Options(PluginOptions):
        initial: float = 0.0  # s at the start: every pair weighted exp(0) = 1

    def __init__(self, options=None, seed: int = 0):
        super().__init__(options, seed)
        self.log_vars = nn.ParameterDict()  # filled when its stage starts; empty in the run's other stages

    def on_stage_start(self, ctx) -> None:
        # one log-variance per layer pair of each layer term, created for this stage (its optimizer trains them)
        self.log_vars = nn.ParameterDict({
            str(i): nn.Parameter(torch.full((len(term.pairs),), self.options.initial, device=ctx.device))
            for i, term in enumerate(ctx.objective.terms) if isinstance(term, LayerTerm)})

    def parameters(self) -> list[nn.Parameter]:
        return list(self.log_vars.values())

    def pair_weights(self, out, ctx) -> dict[int, torch.Tensor]:
        return {int(i): torch.exp(-s).expand(out.batch.size, -1) for i, s in self.log_vars.items()}

    def extra_losses(self, out, ctx) -> dict[str, torch.Tensor]:
        return {"log_variance": sum(s.sum() for s in self.log_vars.values())} if self.log_vars else {}

    def after_step(self, ctx, parts) -> None:
        if ctx.step % 10 == 0:
            ctx.log({f"uncertainty/term{i}_pair{p}": float(torch.exp(-s[p].detach())) for i, s in self.log_vars.items()
                     for p in range(len(s))})

    def state_dict(self) -> dict:
        return {i: s.detach().cpu().clone() for i, s in self.log_vars.items()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():  # in place: the stage's optimizer holds these very parameters
            for i, value in state.items():
                self.log_vars[i].copy_(value)
