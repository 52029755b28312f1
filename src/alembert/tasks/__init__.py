"""Tasks: load GLUE, Amazon multi-domain, CoNLL-2003, SQuAD and user files into examples, and score predictions."""

from alembert.tasks.amazon import AmazonTask
from alembert.tasks.base import Example, Task, check_labeled, check_training_labels, resolve_data_dir
from alembert.tasks.generic import GenericTask
from alembert.tasks.glue import GlueTask
from alembert.tasks.metrics import METRIC_NAMES, compute_metrics
from alembert.tasks.registry import TASK_NAMES, get_task
from alembert.tasks.squad import SpanExample, SquadTask
from alembert.tasks.tokens import TokenExample, TokenTask

__all__ = [
    "AmazonTask",
    "Example",
    "GenericTask",
    "GlueTask",
    "METRIC_NAMES",
    "SpanExample",
    "SquadTask",
    "TASK_NAMES",
    "Task",
    "TokenExample",
    "TokenTask",
    "check_labeled",
    "check_training_labels",
    "compute_metrics",
    "get_task",
    "resolve_data_dir",
]
