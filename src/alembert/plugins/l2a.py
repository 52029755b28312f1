"""Learning to Augment (Feng et al., AAAI 2021), as reconstructed in docs/l2a.md (the paper's method section was
not available: an approximate reconstruction). Before the first stage:

- a share of the target's training examples is held out of training: the selector's reward reads it (never the
  dev set that scores the student);
- the generator (plugins/augment.py; by default the masked-LM Markov chain) makes candidates from the target's
  remaining training sentences and from the source domains' sentences, into a `generated` source;
- each candidate gets its fixed features: cosine of its teacher embedding to the target's and the sources'
  centroids, whether it started in a source, the share of tokens the chain changed.

During training, every time the sampler draws generated examples the selector keeps or drops each (example
weight 1 or 0) from its state (those fixed features and what teacher and student make of it now); every `episode`
acted batches, the reward is the change of the student's score on the held-out target examples since the episode
began, and REINFORCE with a moving-average baseline updates the policy (augment/selector.py)."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from safetensors.torch import save_file

from alembert.augment.generate import teacher_view
from alembert.augment.selector import FEATURES, CandidateSelector, model_scalars
from alembert.errors import AlembertError
from alembert.evaluation.scoring import predict
from alembert.plugins.augment import Augment, GeneratorOptions
from alembert.plugins.l2a_report import Counts, plot_decisions
from alembert.registry import PLUGINS


class L2AOptions(GeneratorOptions):
    """The generator's options (masked-LM chain by default; sources required) and the selector's: the held-out share
    of the target's labels its reward reads, the reward, the episode, REINFORCE's learning rate and baseline."""

    generator: Literal["neighbours", "mlm"] = "mlm"
    n: int = Field(2, ge=1)
    from_sources: list[str] = Field([], validate_default=True)  # required: see _sources
    holdout: float = Field(0.2, gt=0, lt=1)  # share of the target's training examples kept out for the reward
    reward: Literal["log_likelihood", "metric"] = "log_likelihood"  # on the held-out examples' gold labels
    episode: int = Field(10, ge=1)  # acted batches per policy update
    lr: float = Field(0.05, gt=0)
    baseline_momentum: float = Field(0.9, ge=0, lt=1)
    initial_keep: float = Field(0.5, gt=0, lt=1)
    # false: every candidate is kept (weight 1): the selector's ablation, on the same generation and hold-out
    select: bool = True
    log_every: int = Field(10, ge=1)
    single_process: ClassVar[bool] = True  # its policy learns in one process

    @field_validator("from_sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("l2a generates from source domains: name at least one of the recipe's sources")
        return value


@PLUGINS.register("l2a")
class L2A(Augment):
    Options = L2AOptions

    def prepare_target(self, ctx) -> None:
        target = ctx.sources["task"]
        n, k = len(target), max(2, round(self.options.holdout * len(target)))
        if n - k < 2:
            raise AlembertError(f"plugins: l2a.holdout: {k} of the target's {n} training examples would be held "
                                "out, leaving fewer than 2 to train on (lower holdout or add examples)")
        held = set(random.Random(self.seed).sample(range(n), k))
        self.heldout = target.subset(sorted(held))
        ctx.sources["task"] = target.subset([i for i in range(n) if i not in held])

    def teacher_views(self, candidates, target_starts, source_starts, max_length) -> dict:
        """Also the centroids of the teacher's embeddings of the target's and the sources' starts."""
        views = super().teacher_views(candidates, target_starts, source_starts, max_length)
        for name, starts in (("target_centroid", target_starts), ("source_centroid", source_starts)):
            views[name] = teacher_view(self.teacher, self.tokenizer, [(s.text_a, s.text_b) for s in starts],
                                       max_length)[1].mean(0)
        return views

    def after_generation(self, ctx) -> None:
        unit = torch.nn.functional.normalize(self.views["pooled"], dim=-1)
        similarity = [unit @ torch.nn.functional.normalize(self.views[name], dim=0)
                      for name in ("target_centroid", "source_centroid")]
        from_source = torch.tensor([float(c.origin != "target") for c in self.candidates])
        changed = torch.tensor([c.changed or 0.0 for c in self.candidates])
        self.static = torch.stack([*similarity, from_source, changed], dim=-1)  # (N, 4)
        o = self.options
        self.selector = CandidateSelector(len(FEATURES), o.lr, o.baseline_momentum, o.initial_keep, ctx.recipe.seed)
        size = len(self.candidates)
        self.drawn, self.kept, self.last_p = torch.zeros(size), torch.zeros(size), torch.full((size,), float("nan"))
        self.history: dict[str, list[dict]] = {}
        self.summary: dict[str, dict] = {}
        self.active, self.before, self.episodes, self.stage = False, None, 0, None
        self.interval, self.total = Counts(), Counts()
        self.info["heldout"] = len(self.heldout)

    def on_stage_start(self, ctx) -> None:
        self.active = self.options.select and self.options.into in ctx.stage.sources
        self.stage = ctx.stage.name
        self.history.setdefault(self.stage, [])
        self.interval, self.total, self.episodes = Counts(), Counts(), 0
        self.selector.discard_episode()
        self.before = self.score(ctx) if self.active else None

    def score(self, ctx) -> float:
        """The student's score on the held-out target examples: the mean log-probability of the gold labels, or
        the task's main metric."""
        student = ctx.student
        was_training = student.training
        try:
            if self.options.reward == "metric":
                return float(ctx.evaluator.score(student, data=self.heldout)[ctx.task.main_metric])
            logits = torch.from_numpy(np.asarray(predict(student, self.heldout, ctx.recipe.eval_batch_size)))
            gold = torch.tensor(self.heldout.labels, dtype=torch.long)
            return float(logits.float().log_softmax(-1).gather(1, gold[:, None]).mean())
        finally:
            student.train(was_training)

    def example_weights(self, out, ctx) -> torch.Tensor | None:
        batch = out.batch
        if not self.active or not out.teachers or self.options.into not in batch.source_names:
            return None
        where = (batch.source == batch.source_names.index(self.options.into)).cpu()
        if not where.any():
            return None
        ids = batch.example_id.cpu()[where]
        scalars = torch.cat([model_scalars(out.teachers[0].logits[where.to(out.teachers[0].logits.device)],
                                           out.student.logits[where.to(out.student.logits.device)]).cpu(),
                             self.static[ids]], dim=-1)
        keep, probs, entropy = self.selector.act(scalars)
        self.drawn[ids] += 1
        self.kept[ids] += keep
        self.last_p[ids] = probs
        origin = self.static[ids, 2]
        for counts in (self.interval, self.total):
            counts.add_act(keep, probs, entropy, origin, int((~where).sum()))
        weights = torch.ones(batch.size)
        weights[where] = keep
        return weights.to(out.student.logits.device)

    def after_step(self, ctx, parts: dict[str, float]) -> None:
        if not self.active:
            return
        if self.selector.pending >= self.options.episode:
            now = self.score(ctx)
            stats = self.selector.end_episode(now - self.before)
            self.before = now
            self.episodes += 1
            for counts in (self.interval, self.total):
                counts.add_update(stats, now)
        if ctx.step % self.options.log_every == 0 and self.interval.any():
            self._log(ctx)

    def _log(self, ctx) -> None:
        values = self.interval.values()
        self.interval = Counts()
        self.history[self.stage].append({"step": ctx.step, **values})
        ctx.log({f"l2a/{k}": v for k, v in values.items()})

    def on_stage_end(self, ctx) -> None:
        if not self.active:
            return
        self.selector.discard_episode()  # a partial episode has no reward
        if self.interval.any():
            self._log(ctx)
        self.summary[self.stage] = {"policy_updates": self.episodes, **self.total.values()}
        self.active = False

    def rows(self) -> list[dict]:
        rows = super().rows()
        for i, row in enumerate(rows):
            if self.options.select:  # with the selector off nothing is counted: every candidate is kept
                drawn = int(self.drawn[i])
                row.update(drawn=drawn, kept=int(self.kept[i]),
                           last_keep_probability=None if drawn == 0 else round(float(self.last_p[i]), 4))
            row.update(target_similarity=round(float(self.static[i, 0]), 4),
                       source_similarity=round(float(self.static[i, 1]), 4))
        return rows

    def report(self) -> dict:
        if not hasattr(self, "info"):
            return {}
        return {"l2a": {"generation": self.info, "select": self.options.select, "selection": self.summary,
                        "kept_share": float(self.kept.sum() / self.drawn.sum()) if self.drawn.sum() else None}}

    def save(self, run_directory) -> None:
        super().save(run_directory)
        if not hasattr(self, "selector") or not self.options.select:
            return
        folder = Path(run_directory) / "selector"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.selector.policy.state_dict().items()},
                  str(folder / "policy.safetensors"))
        moments = self.selector.moments
        (folder / "selector.json").write_text(json.dumps({
            "state": list(FEATURES), "options": self.options.model_dump(),
            "moments": {"count": moments.count, "mean": moments.mean.tolist(), "var": moments.var.tolist()},
            "summary": self.summary, "history": self.history}, indent=1) + "\n", encoding="utf-8")
        plot_decisions(self.history, folder / "selection.png")

    _KEEP = ("active", "before", "episodes", "stage", "history", "summary")

    def state_dict(self) -> dict:
        if not hasattr(self, "selector"):
            return {}
        return {"selector": self.selector.state_dict(), "drawn": self.drawn.clone(), "kept": self.kept.clone(),
                "last_p": self.last_p.clone(), "counts": [copy.deepcopy(self.interval.sums),
                                                          copy.deepcopy(self.total.sums)],
                **{key: copy.deepcopy(getattr(self, key)) for key in self._KEEP}}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.selector.load_state_dict(state["selector"])
        self.drawn, self.kept, self.last_p = state["drawn"].clone(), state["kept"].clone(), state["last_p"].clone()
        self.interval.sums, self.total.sums = (copy.deepcopy(s) for s in state["counts"])
        for key in self._KEEP:
            setattr(self, key, copy.deepcopy(state[key]))
