"""Step strategies: how one batch's loss becomes an update of the weights. A strategy is called with the batch and
`loss_of(batch) -> (loss, parts)` and takes the optimizer step itself (a recipe's `step:` names it)."""
from __future__ import annotations

import math

import torch

from alembert.errors import AlembertError
from alembert.recipe.specs import MetaStepSpec, StandardStepSpec
from alembert.registry import STEPS


class StepStrategy:
    """`training` is the stage's StageTraining (parameters, optimizer); `check(value, parts)` stops the run on a
    value that is not finite. `fast` are the weights an inner step may adapt (the student and the losses' own)."""

    Options = StandardStepSpec

    def __init__(self, options, accelerator, optimizer, parameters: list, fast: list, max_grad_norm, check):
        self.options, self.accelerator, self.optimizer = options, accelerator, optimizer
        self.parameters, self.fast, self.max_grad_norm, self.check = parameters, fast, max_grad_norm, check

    def clip_and_step(self) -> None:
        if self.accelerator.sync_gradients and self.max_grad_norm:
            norm = self.accelerator.clip_grad_norm_(self.parameters, self.max_grad_norm)
            self.check(norm, {"gradient norm": float(norm)})
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


@STEPS.register("standard")
class StandardStep(StepStrategy):
    def __call__(self, batch, loss_of, accumulate) -> dict[str, float]:
        with accumulate():
            loss, parts = loss_of(batch)
            self.accelerator.backward(loss)
            self.clip_and_step()
        return parts


def split_support(batch, share: float):
    """The batch's support and query examples: each domain's first `share` of its rows, and the rest."""
    support, query = [], []
    for d in batch.domain.unique().tolist():
        rows = (batch.domain == d).nonzero().flatten().tolist()
        cut = min(len(rows) - 1, max(1, math.floor(share * len(rows))))
        if cut < 1:
            raise AlembertError(f"step meta: a domain has {len(rows)} example in the batch; support and query need "
                                "at least one each (raise the batch or per-domain k)")
        support += rows[:cut]
        query += rows[cut:]
    return batch.select(support), batch.select(query)


@STEPS.register("meta")
class MetaStep(StepStrategy):
    """First-order MAML: adapt the fast weights by plain SGD on the support examples, take the query examples'
    gradient at the adapted weights, restore the weights and let the optimizer apply that gradient. Parameters
    that are not fast (a plugin's, e.g. a domain graph's) learn from the query loss only."""

    Options = MetaStepSpec

    def __call__(self, batch, loss_of, accumulate) -> dict[str, float]:
        support, query = split_support(batch, self.options.support)
        fast = [p for p in self.fast if p.requires_grad]
        saved = [p.detach().clone() for p in fast]
        with accumulate():  # one optimizer step per batch (the recipe refuses grad_accum > 1 here)
            for _ in range(self.options.inner_steps):
                loss, _ = loss_of(support)
                grads = torch.autograd.grad(loss, fast, allow_unused=True)
                with torch.no_grad():
                    for p, g in zip(fast, grads):
                        if g is not None:
                            p.sub_(self.options.inner_lr * g)
            loss, parts = loss_of(query)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # the gradient at the adapted weights, applied at the original ones: first order
                for p, original in zip(fast, saved):
                    p.copy_(original)
            self.clip_and_step()
        return parts


def make_step(spec, *args) -> StepStrategy:
    return STEPS.get(spec.type, "step")(spec, *args)
