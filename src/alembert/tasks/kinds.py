"""What a task asks of a model: one label per text (sequence classification), one tag per word (token
classification) or an answer span in a context (extractive question answering). The model's head, the encoding of
the examples, the prediction loss and the metrics all follow from the kind."""
from __future__ import annotations

SEQUENCE = "sequence_classification"
TOKENS = "token_classification"
SPANS = "extractive_qa"
KINDS = (SEQUENCE, TOKENS, SPANS)


def kind_of(examples) -> str:
    """The kind of a list of examples, by their type (an empty list: sequence classification)."""
    from alembert.tasks.squad import SpanExample
    from alembert.tasks.tokens import TokenExample

    first = examples[0] if len(examples) else None
    return TOKENS if isinstance(first, TokenExample) else SPANS if isinstance(first, SpanExample) else SEQUENCE
