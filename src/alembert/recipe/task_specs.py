"""The recipe's task when it is given by its files: one spec per kind of task (tasks/kinds.py), told apart by `kind`
(a mapping without it is sequence classification)."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag

from alembert.recipe.specs import _Strict


class GenericTaskSpec(_Strict):
    name: str = "custom"
    kind: Literal["sequence_classification"] = "sequence_classification"
    format: Literal["csv", "tsv", "jsonl"] | None = None  # None: from the train file's extension
    train: str
    dev: str
    test: str | None = None
    text_columns: list[str] = Field(min_length=1, max_length=2)
    label_column: str = "label"
    labels: list[str] | None = None
    regression: bool = False
    metrics: list[str] | None = None


class TokenTaskSpec(_Strict):
    """Token classification from CoNLL column files or JSON lines (tasks/tokens.py)."""

    name: str = "custom"
    kind: Literal["token_classification"]
    format: Literal["conll", "jsonl"] | None = None  # None: from the train file's extension
    train: str
    dev: str
    test: str | None = None
    tags: list[str] | None = None  # None: read from the train file


class QATaskSpec(_Strict):
    """Extractive question answering from SQuAD v1.1 JSON files (tasks/squad.py)."""

    name: str = "custom"
    kind: Literal["extractive_qa"]
    format: Literal["squad"] | None = None
    train: str
    dev: str
    test: str | None = None


_TASK_SPECS = {"token_classification": "TokenTaskSpec", "extractive_qa": "QATaskSpec"}


def _task_spec_tag(value) -> str:
    if isinstance(value, BaseModel):
        return type(value).__name__
    return _TASK_SPECS.get(value.get("kind") if isinstance(value, dict) else None, "GenericTaskSpec")


TaskSpec = Annotated[Union[Annotated[GenericTaskSpec, Tag("GenericTaskSpec")],
                           Annotated[TokenTaskSpec, Tag("TokenTaskSpec")], Annotated[QATaskSpec, Tag("QATaskSpec")]],
                     Discriminator(_task_spec_tag)]
