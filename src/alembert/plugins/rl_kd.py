"""RL-KD (Yuan et al., AAAI 2021) on the training loop: a learned policy picks, per example, the teachers the student
distils from; the student and the policy take turns. The design and the source of each choice: docs/RLKD.md.

- State of (example j, teacher k): the example's embedding from a frozen encoder (the student before training, or
  `encoder:`), computed once; teacher k's probabilities; its cross-entropy on the gold label (and, as an option,
  its divergence from the student). Scalars standardised by running statistics.
- Policy: a logistic unit per teacher (or one weight vector with a bias per teacher), zero-initialised, with its own
  Adam optimizer. Action: select teacher k for example j (Bernoulli); the selected teachers share the example's
  distillation weight equally (an example may get none); `soft` weighs them by a sampled sigmoid instead.
- Rewards: student_loss, the drop of example j's cross-entropy on its gold label over the student's update;
  distill_loss, the drop of its whole prediction loss (hard label and distillation from the teachers selected for
  it); both per example, 'before' and 'after' taken in one mode (eval, no dropout) and one precision (the stage's).
  dev_metric: the change of the dev metric over an episode of steps, one number for the episode's actions.
- Policy gradient on log pi with a baseline (the batch's other examples' mean reward, or a moving average).
- Schedule: recipes/rlkd.yaml trains a full equal-weight stage first, then the RL stage from that student.
"""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from alembert.engine.plugins import Plugin
from alembert.engine.terms import PredictionTerm
from alembert.errors import AlembertError
from alembert.plugins.example_embeddings import example_embeddings
from alembert.plugins.rl_kd_report import Tally, over_time, plot_selection
from alembert.plugins.teacher_selector import (Reinforce, RunningMoments, SelectionPolicy, _check_features,
                                               bernoulli_entropy, selection_states, state_size, teacher_scalars)
from alembert.recipe.specs import RLKDOptions
from alembert.registry import PLUGINS

LOG_EVERY = 10
DEV_METRIC_EPISODE = 20


@PLUGINS.register("rl_kd")
class RLTeacherSelector(Plugin):
    Options = RLKDOptions

    def setup(self, ctx) -> None:
        spec = self.options
        self.names, self.task, self.regression = list(ctx.teacher_names), ctx.task, ctx.task.is_regression
        self.features = _check_features(spec.state)
        self.scalar_features = [f for f in self.features if f != "embedding"]
        self.embeddings = self._embed(ctx) if "embedding" in self.features else {}
        dim = next(iter(self.embeddings.values())).shape[1] if self.embeddings else 0
        size = state_size(self.features, dim, ctx.task.num_labels, self.regression)
        self.moments = RunningMoments(size - dim)
        with torch.random.fork_rng():  # a hidden layer's initial weights, without touching the student's randomness
            torch.manual_seed(ctx.recipe.seed)
            self.policy = SelectionPolicy(size, max(1, len(self.names)), spec.policy == "shared", spec.hidden)
        self.learner = Reinforce(self.policy, spec.action, spec.lr, spec.baseline, spec.baseline_momentum, spec.noise,
                                 ctx.recipe.seed)
        self.episode = spec.episode or (DEV_METRIC_EPISODE if spec.reward == "dev_metric" else 1)
        self.seed = ctx.recipe.seed
        self.summary: dict[str, dict] = {}  # per stage: what report.json says
        self.history: dict[str, list[dict]] = {}  # per stage: the logged rows, for the plot
        # the stage's counters, also before its stage starts (checkpoints of earlier stages take them)
        self.active, self.calls, self.episodes, self.step, self.rewards, self.dev_before = False, 0, 0, 0, [], None

    def _embed(self, ctx) -> dict[str, torch.Tensor]:
        """The standardised embedding table of each labelled in-memory source (RL-KD trains on the task's), from
        the student as it is now (before any training, also when a run resumes) or the `encoder` checkpoint."""
        from alembert.models.loading import load_classifier

        tokenizer, encoder = None, ctx.student
        if self.options.encoder:
            with torch.random.fork_rng():  # a base encoder gets a fresh head: not from the run's random streams
                encoder, tokenizer = load_classifier(self.options.encoder,
                                                     trust_remote_code=ctx.recipe.trust_remote_code)
        return {name: example_embeddings(source, encoder, tokenizer, ctx.recipe.max_length)
                for name, source in ctx.sources.items() if hasattr(source, "examples") and len(source)
                and any(e.label is not None for e in source.examples)}

    def on_stage_start(self, ctx) -> None:
        self.spec = self.options
        self.prediction = next((t for t in ctx.objective.terms if isinstance(t, PredictionTerm)), None)
        self.active = len(ctx.teachers) > 1 and self.prediction is not None and self.prediction.loss.alpha > 0
        self.stage = ctx.stage.name
        self.warmup = round(self.spec.warmup * ctx.steps_per_epoch)
        self.calls, self.episodes, self.step = 0, 0, 0
        self.waiting: list[tuple] = []  # acted batches awaiting their reward
        self.rewards: list = []  # the current episode's rewards, one entry per acted batch
        k = len(self.names)
        self.interval, self.tally = Tally(k), Tally(k)
        self.history.setdefault(self.stage, [])
        self.dev_before = None
        if self.spec.reward == "dev_metric":
            dev = ctx.evaluator.data("dev")
            n = self.spec.dev_limit
            self.dev = dev if n is None or n >= len(dev) else dev.subset(
                sorted(random.Random(self.seed).sample(range(len(dev)), n)))

    def teacher_weights(self, out, ctx) -> torch.Tensor | None:
        if not self.active:
            return None
        batch, teachers = out.batch, out.teachers
        self.calls += 1
        size, k = batch.size, len(teachers)
        if self.calls <= self.warmup:
            return out.student.logits.new_full((size, k), 1.0 / k).float()
        labels = batch.gold
        if labels is None:
            raise AlembertError("rl_kd: the batch has unlabeled examples; the state and rewards read gold labels")
        teacher_logits = torch.stack([f.logits.float() for f in teachers], dim=1).detach()
        scalars = teacher_scalars(teacher_logits, out.student.logits, labels, self.regression, self.scalar_features)
        if scalars.shape[-1]:
            self.moments.update(scalars)
            scalars = self.moments.standardise(scalars)
        device = next(self.policy.parameters()).device
        states = selection_states(self._rows(batch) if self.embeddings else None, scalars.cpu()).to(device)
        weights, chosen, probs = self.learner.act(states)
        right = None if self.regression else (teacher_logits.argmax(-1) == labels[:, None]).cpu()
        for tally in (self.interval, self.tally):
            tally.add_act(probs.cpu(), chosen.cpu(), right, bernoulli_entropy(probs.cpu()))
        if self.spec.reward == "dev_metric":
            if self.dev_before is None:  # where the first episode starts from
                self.dev_before = self._dev_metric(ctx)
        else:
            weights_here = weights.to(teacher_logits.device)
            before = self._example_loss(ctx.student_logits(batch), teacher_logits, labels, weights_here)
            self.waiting.append((batch, teacher_logits, weights_here, before))
        return weights.to(out.student.logits.device)

    def _rows(self, batch) -> torch.Tensor:
        """The batch's rows of the embedding tables."""
        names = batch.source_names or ("task",)
        rows = None
        for s in batch.source.unique().tolist():
            table = self.embeddings.get(names[s])
            if table is None:
                raise AlembertError(f"rl_kd: source '{names[s]}' has no example embeddings (they are computed at the "
                                    "start for the labelled sources held in memory)")
            rows = rows if rows is not None else table.new_empty((batch.size, table.shape[1]))
            where = (batch.source == s).cpu()
            rows[where] = table[batch.example_id.cpu()[where]]
        return rows

    def _example_loss(self, student_logits, teacher_logits, labels, weights) -> torch.Tensor:
        """(B,) what the reward watches fall: each example's loss on its gold label (student_loss), or its prediction
        loss, hard label and distillation from the teachers selected for it, by the stage's own term."""
        loss = self.prediction.loss
        student_logits = student_logits.float()
        if self.spec.reward == "student_loss":
            if self.regression:
                return (student_logits.squeeze(-1) - labels.float()).pow(2).detach()
            return F.cross_entropy(student_logits, labels.long(), reduction="none").detach()
        distill = torch.stack([loss.distill_per_example(student_logits, teacher_logits[:, j])
                               for j in range(teacher_logits.shape[1])], dim=1)
        value = loss.alpha * (distill * weights).sum(1)
        if loss.alpha < 1:
            value = value + (1 - loss.alpha) * loss.hard.per_example(student_logits, labels)
        return value.detach()

    def after_step(self, ctx, parts: dict[str, float]) -> None:
        if not self.active:
            return
        if self.spec.reward == "dev_metric":
            if self.learner.pending >= self.episode:
                metric = self._dev_metric(ctx)
                self._update(metric - self.dev_before, self.learner.pending)
                self.dev_before = metric
        elif self.waiting:
            for batch, teacher_logits, weights, before in self.waiting:
                after = self._example_loss(ctx.student_logits(batch), teacher_logits, batch.gold, weights)
                self.rewards.append((before - after).cpu())
            self.waiting = []
            if self.learner.pending >= self.episode:
                self._update(self.rewards, sum(r.numel() for r in self.rewards))
                self.rewards = []
        self.step = ctx.step
        if ctx.step % LOG_EVERY == 0 and (self.interval.sums["examples"] or self.interval.sums["updates"]):
            self._log(ctx)

    def _update(self, rewards, count: int) -> None:
        stats = self.learner.end_episode(rewards)
        self.episodes += 1
        for tally in (self.interval, self.tally):
            tally.add_update(stats, count)

    def on_stage_end(self, ctx) -> None:
        if not self.active:
            return
        self.learner.discard_episode()  # a partial episode has no complete reward
        self.waiting, self.rewards = [], []
        if self.interval.sums["examples"] or self.interval.sums["updates"]:  # what the last steps left unlogged
            self._log(ctx)
        self.summary[self.stage] = {
            "warmup_steps": min(self.warmup, self.calls), "episodes": self.episodes,
            "reward_kind": self.spec.reward, "action": self.spec.action, "policy": self.spec.policy,
            **self.tally.summary(self.names), "over_time": over_time(self.history[self.stage], self.names)}
        self.active = False

    _PER_STAGE = ("active", "calls", "episodes", "step", "rewards", "dev_before", "history")

    def state_dict(self) -> dict:
        """The policy and its learner, the running statistics, the summary, the stage's counters and tallies.
        Taken between steps, when no acted batch is waiting for its reward."""
        state = {"learner": self.learner.state_dict(), "moments": self.moments.state_dict(),
                 "summary": copy.deepcopy(self.summary),
                 **{key: copy.deepcopy(getattr(self, key)) for key in self._PER_STAGE}}
        if hasattr(self, "tally"):
            state["tallies"] = [copy.deepcopy(self.interval.sums), copy.deepcopy(self.tally.sums)]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.moments.load_state_dict(state["moments"])
        self.summary = copy.deepcopy(state["summary"])
        for key in self._PER_STAGE:
            setattr(self, key, copy.deepcopy(state[key]))
        if "tallies" in state and hasattr(self, "tally"):
            self.interval.sums, self.tally.sums = (copy.deepcopy(s) for s in state["tallies"])

    def _log(self, ctx) -> None:
        values = self.interval.values(self.names)
        self.interval = Tally(len(self.names))
        self.history[self.stage].append({"step": ctx.step, **values})
        ctx.log(values)

    def _dev_metric(self, ctx) -> float:
        metrics = ctx.evaluator.score(ctx.student, data=self.dev)
        ctx.student.train()
        return metrics[self.task.main_metric]

    def report(self) -> dict:
        return {"teacher_selection": self.summary} if self.summary else {}

    def save(self, run_directory: Path) -> None:
        """selector/: the policy's weights (safetensors); what it needs to be rebuilt and read (state layout and its
        running statistics, options, teachers), the summary and every logged row (selector.json); selection.png."""
        directory = run_directory / "selector"
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.policy.state_dict().items()},
                  directory / "policy.safetensors")
        (directory / "selector.json").write_text(json.dumps({
            "teachers": self.names, "selector": self.options.model_dump(), "state": list(self.features),
            "state_size": self.policy.state_size,
            "scalar_moments": {"count": self.moments.count, "mean": self.moments.mean.tolist(),
                               "var": self.moments.var.tolist()},
            "summary": self.summary, "history": self.history}, indent=2) + "\n", encoding="utf-8")
        plot_selection(self.history, self.names, directory / "selection.png")
