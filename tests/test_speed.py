"""Interleaved latency: the order of the rounds and the arithmetic, on a fake clock (no wall-clock time asserted)."""
import pytest
import torch

from alembert.evaluation.speed import (TRUST_WIDTH, interleaved_rounds, median_interval, speed_profile, speed_profiles,
                                       speedup)
from conftest import tiny_bert


class FakeClock:
    """A clock that moves only when a model runs, by the time scripted for that model and run."""

    def __init__(self):
        self.now = 0.0
        self.calls = []

    def __call__(self):
        return self.now

    def runner(self, name, seconds):
        durations = iter(seconds)

        def run():
            self.calls.append(name)
            self.now += next(durations)
        return run


def test_rounds_alternate_the_order_after_a_warm_up():
    clock = FakeClock()
    runners = {n: clock.runner(n, [0.001] * 10) for n in ("teacher", "assistant", "student")}
    interleaved_rounds(runners, rounds=3, warmup=1, timer=clock)
    assert clock.calls == ["teacher", "assistant", "student",  # warm-up, untimed
                           "teacher", "assistant", "student",
                           "student", "assistant", "teacher",
                           "teacher", "assistant", "student"]


def test_each_round_times_each_model_once_in_milliseconds():
    clock = FakeClock()
    runners = {"teacher": clock.runner("teacher", [9.0, 0.020, 0.030, 0.022]),
               "student": clock.runner("student", [9.0, 0.010, 0.010, 0.011])}
    times = interleaved_rounds(runners, rounds=3, warmup=1, timer=clock)
    assert times["teacher"] == pytest.approx([20.0, 30.0, 22.0])  # the 9 s warm-up is not counted
    assert times["student"] == pytest.approx([10.0, 10.0, 11.0])


def test_speedup_is_the_median_of_per_round_ratios():
    # round 2 was slowed for both by something else on the machine: its ratio stays 2
    teacher = [20.0, 60.0, 20.0, 21.0, 19.0, 20.0, 22.0]
    student = [10.0, 30.0, 10.0, 10.0, 10.0, 10.0, 11.0]
    result = speedup(teacher, student)
    assert result["median"] == pytest.approx(2.0)
    assert (result["q25"], result["q75"]) == pytest.approx((2.0, 2.0))
    assert result["ci95"] == pytest.approx([1.9, 2.1])  # 7 rounds: the 1st smallest and the 1st largest ratio
    assert result["trusted"] and "warning" not in result


def test_a_spread_too_wide_is_flagged_with_its_threshold():
    ratios_teacher = [22.3, 20.0, 30.0, 21.0, 40.0, 20.0, 25.0, 20.0, 35.0, 22.0]
    student = [21.8, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 20.0, 10.0, 10.0]
    result = speedup(ratios_teacher, student)
    lo, hi = result["ci95"]
    assert (hi - lo) / result["median"] > TRUST_WIDTH
    assert not result["trusted"] and "is wider than 20% of it" in result["warning"]
    few = speedup([20.0] * 5, [10.0] * 5)
    assert not few["trusted"] and "too few" in few["warning"]


@pytest.mark.parametrize("n, expected", [(6, (1, 6)), (10, (2, 9)), (30, (10, 21))])
def test_median_interval_uses_binomial_order_statistics(n, expected):
    values = list(range(1, n + 1))  # x_(k) = k
    assert median_interval(values) == expected
    assert median_interval(values[:5]) is None


def test_speed_profiles_wires_models_to_rounds():
    clock = FakeClock()
    teacher, student = tiny_bert(layers=4), tiny_bert(layers=1)
    for name, model, cost in (("teacher", teacher, 0.004), ("student", student, 0.001)):
        model.register_forward_pre_hook(lambda module, args, name=name, cost=cost: clock.runner(name, [cost])())
    result = speed_profiles({"teacher": teacher, "student": student}, seq_len=16, batch_sizes=(1, 4),
                            rounds={1: 7, 4: 6}, warmup=1, timer=clock)
    assert clock.calls.count("teacher") == clock.calls.count("student") == (1 + 7) + (1 + 6)
    assert result["teacher"]["latency_ms_b1"] == pytest.approx(4.0)
    assert result["student"]["latency_ms_b4"] == pytest.approx(1.0)
    assert result["student"]["speedup_b1"]["median"] == pytest.approx(4.0)
    assert result["student"]["speedup_b4"]["rounds"] == 6 and "speedup_b1" not in result["teacher"]
    assert result["student"]["parameters"] < result["teacher"]["parameters"]
    assert result["student"]["seq_len"] == 16 and result["student"]["threads"] == torch.get_num_threads()


def test_speed_profile_of_one_model_keeps_its_keys():
    profile = speed_profile(tiny_bert(layers=1), seq_len=8, repeats=1)
    assert set(profile) == {"parameters", "latency_ms_b1", "latency_ms_b32", "seq_len", "threads"}
