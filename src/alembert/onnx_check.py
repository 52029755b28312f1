"""ONNX Runtime sessions, their outputs read as the engine reads a head's (models/heads.py: logits, or start and end
logits stacked on a last axis), and the check of an export against PyTorch on padded batches of mixed lengths.

The comparison covers the real tokens: padded positions of a per-token head are no prediction. Agreement is the
share of predictions that are the same: the class of each example, the tag of each real token, and the start and
the end token (over the real tokens) of each example for extractive QA.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from alembert.errors import AlembertError
from alembert.models.heads import head_logits, kind_of_model
from alembert.tasks.kinds import SEQUENCE, SPANS

_CHECK_TEXTS = (  # real-looking sentences of very different lengths, so the check batch is padded
    ("a gripping , beautifully acted film .", None),
    ("it is not the worst movie of the year , but the plot falls apart long before the last act , and the "
     "actors seem to know it .", None),
    ("bad .", None),
    ("the movie was good", "the film was not bad at all"),
    ("very fine", "awful and very poor , the plot is thin and the dialogue is worse than the acting"),
)


def check_inputs(tokenizer, names: list[str], vocab_size: int, max_length: int) -> list[dict[str, torch.Tensor]]:
    """Padded batches of mixed lengths: tokenized sentences, and random ids with random padding."""
    first = [a for a, _ in _CHECK_TEXTS]
    pairs = [(a, b or a) for a, b in _CHECK_TEXTS]
    batches = [tokenizer(first, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                         return_token_type_ids=True),
               tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation=True,
                         max_length=max_length, return_tensors="pt", return_token_type_ids=True)]
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([max_length, 3, max_length // 2, 9])
    ids = torch.randint(5, vocab_size, (len(lengths), max_length), generator=generator)
    mask = (torch.arange(max_length)[None, :] < lengths[:, None]).long()
    batches.append({"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    return [{k: torch.as_tensor(b[k]).long() for k in names} for b in batches]


def make_session(path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None):
    """An ONNX Runtime session; `threads` sets the intra-op pool (like torch.set_num_threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def as_logits(outputs: list[np.ndarray]) -> np.ndarray:
    """A session's outputs as one array: `logits`, or `start_logits` and `end_logits` stacked on a last axis."""
    return outputs[0] if len(outputs) == 1 else np.stack(outputs, axis=-1)


def onnx_logits(session, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    feed = {i.name: inputs[i.name].cpu().numpy().astype(np.int64) for i in session.get_inputs()}
    return as_logits(session.run(None, feed))


def agreement(got: np.ndarray, reference: np.ndarray, mask: np.ndarray, kind: str) -> tuple[int, int]:
    """(predictions that agree, predictions compared) of one batch."""
    if kind == SEQUENCE:
        return int((got.argmax(-1) == reference.argmax(-1)).sum()), len(reference)
    real = mask.astype(bool)
    if kind == SPANS:  # the start and the end token of each example, over its real tokens
        hide = np.where(real[..., None], 0.0, -np.inf)
        same = (got + hide).argmax(axis=1) == (reference + hide).argmax(axis=1)
        return int(same.sum()), same.size
    return int((got.argmax(-1) == reference.argmax(-1))[real].sum()), int(real.sum())


def max_difference(got: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """The largest absolute difference over the predictions that exist: every row, or every real token."""
    difference = np.abs(got - reference)
    if difference.ndim == 3:
        difference = difference[mask.astype(bool)]
    return float(difference.max())


@torch.no_grad()
def compare(model, sessions: dict[str, object], batches: list[dict[str, torch.Tensor]]) -> dict[str, dict]:
    """Max abs logit difference and argmax agreement of each session against PyTorch over the batches."""
    kind = kind_of_model(model)
    out = {name: {"max_abs_diff": 0.0, "agree": 0, "compared": 0} for name in sessions}
    for batch in batches:
        reference = head_logits(model(**batch)).float().numpy()
        mask = batch["attention_mask"].numpy()
        for name, session in sessions.items():
            got = onnx_logits(session, batch)
            if got.shape != reference.shape:
                raise AlembertError(f"ONNX {name}: logits of shape {got.shape}, PyTorch gives {reference.shape}")
            out[name]["max_abs_diff"] = max(out[name]["max_abs_diff"], max_difference(got, reference, mask))
            agree, compared = agreement(got, reference, mask, kind)
            out[name]["agree"] += agree
            out[name]["compared"] += compared
    return {name: {"max_abs_diff": r["max_abs_diff"], "argmax_agreement": r["agree"] / r["compared"]}
            for name, r in out.items()}
