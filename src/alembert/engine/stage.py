"""What one stage trains with: its data loader, which parameters train when (freezing, gradual unfreezing), the
optimizer and its schedule."""
from __future__ import annotations

import math
import re

import torch
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from alembert.data.encoded import StageData
from alembert.data.samplers import make_sampler
from alembert.errors import AlembertError
from alembert.models.layout import find_layout


def stage_loader(stage, index: int, sources: dict, pad_ids: dict, recipe, domains) -> tuple[DataLoader, object]:
    """The stage's batches over its named sources, and the sampler (whose generator orders each epoch)."""
    data = StageData({name: sources[name] for name in stage.sources}, pad_ids,
                     recipe.max_length if stage.pads_to_max_length else None)
    sampler = make_sampler(stage.sampler, data, recipe.batch_size, recipe.seed + index, recipe.group_by_length,
                           domains)
    # the loader draws its per-epoch base seed (for worker processes, unused here) from the sampler's generator,
    # never from the global one that dropout draws from: an epoch is then a function of that generator's state
    return DataLoader(data, batch_sampler=sampler, collate_fn=data.collate, generator=sampler.generator), sampler


def parameter_groups(model, how) -> list[list[str]]:
    """The unfreezing order as groups of parameter names. top_down: the head (everything outside the encoder's
    layers and embeddings), then each layer from the top, then the embeddings; or the recipe's groups of
    name substrings."""
    names = [n for n, _ in model.named_parameters()]
    if how != "top_down":
        return [[n for n in names if any(pattern in n for pattern in group)] for group in how]
    layout = find_layout(model)
    layer_of = re.compile(re.escape(layout.layers_path) + r"\.(\d+)\.")
    layers = [[] for _ in range(layout.num_layers)]
    head, embeddings = [], []
    for name in names:
        match = layer_of.match(name)
        if match:
            layers[int(match.group(1))].append(name)
        elif "embeddings" in name:
            embeddings.append(name)
        else:
            head.append(name)
    return [head, *reversed(layers), embeddings]


class Unfreezing:
    """Gradual unfreezing: group 0 trains from the start, one more group every `every` optimizer steps."""

    def __init__(self, spec, model, steps_per_epoch: int, where: str):
        self.groups = parameter_groups(model, spec.groups)
        empty = [i for i, group in enumerate(self.groups) if not group]
        if spec.groups != "top_down" and empty:
            raise AlembertError(f"{where}.unfreeze.groups.{empty[0]}: matches no parameter of the student")
        self.every = spec.every or max(1, round(spec.every_epochs * steps_per_epoch))
        self.model = model

    def apply(self, step: int, trainable: set[str]) -> None:
        """Set requires_grad for optimizer step `step` (0-based) among the `trainable` parameters."""
        open_groups = 1 + step // self.every
        frozen = {name for group in self.groups[open_groups:] for name in group}
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in trainable and name not in frozen)


class StageTraining:
    """The parameters, optimizer and schedule of one stage. `extra` are trainable modules beside the student
    (the objective's projections, plugins' parameters)."""

    def __init__(self, stage, where: str, student, extra_parameters: list, batches_per_epoch: int):
        self.stage, self.student = stage, student
        self.trainable = {name for name, _ in student.named_parameters()
                          if not any(pattern in name for pattern in stage.freeze)}
        if not self.trainable:
            raise AlembertError(f"{where}.freeze: {stage.freeze} matches every parameter of the student; nothing "
                                "would train (freeze fewer)")
        self.micro_steps = math.ceil(stage.epochs * batches_per_epoch)
        self.total_steps = math.ceil(self.micro_steps / stage.grad_accum)
        if stage.max_steps is not None and stage.max_steps < self.total_steps:
            self.total_steps, self.micro_steps = stage.max_steps, stage.max_steps * stage.grad_accum
        if self.micro_steps < stage.grad_accum:
            raise AlembertError(f"{where}: grad_accum {stage.grad_accum} is more than the stage's {self.micro_steps} "
                                f"batches ({batches_per_epoch} per epoch), so it would take no optimizer step; "
                                "lower grad_accum or batch_size, or train longer")
        self.unfreezing = Unfreezing(stage.unfreeze, student, batches_per_epoch // stage.grad_accum or 1, where) \
            if stage.unfreeze else None
        self.set_step(0)
        named = [(n, p) for n, p in student.named_parameters() if n in self.trainable]
        params = [p for _, p in named] + [p for p in extra_parameters if p.requires_grad]
        self.parameters = params
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # biases and LayerNorm weights
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": stage.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=stage.lr)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, round(stage.warmup * self.total_steps),
                                                         self.total_steps)

    def set_step(self, step: int) -> None:
        """Which student parameters train at optimizer step `step`."""
        if self.unfreezing is not None:
            self.unfreezing.apply(step, self.trainable)
        else:
            for name, param in self.student.named_parameters():
                param.requires_grad_(name in self.trainable)
