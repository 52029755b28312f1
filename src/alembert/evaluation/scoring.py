"""One scoring function for teachers, students and baselines, so every table compares like with like."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from alembert.data.encoded import EncodedExamples
from alembert.models.heads import head_logits
from alembert.models.layout import takes_token_types
from alembert.tasks import Task
from alembert.tasks.kinds import TOKENS


DEFAULT_MAX_LENGTH = 128


def task_length(task: Task, model, given: int | None) -> int:
    """The tokens a task's examples are encoded to for scoring: `given`; else the model's position limit for token
    classification (a sentence is read whole, and a longer one is refused), else 128 or the model's limit when
    that is smaller."""
    from alembert.models.loading import position_limit

    if given is not None:
        return given
    limit = position_limit(model)
    if task.kind == TOKENS:
        return limit or 512
    return min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)


def in_order(data: EncodedExamples, batch_size: int) -> DataLoader:
    """The examples' padded batches, in order."""
    return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=data.collate)


def logits_of(run, data: EncodedExamples, batch_size: int = 128):
    """Logits for every item, in order: `run(inputs)` on each padded batch's token tensors (a model, a session, a
    backend). (N, C) for a head with an output per example; a head with outputs per token (B, T, C) gives a list
    of each item's (tokens, C), cut to its real tokens."""
    outputs, per_token = [], False
    for batch in in_order(data, batch_size):
        out = np.asarray(run(batch.inputs()))
        if out.ndim == 3:
            per_token = True
            outputs += [out[row, :n] for row, n in enumerate(batch.attention_mask.sum(dim=1).tolist())]
        else:
            outputs.append(out)
    return outputs if per_token else np.concatenate(outputs)


def metrics_of(task: Task, data: EncodedExamples, predictions) -> dict[str, float]:
    """The task's metrics of the model outputs on every item of `data` (answers, tags per word, classes)."""
    return task.compute_metrics(data.decode(predictions), data.gold)


def score_with(run, data: EncodedExamples, task: Task, batch_size: int = 128) -> dict[str, float]:
    return metrics_of(task, data, logits_of(run, data, batch_size))


@torch.no_grad()
def predict(model, data: EncodedExamples, batch_size: int = 128):
    """The model's logits for every item, in order (see `logits_of`)."""
    model.eval()
    device = next(model.parameters()).device
    takes_types = takes_token_types(model)

    def run(inputs):
        inputs = {k: v.to(device) for k, v in inputs.items() if k != "token_type_ids" or takes_types}
        return head_logits(model(**inputs)).float().cpu().numpy()

    return logits_of(run, data, batch_size)


def score(model, data: EncodedExamples, task: Task, batch_size: int = 128) -> dict[str, float]:
    return metrics_of(task, data, predict(model, data, batch_size))
