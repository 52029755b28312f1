"""Examples encoded by the student's tokenizer (and by each teacher's whose vocabulary differs), and the
concatenation of a stage's sources that its sampler draws indices from.

`encode_examples` encodes a task's examples as their kind needs: a text (pair) per item here; a sentence of words
with its tags aligned to the first sub-token of each word (data/tokens.py); a question's context in overlapping
windows, an item per window (data/spans.py)."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch.utils.data import Dataset

from alembert.data.batch import IGNORE, STUDENT, TOKEN_FIELDS, Batch, pad, teacher_key
from alembert.errors import AlembertError
from alembert.tasks import Example
from alembert.tasks.kinds import SEQUENCE, SPANS, TOKENS, kind_of


def encode(tokenizer, examples: list[Example], max_length: int) -> list[dict]:
    first = [ex.text_a for ex in examples]
    second = [ex.text_b for ex in examples] if examples and examples[0].text_b is not None else None
    enc = tokenizer(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
    return [{k: enc[k][i] for k in TOKEN_FIELDS if k in enc} for i in range(len(first))]


class Tokenizers:
    """The student's tokenizer and, per teacher, its own tokenizer or None where it reads the student's tokens."""

    def __init__(self, student, teachers=(), max_length: int = 128):
        self.student, self.teachers, self.max_length = student, list(teachers), max_length

    def encode(self, examples: list, how=encode) -> tuple[list[dict], list[list[dict] | None]]:
        """The examples encoded by the student's tokenizer and each teacher's own, by `how(tokenizer, examples,
        max_length)`."""
        own = [how(t, examples, self.max_length) if t is not None else None for t in self.teachers]
        return how(self.student, examples, self.max_length), own

    def pad_ids(self) -> dict[str, int]:
        ids = {STUDENT: self.student.pad_token_id or 0}
        ids.update({teacher_key(k): t.pad_token_id or 0 for k, t in enumerate(self.teachers) if t is not None})
        return ids


class EncodedExamples(Dataset):
    """Examples held in memory with their encodings. `domains`: the task's domain names, whose positions are the
    examples' domain ids (one domain: all 0). A batch carries teacher k's own tokens under the view teacher{k}."""

    kind = SEQUENCE
    encode_with = staticmethod(encode)  # how(tokenizer, examples, max_length) -> an encoding per example

    def __init__(self, examples: list[Example], tokenizer, max_length: int, teacher_tokenizers=(),
                 domains: tuple[str, ...] = ()):
        if not examples:
            raise AlembertError("no examples to encode (the split is empty)")
        self.tokenizers = tokenizer if isinstance(tokenizer, Tokenizers) else \
            Tokenizers(tokenizer, teacher_tokenizers, max_length)
        self.examples, self.domains = list(examples), tuple(domains)
        self.student, self.teachers = self.tokenizers.encode(self.examples, self.encode_with)

    @property
    def labels(self) -> list:
        return [ex.label for ex in self.examples]

    @property
    def gold(self):
        """What the task's metrics compare predictions with (tasks: `compute_metrics`)."""
        return np.asarray(self.labels)

    def decode(self, predictions):
        """The model's outputs on every item, in order (evaluation/scoring.py), as the task's metrics read them."""
        return predictions

    def __len__(self):
        return len(self.examples)

    def domain_id(self, example: Example) -> int:
        return self.domains.index(example.domain) if example.domain in self.domains else 0

    def teacher_encodings(self, k: int = 0) -> list[dict]:
        """What teacher k sees: its own encoding when it has one, else the student's."""
        own = self.teachers[k] if k < len(self.teachers) else None
        return own if own is not None else self.student

    def subset(self, indices: list[int]) -> EncodedExamples:
        """These examples at `indices`, as encoded already."""
        part = copy.copy(self)
        part.examples = [self.examples[i] for i in indices]
        part.student = [self.student[i] for i in indices]
        part.teachers = [None if own is None else [own[i] for i in indices] for own in self.teachers]
        return part

    @property
    def lengths(self) -> list[int]:
        return [len(e["input_ids"]) for e in self.student]

    @property
    def domain_ids(self) -> list[int]:
        return [self.domain_id(ex) for ex in self.examples]

    @property
    def shards(self) -> list[range]:
        return [range(len(self))]  # in memory: one shard

    def encoded_shard(self, j: int) -> EncodedExamples:
        return self

    def __getitem__(self, i) -> dict:
        item = {"id": i, STUDENT: self.student[i], "label": self.examples[i].label,
                "domain": self.domain_id(self.examples[i])}
        for k, encodings in enumerate(self.teachers):
            if encodings is not None:
                item[teacher_key(k)] = encodings[i]
        return item

    def collate(self, items: list[dict]) -> Batch:
        return collate(items, self.tokenizers.pad_ids())


def collate(items: list[dict], pad_ids: dict[str, int], source_names: tuple[str, ...] = (),
            length: int | None = None) -> Batch:
    """A batch of items, padded to `length` or to its longest. Their labels: a class id or target each; a tag id per
    token of the student's view (a list: token classification, padded with IGNORE); or the answer's (start, end)
    tokens (a tuple: extractive QA)."""
    views = {name: pad([it[name] for it in items], pad_id, length) for name, pad_id in pad_ids.items()}
    labels = [it["label"] for it in items]
    return Batch(
        views=views,
        labels=_label_tensor(labels, views[STUDENT]["input_ids"].shape[1]),
        label_mask=torch.tensor([y is not None for y in labels]),
        domain=torch.tensor([it["domain"] for it in items], dtype=torch.long),
        source=torch.tensor([it.get("source", 0) for it in items], dtype=torch.long),
        example_id=torch.tensor([it["id"] for it in items], dtype=torch.long),
        source_names=source_names)


def _label_tensor(labels: list, length: int) -> torch.Tensor:
    first = next((y for y in labels if y is not None), None)
    if isinstance(first, list):  # per token
        return torch.tensor([(y or []) + [IGNORE] * (length - len(y or [])) for y in labels], dtype=torch.long)
    if isinstance(first, tuple):  # an answer span per window
        return torch.tensor([y or (0, 0) for y in labels], dtype=torch.long)
    regression = any(isinstance(y, float) for y in labels)
    return torch.tensor([0 if y is None else y for y in labels], dtype=torch.float32 if regression else torch.long)


def encode_examples(examples: list, tokenizer, max_length: int, teacher_tokenizers=(), domains=()) -> EncodedExamples:
    """The examples encoded as their kind needs (tasks/kinds.py): `tokenizer` is the student's tokenizer, or a
    Tokenizers holding the teachers' own too."""
    from alembert.data.spans import EncodedSpans
    from alembert.data.tokens import EncodedTokens

    kind = {SEQUENCE: EncodedExamples, TOKENS: EncodedTokens, SPANS: EncodedSpans}[kind_of(examples)]
    return kind(examples, tokenizer, max_length, teacher_tokenizers, domains)


class StageData(Dataset):
    """A stage's sources one after another: global index g is example g - start(s) of source s. `pad_to`: every
    batch padded to this length (TinyBERT's fixed-length batches), else to its longest example."""

    def __init__(self, sources: dict[str, Dataset], pad_ids: dict[str, int], pad_to: int | None = None):
        self.pad_to = pad_to
        self.names = tuple(sources)
        self.sources = list(sources.values())
        self.pad_ids = pad_ids
        self.starts = [0]
        for source in self.sources:
            self.starts.append(self.starts[-1] + len(source))

    def __len__(self):
        return self.starts[-1]

    def locate(self, g: int) -> tuple[int, int]:
        for s in range(len(self.sources)):
            if g < self.starts[s + 1]:
                return s, g - self.starts[s]
        raise IndexError(g)

    def __getitem__(self, g: int) -> dict:
        s, i = self.locate(g)
        return dict(self.sources[s][i], source=s)

    def collate(self, items: list[dict]) -> Batch:
        return collate(items, self.pad_ids, self.names, self.pad_to)
