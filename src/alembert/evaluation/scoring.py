"""One scoring function for teachers, students and baselines, so every table compares like with like."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from alembert.data.encoded import EncodedExamples
from alembert.models.layout import takes_token_types
from alembert.tasks import Task


def in_order(data: EncodedExamples, batch_size: int) -> DataLoader:
    """The examples' padded batches, in order."""
    return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=data.collate)


def logits_of(run, data: EncodedExamples, batch_size: int = 128) -> np.ndarray:
    """Logits for every example, in order: `run(inputs)` on each padded batch's token tensors (a model, a session, a
    backend)."""
    return np.concatenate([np.asarray(run(batch.inputs())) for batch in in_order(data, batch_size)])


def score_with(run, data: EncodedExamples, task: Task, batch_size: int = 128) -> dict[str, float]:
    return task.compute_metrics(logits_of(run, data, batch_size), np.asarray(data.labels))


@torch.no_grad()
def predict(model, data: EncodedExamples, batch_size: int = 128) -> np.ndarray:
    """The model's logits for every example, in order."""
    model.eval()
    device = next(model.parameters()).device
    takes_types = takes_token_types(model)

    def run(inputs):
        inputs = {k: v.to(device) for k, v in inputs.items() if k != "token_type_ids" or takes_types}
        return model(**inputs).logits.float().cpu().numpy()

    return logits_of(run, data, batch_size)


def score(model, data: EncodedExamples, task: Task, batch_size: int = 128) -> dict[str, float]:
    return task.compute_metrics(predict(model, data, batch_size), np.asarray(data.labels))
