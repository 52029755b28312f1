"""Benchmark: several teachers, mean-of-teachers and RL-KD's learned teacher selection, on MRPC, RTE and SST-2.

Per dataset, a teacher pool of distinct quality built from all-MiniLM-L6-v2 (recipes/teacher_pool.yaml's three:
the whole 6-layer model; its first 3 layers; the whole model on 500 examples with another seed), each fine-tuned
on the labels. Then 2-layer students (hidden 384, layers 3 and 6 of all-MiniLM-L6-v2: the same start for every
method), each distilled with logit KD (alpha 0.7, T 2, 3 epochs, lr 1e-4) for each seed:
single-<teacher> (that teacher alone), mean (equal weights), rl-student_loss, rl-distill_loss, rl-dev_metric
(recipes/rlkd.yaml with each reward), and rl-student_loss-lr1e-2 (the same with a 10x policy lr). The data and
the teachers are the same for every seed (data_seed 42).

    .venv/bin/python benchmarks/multi_teacher.py [--datasets mrpc,rte,sst2] [--seeds 42,43,44] [--workers 2]
    .venv/bin/python benchmarks/multi_teacher.py --summarise-only

Each run is its own single-threaded process, two side by side. The training cost of RL-KD is compared with
mean-of-teachers as the ratio of their training seconds on the same dataset and seed, both measured in this one
benchmark run under the same load. RL-KD's mean selection rate of each teacher (over the seeds) gets its own
table. Writes benchmarks/results/multi_teacher.json and .md.
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
RUNS = ROOT / "benchmarks" / "runs" / "multi"
BASE = "sentence-transformers/all-MiniLM-L6-v2"
DATA_SEED = 42

DATASETS = {
    "mrpc": {"task": "mrpc", "train_limit": None, "max_length": 128},
    "rte": {"task": "rte", "train_limit": None, "max_length": 128},
    "sst2": {"task": "sst2", "train_limit": 2000, "max_length": 64},
}
TEACHERS = ("full", "half-depth", "small-data")
REWARDS = ("student_loss", "distill_loss", "dev_metric")
# A probe beside the recipe's policy lr (1e-3): is a policy that barely moves from its start the reason RL-KD
# tracks mean-of-teachers?  Same recipe, reward student_loss, policy lr 1e-2.
PROBES = {"rl-student_loss-lr1e-2": ("student_loss", ["combine.selector.lr=0.01"])}
RL_METHODS = tuple(f"rl-{r}" for r in REWARDS) + tuple(PROBES)
METHODS = tuple(f"single-{t}" for t in TEACHERS) + ("mean",) + RL_METHODS


def pool_spec(dataset: str) -> dict:
    """recipes/teacher_pool.yaml, for this dataset's task, subset and length."""
    from alembert.yaml_file import read_yaml_mapping

    cfg = DATASETS[dataset]
    spec = read_yaml_mapping(ROOT / "recipes" / "teacher_pool.yaml", "pool", "pool keys")
    spec.update(name=f"{dataset}-pool", task=cfg["task"], base=BASE, output_dir=str(RUNS),
                max_length=cfg["max_length"], train_limit=cfg["train_limit"], data_seed=DATA_SEED, speed=False)
    spec["defaults"]["lr"] = 1e-4
    return spec


def teacher_path(dataset: str, teacher: str) -> Path:
    return RUNS / f"{dataset}-pool" / teacher / "student"


def train_teacher(dataset: str, name: str) -> None:
    from alembert import api
    from alembert.pool import load_pool, teacher_recipe

    pool, _ = load_pool(pool_spec(dataset))
    api.distill(teacher_recipe(pool, next(t for t in pool.teachers if t.name == name)), overwrite=True)


def train_student(dataset: str, method: str, seed: int) -> None:
    from alembert import api
    from alembert.recipe import load_recipe

    cfg = DATASETS[dataset]
    names = (method.removeprefix("single-"),) if method.startswith("single-") else TEACHERS
    teachers = [{"name": t, "path": str(teacher_path(dataset, t))} for t in names]
    overrides = [f"name={run_name(dataset, method, seed)}", f"task={cfg['task']}", f"teachers={json.dumps(teachers)}",
                 f"student.source={BASE}", f"max_length={cfg['max_length']}",
                 f"train_limit={cfg['train_limit'] or 'null'}", f"seed={seed}", f"data_seed={DATA_SEED}",
                 f"output_dir={RUNS}", "speed=false"]
    if method.startswith("rl-"):
        reward, extra = PROBES.get(method, (method[3:], []))
        recipe = load_recipe(ROOT / "recipes" / "rlkd.yaml", overrides + [f"combine.selector.reward={reward}"] + extra)
    else:
        recipe = load_recipe(ROOT / "recipes" / "multi_teacher.yaml", overrides)
    api.distill(recipe, overwrite=True)


def run_name(dataset: str, method: str, seed: int) -> str:
    return f"{dataset}-{method}-s{seed}"


def report_of(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def student_run(dataset: str, method: str, seed: int) -> dict | None:
    report = report_of(RUNS / run_name(dataset, method, seed) / "report.json")
    if report is None:
        return None
    student = next(m for m in report["models"] if m["name"] == "student")
    return {"metric": student["metrics"][report["task"]["main_metric"]],
            "train_seconds": report["training"]["train_seconds"],
            "selection": report.get("teacher_selection", {}).get("kd", {}).get("selection_rate")}


def summarise(datasets: list[str], seeds: list[int]) -> tuple[dict, str]:
    results = {}
    for dataset in datasets:
        teachers = {t: report_of(RUNS / f"{dataset}-pool" / t / "report.json") for t in TEACHERS}
        if not all(teachers.values()):
            continue
        main = next(iter(teachers.values()))["task"]["main_metric"]
        teacher_scores = {t: next(m for m in r["models"] if m["name"] == "student")["metrics"][main]
                          for t, r in teachers.items()}
        rows, by_seed = {}, {}
        for method in METHODS:
            runs = {s: student_run(dataset, method, s) for s in seeds}
            by_seed[method] = {s: r for s, r in runs.items() if r is not None}
            rows[method] = {"values": [r["metric"] for r in by_seed[method].values()],
                            **_parallel.spread([r["metric"] for r in by_seed[method].values()]),
                            "per_seed": by_seed[method]}  # metric, training seconds, selection rates
            rates = [r["selection"] for r in by_seed[method].values() if r["selection"]]
            if rates:  # RL-KD: each teacher's mean selection rate over the seeds
                rows[method]["selection_rate"] = {t: statistics.mean(r[t] for r in rates) for t in TEACHERS}
        results[dataset] = {"metric": main, "teachers": teacher_scores, "rows": rows,
                            "claims": _claims(teacher_scores, rows, by_seed)}
    return results, _table(results, len(seeds))


def _claims(teacher_scores: dict, rows: dict, by_seed: dict) -> dict:
    singles = {t: rows[f"single-{t}"]["mean"] for t in TEACHERS if rows[f"single-{t}"]["mean"] is not None}
    best = max(teacher_scores, key=teacher_scores.get)
    claims = {"best_teacher": best,
              "best_teacher_for_the_student": max(singles, key=singles.get) if singles else None,
              "single_minus_best_teacher": {}}
    # Claim 1 seed by seed: the student of each other teacher minus the student of the best teacher.
    for teacher in TEACHERS:
        other, best_runs = by_seed[f"single-{teacher}"], by_seed[f"single-{best}"]
        seeds = sorted(set(other) & set(best_runs))
        if teacher != best and seeds:
            differences = [other[s]["metric"] - best_runs[s]["metric"] for s in seeds]
            claims["single_minus_best_teacher"][teacher] = {"difference": _parallel.spread(differences),
                                                            "wins": sum(d > 0 for d in differences)}
    mean_runs = by_seed["mean"]
    for method in RL_METHODS:
        rl_runs = by_seed[method]
        seeds = sorted(set(rl_runs) & set(mean_runs))
        if not seeds:
            continue
        differences = [rl_runs[s]["metric"] - mean_runs[s]["metric"] for s in seeds]
        ratios = [rl_runs[s]["train_seconds"] / mean_runs[s]["train_seconds"] for s in seeds]
        claims[method] = {"minus_mean": _parallel.spread(differences),
                          "wins": sum(d > 0 for d in differences), "seeds": len(seeds),
                          "cost_ratio_vs_mean": statistics.median(ratios)}
    return claims


def _table(results: dict, seeds: int) -> str:
    names = list(results)
    lines = ["| teacher or method | " + " | ".join(f"{d} ({results[d]['metric']})" for d in names) + " |",
             "|---|" + "---:|" * len(names)]
    for teacher in TEACHERS:
        lines.append(f"| teacher {teacher} | " + " | ".join(f"{results[d]['teachers'][teacher]:.1f}"
                                                          for d in names) + " |")
    for method in METHODS:
        lines.append(f"| student: {method} | " + " | ".join(_parallel.cell(results[d]["rows"][method], seeds)
                                                            for d in names) + " |")
    lines += ["", "| student of a teacher − student of the best teacher (wins) | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for teacher in TEACHERS:
        cells = []
        for d in names:
            claims = results[d]["claims"]
            pair = claims["single_minus_best_teacher"].get(teacher)
            cells.append("(best teacher)" if teacher == claims["best_teacher"] else "–" if pair is None else
                         f"{_parallel.signed(pair['difference'])} ({pair['wins']}/{pair['difference']['n']})")
        lines.append(f"| {teacher} | " + " | ".join(cells) + " |")
    lines += ["", "| RL-KD | " + " | ".join(f"{d}: RL − mean (wins), cost × mean" for d in names) + " |",
              "|---|" + "---:|" * len(names)]
    for method in RL_METHODS:
        cells = []
        for d in names:
            claim = results[d]["claims"].get(method)
            cells.append("–" if claim is None else
                         f"{_parallel.signed(claim['minus_mean'])} ({claim['wins']}/{claim['seeds']}), "
                         f"{claim['cost_ratio_vs_mean']:.2f}×")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "| RL-KD: selection rate | " + " | ".join(" / ".join(TEACHERS) + f" ({d})" for d in names)
              + " |", "|---|" + "---:|" * len(names)]
    for method in RL_METHODS:
        rates = [results[d]["rows"][method].get("selection_rate") for d in names]
        lines.append(f"| {method} | " + " | ".join("–" if r is None else " / ".join(f"{r[t]:.2f}" for t in TEACHERS)
                                                   for r in rates) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # dataset:teacher:name or dataset:method:seed
    args = parser.parse_args()
    if args.job:
        dataset, kind, rest = args.job.split(":")
        train_teacher(dataset, rest) if kind == "teacher" else train_student(dataset, kind, int(rest))
        return
    datasets, seeds = args.datasets.split(","), [int(s) for s in args.seeds.split(",")]
    start = time.time()
    if not args.summarise_only:
        teachers = [f"{d}:teacher:{t}" for d in datasets for t in TEACHERS
                    if report_of(RUNS / f"{d}-pool" / t / "report.json") is None]
        students = [f"{d}:{m}:{s}" for s in seeds for d in datasets for m in METHODS if student_run(d, m, s) is None]
        _parallel.run_all(__file__, RUNS / "logs", args.workers, teachers, students)
    results, table = summarise(datasets, seeds)
    settings = {"seeds": seeds, "data_seed": DATA_SEED, "datasets": {d: DATASETS[d] for d in results},
                "base": BASE, "wall_seconds": None if args.summarise_only else round(time.time() - start)}
    _parallel.write_results(RESULTS, "multi_teacher", settings, results, table)
    print(table)


if __name__ == "__main__":
    main()
