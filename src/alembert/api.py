"""The Python API; the CLI is a thin layer over these functions."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import set_seed

from alembert.engine.data import EncodedExamples
from alembert.engine.logger import RunLogger
from alembert.engine.checkpoint import Checkpoints
from alembert.engine.trainer import CheckpointPlan, Trainer, check_launch
from alembert.errors import AlembertError
from alembert.evaluation.report import best_teacher, retained, write_model_card, write_report
from alembert.evaluation.scoring import score
from alembert.evaluation.speed import speed_profile
from alembert.files import write_text_atomically
from alembert.models.layout import find_layout
from alembert.models.loading import load_classifier
from alembert.models.students import extract_student, pick_layers, same_vocabulary, student_from_spec
from alembert.recipe import Recipe, load_recipe, recipe_from_dict
from alembert.tasks import get_task
from alembert.tasks.stress import apply_stress, describe
from alembert.tasks.supplementary import load_supplementary

__all__ = ["distill", "finetune", "evaluate", "build_student", "RunResult"]


@dataclass
class RunResult:
    path: Path  # outputs/<run>
    report: dict

    @property
    def student_dir(self) -> Path:
        return self.path / "student"


def build_student(recipe: Recipe, teacher, teacher_tokenizer, num_labels: int):
    spec = recipe.student
    if spec.init == "checkpoint":
        return load_classifier(spec.source, num_labels, recipe.trust_remote_code)
    if spec.init == "spec":
        if teacher is None:
            raise AlembertError("student.init 'spec' builds in the teacher's architecture: set teacher")
        return student_from_spec(teacher, spec.layers, spec.hidden, spec.heads, spec.ffn, recipe.seed), \
            teacher_tokenizer
    source, tokenizer = (teacher, teacher_tokenizer)
    if spec.source:
        source, tokenizer = load_classifier(spec.source, num_labels, recipe.trust_remote_code)
        if teacher_tokenizer is not None and not same_vocabulary(tokenizer, teacher_tokenizer):
            raise AlembertError(
                f"student.source {spec.source}: its vocabulary ({len(tokenizer)} tokens) differs from the teacher's "
                f"({len(teacher_tokenizer)}); extract from a model that shares the teacher's tokenizer")
    layers = pick_layers(spec.extract, find_layout(source).num_layers, spec.layers, spec.layer_ids)
    return extract_student(source, layers), tokenizer


def _token_aligned(recipe: Recipe) -> bool:
    """Whether teacher and student must see the same tokens: token-level losses, or inputs mixed token by token."""
    return any(stage.mixup is not None or any(loss.type != "prediction" for loss in stage.losses)
               for stage in recipe.stages)


def _check_writable(folder: Path) -> None:
    """Refuse, before any long work and without creating anything, an output folder that cannot be written: its
    nearest existing ancestor must be a writable directory."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise AlembertError(f"{folder}: cannot write the output directory ({existing} is not a writable directory)")


def _work_dir(final: Path) -> Path:
    """The hidden sibling of the run directory that a run writes into, its checkpoints included; published whole
    when the run succeeds, and found again by `resume` when it did not."""
    return final.with_name(f".{final.name}.partial")


def _recipe_differences(saved: dict, recipe: Recipe) -> list[str]:
    current = json.loads(json.dumps(recipe.model_dump(), default=str))
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def _resume_point(work: Path, recipe: Recipe, resume: bool, overwrite: bool, log) -> tuple | None:
    """The checkpoint to continue from (path, state, tensors), or None to start afresh, clearing what an earlier
    attempt left. Refuses to guess: an interrupted run is continued only with `resume`, replaced only with
    `overwrite`, and continued only under the recipe it was started with."""
    if not work.exists():
        if resume:
            log(f"{work}: no interrupted run to resume; starting afresh")
        return None
    if not (resume or overwrite):
        raise AlembertError(f"{work}: an interrupted run of this recipe is there (pass --resume to continue it, or "
                            "--overwrite to start again)")
    found = None
    if resume:
        saved = work / "recipe.json"
        if saved.is_file():
            try:
                earlier = json.loads(saved.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                raise AlembertError(f"{saved}: unreadable ({err}); pass --overwrite to start again") from err
            changed = _recipe_differences(earlier, recipe)
            if changed:
                raise AlembertError(f"{work}: the interrupted run had a different recipe (changed: "
                                    f"{', '.join(changed)}); undo the change to resume, or pass --overwrite instead")
        found = Checkpoints(work / "checkpoints").latest()
        if found is None:
            log(f"{work}: no usable checkpoint; starting afresh")
    if found is None:
        shutil.rmtree(work)
    else:
        path, state, _ = found
        log(f"resuming from {path} ({state['phase']}, stage {state['stage']}, step {state['step']})")
    return found


def _create_work_dir(work: Path, recipe: Recipe) -> None:
    try:
        work.mkdir(parents=True, exist_ok=True)
        write_text_atomically(work / "recipe.json", json.dumps(recipe.model_dump(), indent=1, default=str))
    except OSError as err:
        raise AlembertError(f"{work.parent}: cannot write the output directory ({err.strerror})") from err


def _publish(work: Path, final: Path) -> None:
    """Swap the finished run into place; an existing run is removed only once the new one is complete."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    work.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def process_state() -> PartialState:
    """This process's place in an `accelerate launch` (a world of one otherwise). cpu: without it, a machine without
    GPUs would not join the processes into one run."""
    return PartialState(cpu=not torch.cuda.is_available())


def distill(recipe: Recipe | str | os.PathLike, overrides: list[str] = (), overwrite: bool = False,
            controllers=(), resume: bool = False, log: Callable[[str], None] | None = None) -> RunResult | None:
    """Run a recipe end to end: train the student, score teacher and student, write outputs/<run>/.

    Checkpoints go to outputs/.<run>.partial/checkpoints while it trains; after a crash, `resume` continues from the
    newest good one (and starts afresh when there is none). Under `accelerate launch` every process trains its share
    of each batch and the main one writes; the others return None."""
    log = log or (lambda message: None)
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    final = Path(recipe.output_dir) / recipe.name
    if final.exists() and not overwrite:  # refuse before any long work starts
        raise AlembertError(f"{final}: output directory exists (pass --overwrite to replace it)")
    _check_writable(final.parent)
    work = _work_dir(final)
    processes = process_state()  # several under `accelerate launch`: the main one alone decides and writes
    check_launch(recipe, processes)
    found = _resume_point(work, recipe, resume, overwrite, log) if processes.is_main_process else None
    task = get_task(recipe.task if isinstance(recipe.task, str) else recipe.task.model_dump(), recipe.data_dir)
    data_seed = recipe.seed if recipe.data_seed is None else recipe.data_seed
    train_examples = task.load("train", recipe.train_limit, data_seed)
    if recipe.stress is not None:
        train_examples = apply_stress(train_examples, **recipe.stress.model_dump(), num_labels=task.num_labels,
                                      seed=data_seed)
    dev_examples = task.load("dev", recipe.dev_limit, data_seed)
    supplementary_examples = None
    if recipe.supplementary is not None:
        supplementary_examples = load_supplementary(recipe.supplementary.source, recipe.supplementary.limit,
                                                    data_seed, recipe.data_dir)
    set_seed(recipe.seed)  # before any model is built: a new classification head is initialised randomly
    loaded = [load_classifier(t.path, task.num_labels, recipe.trust_remote_code, require_head=True)
              for t in recipe.teacher_list]
    teachers = [model for model, _ in loaded]
    teacher, teacher_tokenizer = loaded[0] if loaded else (None, None)  # the student is built from the first
    student, tokenizer = build_student(recipe, teacher, teacher_tokenizer, task.num_labels)
    # a teacher whose vocabulary differs from the student's reads the raw text through its own tokenizer
    own_tokenizers = [None if same_vocabulary(tokenizer, tok) else tok for _, tok in loaded]
    if any(own_tokenizers) and _token_aligned(recipe):
        raise AlembertError("student and teacher vocabularies differ: hidden-state, attention and relation losses and "
                            "MixUp need one tokenization (use prediction losses only, or a student with the teacher's "
                            "tokenizer)")
    train = EncodedExamples(train_examples, tokenizer, recipe.max_length, own_tokenizers)
    dev = EncodedExamples(dev_examples, tokenizer, recipe.max_length)
    supplementary = None
    if supplementary_examples is not None:
        supplementary = EncodedExamples(supplementary_examples, tokenizer, recipe.max_length, own_tokenizers)

    if processes.is_main_process:
        _create_work_dir(work, recipe)
    processes.wait_for_everyone()
    checkpoints = Checkpoints(work / "checkpoints", recipe.checkpoint_keep)
    if not processes.is_main_process and resume:
        found = checkpoints.latest()  # the one the main process chose: it cleared the folder otherwise
    found_phase = found[1]["phase"] if found else None

    def plan(phase: str, extra: dict) -> CheckpointPlan:
        return CheckpointPlan(checkpoints, recipe.checkpoint_every, phase,
                              found[1:] if found_phase == phase else None, extra)

    try:
        logger = RunLogger(work if processes.is_main_process else None)
        try:
            assistant = None
            if recipe.assistant is not None:  # the assistant learns from the teacher, the student from it
                assistant = _assistant(recipe, teacher, student)
                if found_phase == "student":  # trained before the interruption: the checkpoint carries it
                    assistant.load_state_dict(found[2]["assistant"])
                else:
                    Trainer(_assistant_recipe(recipe), task, assistant, teachers, train, dev, logger, controllers,
                            supplementary, plan("assistant", {})).fit()
            trainer = Trainer(recipe, task, student, [assistant] if assistant else teachers, train, dev, logger,
                              controllers, supplementary,
                              plan("student", {"assistant": assistant.state_dict()} if assistant else {}))
            result = trainer.fit()
            if not processes.is_main_process:
                return None  # trained its share; the main process scores, reports and publishes
            scored = []
            for spec, model, own in zip(recipe.teacher_list, teachers, own_tokenizers):
                name = "teacher" if len(teachers) == 1 else f"teacher:{spec.name}"
                teacher_dev = dev if own is None else EncodedExamples(dev_examples, own, recipe.max_length)
                scored.append((name, model.cpu(), teacher_dev))
            if assistant is not None:
                scored.append(("assistant", assistant.cpu(), dev))
            scored.append(("student", student.cpu(), dev))
            models = []
            for name, model, data in scored:  # one scoring and one speed function for every model
                row = {"name": name, "metrics": score(model, data, task, recipe.eval_batch_size)}
                if recipe.speed:
                    row["speed"] = speed_profile(model, recipe.max_length)
                models.append(row)
            report = _report(recipe, task, models, result, len(train), len(dev))
            report["data"]["train_labels"] = describe(train_examples, task.num_labels)
            if supplementary is not None:
                report["data"]["supplementary_examples"] = len(supplementary)
            if assistant is not None:
                shape = find_layout(assistant)
                report["assistant"] = {"layers": shape.num_layers, "hidden": shape.hidden_size, "heads": shape.num_heads}
            if trainer.selector is not None:  # the learned policy is kept with the student it trained
                trainer.selector.save(work / "selector")
                report["teacher_selection"] = trainer.selector.summary
            student_dir = work / "student"
            student.save_pretrained(student_dir, safe_serialization=True)
            tokenizer.save_pretrained(student_dir)
            write_model_card(student_dir, report)
            write_report(work, report, logger)
        finally:
            logger.close()
        shutil.rmtree(work / "checkpoints")  # the published run is the student and its report, not the optimizer
        (work / "recipe.json").unlink()
        _publish(work, final)
    except BaseException:
        if processes.is_main_process:  # the folder is the main process's to clear or keep
            if checkpoints.newest() is None:
                shutil.rmtree(work, ignore_errors=True)  # nothing half-written is left behind
            else:
                log(f"{work}: the checkpoints are kept; run again with --resume to continue")
        raise
    return RunResult(final, report)


def _assistant(recipe: Recipe, teacher, student):
    """MiniLM's teacher assistant: the teacher's depth, the student's width, randomly initialised."""
    spec, teacher_layout, student_layout = recipe.assistant, find_layout(teacher), find_layout(student)
    return student_from_spec(teacher, spec.layers or teacher_layout.num_layers,
                             spec.hidden or student_layout.hidden_size, spec.heads or student_layout.num_heads,
                             spec.ffn, recipe.seed)


def _assistant_recipe(recipe: Recipe) -> Recipe:
    """The recipe's stages, renamed, for training the assistant (its logs and evaluations say so)."""
    data = recipe.model_dump()
    data["stages"] = [dict(stage, name=f"assistant-{stage['name']}") for stage in data["stages"]]
    data["assistant"] = None
    return recipe_from_dict(data, f"{recipe.name} (teacher assistant)")


def _report(recipe, task, models, result, n_train, n_dev) -> dict:
    metric = task.main_metric
    teacher = best_teacher(models, metric)
    student = next(m for m in models if m["name"] == "student")
    return {
        "name": recipe.name,
        "task": {"name": task.name, "main_metric": metric, "metrics": list(task.metrics)},
        "teacher": recipe.teacher,
        **({"teachers": [t.model_dump() for t in recipe.teacher_list], "combine": recipe.combine.rule}
           if recipe.teachers else {}),
        "student": recipe.student.model_dump(),
        "stages": [{"name": s.name, "epochs": s.epochs, "lr": s.lr,
                    "losses": [l.type if l.type != "prediction" else f"prediction(alpha={l.alpha}, T={l.temperature})"
                               for l in s.losses]} for s in recipe.stages],
        "seed": recipe.seed,
        "data": {"train_examples": n_train, "dev_examples": n_dev, "train_limit": recipe.train_limit,
                 "max_length": recipe.max_length},
        "models": models,
        "retained_percent": retained(student["metrics"][metric], teacher["metrics"][metric]) if teacher else None,
        "training": {"best_metric": result.best_metric, "best_step": result.best_step,
                     "best_stage": result.best_stage, "seconds": round(result.seconds, 1),
                     "train_seconds": round(result.train_seconds, 2),
                     "cache_build_seconds": round(result.cache_build_seconds, 2),
                     "examples_seen": result.examples_seen, "evaluations": result.history},
        "teacher_cache": result.teacher_cache,
        **({"teacher_caches": result.teacher_caches} if len(result.teacher_caches) > 1 else {}),
        **({"supplementary_cache": result.supplementary_cache} if result.supplementary_cache else {}),
        "recipe": recipe.model_dump(),
    }


def finetune(model: str, task: str | dict, name: str | None = None, output_dir: str = "outputs",
             epochs: float = 3.0, lr: float = 5e-5, batch_size: int = 32, max_length: int = 128,
             train_limit: int | None = None, dev_limit: int | None = None, seed: int = 42,
             data_dir: str | None = None, precision: str = "fp32", overwrite: bool = False,
             speed: bool = True, data_seed: int | None = None, stress: dict | None = None,
             trust_remote_code: bool = False) -> RunResult:
    """Fine-tune `model` on `task` with labels alone: a teacher, or the no-teacher baseline of a student."""
    task_name = task if isinstance(task, str) else task.get("name", "custom")
    recipe = recipe_from_dict({
        "name": name or f"finetune-{Path(str(model)).name}-{Path(task_name).stem}",
        "task": task, "teacher": None,
        "student": {"init": "checkpoint", "source": str(model)},
        "stages": [{"name": "finetune", "epochs": epochs, "lr": lr,
                    "losses": [{"type": "prediction", "alpha": 0.0}]}],
        "output_dir": output_dir, "batch_size": batch_size, "max_length": max_length, "train_limit": train_limit,
        "dev_limit": dev_limit, "seed": seed, "data_dir": data_dir, "precision": precision, "speed": speed,
        "data_seed": data_seed, "stress": stress, "trust_remote_code": trust_remote_code,
    }, "finetune")
    return distill(recipe, overwrite=overwrite)


def evaluate(model: str, task: str | dict, split: str = "dev", data_dir: str | None = None,
             max_length: int = 128, limit: int | None = None, batch_size: int = 128, speed: bool = False,
             trust_remote_code: bool = False) -> dict:
    """Score a checkpoint on a task split; with speed, also its size and latency."""
    task_obj = get_task(task, data_dir)
    net, tokenizer = load_classifier(model, task_obj.num_labels, trust_remote_code, require_head=True)
    data = EncodedExamples(task_obj.load(split, limit), tokenizer, max_length)
    result = {"model": str(model), "task": task_obj.name, "split": split, "examples": len(data),
              "metrics": score(net, data, task_obj, batch_size)}
    if speed:
        result["speed"] = speed_profile(net, max_length)
    return result
