"""The recipe's parts as typed, validated data: student, losses, plugins, data sources, samplers, step strategies.

Losses, plugins, sources, samplers and step strategies are unions discriminated by `type`. The built-in members
are listed here, so their errors name every key's path; a `type` a user's module registered (registry.py) is
validated by the options class it registered, its errors reported in one line under the entry's path.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      field_validator, model_validator)

from alembert.errors import AlembertError

REGISTERED = "registered"  # the union tag of entries a user's module registered
MAP_KINDS = Literal["uniform", "last", "skip", "top", "top_aligned", "explicit"]
# an explicit map: one teacher index per student index, or [student, teacher] pairs (some layers unpaired)
EXPLICIT = list[int] | list[tuple[int, int]] | None


class _Strict(BaseModel):
    # numbers are finite everywhere: inf and nan are refused where any number is read
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _load_builtins() -> None:
    """The engine registers the built-in entries of every registry; imported when a registry is first consulted."""
    import alembert.builtins  # noqa: F401


def _tags(members: list[type[BaseModel]]) -> dict[str, type[BaseModel]]:
    return {get_args(m.model_fields["type"].annotation)[0]: m for m in members}


def registered_union(builtins: list[type[BaseModel]], registry_name: str, options_of):
    """A union over `builtins` (by their `type` literal) and whatever the registry `registry_name` holds besides,
    validated by `options_of(entry)`, a pydantic class."""
    tags = _tags(builtins)

    def tag_of(value):
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if kind is None:
            return None
        return kind if kind in tags else REGISTERED

    def validate(value):
        if isinstance(value, BaseModel):
            return value
        _load_builtins()
        from alembert import registry

        try:
            options = options_of(getattr(registry, registry_name).get(str(value["type"])))
            return options.model_validate(value)
        except AlembertError as err:
            raise ValueError(str(err)) from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None

    members = [Annotated[m, Tag(t)] for t, m in tags.items()]
    members.append(Annotated[Any, AfterValidator(validate), Tag(REGISTERED)])
    return Annotated[Union[tuple(members)], Discriminator(tag_of)]


# ---- the student --------------------------------------------------------------------------------------------


class StudentSpec(_Strict):
    """How the student is built (`init`, a key of the initialiser registry): 'extract' copies teacher layers (and,
    with hidden/heads/ffn smaller than the teacher's, a slice of its width: ETD); 'spec' is a random model of the
    teacher's architecture at a size; 'checkpoint' any HF checkpoint."""

    init: str = "extract"
    layers: int | None = Field(None, ge=1)
    hidden: int | None = Field(None, ge=1)
    heads: int | None = Field(None, ge=1)
    ffn: int | None = Field(None, ge=1)
    extract: Literal["uniform", "first", "explicit"] = "uniform"
    select: Literal["random", "importance"] = "importance"  # which heads, neurons and dimensions ETD keeps
    importance_examples: int = Field(256, ge=1)  # training examples ETD-Impt scores the teacher on
    layer_ids: list[int] | None = None
    source: str | None = None  # extract from this model instead of the teacher; the checkpoint for 'checkpoint'
    options: dict[str, Any] = {}  # for an initialiser a user's module registered

    @model_validator(mode="after")
    def _check(self):
        if self.init == "checkpoint" and not self.source:
            raise ValueError("init 'checkpoint' needs student.source (a checkpoint directory or hub id)")
        if self.init == "spec" and not self.layers:
            raise ValueError("init 'spec' needs student.layers")
        if self.init == "extract" and self.extract != "explicit" and not self.layers:
            raise ValueError(f"extract '{self.extract}' needs student.layers")
        if self.init not in ("extract", "spec", "checkpoint"):
            _load_builtins()
            from alembert.registry import INITIALISERS

            try:
                INITIALISERS.get(self.init, "init")
            except AlembertError as err:
                raise ValueError(str(err)) from None
        return self


# ---- losses ---------------------------------------------------------------------------------------------------


class LossSpec(_Strict):
    """What every loss term has: its type and its weight in the stage's sum."""

    type: str
    weight: float = Field(1.0, ge=0)


class PredictionLossSpec(LossSpec):
    """(1 - alpha) * hard-label loss + alpha * distillation loss on the logits."""

    type: Literal["prediction"]
    alpha: float = Field(1.0, ge=0, le=1)
    temperature: float = Field(1.0, gt=0)
    kd: Literal["kl", "soft_ce", "mse"] = "kl"
    tau_squared: bool = True


# positions: which token positions a token loss averages over. real: the real tokens only, so padding (which
# batching changes) never enters a loss; all: TinyBERT's convention, every position of batches padded to max_length.
POSITIONS = Literal["real", "all"]


class HiddenLossSpec(LossSpec):
    type: Literal["hidden_mse"]
    map: MAP_KINDS = "uniform"
    layers: EXPLICIT = None  # teacher hidden indices for 'explicit', one per student index 0..M (or pairs)
    embeddings: bool = True  # include the embedding output (index 0 <-> 0) where the map allows it
    cls_only: bool = False  # compare the [CLS] position only (XtremeDistil's representation loss)
    positions: POSITIONS = "real"


class AttentionLossSpec(LossSpec):
    """attention_mse: TinyBERT's MSE on pre-softmax scores; attention_kl: KL between attention distributions;
    attention_prob_mse: MSE between attention distributions (XtremeDistil).

    heads: compare Q K^T / sqrt(d) after re-splitting both models' Q and K into this many heads (MiniLMv2's
    re-splitting applied to the scores), so student and teacher head counts may differ; null compares each
    model's own attention heads, which must then be as many."""

    type: Literal["attention_mse", "attention_kl", "attention_prob_mse"]
    map: MAP_KINDS = "uniform"
    layers: EXPLICIT = None  # teacher layers (1-based) for 'explicit', one per student layer (or pairs)
    heads: int | None = Field(None, ge=1)
    positions: POSITIONS = "real"


class PKDLossSpec(LossSpec):
    """PKD's patient loss: MSE between L2-normalised [CLS] vectors of mapped layers (skip: PKD-Skip, top: PKD-Last)."""

    type: Literal["pkd"]
    map: MAP_KINDS = "skip"
    layers: EXPLICIT = None


class RelationLossSpec(LossSpec):
    """Self-relation KL, softmax(X X^T / sqrt(d)) for X in Q, K, V (MiniLM's value relation is relations: [vv]).

    heads: relation heads both models' projections are re-split into (MiniLMv2), so their own head counts may
    differ; null uses each model's own heads. masked: false lets padding take part, as CR-ILD's released script.
    """

    type: Literal["relation"]
    map: MAP_KINDS = "last"
    layers: EXPLICIT = None
    relations: list[Literal["qq", "kk", "vv"]] = Field(["qq", "kk", "vv"], min_length=1)
    heads: int | None = Field(None, ge=1)
    masked: bool = True


BUILTIN_LOSSES = [PredictionLossSpec, HiddenLossSpec, AttentionLossSpec, PKDLossSpec, RelationLossSpec]
LossUnion = registered_union(BUILTIN_LOSSES, "LOSSES", lambda entry: entry.spec)


# ---- plugins --------------------------------------------------------------------------------------------------


class PluginOptions(_Strict):
    """A plugin's options in a recipe: `type` (its registry key) and the options its class declares.

    Class attributes the recipe checks: `mixes_inputs` (its batches have no single label per example, and the
    teacher must run live), `single_teacher` (it needs one teacher), `requires` (plugins that must be active too),
    `gold_labels` (it reads every example's label), `single_process` (it learns in one process: refused under
    `accelerate launch`).
    """

    type: str
    mixes_inputs: ClassVar[bool] = False
    single_teacher: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    gold_labels: ClassVar[bool] = False
    single_process: ClassVar[bool] = False


class MixUpOptions(PluginOptions):
    """MixUp at the embedding output (CR-ILD): lambda ~ Beta(alpha, alpha), kept >= 0.5; the partner is the
    reversed batch; teacher and student mix with the same lambda through their own embedding layers."""

    type: Literal["mixup"]
    alpha: float = Field(1.0, gt=0)
    mixes_inputs: ClassVar[bool] = True
    single_teacher: ClassVar[bool] = True


class ConsistencyOptions(PluginOptions):
    """Consistency of the student's representations between a mixed input and its clean sources.

    weight is ramped linearly over the stage's epochs (0 in the first) when ramp is on. What it acts on: `on`
    [attention, hidden]: the student's last-layer attention distributions (KL) and hidden states (MSE), whatever the
    stage distils, where CR-ILD puts it (its code's use_ic_att / use_ic_rep); unset: each layer term the stage
    distils, with that term's own loss. released_script: true (with `on` unset) applies it only to attention_kl and
    hidden_mse terms, as CR-ILD's released code does, where it is inert for the Q/K/V relations that its CR-ILD
    command distils."""

    type: Literal["consistency"]
    weight: float = Field(0.1, ge=0)
    ramp: bool = True
    on: list[Literal["attention", "hidden"]] | None = Field(None, min_length=1)
    released_script: bool = False
    requires: ClassVar[tuple[str, ...]] = ("mixup",)

    @model_validator(mode="after")
    def _one_choice(self):
        if self.on is not None and self.released_script:
            raise ValueError("set on (the representations it acts on) or released_script (the released code's "
                             "choice among the distilled terms), not both")
        return self


class RLKDOptions(PluginOptions):
    """RL-KD's teacher selector (Yuan et al., AAAI 2021; the parts the paper leaves open are ours, see
    docs/RLKD.md): per (example, teacher), a logistic policy reads the state (the example's embedding from a frozen
    encoder, the teacher's probabilities, its loss on the gold label) and selects the teacher or not; REINFORCE with
    a baseline, on per-example rewards, trains it with its own optimizer."""

    type: Literal["rl_kd"]
    action: Literal["bernoulli", "soft"] = "bernoulli"  # select teachers, or weight them by a sampled sigmoid
    reward: Literal["student_loss", "distill_loss", "dev_metric"] = "student_loss"
    state: list[Literal["embedding", "probs", "gold_loss", "divergence"]] = Field(
        ["embedding", "probs", "gold_loss"], min_length=1)
    encoder: str | None = None  # the embedding's frozen encoder: a checkpoint; default the student before training
    policy: Literal["per_teacher", "shared"] = "per_teacher"  # shared: one weight vector, a bias per teacher
    hidden: int = Field(0, ge=0)  # 0: a logistic policy, as the paper; else one hidden tanh layer
    lr: float = Field(1e-2, gt=0)
    baseline: Literal["batch", "ema"] = "batch"  # batch: the other examples' mean reward; ema: a moving average
    baseline_momentum: float = Field(0.9, ge=0, lt=1)
    noise: float = Field(1.0, gt=0)  # 'soft': the spread of the sampled logit
    warmup: float = Field(0.0, ge=0)  # epochs at the start of each stage trained with equal weights, policy idle
    episode: int | None = Field(None, ge=1)  # student steps per policy update; default 1, or 20 for dev_metric
    dev_limit: int | None = Field(None, ge=1)  # dev examples scored for the 'dev_metric' reward (default: all)
    gold_labels: ClassVar[bool] = True  # its state and rewards read the gold label
    single_process: ClassVar[bool] = True  # its policy learns in one process


BUILTIN_PLUGINS = [MixUpOptions, ConsistencyOptions, RLKDOptions]
PluginUnion = registered_union(BUILTIN_PLUGINS, "PLUGINS", lambda entry: entry.Options)


# ---- step strategies, unfreezing, early stopping --------------------------------------------------------------


class StepSpec(_Strict):
    type: str


class StandardStepSpec(StepSpec):
    """One optimizer step on the batch's loss (with gradient accumulation)."""

    type: Literal["standard"] = "standard"


class MetaStepSpec(StepSpec):
    """First-order meta-learning (FOMAML): a plain SGD step of `inner_lr` on a support part of the batch (each
    domain's first `support` share), then the loss on the rest (the query) at the adapted weights, whose gradient
    the optimizer applies to the weights before adaptation."""

    type: Literal["meta"]
    inner_lr: float = Field(1e-3, gt=0)
    inner_steps: int = Field(1, ge=1)
    support: float = Field(0.5, gt=0, lt=1)
    # How the parameters that are not the student's (a plugin's, e.g. HRKD's domain graph) learn: `first_order`
    # from the query loss as it stands; `lookahead` also through the inner step (the query loss at the adapted
    # weights as a function of what weighed the support loss), by DARTS's finite-difference approximation.
    outer: Literal["first_order", "lookahead"] = "first_order"
    # What the student's own update is: `query`, the query loss's gradient at the adapted weights (FOMAML); or
    # `batch`, the whole batch's loss at the weights before adaptation (a standard step, the outer part training
    # only the plugin's parameters).
    student: Literal["query", "batch"] = "query"
    lookahead_radius: float = Field(0.01, gt=0)  # DARTS's epsilon * |query gradient|

    @model_validator(mode="after")
    def _one_inner_step(self):
        if self.outer == "lookahead" and self.inner_steps != 1:
            raise ValueError("outer lookahead differentiates through one inner step: set inner_steps: 1")
        return self


BUILTIN_STEPS = [StandardStepSpec, MetaStepSpec]
StepUnion = registered_union(BUILTIN_STEPS, "STEPS", lambda entry: entry.Options)


class UnfreezeSpec(_Strict):
    """Gradual unfreezing inside a stage: at first only the first group trains, then one more group every
    `every` optimizer steps (or `every_epochs`). top_down: the head, then each layer from the top, then the
    embeddings; or a list of groups of parameter-name substrings. Parameters in no group train throughout."""

    groups: Literal["top_down"] | list[list[str]] = "top_down"
    every: int | None = Field(None, ge=1)
    every_epochs: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.every is None) == (self.every_epochs is None):
            raise ValueError("set every (steps) or every_epochs, one of them")
        return self


class EarlyStopSpec(_Strict):
    """Stop the stage when the selection metric has not improved by `min_delta` in `patience` evaluations."""

    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0)


# ---- the stage ------------------------------------------------------------------------------------------------


class StressSpec(_Strict):
    """Seeded stress transforms of the training set, applied in this order: imbalance, downsample, flip_labels."""

    imbalance: float | None = Field(None, ge=1)  # largest / smallest class count (long-tailed across classes)
    downsample: int | None = Field(None, ge=1)  # keep this many examples
    flip_labels: float | None = Field(None, ge=0, le=1)  # fraction of examples given a wrong label


class AssistantSpec(_Strict):
    """MiniLM's teacher assistant: first distil the teacher into a model of the teacher's depth and the student's
    width with the recipe's stages, then distil that assistant into the student with the same stages. init
    'extract': from the teacher's layers, narrowed by Extract-Then-Distill (student.select picks what is kept);
    'spec': random weights."""

    init: Literal["extract", "spec"] = "extract"
    layers: int | None = Field(None, ge=1)  # default: the teacher's depth
    hidden: int | None = Field(None, ge=1)  # default: the student's width
    heads: int | None = Field(None, ge=1)  # default: the student's heads
    ffn: int | None = Field(None, ge=1)


class TeacherSpec(_Strict):
    """One of several teachers; each reads the raw text through its own tokenizer."""

    path: str  # a fine-tuned checkpoint directory or hub id
    name: str | None = None  # how logs and the report call it; default t0, t1, ...
    weight: float = Field(1.0, gt=0)  # its share under combine rule 'fixed' (normalised over the teachers)


class CombineSpec(_Strict):
    """How the teachers' soft targets combine per example: each example's distillation loss is the weighted sum of
    its losses against each teacher. rule (a key of the combination registry): mean: 1/K; fixed: the teachers'
    `weight`s; confidence: softmax over teachers of -(their loss on the gold label) / temperature. A plugin's
    teacher weights (RL-KD) multiply these, each example's then normalised to sum to 1."""

    rule: str = "mean"
    temperature: float = Field(1.0, gt=0)  # 'confidence'

    @field_validator("rule")
    @classmethod
    def _known(cls, rule: str) -> str:
        if rule == "rl":
            raise ValueError("rule 'rl' is now the rl_kd plugin: set plugins: [{type: rl_kd, ...}] at the top level")
        _load_builtins()
        from alembert.registry import COMBINATIONS

        try:
            COMBINATIONS.get(rule)
        except AlembertError as err:
            raise ValueError(str(err)) from None
        return rule


class CacheSpec(_Strict):
    """The teacher-output cache. store: 'needed' keeps the layers the stages ask for; 'all' keeps every layer of
    each kind they use, so runs that differ only in their layer map share one cache. cls_only: hidden states at
    the [CLS] position only (for [CLS] losses over a large corpus)."""

    enabled: bool = True
    store: Literal["needed", "all"] = "needed"
    cls_only: bool = False
