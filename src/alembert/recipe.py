"""The recipe: one YAML file is one run. Validated in full, with typed fields, before any work starts."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alembert.errors import AlembertError, printable, short_repr
from alembert.yaml_file import read_yaml_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StudentSpec(_Strict):
    """init 'extract': copy teacher layers; 'spec': random init at a size; 'checkpoint': any HF checkpoint."""

    init: Literal["extract", "spec", "checkpoint"] = "extract"
    layers: int | None = Field(None, ge=1)
    hidden: int | None = Field(None, ge=1)
    heads: int | None = Field(None, ge=1)
    ffn: int | None = Field(None, ge=1)
    extract: Literal["uniform", "first", "explicit"] = "uniform"
    layer_ids: list[int] | None = None
    source: str | None = None  # extract from this model instead of the teacher; the checkpoint for 'checkpoint'

    @model_validator(mode="after")
    def _check(self):
        if self.init == "checkpoint" and not self.source:
            raise ValueError("init 'checkpoint' needs student.source (a checkpoint directory or hub id)")
        if self.init == "spec" and not self.layers:
            raise ValueError("init 'spec' needs student.layers")
        if self.init == "extract" and self.extract != "explicit" and not self.layers:
            raise ValueError(f"extract '{self.extract}' needs student.layers")
        return self


class PredictionLossSpec(_Strict):
    """(1 - alpha) * hard-label loss + alpha * distillation loss on the logits."""

    type: Literal["prediction"]
    weight: float = Field(1.0, ge=0)
    alpha: float = Field(1.0, ge=0, le=1)
    temperature: float = Field(1.0, gt=0)
    kd: Literal["kl", "soft_ce", "mse"] = "kl"
    tau_squared: bool = True


class HiddenLossSpec(_Strict):
    type: Literal["hidden_mse"]
    weight: float = Field(1.0, ge=0)
    map: Literal["uniform", "last", "skip", "top", "explicit"] = "uniform"
    layers: list[int] | None = None  # teacher hidden indices for 'explicit', one per student index 0..M
    embeddings: bool = True  # include the embedding output (index 0 <-> 0) where the map allows it


class AttentionLossSpec(_Strict):
    """attention_mse: TinyBERT's MSE on pre-softmax scores; attention_kl: KL between attention distributions."""

    type: Literal["attention_mse", "attention_kl"]
    weight: float = Field(1.0, ge=0)
    map: Literal["uniform", "last", "skip", "top", "explicit"] = "uniform"
    layers: list[int] | None = None  # teacher layers (1-based) for 'explicit', one per student layer


class PKDLossSpec(_Strict):
    """PKD's patient loss: MSE between L2-normalised [CLS] vectors of mapped layers (skip: PKD-Skip, top: PKD-Last)."""

    type: Literal["pkd"]
    weight: float = Field(1.0, ge=0)
    map: Literal["uniform", "last", "skip", "top", "explicit"] = "skip"
    layers: list[int] | None = None


class RelationLossSpec(_Strict):
    """Self-relation KL, softmax(X X^T / sqrt(d)) for X in Q, K, V (MiniLM's value relation is relations: [vv]).

    heads: relation heads both models' projections are re-split into (MiniLMv2), so their own head counts may
    differ; null uses each model's own heads. masked: false lets padding take part, as CR-ILD's released script.
    """

    type: Literal["relation"]
    weight: float = Field(1.0, ge=0)
    map: Literal["uniform", "last", "skip", "top", "explicit"] = "last"
    layers: list[int] | None = None
    relations: list[Literal["qq", "kk", "vv"]] = Field(["qq", "kk", "vv"], min_length=1)
    heads: int | None = Field(None, ge=1)
    masked: bool = True


LossSpec = Annotated[Union[PredictionLossSpec, HiddenLossSpec, AttentionLossSpec, PKDLossSpec, RelationLossSpec],
                     Field(discriminator="type")]


class MixUpSpec(_Strict):
    """MixUp at the embedding output (CR-ILD): lambda ~ Beta(alpha, alpha), kept >= 0.5; the partner is the
    reversed batch; teacher and student mix with the same lambda through their own embedding layers."""

    alpha: float = Field(1.0, gt=0)


class ConsistencySpec(_Strict):
    """Consistency of the student's distilled representations between a mixed input and its clean sources.

    weight is ramped linearly over the stage's epochs (0 in the first) when ramp is on. released_script: true
    applies it only to attention_kl and hidden_mse terms, as CR-ILD's released code does, where it is inert
    for the Q/K/V relations that its CR-ILD command distils."""

    weight: float = Field(0.1, ge=0)
    ramp: bool = True
    released_script: bool = False


class StageSpec(_Strict):
    name: str
    losses: list[LossSpec] = Field(min_length=1)
    epochs: float = Field(3.0, gt=0)
    lr: float = Field(5e-5, gt=0)
    warmup: float = Field(0.1, ge=0, le=1)  # fraction of the stage's optimizer steps
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    freeze: list[str] = []  # parameter-name substrings to keep frozen, e.g. ["embeddings"]
    eval_every: int | None = Field(None, ge=1)  # steps; default: once per epoch when the stage trains the logits
    evaluate: bool | None = None  # default: true when a prediction loss is present
    data: Literal["task", "task+supplementary", "supplementary"] = "task"  # the examples this stage trains on
    mixup: MixUpSpec | None = None
    consistency: ConsistencySpec | None = None  # needs mixup

    @property
    def trains_logits(self) -> bool:
        return any(loss.type == "prediction" for loss in self.losses)

    @property
    def uses_labels(self) -> bool:
        return any(loss.type == "prediction" and loss.alpha < 1 for loss in self.losses)

    @model_validator(mode="after")
    def _check(self):
        if self.consistency is not None and self.mixup is None:
            raise ValueError("consistency compares mixed and clean inputs: it needs mixup")
        if self.uses_labels and (self.mixup is not None or self.data != "task"):
            why = "mixed inputs have no single label" if self.mixup is not None else "supplementary text is unlabeled"
            raise ValueError(f"a prediction loss with alpha < 1 needs labels, but {why} (use alpha: 1)")
        return self


class StressSpec(_Strict):
    """Seeded stress transforms of the training set, applied in this order: imbalance, downsample, flip_labels."""

    imbalance: float | None = Field(None, ge=1)  # largest / smallest class count (long-tailed across classes)
    downsample: int | None = Field(None, ge=1)  # keep this many examples
    flip_labels: float | None = Field(None, ge=0, le=1)  # fraction of examples given a wrong label


class SupplementarySpec(_Strict):
    """Unlabeled text for stages with data 'task+supplementary' or 'supplementary' (CR-ILD's ILD on other data)."""

    source: str  # a task name (its train texts) or a text file: .txt, or .tsv/.csv with a text/sentence column
    limit: int | None = Field(None, ge=1)  # a seeded sample of this many texts


class AssistantSpec(_Strict):
    """MiniLM's teacher assistant: first distil the teacher into a model of the teacher's depth and the student's
    width with the recipe's stages, then distil that assistant into the student with the same stages."""

    layers: int | None = Field(None, ge=1)  # default: the teacher's depth
    hidden: int | None = Field(None, ge=1)  # default: the student's width
    heads: int | None = Field(None, ge=1)  # default: the student's heads
    ffn: int | None = Field(None, ge=1)


class TeacherSpec(_Strict):
    """One of several teachers; each reads the raw text through its own tokenizer."""

    path: str  # a fine-tuned checkpoint directory or hub id
    name: str | None = None  # how logs and the report call it; default t0, t1, ...
    weight: float = Field(1.0, gt=0)  # its share under combine rule 'fixed' (normalised over the teachers)


class SelectorSpec(_Strict):
    """RL-KD's teacher selector (our reconstruction of Yuan et al., AAAI 2021): a policy scores each
    (example, teacher) pair from its state and picks the teachers the example is distilled from; REINFORCE with a
    moving-average baseline; the student and the policy take turns."""

    action: Literal["bernoulli", "soft"] = "bernoulli"  # select teachers, or weight them by a sampled sigmoid
    reward: Literal["student_loss", "distill_loss", "dev_metric"] = "student_loss"
    state: list[Literal["embedding", "probs", "gold_loss", "divergence"]] = Field(
        ["embedding", "probs", "gold_loss", "divergence"], min_length=1)
    hidden: int = Field(0, ge=0)  # 0: a logistic policy, as the paper; else one hidden tanh layer
    lr: float = Field(1e-3, gt=0)
    baseline_momentum: float = Field(0.9, ge=0, lt=1)
    noise: float = Field(1.0, gt=0)  # 'soft': the spread of the sampled logit
    warmup: float = Field(0.5, ge=0)  # epochs of each stage trained with equal weights before the policy acts
    episode: int | None = Field(None, ge=1)  # student steps per policy update; default 1, or 20 for dev_metric
    dev_limit: int | None = Field(None, ge=1)  # dev examples scored for the 'dev_metric' reward (default: all)


class CombineSpec(_Strict):
    """How the teachers' soft targets combine per example: each example's distillation loss is the weighted sum of
    its losses against each teacher. mean: 1/K; fixed: the teachers' `weight`s; confidence: softmax over teachers
    of -(their loss on the gold label) / temperature; rl: the selector's per-example choice."""

    rule: Literal["mean", "fixed", "confidence", "rl"] = "mean"
    temperature: float = Field(1.0, gt=0)  # 'confidence'
    selector: SelectorSpec = SelectorSpec()  # 'rl'


class GenericTaskSpec(_Strict):
    name: str = "custom"
    format: Literal["csv", "tsv", "jsonl"] | None = None  # None: from the train file's extension
    train: str
    dev: str
    test: str | None = None
    text_columns: list[str] = Field(min_length=1, max_length=2)
    label_column: str = "label"
    labels: list[str] | None = None
    regression: bool = False
    metrics: list[str] | None = None


class Recipe(_Strict):
    name: str
    task: str | GenericTaskSpec
    teacher: str | None = None  # None: train the student on labels alone (fine-tuning, the no-teacher baseline)
    teachers: list[TeacherSpec] | None = Field(None, min_length=1)  # several teachers instead of one
    combine: CombineSpec = CombineSpec()  # how several teachers' soft targets combine
    student: StudentSpec
    stages: list[StageSpec] = Field(min_length=1)
    data_dir: str | None = None
    output_dir: str = "outputs"
    max_length: int = Field(128, ge=8, le=4096)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    train_limit: int | None = Field(None, ge=1)  # a seeded subset of the train split
    dev_limit: int | None = Field(None, ge=1)
    seed: int = 42
    data_seed: int | None = None  # seeds the train_limit subset and stress transforms; default: seed
    stress: StressSpec | None = None
    supplementary: SupplementarySpec | None = None
    assistant: AssistantSpec | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    speed: bool = True  # measure latency at batch 1 and 32 for the report
    teacher_cache: bool = True  # read the teacher's outputs from disk when it would see the same inputs again
    cache_dir: str | None = None  # default: $ALEMBERT_CACHE/teacher, else ~/.cache/alembert/teacher
    group_by_length: bool = True  # batch examples of similar length together: less padding
    compile: bool = False  # torch.compile the student
    attention: Literal["sdpa", "eager"] = "sdpa"  # the attention kernel; losses rebuild the maps they need either way
    checkpoint_every: int = Field(500, ge=0)  # optimizer steps between checkpoints (0: only at each stage's end)
    checkpoint_keep: int = Field(2, ge=1)  # the newest checkpoints kept; older ones are deleted
    trust_remote_code: bool = False  # let teacher and student checkpoints run their own Python code (auto_map)

    @property
    def teacher_list(self) -> list[TeacherSpec]:
        """Every teacher, named: `teachers`, or the one `teacher` (K = 1), or none."""
        if self.teacher is not None:
            return [TeacherSpec(path=self.teacher, name="teacher")]
        return [t if t.name else t.model_copy(update={"name": f"t{k}"}) for k, t in enumerate(self.teachers or [])]

    @model_validator(mode="after")
    def _check(self):
        if self.teacher is not None and self.teachers is not None:
            raise ValueError("teachers: set either teacher (one) or teachers (a list), not both")
        names = [t.name for t in self.teacher_list]
        if len(set(names)) < len(names):
            raise ValueError(f"teachers: names must be unique (got {', '.join(names)})")
        for i, stage in enumerate(self.stages):
            needs_teacher = [l.type for l in stage.losses
                             if l.type != "prediction" or (l.alpha > 0)]
            if needs_teacher and not self.teacher_list:
                raise ValueError(f"stages.{i}: losses {', '.join(needs_teacher)} need a teacher (set teacher, "
                                 "or use a prediction loss with alpha: 0)")
            if len(self.teacher_list) > 1 and (stage.mixup is not None or any(l.type != "prediction"
                                                                             for l in stage.losses)):
                raise ValueError(f"stages.{i}: with several teachers only prediction losses are supported "
                                 "(intermediate-layer losses and mixup need one teacher)")
            if self.combine.rule in ("confidence", "rl") and (stage.data != "task" or stage.mixup is not None) \
                    and any(l.type == "prediction" and l.alpha > 0 for l in stage.losses):
                raise ValueError(f"stages.{i}: combine rule '{self.combine.rule}' weighs teachers by the gold labels, "
                                 "which supplementary text and mixed inputs lack (use data: task, no mixup)")
        for i, stage in enumerate(self.stages):
            if stage.data != "task" and self.supplementary is None:
                raise ValueError(f"stages.{i}.data: '{stage.data}' needs a supplementary source (set supplementary)")
        if self.assistant is not None and len(self.teacher_list) != 1:
            raise ValueError("assistant: a teacher assistant needs exactly one teacher")
        if self.student.init == "extract" and not self.teacher_list and not self.student.source:
            raise ValueError("student: extracting layers needs a teacher or student.source")
        return self


def format_validation_error(err: ValidationError, source: str, root: type[BaseModel]) -> str:
    """One line for a schema's validation error: the key's path as the user wrote it, what was wrong, a hint."""
    # the deepest error is the most specific: for `task: {trian: ...}` that is the typo, not "not a string";
    # at one depth an unknown key goes first, since its 'did you mean' also explains a missing one
    first = max(err.errors(), key=lambda e: (len(e["loc"]), e["type"] == "extra_forbidden"))
    parts, annotation = _walk(root, first["loc"])
    path = ".".join(printable(p) for p in parts) or "(top level)"
    if first["type"] == "union_tag_not_found":  # e.g. a loss without its 'type'
        tags = [t for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)
                and "type" in m.model_fields for t in get_args(m.model_fields["type"].annotation)]
        return f"{source}: {path}: missing key 'type' (expected one of: {', '.join(tags)})"
    if first["type"] == "extra_forbidden":
        _, parent = _walk(root, first["loc"][:-1])
        return f"{source}: {path}: unknown key{_suggest(first['loc'][-1], parent)}"
    if first["type"] == "missing":
        return f"{source}: {path}: required key is missing"
    message = printable(first["msg"].removeprefix("Value error, "))
    got = first.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {short_repr(got)})"
    return f"{source}: {path}: {message}{shown}"


def _members(annotation) -> list:
    """The alternatives of a type: X | Y and Annotated[Union[...], ...] give each member."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


def _walk(annotation, loc) -> tuple[list, Any]:
    """Follow an error location through the schema: the parts a user wrote (pydantic's union-member tags such
    as 'GenericTaskSpec' or 'str' left out) and the type where it ends (None when the schema is left)."""
    parts = []
    for part in loc:
        nxt, is_tag = None, False
        for member in _members(annotation) if annotation is not None else []:
            if isinstance(member, type) and issubclass(member, BaseModel):
                if part in member.model_fields:
                    nxt = member.model_fields[part].annotation
                    break
                kind = member.model_fields.get("type")
                if kind is not None and part in get_args(kind.annotation):  # a loss type: shown, as users write it
                    nxt = member
                    break
            if get_origin(member) is list and isinstance(part, int):
                nxt = get_args(member)[0]
                break
        else:
            tagged = [m for m in _members(annotation) if getattr(m, "__name__", None) == part] if annotation else []
            if tagged:
                nxt, is_tag = tagged[0], True
        if not is_tag:
            parts.append(part)
        annotation = nxt
    return parts, annotation


def _suggest(key, annotation) -> str:
    """'did you mean' for an unknown key, from the keys the schema allows where it stands."""
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)] \
        if annotation is not None else []
    if len(models) != 1:
        return " (remove it)"
    model = models[0]
    close = difflib.get_close_matches(str(key), list(model.model_fields), n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (expected one of: {', '.join(model.model_fields)})"


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise AlembertError(f"--set {printable(text)}: expected key=value, e.g. stages.0.lr=3e-5")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError):  # ValueError: a date-like value such as 2024-02-30
        value = raw
    return key.strip().split("."), value


def _index(key: str) -> int | None:
    # ASCII digits only: '²'.isdigit() is true, but int('²') fails
    return int(key) if key.isascii() and key.isdigit() else None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        where = f"--set {printable(text)}"
        node = data
        for depth, key in enumerate(keys):
            here = ".".join(keys[: depth + 1])
            if isinstance(node, list):
                index = _index(key)
                if index is None or index >= len(node):
                    indices = f"an index 0..{len(node) - 1}" if node else "nothing: the list is empty"
                    raise AlembertError(f"{where}: {printable(here)} does not exist in the recipe "
                                        f"(expected {indices})")
                if depth == len(keys) - 1:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if depth == len(keys) - 1:
                    node[key] = value
                else:
                    if node.get(key) is None:
                        node[key] = {}
                    node = node[key]
            else:
                parent = ".".join(keys[:depth])
                raise AlembertError(f"{where}: {printable(parent)} holds the value {short_repr(node)}, "
                                    f"not a mapping or list (set {printable(parent)}=VALUE instead)")
    return data


def load_recipe(path: str | os.PathLike, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    data = read_yaml_mapping(path, "recipe", "recipe keys at the top level")
    return recipe_from_dict(apply_overrides(data, list(overrides)), str(path))


def recipe_from_dict(data: dict, source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise AlembertError(format_validation_error(err, source, Recipe)) from err


def without_teacher(recipe: Recipe, name: str) -> Recipe:
    """The no-teacher baseline of a recipe: its last stage alone, on the hard labels, with the same student
    (extracted from the teacher, when the recipe extracts) and the same schedule."""
    data = recipe.model_dump()
    last = dict(data["stages"][-1], losses=[{"type": "prediction", "alpha": 0.0}], data="task", mixup=None,
                consistency=None)
    student = dict(data["student"])
    if student["init"] != "checkpoint" and not student["source"]:
        student["source"] = recipe.teacher_list[0].path if recipe.teacher_list else None
    data.update(name=name, teacher=None, teachers=None, stages=[last], student=student, assistant=None,
                supplementary=None)
    return recipe_from_dict(data, f"{name} (no-teacher baseline)")
