"""The fitness of a searched candidate: train it as a light proxy run, then score it. A task recipe scores on its
own dev set; a task-agnostic (general distillation) recipe has none, so its student is fine-tuned briefly on a few
proxy tasks and the fitness is their mean dev score (the layer-map search's proxy setting, Jiao et al.)."""
from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from pydantic import Field

from alembert.pipelines.transfer import FinetuneSpec
from alembert.recipe import TaskSpec, _Strict


class ProxyFinetune(FinetuneSpec):
    """Transfer's fine-tuning settings, shorter (one epoch) and with a dev-set cap, as a proxy is a quick look."""
    epochs: float = Field(1.0, gt=0)
    dev_limit: int | None = Field(None, ge=1)


class ProxySpec(_Strict):
    """Proxy tasks a task-agnostic student is fine-tuned on to score it; the mean of their main dev metrics."""

    tasks: list[str | TaskSpec] = Field(min_length=1)
    finetune: ProxyFinetune = ProxyFinetune()
    seed: int = Field(42, ge=0)


def task_name(task) -> str:
    return task if isinstance(task, str) else task.name


def evaluate_candidate(runner, name: str, overrides: list[str], proxy: ProxySpec | None, work: Path,
                       keep: Path | None = None) -> dict:
    """Train `name` (the base recipe with `overrides`) in memory and score it. `work`: a scratch folder for the
    encoder the proxy tasks start from (removed after); `keep`: save the trained student there (a checkpoint)."""
    from alembert.pipelines.finetune import finetune_recipe
    from alembert.pipelines.run import distill

    start = time.perf_counter()
    run = runner.proxy_run(name, overrides, keep_model=True)
    model = run.pop("model")
    saved = model.student.base_model if runner.agnostic else model.student
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        saved.save_pretrained(keep, safe_serialization=True)
        model.tokenizer.save_pretrained(keep)
    if not runner.agnostic:
        return dict(run, score=run["best"] if run["best"] is not None else run["dev"][run["metric"]],
                    seconds=round(time.perf_counter() - start, 1))
    encoder = keep
    if encoder is None:
        encoder = work / "encoder"
        saved.save_pretrained(encoder, safe_serialization=True)
        model.tokenizer.save_pretrained(encoder)
    scores, finetune_seconds = {}, 0.0
    try:
        for task in proxy.tasks:
            spec = task if isinstance(task, str) else task.model_dump()
            settings = proxy.finetune.model_dump()
            recipe = finetune_recipe(str(encoder), spec, name=f"{name}-{task_name(task)}", output_dir=str(work),
                                     seed=proxy.seed, data_dir=runner.data_dir, speed=False, **settings)
            tuned = distill(recipe, keep=False)
            metric = tuned.report["task"]["main_metric"]
            scores[task_name(task)] = tuned.report["models"][-1]["metrics"][metric]
            finetune_seconds += tuned.report["training"]["train_seconds"]
    finally:
        if keep is None:
            shutil.rmtree(encoder, ignore_errors=True)
    return dict(run, score=statistics.mean(scores.values()), proxy_dev=scores,
                finetune_seconds=round(finetune_seconds, 2), seconds=round(time.perf_counter() - start, 1))
