"""What a run has done so far, and what a checkpoint keeps of it: the result, the plan, the random generators."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from alembert.engine.checkpoint import Checkpoints

RESULT_KEYS = ("train_seconds", "examples_seen", "optimizer_steps")


@dataclass
class TrainResult:
    best_metric: float | None = None
    best_step: int | None = None
    best_stage: str | None = None
    history: list[dict] = field(default_factory=list)  # every evaluation: stage, step, metrics
    seconds: float = 0.0
    train_seconds: float = 0.0  # in training steps only: no evaluation, no cache build
    cache_build_seconds: float = 0.0
    examples_seen: int = 0
    optimizer_steps: int = 0
    early_stopped: list[str] = field(default_factory=list)  # stages ended by early stopping
    teacher_cache: dict = field(default_factory=dict)  # the (first) teacher's cache of the task's training set
    teacher_caches: list[dict] = field(default_factory=list)  # each teacher's, in order
    source_caches: dict | None = None  # per other source a stage trains on


@dataclass
class CheckpointPlan:
    """Where and how often a Trainer writes checkpoints, and the one it continues from.

    phase: which training of the run this is ('student', or 'assistant' first for MiniLM's teacher assistant);
    resume: a checkpoint's (state, tensors) to continue from when it belongs to this phase; extra: more tensor
    groups written with every checkpoint (a finished assistant, which the student's phase needs to continue)."""
    checkpoints: Checkpoints
    every: int = 0  # optimizer steps between checkpoints; 0: only at the end of each stage
    phase: str = "student"
    resume: tuple[dict, dict] | None = None
    extra: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


def rng_state() -> dict:
    """Every global random number generator the loop draws from (dropout, samplers of libraries)."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(as_tuple(state["python"]))
    numpy_state = list(state["numpy"])
    numpy_state[1] = np.array(numpy_state[1], dtype=np.uint32)
    np.random.set_state(tuple(numpy_state))
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def as_tuple(value):
    """A random.Random state as setstate wants it (tuples all the way down) from what a checkpoint returns."""
    return tuple(as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
