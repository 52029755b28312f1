"""Each training example's embedding from a frozen pre-trained encoder, computed once: RL-KD's state reads it.

The encoder is the student as it is before training (its initial, pre-trained or extracted encoder), or a named
checkpoint. An example's embedding is the mean of the encoder's last hidden states over its real tokens, in eval
mode and fp32. The table is then standardised dimension by dimension over the training set and scaled by 1/sqrt(D),
so the embedding block as a whole has unit variance, like one standardised scalar of the state: with a policy
whose weights each move by about the learning rate per Adam step, D noisy embedding weights would otherwise drown
the few scalars that say how good a teacher is.
"""
from __future__ import annotations

import math

import torch

from alembert.data.encoded import EncodedExamples
from alembert.models.layout import takes_token_types


@torch.no_grad()
def mean_pooled(model, data: EncodedExamples, batch_size: int = 64) -> torch.Tensor:
    """(N, D) float32 on the CPU: `model`'s last hidden states averaged over each example's real tokens."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    keep_types = takes_token_types(model)
    rows = []
    try:
        for start in range(0, len(data), batch_size):
            batch = data.collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
            inputs = {k: v.to(device) for k, v in batch.inputs().items() if k != "token_type_ids" or keep_types}
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1].float()
            mask = inputs["attention_mask"].to(hidden.dtype)[..., None]
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(rows)


def standardised(table: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each dimension to mean 0 and variance 1 over the table, then the whole block scaled by 1/sqrt(D)."""
    table = table.double()
    z = (table - table.mean(0)) / (table.var(0, unbiased=False) + eps).sqrt()
    return (z / math.sqrt(table.shape[1])).float()


def example_embeddings(source: EncodedExamples, encoder=None, tokenizer=None, max_length: int = 128) -> torch.Tensor:
    """The standardised table (N, D) for one in-memory source: by `encoder` reading the source's own encodings
    (the student's tokenizer), or, with `tokenizer`, the raw text through that tokenizer."""
    data = source if tokenizer is None else EncodedExamples(source.examples, tokenizer, max_length)
    return standardised(mean_pooled(encoder, data))
