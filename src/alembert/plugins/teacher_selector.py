"""Reinforced multi-teacher selection (RL-KD, Yuan et al., AAAI 2021): the pure torch core.

A small policy looks at one (example, teacher) state at a time and decides whether (or how much) the
student learns from that teacher on that example; REINFORCE trains it from a reward the training loop
measures (e.g. the student's negative dev loss). This is a documented reconstruction: the paper's exact
state features and reward are not verified, so the state is built from named, optional features.

The training loop owns the episode schedule: it calls `Reinforce.act` per batch, applies the returned
per-(example, teacher) weights to the distillation loss, and calls `Reinforce.end_episode(reward)`.
"""
from __future__ import annotations

import copy
import math
from typing import Literal, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from alembert.engine.combine import gold_losses
from alembert.errors import AlembertError

STATE_FEATURES = ("embedding", "probs", "gold_loss", "divergence")


def _check_features(features: Sequence[str]) -> tuple[str, ...]:
    if isinstance(features, str):
        features = (features,)
    unknown = [f for f in features if f not in STATE_FEATURES]
    if unknown:
        raise AlembertError(f"features: unknown {unknown}, expected some of {list(STATE_FEATURES)}")
    if not features:
        raise AlembertError(f"features: empty, expected some of {list(STATE_FEATURES)}")
    # Canonical order, so the same set of features always gives the same state layout.
    return tuple(f for f in STATE_FEATURES if f in features)


def state_size(features: Sequence[str], embed_dim: int, num_labels: int, regression: bool) -> int:
    """S, the length of one (example, teacher) state built by `selection_states`."""
    sizes = {"embedding": embed_dim, "probs": 1 if regression else num_labels, "gold_loss": 1, "divergence": 1}
    return sum(sizes[f] for f in _check_features(features))


def selection_states(
    embedding: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    labels: torch.Tensor | None,
    regression: bool,
    features: Sequence[str] = STATE_FEATURES,
) -> torch.Tensor:
    """States (B, K, S), detached float32: per example j and teacher k, the requested features concatenated.

    embedding (B, D): the student's [CLS] vector, L2-normalised so its scale does not swamp the scalars;
    probs: teacher k's softmax (regression: its raw prediction); gold_loss: teacher k's cross-entropy
    (regression: squared error) on the label; divergence: KL(p_Tk || p_S) at temperature 1 (regression:
    squared difference of the predictions).
    """
    features = _check_features(features)
    if teacher_logits.dim() != 3:
        raise AlembertError(f"teacher_logits: expected shape (B, K, C), got {tuple(teacher_logits.shape)}")
    B, K, C = teacher_logits.shape
    if embedding.dim() != 2 or embedding.shape[0] != B:
        raise AlembertError(f"embedding: expected shape ({B}, D), got {tuple(embedding.shape)}")
    if tuple(student_logits.shape) != (B, C):
        raise AlembertError(f"student_logits: expected shape ({B}, {C}), got {tuple(student_logits.shape)}")
    if regression and C != 1:
        raise AlembertError(f"teacher_logits: regression expects one output per teacher, got {C}")
    if "gold_loss" in features:
        if labels is None:
            raise AlembertError("labels: the gold_loss state feature needs labels")
        if labels.reshape(-1).shape[0] != B:
            raise AlembertError(f"labels: expected {B} labels, got shape {tuple(labels.shape)}")

    # Everything is computed without a graph: the policy's input must not push gradients into the student.
    with torch.no_grad():
        teacher = teacher_logits.detach().float()
        student = student_logits.detach().float()
        parts: list[torch.Tensor] = []
        if "embedding" in features:
            unit = F.normalize(embedding.detach().float(), dim=-1)
            parts.append(unit.unsqueeze(1).expand(B, K, unit.shape[-1]))
        gold = gold_losses(teacher, labels.reshape(B), regression).unsqueeze(-1) if "gold_loss" in features else None
        if regression:
            pred_t, pred_s = teacher[..., 0], student[:, 0]  # (B, K), (B,)
            if "probs" in features:
                parts.append(pred_t.unsqueeze(-1))
            if gold is not None:
                parts.append(gold)
            if "divergence" in features:
                parts.append(((pred_t - pred_s.unsqueeze(1)) ** 2).unsqueeze(-1))
        else:
            log_t = F.log_softmax(teacher, dim=-1)  # (B, K, C)
            if "probs" in features:
                parts.append(log_t.exp())
            if gold is not None:
                parts.append(gold)
            if "divergence" in features:
                log_s = F.log_softmax(student, dim=-1).unsqueeze(1)  # (B, 1, C)
                parts.append((log_t.exp() * (log_t - log_s)).sum(-1, keepdim=True))
        return torch.cat(parts, dim=-1).contiguous()


class SelectionPolicy(nn.Module):
    """Scores each (example, teacher) state; sigmoid(score) is the probability of learning from that teacher.

    hidden 0 is the paper's logistic policy sigmoid(w·s + b); hidden > 0 adds one tanh layer.
    """

    def __init__(self, state_size: int, hidden: int = 0):
        super().__init__()
        if state_size < 1:
            raise AlembertError(f"state_size: expected a positive integer, got {state_size}")
        if hidden < 0:
            raise AlembertError(f"hidden: expected 0 or a positive integer, got {hidden}")
        self.state_size = state_size
        self.hidden = hidden
        last = nn.Linear(hidden or state_size, 1)
        # Zero last layer: every teacher starts at p = 0.5, so early exploration is maximal and unbiased.
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = last if hidden == 0 else nn.Sequential(nn.Linear(state_size, hidden), nn.Tanh(), last)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states).squeeze(-1)


def _normalise(selection: torch.Tensor) -> torch.Tensor:
    # Dividing by max(1, total) keeps rows with no teacher at all-zero weight instead of 0/0.
    return selection / selection.sum(-1, keepdim=True).clamp(min=1.0)


class Reinforce:
    """REINFORCE learner for a SelectionPolicy with one episode buffer.

    Baseline: an exponential moving average of past episode rewards. The first episode only initialises it
    (its advantage is 0, so no policy step is taken). Each later episode takes one Adam step on
        loss = -mean over recorded (batch i, example j, teacher k) of A_i * log pi(a_ijk | s_ijk)
    where A_i = reward_i - baseline (one shared reward, or one per recorded batch), and then moves the
    baseline toward the mean reward: b <- m*b + (1-m)*mean(rewards).
    """

    def __init__(
        self,
        policy: SelectionPolicy,
        action: Literal["bernoulli", "soft"] = "bernoulli",
        lr: float = 1e-3,
        baseline_momentum: float = 0.9,
        noise: float = 1.0,
        seed: int = 0,
    ):
        if action not in ("bernoulli", "soft"):
            raise AlembertError(f"action: expected 'bernoulli' or 'soft', got {action!r}")
        if not lr > 0:
            raise AlembertError(f"lr: expected a positive number, got {lr}")
        if not 0.0 <= baseline_momentum < 1.0:
            raise AlembertError(f"baseline_momentum: expected a number in [0, 1), got {baseline_momentum}")
        if action == "soft" and not noise > 0:
            raise AlembertError(f"noise: the soft action needs a positive standard deviation, got {noise}")
        self.policy = policy
        self.action = action
        self.lr = lr
        self.momentum = baseline_momentum
        self.noise = noise
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.baseline: float | None = None
        # Own generator: sampling is reproducible and does not disturb (or depend on) the global RNG.
        self.generator = torch.Generator().manual_seed(seed)
        self._buffer: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def pending(self) -> int:
        """Number of act calls recorded in the current episode."""
        return len(self._buffer)

    def _logits(self, states: torch.Tensor) -> torch.Tensor:
        if states.dim() != 3 or states.shape[-1] != self.policy.state_size:
            raise AlembertError(
                f"states: expected shape (B, K, {self.policy.state_size}), got {tuple(states.shape)}"
            )
        return self.policy(states)

    def act(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample actions for a batch; returns detached weights (B, K) and per-teacher selection rates (K,)."""
        states = states.detach().float()
        with torch.no_grad():
            logits = self._logits(states)
            # Draw on the CPU generator, then move: the same seed gives the same actions on any device.
            if self.action == "bernoulli":
                uniform = torch.rand(logits.shape, generator=self.generator).to(logits.device)
                sampled = (uniform < torch.sigmoid(logits)).float()
                weights, chosen = _normalise(sampled), sampled
            else:
                eps = torch.randn(logits.shape, generator=self.generator).to(logits.device)
                sampled = logits + self.noise * eps  # z ~ Normal(logit, noise²): a density, so REINFORCE applies
                chosen = torch.sigmoid(sampled)
                weights = chosen / chosen.sum(-1, keepdim=True)
        self._buffer.append((states, sampled))
        return weights, chosen.mean(0)

    def greedy(self, states: torch.Tensor) -> torch.Tensor:
        """Deterministic weights (B, K) for inspection; nothing is sampled or recorded."""
        with torch.no_grad():
            logits = self._logits(states.detach().float())
            if self.action == "bernoulli":
                return _normalise((logits >= 0).float())  # p >= 0.5
            probs = torch.sigmoid(logits)
            return probs / probs.sum(-1, keepdim=True)

    def _log_prob(self, logits: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
        if self.action == "bernoulli":
            # log sigmoid(±logit) as -softplus(∓logit): stable, and much faster than F.logsigmoid on small CPU tensors.
            return -F.softplus((1 - 2 * sampled) * logits)
        z = (sampled - logits) / self.noise
        return -0.5 * z * z - math.log(self.noise) - 0.5 * math.log(2 * math.pi)

    def discard_episode(self) -> None:
        """Forget the recorded episode without learning from it (it ended before its reward was known)."""
        self._buffer.clear()

    def end_episode(self, rewards: float | Sequence[float]) -> dict[str, float]:
        """One policy-gradient step on the recorded episode, then clear it.

        rewards: one reward for the whole episode, or a list with one reward per act call. Returns the mean
        reward, the baseline the advantages were taken against, the mean advantage and the policy loss.
        """
        if isinstance(rewards, (int, float)):
            per_batch = [float(rewards)] * max(1, self.pending)
        else:
            per_batch = [float(r) for r in rewards]
            if len(per_batch) != self.pending:
                raise AlembertError(
                    f"rewards: expected one reward per recorded batch ({self.pending}), got {len(per_batch)}"
                )
            if not per_batch:  # an empty episode with an empty list: nothing to learn, nothing to average
                return {"reward": 0.0, "baseline": self.baseline or 0.0, "advantage": 0.0, "policy_loss": 0.0}
        if not all(math.isfinite(r) for r in per_batch):
            raise AlembertError(f"rewards: expected finite numbers, got {per_batch}")
        mean_reward = sum(per_batch) / len(per_batch)

        first = self.baseline is None
        baseline = mean_reward if first else self.baseline
        advantages = [r - baseline for r in per_batch]
        loss_value = 0.0
        if self._buffer and not first:
            total = sum(sampled.numel() for _, sampled in self._buffer)
            loss = 0.0
            for advantage, (states, sampled) in zip(advantages, self._buffer):
                # Sum here and divide by the total count: a mean over every recorded (batch, example, teacher).
                loss = loss - advantage * self._log_prob(self._logits(states), sampled).sum()
            loss = loss / total
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            loss_value = float(loss.detach())
        self._buffer.clear()

        self.baseline = baseline if first else self.momentum * baseline + (1 - self.momentum) * mean_reward
        return {
            "reward": mean_reward,
            "baseline": baseline,
            "advantage": sum(advantages) / len(advantages),
            "policy_loss": loss_value,
        }

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue identically, the current episode's buffer included.

        A deep copy: torch's own state dicts share storage with the live parameters and Adam moments, so an
        in-memory snapshot would otherwise keep changing as training goes on.
        """
        return copy.deepcopy({
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "generator": self.generator.get_state(),
            "buffer": [(states.cpu(), sampled.cpu()) for states, sampled in self._buffer],
        })

    def load_state_dict(self, state: dict) -> None:
        state = copy.deepcopy(state)  # Adam keeps the given moment tensors: two learners must not share them
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.generator.set_state(state["generator"])
        device = next(self.policy.parameters()).device
        self._buffer = [(states.to(device), sampled.to(device)) for states, sampled in state.get("buffer", [])]
