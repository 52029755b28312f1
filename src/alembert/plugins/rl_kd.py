"""RL-KD (Yuan et al., AAAI 2021) on the training loop: a learned policy picks, per example, the teachers the student
distils from; the student and the policy take turns.

Our reconstruction (the paper's exact state and rewards are not verified; see docs/ARCHITECTURE.md):
- state of (example j, teacher k): the student's final [CLS] vector, teacher k's probabilities, its loss on the
  gold label, and its divergence from the student (the plugin's `state` option picks among them);
- action: select each teacher (Bernoulli) or weigh it (a sampled sigmoid); the selected teachers share the
  example's distillation weight equally (soft: in proportion);
- it acts in stages with a distillation loss on the logits and several teachers; its weights multiply the recipe's
  combination rule (mean by default), each example's normalised to sum to 1;
- warm-up: the stage's first `warmup` epochs train with equal weights, the policy idle;
- reward, after the student's update on the batch (every `episode` steps, one policy step):
  student_loss: the drop of the student's loss on the gold labels of the batch;
  distill_loss: the drop of its mean divergence from all teachers on the batch;
  dev_metric: the change of the dev metric over the episode.
  The batch's loss before the update does not depend on the action, so subtracting it keeps the gradient
  unbiased and removes the batch's own difficulty from the reward; a moving average baselines the rest.
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
from alembert.models.features import FeatureRequest
from alembert.models.layout import find_layout
from alembert.plugins.teacher_selector import Reinforce, SelectionPolicy, selection_states, state_size
from alembert.recipe.specs import RLKDOptions
from alembert.registry import PLUGINS

LOG_EVERY = 10
DEV_METRIC_EPISODE = 20


@PLUGINS.register("rl_kd")
class RLTeacherSelector(Plugin):
    Options = RLKDOptions

    def setup(self, ctx) -> None:
        spec, self.names, self.task = self.options, list(ctx.teacher_names), ctx.task
        layout = find_layout(ctx.student)
        self.regression, self.layer = ctx.task.is_regression, layout.num_layers
        size = state_size(spec.state, layout.hidden_size, ctx.task.num_labels, self.regression)
        with torch.random.fork_rng():  # the policy's initial weights, without touching the student's randomness
            torch.manual_seed(ctx.recipe.seed)
            self.policy = SelectionPolicy(size, spec.hidden)
        self.learner = Reinforce(self.policy, spec.action, spec.lr, spec.baseline_momentum, spec.noise,
                                 ctx.recipe.seed)
        self.episode = spec.episode or (DEV_METRIC_EPISODE if spec.reward == "dev_metric" else 1)
        self.seed = ctx.recipe.seed
        self.summary: dict[str, dict] = {}  # per stage: selection rates, policy updates, warm-up
        self.active = False

    def student_request(self, ctx) -> FeatureRequest:
        return FeatureRequest(hidden=frozenset({find_layout(ctx.student).num_layers}))  # the state's [CLS] vector

    def on_stage_start(self, ctx) -> None:
        self.spec = self.options
        self.active = len(ctx.teachers) > 1 and any(loss.type == "prediction" and loss.alpha > 0
                                                    for loss in ctx.stage.losses)
        self.stage = ctx.stage.name
        self.warmup = round(self.spec.warmup * ctx.steps_per_epoch)
        self.calls, self.episodes, self.step = 0, 0, 0
        self.waiting: list[tuple[object, torch.Tensor, float]] = []  # acted batches awaiting their reward
        self.rewards: list[float] = []  # the current episode's rewards, one per acted batch
        self.rates: list[torch.Tensor] = []  # selection rates per act since the last log
        self.stage_rates: list[torch.Tensor] = []
        self.stats: list[dict] = []
        self.dev_before = None
        if self.spec.reward == "dev_metric":
            dev = ctx.evaluator.data("dev")
            n = self.spec.dev_limit
            self.dev = dev if n is None or n >= len(dev) else dev.subset(
                sorted(random.Random(self.seed).sample(range(len(dev)), n)))

    def teacher_weights(self, out, ctx) -> torch.Tensor | None:
        if not self.active:
            return None
        batch, student_features, teacher_features = out.batch, out.student, out.teachers
        self.calls += 1
        size, k = student_features.logits.shape[0], len(teacher_features)
        if self.calls <= self.warmup:
            return student_features.logits.new_full((size, k), 1.0 / k).float()
        if self.spec.reward == "dev_metric" and self.dev_before is None:  # where the first episode starts from
            self.dev_before = self._dev_metric(ctx)
        teacher_logits = torch.stack([f.logits.float() for f in teacher_features], dim=1).detach()
        labels = batch.gold
        states = selection_states(student_features.hidden[self.layer][:, 0], teacher_logits,
                                  student_features.logits.detach().float(), labels, self.regression, self.spec.state)
        weights, rates = self.learner.act(states)
        self.rates.append(rates)
        self.stage_rates.append(rates)
        if self.spec.reward != "dev_metric":
            before = self._batch_loss(student_features.logits.detach().float(), teacher_logits, labels)
            self.waiting.append((batch, teacher_logits, before))
        return weights.to(student_features.logits.device)

    def after_step(self, ctx, parts: dict[str, float]) -> None:
        if not self.active:
            return
        step = ctx.step
        if self.spec.reward == "dev_metric":
            if self.learner.pending >= self.episode:
                metric = self._dev_metric(ctx)
                self.stats.append(self.learner.end_episode(metric - self.dev_before))
                self.episodes += 1
                self.dev_before = metric
        elif self.waiting:
            for batch, teacher_logits, before in self.waiting:
                after = self._batch_loss(ctx.student_logits(batch), teacher_logits, batch.gold)
                self.rewards.append(before - after)
            self.waiting = []
            if self.learner.pending >= self.episode:
                self.stats.append(self.learner.end_episode(self.rewards))
                self.episodes += 1
                self.rewards = []
        self.step = step
        if step % LOG_EVERY == 0 and (self.rates or self.stats):
            self._log(ctx)

    def on_stage_end(self, ctx) -> None:
        if not self.active:
            return
        stage = ctx.stage
        self.learner.discard_episode()  # a partial episode has no complete reward
        self.waiting, self.rewards = [], []
        if self.rates or self.stats:  # what the last LOG_EVERY steps left unlogged
            self._log(ctx)
        rates = torch.stack(self.stage_rates).mean(dim=0).tolist() if self.stage_rates else None
        self.summary[stage.name] = {
            "warmup_steps": min(self.warmup, self.calls), "episodes": self.episodes,
            "selection_rate": dict(zip(self.names, rates)) if rates else None,
            "reward": self.spec.reward, "action": self.spec.action}
        self.active = False

    _PER_STAGE = ("active", "calls", "episodes", "step", "rewards", "rates", "stage_rates", "stats", "dev_before")

    def state_dict(self) -> dict:
        """The policy and its learner, the summary, and the stage's counters and unlogged rates. Taken between
        steps, when no acted batch is waiting for its reward."""
        return {"learner": self.learner.state_dict(), "summary": copy.deepcopy(self.summary),
                **{key: copy.deepcopy(getattr(self, key)) for key in self._PER_STAGE}}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.summary = copy.deepcopy(state["summary"])
        for key in self._PER_STAGE:
            setattr(self, key, copy.deepcopy(state[key]))

    def _log(self, ctx) -> None:
        values = {}
        if self.rates:
            values.update({f"select/{name}": float(r) for name, r in
                           zip(self.names, torch.stack(self.rates).mean(dim=0))})
        for key in ("reward", "baseline", "advantage"):
            if self.stats:
                values[f"policy/{key}"] = sum(s[key] for s in self.stats) / len(self.stats)
        self.rates, self.stats = [], []
        ctx.log(values)

    def _batch_loss(self, student_logits, teacher_logits, labels) -> float:
        """The quantity the reward watches fall: the loss on the gold labels, or the divergence from the teachers."""
        if self.spec.reward == "student_loss":
            if self.regression:
                return float(F.mse_loss(student_logits.squeeze(-1), labels.float()))
            return float(F.cross_entropy(student_logits, labels.long()))
        if self.regression:
            return float((student_logits[:, None] - teacher_logits).pow(2).mean())
        log_p_s = F.log_softmax(student_logits, dim=-1)[:, None].expand_as(teacher_logits)
        log_p_t = F.log_softmax(teacher_logits, dim=-1)
        return float(F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1).mean())

    def _dev_metric(self, ctx) -> float:
        metrics = ctx.evaluator.score(ctx.student, data=self.dev)
        ctx.student.train()
        return metrics[self.task.main_metric]

    def report(self) -> dict:
        return {"teacher_selection": self.summary} if self.summary else {}

    def save(self, run_directory: Path) -> None:
        """selector/: the policy's weights (safetensors) and what it needs to be rebuilt and read: state, action,
        teachers."""
        directory = run_directory / "selector"
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.policy.state_dict().items()}, directory / "policy.safetensors")
        (directory / "selector.json").write_text(json.dumps({
            "teachers": self.names, "selector": self.options.model_dump(), "student_layer": self.layer,
            "state_size": self.policy.state_size, "summary": self.summary}, indent=2) + "\n", encoding="utf-8")
