"""Benchmark: task-specific distillation of a fine-tuned all-MiniLM-L6-v2 into a 2-layer student.

For each task: fine-tune the teacher, then train the same 2-layer student (extracted from the teacher) three
ways with the shipped recipes: no teacher (labels only), logit KD (recipes/kd.yaml), TinyBERT-style two-stage
ILD (recipes/tinybert.yaml). Every model is scored on the task's dev set by the same code; latency is measured
in the same process, so the teacher/student latency ratio compares like with like.

    .venv/bin/python benchmarks/task_distillation.py [--tasks sst2,mrpc,cola,rte,stsb] [--seeds 42]

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
from alembert.recipe import load_recipe, recipe_from_dict  # noqa: E402

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


def run_task(task: str, seed: int, out: Path, student_epochs: float | None) -> dict:
    cfg = TASKS[task]
    common = [f"task={task}", f"max_length={cfg['max_length']}", f"seed={seed}", f"output_dir={out}",
              f"train_limit={cfg['train_limit'] if cfg['train_limit'] else 'null'}"]
    teacher = api.finetune("sentence-transformers/all-MiniLM-L6-v2", task, name=f"{task}-teacher-s{seed}",
                           output_dir=str(out), epochs=cfg["teacher_epochs"], lr=1e-4,
                           max_length=cfg["max_length"], train_limit=cfg["train_limit"], seed=seed, overwrite=True)
    rows = {"teacher": {**teacher.report["models"][0], "seconds": teacher.report["training"]["seconds"]}}
    for method in METHODS:
        recipe_file = ROOT / "recipes" / ("kd.yaml" if method == "kd" else "tinybert.yaml")
        overrides = common + [f"name={task}-{method}-s{seed}", f"teacher={teacher.student_dir}"]
        if student_epochs:
            overrides += [f"stages.{i}.epochs={student_epochs}" for i in range(2 if method == "tinybert" else 1)]
        recipe = load_recipe(recipe_file, overrides)
        if method == "no-teacher":  # the prediction stage alone, on the labels, same student and schedule
            data = recipe.model_dump()
            data.update(teacher=None, stages=[dict(data["stages"][-1], losses=[{"type": "prediction", "alpha": 0}])],
                        student=dict(data["student"], source=str(teacher.student_dir)))
            recipe = recipe_from_dict(data, "no-teacher")
        run = api.distill(recipe, overwrite=True)
        student = next(m for m in run.report["models"] if m["name"] == "student")
        rows[method] = {**student, "seconds": run.report["training"]["seconds"]}
    return rows


def summarise(results: dict) -> str:
    tasks = list(results)
    metric_of = {t: next(iter(results[t].values()))["metric_name"] for t in tasks}
    header = "| model | " + " | ".join(f"{t} ({metric_of[t]})" for t in tasks) + \
             " | average | % of teacher | parameters | latency b1 vs teacher | latency b32 vs teacher |"
    lines = [header, "|---|" + "---:|" * (len(tasks) + 5)]
    teacher_avg = statistics.mean(results[t]["teacher"]["mean"] for t in tasks)
    for model in ("teacher",) + METHODS:
        cells = []
        for t in tasks:
            r = results[t][model]
            cells.append(f"{r['mean']:.1f}" + (f" ± {r['std']:.1f}" if r["n"] > 1 else ""))
        avg = statistics.mean(results[t][model]["mean"] for t in tasks)
        first = results[tasks[0]][model]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {avg:.1f} | {100 * avg / teacher_avg:.1f}% | "
                     f"{first['parameters'] / 1e6:.1f}M | {first['speedup_b1']:.2f}× | {first['speedup_b32']:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="42", help="comma-separated seeds (teacher and students per seed)")
    parser.add_argument("--student-epochs", type=float, help="override every student stage's epochs")
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "runs"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    raw, start = {}, time.time()
    for task in args.tasks.split(","):
        raw[task] = [run_task(task, seed, Path(args.output_dir), args.student_epochs) for seed in seeds]
        print(f"[{time.time() - start:.0f}s] {task} done", flush=True)
    results = {}
    for task, per_seed in raw.items():
        results[task] = {}
        for model in ("teacher",) + METHODS:
            metric = next(iter(per_seed[0][model]["metrics"]))  # the task's main metric comes first
            values = [s[model]["metrics"][metric] for s in per_seed]
            speed = per_seed[0][model]["speed"]
            teacher_speed = per_seed[0]["teacher"]["speed"]
            results[task][model] = {
                "metric_name": metric, "values": values, "n": len(values), "mean": statistics.mean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0, "parameters": speed["parameters"],
                "latency_ms_b1": speed["latency_ms_b1"], "latency_ms_b32": speed["latency_ms_b32"],
                "speedup_b1": teacher_speed["latency_ms_b1"] / speed["latency_ms_b1"],
                "speedup_b32": teacher_speed["latency_ms_b32"] / speed["latency_ms_b32"],
                "train_seconds": [s[model]["seconds"] for s in per_seed], "all_metrics": [s[model]["metrics"]
                                                                                        for s in per_seed],
            }
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"seeds": seeds, "tasks": {t: TASKS[t] for t in raw}, "student_epochs": args.student_epochs,
                "wall_seconds": round(time.time() - start), "threads": os.cpu_count()}
    (RESULTS / "task_distillation.json").write_text(json.dumps({"settings": settings, "results": results},
                                                               indent=2) + "\n")
    table = summarise(results)
    (RESULTS / "task_distillation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
