"""The Python API; the CLI is a thin layer over these functions."""
from __future__ import annotations

from alembert.data.encoded import encode_examples
from alembert.evaluation.scoring import score, task_length
from alembert.evaluation.speed import speed_profile
from alembert.models.loading import check_max_length, load_classifier
from alembert.pipelines.finetune import finetune_recipe
from alembert.pipelines.pool import build_pool
from alembert.pipelines.run import RunResult, distill, process_state
from alembert.pipelines.search import run_search as search
from alembert.pipelines.transfer import run_transfer as transfer
from alembert.tasks import get_task
from alembert.tasks.base import check_labeled

__all__ = ["RunResult", "build_pool", "distill", "evaluate", "finetune", "process_state", "search", "transfer"]


def finetune(model: str, task, name: str | None = None, output_dir: str = "outputs", overwrite: bool = False,
             resume: bool = False, **settings) -> RunResult:
    """Fine-tune `model` on `task` with labels alone: a teacher, or the no-teacher baseline of a student.
    settings: epochs, lr, batch_size, max_length, train_limit, dev_limit, seed, data_dir, precision, speed,
    data_seed, stress, trust_remote_code and any other recipe key, e.g. checkpoint_every (pipelines/finetune.py).
    `resume`: continue an interrupted run from its newest checkpoint, as `distill` does."""
    return distill(finetune_recipe(model, task, name, output_dir, **settings), overwrite=overwrite, resume=resume)


def evaluate(model: str, task: str | dict, split: str = "dev", data_dir: str | None = None,
             max_length: int | None = None, limit: int | None = None, batch_size: int = 128, speed: bool = False,
             trust_remote_code: bool = False) -> dict:
    """Score a checkpoint on a task split; with speed, also its size and latency. `max_length` (tokens) defaults to
    128, or the model's limit when that is smaller; for token classification, whose sentences are read whole, to
    the model's limit."""
    task_obj = get_task(task, data_dir)
    examples = task_obj.load(split, limit)
    check_labeled(examples, task_obj, split)
    net, tokenizer = load_classifier(model, task_obj.num_labels, trust_remote_code, require_head=True,
                                     kind=task_obj.kind)
    max_length = task_length(task_obj, net, max_length)
    check_max_length(net, max_length, "max_length")
    data = encode_examples(examples, tokenizer, max_length)
    result = {"model": str(model), "task": task_obj.name, "split": split, "examples": len(data),
              "metrics": score(net, data, task_obj, batch_size)}
    if speed:
        result["speed"] = speed_profile(net, max_length)
    return result
