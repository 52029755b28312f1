"""The task of a task-agnostic run (general distillation): none. A recipe without `task` trains only on its
sources (unlabeled text), with losses between features, no labels, no head and no dev set; the student is saved
as a bare encoder that any task then fine-tunes with a fresh head (`alembert transfer`, `alembert finetune`)."""
from __future__ import annotations

from dataclasses import dataclass

from alembert.tasks.base import Task

GENERAL = "general"  # the name a task-agnostic run reports as its task


@dataclass(frozen=True)
class NoTask(Task):
    """Stands where the engine expects a task: no examples, no metric. The models it loads keep the default
    two-way head of their architecture, which no loss reads and which is not saved."""

    name: str = GENERAL
    label_names: tuple[str, ...] | None = ("0", "1")
    metrics: tuple[str, ...] = ()
    is_pair: bool = False

    @property
    def main_metric(self) -> None:
        return None

    def _read(self, split: str) -> list:
        return []


def is_agnostic(task) -> bool:
    return isinstance(task, NoTask)
