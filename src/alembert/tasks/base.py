"""Example and Task: the common shape every task (GLUE, Amazon, generic files) is loaded into."""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from alembert.errors import AlembertError, printable
from alembert.tasks.kinds import SEQUENCE
from alembert.tasks.metrics import compute_metrics


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None  # second sentence for pair tasks, else None
    label: int | float | None  # class id, regression target, or None when unlabeled
    domain: str | None = None  # e.g. 'books' for Amazon multi-domain


@dataclass(frozen=True)
class Task:
    kind: ClassVar[str] = SEQUENCE  # what the task asks of a model (tasks/kinds.py): the head, losses and metrics
    name: str
    label_names: tuple[str, ...] | None  # raw label strings in class-id order; None for regression
    metrics: tuple[str, ...]  # first one is the main metric, used for model selection
    is_pair: bool

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "dev", "test")

    def load(self, split: str, limit: int | None = None, seed: int = 0,
             fraction: float | None = None) -> list[Example]:
        """All examples of `split`, or a seeded random subset of them in file order: `limit` examples, or
        `fraction` of them (round(fraction * n), at least 1: few-shot settings given as a share of the split)."""
        if split not in self.splits:
            raise AlembertError(f"{self.name}: unknown split '{split}' (expected one of {', '.join(self.splits)})")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise AlembertError(f"{self.name}: limit must be a positive integer, got {limit!r}")
        if fraction is not None and not 0 < fraction <= 1:
            raise AlembertError(f"{self.name}: fraction must be in (0, 1], got {fraction!r}")
        examples = self._read(split)
        if fraction is not None:
            limit = max(1, round(fraction * len(examples)))
        return subset(examples, limit, seed)

    def compute_metrics(self, predictions, labels) -> dict[str, float]:
        unlabeled = sum(label is None for label in labels)
        if unlabeled:  # a split without labels (most test files) cannot be scored; say so rather than fail in numpy
            raise AlembertError(_unlabeled(f"task {self.name}: the set of examples", unlabeled, len(labels)))
        return compute_metrics(self.metrics, predictions, labels, regression=self.is_regression)

    def source(self, split: str) -> str:
        """Where `split` is read from, for messages: a task of files names the file."""
        return f"task {self.name}, split {split}"

    def _read(self, split: str) -> list[Example]:
        raise NotImplementedError


@dataclass(frozen=True)
class FileTask(Task):
    """A task whose splits are files, each given as a path: absolute, or relative to the data directory."""

    files: tuple[tuple[str, str], ...] = ()  # (split, path)
    data_dir: str | os.PathLike | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(split for split, _ in self.files)

    def path(self, split: str) -> Path:
        path = Path(dict(self.files)[split])
        return path if path.is_absolute() else resolve_data_dir(self.data_dir) / path

    def source(self, split: str) -> str:
        return str(self.path(split)) if split in self.splits else super().source(split)


def _unlabeled(what: str, unlabeled: int, total: int) -> str:
    """`what` ('the dev split', 'the examples') lacks labels for `unlabeled` of its `total` examples."""
    if unlabeled == total:
        return (f"{what} has no labels to score ({total} examples; test files usually come without them: score a "
                "labeled split such as dev)")
    return f"{what}: {unlabeled} of {total} examples have no label (expected every example to be labeled to score it)"


def check_labeled(examples: list[Example], task: Task, split: str, where: str | None = None) -> None:
    """Refuse, before any model runs, to score a split whose examples lack labels (GLUE's test files, a test file
    without the label column). `where` names the split in the message (default: its file, or task and split)."""
    unlabeled = sum(e.label is None for e in examples)
    if unlabeled:
        raise AlembertError(_unlabeled(f"{where or task.source(split)}: the {split} split", unlabeled, len(examples)))


def check_training_labels(examples: list[Example], task: Task, where: str | None = None) -> None:
    """Refuse a training set that cannot teach the task, naming `where` (default: the task's train file): for
    classification, examples of fewer than two classes (a file filtered to one class, a subset or stress transform
    that kept one); for regression, a target that never changes. Missing labels are refused too."""
    where = where or task.source("train")
    if not examples:
        raise AlembertError(f"{where}: no training examples (expected a labeled training set)")
    labels = [e.label for e in examples]
    if any(label is None for label in labels):
        raise AlembertError(f"{where}: {sum(label is None for label in labels)} of {len(labels)} training examples "
                            "have no label (expected every training example to be labeled)")
    if task.kind != SEQUENCE:  # tags per word, answers per question: the task says what can teach it
        task.check_training(examples, where)
        return
    if task.is_regression:
        if len(set(labels)) < 2:
            raise AlembertError(f"{where}: every training target is {labels[0]:g} ({len(labels)} examples); expected "
                                "targets that vary")
        return
    counts = Counter(labels)
    if len(counts) < 2:
        (only, count), = counts.items()
        name = task.label_names[only] if 0 <= only < len(task.label_names) else only
        raise AlembertError(f"{where}: the training set holds only the class {printable(name)!r} ({count} examples); "
                            f"expected examples of at least two classes (the task's: "
                            f"{', '.join(map(printable, task.label_names))})")


def subset(examples: list, limit: int | None, seed: int) -> list:
    """Seeded sample of `limit` items; sorted indices keep file order so subsets stay readable."""
    if limit is None or limit >= len(examples):
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


NO_DATA_DIR = (
    "no data directory: pass --data-dir DIR or set ALEMBERT_DATA (expected GLUE folders such as DIR/glue/SST-2)"
)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """Explicit argument, else $ALEMBERT_DATA, else ../shared/data beside the current directory,
    else ../shared/data beside the repository root (the directory with pyproject.toml)."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("ALEMBERT_DATA")
    if env:
        return Path(env).expanduser()
    here = Path("..") / "shared" / "data"
    if here.is_dir():
        return here  # kept relative so messages read like ../shared/data/glue/RTE/train.tsv
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            beside = parent.parent / "shared" / "data"
            if beside.is_dir():
                return beside
            break
    raise AlembertError(NO_DATA_DIR)
