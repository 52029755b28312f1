"""Which engine options make distillation faster on this machine: each measured side by side, in one run.

The same TinyBERT-style stage (hidden MSE + attention MSE + soft cross-entropy on the logits) trains a 2-layer
student extracted from the SST-2 teacher on an SST-2 slice, once per option set, in round-robin order so the
machine's noise falls on all of them alike. Throughput is student examples per second over the steps after the
first few (so compilation and warm-up are excluded and reported apart).

    .venv/bin/python benchmarks/training_options.py            # writes benchmarks/results/training_options.{json,md}
    .venv/bin/python benchmarks/training_options.py --summarise-only
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from alembert import api
from alembert.engine.controllers import Controller
from alembert.recipe import recipe_from_dict

ROOT = Path(__file__).resolve().parent
TEACHER = ROOT / "runs" / "throughput" / "teacher" / "student"  # made by training_throughput.py

# name -> recipe changes against the baseline: fp32, SDPA, random batches, live teacher
OPTIONS = {
    "baseline (fp32, SDPA, random batches, live teacher)": {},
    "+ length-grouped batches": {"group_by_length": True},
    "eager attention instead of SDPA": {"group_by_length": True, "attention": "eager"},
    "+ bf16 autocast": {"group_by_length": True, "precision": "bf16"},
    "+ torch.compile": {"group_by_length": True, "compile": True},
    "+ teacher-output cache (warm)": {"group_by_length": True, "teacher_cache": True},
}


class StepClock(Controller):
    """Times each optimizer step and stops the run after `steps`; the first `skip` are warm-up (compilation,
    allocator, caches)."""

    def __init__(self, skip: int, steps: int):
        self.skip, self.steps, self.times = skip, steps, []

    def on_stage_start(self, stage, trainer) -> None:
        self.times = [time.perf_counter()]

    def on_step_end(self, step, losses, trainer) -> None:
        self.times.append(time.perf_counter())
        if step >= self.steps:
            raise _Enough

    def examples_per_second(self, batch_size: int) -> float:
        steady = self.times[self.skip:]
        return batch_size * (len(steady) - 1) / (steady[-1] - steady[0])

    def warmup_seconds(self) -> float:
        return self.times[self.skip] - self.times[0]


class _Enough(Exception):
    pass


def recipe(args, name: str, changes: dict, work: Path):
    steps_fraction = args.steps * args.batch_size / args.train_limit  # epochs that make `steps` optimizer steps
    data = {
        "name": name, "task": "sst2", "teacher": str(args.teacher), "output_dir": str(work / "out"),
        "cache_dir": str(work / "cache"), "student": {"init": "extract", "layers": 2},
        "max_length": args.max_length, "batch_size": args.batch_size, "train_limit": args.train_limit,
        "dev_limit": 32, "speed": False, "teacher_cache": False, "group_by_length": False,
        # two passes' worth of epochs so the cache is built, as in a real run; only `steps` of them train
        "stages": [{"name": "ild", "epochs": max(steps_fraction, 1.01), "evaluate": False, "losses": [
            {"type": "hidden_mse"}, {"type": "attention_mse"},
            {"type": "prediction", "alpha": 1.0, "kd": "soft_ce", "tau_squared": False}]}],
    }
    data.update(changes)
    return recipe_from_dict(data, name)


def trial(args, name: str, changes: dict, work: Path, index: int) -> dict:
    clock = StepClock(args.skip, args.steps)
    run = recipe(args, f"t{index}", changes, work)
    try:
        api.distill(run, overwrite=True, controllers=[clock])
    except _Enough:
        pass  # the clock stops the run once it has its steps; no outputs are kept
    return {"option": name, "examples_per_second": clock.examples_per_second(args.batch_size),
            "warmup_seconds": clock.warmup_seconds()}


def summarise(results: dict) -> str:
    rows = results["trials"]
    names = list(dict.fromkeys(r["option"] for r in rows))
    base = statistics.median(r["examples_per_second"] for r in rows if r["option"] == names[0])
    s = results["settings"]
    lines = [
        f"Student examples/s, median of {s['rounds']} interleaved rounds of {s['steps']} steps (the first "
        f"{s['skip']} of each excluded as warm-up); batch {s['batch_size']}, SST-2 slice of {s['train_limit']}, "
        f"max length {s['max_length']}, {s['threads']} threads, {s['device']}.",
        "",
        "| option | examples/s | range | vs baseline | warm-up s (first steps) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        mine = [r for r in rows if r["option"] == name]
        speeds = [r["examples_per_second"] for r in mine]
        lines.append(f"| {name} | {statistics.median(speeds):.1f} | {min(speeds):.1f}–{max(speeds):.1f} | "
                     f"{statistics.median(speeds) / base:.2f}× | "
                     f"{statistics.median(r['warmup_seconds'] for r in mine):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=TEACHER)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()
    out = args.results_dir / "training_options.json"
    if not args.summarise_only:
        if not args.teacher.is_dir():
            sys.exit(f"{args.teacher}: no teacher; run benchmarks/training_throughput.py first (it fine-tunes one)")
        trials = []
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for i, (name, changes) in enumerate(OPTIONS.items()):
                    trials.append(trial(args, name, changes, Path(tmp), i))
                    print(f"round {r + 1}: {name}: {trials[-1]['examples_per_second']:.1f} examples/s", flush=True)
        settings = {k: v for k, v in vars(args).items() if k in ("rounds", "steps", "skip", "batch_size",
                                                                 "train_limit", "max_length")}
        settings.update(threads=torch.get_num_threads(), device="cuda" if torch.cuda.is_available() else "cpu",
                        teacher=str(args.teacher))
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"settings": settings, "trials": trials}, indent=1))
    table = summarise(json.loads(out.read_text()))
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
