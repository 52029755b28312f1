"""One distillation run: a recipe end to end. Load data, teachers and student; train; score teacher and student;
write outputs/<run>/ (or, for a proxy run, nothing: the result stays in memory)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import set_seed

import alembert.builtins  # noqa: F401  (every built-in loss, plugin, source, ... registered)
from alembert.data.encoded import EncodedExamples, Tokenizers, encode_examples
from alembert.data.sources import SourceContext, load_sources
from alembert.engine.checkpoint import Checkpoints, check_run_state
from alembert.engine.logger import RunLogger
from alembert.engine.loop import Trainer, check_launch
from alembert.engine.plugins import Plugin, PluginSet
from alembert.engine.state import CheckpointPlan
from alembert.errors import AlembertError
from alembert.evaluation.agnostic_report import write_agnostic_card, write_agnostic_report
from alembert.evaluation.report import write_model_card, write_report
from alembert.evaluation.scoring import score
from alembert.evaluation.speed import speed_profiles
from alembert.models.initialisers import build_student
from alembert.models.loading import check_max_length, load_classifier
from alembert.models.students import same_vocabulary
from alembert.pipelines import rundir
from alembert.pipelines.report import run_report
from alembert.pipelines.task_kinds import check_recipe_for_kind, check_teacher_tokenizers, name_labels
from alembert.recipe import Recipe, load_recipe
from alembert.registry import PLUGINS
from alembert.tasks import get_task
from alembert.tasks.agnostic import NoTask
from alembert.tasks.base import check_training_labels
from alembert.tasks.stress import apply_stress


@dataclass
class RunResult:
    path: Path | None  # outputs/<run>; None for a run kept in memory
    report: dict
    student: object = field(default=None, repr=False)  # the trained model, for runs kept in memory
    tokenizer: object = field(default=None, repr=False)

    @property
    def student_dir(self) -> Path:
        return self.path / "student"


def process_state() -> PartialState:
    """This process's place in an `accelerate launch` (a world of one otherwise). cpu: without it, a machine without
    GPUs would not join the processes into one run."""
    return PartialState(cpu=not torch.cuda.is_available())


@dataclass
class Inputs:
    """What a run trains on and with, loaded and checked before any training."""

    task: object
    train_examples: list
    dev_examples: list
    teachers: list  # (model, tokenizer) per teacher
    student: object
    tokenizer: object
    own_tokenizers: list  # per teacher: its tokenizer where its vocabulary differs from the student's, else None
    sources: dict  # name -> dataset, 'task' first
    pad_ids: dict
    dev: EncodedExamples


def load_inputs(recipe: Recipe, teachers: list | None = None) -> Inputs:
    """`teachers`: already loaded (model, tokenizer) pairs to reuse (a search's proxy runs share them)."""
    task = NoTask() if recipe.agnostic else get_task(recipe.task_spec, recipe.data_dir)
    check_recipe_for_kind(recipe, task)
    data_seed = recipe.seed if recipe.data_seed is None else recipe.data_seed
    train_examples = task.load("train", recipe.train_limit, data_seed, recipe.train_fraction)
    if recipe.stress is not None:
        train_examples = apply_stress(train_examples, **recipe.stress.model_dump(), num_labels=task.num_labels,
                                      seed=data_seed)
    chosen = [k for k in ("train_limit", "train_fraction", "stress") if getattr(recipe, k) is not None]
    if not recipe.agnostic:
        check_training_labels(train_examples, task, f"{task.source('train')} (after {' and '.join(chosen)})"
                              if chosen else None)
    dev_examples = task.load("dev", recipe.dev_limit, data_seed)
    set_seed(recipe.seed)  # before any model is built: a new classification head is initialised randomly
    loaded = teachers if teachers is not None else load_teachers(recipe, task)
    teacher, teacher_tokenizer = loaded[0] if loaded else (None, None)  # the student is built from the first
    student, tokenizer = build_student(recipe, teacher, teacher_tokenizer, task.num_labels, train_examples)
    name_labels(student, task)
    for model in [student, *(m for m, _ in loaded)]:  # before any work: an input longer than a model's positions
        check_max_length(model, recipe.max_length, "max_length")
    # a teacher whose vocabulary differs from the student's reads the raw text through its own tokenizer
    own = [None if same_vocabulary(tokenizer, tok) else tok for _, tok in loaded]
    check_teacher_tokenizers(own, task)
    if any(own) and _token_aligned(recipe):
        raise AlembertError("student and teacher vocabularies differ: hidden-state, attention and relation losses and "
                            "MixUp need one tokenization (use prediction losses only, or a student with the teacher's "
                            "tokenizer)")
    tokenizers = Tokenizers(tokenizer, own, recipe.max_length)
    domains = getattr(task, "domains", ())
    # a task-agnostic run has no training split and no dev set: its sources are its data
    sources = {} if recipe.agnostic else {"task": encode_examples(train_examples, tokenizers, 0, domains=domains)}
    sources.update(load_sources(recipe.sources, SourceContext(task, tokenizers, recipe.data_dir, data_seed)))
    dev = None if recipe.agnostic else encode_examples(dev_examples, tokenizer, recipe.max_length, domains=domains)
    return Inputs(task, train_examples, dev_examples, loaded, student, tokenizer, own, sources, tokenizers.pad_ids(),
                  dev)


def load_teachers(recipe: Recipe, task) -> list:
    """(model, tokenizer) per teacher. A task-agnostic run distils a pre-trained encoder: its features, never a
    head, so none is required (the one it is given is not used)."""
    if recipe.agnostic:
        return [load_classifier(t.path, None, recipe.trust_remote_code) for t in recipe.teacher_list]
    return [load_classifier(t.path, task.num_labels, recipe.trust_remote_code, require_head=True, kind=task.kind)
            for t in recipe.teacher_list]


def _token_aligned(recipe: Recipe) -> bool:
    """Whether teacher and student must see the same tokens: token-level losses, or inputs mixed token by token."""
    return any(any(p.mixes_inputs for p in recipe.stage_plugins(stage))
               or any(loss.type != "prediction" for loss in stage.losses) for stage in recipe.stages)


def make_plugins(recipe: Recipe, extra: list[Plugin] = ()) -> PluginSet:
    """The recipe's plugins (the run's, then each stage's), each with its own seeded random streams, and the
    plugins given in code (tests, a user's script), active in every stage."""
    made = []
    for scope, specs in [(None, recipe.plugins), *((i, s.plugins) for i, s in enumerate(recipe.stages))]:
        for spec in specs:
            seed = int.from_bytes(hashlib.sha256(f"{recipe.seed}:{spec.type}:{scope}".encode()).digest()[:4], "big")
            plugin = PLUGINS.get(spec.type, "plugins")(spec, seed=seed)
            plugin.scope = scope
            made.append(plugin)
    return PluginSet(made + list(extra))


def distill(recipe: Recipe | str | os.PathLike, overrides: list[str] = (), overwrite: bool = False,
            plugins: list[Plugin] = (), resume: bool = False, log: Callable[[str], None] | None = None,
            keep: bool = True, teachers: list | None = None, score_teachers: bool = True) -> RunResult | None:
    """Run a recipe end to end: train the student, score teacher and student, write outputs/<run>/.

    Checkpoints go to outputs/.<run>.partial/checkpoints while it trains; after a crash, `resume` continues from the
    newest good one. `keep=False` is a proxy run: nothing is written (no folder, checkpoint or log file) and the
    student comes back in memory. Under `accelerate launch` every process trains its share of each batch and the
    main one writes; the others return None."""
    log = log or (lambda message: None)
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    processes = process_state()  # several under `accelerate launch`: the main one alone decides and writes
    check_launch(recipe, processes)
    if not keep:
        return _train_and_score(recipe, load_inputs(recipe, teachers), make_plugins(recipe, plugins), None,
                                RunLogger(None), log, score_teachers)
    final = Path(recipe.output_dir) / recipe.name
    if final.exists() and not overwrite:  # refuse before any long work starts
        raise AlembertError(f"{final}: output directory exists (pass --overwrite to replace it)")
    rundir.check_writable(final.parent)
    inputs = load_inputs(recipe, teachers)  # every input checked before anything is written
    created = not final.parent.exists()
    try:
        with rundir.RunLock(final) if processes.is_main_process else contextlib.nullcontext():
            return _kept_run(recipe, inputs, final, processes, plugins, overwrite, resume, log, score_teachers)
    finally:
        if created and final.parent.is_dir() and not any(final.parent.iterdir()):
            final.parent.rmdir()  # a run that failed leaves no empty output folder behind


def _kept_run(recipe, inputs, final, processes, plugins, overwrite, resume, log, score_teachers):
    work = rundir.work_dir(final)
    found = rundir.resume_point(work, recipe, resume, overwrite, log) if processes.is_main_process else None
    if processes.is_main_process:
        rundir.create_work_dir(work, recipe)
    processes.wait_for_everyone()
    checkpoints = Checkpoints(work / "checkpoints", recipe.checkpoint_keep, validate=check_run_state)
    if not processes.is_main_process and resume:
        found = checkpoints.latest()  # the one the main process chose: it cleared the folder otherwise
    try:
        logger = RunLogger(work if processes.is_main_process else None)
        try:
            result = _train_and_score(recipe, inputs, make_plugins(recipe, plugins), (checkpoints, found), logger, log,
                                      score_teachers, work)
        finally:
            logger.close()
        if result is None:
            return None  # trained its share; the main process scores, reports and publishes
        rundir.publish(work, final)
    except BaseException:
        if processes.is_main_process:  # the folder is the main process's to clear or keep
            if checkpoints.newest() is None:
                shutil.rmtree(work, ignore_errors=True)  # nothing half-written is left behind
            else:
                log(f"{work}: the checkpoints are kept; run again with --resume to continue")
        raise
    result.path = final
    return result


def _train_and_score(recipe, inputs: Inputs, plugins: PluginSet, checkpointing, logger, log, score_teachers: bool,
                     work: Path | None = None) -> RunResult | None:
    from alembert.pipelines.assistant import train_assistant

    def plan(phase: str, extra: dict) -> CheckpointPlan | None:
        if checkpointing is None:
            return None
        checkpoints, found = checkpointing
        return CheckpointPlan(checkpoints, recipe.checkpoint_every, phase,
                              found[1:] if found and found[1]["phase"] == phase else None, extra)

    teachers = [model for model, _ in inputs.teachers]
    assistant = None
    if recipe.assistant is not None:  # the assistant learns from the teacher, the student from it
        found = checkpointing[1] if checkpointing else None
        assistant = train_assistant(recipe, inputs, teachers, logger, plan, found, log)
    trainer = Trainer(recipe, inputs.task, inputs.student, [assistant] if assistant else teachers, inputs.sources,
                      inputs.pad_ids, inputs.dev, logger, plugins,
                      plan("student", {"assistant": assistant.state_dict()} if assistant else {}), log)
    result = trainer.fit()
    if not process_state().is_main_process:
        return None
    models = _score(recipe, inputs, teachers if score_teachers else [], assistant, trainer.evaluator)
    report = run_report(recipe, inputs, models, result, trainer.plugins)
    if assistant is not None:
        report["assistant"] = _shape(assistant)
    if work is not None:
        for plugin in trainer.plugins:  # what a plugin learned is kept with the student it trained
            plugin.save(work)
        student_dir = work / "student"
        saved = inputs.student.base_model if recipe.agnostic else inputs.student  # task-agnostic: the encoder
        saved.save_pretrained(student_dir, safe_serialization=True)
        inputs.tokenizer.save_pretrained(student_dir)
        if recipe.agnostic:
            write_agnostic_card(student_dir, report)
            write_agnostic_report(work, report, logger)
        else:
            write_model_card(student_dir, report)
            write_report(work, report, logger)
    return RunResult(None, report, inputs.student, inputs.tokenizer)


def _score(recipe, inputs: Inputs, teachers: list, assistant, evaluator=None) -> list[dict]:
    """Every model scored on dev by one function, and (with `speed`) measured by one speed function. A student that
    answers per domain (a plugin gave the evaluator a domain view, e.g. a head per domain) is scored through it:
    each domain's examples by that domain's model, with each domain's metrics beside the whole set's."""
    scored = []
    for spec, model, own in zip(recipe.teacher_list, teachers, inputs.own_tokenizers):
        name = "teacher" if len(recipe.teacher_list) == 1 else f"teacher:{spec.name}"
        dev = inputs.dev if own is None else encode_examples(inputs.dev_examples, own, recipe.max_length)
        scored.append((name, model.cpu(), dev))
    if assistant is not None:
        scored.append(("assistant", assistant.cpu(), inputs.dev))
    scored.append(("student", inputs.student.cpu(), inputs.dev))
    per_domain = evaluator is not None and evaluator.view is not None
    rows = [{"name": name, "metrics": {} if recipe.agnostic else evaluator.score(model) if per_domain and
             name == "student" else score(model, data, inputs.task, recipe.eval_batch_size)}
            for name, model, data in scored]
    if recipe.speed:  # timed together, interleaved: each ratio to the first model survives a busy machine
        profiles = speed_profiles({name: model for name, model, _ in scored}, recipe.max_length)
        for row in rows:
            row["speed"] = profiles[row["name"]]
    return rows


def _shape(model) -> dict:
    from alembert.models.layout import find_layout

    layout = find_layout(model)
    return {"layers": layout.num_layers, "hidden": layout.hidden_size, "heads": layout.num_heads}
