"""Distillation losses: one module per family, each an nn.Module returning a scalar."""

from alembert.losses.attention import AttentionProbKL, AttentionProbMSE, AttentionScoreMSE
from alembert.losses.hidden import HiddenMSE
from alembert.losses.logits import HardLabelCE, KDLoss, LogitMSE, PredictionLoss, RegressionMSE
from alembert.losses.pkd import PKDLoss
from alembert.losses.relations import RelationKL

__all__ = [
    "AttentionProbKL",
    "AttentionProbMSE",
    "AttentionScoreMSE",
    "HardLabelCE",
    "HiddenMSE",
    "KDLoss",
    "LogitMSE",
    "PKDLoss",
    "PredictionLoss",
    "RegressionMSE",
    "RelationKL",
]
