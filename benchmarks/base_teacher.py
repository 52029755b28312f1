"""Benchmark: a BERT-base-size teacher (all-mpnet-base-v2, 109.5M) distilled into a 4-layer, 384-wide, 6-head,
FFN-1536 student extracted by ETD, on SST-2 (a subset), CoLA, MRPC, RTE and STS-B.

Phases (each resumable: a finished run's report.json is kept and skipped):
  bf16      the teacher fine-tuned on 2,000 SST-2 sentences for one epoch in fp32 and in bf16: dev accuracy and
            seconds side by side, to decide whether the teachers train in bf16
  teachers  all-mpnet-base-v2 fine-tuned per task (one run per task, reused by every student)
  students  per task and seed: no teacher (labels only), KD, TinyBERT-style ILD, MiniLMv2 relations, CR-ILD, each
            the shipped recipe on the same ETD-Impt student (overrides below)
  etd       the KD recipe from ETD-Rand and from depth-only extraction (4 layers at full width), against the KD
            row's ETD-Impt student, at the same training budget, evaluated every quarter epoch
  latency   teacher and the best student per task at batch 1 and 32, sequence 128: torch fp32 and ONNX int8
            (alembert bench, the models timed in one process), and the int8 drop on dev

    .venv/bin/python benchmarks/base_teacher.py [--phases bf16,teachers,students,etd,latency] [--tasks ...]
        [--seeds 42,43,44] [--workers 2]
    .venv/bin/python benchmarks/base_teacher.py --summarise-only

Writes benchmarks/results/base_teacher.{json,md}. Teachers train one at a time on both cores; students two side
by side, one thread each (their training seconds are comparable within the table, not with other tables).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _parallel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "benchmarks" / "runs" / "base"
BASE = "sentence-transformers/all-mpnet-base-v2"
DATA_SEED = 42

# per task: the training subset (None: all), max length, the teacher's epochs, the student's epochs per stage
TASKS = {
    "sst2": {"task": "sst2", "train_limit": 8000, "max_length": 64, "teacher_epochs": 2, "epochs": 3},
    "cola": {"task": "cola", "train_limit": None, "max_length": 64, "teacher_epochs": 3, "epochs": 3},
    "mrpc": {"task": "mrpc", "train_limit": None, "max_length": 128, "teacher_epochs": 3, "epochs": 4},
    "rte": {"task": "rte", "train_limit": None, "max_length": 128, "teacher_epochs": 3, "epochs": 4},
    "stsb": {"task": "stsb", "train_limit": None, "max_length": 128, "teacher_epochs": 3, "epochs": 4},
}
TEACHER_LR, STUDENT_LR = 3e-5, 1e-4
STUDENT = {"init": "extract", "layers": 4, "hidden": 384, "heads": 6, "ffn": 1536, "select": "importance"}
INITS = {"impt": STUDENT, "rand": dict(STUDENT, select="random"),
         "depth": {"init": "extract", "layers": 4}}  # depth-only: the teacher's width
# method -> (shipped recipe, overrides for a 6-head student of a 12-head teacher)
METHODS = {
    "no-teacher": ("kd", []),
    "kd": ("kd", []),
    # TinyBERT's attention MSE on the teacher's own 12 heads, the student's Q and K viewed as 12 heads of 32
    "tinybert": ("tinybert", ["stages.0.losses.1.heads=12"]),
    "minilmv2": ("minilmv2", []),  # relation heads 12 in the recipe: 32 wide in the student, 64 in the teacher
    "crild": ("crild", ["stages.0.losses.0.heads=12"]),  # Q/K/V relations re-split into 12 heads, as MiniLMv2
}
CLAIMS = (("tinybert", "kd"), ("minilmv2", "kd"), ("crild", "tinybert"), ("crild", "minilmv2"))


def _precision() -> str:
    """bf16 for the teachers when the bf16 check cost at most half a point of dev accuracy, else fp32."""
    scores = {p: _student_metric(RUNS / f"bf16-check-{p}") for p in ("fp32", "bf16")}
    if None in scores.values():
        return "fp32"
    return "bf16" if scores["fp32"] - scores["bf16"] <= 0.5 else "fp32"


def _student_metric(run: Path) -> float | None:
    report = run / "report.json"
    if not report.is_file():
        return None
    data = json.loads(report.read_text())
    return next(m for m in data["models"] if m["name"] == "student")["metrics"][data["task"]["main_metric"]]


def teacher_dir(task: str) -> Path:
    return RUNS / f"{task}-teacher" / "student"


def run_bf16(precision: str) -> None:
    from alembert import api

    api.finetune(BASE, "sst2", name=f"bf16-check-{precision}", output_dir=str(RUNS), epochs=1, lr=TEACHER_LR,
                 max_length=64, train_limit=2000, seed=DATA_SEED, precision=precision, overwrite=True, speed=False)


def run_teacher(task: str) -> None:
    from alembert import api

    cfg = TASKS[task]
    api.finetune(BASE, cfg["task"], name=f"{task}-teacher", output_dir=str(RUNS), epochs=cfg["teacher_epochs"],
                 lr=TEACHER_LR, max_length=cfg["max_length"], train_limit=cfg["train_limit"], seed=DATA_SEED,
                 data_seed=DATA_SEED, precision=_precision(), overwrite=True, speed=False)


def student_recipe(task: str, method: str, seed: int, init: str = "impt", name: str | None = None,
                   eval_every: int | None = None):
    from alembert.recipe import load_recipe, recipe_from_dict, without_teacher

    cfg = TASKS[task]
    recipe_name, extra = METHODS[method]
    recipe = load_recipe(ROOT / "recipes" / f"{recipe_name}.yaml", [
        f"name={name or f'{task}-{method}-s{seed}'}", f"task={cfg['task']}", f"teacher={teacher_dir(task)}",
        f"max_length={cfg['max_length']}", f"train_limit={cfg['train_limit'] or 'null'}", f"seed={seed}",
        f"data_seed={DATA_SEED}", f"output_dir={RUNS}", "speed=false", f"student={json.dumps(INITS[init])}",
        *extra])
    data = recipe.model_dump()
    for stage in data["stages"]:
        stage.update(epochs=cfg["epochs"], lr=STUDENT_LR)
        if eval_every and any(loss["type"] == "prediction" for loss in stage["losses"]):
            stage["eval_every"] = eval_every
    recipe = recipe_from_dict(data, recipe.name)
    return without_teacher(recipe, recipe.name) if method == "no-teacher" else recipe


def _quarter_epoch(task: str) -> int:
    from alembert.tasks import get_task

    cfg = TASKS[task]
    size = len(get_task(cfg["task"]).load("train", cfg["train_limit"], DATA_SEED))
    return max(1, size // 32 // 4)


def run_student(task: str, method: str, seed: int) -> None:
    from alembert import api

    every = _quarter_epoch(task) if method == "kd" else None  # the ETD comparison reads the KD row's curve
    api.distill(student_recipe(task, method, seed, eval_every=every), overwrite=True)


def run_etd(task: str, init: str, seed: int) -> None:
    from alembert import api

    api.distill(student_recipe(task, "kd", seed, init, f"{task}-kd-{init}-s{seed}", _quarter_epoch(task)),
                overwrite=True)


def run_latency(task: str) -> None:
    from alembert.evaluation.bench import bench

    best = _best_student(task, [42, 43, 44])
    if best is None:
        return
    out = RUNS / f"{task}-latency.json"
    result = bench([teacher_dir(task), RUNS / best / "student"], seq_lens=[128], batch_sizes=[1, 32],
                   backends=["torch-fp32", "onnx-int8"], task=TASKS[task]["task"], names=["teacher", best])
    out.write_text(json.dumps(result, indent=2) + "\n")


def _best_student(task: str, seeds: list[int]) -> str | None:
    found = [(score, f"{task}-{m}-s{s}") for m in METHODS for s in seeds
             if (score := _student_metric(RUNS / f"{task}-{m}-s{s}")) is not None]
    return max(found)[1] if found else None


# ---- tables ---------------------------------------------------------------------------------------------------


def _report(run: Path) -> dict | None:
    path = run / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _bf16_check() -> tuple[dict, list[str]]:
    """The bf16 phase: the teacher's dev accuracy and training seconds in each precision, and the choice it made."""
    runs = {p: _report(RUNS / f"bf16-check-{p}") for p in ("fp32", "bf16")}
    check = {p: {"accuracy": _student_metric(RUNS / f"bf16-check-{p}"), "train_seconds": r["training"]["train_seconds"]}
             for p, r in runs.items() if r is not None}
    if not check:
        return {}, []
    lines = ["| bf16 check (SST-2, 2,000 sentences, 1 epoch) | dev accuracy | training s |", "|---|---:|---:|"]
    lines += [f"| {p} | {c['accuracy']:.1f} | {c['train_seconds']:.0f} |" for p, c in check.items()]
    choice = _precision()
    return {**check, "teachers_train_in": choice}, lines + ["", f"Teachers train in {choice}.", ""]


def summarise(tasks: list[str], seeds: list[int]) -> tuple[dict, str]:
    bf16, lines = _bf16_check()
    results = {"bf16_check": bf16} if bf16 else {}
    for task in tasks:
        teacher = _report(RUNS / f"{task}-teacher")
        if teacher is None:
            continue
        main = teacher["task"]["main_metric"]
        student = next(m for m in teacher["models"] if m["name"] == "student")
        rows = {"teacher": {**_parallel.spread([student["metrics"][main]]), "seconds": [teacher["training"]["seconds"]]}}
        per_seed = {}
        for method in METHODS:
            reports = {s: r for s in seeds if (r := _report(RUNS / f"{task}-{method}-s{s}")) is not None}
            per_seed[method] = {s: next(m for m in r["models"] if m["name"] == "student")["metrics"][main]
                                for s, r in reports.items()}
            rows[method] = {**_parallel.spread(list(per_seed[method].values())),
                            "seconds": [r["training"]["seconds"] for r in reports.values()],
                            "parameters": _parameters(RUNS / f"{task}-{method}-s{seeds[0]}")}
        results[task] = {"metric": main, "rows": rows, "per_seed": per_seed, "claims": _claims(per_seed),
                         "etd": _etd(task, seeds, main), "latency": _latency(task)}
    names = [t for t in results if t != "bf16_check"]
    if not names:
        return results, "\n".join(lines + ["(no teacher has finished yet.)"])
    lines += ["| method | " + " | ".join(f"{t} ({results[t]['metric']})" for t in names) + " | average | % of teacher |",
              "|---|" + "---:|" * (len(names) + 2)]
    teacher_mean = _mean([results[t]["rows"]["teacher"]["mean"] for t in names])
    for method in ("teacher", *METHODS):
        cells = [_parallel.cell(results[t]["rows"][method], 1 if method == "teacher" else len(seeds)) for t in names]
        mean = _mean([results[t]["rows"][method]["mean"] for t in names])
        kept = f"{100 * mean / teacher_mean:.1f}%" if mean is not None and teacher_mean else "–"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_fmt(mean)} | {kept} |")
    lines += ["", "| paired, per seed (wins) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for better, than in CLAIMS:
        cells = [(lambda c: "–" if c is None else f"{_parallel.signed(c)} ({c['wins']}/{c['n']})")(
            results[t]["claims"].get(f"{better}-{than}")) for t in names]
        lines.append(f"| {better} − {than} | " + " | ".join(cells) + " |")
    lines += ["", "| ETD at the KD recipe's budget | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for init in INITS:
        lines.append(f"| {init} | " + " | ".join(_parallel.cell(results[t]["etd"][init], len(seeds))
                                                 for t in names) + " |")
    return results, "\n".join(lines)


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _parameters(run: Path) -> int | None:
    report = _report(run)
    if report is None:
        return None
    import math

    from safetensors import safe_open

    with safe_open(str(run / "student" / "model.safetensors"), framework="pt") as tensors:
        return sum(math.prod(tensors.get_slice(k).get_shape()) for k in tensors.keys())


def _claims(per_seed: dict) -> dict:
    claims = {}
    for better, than in CLAIMS:
        seeds = sorted(set(per_seed[better]) & set(per_seed[than]))
        if seeds:
            differences = [per_seed[better][s] - per_seed[than][s] for s in seeds]
            claims[f"{better}-{than}"] = {**_parallel.spread(differences), "differences": differences,
                                          "wins": sum(d > 0 for d in differences)}
    return claims


def _etd(task: str, seeds: list[int], main: str) -> dict:
    """Final dev score of the KD recipe from each initialisation, and each run's curve (step, score) to read the
    budget each needs to reach a score."""
    out = {}
    for init in INITS:
        runs = {s: _report(RUNS / (f"{task}-kd-s{s}" if init == "impt" else f"{task}-kd-{init}-s{s}")) for s in seeds}
        runs = {s: r for s, r in runs.items() if r is not None}
        finals = [next(m for m in r["models"] if m["name"] == "student")["metrics"][main] for r in runs.values()]
        curves = {s: [(e["step"], e[main]) for e in r["training"]["evaluations"]] for s, r in runs.items()}
        out[init] = {**_parallel.spread(finals), "curves": curves}
    return out


def _latency(task: str) -> dict | None:
    path = RUNS / f"{task}-latency.json"
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="bf16,teachers,students,etd,latency")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        kind, *rest = args.job.split(":")
        {"bf16": lambda: run_bf16(rest[0]), "teacher": lambda: run_teacher(rest[0]),
         "student": lambda: run_student(rest[0], rest[1], int(rest[2])),
         "etd": lambda: run_etd(rest[0], rest[1], int(rest[2])), "latency": lambda: run_latency(rest[0])}[kind]()
        return
    tasks, seeds, methods = args.tasks.split(","), [int(s) for s in args.seeds.split(",")], args.methods.split(",")
    phases, start = args.phases.split(","), time.time()
    logs = RUNS / "logs"
    if not args.summarise_only:
        done = lambda run: (RUNS / run / "report.json").is_file()  # noqa: E731
        if "bf16" in phases:  # the big model on both cores, one run at a time
            _parallel.run_all(__file__, logs, 1, [f"bf16:{p}" for p in ("fp32", "bf16")
                                                   if not done(f"bf16-check-{p}")], threads=2)
        if "teachers" in phases:
            _parallel.run_all(__file__, logs, 1, [f"teacher:{t}" for t in tasks if not done(f"{t}-teacher")],
                              threads=2)
        if "students" in phases:  # seed by seed, so a partial table covers every task and method
            _parallel.run_all(__file__, logs, args.workers, [f"student:{t}:{m}:{s}" for s in seeds for t in tasks
                                                             for m in methods if not done(f"{t}-{m}-s{s}")])
        if "etd" in phases:
            _parallel.run_all(__file__, logs, args.workers, [f"etd:{t}:{i}:{s}" for s in seeds for t in tasks
                                                             for i in ("rand", "depth")
                                                             if not done(f"{t}-kd-{i}-s{s}")])
        if "latency" in phases:
            _parallel.run_all(__file__, logs, 1, [f"latency:{t}" for t in tasks], threads=2)
    results, table = summarise(tasks, seeds)
    settings = {"base": BASE, "student": STUDENT, "inits": INITS, "methods": METHODS, "tasks": TASKS,
                "seeds": seeds, "data_seed": DATA_SEED, "teacher_lr": TEACHER_LR, "student_lr": STUDENT_LR,
                "teacher_precision": _precision(), "wall_seconds": None if args.summarise_only else
                round(time.time() - start)}
    _parallel.write_results(RESULTS, "base_teacher", settings, results, table)
    print(table)


if __name__ == "__main__":
    main()
