"""Benchmark: a BERT-base-size teacher (all-mpnet-base-v2, 109.5M) distilled into a 4-layer, 384-wide, 6-head,
FFN-1536 student extracted by ETD, on SST-2 (a subset), CoLA, MRPC, RTE and STS-B.

Task by task (cheapest first), each phase resumable: a finished run is skipped, and a teacher killed mid-training
continues from its newest checkpoint (every 25 steps). Phases:
  bf16      the teacher fine-tuned on 2,000 SST-2 sentences for one epoch in fp32 and in bf16: dev accuracy and
            seconds side by side, to decide whether the teachers train in bf16
  teachers  all-mpnet-base-v2 fine-tuned per task (one run per task, reused by every student)
  students  per task and seed: no teacher (labels only), KD, TinyBERT-style ILD, MiniLMv2 relations, CR-ILD, each
            the shipped recipe on the same ETD-Impt student (overrides below)
  etd       the KD recipe from ETD-Rand and from depth-only extraction (4 layers at full width), against the KD
            row's ETD-Impt student, at the same training budget, evaluated every quarter epoch
  latency   teacher and the best student per task at batch 1 and 32, sequence 128: torch fp32 and ONNX int8
            (alembert bench, the models timed in one process), and the int8 drop on dev
  probes    whether the student's budget binds: the KD recipe on seed 42 with 10 epochs, and at lr 3e-4, on SST-2,
            CoLA (where every student of the table predicted one class) and STS-B (where all stayed near the mean)

    .venv/bin/python benchmarks/base_teacher.py [--phases bf16,teachers,students,etd,latency,probes] [--tasks ...]
        [--seeds 42,43,44] [--workers 2]
    .venv/bin/python benchmarks/base_teacher.py --summarise-only

Writes benchmarks/results/base_teacher.{json,md}, and the ledger benchmarks/results/base_teacher_runs.json: each
finished run's scores, seconds, curve and size, from which the tables are rebuilt for runs this machine lacks (a
run in the ledger is not trained again; a teacher is retrained only where a missing run needs it). Teachers train
one at a time on both cores; students two side by side, one thread each (their training seconds are comparable
within the table, not with other tables). Students are not scored against the teacher in their own runs: the
table takes the teacher's score from its run.
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
LEDGER_PATH = RESULTS / "base_teacher_runs.json"
LEDGER = _parallel.read_ledger(LEDGER_PATH)  # run name -> what the tables read of it (_record)
BASE = "sentence-transformers/all-mpnet-base-v2"
DATA_SEED = 42

# per task: the training subset, max length, the teacher's epochs, the student's epochs per stage. 2,000 examples a
# task (a seeded subset; RTE has 2,490, MRPC 3,668): on 2 CPU cores one pass of the 110M teacher over a task's
# sentence pairs costs about as much as training a 4-layer student on them, and CR-ILD's MixUp runs it live on
# every step. In order of cost, cheapest first.
TASKS = {
    "sst2": {"task": "sst2", "train_limit": 2000, "max_length": 64, "teacher_epochs": 3, "epochs": 3},
    "cola": {"task": "cola", "train_limit": 2000, "max_length": 64, "teacher_epochs": 3, "epochs": 3},
    "stsb": {"task": "stsb", "train_limit": 2000, "max_length": 128, "teacher_epochs": 3, "epochs": 3},
    "mrpc": {"task": "mrpc", "train_limit": 2000, "max_length": 128, "teacher_epochs": 3, "epochs": 3},
    "rte": {"task": "rte", "train_limit": 2000, "max_length": 128, "teacher_epochs": 3, "epochs": 3},
}
TEACHER_CHECKPOINT_EVERY = 25  # optimizer steps: a killed teacher loses at most this much (a step is ~10 s)
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
# the student's budget probed on seed 42: the KD recipe with each stage changed so (run name -> (task, changes))
PROBES = {f"{task}-kd-{name}-probe": (task, change) for task in ("sst2", "cola", "stsb")
          for name, change in (("e10", {"epochs": 10}), ("lr3e-4", {"lr": 3e-4}))}
CLAIMS = (("tinybert", "kd"), ("minilmv2", "kd"), ("crild", "tinybert"), ("crild", "minilmv2"))


def _precision() -> str:
    """bf16 for the teachers when the bf16 check cost at most half a point of dev accuracy, else fp32."""
    scores = {p: _score(f"bf16-check-{p}") for p in ("fp32", "bf16")}
    if None in scores.values():
        return "fp32"
    return "bf16" if scores["fp32"] - scores["bf16"] <= 0.5 else "fp32"


def _record(run: str) -> dict | None:
    """What the tables read of a finished run: its dev score, seconds, evaluation curve and size (from its folder
    here, else from the ledger)."""
    def read(report: dict) -> dict:
        metric = report["task"]["main_metric"]
        return {"metric": metric, "score": next(m for m in report["models"] if m["name"] == "student")["metrics"][
            metric], "seconds": report["training"]["seconds"], "train_seconds": report["training"]["train_seconds"],
            "curve": [[e["step"], e[metric]] for e in report["training"]["evaluations"] if metric in e],
            "parameters": _parameters(RUNS / run)}

    return _parallel.recorded(LEDGER, run, RUNS / run / "report.json", read)


def _score(run: str) -> float | None:
    record = _record(run)
    return record["score"] if record else None


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
                 data_seed=DATA_SEED, precision=_precision(), overwrite=True, resume=True, speed=False,
                 checkpoint_every=TEACHER_CHECKPOINT_EVERY, checkpoint_keep=1)


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
    if not _finished_here(f"{task}-{method}-s{seed}"):
        api.distill(student_recipe(task, method, seed, eval_every=every), overwrite=True, score_teachers=False)


def run_etd(task: str, init: str, seed: int) -> None:
    from alembert import api

    if not _finished_here(_etd_run(task, init, seed)):
        api.distill(student_recipe(task, "kd", seed, init, f"{task}-kd-{init}-s{seed}", _quarter_epoch(task)),
                    overwrite=True, score_teachers=False)


def _finished_here(run: str) -> bool:
    """A run another runner finished since this one listed its jobs: `overwrite` would train it again."""
    return (RUNS / run / "report.json").is_file()


def run_probe(name: str) -> None:
    from alembert import api
    from alembert.recipe import recipe_from_dict

    task, change = PROBES[name]
    data = student_recipe(task, "kd", 42, name=name).model_dump()
    for stage in data["stages"]:
        stage.update(change)
    api.distill(recipe_from_dict(data, name), overwrite=True, score_teachers=False)


def run_latency(task: str) -> None:
    from alembert.evaluation.bench import bench

    best = _best_student(task, [42, 43, 44])
    if best is None:
        return
    out = RUNS / f"{task}-latency.json"
    result = bench([teacher_dir(task), RUNS / best / "student"], seq_lens=[128], batch_sizes=[1, 32],
                   backends=["torch-fp32", "onnx-int8"], task=TASKS[task]["task"], names=["teacher", best],
                   interleaved=True)  # the speed-ups are ratios within rounds: they survive a busy machine
    out.write_text(json.dumps({"student": best, "bench": result}, indent=2) + "\n")


def _latency_pending(task: str, seeds: list[int]) -> bool:
    """Whether the latency phase has yet to time this task's best student (it is re-timed when another overtakes)."""
    best, measured = _best_student(task, seeds), _latency(task)
    return best is not None and (measured is None or measured.get("student") != best)


def _best_student(task: str, seeds: list[int]) -> str | None:
    """The best-scoring student whose checkpoint is on this machine (latency times the checkpoint)."""
    found = [(score, f"{task}-{m}-s{s}") for m in METHODS for s in seeds
             if (RUNS / f"{task}-{m}-s{s}" / "student").is_dir() and (score := _score(f"{task}-{m}-s{s}")) is not None]
    return max(found)[1] if found else None


# ---- tables ---------------------------------------------------------------------------------------------------


def _bf16_check() -> tuple[dict, list[str]]:
    """The bf16 phase: the teacher's dev accuracy and training seconds in each precision, and the choice it made."""
    runs = {p: _record(f"bf16-check-{p}") for p in ("fp32", "bf16")}
    check = {p: {"accuracy": r["score"], "train_seconds": r["train_seconds"]} for p, r in runs.items() if r}
    if not check:
        return {}, []
    lines = ["| bf16 check (SST-2, 2,000 sentences, 1 epoch) | dev accuracy | training s |", "|---|---:|---:|"]
    lines += [f"| {p} | {c['accuracy']:.1f} | {c['train_seconds']:.0f} |" for p, c in check.items()]
    choice = _precision()
    return {**check, "teachers_train_in": choice}, lines + ["", f"Teachers train in {choice}.", ""]


def summarise(tasks: list[str], seeds: list[int]) -> tuple[dict, str]:
    """The results and tables from every finished run; then the ledger, which holds every run they read."""
    results, table = _tables(tasks, seeds)
    _parallel.write_ledger(LEDGER_PATH, LEDGER)
    return results, table


def _tables(tasks: list[str], seeds: list[int]) -> tuple[dict, str]:
    bf16, lines = _bf16_check()
    results = {"bf16_check": bf16} if bf16 else {}
    for task in tasks:
        teacher = _record(f"{task}-teacher")
        if teacher is None:
            continue
        rows = {"teacher": {**_parallel.spread([teacher["score"]]), "seconds": [teacher["seconds"]],
                            "parameters": teacher["parameters"]}}
        per_seed = {}
        for method in METHODS:
            found = {s: r for s in seeds if (r := _record(f"{task}-{method}-s{s}"))}
            per_seed[method] = {s: r["score"] for s, r in found.items()}
            rows[method] = {**_parallel.spread(list(per_seed[method].values())),
                            "seconds": [r["seconds"] for r in found.values()],
                            "parameters": next((r["parameters"] for r in found.values()), None)}
        results[task] = {"metric": teacher["metric"], "rows": rows, "per_seed": per_seed,
                         "claims": _claims(per_seed), "etd": _etd(task, seeds), "latency": _latency(task)}
    names = [t for t in results if t != "bf16_check"]
    if not names:
        return results, "\n".join(lines + ["(no teacher has finished yet.)"])
    lines += ["| method | " + " | ".join(f"{t} ({results[t]['metric']})" for t in names)
              + " | average | % of teacher |",
              "|---|" + "---:|" * (len(names) + 2)]
    for method in ("teacher", *METHODS):
        cells = [_parallel.cell(results[t]["rows"][method], 1 if method == "teacher" else len(seeds)) for t in names]
        ran = [t for t in names if results[t]["rows"][method]["mean"] is not None]  # the average and the % kept
        mean = _mean([results[t]["rows"][method]["mean"] for t in ran])             # are over the same tasks
        teacher = _mean([results[t]["rows"]["teacher"]["mean"] for t in ran])
        kept = f"{100 * mean / teacher:.1f}%" if mean is not None and teacher else "–"
        partial = f" ({len(ran)} of {len(names)} tasks)" if ran and len(ran) < len(names) else ""
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_fmt(mean)}{partial} | {kept} |")
    lines += ["", "| training seconds (mean of seeds) | parameters | " + " | ".join(names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for method in ("teacher", *METHODS):
        lines.append(f"| {method} | {_size([results[t]['rows'][method]['parameters'] for t in names])} | " + " | ".join(
            _fmt(_mean(results[t]["rows"][method]["seconds"]), 0) for t in names) + " |")
    lines += ["", "| paired, per seed (wins) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for better, than in CLAIMS:
        cells = [(lambda c: "–" if c is None else f"{_parallel.signed(c)} ({c['wins']}/{c['n']})")(
            results[t]["claims"].get(f"{better}-{than}")) for t in names]
        lines.append(f"| {better} − {than} | " + " | ".join(cells) + " |")
    lines += ["", "| ETD at the KD recipe's budget | parameters | " + " | ".join(names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for init in INITS:  # depth-only keeps the teacher's width: a larger student, so its size stands beside it
        lines.append(f"| {init} | {_size([results[t]['etd'][init]['parameters'] for t in names])} | " + " | ".join(
            _parallel.cell(results[t]["etd"][init], len(seeds)) for t in names) + " |")
    lines += ["", "| ETD: training seconds (mean of seeds) | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for init in INITS:
        lines.append(f"| {init} | " + " | ".join(_fmt(_mean(results[t]["etd"][init]["seconds"]), 0)
                                                 for t in names) + " |")
    lines += ["", "| ETD: optimizer steps to reach the lowest final score of the three (it, per task) | "
              + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for init in INITS:
        lines.append(f"| {init} | " + " | ".join(_steps_cell(results[t]["etd"][init]["to_common_score"], len(seeds))
                                                 for t in names) + " |")
    probes = {}  # per task, the KD row the probes change, then the probes
    for name, (task, _) in PROBES.items():
        probes.setdefault(f"{task}-kd-s42", _record(f"{task}-kd-s42"))
        probes[name] = _record(name)
    if any(probes[name] for name in PROBES):
        results["probes"] = {n: r and {"score": r["score"], "steps": r["curve"][-1][0], "seconds": r["seconds"]}
                             for n, r in probes.items()}
        lines += ["", "| the student's budget (KD, seed 42; the KD row, then its probes) | dev score | optimizer steps "
                  "| training s |", "|---|---:|---:|---:|"]
        for n, r in results["probes"].items():
            cells = f"{r['score']:.1f} | {r['steps']} | {r['seconds']:.0f}" if r else "– | – | –"
            lines.append(f"| {n} | {cells} |")
    results["claims"] = _verdicts(results, names)
    lines += ["", "| claim | evidence | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {c['evidence']} | {c['verdict']} |" for c in results["claims"]]
    return results, "\n".join(lines + _latency_lines(results, names))


def _task_average(per_seed: dict, tasks: list[str]) -> dict:
    """{seed: the average over `tasks`} for the seeds every task has."""
    common = set.intersection(*(set(per_seed[t]) for t in tasks)) if tasks else set()
    return {s: statistics.mean(per_seed[t][s] for t in tasks) for s in sorted(common)}


def _verdicts(results: dict, tasks: list[str]) -> list[dict]:
    """The issue's targets and the papers' claims, each with its evidence and verdict. A target over the GLUE-5
    average waits for all five tasks; "A beats B" is a one-sided paired t-test over the seeds of the five-task
    average (`_parallel.beats`); a speed-up target is met when the lower end of its 95 % interval reaches it."""
    from alembert.evaluation.bench import speedup_cell

    missing = [t for t in TASKS if t not in tasks]
    wait = f"undecided ({len(tasks)} of {len(TASKS)} tasks)" if missing else None
    claims = []
    averages = {m: _task_average({t: results[t]["per_seed"][m] for t in tasks}, tasks) for m in METHODS}
    teacher = _mean([results[t]["rows"]["teacher"]["mean"] for t in tasks])
    kept = {m: 100 * statistics.mean(a.values()) / teacher for m, a in averages.items() if a}
    best = max(kept, key=kept.get) if kept else None
    claims.append({"claim": "the best student keeps ≥ 95 % of the teacher's GLUE-5 average",
                   "evidence": f"{best}: {kept[best]:.1f} %" if best else "–", "verdict": wait or
                   ("undecided (no seed has every task)" if best is None else
                    "met" if kept[best] >= 95 else "not met")})
    for better, than in CLAIMS:
        common = sorted(set(averages[better]) & set(averages[than]))
        differences = [averages[better][s] - averages[than][s] for s in common]
        evidence = f"{_parallel.signed(_parallel.spread(differences))} ({sum(d > 0 for d in differences)}/" \
                   f"{len(differences)} seeds)" if differences else "–"
        claims.append({"claim": f"{better} beats {than} (five-task average)", "evidence": evidence,
                       "verdict": wait or _parallel.beats(differences)})
    etd = {i: _task_average({t: results[t]["etd"][i]["per_seed"] for t in tasks}, tasks) for i in INITS}
    for other in ("rand", "depth"):
        common = sorted(set(etd["impt"]) & set(etd[other]))
        differences = [etd["impt"][s] - etd[other][s] for s in common]
        claims.append({"claim": f"ETD-Impt beats {'ETD-Rand' if other == 'rand' else 'depth-only extraction'} at "
                                "equal budget (five-task average)",
                       "evidence": f"{_parallel.signed(_parallel.spread(differences))}" if differences else "–",
                       "verdict": wait or _parallel.beats(differences)})
    timed = [t for t in tasks if results[t]["latency"]]
    untimed = f"undecided ({len(timed)} of {len(tasks)} tasks timed)" if len(timed) < len(tasks) else None
    for backend, target, label in (("torch-fp32", 6, "fp32"), ("onnx-int8", 15, "int8 ONNX")):
        ups = {t: _student_row(results[t]["latency"], backend, 1)["speedup"] for t in timed}
        lowest = min(ups.values(), key=lambda u: u["ci95"][0] if u["ci95"] else 0, default=None)
        claims.append({"claim": f"the best student is ≥ {target}× faster than the fp32 teacher at batch 1 as "
                                f"{label}",
                       "evidence": f"lowest of {len(ups)} tasks: {speedup_cell(lowest)}" if lowest else "–",
                       "verdict": wait or untimed or ("met" if lowest["ci95"] and lowest["ci95"][0] >= target
                                                      else "not met")})
    drops = {t: _int8_drop(results[t]["latency"]) for t in timed}
    claims.append({"claim": "int8 costs the best student at most 1 point",
                   "evidence": ", ".join(f"{t} {d:+.2f}" for t, d in drops.items()) or "–",
                   "verdict": wait or untimed or ("met" if min(drops.values()) >= -1 else "not met")})
    return claims


def _student_row(latency: dict, backend: str, batch: int) -> dict:
    return next(r for r in latency["bench"]["rows"] if r["model"] == latency["student"]
                and r["backend"] == backend and r["batch_size"] == batch)


def _int8_drop(latency: dict) -> float:
    return _student_row(latency, "onnx-int8", 1)["metric"] - _student_row(latency, "torch-fp32", 1)["metric"]


def _steps_cell(reached: dict, seeds: int) -> str:
    """'120 ± 30 (to 85.0)'; the count of seeds that reached it when some did not."""
    if reached["target"] is None or not reached["n"]:
        return "–"
    text = f"{reached['mean']:.0f}" + (f" ± {reached['std']:.0f}" if reached["n"] > 1 else "")
    return text + ("" if reached["n"] == seeds else f" (n={reached['n']})") + f" (to {reached['target']:.1f})"


def _latency_lines(results: dict, tasks: list[str]) -> list[str]:
    """Per task: the best student's speed-up over the fp32 teacher (torch fp32 and ONNX int8, batch 1 and 32,
    sequence 128, timed interleaved), its size, and the dev points int8 costs it."""
    from alembert.evaluation.bench import speedup_cell

    measured = [t for t in tasks if results[t]["latency"]]
    if not measured:
        return []
    lines = ["", "| latency, sequence 128 | student | parameters (teacher) | teacher ms b1 / b32 | fp32 × b1 "
             "| fp32 × b32 | int8 × b1 | int8 × b32 | int8 − fp32 dev |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for task in measured:
        latency = results[task]["latency"]
        teacher = [next(r for r in latency["bench"]["rows"] if r["model"] == "teacher" and r["backend"] == "torch-fp32"
                        and r["batch_size"] == b) for b in (1, 32)]
        cells = [speedup_cell(_student_row(latency, backend, b).get("speedup"))
                 for backend in ("torch-fp32", "onnx-int8") for b in (1, 32)]
        student = _student_row(latency, "torch-fp32", 1)
        lines.append(f"| {task} | {latency['student']} | {student['parameters'] / 1e6:.1f}M "
                     f"({teacher[0]['parameters'] / 1e6:.1f}M) | {teacher[0]['latency_ms_p50']:.1f} / "
                     f"{teacher[1]['latency_ms_p50']:.0f} | " + " | ".join(cells) + f" | {_int8_drop(latency):+.2f} |")
    return lines


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _size(parameters: list) -> str:
    """A row's parameter count in millions, from the first task that has it."""
    size = next((p for p in parameters if p), None)
    return f"{size / 1e6:.1f}M" if size else "–"


def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _parameters(run: Path) -> int:
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
            claims[f"{better}-{than}"] = _parallel.paired(differences)
    return claims


def _etd_run(task: str, init: str, seed: int) -> str:
    return f"{task}-kd-s{seed}" if init == "impt" else f"{task}-kd-{init}-s{seed}"  # ETD-Impt is the KD row


def _etd(task: str, seeds: list[int]) -> dict:
    """Final dev score of the KD recipe from each initialisation, and each run's curve (step, score) to read the
    budget each needs to reach a score."""
    out = {}
    for init in INITS:
        runs = {s: r for s in seeds if (r := _record(_etd_run(task, init, s)))}
        out[init] = {**_parallel.spread([r["score"] for r in runs.values()]),
                     "per_seed": {s: r["score"] for s, r in runs.items()},
                     "curves": {s: r["curve"] for s, r in runs.items()},
                     "parameters": next((r["parameters"] for r in runs.values()), None),
                     "seconds": [r["seconds"] for r in runs.values()]}
    finals = [out[i]["mean"] for i in INITS if out[i]["mean"] is not None]
    target = min(finals) if len(finals) == len(INITS) else None  # a score every initialisation reached in the end
    for init in INITS:  # the budget each needs to reach it: the first evaluation at or above it, per seed
        steps = [next(step for step, score in curve if score >= target) for curve in out[init]["curves"].values()
                 if any(score >= target for _, score in curve)] if target is not None else []
        out[init]["to_common_score"] = {"target": target, **_parallel.spread(steps), "steps": steps}
    return out


def _latency(task: str) -> dict | None:
    """The latency phase's measurement (from this machine, else from the ledger)."""
    return _parallel.recorded(LEDGER, f"{task}-latency", RUNS / f"{task}-latency.json", lambda measured: measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="bf16,teachers,students,etd,latency,probes")
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
         "etd": lambda: run_etd(rest[0], rest[1], int(rest[2])), "latency": lambda: run_latency(rest[0]),
         "probe": lambda: run_probe(rest[0])}[kind]()
        return
    tasks, seeds, methods = args.tasks.split(","), [int(s) for s in args.seeds.split(",")], args.methods.split(",")
    phases, start = args.phases.split(","), time.time()
    logs = RUNS / "logs"
    if not args.summarise_only:
        if "bf16" in phases:  # the big model on both cores, one run at a time
            _parallel.run_all(__file__, logs, 1, [f"bf16:{p}" for p in ("fp32", "bf16")
                                                   if not _record(f"bf16-check-{p}")], threads=2)
        for task in tasks:  # task by task, so a finished task has its whole table
            students = [f"student:{task}:{m}:{s}" for s in seeds for m in methods if "students" in phases
                        and not _record(f"{task}-{m}-s{s}")]
            etd = [f"etd:{task}:{i}:{s}" for s in seeds for i in ("rand", "depth") if "etd" in phases
                   and not _record(_etd_run(task, i, s))]
            teacher_here = (RUNS / f"{task}-teacher" / "report.json").is_file()
            if "teachers" in phases and not teacher_here and (students or etd or not _record(f"{task}-teacher")):
                _parallel.run_all(__file__, logs, 1, [f"teacher:{task}"], threads=2)
            _parallel.run_all(__file__, logs, args.workers, students + etd)  # independent: no core idles
            if "latency" in phases and _latency_pending(task, seeds):
                _parallel.run_all(__file__, logs, 1, [f"latency:{task}"], threads=2)
        if "probes" in phases:
            _parallel.run_all(__file__, logs, args.workers, [f"probe:{n}" for n, (task, _) in PROBES.items()
                                                            if not _record(n) and _record(f"{task}-teacher")])
    results, table = summarise(tasks, seeds)
    settings = {"base": BASE, "student": STUDENT, "inits": INITS, "methods": METHODS, "tasks": TASKS,
                "seeds": seeds, "data_seed": DATA_SEED, "teacher_lr": TEACHER_LR, "student_lr": STUDENT_LR,
                "teacher_precision": _precision(), "wall_seconds": None if args.summarise_only else
                round(time.time() - start)}
    _parallel.write_results(RESULTS, "base_teacher", settings, results, table)
    print(table)


if __name__ == "__main__":
    main()
