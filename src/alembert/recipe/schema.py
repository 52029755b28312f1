"""The stage and the recipe: one YAML file is one run, validated in full before any work starts."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from alembert.recipe.data_specs import MixtureSamplerSpec, SamplerUnion, ShuffledSamplerSpec, SourceUnion
from alembert.recipe.specs import (AssistantSpec, CacheSpec, CombineSpec, EarlyStopSpec, LossUnion, MetaStepSpec,
                                   PluginUnion, StandardStepSpec, StepUnion, StressSpec, StudentSpec, TeacherSpec,
                                   UnfreezeSpec, _Strict)
from alembert.recipe.task_specs import TaskSpec

TASK_SOURCE = "task"  # the name of the run's own training data among a stage's sources
_MOVED = {"mixup": "mixup is now a plugin: plugins: [{type: mixup, alpha: 1.0}]",
          "consistency": "consistency is now a plugin: plugins: [{type: mixup}, {type: consistency, weight: 0.1}]"}


class StageSpec(_Strict):
    name: str
    losses: list[LossUnion] = Field(min_length=1)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1)  # end the stage after this many optimizer steps (proxy runs)
    lr: float = Field(5e-5, gt=0)
    warmup: float = Field(0.1, ge=0, le=1)  # fraction of the stage's optimizer steps
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    freeze: list[str] = []  # parameter-name substrings to keep frozen, e.g. ["embeddings"]
    unfreeze: UnfreezeSpec | None = None  # gradual unfreezing within the stage
    eval_every: int | None = Field(None, ge=1)  # steps; default: once per epoch when the stage trains the logits
    evaluate: bool | None = None  # default: true when a prediction loss is present
    early_stop: EarlyStopSpec | None = None
    data: str = TASK_SOURCE  # the sources this stage trains on: names joined by '+', e.g. task+movies
    sampler: SamplerUnion = ShuffledSamplerSpec()
    plugins: list[PluginUnion] = []
    step: StepUnion = StandardStepSpec()

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data):
        if isinstance(data, dict):
            for key, message in _MOVED.items():
                if key in data:
                    raise ValueError(f"{key}: {message}")
        return data

    @property
    def sources(self) -> list[str]:
        return [name.strip() for name in self.data.split("+")]

    @property
    def trains_logits(self) -> bool:
        return any(loss.type == "prediction" for loss in self.losses)

    @property
    def pads_to_max_length(self) -> bool:
        """A loss averages over every position, padding included (TinyBERT's convention): the stage's batches are
        then padded to max_length, as TinyBERT's were, and the teacher runs live (its cache holds real tokens)."""
        return any(getattr(loss, "positions", "real") == "all" for loss in self.losses)

    @property
    def uses_labels(self) -> bool:
        return any(loss.type == "prediction" and loss.alpha < 1 for loss in self.losses)

    def plugin_types(self, recipe_plugins=()) -> list[str]:
        return [p.type for p in [*recipe_plugins, *self.plugins]]

    @model_validator(mode="after")
    def _check(self):
        mixing = [p.type for p in self.plugins if p.mixes_inputs]
        if self.uses_labels and mixing:
            raise ValueError(f"a prediction loss with alpha < 1 needs labels, but {mixing[0]} mixes the inputs, which "
                             "then have no single label (use alpha: 1)")
        types = [p.type for p in self.plugins]
        if len(set(types)) < len(types):
            raise ValueError(f"plugins: each plugin at most once (got {', '.join(types)})")
        if isinstance(self.sampler, MixtureSamplerSpec) and self.sampler.ratios is not None:
            unknown = sorted(set(self.sampler.ratios) - set(self.sources))
            if unknown:
                raise ValueError(f"sampler.ratios: {', '.join(unknown)} is not among the stage's data "
                                 f"({', '.join(self.sources)})")
        if isinstance(self.step, MetaStepSpec) and self.grad_accum > 1:
            raise ValueError("step meta takes one optimizer step per batch: set grad_accum: 1")
        return self


class Recipe(_Strict):
    name: str  # outputs go to output_dir/name: a folder name of its own
    # a list: one task per domain, same labels; none: a task-agnostic run (general distillation) on its sources
    task: str | TaskSpec | list[str | TaskSpec] | None = None
    teacher: str | None = None  # None: train the student on labels alone (fine-tuning, the no-teacher baseline)
    teachers: list[TeacherSpec] | None = Field(None, min_length=1)  # several teachers instead of one
    combine: CombineSpec = CombineSpec()  # how several teachers' soft targets combine
    student: StudentSpec
    stages: list[StageSpec] = Field(min_length=1)
    sources: dict[str, SourceUnion] = {}  # more training data, by name, for the stages' `data`
    plugins: list[PluginUnion] = []  # active in every stage (e.g. rl_kd)
    imports: list[str] = []  # modules (names or .py files) that register your own losses, plugins, ...
    data_dir: str | None = None
    output_dir: str = "outputs"
    max_length: int = Field(128, ge=8, le=4096)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    train_limit: int | None = Field(None, ge=1)  # a seeded subset of the train split (per domain for a task list)
    train_fraction: float | None = Field(None, gt=0, le=1)  # or this share of it (of each domain's: few-shot)
    dev_limit: int | None = Field(None, ge=1)
    seed: int = Field(42, ge=0, le=2**32 - 1)
    data_seed: int | None = Field(None, ge=0, le=2**32 - 1)  # seeds the train_limit subset and stress transforms
    stress: StressSpec | None = None
    assistant: AssistantSpec | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    speed: bool = True  # measure latency at batch 1 and 32 for the report
    teacher_cache: bool | CacheSpec = True  # read the teacher's outputs from disk when it sees the same inputs again
    cache_dir: str | None = None  # default: $ALEMBERT_CACHE/teacher, else ~/.cache/alembert/teacher
    group_by_length: bool = True  # batch examples of similar length together: less padding
    compile: bool = False  # torch.compile the student
    attention: Literal["sdpa", "eager"] = "sdpa"  # the attention kernel; losses rebuild the maps they need
    checkpoint_every: int = Field(500, ge=0)  # optimizer steps between checkpoints (0: only at each stage's end)
    checkpoint_keep: int = Field(2, ge=1)  # the newest checkpoints kept; older ones are deleted
    trust_remote_code: bool = False  # let teacher and student checkpoints run their own Python code (auto_map)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        """`.`, `..` or '' would name the output folder itself (and --overwrite would clear every other run there)."""
        if not name.strip() or name.startswith(".") or any(c in name for c in "/\\") or not name.isprintable():
            raise ValueError("expected a folder name of its own (not empty, not starting with '.', no '/' or '\\')")
        return name

    @property
    def teacher_list(self) -> list[TeacherSpec]:
        """Every teacher, named: `teachers`, or the one `teacher` (K = 1), or none."""
        if self.teacher is not None:
            return [TeacherSpec(path=self.teacher, name="teacher")]
        return [t if t.name else t.model_copy(update={"name": f"t{k}"}) for k, t in enumerate(self.teachers or [])]

    @property
    def agnostic(self) -> bool:
        """A task-agnostic run: no task, trained on its sources alone (general distillation)."""
        return self.task is None

    @property
    def task_spec(self):
        """The task as get_task takes it: a name, a mapping of files, or a list of them (one per domain)."""
        def plain(task):
            return task.model_dump() if isinstance(task, BaseModel) else task
        return [plain(t) for t in self.task] if isinstance(self.task, list) else plain(self.task)

    @property
    def cache(self) -> CacheSpec:
        return self.teacher_cache if isinstance(self.teacher_cache, CacheSpec) else CacheSpec(
            enabled=self.teacher_cache)

    def stage_plugins(self, stage: StageSpec) -> list:
        """The plugins active in `stage`: the recipe's, then the stage's own."""
        return [*self.plugins, *stage.plugins]

    @model_validator(mode="after")
    def _check(self):
        if self.teacher is not None and self.teachers is not None:
            raise ValueError("teachers: set either teacher (one) or teachers (a list), not both")
        if self.train_limit is not None and self.train_fraction is not None:
            raise ValueError("train_fraction: set either train_limit (a count) or train_fraction (a share), not both")
        names = [t.name for t in self.teacher_list]
        if len(set(names)) < len(names):
            raise ValueError(f"teachers: names must be unique (got {', '.join(names)})")
        if TASK_SOURCE in self.sources:
            raise ValueError(f"sources: '{TASK_SOURCE}' names the run's own training data; choose another name")
        for i, stage in enumerate(self.stages):
            self._check_stage(i, stage)
            if self.task is None:
                _check_agnostic_stage(i, stage)
        if self.task is None:
            labelled = [name for name, spec in self.sources.items() if getattr(spec, "labels", False)]
            if labelled:
                raise ValueError(f"sources.{labelled[0]}: labels: true needs the run's task; a run without a task "
                                 "is task-agnostic (set labels: false, or set task)")
            if self.stress is not None:
                raise ValueError("stress: changes a task's labels, and this run has no task (set task)")
        if self.cache.cls_only:
            full = [f"stages.{i}.losses.{j} ({loss.type})" for i, stage in enumerate(self.stages)
                    for j, loss in enumerate(stage.losses) if loss.type == "hidden_mse" and not loss.cls_only]
            if full:
                raise ValueError(f"teacher_cache.cls_only: keeps hidden states at [CLS] only, but {full[0]} compares "
                                 "every token (set its cls_only: true, or the cache's cls_only: false)")
        if self.assistant is not None and len(self.teacher_list) != 1:
            raise ValueError("assistant: a teacher assistant needs exactly one teacher")
        if self.student.init == "extract" and not self.teacher_list and not self.student.source:
            raise ValueError("student: extracting layers needs a teacher or student.source")
        return self

    def _check_stage(self, i: int, stage: StageSpec) -> None:
        needs_teacher = [loss.type for loss in stage.losses if loss.type != "prediction" or loss.alpha > 0]
        if needs_teacher and not self.teacher_list:
            raise ValueError(f"stages.{i}: losses {', '.join(needs_teacher)} need a teacher (set teacher, or use a "
                             "prediction loss with alpha: 0)")
        plugins = self.stage_plugins(stage)
        types = [p.type for p in plugins]
        for plugin in plugins:
            missing = [r for r in plugin.requires if r not in types]
            if missing:
                raise ValueError(f"stages.{i}.plugins: {plugin.type} needs the {', '.join(missing)} plugin too")
        several = len(self.teacher_list) > 1
        single = [p.type for p in plugins if p.single_teacher]
        if several and (single or any(loss.type != "prediction" for loss in stage.losses)):
            raise ValueError(f"stages.{i}: with several teachers only prediction losses are supported "
                             f"(intermediate-layer losses{' and ' + ', '.join(single) if single else ''} need one "
                             "teacher)")
        unknown = [name for name in stage.sources if name != TASK_SOURCE and name not in self.sources]
        if unknown:
            known = ", ".join([TASK_SOURCE, *self.sources])
            raise ValueError(f"stages.{i}.data: no source named '{unknown[0]}' (known: {known}; add it under "
                             "sources)")
        labelled = [name for name in stage.sources if name == TASK_SOURCE or getattr(self.sources[name], "labels",
                                                                                      False)]
        if stage.uses_labels and not labelled:
            raise ValueError(f"stages.{i}: a prediction loss with alpha < 1 needs labels, but {stage.data} is "
                             "unlabeled (use alpha: 1, or add task to the stage's data)")
        mixing = any(p.mixes_inputs for p in plugins)
        reading = [p.type for p in plugins if p.gold_labels]
        rule_needs_labels = self.combine.rule == "confidence" or reading
        if rule_needs_labels and (stage.sources != [TASK_SOURCE] or mixing) \
                and any(loss.type == "prediction" and loss.alpha > 0 for loss in stage.losses):
            rule = reading[0] if reading else f"combine rule '{self.combine.rule}'"
            raise ValueError(f"stages.{i}: {rule} weighs teachers by the gold labels, which other data and mixed "
                             "inputs lack (use data: task, no mixup)")


def _check_agnostic_stage(i: int, stage: StageSpec) -> None:
    """What a run without a task cannot do: read its own training data, labels, a head or a dev set."""
    if TASK_SOURCE in stage.sources:
        raise ValueError(f"stages.{i}.data: a run without a task trains on its sources only (expected e.g. data: "
                         "corpus, with corpus a text source under sources; or set task)")
    head = [loss.type for loss in stage.losses if loss.type == "prediction"]
    if head:
        raise ValueError(f"stages.{i}.losses: prediction compares the models' task heads, and a run without a task "
                         "has none (use hidden_mse, attention or relation losses; or set task)")
    if stage.evaluate or stage.early_stop is not None:
        key = "evaluate" if stage.evaluate else "early_stop"
        raise ValueError(f"stages.{i}.{key}: a run without a task has no dev set to evaluate on (remove it, or set "
                         "task)")
