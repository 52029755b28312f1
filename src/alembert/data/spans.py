"""Questions and their contexts encoded for extractive QA, in overlapping windows, and the windows' outputs read back
as answer texts.

Each window is `[CLS] question [SEP] part of the context [SEP]`, max_length tokens at most; consecutive windows
of a context share `stride` tokens (max_length // 3, HF's 128 at 384; half the room a long question leaves, when
that is less). Every window is an item: the objective, the teacher cache and the samplers see windows. A window's
label is the first gold answer's first and last token when the whole answer lies inside it, else (0, 0): the
[CLS] position, which teaches the model that the answer is elsewhere. A question so long that no context fits
beside it is refused.

Reading answers back: in each window of a question, the `N_BEST` highest start and end logits over its context
tokens make candidate spans (start <= end, at most `MAX_ANSWER_TOKENS` tokens); the span of the highest start +
end logit over all of the question's windows is the answer, its text cut from the context by the tokens'
character offsets. No candidate: the empty answer.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np

from alembert.data.batch import TOKEN_FIELDS
from alembert.data.encoded import EncodedExamples
from alembert.errors import AlembertError
from alembert.tasks.kinds import SPANS

N_BEST = 20
MAX_ANSWER_TOKENS = 30


def default_stride(max_length: int) -> int:
    return max_length // 3


def window_label(answer: tuple[int, str] | None, offsets: list) -> tuple[int, int] | None:
    """The answer's (first, last) token in a window whose context tokens have character `offsets` (None for the
    question and special tokens); (0, 0) when the answer is not wholly inside the window."""
    if answer is None:
        return None
    start, end = answer[0], answer[0] + len(answer[1])
    context = [t for t, span in enumerate(offsets) if span is not None]
    if not context or offsets[context[0]][0] > start or offsets[context[-1]][1] < end:
        return 0, 0
    first = max(t for t in context if offsets[t][0] <= start)
    last = min(t for t in context if t >= first and offsets[t][1] >= end)
    return first, last


def strides(tokenizer, examples, max_length: int) -> list[int]:
    """Each question's stride: the default, or half the context room its question leaves when that is less."""
    questions = tokenizer([e.question for e in examples], add_special_tokens=False)["input_ids"]
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    out = []
    for example, question in zip(examples, questions):
        room = max_length - len(question) - specials
        if room < 1:
            raise AlembertError(f"{example.where or example.id}: the question takes {len(question)} tokens, which "
                                f"leaves no room for its context in a window of max_length {max_length} (raise "
                                "max_length, or shorten the question)")
        out.append(min(default_stride(max_length), room // 2))
    return out


def encode_windows(tokenizer, examples, max_length: int) -> list[dict]:
    """Every window of every example, in example order: its encoding, `example` (the example's position) and
    `offsets` (a context token's character span, None for the others)."""
    if not getattr(tokenizer, "is_fast", False):
        raise AlembertError(f"tokenizer {type(tokenizer).__name__}: extractive QA needs a fast tokenizer (it maps "
                            "tokens to characters of the context; expected a tokenizer.json)")
    groups = defaultdict(list)
    for i, stride in enumerate(strides(tokenizer, examples, max_length)):
        groups[stride].append(i)
    windows = []
    for stride, members in groups.items():
        enc = tokenizer([examples[i].question for i in members], [examples[i].context for i in members],
                        truncation="only_second", max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=True)
        for j, sample in enumerate(enc["overflow_to_sample_mapping"]):
            encoding = {k: enc[k][j] for k in TOKEN_FIELDS if k in enc}
            encoding["example"] = members[sample]
            encoding["offsets"] = [tuple(span) if part == 1 else None
                                   for span, part in zip(enc["offset_mapping"][j], enc.sequence_ids(j))]
            windows.append(encoding)
    windows.sort(key=lambda w: w["example"])  # stable: a question's windows stay in context order
    return windows


class EncodedSpans(EncodedExamples):
    """Items are windows; `window_example[i]` is the example window i belongs to."""

    kind = SPANS
    encode_with = staticmethod(encode_windows)

    def __init__(self, examples, tokenizer, max_length: int, teacher_tokenizers=(), domains=()):
        super().__init__(examples, tokenizer, max_length, teacher_tokenizers, domains)
        self.window_example = [w.pop("example") for w in self.student]
        self.offsets = [w.pop("offsets") for w in self.student]
        if any(own is not None for own in self.teachers):
            raise AlembertError("extractive QA: teachers read the student's tokens (a teacher with a vocabulary of "
                                "its own would cut other windows)")

    def __len__(self):
        return len(self.student)

    @property
    def labels(self) -> list:
        return [window_label(None if self.examples[e].label is None else self.examples[e].label[0], offsets)
                for e, offsets in zip(self.window_example, self.offsets)]

    @property
    def domain_ids(self) -> list[int]:
        return [self.domain_id(self.examples[e]) for e in self.window_example]

    def __getitem__(self, i) -> dict:
        example = self.examples[self.window_example[i]]
        answer = None if example.label is None else example.label[0]
        return {"id": i, "student": self.student[i], "label": window_label(answer, self.offsets[i]),
                "domain": self.domain_id(example)}

    def subset(self, indices: list[int]) -> EncodedSpans:
        """These windows (their questions' other windows left out)."""
        part = copy.copy(self)
        part.student = [self.student[i] for i in indices]
        part.window_example = [self.window_example[i] for i in indices]
        part.offsets = [self.offsets[i] for i in indices]
        part.teachers = [None for _ in self.teachers]
        return part

    @property
    def questions(self) -> list[int]:
        """The examples with at least one window here, in order."""
        return sorted(set(self.window_example))

    @property
    def gold(self) -> list:
        return [self.examples[e].label for e in self.questions]

    def decode(self, predictions) -> list[str]:
        """Each question's answer text from its windows' (tokens, 2) start and end logits."""
        best = {}
        for e, offsets, logits in zip(self.window_example, self.offsets, predictions):
            found = best_span(np.asarray(logits, dtype=np.float64), offsets)
            if found is not None and (e not in best or found[0] > best[e][0]):
                best[e] = found
        return [self.examples[e].context[best[e][1]:best[e][2]] if e in best else "" for e in self.questions]


def best_span(logits: np.ndarray, offsets: list) -> tuple[float, int, int] | None:
    """(score, first character, end character) of a window's best candidate span, or None."""
    context = np.array([t for t, span in enumerate(offsets) if span is not None], dtype=np.int64)
    if not len(context):
        return None
    starts = context[np.argsort(-logits[context, 0], kind="stable")[:N_BEST]]
    ends = context[np.argsort(-logits[context, 1], kind="stable")[:N_BEST]]
    best = None
    for s in starts:
        for e in ends:
            if s <= e < s + MAX_ANSWER_TOKENS:
                score = logits[s, 0] + logits[e, 1]
                if best is None or score > best[0]:
                    best = (float(score), offsets[s][0], offsets[e][1])
    return best
