"""Seeded "stress" transforms of a training set, reproducing CR-ILD's synthetic settings (Ko et al., 2023),
where intermediate-layer distillation overfits most:

- few-sample: `downsample` keeps n random examples (CR-ILD: 1,000, its `--downsample`);
- noisy labels: `flip_labels` gives a fraction of the examples a wrong label (CR-ILD: 30%,
  `--mislabel --mislabel_ratio 0.3`);
- label imbalance: `impose_imbalance` makes class counts long-tailed with max/min ratio `ratio`
  (CR-ILD's `glue_ltr`, `--imbalance_ratio`).

All are pure functions of their arguments: randomness comes from random.Random(seed), never global state,
and outputs keep the input (file) order so a stressed set reads like a subset of the original file.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import replace

from alembert.errors import AlembertError
from alembert.tasks.base import Example, subset


def downsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """Exactly n examples chosen at random (all of them when n >= len), in file order."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AlembertError(f"downsample: expected a positive number of examples, got {n!r}")
    return subset(examples, n, seed)


def flip_labels(examples: list[Example], fraction: float, num_labels: int, seed: int) -> list[Example]:
    """Exactly round(fraction * len) random examples get a label drawn uniformly from the other classes.

    round() is Python's (half to even); the rest of the examples are returned unchanged."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise AlembertError(f"flip_labels: expected a fraction between 0 and 1, got {fraction!r}")
    _check_classes(examples, num_labels, "flip_labels")
    rng = random.Random(seed)
    flipped = sorted(rng.sample(range(len(examples)), round(fraction * len(examples))))
    out = list(examples)
    for i in flipped:
        # y + 1..C-1 (mod C) is uniform over the C-1 other classes and never y itself.
        out[i] = replace(out[i], label=(out[i].label + rng.randrange(1, num_labels)) % num_labels)
    return out


def impose_imbalance(examples: list[Example], ratio: float, seed: int) -> list[Example]:
    """Long-tailed class counts: the class of rank i (largest first, ties by class id) among C classes
    keeps min(count, round(n_max * ratio ** (-i / (C - 1)))) random examples, at least 1.

    The largest class keeps all, the smallest about n_max / ratio: ratio is the max/min count ratio."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio < 1:
        raise AlembertError(f"imbalance: expected a ratio >= 1 (1 leaves the classes unchanged), got {ratio!r}")
    _check_classes(examples, None, "imbalance")
    by_class: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        by_class.setdefault(e.label, []).append(i)
    ranked = sorted(by_class, key=lambda c: (-len(by_class[c]), c))
    if len(ranked) < 2:
        return list(examples)
    n_max, steps = len(by_class[ranked[0]]), len(ranked) - 1
    rng = random.Random(seed)
    keep: list[int] = []
    for rank, c in enumerate(ranked):
        idx = by_class[c]
        target = max(1, min(len(idx), round(n_max * ratio ** (-rank / steps))))
        keep.extend(rng.sample(idx, target))
    return [examples[i] for i in sorted(keep)]


# apply_stress's keyword arguments shadow the function names above.
_DOWNSAMPLE, _FLIP, _IMBALANCE = downsample, flip_labels, impose_imbalance


def apply_stress(examples: list[Example], *, downsample: int | None, flip_labels: float | None,
                 imbalance: float | None, num_labels: int, seed: int) -> list[Example]:
    """Apply the settings that are not None, in this order: imbalance, downsample, flip_labels.

    Imbalance first so downsampling keeps its long tail; flipping last so the noisy fraction is exact on
    the final set. Each step has its own seed derived from `seed`, so adding one step leaves the random
    choices of the others unchanged."""
    if (imbalance is not None or flip_labels is not None) and num_labels < 2:
        key = "imbalance" if imbalance is not None else "flip_labels"
        raise AlembertError(f"{key}: applies to classification tasks only, this task is regression")
    out = list(examples)
    if imbalance is not None:
        out = _IMBALANCE(out, imbalance, _derive(seed, "imbalance"))
    if downsample is not None:
        out = _DOWNSAMPLE(out, downsample, _derive(seed, "downsample"))
    if flip_labels is not None:
        out = _FLIP(out, flip_labels, num_labels, _derive(seed, "flip_labels"))
    return out


def describe(examples: list[Example], num_labels: int) -> dict:
    """Counts for reports: {'examples', 'class_counts' (list by class id; None for regression), 'unlabeled'}."""
    unlabeled = sum(e.label is None for e in examples)
    counts = None
    if num_labels >= 2:
        _check_classes([e for e in examples if e.label is not None], num_labels, "describe")
        tally = Counter(e.label for e in examples if e.label is not None)
        counts = [tally.get(c, 0) for c in range(num_labels)]
    return {"examples": len(examples), "class_counts": counts, "unlabeled": unlabeled}


def _derive(seed: int, step: str) -> int:
    """A stable per-step seed (hashlib, unlike hash(), does not change between Python runs)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{step}".encode()).digest()[:8], "big")


def _check_classes(examples: list[Example], num_labels: int | None, key: str) -> None:
    """Label noise and imbalance need class ids: name the first example that is not one."""
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                   or num_labels < 2):
        raise AlembertError(
            f"{key}: applies to classification tasks only, expected num_labels >= 2, got {num_labels!r}"
        )
    for i, e in enumerate(examples):
        y = e.label
        if y is None:
            raise AlembertError(f"{key}: example {i} is unlabeled, expected a class id")
        if isinstance(y, bool) or not isinstance(y, int):
            raise AlembertError(
                f"{key}: example {i} has label {y!r}, expected a class id (classification tasks only, not regression)"
            )
        if y < 0 or (num_labels is not None and y >= num_labels):
            top = "" if num_labels is None else f"..{num_labels - 1}"
            raise AlembertError(f"{key}: example {i} has label {y}, expected a class id 0{top}")
