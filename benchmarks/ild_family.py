"""Benchmark: the intermediate-layer family and CR-ILD on GLUE tasks and two stressed variants.

Per dataset, one teacher (all-MiniLM-L6-v2 fine-tuned on exactly the training set the students see, stressed
or not), then seven students of 2 layers, hidden 384 (extracted from that teacher), each trained by a shipped
recipe with every stage's epochs set by the dataset, for each seed:
no-teacher (labels only), kd, tinybert (uniform ILD), pkd, minilm, lild (last-layer Q/K/V relations), crild
(lild + MixUp + consistency). Seeds change the student's training (order, dropout, MixUp, heads); the data and
the teacher are the same for every seed (data_seed 42), so the spread is the training's, not the sampling's.

    .venv/bin/python benchmarks/ild_family.py [--datasets sst2,...] [--seeds 42,43,44] [--workers 2]
    .venv/bin/python benchmarks/ild_family.py --summarise-only

Each run goes in its own process with one thread; --workers of them run side by side (accuracy only: no timing
is compared here). Writes benchmarks/results/ild_family.json and .md (the tables in benchmarks/RESULTS.md): the
scores, mean ± std over the seeds, and CR-ILD's claims as paired differences per seed (lild − tinybert, crild −
tinybert, crild − lild: mean ± std, and on how many seeds the first method wins).
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
RUNS = ROOT / "benchmarks" / "runs" / "ild"

# task, train subset, max length, the stress transforms, epochs of every student stage, teacher epochs
DATASETS = {
    "sst2": {"task": "sst2", "train_limit": 2000, "max_length": 64, "epochs": 2, "teacher_epochs": 3},
    "cola": {"task": "cola", "train_limit": 4000, "max_length": 64, "epochs": 2, "teacher_epochs": 3},
    "mrpc": {"task": "mrpc", "train_limit": None, "max_length": 128, "epochs": 2, "teacher_epochs": 3},
    "rte": {"task": "rte", "train_limit": None, "max_length": 128, "epochs": 2, "teacher_epochs": 3},
    "sst2-1k": {"task": "sst2", "train_limit": None, "max_length": 64, "epochs": 4, "teacher_epochs": 6,
                "stress": {"downsample": 1000}},
    "mrpc-noisy30": {"task": "mrpc", "train_limit": None, "max_length": 128, "epochs": 2, "teacher_epochs": 3,
                     "stress": {"flip_labels": 0.3}},
}
METHODS = ("no-teacher", "kd", "tinybert", "pkd", "minilm", "lild", "crild")
RECIPE = {"no-teacher": "tinybert", "kd": "kd", "tinybert": "tinybert", "pkd": "pkd", "minilm": "minilm",
          "lild": "lild", "crild": "crild"}
DATA_SEED = 42


# CR-ILD's claims: last-layer ILD beats uniform ILD on small or noisy data, and CR-ILD beats both
CLAIMS = (("lild", "tinybert"), ("crild", "tinybert"), ("crild", "lild"))


def teacher_dir(dataset: str) -> Path:
    return RUNS / f"{dataset}-teacher" / "student"


def train_teacher(dataset: str) -> None:
    from alembert import api

    cfg = DATASETS[dataset]
    api.finetune("sentence-transformers/all-MiniLM-L6-v2", cfg["task"], name=f"{dataset}-teacher",
                 output_dir=str(RUNS), epochs=cfg["teacher_epochs"], lr=1e-4, max_length=cfg["max_length"],
                 train_limit=cfg["train_limit"], seed=DATA_SEED, data_seed=DATA_SEED, stress=cfg.get("stress"),
                 overwrite=True, speed=False)


def train_student(dataset: str, method: str, seed: int) -> None:
    from alembert import api
    from alembert.recipe import load_recipe, recipe_from_dict, without_teacher

    cfg = DATASETS[dataset]
    recipe = load_recipe(ROOT / "recipes" / f"{RECIPE[method]}.yaml", [
        f"name={dataset}-{method}-s{seed}", f"task={cfg['task']}", f"teacher={teacher_dir(dataset)}",
        f"max_length={cfg['max_length']}", f"train_limit={cfg['train_limit'] or 'null'}", f"seed={seed}",
        f"data_seed={DATA_SEED}", f"output_dir={RUNS}", "speed=false",
        f"stress={json.dumps(cfg.get('stress'))}"])
    data = recipe.model_dump()
    for stage in data["stages"]:
        stage["epochs"] = cfg["epochs"]
    recipe = recipe_from_dict(data, recipe.name)
    if method == "no-teacher":  # the prediction stage alone, on the labels, same student and schedule
        recipe = without_teacher(recipe, recipe.name)
    api.distill(recipe, overwrite=True)


def metric_of(dataset: str, method: str, seed: int) -> dict | None:
    path = RUNS / f"{dataset}-{method}-s{seed}" / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    student = next(m for m in report["models"] if m["name"] == "student")
    return {"metrics": student["metrics"], "main": report["task"]["main_metric"],
            "seconds": report["training"]["seconds"]}


def summarise(datasets: list[str], seeds: list[int]) -> tuple[dict, str]:
    results = {}
    for dataset in datasets:
        teacher = RUNS / f"{dataset}-teacher" / "report.json"
        if not teacher.is_file():
            continue
        report = json.loads(teacher.read_text())
        main = report["task"]["main_metric"]
        rows = {"teacher": {"values": [next(m for m in report["models"] if m["name"] == "student")["metrics"][main]],
                            "train_examples": report["data"]["train_examples"]}}
        by_seed = {}
        for method in METHODS:
            by_seed[method] = {s: r for s in seeds if (r := metric_of(dataset, method, s)) is not None}
            rows[method] = {"values": [r["metrics"][main] for r in by_seed[method].values()],
                            "seconds": [r["seconds"] for r in by_seed[method].values()]}
        for row in rows.values():
            row.update(_parallel.spread(row["values"]))
        results[dataset] = {"metric": main, "rows": rows, "claims": _claims(by_seed, main)}
    names = list(results)
    lines = ["| method | " + " | ".join(f"{d} ({results[d]['metric']})" for d in names) + " | average |",
             "|---|" + "---:|" * (len(names) + 1)]
    for method in ("teacher",) + METHODS:
        cells, means = [], []
        for d in names:
            row = results[d]["rows"][method]
            if row["mean"] is not None:
                means.append(row["mean"])
            cells.append(_parallel.cell(row, row["n"] if method == "teacher" else len(seeds)))
        average = f"{statistics.mean(means):.1f}" if len(means) == len(names) and names else "–"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {average} |")
    lines += ["", "| paired, per seed | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for better, than in CLAIMS:
        cells = []
        for d in names:
            claim = results[d]["claims"].get(f"{better}-{than}")
            cells.append("–" if claim is None else f"{_parallel.signed(claim)} ({claim['wins']}/{claim['n']})")
        lines.append(f"| {better} − {than} (wins) | " + " | ".join(cells) + " |")
    return results, "\n".join(lines)


def _claims(by_seed: dict, main: str) -> dict:
    """The paper's claims as paired differences over the seeds both methods have: mean ± std, and wins."""
    claims = {}
    for better, than in CLAIMS:
        seeds = sorted(set(by_seed[better]) & set(by_seed[than]))
        if seeds:
            differences = [by_seed[better][s]["metrics"][main] - by_seed[than][s]["metrics"][main] for s in seeds]
            claims[f"{better}-{than}"] = _parallel.paired(differences)
    return claims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # dataset:teacher or dataset:method:seed, in-process
    args = parser.parse_args()
    if args.job:
        parts = args.job.split(":")
        train_teacher(parts[0]) if parts[1] == "teacher" else train_student(parts[0], parts[1], int(parts[2]))
        return
    datasets, seeds = args.datasets.split(","), [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    start = time.time()
    if not args.summarise_only:
        teachers = [f"{d}:teacher" for d in datasets if not (RUNS / f"{d}-teacher" / "report.json").is_file()]
        students = [f"{d}:{m}:{s}" for s in seeds for d in datasets for m in methods if metric_of(d, m, s) is None]
        _parallel.run_all(__file__, RUNS / "logs", args.workers, teachers, students)
    results, table = summarise(datasets, seeds)
    settings = {"seeds": seeds, "data_seed": DATA_SEED, "datasets": {d: DATASETS[d] for d in results},
                "wall_seconds": None if args.summarise_only else round(time.time() - start)}
    _parallel.write_results(RESULTS, "ild_family", settings, results, table)
    print(table)


if __name__ == "__main__":
    main()
