"""Tokenized examples and dynamically padded batches."""
from __future__ import annotations

import copy

import torch
from torch.utils.data import DataLoader, Dataset
from transformers.trainer_pt_utils import LengthGroupedSampler

from alembert.errors import AlembertError
from alembert.tasks import Example

_FIELDS = ("input_ids", "attention_mask", "token_type_ids")


class EncodedExamples(Dataset):
    """Examples encoded by the student's tokenizer and by each teacher's whose vocabulary differs from it.

    `teacher_tokenizers` has one entry per teacher: its tokenizer, or None where the teacher reads the student's
    tokens. A batch carries teacher k's own tokens under the keys `teacher{k}_input_ids`, ...
    """

    def __init__(self, examples: list[Example], tokenizer, max_length: int, teacher_tokenizers=()):
        if not examples:
            raise AlembertError("no examples to encode (the split is empty)")
        self.examples = examples
        self.labels = [ex.label for ex in examples]
        self.student = self._encode(tokenizer, max_length)
        self.teachers = [self._encode(t, max_length) if t is not None else None for t in teacher_tokenizers]
        self.pad_id = tokenizer.pad_token_id or 0
        self.teacher_pad_ids = [(t.pad_token_id or 0) if t is not None else None for t in teacher_tokenizers]

    def _encode(self, tokenizer, max_length):
        first = [ex.text_a for ex in self.examples]
        second = [ex.text_b for ex in self.examples] if self.examples[0].text_b is not None else None
        enc = tokenizer(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
        return [{k: enc[k][i] for k in _FIELDS if k in enc} for i in range(len(first))]

    def __len__(self):
        return len(self.examples)

    def teacher_encodings(self, k: int = 0) -> list[dict]:
        """What teacher k sees: its own encoding when it has one, else the student's."""
        own = self.teachers[k] if k < len(self.teachers) else None
        return own if own is not None else self.student

    def subset(self, indices: list[int]) -> EncodedExamples:
        """These examples at `indices`, as encoded already."""
        part = copy.copy(self)
        part.examples = [self.examples[i] for i in indices]
        part.labels = [self.labels[i] for i in indices]
        part.student = [self.student[i] for i in indices]
        part.teachers = [None if own is None else [own[i] for i in indices] for own in self.teachers]
        return part

    @property
    def lengths(self) -> list[int]:
        return [len(e["input_ids"]) for e in self.student]

    def __getitem__(self, i):
        item = {"index": i, "student": self.student[i]}
        for k, encodings in enumerate(self.teachers):
            if encodings is not None:
                item[f"teacher{k}"] = encodings[i]
        if self.labels[i] is not None:
            item["labels"] = self.labels[i]
        return item

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = _pad([it["student"] for it in items], self.pad_id)
        for k, pad_id in enumerate(self.teacher_pad_ids):
            if pad_id is not None:
                batch.update({f"teacher{k}_{key}": v for key, v in _pad([it[f"teacher{k}"] for it in items],
                                                                         pad_id).items()})
        batch["index"] = torch.tensor([it["index"] for it in items])
        if "labels" in items[0]:
            batch["labels"] = torch.tensor([it["labels"] for it in items])
        return batch


def join_unlabeled(*parts: EncodedExamples) -> EncodedExamples:
    """Several encoded sets as one, labels dropped: for stages that learn from the teacher alone (e.g. ILD on the
    task's data plus supplementary text, whose examples may be pairs and single sentences side by side)."""
    joined = copy.copy(parts[0])
    joined.examples = [ex for part in parts for ex in part.examples]
    joined.labels = [None] * len(joined.examples)
    joined.student = [enc for part in parts for enc in part.student]
    joined.teachers = [None if own is None else [enc for part in parts for enc in part.teachers[k]]
                       for k, own in enumerate(parts[0].teachers)]
    return joined


def _pad(encodings: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    length = max(len(e["input_ids"]) for e in encodings)
    out = {}
    for key in encodings[0]:
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.tensor([e[key] + [fill] * (length - len(e[key])) for e in encodings])
    return out


def teacher_view(batch: dict[str, torch.Tensor], k: int = 0) -> dict[str, torch.Tensor]:
    """The inputs teacher k sees: its own encoding when it has one, else the student's."""
    prefix = f"teacher{k}_"
    if prefix + "input_ids" in batch:
        return {key[len(prefix):]: v for key, v in batch.items() if key.startswith(prefix)}
    return {key: v for key, v in batch.items() if key in _FIELDS}


def make_loader(data: EncodedExamples, batch_size: int, shuffle: bool, seed: int = 0,
                group_by_length: bool = False) -> DataLoader:
    """Batches in order, shuffled, or shuffled into groups of similar length (less padding per batch). One generator
    draws all of an epoch's randomness, so its state at the epoch's start replays the epoch (resuming)."""
    generator = torch.Generator().manual_seed(seed)
    if shuffle and group_by_length:
        sampler = LengthGroupedSampler(batch_size, lengths=data.lengths, generator=generator)
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=data.collate, generator=generator)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=data.collate, generator=generator)
