"""Entity-level precision, recall and F1 of tag sequences, as the CoNLL-2003 evaluation script (conlleval) counts
them: an entity is a maximal run of words of one type that a B- tag, a change of type, or an I- tag after O or
another type starts, so IOB1 and IOB2 sequences score alike. An entity counts as found only when its type and its
first and last words all match. Micro-averaged over the entities of every type; percentages. seqeval's default
mode implements exactly this reading; tests/test_token_tasks.py checks it against a case counted by hand."""
from __future__ import annotations

import warnings


def tag_names(sequences, names: tuple[str, ...]) -> list[list[str]]:
    """Tag ids as tag strings; None (a word the model gave no prediction) as O."""
    return [["O" if t is None else names[t] for t in seq] for seq in sequences]


def entity_metrics(predictions, gold, names: tuple[str, ...]) -> dict[str, float]:
    """entity_f1, entity_precision, entity_recall and tag_accuracy (words whose tag is right), all x100."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    predicted, true = tag_names(predictions, names), tag_names(gold, names)
    if len(predicted) != len(true):
        raise ValueError(f"{len(predicted)} predicted sentences but {len(true)} gold ones")
    for i, (p, t) in enumerate(zip(predicted, true)):
        if len(p) != len(t):
            raise ValueError(f"sentence {i}: {len(p)} predicted tags for {len(t)} words")
    with warnings.catch_warnings():  # no entity predicted at all: precision is 0, not a warning
        warnings.simplefilter("ignore")
        return {"entity_f1": 100.0 * float(f1_score(true, predicted, zero_division=0)),
                "entity_precision": 100.0 * float(precision_score(true, predicted, zero_division=0)),
                "entity_recall": 100.0 * float(recall_score(true, predicted, zero_division=0)),
                "tag_accuracy": 100.0 * float(accuracy_score(true, predicted))}
