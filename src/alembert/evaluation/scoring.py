"""One scoring function for teachers, students and baselines, so every table compares like with like."""
from __future__ import annotations

import numpy as np
import torch

from alembert.engine.data import EncodedExamples, make_loader
from alembert.models.layout import takes_token_types
from alembert.tasks import Task


@torch.no_grad()
def predict(model, data: EncodedExamples, batch_size: int = 128, use_teacher_encoding: bool = False) -> np.ndarray:
    """Logits for every example, in order."""
    model.eval()
    device = next(model.parameters()).device
    takes_types = takes_token_types(model)
    outputs = []
    for batch in make_loader(data, batch_size, shuffle=False):
        prefix = "teacher_" if use_teacher_encoding else ""
        inputs = {k: batch[prefix + k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")
                  if prefix + k in batch and (k != "token_type_ids" or takes_types)}
        outputs.append(model(**inputs).logits.float().cpu())
    return torch.cat(outputs).numpy()


def score(model, data: EncodedExamples, task: Task, batch_size: int = 128) -> dict[str, float]:
    logits = predict(model, data, batch_size)
    return task.compute_metrics(logits, np.asarray(data.labels))
