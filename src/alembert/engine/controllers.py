"""Named points of the training loop where learning controllers plug in.

A controller overrides only the points it needs. Later methods use them: augmentation rewrites the batch in
`on_batch`, an RL teacher selector returns per-example teacher weights in `teacher_weights` and learns in
`on_step_end`, a domain graph updates in `on_step_end`.
"""
from __future__ import annotations

import torch

from alembert.models.features import FeatureRequest
from alembert.models.layout import Layout


class Controller:
    @property
    def changes_inputs(self) -> bool:
        """Whether this controller rewrites batches: then the teacher must see them live, not from the cache."""
        return type(self).on_batch is not Controller.on_batch

    def student_request(self, layout: Layout) -> FeatureRequest:
        """Student features this controller reads, on top of those the losses need."""
        return FeatureRequest()

    def on_stage_start(self, stage, trainer) -> None:
        pass

    def on_batch(self, batch: dict, trainer) -> dict:
        return batch

    def example_weights(self, batch: dict, student_features, teacher_features: list, trainer) -> torch.Tensor | None:
        """(B,) loss weights of the batch's examples (teacher_features: one Features per teacher)."""
        return None

    def teacher_weights(self, batch: dict, student_features, teacher_features: list, trainer) -> torch.Tensor | None:
        """(B, K) weights of each example's distillation loss against each teacher; None: the recipe's rule."""
        return None

    def on_step_end(self, step: int, losses: dict[str, float], trainer) -> None:
        pass

    def on_evaluate(self, step: int, metrics: dict[str, float], trainer) -> None:
        pass

    def on_stage_end(self, stage, trainer) -> None:
        pass

    def state_dict(self) -> dict:
        """What a checkpoint keeps of a controller that learns or counts, so a resumed run continues identically
        (plain containers of numbers, strings and tensors). Restored after `on_stage_start` within a stage, and
        before it at a stage's boundary."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
