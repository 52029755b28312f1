"""The reinforced selector of generated examples: keep or drop each one, by a logistic policy over its state,
trained by REINFORCE with a moving-average baseline (RL-KD's SelectionPolicy and Reinforce, with one 'teacher':
the keep decision).

The state of a generated example: what the teacher and the student make of it (the teacher's confidence and
entropy, the student's confidence, KL(teacher || student)), then what was fixed when it was generated (cosine of
its teacher embedding to the target's and to the sources' centroids, whether its chain started from a source
sentence, the share of its tokens the chain changed). Every scalar is standardised by running statistics."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from alembert.plugins.teacher_selector import Reinforce, RunningMoments, SelectionPolicy, bernoulli_entropy

MODEL_FEATURES = ("teacher_confidence", "teacher_entropy", "student_confidence", "divergence")
STATIC_FEATURES = ("target_similarity", "source_similarity", "from_source", "changed")
FEATURES = MODEL_FEATURES + STATIC_FEATURES


@torch.no_grad()
def model_scalars(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """(B, 4) float32: teacher confidence (max probability), teacher entropy, student confidence, KL(T || S)."""
    log_t, log_s = F.log_softmax(teacher_logits.float(), -1), F.log_softmax(student_logits.float(), -1)
    p_t = log_t.exp()
    return torch.stack([p_t.max(-1).values, -(p_t * log_t).sum(-1), log_s.exp().max(-1).values,
                        (p_t * (log_t - log_s)).sum(-1)], dim=-1)


class CandidateSelector:
    """`act(scalars)` samples keep (1) or drop (0) per row of (B, S) states and records them; `end_episode(reward)`
    takes one policy-gradient step on the recorded acts with one reward for all of them (advantage: reward minus a
    moving average of past rewards; the first episode only sets it)."""

    def __init__(self, size: int, lr: float = 0.05, momentum: float = 0.9, initial_keep: float = 0.5,
                 seed: int = 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = SelectionPolicy(size, 1)
        with torch.no_grad():  # the policy starts at p(keep) = initial_keep for every example
            self.policy.bias.fill_(math.log(initial_keep / (1 - initial_keep)))
        self.learner = Reinforce(self.policy, "bernoulli", lr, "ema", momentum, seed=seed)
        self.moments = RunningMoments(size)

    @property
    def pending(self) -> int:
        return self.learner.pending

    def act(self, scalars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """keep (B,) in {0, 1}, p(keep) (B,) and the policy's entropy (B,) for the rows' raw scalars."""
        scalars = scalars.detach().float().cpu()
        self.moments.update(scalars)
        states = self.moments.standardise(scalars)[:, None]
        _, chosen, probs = self.learner.act(states)
        return chosen[:, 0], probs[:, 0], bernoulli_entropy(probs[:, 0])

    def keep_probability(self, scalars: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            states = self.moments.standardise(scalars.detach().float().cpu())[:, None]
            return torch.sigmoid(self.policy(states))[:, 0]

    def end_episode(self, reward: float) -> dict[str, float]:
        return self.learner.end_episode(float(reward))

    def discard_episode(self) -> None:
        self.learner.discard_episode()

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict(), "moments": self.moments.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.moments.load_state_dict(state["moments"])
