"""Reinforced multi-teacher selection (RL-KD, Yuan et al., AAAI 2021): the pure torch core.

A policy looks at one (example, teacher) state at a time and gives the probability that the student learns from
that teacher on that example; REINFORCE trains it from rewards the training loop measures. The loop owns the
schedule: it calls `Reinforce.act` per batch, applies the returned per-(example, teacher) weights to the
distillation loss, and calls `Reinforce.end_episode(rewards)`.

The state of (example j, teacher k) is built by `selection_states` from named features: the example's embedding
(the same for every teacher: only per-teacher weights can turn it into a preference), teacher k's probabilities, its
cross-entropy on the gold label and, optionally, its divergence from the student. The scalars are standardised by
running statistics (`RunningMoments`), so no feature's scale decides how fast its weight moves.
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


def teacher_scalars(teacher_logits: torch.Tensor, student_logits: torch.Tensor | None, labels: torch.Tensor | None,
                    regression: bool, features: Sequence[str]) -> torch.Tensor:
    """The per-(example, teacher) scalars of the state, (B, K, F) float32 without gradient: teacher k's
    probabilities (regression: its prediction), its loss on the gold label (cross-entropy; regression: squared
    error), and its divergence KL(p_Tk || p_S) from the student (regression: squared difference)."""
    features = _check_features(features)
    if teacher_logits.dim() != 3:
        raise AlembertError(f"teacher_logits: expected shape (B, K, C), got {tuple(teacher_logits.shape)}")
    B, K, C = teacher_logits.shape
    if regression and C != 1:
        raise AlembertError(f"teacher_logits: regression expects one output per teacher, got {C}")
    if "gold_loss" in features and (labels is None or labels.reshape(-1).shape[0] != B):
        raise AlembertError(f"labels: the gold_loss state feature needs {B} labels, got "
                            f"{None if labels is None else tuple(labels.shape)}")
    if "divergence" in features and (student_logits is None or tuple(student_logits.shape) != (B, C)):
        raise AlembertError(f"student_logits: expected shape ({B}, {C}) for the divergence feature")
    parts: list[torch.Tensor] = []
    with torch.no_grad():
        teacher = teacher_logits.detach().float()
        if "probs" in features:
            parts.append(teacher if regression else teacher.softmax(-1))
        if "gold_loss" in features:
            parts.append(gold_losses(teacher, labels.reshape(B), regression).unsqueeze(-1))
        if "divergence" in features:
            student = student_logits.detach().float()
            if regression:
                parts.append((teacher - student[:, None]).pow(2))
            else:
                log_t, log_s = F.log_softmax(teacher, -1), F.log_softmax(student, -1)[:, None]
                parts.append((log_t.exp() * (log_t - log_s)).sum(-1, keepdim=True))
    return torch.cat(parts, dim=-1) if parts else teacher_logits.new_zeros((B, K, 0), dtype=torch.float32)


def selection_states(embedding: torch.Tensor | None, scalars: torch.Tensor) -> torch.Tensor:
    """States (B, K, S): the example's embedding (B, D), the same for each teacher, then the teacher's scalars."""
    B, K, _ = scalars.shape
    if embedding is None:
        return scalars.contiguous()
    if embedding.dim() != 2 or embedding.shape[0] != B:
        raise AlembertError(f"embedding: expected shape ({B}, D), got {tuple(embedding.shape)}")
    return torch.cat([embedding.detach().float()[:, None].expand(B, K, -1), scalars], dim=-1).contiguous()


class RunningMoments:
    """Mean and variance of each feature over every value seen so far (Chan et al.'s parallel update), for
    standardising a state's scalars: (x - mean) / sqrt(var + eps)."""

    def __init__(self, size: int, eps: float = 1e-6):
        self.count, self.eps = 0, eps
        self.mean, self.m2 = torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, self.mean.shape[0]).double().cpu()
        n = x.shape[0]
        if n == 0:
            return
        mean, m2 = x.mean(0), ((x - x.mean(0)) ** 2).sum(0)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta ** 2 * self.count * n / total
        self.count = total

    @property
    def var(self) -> torch.Tensor:
        return self.m2 / max(self.count, 1)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x), (self.var + self.eps).sqrt().to(x)
        return (x - mean) / std

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean.clone(), "m2": self.m2.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = state["count"], state["mean"].clone(), state["m2"].clone()


class SelectionPolicy(nn.Module):
    """Scores each (example, teacher) state; sigmoid(score) is the probability of learning from that teacher.

    hidden 0 is the paper's logistic policy: per teacher k, sigmoid(w_k . s + b_k) ('per_teacher'), or one w shared
    by every teacher with a bias b_k of its own ('shared'). hidden > 0 puts one tanh layer (shared) before that.
    The scoring weights and biases start at zero: every teacher starts at p = 0.5.
    """

    def __init__(self, state_size: int, teachers: int, shared: bool = False, hidden: int = 0):
        super().__init__()
        if state_size < 1:
            raise AlembertError(f"state_size: expected a positive integer, got {state_size}")
        if teachers < 1:
            raise AlembertError(f"teachers: expected a positive integer, got {teachers}")
        if hidden < 0:
            raise AlembertError(f"hidden: expected 0 or a positive integer, got {hidden}")
        self.state_size, self.teachers, self.shared, self.hidden = state_size, teachers, shared, hidden
        self.body = nn.Sequential(nn.Linear(state_size, hidden), nn.Tanh()) if hidden else nn.Identity()
        self.weight = nn.Parameter(torch.zeros(1 if shared else teachers, hidden or state_size))
        self.bias = nn.Parameter(torch.zeros(teachers))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(B, K, S) states to (B, K) logits."""
        if states.dim() != 3 or states.shape[1:] != (self.teachers, self.state_size):
            raise AlembertError(f"states: expected shape (B, {self.teachers}, {self.state_size}), got "
                                f"{tuple(states.shape)}")
        return (self.body(states) * self.weight).sum(-1) + self.bias


def _normalise(selection: torch.Tensor) -> torch.Tensor:
    # Dividing by max(1, total) keeps rows with no teacher at all-zero weight instead of 0/0.
    return selection / selection.sum(-1, keepdim=True).clamp(min=1.0)


def bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    return -(p * p.log() + (1 - p) * (1 - p).log())


class Reinforce:
    """REINFORCE for a SelectionPolicy, with its own Adam optimizer and one episode buffer.

    Each recorded act has a reward: one per example (B,) (the example's own loss drop, the same for the K actions
    it took) or one number for the act (the dev metric's change over an episode). The advantage subtracts a
    baseline that does not depend on the action: 'batch', for per-example rewards, the mean reward of the act's
    other examples (leave-one-out; the share of the change that the whole batch's update gave every example);
    'ema', a moving average of past mean rewards (b <- m*b + (1-m)*mean; the first episode only sets it). An
    episode takes one Adam step on  -mean over recorded (j, k) of A_j * log pi(a_jk | s_jk).
    """

    def __init__(self, policy: SelectionPolicy, action: Literal["bernoulli", "soft"] = "bernoulli",
                 lr: float = 1e-2, baseline: Literal["batch", "ema"] = "batch", baseline_momentum: float = 0.9,
                 noise: float = 1.0, seed: int = 0):
        if action not in ("bernoulli", "soft"):
            raise AlembertError(f"action: expected 'bernoulli' or 'soft', got {action!r}")
        if baseline not in ("batch", "ema"):
            raise AlembertError(f"baseline: expected 'batch' or 'ema', got {baseline!r}")
        if not lr > 0:
            raise AlembertError(f"lr: expected a positive number, got {lr}")
        if not 0.0 <= baseline_momentum < 1.0:
            raise AlembertError(f"baseline_momentum: expected a number in [0, 1), got {baseline_momentum}")
        if action == "soft" and not noise > 0:
            raise AlembertError(f"noise: the soft action needs a positive standard deviation, got {noise}")
        self.policy, self.action, self.lr, self.kind = policy, action, lr, baseline
        self.momentum, self.noise = baseline_momentum, noise
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.baseline: float | None = None  # the moving average ('ema', and 'batch' for one reward per act)
        # Own generator: sampling is reproducible and does not disturb (or depend on) the global RNG.
        self.generator = torch.Generator().manual_seed(seed)
        self._buffer: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def pending(self) -> int:
        """Number of act calls recorded in the current episode."""
        return len(self._buffer)

    def act(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for a batch: detached weights (B, K) (the selected teachers' equal shares, or the soft
        weights), the actions taken (B, K) (1/0, or the sampled sigmoid) and the policy's probabilities (B, K)."""
        states = states.detach().float()
        with torch.no_grad():
            logits = self.policy(states)
            probs = torch.sigmoid(logits)
            # Draw on the CPU generator, then move: the same seed gives the same actions on any device.
            if self.action == "bernoulli":
                uniform = torch.rand(logits.shape, generator=self.generator).to(logits.device)
                sampled = (uniform < probs).float()
                weights, chosen = _normalise(sampled), sampled
            else:
                eps = torch.randn(logits.shape, generator=self.generator).to(logits.device)
                sampled = logits + self.noise * eps  # z ~ Normal(logit, noise²): a density, so REINFORCE applies
                chosen = torch.sigmoid(sampled)
                weights = chosen / chosen.sum(-1, keepdim=True)
        self._buffer.append((states, sampled))
        return weights, chosen, probs

    def greedy(self, states: torch.Tensor) -> torch.Tensor:
        """Deterministic weights (B, K) for inspection; nothing is sampled or recorded."""
        with torch.no_grad():
            logits = self.policy(states.detach().float())
            if self.action == "bernoulli":
                return _normalise((logits >= 0).float())  # p >= 0.5
            probs = torch.sigmoid(logits)
            return probs / probs.sum(-1, keepdim=True)

    def _log_prob(self, logits: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
        if self.action == "bernoulli":
            # log sigmoid(±logit) as -softplus(∓logit): stable, and much faster than F.logsigmoid on small tensors.
            return -F.softplus((1 - 2 * sampled) * logits)
        z = (sampled - logits) / self.noise
        return -0.5 * z * z - math.log(self.noise) - 0.5 * math.log(2 * math.pi)

    def discard_episode(self) -> None:
        """Forget the recorded episode without learning from it (it ended before its reward was known)."""
        self._buffer.clear()

    def _advantages(self, rewards: list[torch.Tensor]) -> tuple[list[torch.Tensor], float, bool]:
        """Per act, the advantages (B,) or (1,); the baseline reported; whether to skip the step (the first
        episode of a moving average only sets it)."""
        flat = torch.cat([r.reshape(-1) for r in rewards])
        mean = float(flat.mean())
        per_example = all(r.numel() > 1 for r in rewards)
        if self.kind == "batch" and per_example:
            advantages = [r - (r.sum() - r) / (r.numel() - 1) for r in rewards]
            return advantages, float(torch.cat([r - a for r, a in zip(rewards, advantages)]).mean()), False
        first = self.baseline is None
        baseline = mean if first else self.baseline
        self.baseline = baseline if first else self.momentum * baseline + (1 - self.momentum) * mean
        return [r - baseline for r in rewards], baseline, first

    def end_episode(self, rewards: float | Sequence) -> dict[str, float]:
        """One policy-gradient step on the recorded episode, then clear it.

        rewards: one number for the whole episode, or one entry per act call, each a number or a (B,) tensor of
        per-example rewards. Returns reward and advantage statistics, the baseline and the policy loss."""
        if isinstance(rewards, (int, float)):
            rewards = [float(rewards)] * max(1, self.pending)
        rewards = [torch.as_tensor(r, dtype=torch.float32).reshape(-1).cpu() for r in rewards]
        if len(rewards) != self.pending and self.pending:
            raise AlembertError(f"rewards: expected one reward per recorded batch ({self.pending}), got {len(rewards)}")
        if not rewards:
            return {"reward": 0.0, "reward_std": 0.0, "baseline": self.baseline or 0.0, "advantage": 0.0,
                    "advantage_std": 0.0, "policy_loss": 0.0}
        flat = torch.cat(rewards)
        if not torch.isfinite(flat).all():
            raise AlembertError(f"rewards: expected finite numbers, got {flat.tolist()}")
        advantages, baseline, skip = self._advantages(rewards)
        loss_value = 0.0
        if self._buffer and not skip:
            total = sum(sampled.numel() for _, sampled in self._buffer)
            loss = 0.0
            for advantage, (states, sampled) in zip(advantages, self._buffer):
                log_prob = self._log_prob(self.policy(states), sampled)  # (B, K)
                weight = advantage.to(log_prob)[:, None] if advantage.numel() > 1 else advantage.to(log_prob)
                # Sum here and divide by the total count: a mean over every recorded (batch, example, teacher).
                loss = loss - (weight * log_prob).sum()
            loss = loss / total
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            loss_value = float(loss.detach())
        self._buffer.clear()
        adv = torch.cat([a.reshape(-1) for a in advantages])
        return {"reward": float(flat.mean()), "reward_std": float(flat.std()) if flat.numel() > 1 else 0.0,
                "baseline": baseline, "advantage": float(adv.mean()),
                "advantage_std": float(adv.std()) if adv.numel() > 1 else 0.0, "policy_loss": loss_value}

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
