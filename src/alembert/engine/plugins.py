"""The plugin protocol: how a method that is more than a loss joins the one training loop.

A plugin overrides only the hooks it needs. It never sees the trainer, only a Context (the step, the stage, the
models, the named data sources, an evaluation service, a logger). Its own random streams (`self.rng`, a
random.Random, and `self.generator`, a torch.Generator) are seeded per run and kept in checkpoints with
`state_dict()`, so a resumed run continues bit for bit.

Per step, in the loop's order:
  transform_batch   replace or extend the batch (generated examples)
  around_forward    a context manager around the models' forward passes, yielding the batch they read
                    (MixUp mixes embedding outputs with hooks and widens the attention masks)
  example_weights   (B,) per-example loss weights
  teacher_weights   (B, K) per-(example, teacher) weights of the distillation loss
  pair_weights      {term index: (B, P)} per-(example, layer pair) weights of a layer term
  extra_losses      {name: scalar} terms added to the objective (consistency)
  after_step        after the optimizer step (a policy's own update)
Several plugins' weights combine by product; teacher weights also multiply the recipe's combination rule, each
example's then normalised to sum to 1. `parameters()` are trained with the student by the stage's optimizer; a
plugin with an optimizer of its own keeps it (and its state) itself.
"""
from __future__ import annotations

import random
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from alembert.data.batch import Batch
from alembert.engine.state import as_tuple
from alembert.models.features import FeatureRequest, Features
from alembert.recipe.specs import PluginOptions


@dataclass
class Outputs:
    """One forward pass: the batch as drawn, the batch the models read, and their features."""

    batch: Batch
    inputs: Batch
    student: Features
    teachers: list[Features]


@dataclass
class Weights:
    example: torch.Tensor | None = None  # (B,)
    teacher: torch.Tensor | None = None  # (B, K)
    pairs: dict[int, torch.Tensor] = field(default_factory=dict)  # term index -> (B, P)


@dataclass
class Context:
    """What a plugin may read and use. `evaluator.score(model, name)` scores a model on a named evaluation set
    ('dev', or 'dev/<domain>' for a multi-domain task; `evaluator.data(name)` gives its examples); `log(values)`
    logs under the current stage and step; `student_features(batch)` is the student's features (those the stage
    requests) on a batch without gradient or dropout; `shared` passes values between plugins within one step
    (MixUp's lambda for consistency); `live_teachers` are the teachers that run live in this stage."""

    recipe: Any
    task: Any
    student: nn.Module
    teachers: list[nn.Module]
    teacher_names: list[str]
    sources: dict[str, Any]
    evaluator: Any
    log: Callable[[dict], None]
    autocast: Callable
    device: torch.device
    student_features: Callable = None
    live_teachers: list = field(default_factory=list)
    stage: Any = None
    stage_index: int = 0
    objective: Any = None
    step: int = 0  # optimizer steps taken in this stage
    micro: int = 0  # batches seen in this stage
    steps_per_epoch: int = 0  # batches per epoch
    total_steps: int = 0
    shared: dict = field(default_factory=dict)
    # the loss being computed: 'train' (the standard step), or the meta step's 'support' / 'query' part, so a
    # plugin may weigh them apart (HRKD's domain weights weigh the support loss; the query loss judges them)
    phase: str = "train"

    @property
    def epoch(self) -> float:
        return self.micro / max(1, self.steps_per_epoch)

    @torch.no_grad()
    def student_logits(self, batch: Batch) -> torch.Tensor:
        """The student's logits on `batch` in evaluation mode (no dropout), in the stage's precision."""
        from alembert.models.heads import head_logits
        from alembert.models.layout import takes_token_types

        was_training = self.student.training
        self.student.eval()
        inputs = dict(batch.inputs())
        if not takes_token_types(self.student):
            inputs.pop("token_type_ids", None)
        with self.autocast():
            logits = head_logits(self.student(**inputs)).float()
        self.student.train(was_training)
        return logits


class Plugin:
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    # rewrites what the models read, so the teacher must run live; also implied by overriding transform_batch
    changes_inputs: ClassVar[bool] = False

    def __init__(self, options: PluginOptions | None = None, seed: int = 0):
        self.options = options
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def name(self) -> str:
        return getattr(self.options, "type", None) or type(self).__name__

    def student_request(self, ctx: Context) -> FeatureRequest:
        """Student features this plugin reads, beyond those the losses need."""
        return FeatureRequest()

    def setup(self, ctx: Context) -> None:
        """Once per run, before the first stage: build what the plugin owns (parameters, an optimizer)."""

    def parameters(self) -> list[nn.Parameter]:
        return []

    def on_stage_start(self, ctx: Context) -> None:
        pass

    def transform_batch(self, batch: Batch, ctx: Context) -> Batch:
        return batch

    @contextmanager
    def around_forward(self, batch: Batch, ctx: Context):
        yield batch

    def example_weights(self, out: Outputs, ctx: Context) -> torch.Tensor | None:
        return None

    def teacher_weights(self, out: Outputs, ctx: Context) -> torch.Tensor | None:
        return None

    def pair_weights(self, out: Outputs, ctx: Context) -> dict[int, torch.Tensor] | None:
        return None

    def extra_losses(self, out: Outputs, ctx: Context) -> dict[str, torch.Tensor]:
        return {}

    def after_step(self, ctx: Context, parts: dict[str, float]) -> None:
        pass

    def on_evaluate(self, metrics: dict[str, float], ctx: Context) -> None:
        pass

    def report(self) -> dict:
        """Entries this plugin adds to the run's report.json (e.g. RL-KD's teacher selection)."""
        return {}

    def save(self, run_directory) -> None:
        """Write what a user keeps with the student (e.g. a learned policy) into the run's directory."""

    def on_stage_end(self, ctx: Context) -> None:
        pass

    def state_dict(self) -> dict:
        """What this plugin has learned or counted (plain containers of numbers, strings and tensors). Checkpoints
        take it in every stage, also in stages where the plugin is not active (it may not have started yet). A
        resumed run gives it back with `load_state_dict`: a stage's own plugin after its `on_stage_start` in that
        stage; a plugin of the whole run also at a stage's boundary, before the next stage starts."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def changes_inputs(plugin: Plugin) -> bool:
    return plugin.changes_inputs or type(plugin).transform_batch is not Plugin.transform_batch


class PluginSet:
    """The plugins of a run, called in order; their weights combined by product."""

    def __init__(self, plugins: list[Plugin]):
        self.plugins = list(plugins)

    def __iter__(self):
        return iter(self.plugins)

    def active(self, stage_index: int) -> list[Plugin]:
        """The plugins of stage `stage_index`: the recipe's for the whole run, the stage's own, and every plugin
        given in code (`scope` None: every stage)."""
        return [p for p in self.plugins if getattr(p, "scope", None) in (None, stage_index)]


    @contextmanager
    def around_forward(self, plugins: list[Plugin], batch: Batch, ctx: Context):
        with ExitStack() as stack:
            for plugin in plugins:
                batch = stack.enter_context(plugin.around_forward(batch, ctx))
            yield batch

    @staticmethod
    def weights(plugins: list[Plugin], out: Outputs, ctx: Context) -> Weights:
        """The plugins' weights multiplied, on the batch's device wherever each plugin made its own (a plugin's
        state, a selector's policy say, often lives on the CPU while the models train on a GPU)."""
        device = out.batch.labels.device
        combined = Weights()
        for plugin in plugins:
            combined.example = _product(combined.example, plugin.example_weights(out, ctx), device)
            combined.teacher = _product(combined.teacher, plugin.teacher_weights(out, ctx), device)
            for term, w in (plugin.pair_weights(out, ctx) or {}).items():
                combined.pairs[term] = _product(combined.pairs.get(term), w, device)
        return combined

    def state_dict(self) -> list:
        return [[p.name, {"own": p.state_dict(), "rng": p.rng.getstate(), "generator": p.generator.get_state()}]
                for p in self.plugins]

    def load_state_dict(self, saved: list, only: list[Plugin] | None = None) -> None:
        """Each plugin (of `only`, if given) gets the state saved by the plugin of its name, in order among those
        of that name (a plugin present in only one of the two runs, e.g. a test's crash plugin, is skipped)."""
        saved = list(saved)
        for plugin in self.plugins:
            match = next((entry for entry in saved if entry[0] == plugin.name), None)
            if match is None:
                continue
            saved.remove(match)
            if only is not None and plugin not in only:
                continue
            state = match[1]
            plugin.load_state_dict(state["own"])
            plugin.rng.setstate(as_tuple(state["rng"]))
            plugin.generator.set_state(state["generator"])


def _product(a: torch.Tensor | None, b: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    if b is None:
        return a
    b = b.to(device)
    return b if a is None else a * b
