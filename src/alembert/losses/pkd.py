"""PKD's patient loss (Sun et al. 2019): distance between L2-normalised [CLS] vectors of one layer pair."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alembert.errors import AlembertError
from alembert.losses._reduce import weighted_mean, width_projection


class PKDLoss(nn.Module):
    """mean_d (c_S / ||c_S|| - c_T / ||c_T||)^2 on the [CLS] vectors c (position 0) of (B, T, D) states.

    The student's vector is projected first by ``nn.Linear(ds, dt)`` when widths differ and by the
    identity, with no parameters, when they match (as HiddenMSE). Normalising makes the loss blind to
    each vector's scale, which is the point of PKD: only the direction is taught.

    Reduction: per example the mean over the teacher width dt of the squared difference, i.e.
    ||a - b||^2 / dt (the ``MSELoss`` of PKD's and CR-ILD's code; the paper's sum differs by the
    constant dt), then the mean over examples, each scaled by its weight when ``weights`` (B,) is given.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.projection = width_projection(student_dim, teacher_dim, "PKDLoss")
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim

    def forward(self, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return weighted_mean(self.per_example(student_hidden, teacher_hidden), weights, "PKDLoss")

    def per_example(self, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B,); `mask` is ignored: only the [CLS] position is read."""
        # Token counts may differ (only position 0 is read); batch and widths may not.
        if (student_hidden.dim() != 3 or teacher_hidden.dim() != 3
                or student_hidden.shape[0] != teacher_hidden.shape[0]
                or student_hidden.shape[-1] != self.student_dim or teacher_hidden.shape[-1] != self.teacher_dim):
            raise AlembertError(
                f"PKDLoss: expected student (batch, tokens, {self.student_dim}) and teacher "
                f"(batch, tokens, {self.teacher_dim}) hidden states with the same batch size, got "
                f"{tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}"
            )
        student_cls = F.normalize(self.projection(student_hidden[:, 0]), dim=-1)
        teacher_cls = F.normalize(teacher_hidden[:, 0].detach(), dim=-1)
        return (student_cls - teacher_cls).pow(2).mean(dim=-1)
