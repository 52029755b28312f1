"""TinyBERT-style word replacement (Jiao et al., 2020, data augmentation): a word that is one whole token of the
vocabulary is replaced, with probability p, by one of its k nearest neighbours in the teacher's input-embedding
space (cosine), itself a whole-word token. Words split into several word pieces, punctuation and numbers stay.

The replacement is made in the text (the rest of the string, spacing and punctuation, is kept), so any tokenizer
reads the result; a replaced word is a real token of the teacher's vocabulary."""
from __future__ import annotations

import random
import re

import torch

WORD = re.compile(r"[^\W\d_]+")  # a run of letters: the units that may be replaced


def whole_word_ids(tokenizer) -> list[int]:
    """Ids of the tokens that are whole alphabetic words (no word-piece marker, no special or punctuation token)."""
    special = set(tokenizer.all_special_tokens)
    return sorted(i for token, i in tokenizer.get_vocab().items()
                  if token not in special and token.isalpha() and len(token) > 1)


class NeighbourReplacer:
    """`variant(text, rng)`: the text with some whole-word tokens swapped for embedding neighbours."""

    def __init__(self, tokenizer, embeddings: torch.Tensor, top_k: int = 15, p: float = 0.4):
        self.tokenizer, self.top_k, self.p = tokenizer, top_k, p
        self.ids = whole_word_ids(tokenizer)
        self.row = {i: r for r, i in enumerate(self.ids)}
        table = embeddings.detach().float().cpu()[self.ids]
        self.table = table / table.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        self._neighbours: dict[str, list[str]] = {}

    def neighbours(self, word: str) -> list[str]:
        """The word's k nearest whole-word tokens (itself excluded), or [] when it is not one whole-word token."""
        key = word.lower() if getattr(self.tokenizer, "do_lower_case", False) else word
        if key not in self._neighbours:
            pieces = self.tokenizer.tokenize(key)
            ids = self.tokenizer.convert_tokens_to_ids(pieces)
            if len(ids) != 1 or ids[0] not in self.row:
                self._neighbours[key] = []
            else:
                scores = self.table @ self.table[self.row[ids[0]]]
                scores[self.row[ids[0]]] = float("-inf")
                k = min(self.top_k, len(self.ids) - 1)
                best = scores.topk(k).indices.tolist() if k > 0 else []
                self._neighbours[key] = self.tokenizer.convert_ids_to_tokens([self.ids[r] for r in best])
        return self._neighbours[key]

    def variant(self, text: str, rng: random.Random) -> str:
        def swap(match: re.Match) -> str:
            options = self.neighbours(match.group(0))
            return rng.choice(options) if options and rng.random() < self.p else match.group(0)

        return WORD.sub(swap, text)
