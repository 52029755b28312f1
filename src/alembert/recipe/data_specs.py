"""The recipe's data parts: the sources a stage trains on and the sampler that draws its batches."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from alembert.recipe.specs import _Strict, registered_union


class SourceSpec(_Strict):
    type: str
    limit: int | None = Field(None, ge=1)  # a seeded sample of this many examples


class TaskSourceSpec(SourceSpec):
    """Another task's split, e.g. unlabeled supplementary text from its sentences (labels: false)."""

    type: Literal["task"]
    task: str | dict
    split: str = "train"
    labels: bool = False  # keep its labels (they must be the run's task's labels)


class TextSourceSpec(SourceSpec):
    """Unlabeled sentences from text files (.txt running text, or .tsv/.csv with a text/sentence column), indexed
    once and tokenized shard by shard as batches need them: a corpus never sits tokenized in memory."""

    type: Literal["text"]
    files: list[str] = Field(min_length=1)  # as given, else relative to the data directory
    min_words: int = Field(5, ge=1)
    shard_size: int = Field(4096, ge=1)  # examples tokenized (and cached by the teacher) together


class GeneratedSourceSpec(SourceSpec):
    """Examples a plugin generates during training (it adds them; the stage's sampler draws from them)."""

    type: Literal["generated"]
    capacity: int = Field(100_000, ge=1)  # the oldest are dropped beyond this many


BUILTIN_SOURCES = [TaskSourceSpec, TextSourceSpec, GeneratedSourceSpec]
SourceUnion = registered_union(BUILTIN_SOURCES, "SOURCES", lambda entry: entry.Options)


class SamplerSpec(_Strict):
    type: str


class ShuffledSamplerSpec(SamplerSpec):
    """Every example of the stage's sources once an epoch, shuffled; grouped by length unless the recipe says
    group_by_length: false (less padding)."""

    type: Literal["shuffled"] = "shuffled"


class PerDomainSamplerSpec(SamplerSpec):
    """k examples of every domain in each batch (HRKD); an epoch is as many batches as the `fit` domain gives
    (default: the largest), the other domains reshuffled and cycled as they run out."""

    type: Literal["per_domain"]
    k: int = Field(ge=1)
    fit: str | None = None


class MixtureSamplerSpec(SamplerSpec):
    """Each batch from one source, drawn with probability by `ratios` (source -> weight), or proportional to
    size ** tau (tau 1: by size, 0: uniform). An epoch is as many batches as the sources hold examples."""

    type: Literal["mixture"]
    ratios: dict[str, float] | None = None
    tau: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.ratios is None) == (self.tau is None):
            raise ValueError("set ratios (source: weight) or tau, one of them")
        if self.ratios is not None and (not self.ratios or any(not v > 0 for v in self.ratios.values())):
            raise ValueError("ratios: expected a positive weight per source")
        return self


BUILTIN_SAMPLERS = [ShuffledSamplerSpec, PerDomainSamplerSpec, MixtureSamplerSpec]
SamplerUnion = registered_union(BUILTIN_SAMPLERS, "SAMPLERS", lambda entry: entry.Options)
