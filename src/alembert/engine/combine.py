"""Per-example teacher weights for several teachers: the combination rules a recipe's `combine.rule` names.

A rule is registered as `COMBINATIONS.register(name, fn)` with fn(teacher_logits (B, K, C), labels (B,) or None,
spec, teachers, regression) -> (B, K) weights whose rows sum to 1; the prediction loss weighs each example's
distillation loss against teacher k by them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from alembert.errors import AlembertError
from alembert.recipe.specs import CombineSpec, TeacherSpec
from alembert.registry import COMBINATIONS


def gold_losses(teacher_logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Each teacher's loss on each example's gold label, (B, K): cross-entropy, or squared error for regression."""
    if regression:
        return (teacher_logits.float().squeeze(-1) - labels.float()[:, None]).pow(2)
    log_probs = F.log_softmax(teacher_logits.float(), dim=-1)
    index = labels.long()[:, None, None].expand(-1, teacher_logits.shape[1], 1)
    return -log_probs.gather(-1, index).squeeze(-1)


@COMBINATIONS.register("mean")
def mean(teacher_logits, labels, spec, teachers, regression) -> torch.Tensor:
    size, k = teacher_logits.shape[:2]
    return teacher_logits.new_full((size, k), 1.0 / k, dtype=torch.float32)


@COMBINATIONS.register("fixed")
def fixed(teacher_logits, labels, spec, teachers, regression) -> torch.Tensor:
    shares = torch.tensor([t.weight for t in teachers], dtype=torch.float32, device=teacher_logits.device)
    return (shares / shares.sum()).expand(teacher_logits.shape[0], -1)


@COMBINATIONS.register("confidence")
def confidence(teacher_logits, labels, spec, teachers, regression) -> torch.Tensor:
    """A teacher counts for more on the examples whose gold label it finds likely."""
    if labels is None:
        raise AlembertError("combine rule 'confidence' weighs teachers by the gold labels; this batch has unlabeled "
                            "examples")
    return torch.softmax(-gold_losses(teacher_logits.detach(), labels, regression) / spec.temperature, dim=1)


class TeacherCombination:
    """The recipe's rule as a function of the batch's teacher logits."""

    def __init__(self, spec: CombineSpec, teachers: list[TeacherSpec], regression: bool):
        self.spec, self.teachers, self.regression = spec, teachers, regression
        self.rule = COMBINATIONS.get(spec.rule, "combine.rule")

    def __call__(self, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                 gates: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) weights; `gates` (a plugin's teacher weights) multiply them, each row then normalised to sum to
        1 (a row of zeros, an example given no teacher, stays zero)."""
        weights = self.rule(teacher_logits, labels, self.spec, self.teachers, self.regression)
        if gates is None:
            return weights
        weights = weights * gates.to(weights)
        return weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
