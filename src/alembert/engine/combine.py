"""Per-example teacher weights for several teachers: the fixed combination rules (the RL-KD selector learns its own).

Each returns (B, K) weights whose rows sum to 1; the prediction loss weighs each example's distillation loss
against teacher k by them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from alembert.recipe import CombineSpec, TeacherSpec


def gold_losses(teacher_logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Each teacher's loss on each example's gold label, (B, K): cross-entropy, or squared error for regression."""
    if regression:
        return (teacher_logits.float().squeeze(-1) - labels.float()[:, None]).pow(2)
    log_probs = F.log_softmax(teacher_logits.float(), dim=-1)
    index = labels.long()[:, None, None].expand(-1, teacher_logits.shape[1], 1)
    return -log_probs.gather(-1, index).squeeze(-1)


class TeacherCombination:
    """The recipe's rule 'mean', 'fixed' or 'confidence' as a function of the batch's teacher logits."""

    def __init__(self, spec: CombineSpec, teachers: list[TeacherSpec], regression: bool):
        self.rule, self.temperature, self.regression = spec.rule, spec.temperature, regression
        fixed = torch.tensor([t.weight for t in teachers], dtype=torch.float32)
        self.fixed = fixed / fixed.sum()

    def __call__(self, teacher_logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        size, k = teacher_logits.shape[:2]
        if self.rule == "confidence":
            # a teacher counts for more on the examples whose gold label it finds likely
            return torch.softmax(-gold_losses(teacher_logits.detach(), labels, self.regression) / self.temperature,
                                 dim=1)
        shares = self.fixed if self.rule == "fixed" else torch.full((k,), 1.0 / k)
        return shares.to(teacher_logits.device).expand(size, k)
