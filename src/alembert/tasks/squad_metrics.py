"""Exact match and F1 of predicted answer texts, as the official SQuAD v1.1 evaluation computes them.

Both compare normalised texts: lower-cased, punctuation (Python's string.punctuation) removed, the articles a, an
and the removed as words, and runs of whitespace made single spaces. Exact match: the normalised texts are equal.
F1: over the words of the normalised texts, counted as multisets (a word shared twice counts twice); 0 when they
share none (so also when the prediction is empty). A question takes the best score over its gold answers; the
metrics are the means over the questions, x100.
"""
from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalise(prediction) == normalise(gold))


def word_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalise(prediction).split(), normalise(gold).split()
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: list[str], answers: list[list[str]]) -> dict[str, float]:
    """f1 and exact_match (x100) of one predicted text per question against its gold answer texts."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} questions")
    if not predictions:
        raise ValueError("no questions to score")
    f1 = sum(max(word_f1(p, g) for g in gold) for p, gold in zip(predictions, answers))
    em = sum(max(exact_match(p, g) for g in gold) for p, gold in zip(predictions, answers))
    return {"f1": 100.0 * f1 / len(predictions), "exact_match": 100.0 * em / len(predictions)}
