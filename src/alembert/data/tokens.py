"""Sentences of words encoded for token classification.

Each sentence is tokenized whole (its words as given, `is_split_into_words`), never cut: one longer than
max_length tokens, special tokens included, is refused with its place in the file. A word's tag goes on its first
sub-token; its later sub-tokens, the special tokens and padding get IGNORE, so the loss and the metrics see one
position per word. A word the tokenizer turns into no token at all (a stray control character) has no position:
it is predicted O. Predictions are read back per word from each word's first sub-token.
"""
from __future__ import annotations

import numpy as np

from alembert.data.batch import IGNORE, TOKEN_FIELDS
from alembert.data.encoded import EncodedExamples
from alembert.errors import AlembertError
from alembert.tasks.kinds import TOKENS


def encode_words(tokenizer, examples, max_length: int) -> list[dict]:
    """Each sentence's encoding, with `word_ids`: the word each token comes from (None: a special token)."""
    if not getattr(tokenizer, "is_fast", False):
        raise AlembertError(f"tokenizer {type(tokenizer).__name__}: token classification needs a fast tokenizer "
                            "(it maps each sub-token to its word; expected a tokenizer.json)")
    try:
        enc = tokenizer([list(e.words) for e in examples], is_split_into_words=True, truncation=False,
                        return_token_type_ids=True)
    except ValueError as err:  # e.g. a byte-level BPE tokenizer made without add_prefix_space
        raise AlembertError(f"tokenizer {type(tokenizer).__name__}: cannot read pre-split words ({err})") from err
    out = []
    for i, example in enumerate(examples):
        encoding = {k: enc[k][i] for k in TOKEN_FIELDS if k in enc}
        if len(encoding["input_ids"]) > max_length:
            raise AlembertError(
                f"{example.where or f'sentence {i}'}: {len(example.words)} words make {len(encoding['input_ids'])} "
                f"tokens with the special tokens, more than max_length {max_length} (token classification reads a "
                "sentence whole, without windows: raise max_length up to the model's limit, or split the sentence)")
        encoding["word_ids"] = enc.word_ids(i)
        out.append(encoding)
    return out


def first_tokens(word_ids: list) -> dict[int, int]:
    """word -> the position of its first sub-token."""
    first = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in first:
            first[word] = position
    return first


class EncodedTokens(EncodedExamples):
    """Items are sentences; an item's label is a tag id per token of the student's encoding (IGNORE where no word
    starts), or None for an unlabeled sentence."""

    kind = TOKENS
    encode_with = staticmethod(encode_words)

    def __init__(self, examples, tokenizer, max_length: int, teacher_tokenizers=(), domains=()):
        super().__init__(examples, tokenizer, max_length, teacher_tokenizers, domains)
        self.word_ids = [encoding.pop("word_ids") for encoding in self.student]
        for own in self.teachers:
            for encoding in own or ():
                encoding.pop("word_ids")

    def aligned(self, i: int) -> list[int] | None:
        tags = self.examples[i].label
        if tags is None:
            return None
        first = first_tokens(self.word_ids[i])
        aligned = [IGNORE] * len(self.word_ids[i])
        for word, position in first.items():
            aligned[position] = tags[word]
        return aligned

    def __getitem__(self, i) -> dict:
        return dict(super().__getitem__(i), label=self.aligned(i))

    def subset(self, indices: list[int]) -> EncodedTokens:
        part = super().subset(indices)
        part.word_ids = [self.word_ids[i] for i in indices]
        return part

    @property
    def gold(self) -> list:
        return [None if e.label is None else list(e.label) for e in self.examples]

    def decode(self, predictions) -> list[list[int | None]]:
        """Per sentence, each word's tag id: the arg max at its first sub-token (None for a word with no token).
        `predictions`: per sentence, (tokens, tags) logits over its real tokens."""
        out = []
        for example, word_ids, logits in zip(self.examples, self.word_ids, predictions):
            first = first_tokens(word_ids)
            best = np.asarray(logits).argmax(axis=-1)
            out.append([int(best[first[w]]) if w in first else None for w in range(len(example.words))])
        return out
