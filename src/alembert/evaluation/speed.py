"""Size and latency of the models of a report, measured together so that their ratio survives a busy machine.

Timing one model after the other lets whatever else runs on the machine land on one of them: a demo on a shared
machine once timed a 2-layer student at 21.8 ms against its 6-layer teacher's 22.3 ms at batch 1, and the same
student at 8.9 ms in the next run. So the models are timed interleaved, in rounds: after a warm-up, each round runs
every model once, in an order that alternates (forward, then reversed) so that none is always first after another
or after a pause. A model's latency is the median over rounds; a model's speed-up over the reference (the teacher)
is the median of the per-round ratios, since a slowdown that lasts a round hits both sides of that round's ratio.

Its spread is given two ways: the interquartile range of the per-round ratios (how much rounds disagree), and a
95 % confidence interval for the median itself from order statistics (distribution-free: the interval between the
j-th smallest and j-th largest ratio, j from the Binomial(n, 1/2) tails). A speed-up is flagged as not to be
trusted when that interval is wider than 20 % of the median (about ±10 %): reports quote speed-ups to a tenth (2.9x
against 3.2x) and compare them with targets such as 6x, which a figure uncertain by more than ±10 % cannot
settle; load from other processes widens the interval long before the median moves that far. With fewer than 6
rounds no 95 % interval exists, and the speed-up is flagged too.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch
from torch import nn

TRUST_WIDTH = 0.20  # widest 95 % interval of a speed-up, relative to its median, that a report states plainly
ROUNDS = {1: 30, 32: 10}  # per batch size; other sizes take the batch-32 count
WARMUP = 3


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def interleaved_rounds(runners: dict[str, Callable[[], None]], rounds: int, warmup: int = WARMUP,
                       timer: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Milliseconds of each model's run in each round: `warmup` untimed runs each, then `rounds` rounds that time
    every runner once, forward in even rounds and reversed in odd ones."""
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            start = timer()
            runners[name]()
            times[name].append((timer() - start) * 1000)
    return times


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for the median: (x_(j), x_(n+1-j)) with the largest j for which
    P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2; None when n is too small for one."""
    n, tail = len(values), (1 - confidence) / 2
    j, below = 0, 0.0
    while True:
        nxt = below + math.comb(n, j) / 2 ** n  # P(B <= j) = P(B < j + 1)
        if nxt > tail:
            break
        below, j = nxt, j + 1
    if j == 0:
        return None
    ordered = sorted(values)
    return ordered[j - 1], ordered[n - j]


def speedup(reference: list[float], model: list[float]) -> dict:
    """The model's speed-up over the reference from their per-round times (ms)."""
    ratios = [r / m for r, m in zip(reference, model)]
    middle = statistics.median(ratios)
    q25, _, q75 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    interval = median_interval(ratios)
    result = {"median": middle, "q25": q25, "q75": q75, "ci95": list(interval) if interval else None,
              "rounds": len(ratios)}
    if interval is None:
        result["warning"] = f"only {len(ratios)} rounds: too few for a 95 % interval; do not trust this speed-up"
    elif (interval[1] - interval[0]) / middle > TRUST_WIDTH:
        result["warning"] = (f"speed-up {middle:.2f}x is uncertain: its 95 % interval {interval[0]:.2f}-"
                             f"{interval[1]:.2f}x is wider than {TRUST_WIDTH:.0%} of it (the machine was busy?); "
                             "measure again on a quiet machine")
    result["trusted"] = "warning" not in result
    return result


def speed_profiles(models: dict[str, nn.Module], seq_len: int, batch_sizes=(1, 32), rounds: dict | None = None,
                   warmup: int = WARMUP, reference: str | None = None,
                   timer: Callable[[], float] = time.perf_counter) -> dict[str, dict]:
    """Latency of every model of a report, timed interleaved, and each one's speed-up over `reference` (default:
    the first, the teacher). Per model: parameters, latency_ms_b{B} (median over rounds), seq_len, threads; and,
    but for the reference, speedup_b{B} (see `speedup`)."""
    from alembert.evaluation.bench import random_batch, torch_backend
    from alembert.export import input_names

    reference = reference or next(iter(models))
    rounds = {**ROUNDS, **(rounds or {})}
    lengths = {name: min(seq_len, getattr(m.config, "max_position_embeddings", seq_len)) for name, m in models.items()}
    result = {name: {"parameters": count_parameters(m), "seq_len": lengths[name],
                     "threads": torch.get_num_threads()} for name, m in models.items()}
    for size in batch_sizes:
        runners = {}
        for name, model in models.items():
            model.eval()
            backend = torch_backend(model, input_names(model), bf16=False, file_bytes=0)
            runners[name] = backend.runner(random_batch(model.config.vocab_size, size, lengths[name]))
        times = interleaved_rounds(runners, rounds.get(size, ROUNDS[32]), warmup, timer)
        for name in models:
            result[name][f"latency_ms_b{size}"] = float(statistics.median(times[name]))
            if name != reference:
                result[name][f"speedup_b{size}"] = speedup(times[reference], times[name])
    return result


def speed_profile(model, seq_len: int, repeats: int = 10) -> dict[str, float]:
    """One model alone: its size and median latency at batch 1 and 32 (no ratio to trust or distrust)."""
    return speed_profiles({"model": model}, seq_len, rounds={1: repeats * 3, 32: repeats})["model"]

