"""Benchmark: task-specific distillation of a fine-tuned all-MiniLM-L6-v2 into a 2-layer student.

For each task: fine-tune the teacher, then train the same 2-layer student (extracted from the teacher) three
ways with the shipped recipes: no teacher (labels only), logit KD (recipes/kd.yaml), TinyBERT-style two-stage
ILD (recipes/tinybert.yaml). Every model is scored on the task's dev set by the same code; latency is measured
in the same process, so the teacher/student latency ratio compares like with like.

    .venv/bin/python benchmarks/task_distillation.py [--tasks sst2,mrpc,cola,rte,stsb] [--seeds 42]
    .venv/bin/python benchmarks/task_distillation.py --summarise-only   # re-tabulate finished runs

Writes benchmarks/results/task_distillation.json and .md (the table pasted into benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alembert import api  # noqa: E402
from alembert.recipe import load_recipe, without_teacher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Per task: train subset (None = all), max length, teacher epochs. Students use the recipes' own epochs.
TASKS = {
    "sst2": {"train_limit": 4000, "max_length": 64, "teacher_epochs": 2},
    "mrpc": {"train_limit": None, "max_length": 128, "teacher_epochs": 3},
    "cola": {"train_limit": 4000, "max_length": 64, "teacher_epochs": 3},
    "rte": {"train_limit": None, "max_length": 128, "teacher_epochs": 3},
    "stsb": {"train_limit": 4000, "max_length": 128, "teacher_epochs": 3},
}
METHODS = ("no-teacher", "kd", "tinybert")


def run_task(task: str, seed: int, out: Path) -> None:
    cfg = TASKS[task]
    common = [f"task={task}", f"max_length={cfg['max_length']}", f"seed={seed}", f"output_dir={out}",
              f"train_limit={cfg['train_limit'] if cfg['train_limit'] else 'null'}"]
    teacher = api.finetune("sentence-transformers/all-MiniLM-L6-v2", task, name=f"{task}-teacher-s{seed}",
                           output_dir=str(out), epochs=cfg["teacher_epochs"], lr=1e-4,
                           max_length=cfg["max_length"], train_limit=cfg["train_limit"], seed=seed, overwrite=True)
    for method in METHODS:
        recipe_file = ROOT / "recipes" / ("kd.yaml" if method == "kd" else "tinybert.yaml")
        recipe = load_recipe(recipe_file, common + [f"name={task}-{method}-s{seed}", f"teacher={teacher.student_dir}"])
        if method == "no-teacher":  # the prediction stage alone, on the labels, same student and schedule
            recipe = without_teacher(recipe, recipe.name)
        api.distill(recipe, overwrite=True)


def collect(task: str, seed: int, out: Path) -> dict | None:
    """Each model's dev metrics from its run's report.json; None while a run is missing."""
    rows = {}
    for model in ("teacher",) + METHODS:
        path = out / f"{task}-{model}-s{seed}" / "report.json"
        if not path.is_file():
            return None
        report = json.loads(path.read_text())
        student = next(m for m in report["models"] if m["name"] == "student")
        rows[model] = {"metrics": student["metrics"], "seconds": report["training"]["seconds"]}
    # Speed: teacher and student measured side by side in the TinyBERT run (every student has the same shape).
    side_by_side = json.loads((out / f"{task}-tinybert-s{seed}" / "report.json").read_text())["models"]
    rows["speed"] = {m["name"]: m["speed"] for m in side_by_side}
    return rows


def summarise(results: dict) -> str:
    tasks = list(results)
    metric_of = {t: results[t]["teacher"]["metric_name"] for t in tasks}
    lines = ["| model | " + " | ".join(f"{t} ({metric_of[t]})" for t in tasks) + " | average | % of teacher | "
             "parameters |", "|---|" + "---:|" * (len(tasks) + 3)]
    teacher_avg = statistics.mean(results[t]["teacher"]["mean"] for t in tasks)
    for model in ("teacher",) + METHODS:
        cells = [f"{results[t][model]['mean']:.1f}" + (f" ± {results[t][model]['std']:.1f}"
                                                       if results[t][model]["n"] > 1 else "") for t in tasks]
        avg = statistics.mean(results[t][model]["mean"] for t in tasks)
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {avg:.1f} | {100 * avg / teacher_avg:.1f}% | "
                     f"{results[tasks[0]][model]['parameters'] / 1e6:.1f}M |")
    lines += ["", "| task (max length) | teacher b1 / b32 (ms) | student b1 / b32 (ms) | speed-up b1 | speed-up b32 |",
              "|---|---:|---:|---:|---:|"]
    for t in tasks:
        te, st = results[t]["teacher"], results[t]["tinybert"]
        lines.append(f"| {t} ({TASKS[t]['max_length']}) | {te['latency_ms_b1']:.1f} / {te['latency_ms_b32']:.0f} | "
                     f"{st['latency_ms_b1']:.1f} / {st['latency_ms_b32']:.0f} | {st['speedup_b1']:.2f}× | "
                     f"{st['speedup_b32']:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="42", help="comma-separated seeds (teacher and students per seed)")
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "runs"))
    parser.add_argument("--summarise-only", action="store_true", help="tabulate the runs already in --output-dir")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out, start = Path(args.output_dir), time.time()
    tasks = args.tasks.split(",")
    if not args.summarise_only:
        for task in tasks:
            for seed in seeds:
                run_task(task, seed, out)
            print(f"[{time.time() - start:.0f}s] {task} done", flush=True)
    results = {}
    for task in tasks:
        per_seed = [r for r in (collect(task, seed, out) for seed in seeds) if r is not None]
        if not per_seed:
            print(f"{task}: no complete runs in {out}, left out")
            continue
        results[task] = {}
        speed = per_seed[0]["speed"]
        for model in ("teacher",) + METHODS:
            metric = next(iter(per_seed[0][model]["metrics"]))  # the task's main metric comes first
            values = [s[model]["metrics"][metric] for s in per_seed]
            shape = speed["teacher" if model == "teacher" else "student"]
            results[task][model] = {
                "metric_name": metric, "values": values, "n": len(values), "mean": statistics.mean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0, "parameters": shape["parameters"],
                "latency_ms_b1": shape["latency_ms_b1"], "latency_ms_b32": shape["latency_ms_b32"],
                "speedup_b1": speed["teacher"]["latency_ms_b1"] / shape["latency_ms_b1"],
                "speedup_b32": speed["teacher"]["latency_ms_b32"] / shape["latency_ms_b32"],
                "train_seconds": [s[model]["seconds"] for s in per_seed],
                "all_metrics": [s[model]["metrics"] for s in per_seed],
            }
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"seeds": seeds, "tasks": {t: TASKS[t] for t in results}, "threads": os.cpu_count(),
                "wall_seconds": None if args.summarise_only else round(time.time() - start)}
    (RESULTS / "task_distillation.json").write_text(json.dumps({"settings": settings, "results": results},
                                                               indent=2) + "\n")
    table = summarise(results)
    (RESULTS / "task_distillation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
