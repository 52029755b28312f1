"""The one rule every benchmark uses to decide a paper's "A beats B" claim from per-seed paired differences."""
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def parallel():
    return load_benchmark("_parallel")


@pytest.mark.parametrize("differences, verdict", [
    ([1.0, 2.0], "undecided (2 seeds)"),             # fewer than 3 seeds decide nothing
    ([2.2, 1.5, 3.1], "reproduced (p = 0.02)"),      # consistently above zero
    ([0.1, 0.5, -0.3], "not reproduced (p = 0.35)"),  # a positive mean inside the seeds' noise is not a win
    ([-1.0, -2.0, -0.5], "not reproduced (p = 0.94)"),
    ([0.5, 0.5, 0.5], "reproduced (p = 0.00)"),       # no spread: t is undefined, the sign decides
    ([0.0, 0.0, 0.0], "not reproduced (p = 1.00)"),
])
def test_beats(parallel, differences, verdict):
    assert parallel.beats(differences) == verdict


@pytest.mark.parametrize("values, others, verdict", [
    ([2.0, 3.0, 2.5], [0.0, 0.5, -0.2], "reproduced (p = 0.00)"),   # few-shot margins well above full-set ones
    ([1.0, 0.2, 0.6], [0.5, 0.9, 0.1], "not reproduced (p = 0.39)"),  # t = 0.31 on about 4 df
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], "not reproduced (p = 1.00)"),  # no spread and no gap
    ([1.0, 2.0, 3.0], [0.0, 1.0], "undecided (2 seeds)"),
])
def test_beats_two_samples(parallel, values, others, verdict):
    assert parallel.beats(values, others=others) == verdict
