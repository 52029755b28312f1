"""Benchmark: distilling a named-entity tagger (CoNLL-2003) and an extractive QA reader (SQuAD v1.1) into 4-layer
students.

Per task, one teacher: all-MiniLM-L6-v2 (6 layers, hidden 384) fine-tuned with a token-classification head on
CoNLL-2003 train, and with a QA head on squad-dev-split (the first 40 articles of the SQuAD v1.1 dev file, the only
SQuAD file at hand; its last 8 articles, 1,589 questions, are held out and never trained on). Then a 4-layer
student extracted from the teacher (its layers 2, 3, 5, 6 by the uniform map, and its head), trained three ways
for each seed with the shipped recipes, every stage's epochs set per task: no-teacher (recipes/tinybert.yaml's
prediction stage on the labels alone), kd (recipes/kd.yaml: KL at T = 2 with tau^2, alpha 0.9) and tinybert
(recipes/tinybert.yaml: embedding + hidden-state MSE and attention-score MSE on the uniform map, then soft
cross-entropy on the teacher's outputs). The data and the teacher are the same for every seed (data_seed 42).

Scores: entity F1 on CoNLL-2003 dev (testa) and test (testb); exact match and F1 on the held-out SQuAD articles.
% of teacher: the student's mean over seeds against the teacher on the main metric (entity F1 on test, F1).
Paired per seed on the main metric: kd and tinybert against no-teacher, tinybert against kd, each "A beats B" stated
reproduced or not by the shared rule (_parallel.beats); the target, the best student keeping at least 95 % of its
teacher's CoNLL F1 and 93 % of its SQuAD F1 (TextBrewer's T4-tiny: 97.8 and 94.8 %), stated met or not.
Latency: teacher and student of each tinybert run, timed together, interleaved (evaluation/speed.py), at batch 1
and 32, at the task's max_length, with one thread (every job runs single-threaded, two side by side).

Sized for a 2-core CPU shared with other work (no GPU here): CoNLL all 14,041 training sentences, max_length 192
(the longest sentence takes 164 tokens), teacher 3 epochs, each student stage 3 epochs; SQuAD windows of 256
tokens (stride 85), the teacher on all 8,981 training questions for 2 epochs, the students on a seeded 4,000 of
them, each stage 2 epochs, and the tinybert runs with a live teacher (an attention-score cache of the windows, ~170
tokens each, would take ~12 GB for 4,000 questions). Estimated: ~25 h of single-thread jobs, ~13 h of wall time with
two side by side on this machine as loaded when it was sized (load ~8 on 2 cores); less on an idle one.

    .venv/bin/python benchmarks/ner_qa.py [--tasks conll2003,squad] [--seeds 42,43,44] [--workers 2]
    .venv/bin/python benchmarks/ner_qa.py --quick          # a smoke run: tiny subsets, 1 epoch, 1 seed
    .venv/bin/python benchmarks/ner_qa.py --summarise-only

Resumable: a run whose scores.json exists, here or in the ledger, is skipped; on a new machine a teacher is retrained
only for a student still to run. Writes benchmarks/results/ner_qa.json and .md, and the ledger ner_qa_runs.json
(every finished run's scores.json, committed); --quick: the same files under benchmarks/runs/ner_qa-quick/, so a
smoke run never overwrites the results.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _parallel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = "sentence-transformers/all-MiniLM-L6-v2"
DATA_SEED = 42
METHODS = ("no-teacher", "kd", "tinybert")
COMPARISONS = (("kd", "no-teacher"), ("tinybert", "no-teacher"), ("tinybert", "kd"))  # A beats B, seed by seed
# the bar: the best student keeps this % of its teacher's main metric (TextBrewer's T4-tiny: 97.8 and 94.8)
TARGETS = {"conll2003": 95.0, "squad": 93.0}
QUICK = "ALEMBERT_NER_QA_QUICK"  # set for the jobs of a --quick run (they run in their own processes)
LEDGER: dict = {}  # run name -> its scores.json; main() reads it from ledger_path() once --quick is known

# per task: what it scores on, and its sizes (full run; --quick below)
TASKS = {
    "conll2003": {"task": "conll2003", "splits": ("dev", "test"), "main": ("test", "entity_f1"),
                  "metrics": ("entity_f1",), "max_length": 192, "train_limit": None, "student_train_limit": None,
                  "dev_limit": None, "test_limit": None, "teacher_epochs": 3, "epochs": 3, "lr": 1e-4,
                  "live_ild": False},
    "squad": {"task": "squad-dev-split", "splits": ("dev",), "main": ("dev", "f1"), "metrics": ("exact_match", "f1"),
              "max_length": 256, "train_limit": None, "student_train_limit": 4000, "dev_limit": None,
              "test_limit": None, "teacher_epochs": 2, "epochs": 2, "lr": 1e-4, "live_ild": True},
}
QUICK_SIZES = {"conll2003": {"train_limit": 64, "student_train_limit": 64, "dev_limit": 32, "test_limit": 32,
                             "teacher_epochs": 1, "epochs": 1},
               "squad": {"train_limit": 48, "student_train_limit": 48, "dev_limit": 24, "max_length": 128,
                         "teacher_epochs": 1, "epochs": 1}}


def quick() -> bool:
    return os.environ.get(QUICK) == "1"


def config(task: str) -> dict:
    return {**TASKS[task], **(QUICK_SIZES[task] if quick() else {})}


def runs_dir() -> Path:
    return ROOT / "benchmarks" / "runs" / ("ner_qa-quick" if quick() else "ner_qa")


def results_dir() -> Path:
    return runs_dir() if quick() else ROOT / "benchmarks" / "results"


def ledger_path() -> Path:
    return results_dir() / "ner_qa_runs.json"


def run_dir(task: str, model: str, seed: int | None = None) -> Path:
    return runs_dir() / (f"{task}-teacher" if model == "teacher" else f"{task}-{model}-s{seed}")


def score_splits(task: str, folder: Path) -> None:
    """The run's student scored on each of the task's splits, into scores.json (which marks the run as done)."""
    from alembert import api

    cfg = config(task)
    report = json.loads((folder / "report.json").read_text())
    scores = {"dev": next(m for m in report["models"] if m["name"] == "student")["metrics"],
              "seconds": report["training"]["seconds"],
              "speed": {m["name"]: m["speed"] for m in report["models"] if "speed" in m}}
    for split in cfg["splits"]:
        if split != "dev":  # dev was scored by the run itself, at the run's max_length
            scores[split] = api.evaluate(str(folder / "student"), cfg["task"], split, max_length=cfg["max_length"],
                                         limit=cfg[f"{split}_limit"])["metrics"]
    (folder / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")


def train_teacher(task: str) -> None:
    from alembert import api

    cfg = config(task)
    api.finetune(BASE, cfg["task"], name=run_dir(task, "teacher").name, output_dir=str(runs_dir()),
                 epochs=cfg["teacher_epochs"], lr=cfg["lr"], max_length=cfg["max_length"],
                 train_limit=cfg["train_limit"], dev_limit=cfg["dev_limit"], seed=DATA_SEED, data_seed=DATA_SEED,
                 overwrite=True, speed=False)
    score_splits(task, run_dir(task, "teacher"))


def train_student(task: str, method: str, seed: int) -> None:
    from alembert import api
    from alembert.recipe import load_recipe, recipe_from_dict, without_teacher

    cfg = config(task)
    recipe = load_recipe(ROOT / "recipes" / ("kd.yaml" if method == "kd" else "tinybert.yaml"), [
        f"name={run_dir(task, method, seed).name}", f"task={cfg['task']}",
        f"teacher={run_dir(task, 'teacher') / 'student'}", "student.layers=4", f"max_length={cfg['max_length']}",
        f"train_limit={cfg['student_train_limit'] or 'null'}", f"dev_limit={cfg['dev_limit'] or 'null'}",
        f"seed={seed}",
        f"data_seed={DATA_SEED}", f"output_dir={runs_dir()}", f"speed={'true' if method == 'tinybert' else 'false'}",
        f"teacher_cache={'false' if cfg['live_ild'] and method == 'tinybert' else 'true'}"])
    data = recipe.model_dump()
    for stage in data["stages"]:
        stage.update(epochs=cfg["epochs"], lr=cfg["lr"])
    recipe = recipe_from_dict(data, recipe.name)
    if method == "no-teacher":  # the prediction stage alone, on the labels, same student and schedule
        recipe = without_teacher(recipe, recipe.name)
    api.distill(recipe, overwrite=True)
    score_splits(task, run_dir(task, method, seed))


def scores(task: str, model: str, seed: int | None = None) -> dict | None:
    """A finished run's scores (from its folder here, else the ledger); None before it has run."""
    folder = run_dir(task, model, seed)
    return _parallel.recorded(LEDGER, folder.name, folder / "scores.json", lambda scored: scored)


def jobs(tasks: list[str], seeds: list[int]) -> tuple[list[str], list[str]]:
    """The teachers' jobs and the students' jobs still to run. A teacher missing here trains when a student of its
    task is still to run, or when even the ledger lacks its scores."""
    students = [f"{t}:{m}:{s}" for s in seeds for t in tasks for m in METHODS if scores(t, m, s) is None]
    teachers = [f"{t}:teacher" for t in tasks if not (run_dir(t, "teacher") / "scores.json").is_file()
                and (any(job.startswith(f"{t}:") for job in students) or scores(t, "teacher") is None)]
    return teachers, students


def compare(runs: dict, split: str, metric: str) -> dict:
    """Each comparison's per-seed paired differences on the main metric, over the seeds both methods have run
    (`runs`: method -> seed -> scores), and its verdict by the shared rule (a one-sided paired t-test at 5 %, 3
    seeds at least)."""
    out = {}
    for a, b in COMPARISONS:
        differences = [runs[a][s][split][metric] - runs[b][s][split][metric] for s in runs[a] if s in runs[b]]
        out[f"{a} − {b}"] = {**_parallel.paired(differences), "verdict": _parallel.beats(differences)}
    return out


def target(task: str, rows: dict, main: str, seeds: int) -> dict:
    """Whether the best student (highest mean main metric) keeps the task's target share of its teacher: undecided
    until every student has all its seeds."""
    best = max(METHODS, key=lambda name: -math.inf if rows[name]["percent_of_teacher"] is None
               else rows[name]["percent_of_teacher"])
    complete = all(rows[name][main]["n"] == seeds for name in METHODS)
    kept = rows[best]["percent_of_teacher"]
    verdict = "undecided" if not complete or kept is None else "met" if kept >= TARGETS[task] else "not met"
    return {"best": best, "percent_of_teacher": kept, "target": TARGETS[task], "verdict": verdict}


def summarise(tasks: list[str], seeds: list[int]) -> tuple[dict, str]:
    results, lines = {}, []
    for task in tasks:
        cfg, teacher = config(task), scores(task, "teacher")
        if teacher is None:
            continue
        columns = [(split, metric) for split in cfg["splits"] for metric in cfg["metrics"]]
        rows = {"teacher": {f"{s}/{m}": _parallel.spread([teacher[s][m]]) for s, m in columns}}
        runs = {method: {seed: r for seed in seeds if (r := scores(task, method, seed)) is not None}
                for method in METHODS}
        for method, done in runs.items():
            rows[method] = {f"{s}/{m}": _parallel.spread([r[s][m] for r in done.values()]) for s, m in columns}
            rows[method]["seconds"] = [r["seconds"] for r in done.values()]
        main = "/".join(cfg["main"])
        for row in rows.values():
            mean = row[main]["mean"]
            row["percent_of_teacher"] = None if mean is None else 100 * mean / teacher[cfg["main"][0]][cfg["main"][1]]
        speed = next((r["speed"] for r in runs["tinybert"].values()), {})
        speed = dict(sorted(speed.items(), key=lambda item: item[0] != "teacher"))  # the ledger sorts its keys
        paired, goal = compare(runs, *cfg["main"]), target(task, rows, main, len(seeds))
        results[task] = {"rows": rows, "speed": speed, "columns": [f"{s}/{m}" for s, m in columns], "main": main,
                         "paired": paired, "target": goal}
        lines += [f"### {task} ({cfg['task']})", "",
                  "| model | " + " | ".join(f"{s} {m}" for s, m in columns) + f" | % of teacher ({main}) |",
                  "|---|" + "---:|" * (len(columns) + 1)]
        for name, row in rows.items():
            kept = row["percent_of_teacher"]
            lines.append(f"| {name} | " + " | ".join(_parallel.cell(row[f"{s}/{m}"], 1 if name == "teacher" else
                                                                   len(seeds)) for s, m in columns)
                         + f" | {'–' if kept is None else f'{kept:.1f}%'} |")
        lines += ["", f"| paired, per seed ({main}) | difference | wins | claim: A beats B |", "|---|---:|---:|---|"]
        lines += [f"| {name} | {'–' if d['mean'] is None else _parallel.signed(d)} | {d['wins']}/{d['n']} | "
                  f"{d['verdict']} |" for name, d in paired.items()]
        kept = "–" if goal["percent_of_teacher"] is None else f"{goal['percent_of_teacher']:.1f} %"
        lines.append(f"\nTarget: the best student ({goal['best']}, {kept} of the teacher's {main}) keeps at least "
                     f"{goal['target']:.0f} %: {goal['verdict']}.")
        if speed:
            lines += ["", "| model | parameters | latency b1 (ms) | latency b32 (ms) |", "|---|---:|---:|---:|"]
            lines += [f"| {name} | {s['parameters'] / 1e6:.1f}M | {s['latency_ms_b1']:.1f} | "
                      f"{s['latency_ms_b32']:.1f} |" for name, s in speed.items()]
            lines.append(f"\nLatency at sequence length {next(iter(speed.values()))['seq_len']}, "
                         f"{next(iter(speed.values()))['threads']} thread(s), teacher and student timed together.")
        lines.append("")
    _parallel.write_ledger(ledger_path(), LEDGER)  # after every run above was read into it
    return results, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny subsets, 1 epoch, seed 42 only")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # task:teacher or task:method:seed, in this process
    args = parser.parse_args()
    if args.quick:
        os.environ[QUICK] = "1"  # the jobs' processes inherit it
    if args.job:
        parts = args.job.split(":")
        train_teacher(parts[0]) if parts[1] == "teacher" else train_student(parts[0], parts[1], int(parts[2]))
        return
    LEDGER.update(_parallel.read_ledger(ledger_path()))
    tasks = args.tasks.split(",")
    seeds = [42] if args.quick else [int(s) for s in args.seeds.split(",")]
    start = time.time()
    if not args.summarise_only:
        teachers, students = jobs(tasks, seeds)
        _parallel.run_all(__file__, runs_dir() / "logs", args.workers, teachers, students)
    results, table = summarise(tasks, seeds)
    settings = {"quick": args.quick, "seeds": seeds, "data_seed": DATA_SEED, "base": BASE, "student_layers": 4,
                "tasks": {t: config(t) for t in results},
                "wall_seconds": None if args.summarise_only else round(time.time() - start)}
    _parallel.write_results(results_dir(), "ner_qa", settings, results, table)
    print(table)


if __name__ == "__main__":
    main()
