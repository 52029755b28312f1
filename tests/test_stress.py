"""Exact tests of the seeded stress transforms (few-sample, label noise, imbalance) on synthetic Examples."""

from collections import Counter

import pytest

from alembert.errors import AlembertError
from alembert.tasks.base import Example
from alembert.tasks.stress import apply_stress, describe, downsample, flip_labels, impose_imbalance


def make(counts: dict[int, int]) -> list[Example]:
    """Classes interleaved (not grouped) so that file order is a real constraint; texts are unique."""
    labels = [c for c, n in counts.items() for _ in range(n)]
    labels = labels[::2] + labels[1::2]
    return [Example(f"text {i}", None, y) for i, y in enumerate(labels)]


def in_file_order(out, examples):
    positions = [examples.index(e) for e in out]
    return positions == sorted(positions) and len(set(positions)) == len(positions)


# --- downsample ----------------------------------------------------------------------------------

def test_downsample_counts_order_and_determinism():
    data = make({0: 60, 1: 40})
    out = downsample(data, 30, seed=1)
    assert len(out) == 30 and in_file_order(out, data)
    assert downsample(data, 30, seed=1) == out
    assert len({tuple(e.text_a for e in downsample(data, 30, seed=s)) for s in range(5)}) == 5
    assert downsample(data, 100, seed=1) == data and downsample(data, 500, seed=1) == data


@pytest.mark.parametrize("n", [0, -3, 2.5, True, None])
def test_downsample_bad_n(n):
    with pytest.raises(AlembertError, match=r"^downsample: expected a positive number of examples, got "):
        downsample(make({0: 5}), n, seed=0)


# --- flip_labels ---------------------------------------------------------------------------------

def test_flip_exact_fraction_and_only_flipped_change():
    data = make({0: 50, 1: 50})
    out = flip_labels(data, 0.3, 2, seed=0)
    assert len(out) == len(data) and [e.text_a for e in out] == [e.text_a for e in data]
    changed = [(a, b) for a, b in zip(data, out) if a != b]
    assert len(changed) == 30
    assert all(b.label != a.label and b.text_a == a.text_a for a, b in changed)
    assert sum(a == b for a, b in zip(data, out)) == 70  # the rest are identical Examples
    assert flip_labels(data, 0.3, 2, seed=0) == out
    assert flip_labels(data, 0.3, 2, seed=1) != out


@pytest.mark.parametrize("n,fraction,flipped", [(10, 0.0, 0), (10, 1.0, 10), (7, 0.5, 4), (1000, 0.3, 300)])
def test_flip_count_is_rounded_fraction(n, fraction, flipped):
    data = make({0: n - n // 2, 1: n // 2})
    out = flip_labels(data, fraction, 2, seed=3)
    assert sum(a.label != b.label for a, b in zip(data, out)) == flipped == round(fraction * n)


def test_flip_three_classes_covers_the_other_classes():
    data = make({0: 300, 1: 300, 2: 300})
    out = flip_labels(data, 0.5, 3, seed=0)
    moves = Counter((a.label, b.label) for a, b in zip(data, out) if a.label != b.label)
    assert sum(moves.values()) == 450
    assert set(moves) == {(y, z) for y in range(3) for z in range(3) if y != z}
    assert min(moves.values()) > 40  # roughly uniform: about 75 each


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "0.3", True])
def test_flip_bad_fraction(fraction):
    with pytest.raises(AlembertError, match=r"^flip_labels: expected a fraction between 0 and 1, got "):
        flip_labels(make({0: 5, 1: 5}), fraction, 2, seed=0)


def test_flip_refuses_regression_unlabeled_and_out_of_range():
    reg = [Example("a", None, 2.5), Example("b", None, 1.0)]
    with pytest.raises(AlembertError, match=r"expected num_labels >= 2, got 1"):
        flip_labels(reg, 0.5, 1, seed=0)
    with pytest.raises(AlembertError,
                       match=r"^flip_labels: example 0 has label 2\.5, expected a class id .*regression"):
        flip_labels(reg, 0.5, 2, seed=0)
    with pytest.raises(AlembertError, match=r"^flip_labels: example 1 is unlabeled, expected a class id"):
        flip_labels([Example("a", None, 0), Example("b", None, None)], 0.5, 2, seed=0)
    with pytest.raises(AlembertError, match=r"^flip_labels: example 0 has label 2, expected a class id 0\.\.1"):
        flip_labels([Example("a", None, 2)], 0.5, 2, seed=0)


# --- impose_imbalance ----------------------------------------------------------------------------

def test_imbalance_two_classes():
    data = make({0: 100, 1: 100})
    out = impose_imbalance(data, 10, seed=0)
    assert Counter(e.label for e in out) == {0: 100, 1: 10}  # tie broken by class id: 0 is the head
    assert in_file_order(out, data)
    assert impose_imbalance(data, 10, seed=0) == out
    assert impose_imbalance(data, 10, seed=1) != out
    assert impose_imbalance(data, 1, seed=0) == data


def test_imbalance_three_classes_exact_counts_and_ratio():
    data = make({0: 50, 1: 200, 2: 120})
    out = impose_imbalance(data, 100, seed=0)
    # ranks: 1 (200), 2 (120), 0 (50); targets 200, round(200 / 10) = 20, round(200 / 100) = 2
    counts = Counter(e.label for e in out)
    assert counts == {1: 200, 2: 20, 0: 2}
    assert max(counts.values()) / min(counts.values()) == 100
    assert in_file_order(out, data)


def test_imbalance_keeps_small_classes_and_at_least_one():
    data = make({0: 100, 1: 3, 2: 100})
    # ranks 0, 2, 1: targets 100, round(100 / 4) = 25, round(100 / 16) = 6 capped at the 3 there are
    assert Counter(e.label for e in impose_imbalance(data, 16, seed=0)) == {0: 100, 2: 25, 1: 3}
    assert Counter(e.label for e in impose_imbalance(make({0: 10, 1: 10}), 1000, seed=0)) == {0: 10, 1: 1}
    one_class = make({1: 7})
    assert impose_imbalance(one_class, 5, seed=0) == one_class


@pytest.mark.parametrize("ratio", [0.5, 0, float("inf"), "10", None])
def test_imbalance_bad_ratio(ratio):
    with pytest.raises(AlembertError, match=r"^imbalance: expected a ratio >= 1 \(1 leaves the classes unchanged\)"):
        impose_imbalance(make({0: 5, 1: 5}), ratio, seed=0)


def test_imbalance_refuses_regression():
    with pytest.raises(AlembertError, match=r"^imbalance: example 0 has label 0\.5, expected a class id"):
        impose_imbalance([Example("a", None, 0.5)], 10, seed=0)


# --- apply_stress and describe -------------------------------------------------------------------

def test_apply_stress_order_and_exact_flip_after_downsample():
    data = make({0: 900, 1: 300, 2: 600})
    out = apply_stress(data, downsample=1000, flip_labels=0.3, imbalance=None, num_labels=3, seed=42)
    assert len(out) == 1000
    originals = {e.text_a: e.label for e in data}
    assert sum(originals[e.text_a] != e.label for e in out) == 300  # exactly 30% of the final set
    texts = [e.text_a for e in out]
    assert texts == [e.text_a for e in data if e.text_a in set(texts)]  # file order
    assert apply_stress(data, downsample=1000, flip_labels=0.3, imbalance=None, num_labels=3, seed=42) == out
    assert apply_stress(data, downsample=1000, flip_labels=0.3, imbalance=None, num_labels=3, seed=43) != out


def test_apply_stress_imbalance_before_downsample():
    data = make({0: 1000, 1: 1000})
    out = apply_stress(data, downsample=550, flip_labels=None, imbalance=10, num_labels=2, seed=0)
    assert len(out) == 550  # imbalance first leaves 1000 + 100, then 550 of those
    assert set(out) <= set(impose_imbalance(data, 10, seed=_imbalance_seed(0)))
    counts = Counter(e.label for e in out)
    assert counts[0] > 5 * counts[1]  # the long tail survives downsampling
    same = apply_stress(data, downsample=None, flip_labels=None, imbalance=None, num_labels=2, seed=0)
    assert same == data


def _imbalance_seed(seed):
    from alembert.tasks.stress import _derive
    return _derive(seed, "imbalance")


def test_apply_stress_refuses_regression():
    reg = [Example("a", None, 0.5)]
    with pytest.raises(AlembertError, match=r"^flip_labels: applies to classification tasks only"):
        apply_stress(reg, downsample=None, flip_labels=0.3, imbalance=None, num_labels=1, seed=0)
    with pytest.raises(AlembertError, match=r"^imbalance: applies to classification tasks only"):
        apply_stress(reg, downsample=None, flip_labels=None, imbalance=10, num_labels=1, seed=0)
    assert apply_stress(reg, downsample=1, flip_labels=None, imbalance=None, num_labels=1, seed=0) == reg


def test_describe():
    data = make({0: 3, 2: 5}) + [Example("x", None, None)]
    assert describe(data, 3) == {"examples": 9, "class_counts": [3, 0, 5], "unlabeled": 1}
    assert describe([Example("a", None, 0.5)], 1) == {"examples": 1, "class_counts": None, "unlabeled": 0}
