"""Tasks: load GLUE, Amazon multi-domain and user files into Examples, and score predictions."""

from alembert.tasks.amazon import AmazonTask
from alembert.tasks.base import Example, Task, check_labeled, check_training_labels, resolve_data_dir
from alembert.tasks.generic import GenericTask
from alembert.tasks.glue import GlueTask
from alembert.tasks.metrics import METRIC_NAMES, compute_metrics
from alembert.tasks.registry import TASK_NAMES, get_task

__all__ = [
    "AmazonTask",
    "Example",
    "GenericTask",
    "GlueTask",
    "METRIC_NAMES",
    "TASK_NAMES",
    "Task",
    "check_labeled",
    "check_training_labels",
    "compute_metrics",
    "get_task",
    "resolve_data_dir",
]
