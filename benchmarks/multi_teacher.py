"""Benchmark: several teachers of distinct architecture and quality, their combinations, and RL-KD's learned
per-example selection with each reward, on MRPC, RTE and SST-2.

The pool per dataset, each teacher fine-tuned on the labels:
  minilm     all-MiniLM-L6-v2, whole (6 layers, 384 wide, 22.7M parameters)
  mpnet      all-mpnet-base-v2, whole (12 layers, 768 wide, 109.5M: BERT-base size; its own tokenizer)
  minilm-3l  all-MiniLM-L6-v2 truncated to its first 3 layers (the weaker teacher)
The students: 2 layers, 384 wide, layers 3 and 6 of the pre-trained all-MiniLM-L6-v2, saved once per seed so every
method starts from the same weights. Every method trains the same two stages of logit KD (alpha 0.7, T 2, lr 1e-4,
EPOCHS each), so they differ only in how teachers are weighed:
  single-<teacher>   that teacher alone
  mean / confidence  the three, by the combination rule (equal weights; softmax of minus their gold-label loss)
  rl-<reward>        recipes/rlkd.yaml: the first stage with equal weights (a full run), the second with the rl_kd
                     plugin (reward student_loss, distill_loss or dev_metric); so rl-* against mean isolates the
                     selection.
The data and the teachers are the same for every seed (data_seed 42).

    .venv/bin/python benchmarks/multi_teacher.py [--datasets mrpc,rte,sst2] [--seeds 42,43,44] [--workers 2]
    .venv/bin/python benchmarks/multi_teacher.py --summarise-only
    .venv/bin/python benchmarks/multi_teacher.py --smoke        # a tiny end-to-end check (minutes, not hours)

MPNet trains in bf16; where benchmarks/base_teacher.py has already fine-tuned the same MPNet teacher (MRPC and RTE:
same data, epochs, lr, length, batch, seeds, precision, checked key by key), this pool links that run instead of
training it again. Resumable: a finished run (its report.json here, or its line in the ledger) is skipped, an
interrupted one continues from its newest checkpoint (`--resume`), so the same command picks up where a stopped
benchmark left off, on this machine or a new one (a teacher missing here is retrained only for a student still to
run). Each run is its own single-threaded process, `--workers` side by side; teachers before students. RL-KD's cost
is its training seconds over mean's on the same dataset and seed, both in this benchmark under the same load.
Writes benchmarks/results/multi_teacher.json/.md and the ledger multi_teacher_runs.json, each finished run's scores,
seconds and selection rates (the smoke run: multi_teacher_smoke*).
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
BASE = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
DATA_SEED = 42
EPOCHS = 3  # per stage

# MRPC and RTE: 2,000 examples each, the subsets benchmarks/base_teacher.py trains its MPNet teachers on (shared)
DATASETS = {
    "mrpc": {"task": "mrpc", "train_limit": 2000, "max_length": 128},
    "rte": {"task": "rte", "train_limit": 2000, "max_length": 128},
    "sst2": {"task": "sst2", "train_limit": 2000, "max_length": 64},
}
# name -> pool entry (recipes/teacher_pool.yaml's keys); MPNet at BERT-base's fine-tuning lr, in bf16 (it cost no
# accuracy in benchmarks/base_teacher.py's check: SST-2 dev 90.6 against fp32's 90.5)
POOL = {"minilm": {"layers": None, "lr": 1e-4},
        "mpnet": {"layers": None, "source": MPNET, "lr": 3e-5, "precision": "bf16"},
        "minilm-3l": {"layers": 3, "lr": 1e-4}}
# benchmarks/base_teacher.py's teachers, reused where one is the run this pool would train (MPNet on MRPC and RTE:
# the same data, epochs, lr, length, batch, seeds and precision), an hour or more of CPU each
BASE_TEACHER_RUNS = ROOT / "benchmarks" / "runs" / "base"
TEACHERS = tuple(POOL)  # a MiniLM teacher first: the student shares its tokenizer
REWARDS = ("student_loss", "distill_loss", "dev_metric")
RL_METHODS = tuple(f"rl-{r}" for r in REWARDS)
METHODS = tuple(f"single-{t}" for t in TEACHERS) + ("mean", "confidence") + RL_METHODS
# --smoke: everything small, in its own folders
SMOKE = {"datasets": {"sst2": {"task": "sst2", "train_limit": 96, "max_length": 32}}, "seeds": [42],
         "dev_limit": 64, "epochs": 1, "teacher_epochs": 1}


class Setup:
    def __init__(self, smoke: bool):
        self.smoke = smoke
        self.runs = ROOT / "benchmarks" / "runs" / ("multi-smoke" if smoke else "multi")
        self.datasets = SMOKE["datasets"] if smoke else DATASETS
        self.dev_limit = SMOKE["dev_limit"] if smoke else None
        self.epochs = SMOKE["epochs"] if smoke else EPOCHS
        self.teacher_epochs = SMOKE["teacher_epochs"] if smoke else 3
        self.results_name = "multi_teacher_smoke" if smoke else "multi_teacher"
        # every finished run's numbers, committed: a new machine retrains only what a missing run needs
        self.ledger_path = RESULTS / f"{self.results_name}_runs.json"
        self.ledger = _parallel.read_ledger(self.ledger_path)

    def teacher_path(self, dataset: str, teacher: str) -> Path:
        return self.runs / f"{dataset}-pool" / teacher / "student"

    def student_start(self, seed: int) -> Path:
        return self.runs / f"student-start-s{seed}"


def pool_spec(setup: Setup, dataset: str) -> dict:
    cfg = setup.datasets[dataset]
    return {"name": f"{dataset}-pool", "task": cfg["task"], "base": BASE, "output_dir": str(setup.runs),
            "max_length": cfg["max_length"], "train_limit": cfg["train_limit"], "data_seed": DATA_SEED,
            "speed": False, "defaults": {"epochs": setup.teacher_epochs, "lr": 1e-4, "seed": 42},
            "teachers": [{"name": name, **entry} for name, entry in POOL.items()]}


def pool_teacher_recipe(setup: Setup, dataset: str, name: str):
    """The recipe of the pool's teacher `name` for `dataset`."""
    from alembert.pipelines.pool import load_pool, teacher_recipe
    from alembert.recipe import recipe_from_dict

    pool, _ = load_pool(pool_spec(setup, dataset))
    recipe = teacher_recipe(pool, next(t for t in pool.teachers if t.name == name))
    if setup.dev_limit:
        recipe = recipe_from_dict({**recipe.model_dump(), "dev_limit": setup.dev_limit}, "smoke teacher")
    return recipe


def train_teacher(setup: Setup, dataset: str, name: str) -> None:
    from alembert import api

    api.distill(pool_teacher_recipe(setup, dataset, name), resume=True)


def link_shared_teacher(setup: Setup, dataset: str, name: str) -> bool:
    """Link base_teacher.py's finished teacher for `dataset` as this pool's `name` when its recipe matches the one
    the pool would train in every setting that shapes a teacher; True when linked."""
    from alembert.pipelines.pool import changed_settings

    folder, shared = setup.runs / f"{dataset}-pool" / name, BASE_TEACHER_RUNS / f"{dataset}-teacher"
    report = report_of(shared / "report.json")
    if setup.smoke or folder.exists() or report is None:
        return False
    if changed_settings(report, pool_teacher_recipe(setup, dataset, name)):
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(shared.resolve(), target_is_directory=True)
    return True


def make_student_start(setup: Setup, seed: int) -> None:
    """Layers 3 and 6 of the pre-trained all-MiniLM-L6-v2 with a head seeded by `seed`, saved: every method's start."""
    from accelerate.utils import set_seed

    from alembert.models.loading import load_classifier
    from alembert.models.students import extract_student, pick_layers

    folder = setup.student_start(seed)
    if (folder / "config.json").is_file():
        return
    set_seed(seed)
    base, tokenizer = load_classifier(BASE, 2)
    student = extract_student(base, pick_layers("uniform", 6, 2, None), seed=seed)
    partial = folder.with_name(folder.name + ".partial")
    student.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)


def student_recipe(setup: Setup, dataset: str, method: str, seed: int):
    from alembert.recipe import load_recipe

    cfg = setup.datasets[dataset]
    names = (method.removeprefix("single-"),) if method.startswith("single-") else TEACHERS
    teachers = [{"name": t, "path": str(setup.teacher_path(dataset, t))} for t in names]
    overrides = [f"name={run_name(dataset, method, seed)}", f"task={cfg['task']}", f"teachers={json.dumps(teachers)}",
                 f"student={json.dumps({'init': 'checkpoint', 'source': str(setup.student_start(seed))})}",
                 f"max_length={cfg['max_length']}", f"train_limit={cfg['train_limit'] or 'null'}", f"seed={seed}",
                 f"data_seed={DATA_SEED}", f"output_dir={setup.runs}", "speed=false",
                 f"dev_limit={setup.dev_limit or 'null'}", f"stages.0.epochs={setup.epochs}",
                 f"stages.1.epochs={setup.epochs}"]
    if method.startswith("rl-"):
        return load_recipe(ROOT / "recipes" / "rlkd.yaml", overrides + [f"stages.1.plugins.0.reward={method[3:]}"])
    rule = "confidence" if method == "confidence" else "mean"
    return load_recipe(ROOT / "recipes" / "rlkd.yaml", overrides + ["stages.1.plugins=[]", f"combine.rule={rule}"])


def train_student(setup: Setup, dataset: str, method: str, seed: int) -> None:
    from alembert import api

    make_student_start(setup, seed)
    api.distill(student_recipe(setup, dataset, method, seed), resume=True)


def run_name(dataset: str, method: str, seed: int) -> str:
    return f"{dataset}-{method}-s{seed}"


def report_of(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _student_score(report: dict) -> dict:
    main = report["task"]["main_metric"]
    return {"main_metric": main, "metric": next(m for m in report["models"] if m["name"] == "student")["metrics"][
        main]}


def teacher_run(setup: Setup, dataset: str, teacher: str) -> dict | None:
    """The pool teacher's dev score (from its run here, else the ledger); None before it has trained."""
    name = f"{dataset}-pool/{teacher}"
    return _parallel.recorded(setup.ledger, name, setup.runs / name / "report.json", _student_score)


def student_run(setup: Setup, dataset: str, method: str, seed: int) -> dict | None:
    """A finished student's dev score, seconds and RL-KD selection statistics (from its run here, else the
    ledger); None before it has trained."""
    def read(report: dict) -> dict:
        selection = report.get("teacher_selection", {}).get("rl", {})
        evaluations, main = report["training"]["evaluations"], report["task"]["main_metric"]
        best_by_stage = {}  # stages in training order
        for e in evaluations:
            best_by_stage[e["stage"]] = max(best_by_stage.get(e["stage"], e[main]), e[main])
        return {**_student_score(report), "train_seconds": report["training"]["train_seconds"],
                "best_by_stage": best_by_stage,
                **{key: selection.get(key) for key in ("selection_rate", "selection_rate_when_right",
                                                       "selection_rate_when_wrong", "no_teacher_share", "entropy")}}

    name = run_name(dataset, method, seed)
    return _parallel.recorded(setup.ledger, name, setup.runs / name / "report.json", read)


def summarise(setup: Setup, datasets: list[str], seeds: list[int]) -> tuple[dict, str]:
    results = {}
    for dataset in datasets:
        teachers = {t: teacher_run(setup, dataset, t) for t in TEACHERS}
        if not all(teachers.values()):
            continue
        main = teachers[TEACHERS[0]]["main_metric"]
        teacher_scores = {t: r["metric"] for t, r in teachers.items()}
        rows, by_seed = {}, {}
        for method in METHODS:
            runs = {s: student_run(setup, dataset, method, s) for s in seeds}
            by_seed[method] = {s: r for s, r in runs.items() if r is not None}
            rows[method] = {"values": [r["metric"] for r in by_seed[method].values()],
                            **_parallel.spread([r["metric"] for r in by_seed[method].values()]),
                            "per_seed": by_seed[method]}
            for key in ("selection_rate", "selection_rate_when_right", "selection_rate_when_wrong"):
                rates = [r[key] for r in by_seed[method].values() if r.get(key)]
                if rates:  # RL-KD: each teacher's rate, the mean over the seeds
                    rows[method][key] = {t: statistics.mean(r[t] for r in rates) for t in TEACHERS if t in rates[0]}
        # the two-stage schedule: how much each run's last stage ends below its first (its best dev score in each)
        drops = [list(r["best_by_stage"].values()) for m in METHODS for r in by_seed[m].values()
                 if r.get("best_by_stage")]
        results[dataset] = {"metric": main, "teachers": teacher_scores, "rows": rows,
                            "first_minus_last_stage": {**_parallel.spread([b[0] - b[-1] for b in drops]),
                                                       "last_lower": sum(b[-1] < b[0] for b in drops)},
                            "claims": _claims(teacher_scores, rows, by_seed)}
    _parallel.write_ledger(setup.ledger_path, setup.ledger)  # after every run above was read into it
    return results, _table(results, len(seeds))


def _claims(teacher_scores: dict, rows: dict, by_seed: dict) -> dict:
    singles = {t: rows[f"single-{t}"]["mean"] for t in TEACHERS if rows[f"single-{t}"]["mean"] is not None}
    best = max(teacher_scores, key=teacher_scores.get)
    claims = {"best_teacher": best,
              "best_teacher_for_the_student": max(singles, key=singles.get) if singles else None,
              "single_minus_best_teacher": {}}
    for teacher in (t for t in TEACHERS if t != best):  # claim 1: each other teacher's student minus the best's
        pair = _paired_difference(by_seed[f"single-{teacher}"], by_seed[f"single-{best}"])
        if pair:
            claims["single_minus_best_teacher"][teacher] = pair
    best_single = claims["best_teacher_for_the_student"]
    for method in ("confidence",) + RL_METHODS:  # claim 2: against equal weights, trained the same two stages
        runs, mean_runs = by_seed[method], by_seed["mean"]
        pair = _paired_difference(runs, mean_runs)
        if pair is None:
            continue
        ratios = [runs[s]["train_seconds"] / mean_runs[s]["train_seconds"] for s in set(runs) & set(mean_runs)]
        claims[method] = {"minus_mean": pair["difference"], "wins": pair["wins"], "seeds": pair["difference"]["n"],
                          "verdict": pair["verdict"], "cost_ratio_vs_mean": statistics.median(ratios)}
        if best_single:  # and against the single teacher whose students scored best on average
            claims[method]["minus_best_single"] = _paired_difference(runs, by_seed[f"single-{best_single}"])
    for method in RL_METHODS:  # does the policy select a teacher more where it is right on the gold label?
        right, wrong = (rows[method].get(f"selection_rate_when_{k}") for k in ("right", "wrong"))
        if right and wrong:
            rates = rows[method]["selection_rate"]
            claims.setdefault(method, {})["selection"] = {
                "right_minus_wrong": {t: right[t] - wrong[t] for t in right if t in wrong},
                "spread_between_teachers": max(rates.values()) - min(rates.values())}
    return claims


def _paired_difference(runs: dict, others: dict) -> dict | None:
    """`runs` minus `others` seed by seed (each {seed: run}) over the seeds both have: the spread, the wins and the
    verdict on "runs beat others"; None when no seed is shared."""
    seeds = sorted(set(runs) & set(others))
    if not seeds:
        return None
    differences = [runs[s]["metric"] - others[s]["metric"] for s in seeds]
    return {"difference": _parallel.spread(differences), "wins": sum(d > 0 for d in differences),
            "verdict": _parallel.beats(differences)}


def _paired(difference: dict, wins: int, verdict: str) -> str:
    return f"{_parallel.signed(difference)} ({wins}/{difference['n']}), {verdict}"


def _rates(rates: dict | None) -> str:
    return "–" if not rates else " / ".join(f"{rates[t]:.2f}" if t in rates else "–" for t in TEACHERS)


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
    lines += ["", "| each run's best dev score: first stage − last stage (runs whose last is lower) | "
              + " | ".join(names) + " |", "|---|" + "---:|" * len(names),
              "| all methods and seeds | " + " | ".join(
                  "–" if not (drop := results[d]["first_minus_last_stage"])["n"] else
                  f"{_parallel.signed(drop)} ({drop['last_lower']}/{drop['n']})" for d in names) + " |"]
    lines += ["", "| student of a teacher − student of the best teacher (wins), does it beat it? | "
              + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for teacher in TEACHERS:
        cells = []
        for d in names:
            claims = results[d]["claims"]
            pair = claims["single_minus_best_teacher"].get(teacher)
            cells.append("(best teacher)" if teacher == claims["best_teacher"] else "–" if pair is None else
                         _paired(pair["difference"], pair["wins"], pair["verdict"]))
        lines.append(f"| {teacher} | " + " | ".join(cells) + " |")
    lines += ["", "| method − mean of teachers (wins), does it beat it?, cost × mean | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for method in ("confidence",) + RL_METHODS:
        claims = [results[d]["claims"].get(method) or {} for d in names]
        lines.append(f"| {method} | " + " | ".join(
            "–" if "minus_mean" not in c else _paired(c["minus_mean"], c["wins"], c["verdict"])
            + f", {c['cost_ratio_vs_mean']:.2f}×" for c in claims) + " |")
    lines += ["", "| method − student of the best single teacher (wins), does it beat it? | "
              + " | ".join(f"{d} (single-{results[d]['claims']['best_teacher_for_the_student']})" for d in names)
              + " |", "|---|" + "---:|" * len(names)]
    for method in ("confidence",) + RL_METHODS:
        pairs = [(results[d]["claims"].get(method) or {}).get("minus_best_single") for d in names]
        lines.append(f"| {method} | " + " | ".join("–" if p is None else _paired(p["difference"], p["wins"],
                                                                                p["verdict"]) for p in pairs) + " |")
    lines += ["", "| RL-KD: selected when right − when wrong, per teacher; rates' spread between teachers | "
              + " | ".join(" / ".join(TEACHERS) + f" ({d})" for d in names) + " |", "|---|" + "---:|" * len(names)]
    for method in RL_METHODS:
        cells = []
        for d in names:
            selection = (results[d]["claims"].get(method) or {}).get("selection")
            cells.append("–" if selection is None else " / ".join(
                f"{selection['right_minus_wrong'][t]:+.2f}" if t in selection["right_minus_wrong"] else "–"
                for t in TEACHERS) + f"; {selection['spread_between_teachers']:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for key, title in (("selection_rate", "selection rate"), ("selection_rate_when_right", "selected when right"),
                       ("selection_rate_when_wrong", "selected when wrong")):
        lines += ["", f"| RL-KD: {title} | " + " | ".join(" / ".join(TEACHERS) + f" ({d})" for d in names) + " |",
                  "|---|" + "---:|" * len(names)]
        for method in RL_METHODS:
            lines.append(f"| {method} | " + " | ".join(_rates(results[d]["rows"][method].get(key)) for d in names)
                         + " |")
    return "\n".join(lines)


def jobs(setup: Setup, datasets: list[str], seeds: list[int]) -> tuple[list[str], list[str]]:
    """The teachers' jobs and the students' jobs still to run. A teacher missing here trains when a student of its
    dataset is still to run, or when even the ledger lacks its score."""
    prefix = "smoke:" if setup.smoke else ""
    students = [f"{prefix}{d}:{m}:{s}" for s in seeds for d in datasets for m in METHODS
                if student_run(setup, d, m, s) is None]
    teachers = [f"{prefix}{d}:teacher:{t}" for d in datasets for t in TEACHERS
                if report_of(setup.runs / f"{d}-pool" / t / "report.json") is None
                and (any(job.startswith(f"{prefix}{d}:") for job in students) or not teacher_run(setup, d, t))]
    return teachers, students


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a tiny configuration, end to end, in its own folders")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # [smoke:]dataset:teacher:name or [smoke:]dataset:method:seed
    args = parser.parse_args()
    if args.job:
        parts = args.job.split(":")
        setup = Setup(parts[0] == "smoke")
        dataset, kind, rest = parts[-3:]
        train_teacher(setup, dataset, rest) if kind == "teacher" else train_student(setup, dataset, kind, int(rest))
        return
    setup = Setup(args.smoke)
    datasets = args.datasets.split(",") if args.datasets else list(setup.datasets)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else SMOKE["seeds"] if args.smoke else [42, 43, 44]
    start = time.time()
    if not args.summarise_only:
        for d in datasets:
            if link_shared_teacher(setup, d, "mpnet"):
                print(f"{d}: the mpnet teacher is base_teacher.py's ({BASE_TEACHER_RUNS / f'{d}-teacher'})")
        teachers, students = jobs(setup, datasets, seeds)
        for seed in seeds if students else []:  # once, before the students run side by side
            make_student_start(setup, seed)
        _parallel.run_all(__file__, setup.runs / "logs", args.workers, teachers, students)
    results, table = summarise(setup, datasets, seeds)
    settings = {"seeds": seeds, "data_seed": DATA_SEED, "datasets": {d: setup.datasets[d] for d in results},
                "pool": POOL, "base": BASE, "epochs_per_stage": setup.epochs, "dev_limit": setup.dev_limit,
                "wall_seconds": None if args.summarise_only else round(time.time() - start)}
    _parallel.write_results(RESULTS, setup.results_name, settings, results, table)
    print(table)


if __name__ == "__main__":
    main()
