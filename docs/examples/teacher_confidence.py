"""A plugin written from scratch: weight each example's loss by how sure the teacher is of it.

Distilling from an unsure teacher on an example teaches the student that teacher's doubt; this plugin gives each
example the weight p_max ** power, where p_max is the (first) teacher's largest class probability on it, so
confident examples count in full and doubtful ones less. (A simple form of the confidence weighting several
distillation papers use; here it is an example of the plugin protocol, not a method this toolkit claims.)

Use it from a recipe:

    imports: [docs/examples/teacher_confidence.py]
    stages:
      - name: kd
        plugins: [{type: teacher_confidence, power: 2.0}]
        losses: [{type: prediction, alpha: 1.0}]
"""
from __future__ import annotations

import torch
from pydantic import Field

from alembert.engine.plugins import Plugin
from alembert.recipe import PluginOptions
from alembert.registry import PLUGINS


@PLUGINS.register("teacher_confidence")
class TeacherConfidence(Plugin):
    class Options(PluginOptions):
        power: float = Field(1.0, ge=0)  # 0: every example counts alike

    def on_stage_start(self, ctx) -> None:
        self.weights_seen: list[float] = []

    def example_weights(self, out, ctx) -> torch.Tensor | None:
        if not out.teachers:  # a stage without a teacher: nothing to weigh by
            return None
        confidence = out.teachers[0].logits.float().softmax(dim=-1).max(dim=-1).values.detach()
        weights = confidence ** self.options.power
        self.weights_seen.append(float(weights.mean()))
        return weights

    def on_stage_end(self, ctx) -> None:
        if self.weights_seen:
            ctx.log({"teacher_confidence/mean_weight": sum(self.weights_seen) / len(self.weights_seen)})

    def state_dict(self) -> dict:
        return {"weights_seen": list(getattr(self, "weights_seen", []))}

    def load_state_dict(self, state: dict) -> None:
        self.weights_seen = list(state["weights_seen"])
