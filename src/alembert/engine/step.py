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
    that are not fast (a plugin's, e.g. a domain graph's) learn from the query loss only (`outer: first_order`),
    or also through the inner step (`outer: lookahead`, below). `student: batch` updates the fast weights with the
    whole batch's loss at the original weights instead (a standard step; the meta part then trains only the
    plugin's parameters). Each part of the batch carries its phase ('support', 'query', 'train'), which the loop
    gives plugins as `ctx.phase`, so they may weigh the parts apart."""

    Options = MetaStepSpec

    def __call__(self, batch, loss_of, accumulate) -> dict[str, float]:
        options = self.options
        support, query = split_support(batch, options.support)
        fast = [p for p in self.fast if p.requires_grad]
        ids = {id(p) for p in fast}
        slow = [p for p in self.parameters if p.requires_grad and id(p) not in ids]
        saved = [p.detach().clone() for p in fast]
        with accumulate():  # one optimizer step per batch (the recipe refuses grad_accum > 1 here)
            for _ in range(options.inner_steps):
                loss, _ = loss_of(_part(support, "support"))
                _move(fast, torch.autograd.grad(loss, fast, allow_unused=True), -options.inner_lr)
            loss, parts = loss_of(_part(query, "query"))
            grads = torch.autograd.grad(loss, fast + slow, allow_unused=True)
            query_grads, slow_grads = list(grads[:len(fast)]), list(grads[len(fast):])
            _restore(fast, saved)  # the gradient at the adapted weights, applied at the original ones: first order
            if options.outer == "lookahead" and slow:
                meta = self.lookahead(support, loss_of, fast, slow, query_grads, saved)
                slow_grads = [_add(g, m) for g, m in zip(slow_grads, meta)]
            if options.student == "batch":
                loss, parts = loss_of(_part(batch, "train"))
                query_grads = list(torch.autograd.grad(loss, fast, allow_unused=True))
            self.optimizer.zero_grad(set_to_none=True)
            for p, g in zip(fast + slow, query_grads + slow_grads):
                p.grad = g
            self.clip_and_step()
        return parts

    def lookahead(self, support, loss_of, fast, slow, query_grads, saved) -> list:
        """The query loss's gradient for the slow parameters through the inner step w' = w - lr * grad_w
        L_support(w, slow): -lr * d/d(slow) [grad_w L_support . grad_w' L_query], the mixed second derivative
        taken by central differences along the query gradient (DARTS, Liu et al. 2019, eq. 7-8): L_support at
        w +- eps * g, eps = radius / |g|, both with the same random draws (dropout)."""
        g = [torch.zeros_like(p) if q is None else q for p, q in zip(fast, query_grads)]
        norm = torch.sqrt(sum(x.float().pow(2).sum() for x in g))
        if not torch.isfinite(norm) or norm == 0:
            return [None] * len(slow)
        eps = float(self.options.lookahead_radius / norm)
        rng = _rng_state()
        ends = []
        for sign in (1.0, -2.0):  # w + eps g, then w - eps g
            _move(fast, g, sign * eps)
            _set_rng_state(rng)
            loss, _ = loss_of(_part(support, "support"))
            ends.append(torch.autograd.grad(loss, slow, allow_unused=True))
        _restore(fast, saved)
        scale = -self.options.inner_lr / (2 * eps)
        return [None if a is None or b is None else scale * (a - b) for a, b in zip(*ends)]


def _part(batch, phase: str):
    batch.phase = phase
    return batch


def _move(params, grads, scale: float) -> None:
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is not None:
                p.add_(g, alpha=scale)


def _restore(params, saved) -> None:
    with torch.no_grad():
        for p, original in zip(params, saved):
            p.copy_(original)


def _add(a, b):
    return b if a is None else a if b is None else a + b


def _rng_state():
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _set_rng_state(state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def make_step(spec, *args) -> StepStrategy:
    return STEPS.get(spec.type, "step")(spec, *args)
