"""Data sources a recipe names under `sources:`, each turned into a dataset a stage's sampler draws from.

A source class (registered in SOURCES) has `Options` (its recipe spec) and `load(spec, context) -> dataset`. A
dataset has len, items by position, `shards` (ranges tokenized and cached together), `lengths`, `domain_ids` and
`labels`, and `encoded_shard(j)`; a source that changes during training (generated examples) also has
`state_dict`/`load_state_dict`, kept in checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from alembert.data.encoded import EncodedExamples, Tokenizers, encode_examples
from alembert.data.text import TextCorpus
from alembert.errors import AlembertError
from alembert.recipe.data_specs import GeneratedSourceSpec, TaskSourceSpec, TextSourceSpec
from alembert.registry import SOURCES
from alembert.tasks import Example, Task, get_task
from alembert.tasks.supplementary import _find_file


@dataclass
class SourceContext:
    """What loading a source needs from the run."""

    task: Task  # the run's task: its labels are the only labels a source may carry
    tokenizers: Tokenizers
    data_dir: str | None
    seed: int  # the data seed: limits are seeded samples


@SOURCES.register("task")
class TaskSource:
    """A task's split: unlabeled text (labels: false), or more labelled examples of the run's label set."""

    Options = TaskSourceSpec

    @staticmethod
    def load(spec: TaskSourceSpec, context: SourceContext, where: str) -> EncodedExamples:
        task = get_task(spec.task, context.data_dir)
        if spec.labels and (task.label_names != context.task.label_names or task.kind != context.task.kind):
            raise AlembertError(f"{where}: labels: true needs the run's labels ({_labels(context.task)}), but "
                                f"{task.name} has {_labels(task)}")
        examples = task.load(spec.split, spec.limit, context.seed)
        if not spec.labels:
            examples = [replace(e, label=None) for e in examples]
        return encode_examples(examples, context.tokenizers, 0)


def _labels(task: Task) -> str:
    return "a regression target" if task.label_names is None else ", ".join(task.label_names)


@SOURCES.register("text")
class TextSource:
    Options = TextSourceSpec

    @staticmethod
    def load(spec: TextSourceSpec, context: SourceContext, where: str) -> TextCorpus:
        files = [_find_file(name, context.data_dir) for name in spec.files]
        bad = [str(f) for f in files if Path(f).suffix.lower() not in (".txt", ".tsv", ".csv")]
        if bad:
            raise AlembertError(f"{where}.files: {bad[0]} is not a .txt, .tsv or .csv file")
        return TextCorpus(files, context.tokenizers, spec.min_words, spec.shard_size, spec.limit, context.seed)


class GeneratedPool(EncodedExamples):
    """Examples a plugin adds during training (`add`); the oldest go beyond `capacity`. Starts empty. A plugin that
    has added all it ever will `seal`s it: its contents are then fixed, so its teachers' outputs may be cached."""

    def __init__(self, tokenizers: Tokenizers, capacity: int):
        self.tokenizers, self.capacity, self.domains = tokenizers, capacity, ()
        self.examples, self.student = [], []
        self.teachers = [None if t is None else [] for t in tokenizers.teachers]
        self.sealed = False

    def seal(self) -> None:
        self.sealed = True

    def add(self, examples: list[Example]) -> None:
        if self.sealed:  # a cache of its teacher outputs would no longer match it
            raise RuntimeError("a sealed generated source takes no more examples")
        if not examples:
            return
        student, teachers = self.tokenizers.encode(examples)
        self.examples += examples
        self.student += student
        self.teachers = [None if mine is None else mine + new for mine, new in zip(self.teachers, teachers)]
        extra = len(self.examples) - self.capacity
        if extra > 0:
            self.examples, self.student = self.examples[extra:], self.student[extra:]
            self.teachers = [None if mine is None else mine[extra:] for mine in self.teachers]

    @property
    def shards(self) -> list[range]:
        return [range(len(self))] if len(self) else []

    def state_dict(self) -> dict:
        return {"examples": [[e.text_a, e.text_b, e.label, e.domain] for e in self.examples]}

    def load_state_dict(self, state: dict) -> None:
        """A resumed run's contents, put back before any cache is built (engine/loop.py), sealed or not."""
        sealed, self.sealed = self.sealed, False
        self.examples, self.student = [], []
        self.teachers = [None if t is None else [] for t in self.tokenizers.teachers]
        self.add([Example(*row) for row in state["examples"]])
        self.sealed = sealed


@SOURCES.register("generated")
class GeneratedSource:
    Options = GeneratedSourceSpec

    @staticmethod
    def load(spec: GeneratedSourceSpec, context: SourceContext, where: str) -> GeneratedPool:
        return GeneratedPool(context.tokenizers, spec.capacity)


def load_sources(specs: dict, context: SourceContext) -> dict:
    """Every source the recipe names, loaded (the run's own training data is added by the run, as 'task')."""
    return {name: SOURCES.get(spec.type, f"sources.{name}").load(spec, context, f"sources.{name}")
            for name, spec in specs.items()}
