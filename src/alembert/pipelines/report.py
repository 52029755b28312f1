"""A run's report: what was trained, on what, how it scored against its teachers, what it cost."""
from __future__ import annotations

from collections import Counter

from alembert.evaluation.report import best_teacher, retained
from alembert.tasks.kinds import SEQUENCE, SPANS
from alembert.tasks.stress import describe


def run_report(recipe, inputs, models: list[dict], result, plugins) -> dict:
    task, metric = inputs.task, inputs.task.main_metric
    teacher = best_teacher(models, metric) if metric is not None else None  # task-agnostic: no metric
    student = next(m for m in models if m["name"] == "student")
    report = {
        "name": recipe.name,
        "task": {"name": task.name, "kind": task.kind, "main_metric": metric, "metrics": list(task.metrics),
                 **({"domains": list(task.domains)} if getattr(task, "domains", None) else {})},
        "teacher": recipe.teacher,
        **({"teachers": [t.model_dump() for t in recipe.teacher_list], "combine": recipe.combine.rule}
           if recipe.teachers else {}),
        "student": recipe.student.model_dump(),
        "stages": [{"name": s.name, "epochs": s.epochs, "lr": s.lr, "data": s.data,
                    "plugins": [p.type for p in recipe.stage_plugins(s)],
                    "losses": [loss.type if loss.type != "prediction" else
                               f"prediction(alpha={loss.alpha}, T={loss.temperature})" for loss in s.losses]}
                   for s in recipe.stages],
        "seed": recipe.seed,
        "data": {"train_examples": len(inputs.train_examples), "dev_examples": len(inputs.dev_examples),
                 "train_limit": recipe.train_limit, "max_length": recipe.max_length,
                 **({"train_fraction": recipe.train_fraction} if recipe.train_fraction is not None else {}),
                 "train_labels": train_labels(inputs.train_examples, task),
                 **({"train_windows": len(inputs.sources["task"]), "dev_windows": len(inputs.dev)}
                    if task.kind == SPANS else {}),
                 **({"sources": {name: len(data) for name, data in inputs.sources.items() if name != "task"}}
                    if any(name != "task" for name in inputs.sources) else {})},
        "models": models,
        "retained_percent": retained(student["metrics"][metric], teacher["metrics"][metric]) if teacher else None,
        "training": {"best_metric": result.best_metric, "best_step": result.best_step,
                     "best_stage": result.best_stage, "seconds": round(result.seconds, 1),
                     "train_seconds": round(result.train_seconds, 2),
                     "cache_build_seconds": round(result.cache_build_seconds, 2),
                     "examples_seen": result.examples_seen, "optimizer_steps": result.optimizer_steps,
                     "early_stopped": result.early_stopped, "evaluations": result.history},
        "teacher_cache": result.teacher_cache,
        **({"teacher_caches": result.teacher_caches} if len(result.teacher_caches) > 1 else {}),
        **({"source_caches": result.source_caches} if result.source_caches else {}),
        "recipe": recipe.model_dump(),
    }
    for plugin in plugins:
        report.update(plugin.report())
    return report


def train_labels(examples: list, task) -> dict:
    """The training labels in counts: per class; per tag (and words) for token classification; questions and
    articles for extractive QA."""
    if task.kind == SEQUENCE:
        return describe(examples, task.num_labels)
    if task.kind == SPANS:
        return {"examples": len(examples), "articles": len({e.title for e in examples})}
    tally = Counter(t for e in examples for t in e.label)
    return {"examples": len(examples), "words": sum(len(e.words) for e in examples),
            "tag_counts": [tally.get(i, 0) for i in range(task.num_labels)]}
