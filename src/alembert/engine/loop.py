"""The one training loop: stages of loss terms over frozen teachers and a trainable student, on accelerate.

Methods live in losses (engine/terms.py), plugins (engine/plugins.py), data sources and samplers (data/), and
step strategies (engine/step.py); the loop only calls them in order.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import (DataLoaderConfiguration, DistributedDataParallelKwargs, DistributedType,
                               GradientAccumulationPlugin, broadcast_object_list, set_seed)
from tqdm.auto import tqdm

from alembert.engine.combine import TeacherCombination
from alembert.engine.evaluation import Evaluator, Selection
from alembert.engine.objective import Objective
from alembert.engine.plugins import Context, Outputs, PluginSet, changes_inputs
from alembert.engine.stage import StageTraining, stage_loader
from alembert.engine.resume import Resumable
from alembert.engine.state import CheckpointPlan, TrainResult
from alembert.engine.step import make_step
from alembert.engine.teacher_cache import default_cache_root
from alembert.engine.teachers import TeacherBank, union
from alembert.errors import AlembertError
from alembert.models.features import FeatureTap, TappedForward
from alembert.models.layout import find_layout

LOG_EVERY = 10
PROGRESS_EVERY = 100  # optimizer steps between progress lines in the log when stderr is not a terminal


@dataclass
class StageRun:
    """What one stage's steps use: its spec, objective (and the DDP-wrapped one it calls), plugins, the student's
    feature tap, the teachers' reader, the plugins' context, the (wrapped) student, its training, loader and
    sampler, the optimizer and the step strategy."""

    stage: object
    objective: Objective
    run_objective: object
    plugins: list
    tap: FeatureTap
    reader: object
    ctx: Context
    student: object
    training: StageTraining
    loader: object
    sampler: object
    optimizer: object
    step_fn: object


class Trainer(Resumable):
    """`teachers`: the frozen teachers, in the order of the recipe's teacher list (empty: labels alone);
    `sources`: the named training datasets ('task' and the recipe's sources); `plugins`: a PluginSet."""

    def __init__(self, recipe, task, student, teachers: list, sources: dict, pad_ids: dict, dev, logger,
                 plugins: PluginSet, checkpoints: CheckpointPlan | None = None, log=None):
        self.recipe, self.task, self.student, self.sources, self.pad_ids = recipe, task, student, sources, pad_ids
        self.logger, self.plugins, self.plan, self.log = logger, plugins, checkpoints, log or (lambda message: None)
        # Under `accelerate launch` (DDP) the recipe's batch is the global batch, split across the processes
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), dataloader_config=DataLoaderConfiguration(split_batches=True),
            kwargs_handlers=[DistributedDataParallelKwargs()],
            # steps sync every grad_accum micro-steps, also across an epoch's end, with one process or many
            gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1, sync_with_dataloader=False))
        self.distributed = self.accelerator.num_processes > 1
        # bf16 autocast of our own rather than accelerate's mixed_precision, which is fixed for the whole process
        self.autocast = functools.partial(torch.autocast, self.accelerator.device.type, dtype=torch.bfloat16,
                                          enabled=recipe.precision == "bf16")
        self.teachers = [t.eval().requires_grad_(False).to(self.accelerator.device) for t in teachers]  # frozen
        for model in [student, *self.teachers]:  # hooks rebuild attention maps from Q and K, so any kernel will do
            if hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(recipe.attention)
        self.bank = TeacherBank(self.teachers, self.autocast, recipe.precision, recipe.max_length)
        self.combination = TeacherCombination(recipe.combine, recipe.teacher_list, task.is_regression)
        self.evaluator = Evaluator(task, dev, recipe.eval_batch_size)
        self.selection = Selection(task.main_metric)
        self.result = TrainResult()
        self._resume = checkpoints.resume if checkpoints else None  # (state, tensors), consumed as it is applied
        self.ctx = Context(recipe, task, student, self.teachers, [t.name for t in recipe.teacher_list][:len(teachers)],
                           sources, self.evaluator, self._log_values, self.autocast, self.accelerator.device)

    def fit(self) -> TrainResult:
        set_seed(self.recipe.seed)
        self._fit_start = time.perf_counter()
        teacher_layout = find_layout(self.teachers[0]) if self.teachers else None
        objectives = [Objective(stage, find_layout(self.student), teacher_layout, self.task.is_regression,
                                self.task.kind) for stage in self.recipe.stages]
        for plugin in self.plugins:
            plugin.setup(self.ctx)
        first_stage, self._elapsed_before = 0, 0.0
        if self._resume is not None:  # first: a generated source's restored contents are what its cache holds
            first_stage, self._elapsed_before = self._restore_run()
        self._prepare_caches(objectives)
        if self.recipe.compile:  # in place: the module, its hooks and its state_dict keys stay as they are
            self.student.compile(dynamic=True)
        for index, (stage, objective) in enumerate(zip(self.recipe.stages, objectives)):
            if index >= first_stage:
                self._run_stage(index, stage, objective)
        if self.recipe.compile:
            self.student._compiled_call_impl = None  # scored, measured and saved as the plain model it is
        if self.selection.best_state is not None:  # keep the best checkpoint by the task metric
            self.student.load_state_dict(self.selection.best_state)
        for key, value in self.selection.state().items():
            setattr(self.result, key, value)
        self.result.seconds = self._elapsed_before + time.perf_counter() - self._fit_start
        return self.result

    def _prepare_caches(self, objectives) -> None:
        """Each teacher's output cache of each source a stage trains on, where it is safe (no plugin of a stage
        that reads it rewrites the inputs) and useful (the teacher would see the data more than once)."""
        spec, root = self.recipe.cache, Path(self.recipe.cache_dir) if self.recipe.cache_dir else default_cache_root()
        for name in dict.fromkeys(n for stage in self.recipe.stages for n in stage.sources):
            needing = [(i, stage, o) for i, (stage, o) in enumerate(zip(self.recipe.stages, objectives))
                       if name in stage.sources and o.needs_teacher]
            changing = {i: [p.name for p in self.plugins.active(i) if changes_inputs(p)] for i, _, _ in needing}
            users = [(i, stage, o) for i, stage, o in needing if not changing[i]]  # the stages that may read it
            off = "no stage needs the teacher" if not needing else \
                f"{', '.join(dict.fromkeys(n for names in changing.values() for n in names))} changes the inputs" \
                if not users else \
                "a loss averages over padding (positions: all), which the cache does not hold" if any(
                    stage.pads_to_max_length for _, stage, _ in users) else \
                "switched off (teacher_cache: false)" if not spec.enabled else \
                "generated during training" if not getattr(self.sources[name], "sealed", True) else None
            with self.accelerator.local_main_process_first(), _cache_errors(root):  # one process per machine builds
                self.bank.prepare(name, self.sources[name], union(o.teacher_request for *_, o in users) if users else
                                  None, sum(stage.epochs for _, stage, _ in users), root, spec.store == "all", off,
                                  spec.cls_only)
        infos = self.bank.infos
        self.result.cache_build_seconds = sum(i.build_seconds for i in infos.values())
        if ("task", 0) in infos:
            self.result.teacher_cache = self.bank.info("task", 0)
            self.result.teacher_caches = [self.bank.info("task", k) for k in range(len(self.teachers))]
        others = sorted({name for name, _ in infos} - {"task"})
        self.result.source_caches = {name: self.bank.info(name, 0) for name in others} or None

    def _setup_stage(self, index: int, stage, objective: Objective) -> StageRun:
        """The stage's loader, plugins (started, so their parameters exist), optimizer, student tap, teachers."""
        acc, recipe = self.accelerator, self.recipe
        plugins = self.plugins.active(index)
        loader, sampler = stage_loader(stage, index, self.sources, self.pad_ids, recipe, self.evaluator.domains)
        ctx = replace(self.ctx, stage=stage, stage_index=index, objective=objective, steps_per_epoch=len(loader))
        for plugin in plugins:
            plugin.on_stage_start(ctx)
        owned = [p for plugin in plugins for p in plugin.parameters()]
        if owned and self.distributed:
            raise AlembertError(f"stages.{index}.plugins: a plugin with trainable parameters runs in one process (its "
                                "gradients are not synchronised); run it without accelerate launch")
        training = StageTraining(stage, f"stages.{index}", self.student, list(objective.parameters()) + owned,
                                 len(loader))
        ctx.total_steps = training.total_steps
        tap = FeatureTap(self.student, objective.student_request | union(p.student_request(ctx) for p in plugins))
        acc.gradient_accumulation_steps = stage.grad_accum
        if self.distributed:  # DDP wraps the tap's forward, whose output holds only what the losses use
            # a stage that does not train the head leaves parameters without gradient, which DDP must look for
            acc.ddp_handler.find_unused_parameters = not objective.student_logits_used
            student = tap.runner = acc.prepare(TappedForward(tap, objective.student_logits_used))
            acc.ddp_handler.find_unused_parameters = False  # the objective's projections all take part
            loader = acc.prepare(loader)  # each process reads its share of every global batch
        else:
            student = acc.prepare(self.student)
        optimizer = acc.prepare(training.optimizer)
        # the objective's projections train too: under DDP it is wrapped to sync their gradients
        run_objective = acc.prepare(objective) if any(p.requires_grad for p in objective.parameters()) else objective
        reader = self.bank.reader(stage.sources, objective.teacher_request,
                                  use_cache=not any(map(changes_inputs, plugins)) and not stage.pads_to_max_length
                                  ) if objective.needs_teacher else None
        ctx.live_teachers = reader.live if reader else []
        ctx.student_features = functools.partial(self._clean_features, tap)
        step_fn = make_step(stage.step, acc, optimizer, training.parameters,
                            list(self.student.parameters()) + list(objective.parameters()), stage.max_grad_norm,
                            lambda value, parts: self._check_finite(value, parts, stage, ctx.step + 1, None))
        return StageRun(stage, objective, run_objective, plugins, tap, reader, ctx, student, training, loader,
                        sampler, optimizer, step_fn)

    def _run_stage(self, index: int, stage, objective: Objective) -> None:
        acc = self.accelerator
        self._current = run = self._setup_stage(index, stage, objective)
        ctx, plugins, training, loader, sampler = run.ctx, run.plugins, run.training, run.loader, run.sampler
        student, optimizer, scheduler = run.student, run.optimizer, training.scheduler
        evaluate = stage.evaluate if stage.evaluate is not None else stage.trains_logits
        eval_every = stage.eval_every or math.ceil(len(loader) / stage.grad_accum)
        position = {"step": 0, "micro": 0, "running": {}, "metric": None, "epoch": None}
        if self._resume is not None:
            position = self._restore_stage(objective, optimizer, scheduler, plugins)

        def loss_of(batch):
            ctx.phase = batch.phase  # the part of a meta step ('support', 'query') or 'train': plugins may weigh apart
            with self.autocast():
                return self._loss(batch, run)

        def checkpoint(stage_index: int, at_end: bool) -> None:
            epoch = position["epoch"] or (0, sampler.generator.get_state())
            self._save_checkpoint(dict(stage=stage_index, step=position["step"], micro=0 if at_end else
                                       position["micro"], running=position["running"], metric=position["metric"],
                                       epoch_micro=epoch[0], epoch_generator=epoch[1], accelerator_step=acc.step),
                                  None if at_end else (objective, optimizer, scheduler))

        bar = tqdm(total=training.total_steps, initial=position["step"], desc=f"{self.recipe.name}:{stage.name}",
                   disable=None, leave=False)
        stage_start, self._eval_seconds, stopped = time.perf_counter(), 0.0, False
        try:
            while position["micro"] < training.micro_steps and not stopped:
                # a new epoch, or the one a resumed run continues: replayed from its start, its done batches skipped
                epoch = position["epoch"] or (position["micro"], sampler.generator.get_state())
                position["epoch"] = None
                sampler.generator.set_state(epoch[1])
                for batch in itertools.islice(loader, position["micro"] - epoch[0], None):
                    if position["micro"] >= training.micro_steps:
                        break
                    ctx.step, ctx.micro = position["step"], position["micro"]
                    training.set_step(position["step"])
                    for plugin in plugins:
                        batch = plugin.transform_batch(batch, ctx)
                    student.train()
                    parts = run.step_fn(batch.to(acc.device), loss_of,
                                        lambda: acc.accumulate(student, run.run_objective))
                    position["micro"] += 1
                    self.result.examples_seen += batch.size * acc.num_processes
                    for key, value in parts.items():
                        position["running"].setdefault(key, []).append(value)
                    if not acc.sync_gradients:
                        continue
                    scheduler.step()
                    position["step"] += 1
                    self.result.optimizer_steps += 1
                    ctx.step = step = position["step"]
                    bar.update(1)
                    if step % LOG_EVERY == 0 or step == training.total_steps:
                        self._log_running(stage, step, position, scheduler, bar, training.total_steps)
                    for plugin in plugins:
                        plugin.after_step(ctx, parts)
                    if evaluate and (step % eval_every == 0 or step == training.total_steps):
                        position["metric"] = self._evaluate(stage, step, plugins, ctx)
                        stopped = self.selection.should_stop(stage.early_stop, stage.name)
                    if stopped:
                        self._record_early_stop(stage, step)
                        break
                    if self.plan and self.plan.every and step % self.plan.every == 0 \
                            and position["micro"] < training.micro_steps:
                        position["epoch"] = epoch
                        checkpoint(index, at_end=False)
                        position["epoch"] = None
        finally:
            self._close_stage(run, bar, stage_start)
        for plugin in plugins:
            plugin.on_stage_end(ctx)
        if self.plan:
            checkpoint(index + 1, at_end=True)
        acc.wait_for_everyone()

    def _record_early_stop(self, stage, step: int) -> None:
        self.result.early_stopped.append(stage.name)
        self.log(f"stage {stage.name}: early stop at step {step} (no gain in {stage.early_stop.patience} evaluations)")

    def _close_stage(self, run: StageRun, bar, stage_start: float) -> None:
        """Training time without evaluations; the progress bar, feature hooks and cache readers released."""
        self.result.train_seconds += time.perf_counter() - stage_start - self._eval_seconds
        bar.close()
        run.tap.close()
        if run.reader:
            run.reader.close()

    def _loss(self, batch, run: StageRun):
        """The batch's loss: plugins around the forward passes, their weights, the objective, their extra terms."""
        ctx, plugins = run.ctx, run.plugins
        ctx.shared = {}
        with self.plugins.around_forward(plugins, batch, ctx) as inputs:
            student = run.tap.run(inputs.inputs())
            teachers = run.reader.features(batch, inputs) if run.reader else []
        out = Outputs(batch, inputs, student, teachers)
        weights = PluginSet.weights(plugins, out, ctx)
        if teachers and run.objective.needs_teacher_logits:
            gates = weights.teacher
            weights.teacher = None if len(teachers) == 1 and gates is None and self.recipe.combine.rule in (
                "mean", "fixed") else self.combination(torch.stack([t.logits.float() for t in teachers], dim=1),
                                                       batch.gold, gates)
        loss, parts = run.run_objective(student, teachers, batch.labels, batch.label_mask, weights)
        for name, value in ((k, v) for p in plugins for k, v in p.extra_losses(out, ctx).items()):
            loss = loss + value
            parts[name] = float(value.detach())
        parts["total"] = float(loss.detach())
        if weights.teacher is not None:  # each teacher's mean share: the report plots them
            parts.update({f"weight/{n}": float(w) for n, w in zip(ctx.teacher_names, weights.teacher.mean(dim=0))})
        self._check_finite(loss, parts, run.stage, ctx.step + 1, batch)
        return loss, parts

    @torch.no_grad()
    def _clean_features(self, tap, batch):
        """The student's requested features on `batch`, without gradient and without dropout."""
        was_training = self.student.training
        self.student.eval()
        with self.autocast():
            features = tap.run(batch.inputs())
        self.student.train(was_training)
        return features

    def _log_values(self, values: dict) -> None:
        """A plugin's values, logged under the current stage and optimizer step."""
        self.logger.log(self._current.stage.name, self._current.ctx.step, values)

    def _log_running(self, stage, step, position, scheduler, bar, total) -> None:
        running = position["running"]
        means = {k: sum(v) / len(v) for k, v in running.items()}
        if self.distributed:  # each process saw its share of the batches: log the whole batches'
            values = torch.tensor(list(means.values()), dtype=torch.float64, device=self.accelerator.device)
            means = dict(zip(means, self.accelerator.reduce(values, reduction="mean").tolist()))
        means["lr"] = scheduler.get_last_lr()[0]
        self.logger.log(stage.name, step, means)
        metric = position["metric"]
        bar.set_postfix(loss=f"{means['total']:.4f}", **({"metric": f"{metric:.2f}"} if metric else {}))
        if bar.disable and (step % PROGRESS_EVERY == 0 or step == total):  # e.g. under nohup: a line in the log
            self.log(f"{self.recipe.name}:{stage.name} step {step}/{total} loss {means['total']:.4f}"
                     + (f" dev {metric:.2f}" if metric is not None else ""))
        position["running"] = {}

    def _evaluate(self, stage, step: int, plugins, ctx) -> float:
        start = time.perf_counter()
        metrics = None
        if self.accelerator.is_main_process:  # one process scores; the others learn the result from it
            metrics = self.evaluator.score(self.student)
        if self.distributed:
            metrics = broadcast_object_list([metrics])[0]
        self.logger.log(stage.name, step, {f"dev_{k}": v for k, v in metrics.items()})
        main = self.selection.update(stage.name, step, metrics, self.student)
        self._eval_seconds += time.perf_counter() - start
        for plugin in plugins:
            plugin.on_evaluate(metrics, ctx)
        return main

    def _check_finite(self, value: torch.Tensor, parts: dict, stage, step: int, batch) -> None:
        """Stop at the first loss (or gradient) that is not finite: naming the term, the step and the examples,
        and keeping the last checkpoint, which was taken before it."""
        if torch.isfinite(value).all():
            return
        term, bad = next(((k, v) for k, v in parts.items() if not math.isfinite(v) and k != "total"),
                         ("total", float(value.detach())))
        newest = self.plan.checkpoints.newest() if self.plan else None
        kept = f"; the last good checkpoint is {newest}" if newest else "; no checkpoint was written yet"
        which = f" on the batch of training examples [{batch.describe()}] (source:position)" if batch is not None \
            else ""
        raise AlembertError(f"stage {stage.name}, step {step}: {term} is {bad}{which}{kept}; lower the learning "
                            "rate, set max_grad_norm, or use fp32")

@contextlib.contextmanager
def _cache_errors(root: Path):
    """A cache folder that cannot be created or written is the user's setting: one line, not a traceback."""
    try:
        yield
    except OSError as err:
        raise AlembertError(f"{root}: cannot write the teacher cache ({err.strerror or err}); set cache_dir to a "
                            "writable folder, or teacher_cache: false") from err


def check_launch(recipe, state: PartialState) -> None:
    """What the launcher asked for that this loop does not do, said before any work: it trains with DDP (one process
    or several, GPUs or CPUs) and sets its own precision from the recipe."""
    kind = state.distributed_type
    if kind not in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        raise AlembertError(f"accelerate config: distributed_type {kind.value} is not supported (alembert trains with "
                            "DDP: choose multi-GPU or multi-CPU in accelerate config)")
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision != "no":
        raise AlembertError(f"accelerate config: mixed_precision {precision} is not used (set the recipe's "
                            "precision: bf16 instead, and launch with --mixed_precision no)")
    if state.num_processes <= 1:
        return
    if recipe.batch_size % state.num_processes:
        raise AlembertError(f"batch_size: {recipe.batch_size} does not split across {state.num_processes} processes "
                            "(the recipe's batch is the global batch; use a multiple of the process count)")
    for i, stage in enumerate(recipe.stages):
        alone = [p.type for p in recipe.stage_plugins(stage) if p.single_process]
        if alone:
            raise AlembertError(f"plugins: {alone[0]} learns in one process; run it without accelerate launch")
        if stage.step.type != "standard" or stage.unfreeze is not None:
            what = f"step {stage.step.type}" if stage.step.type != "standard" else "unfreeze"
            raise AlembertError(f"stages.{i}.{what.split()[0]}: {what} runs in one process; run it without "
                                "accelerate launch")
