"""The one training loop: stages of losses over a frozen teacher and a trainable student, on accelerate."""
from __future__ import annotations

import copy
import functools
import itertools
import math
import operator
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import (DataLoaderConfiguration, DistributedDataParallelKwargs, DistributedType,
                               GradientAccumulationPlugin, broadcast_object_list, set_seed)
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from alembert.engine.checkpoint import Checkpoints
from alembert.engine.combine import TeacherCombination
from alembert.engine.controllers import Controller
from alembert.engine.data import EncodedExamples, join_unlabeled, make_loader, teacher_view
from alembert.engine.logger import RunLogger
from alembert.engine.mixup import MixUp
from alembert.engine.objective import Objective
from alembert.engine.rl_kd import RLTeacherSelector
from alembert.engine.teacher_cache import CacheInfo, default_cache_root, prepare_cache
from alembert.errors import AlembertError
from alembert.evaluation.scoring import score
from alembert.models.features import FeatureTap, TappedForward
from alembert.models.layout import find_layout
from alembert.recipe import Recipe, StageSpec
from alembert.tasks import Task

LOG_EVERY = 10


@dataclass
class TrainResult:
    best_metric: float | None = None
    best_step: int | None = None
    best_stage: str | None = None
    history: list[dict] = field(default_factory=list)  # every evaluation: stage, step, metrics
    seconds: float = 0.0
    train_seconds: float = 0.0  # in training steps only: no evaluation, no cache build
    cache_build_seconds: float = 0.0
    examples_seen: int = 0
    teacher_cache: dict = field(default_factory=dict)  # the (first) teacher's cache of the task's training set
    teacher_caches: list[dict] = field(default_factory=list)  # each teacher's, in order
    supplementary_cache: dict | None = None  # per other dataset a stage trains on ('task+supplementary', ...)


@dataclass
class CheckpointPlan:
    """Where and how often a Trainer writes checkpoints, and the one it continues from.

    phase: which training of the run this is ('student', or 'assistant' first for MiniLM's teacher assistant);
    resume: a checkpoint's (state, tensors) to continue from when it belongs to this phase; extra: more tensor
    groups written with every checkpoint (a finished assistant, which the student's phase needs to continue)."""
    checkpoints: Checkpoints
    every: int = 0  # optimizer steps between checkpoints; 0: only at the end of each stage
    phase: str = "student"
    resume: tuple[dict, dict] | None = None
    extra: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


class Trainer:
    """`teachers`: the frozen teachers, in the order of the recipe's teacher_list (empty: labels alone)."""

    def __init__(self, recipe: Recipe, task: Task, student, teachers: list, train: EncodedExamples,
                 dev: EncodedExamples, logger: RunLogger, controllers: list[Controller] = (),
                 supplementary: EncodedExamples | None = None, checkpoints: CheckpointPlan | None = None):
        self.recipe, self.task, self.train_data, self.dev_data = recipe, task, train, dev
        self.datasets = {"task": train}  # what each stage's `data` names
        if supplementary is not None:
            self.datasets.update({"supplementary": supplementary,
                                  "task+supplementary": join_unlabeled(train, supplementary)})
        self.logger, self.controllers = logger, list(controllers)
        # Under `accelerate launch` (DDP) the recipe's batch is the global batch, split across the processes, so a
        # recipe trains the same way on any number of them.
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), dataloader_config=DataLoaderConfiguration(split_batches=True),
            kwargs_handlers=[DistributedDataParallelKwargs()],
            # steps sync every grad_accum micro-steps, also across an epoch's end, with one process or many
            gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1, sync_with_dataloader=False))
        self.distributed = self.accelerator.num_processes > 1
        # bf16 autocast of our own rather than accelerate's mixed_precision, which is fixed for the whole process
        # once set (so one process could not run an fp32 recipe and then a bf16 one)
        self.autocast = functools.partial(torch.autocast, self.accelerator.device.type, dtype=torch.bfloat16,
                                enabled=recipe.precision == "bf16")
        self.student = student
        self.teachers = [t.eval().requires_grad_(False).to(self.accelerator.device) for t in teachers]  # frozen
        self.teacher_names = [t.name for t in recipe.teacher_list][:len(self.teachers)]
        for model in [student, *self.teachers]:  # hooks rebuild attention maps from Q and K, so any kernel will do
            if hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(recipe.attention)
        self.combination = TeacherCombination(recipe.combine, recipe.teacher_list, task.is_regression)
        self.selector = None  # RL-KD's learned teacher selector, a controller of the loop
        if recipe.combine.rule == "rl" and self.teachers:
            self.selector = RLTeacherSelector(recipe.combine.selector, self.teacher_names, task, find_layout(student),
                                              recipe.seed)
            self.controllers.append(self.selector)
        self.result = TrainResult()
        self._best_state = None
        self.plan = checkpoints
        self._resume = checkpoints.resume if checkpoints else None  # (state, tensors), consumed as it is applied

    def fit(self) -> TrainResult:
        set_seed(self.recipe.seed)
        start = self._fit_start = time.perf_counter()
        student_layout = find_layout(self.student)
        teacher_layout = find_layout(self.teachers[0]) if self.teachers else None
        objectives = [Objective(stage, student_layout, teacher_layout, self.task.is_regression)
                      for stage in self.recipe.stages]
        self.caches, infos = {}, {}  # by (data name, teacher index)
        for name in self.datasets:
            for k in range(max(1, len(self.teachers))):
                self.caches[name, k], infos[name, k] = self._teacher_cache(name, objectives, k)
        self.result.teacher_cache = asdict(infos["task", 0])
        self.result.teacher_caches = [asdict(infos["task", k]) for k in range(len(self.teachers))]
        used = sorted({stage.data for stage in self.recipe.stages} - {"task"})
        if used:
            self.result.supplementary_cache = {name: asdict(infos[name, 0]) for name in used}
        self.result.cache_build_seconds = sum(info.build_seconds for info in infos.values())
        first_stage, self._elapsed_before = 0, 0.0
        if self._resume is not None:
            first_stage, self._elapsed_before = self._restore_run()
        if self.recipe.compile:  # in place: the module, its hooks and its state_dict keys stay as they are
            self.student.compile(dynamic=True)
        for index, (stage, objective) in enumerate(zip(self.recipe.stages, objectives)):
            if index >= first_stage:
                self._run_stage(index, stage, objective)
        if self.recipe.compile:
            self.student._compiled_call_impl = None  # scored, measured and saved as the plain model it is
        if self._best_state is not None:  # keep the best checkpoint by the task metric
            self.student.load_state_dict(self._best_state)
        self.result.seconds = self._elapsed_before + time.perf_counter() - start
        return self.result

    def _restore_run(self) -> tuple[int, float]:
        """Apply what a checkpoint holds for the whole run: the student, the best state, the result so far, the
        logged rows. Returns the stage to continue in and the seconds the run had already taken. The rest waits for
        that stage's start (the RNG states, and within a stage its optimizer and position); only a checkpoint taken
        at a stage's end gives the controllers their state now, before the next stage starts them afresh."""
        state, tensors = self._resume
        self.student.load_state_dict(tensors["student"])
        self._best_state = tensors.get("best")
        kept = state["result"]
        for key in ("best_metric", "best_step", "best_stage", "history", "train_seconds", "examples_seen"):
            setattr(self.result, key, kept[key])
        self.logger.restore(state["logger_rows"])
        if state["micro"] == 0:
            self._restore_controllers(state)
        return state["stage"], kept["seconds"]

    def _restore_controllers(self, state: dict) -> None:
        """Each controller gets the state saved by the controller of its class in the same order among those of
        that class (a crash-test or logging controller present in only one of the two runs is simply skipped)."""
        saved = list(state["controllers"])
        for controller in self.controllers:
            match = next((entry for entry in saved if entry[0] == type(controller).__name__), None)
            if match is not None:
                saved.remove(match)
                controller.load_state_dict(match[1])

    def _teacher_cache(self, data_name: str, objectives: list[Objective], k: int):
        """Teacher k's output cache of one dataset, where it is safe: no controller rewrites inputs, the stage
        does not mix them, and it needs the teacher. Built when the teacher would see the data more than once;
        reused whenever it exists."""
        on_data = [(stage, o) for stage, o in zip(self.recipe.stages, objectives)
                   if o.needs_teacher and stage.data == data_name]
        users = [(stage, o) for stage, o in on_data if stage.mixup is None]
        if not users:
            reason = "the teacher sees mixed inputs (mixup)" if on_data else "no stage needs the teacher"
            return None, CacheInfo(None, enabled=False, reason=reason)
        if not self.recipe.teacher_cache:
            return None, CacheInfo(None, enabled=False, reason="switched off (teacher_cache: false)")
        changing = [type(c).__name__ for c in self.controllers if c.changes_inputs]
        if changing:
            return None, CacheInfo(None, enabled=False, reason=f"{', '.join(changing)} changes the inputs")
        request = functools.reduce(operator.or_, (o.teacher_request for _, o in users))  # one cache for all stages
        root = Path(self.recipe.cache_dir) if self.recipe.cache_dir else default_cache_root()
        passes = sum(stage.epochs for stage, _ in users)
        with self.accelerator.local_main_process_first():  # one process per machine builds it, the others find it
            return prepare_cache(root, self.teachers[k], self.datasets[data_name], self.recipe.max_length, request,
                                 self.recipe.precision, build=passes > 1, autocast=self.autocast, teacher_index=k)

    def _run_stage(self, index: int, stage: StageSpec, objective: Objective) -> None:
        acc = self.accelerator
        for name, param in self.student.named_parameters():
            param.requires_grad_(not any(pattern in name for pattern in stage.freeze))
        params = [p for p in list(self.student.parameters()) + list(objective.parameters()) if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # biases and LayerNorm weights
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": stage.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=stage.lr)
        loader = make_loader(self.datasets[stage.data], self.recipe.batch_size, shuffle=True,
                             seed=self.recipe.seed + index, group_by_length=self.recipe.group_by_length)
        micro_steps = math.ceil(stage.epochs * len(loader))
        total_steps = math.ceil(micro_steps / stage.grad_accum)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(stage.warmup * total_steps), total_steps)
        acc.gradient_accumulation_steps = stage.grad_accum
        student_request = objective.student_request
        for c in self.controllers:
            student_request |= c.student_request(find_layout(self.student))
        student_tap = FeatureTap(self.student, student_request)
        if self.distributed:  # DDP wraps the tap's forward, whose output holds only what the losses use
            # a stage that does not train the head leaves parameters without gradient, which DDP must look for
            acc.ddp_handler.find_unused_parameters = not objective.student_logits_used
            student = student_tap.runner = acc.prepare(TappedForward(student_tap, objective.student_logits_used))
            acc.ddp_handler.find_unused_parameters = False  # the objective's projections all take part
            loader = acc.prepare(loader)  # each process reads its share of every global batch
        else:
            student = acc.prepare(self.student)
        optimizer = acc.prepare(optimizer)
        # the objective's projections train too: under DDP it is wrapped to sync their gradients, and called through
        # the wrapper; one without trainable parameters is left as it is (DDP refuses it)
        run_objective = acc.prepare(objective) if any(p.requires_grad for p in objective.parameters()) else objective
        evaluate = stage.evaluate if stage.evaluate is not None else stage.trains_logits
        eval_every = stage.eval_every or math.ceil(len(loader) / stage.grad_accum)
        teachers = self.teachers if objective.needs_teacher else []
        caches = [self.caches[stage.data, k] if stage.mixup is None else None for k in range(len(teachers))]
        teacher_taps = [FeatureTap(t, objective.teacher_request) if cache is None else None
                        for t, cache in zip(teachers, caches)]
        mixup = MixUp(stage.mixup.alpha, self.recipe.seed + index) if stage.mixup else None
        mixed_models = [self.student] + [t for t, tap in zip(teachers, teacher_taps) if tap is not None]
        consistency = stage.consistency
        consistency_terms = objective.consistency_terms(consistency.released_script) if consistency else []
        self.steps_per_epoch = len(loader)  # micro-batches; controllers read it at the stage's start
        for c in self.controllers:
            c.on_stage_start(stage, self)

        step, micro, running, metric = 0, 0, {}, None
        generator = generator_of(loader)  # orders each epoch: its state at an epoch's start replays that epoch
        epoch = resumed_epoch = None  # (micro-steps before the epoch, the generator's state at its start)
        if self._resume is not None:  # continue from the very next micro-step: this stage's first, or a later one
            state, tensors = self._resume
            self._resume = None
            if state["micro"]:
                objective.load_state_dict(tensors["objective"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                self._restore_controllers(state)
                step, micro, running, metric = state["step"], state["micro"], state["running"], state["metric"]
                resumed_epoch = (state["epoch_micro"], state["epoch_generator"])
                if mixup:
                    mixup.rng.setstate(_as_tuple(state["mixup"]))
            acc.step = state["accelerator_step"]
            _set_rng_state(state["rng"])
        position = dict(stage=index, phase=self.plan.phase if self.plan else "student")

        def checkpoint(stage_index: int, at_end: bool) -> None:
            self._save_checkpoint(dict(position, stage=stage_index, step=step, micro=0 if at_end else micro,
                                       running=running, metric=metric,
                                       epoch_micro=epoch[0] if epoch else 0,
                                       epoch_generator=epoch[1] if epoch else generator.get_state(),
                                       accelerator_step=acc.step, mixup=mixup.rng.getstate() if mixup else None),
                                  None if at_end else (objective, optimizer, scheduler))

        bar = tqdm(total=total_steps, initial=step, desc=f"{self.recipe.name}:{stage.name}", disable=None,
                   leave=False)
        stage_start, self._eval_seconds = time.perf_counter(), 0.0
        try:
            while micro < micro_steps:
                # a new epoch, or the one a resumed run continues: replayed from its start, its done batches skipped
                epoch, resumed_epoch = resumed_epoch or (micro, generator.get_state()), None
                generator.set_state(epoch[1])
                for batch in itertools.islice(loader, micro - epoch[0], None):
                    if micro >= micro_steps:
                        break
                    for c in self.controllers:
                        batch = c.on_batch(batch, self)
                    t_feats = [cache.features(batch, objective.teacher_request).to(acc.device) if cache else None
                               for cache in caches]
                    batch = {k: v.to(acc.device) for k, v in batch.items()}
                    student.train()
                    with acc.accumulate(student, run_objective), self.autocast():
                        lam = mixup.sample() if mixup else 1.0
                        inputs = mixup.mixed_batch(batch) if mixup else batch
                        with mixup.mixing(mixed_models, lam) if mixup else nullcontext():
                            s_feats = student_tap.run(inputs)
                            with torch.no_grad():
                                for k, tap in enumerate(teacher_taps):
                                    if tap is not None:
                                        t_feats[k] = tap.run(teacher_view(inputs, k))
                        weights = self._example_weights(batch, s_feats, t_feats)
                        teacher_weights = self._teacher_weights(batch, s_feats, t_feats, objective)
                        loss, parts = run_objective(s_feats, t_feats, batch.get("labels"), weights, teacher_weights)
                        self._check_finite(loss, parts, stage, step + 1, batch)
                        if teacher_weights is not None:  # each teacher's mean share: the report plots them
                            parts.update({f"weight/{name}": float(w) for name, w in
                                          zip(self.teacher_names, teacher_weights.mean(dim=0))})
                        # CR-ILD's ramp: the weight grows linearly with the 0-based epoch, so it is 0 in the first
                        ramp = (micro // len(loader)) / math.ceil(stage.epochs) if consistency and consistency.ramp \
                            else 1.0
                        if consistency_terms and ramp > 0:
                            loss = loss + consistency.weight * ramp * self._consistency(
                                student, student_tap, objective, batch, s_feats, lam, consistency_terms, parts)
                            parts["total"] = float(loss.detach())
                            self._check_finite(loss, parts, stage, step + 1, batch)
                        acc.backward(loss)
                        if acc.sync_gradients and stage.max_grad_norm:
                            norm = acc.clip_grad_norm_(params, stage.max_grad_norm)
                            self._check_finite(norm, {"gradient norm": float(norm)}, stage, step + 1, batch)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    micro += 1
                    self.result.examples_seen += len(batch["index"]) * acc.num_processes
                    for key, value in parts.items():
                        running.setdefault(key, []).append(value)
                    if not acc.sync_gradients:
                        continue
                    scheduler.step()
                    step += 1
                    bar.update(1)
                    if step % LOG_EVERY == 0 or step == total_steps:
                        means = {k: sum(v) / len(v) for k, v in running.items()}
                        if self.distributed:  # each process saw its share of the batches: log the whole batches'
                            values = torch.tensor(list(means.values()), dtype=torch.float64, device=acc.device)
                            means = dict(zip(means, acc.reduce(values, reduction="mean").tolist()))
                        means["lr"] = scheduler.get_last_lr()[0]
                        self.logger.log(stage.name, step, means)
                        bar.set_postfix(loss=f"{means['total']:.4f}", **({"metric": f"{metric:.2f}"} if metric else {}))
                        running = {}
                    for c in self.controllers:
                        c.on_step_end(step, parts, self)
                    if evaluate and (step % eval_every == 0 or step == total_steps):
                        metric = self._evaluate(stage, step)
                    if self.plan and self.plan.every and step % self.plan.every == 0 and micro < micro_steps:
                        checkpoint(index, at_end=False)
        finally:
            self.result.train_seconds += time.perf_counter() - stage_start - self._eval_seconds
            bar.close()
            for tap in [student_tap, *teacher_taps]:
                if tap is not None:
                    tap.close()
        for c in self.controllers:
            c.on_stage_end(stage, self)
        if self.plan:
            checkpoint(index + 1, at_end=True)
        acc.wait_for_everyone()

    def _save_checkpoint(self, position: dict, within_stage: tuple | None) -> None:
        """Everything the run needs to continue from here. `within_stage`: the stage's (objective, optimizer,
        scheduler), or None at a stage's end, where the next stage builds its own."""
        result = {key: getattr(self.result, key) for key in ("best_metric", "best_step", "best_stage", "history",
                                                              "train_seconds", "examples_seen")}
        result["seconds"] = self._elapsed_before + time.perf_counter() - self._fit_start
        state = dict(position, result=result, logger_rows=self.logger.rows, rng=_rng_state(),
                     controllers=[[type(c).__name__, c.state_dict()] for c in self.controllers])
        tensors = {"student": self.student.state_dict(), **self.plan.extra}  # never wrapped: DDP wraps its tap
        if self._best_state is not None:
            tensors["best"] = self._best_state
        if within_stage is not None:
            objective, optimizer, scheduler = within_stage
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
            tensors["objective"] = objective.state_dict()
        if self.accelerator.is_main_process:
            self.plan.checkpoints.save(state, tensors)
        self.accelerator.wait_for_everyone()

    def _check_finite(self, value: torch.Tensor, parts: dict, stage: StageSpec, step: int, batch: dict) -> None:
        """Stop at the first loss (or gradient) that is not finite: naming the term, the step and the examples,
        and keeping the last checkpoint, which was taken before it."""
        if torch.isfinite(value).all():
            return
        term, bad = next(((k, v) for k, v in parts.items() if not math.isfinite(v) and k != "total"),
                         ("total", float(value.detach())))
        newest = self.plan.checkpoints.newest() if self.plan else None
        kept = f"; the last good checkpoint is {newest}" if newest else "; no checkpoint was written yet"
        raise AlembertError(
            f"stage {stage.name}, step {step}: {term} is {bad} on the batch of training examples "
            f"{batch['index'].tolist()} (positions in the loaded training set){kept}; lower the learning rate, set "
            "max_grad_norm, or use fp32")

    @staticmethod
    def _consistency(student, tap, objective, batch, mixed_features, lam, terms, parts) -> torch.Tensor:
        """The consistency term against the student's own features on the clean inputs, a target computed
        without gradient and without dropout."""
        with torch.no_grad():
            student.eval()
            clean = tap.run(batch)
            student.train()
        value = objective.consistency(mixed_features, clean, lam, terms)
        parts["consistency"] = float(value.detach())
        return value

    def _example_weights(self, batch, student_features, teacher_features):
        """Per-example loss weights from the first controller that gives any (None: all examples count alike)."""
        for c in self.controllers:
            weights = c.example_weights(batch, student_features, teacher_features, self)
            if weights is not None:
                return weights
        return None

    def _teacher_weights(self, batch, student_features, teacher_features, objective) -> torch.Tensor | None:
        """(B, K) per-example teacher weights: a controller's (the RL selector), else the recipe's rule. None where
        the stage distils no logits, or one teacher under rule mean or fixed (it simply counts in full)."""
        if not (objective.needs_teacher_logits and teacher_features):
            return None
        for c in self.controllers:
            weights = c.teacher_weights(batch, student_features, teacher_features, self)
            if weights is not None:
                return weights
        if len(teacher_features) == 1 and self.combination.rule in ("mean", "fixed"):
            return None
        return self.combination(torch.stack([f.logits for f in teacher_features], dim=1), batch.get("labels"))

    def _evaluate(self, stage: StageSpec, step: int) -> float:
        start = time.perf_counter()
        metrics = None
        if self.accelerator.is_main_process:  # one process scores; the others learn the result from it
            metrics = score(self.student, self.dev_data, self.task, self.recipe.eval_batch_size)
        if self.distributed:
            metrics = broadcast_object_list([metrics])[0]
        self.logger.log(stage.name, step, {f"dev_{k}": v for k, v in metrics.items()})
        self.result.history.append({"stage": stage.name, "step": step, **metrics})
        main = metrics[self.task.main_metric]
        if self.result.best_metric is None or main > self.result.best_metric or self.result.best_stage != stage.name:
            # a later stage's model supersedes an earlier stage's best: selection is within the last stage
            self.result.best_metric, self.result.best_step, self.result.best_stage = main, step, stage.name
            self._best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.student.state_dict().items()})
        self._eval_seconds += time.perf_counter() - start
        for c in self.controllers:
            c.on_evaluate(step, metrics, self)
        return main


def _rng_state() -> dict:
    """Every global random number generator the loop draws from (dropout, samplers of libraries)."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    numpy_state = list(state["numpy"])
    numpy_state[1] = np.array(numpy_state[1], dtype=np.uint32)
    np.random.set_state(tuple(numpy_state))
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    """A random.Random state as setstate wants it (tuples all the way down) from what a checkpoint returns."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def generator_of(loader) -> torch.Generator:
    """The generator that orders a loader's epochs (inside accelerate's wrapper too)."""
    sampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    if sampler is None:  # accelerate shards the batch sampler: the original is inside it
        sampler = getattr(getattr(getattr(loader, "batch_sampler", None), "batch_sampler", None), "sampler", None)
    return getattr(sampler, "generator", None) or loader.generator


def check_launch(recipe: Recipe, state: PartialState) -> None:
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
    if state.num_processes > 1 and recipe.batch_size % state.num_processes:
        raise AlembertError(f"batch_size: {recipe.batch_size} does not split across {state.num_processes} processes "
                            "(the recipe's batch is the global batch; use a multiple of the process count)")
    if state.num_processes > 1 and recipe.combine.rule == "rl":
        raise AlembertError("combine.rule: rl learns its policy in one process; run RL-KD without accelerate launch")
