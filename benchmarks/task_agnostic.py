"""Benchmark: task-agnostic students (issue 20). From an all-mpnet-base-v2 teacher into a 6-layer, 384-wide student:

  students   general    general distillation on the corpus (recipes/general.yaml: MiniLMv2 relations + hidden MSE,
                        ETD-Rand student), the teacher pre-trained, not fine-tuned
             transfer   XtremeDistil task transfer (recipes/xtremedistil.yaml) from the teacher fine-tuned on SST-2
             etd        the ETD-extracted student with no distillation at all
             minilm     the student extracted from all-MiniLM-L6-v2's layers (a reference distilled by others)
  finetune   each student fine-tuned on CoLA, MRPC, RTE, STS-B and Amazon books, 3 seeds
  budget     ETD against random initialisation for general distillation, at 30, 60 and 100 % of the steps, each
             fine-tuned on MRPC and STS-B: the score at equal compute and the compute to reach equal score
  maps       the genetic layer-map search (recipes/searches/layer_maps.yaml's setting), then its best map against
             uniform, last and skip, each distilled on the larger corpus sample, 3 seeds, scored on the proxy tasks
  sizes      the student-size search under a latency budget: its Pareto front at batch 1 and 32, and the teacher

Sized for a 2-core CPU: subsets of SST-2, the corpus and each task's training split (CONFIGS below; RESULTS.md says
which). Resumable: finished runs, students and search trials are kept under benchmarks/runs/ and skipped; every
finished run's numbers also go to a committed ledger, so on a new machine only what a missing run needs is rebuilt
(a student is distilled again only for a fine-tuning still to run from it).

    .venv/bin/python benchmarks/task_agnostic.py [--phases teacher,students,finetune,budget,maps,sizes]
        [--workers 2] [--seeds 42,43,44] [--students general,transfer,etd,minilm]
    .venv/bin/python benchmarks/task_agnostic.py --smoke      # all-MiniLM-L6-v2 as teacher, tiny data, minutes
    .venv/bin/python benchmarks/task_agnostic.py --summarise-only

Writes benchmarks/results/task_agnostic.{json,md}, the ledger task_agnostic_runs.json (--smoke: task_agnostic_smoke*)
and the size search's Pareto plots beside them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _parallel  # noqa: E402
import _task_agnostic_report as report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("general", "transfer", "etd", "minilm")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# XtremeDistil's unfreezing groups, top down: the head's output layer, the layer before it, the encoder
UNFREEZE = {"mpnet": [["classifier.out_proj"], ["classifier.dense"], ["mpnet."]],
            "bert": [["classifier"], ["bert.pooler"], ["bert.embeddings", "bert.encoder"]]}
# the short fine-tuning that scores a proxy run (budget, maps, sizes)
PROXY_FINETUNE = {"epochs": 2, "lr": 5e-5, "batch_size": 32, "max_length": 128, "train_limit": 1000}
SMOKE_FINETUNE = {"epochs": 1, "lr": 1e-4, "batch_size": 16, "max_length": 32, "train_limit": 32, "dev_limit": 24}
CONFIGS = {
    "real": {
        "name": "task_agnostic", "runs": ROOT / "benchmarks" / "runs" / "task_agnostic",
        "teacher": "sentence-transformers/all-mpnet-base-v2",
        "student": {"layers": 6, "hidden": 384, "heads": 12, "ffn": 1536},
        # bf16: benchmarks/base_teacher.py's check on this teacher and task (2,000 SST-2 sentences, one epoch) found
        # 90.6 % against fp32's 90.5 % in 723 s against 982 s
        "sst2": {"train_limit": 20000, "epochs": 1, "lr": 3e-5, "max_length": 64, "precision": "bf16"},
        "distil_max_length": 64, "corpus_limit": 40000, "transfer_corpus_limit": 20000,
        "transfer_epochs": (1, 1, 1), "general_epochs": 1,
        "tasks": ["cola", "mrpc", "rte", "stsb", "amazon-books"],
        "finetune": {"epochs": 3, "lr": 5e-5, "batch_size": 32, "max_length": 128, "train_limit": 2000},
        "seeds": [42, 43, 44],
        "budget": {"fractions": [0.3, 0.6, 1.0], "corpus_limit": 20000, "tasks": ["mrpc", "stsb"],
                   "finetune": PROXY_FINETUNE},
        "maps": {"trials": 16, "population": 8, "search_corpus_limit": 2000, "full_corpus_limit": 20000,
                 "tasks": ["rte", "mrpc", "stsb"], "finetune": PROXY_FINETUNE},
        "sizes": {"trials": 12, "population": 6, "layers": [2, 4, 6], "hidden": [256, 384, 512],
                  "latency_budget_ms": 40, "corpus_limit": 2000, "tasks": ["mrpc", "stsb"], "latency_rounds": 10,
                  "finetune": PROXY_FINETUNE},
    },
    "smoke": {
        "name": "task_agnostic_smoke", "runs": ROOT / "benchmarks" / "runs" / "task_agnostic_smoke",
        "teacher": MINILM, "student": {"layers": 2, "hidden": 192, "heads": 12, "ffn": 768},
        "sst2": {"train_limit": 64, "epochs": 1, "lr": 1e-4, "max_length": 32},
        "distil_max_length": 32, "corpus_limit": 96, "transfer_corpus_limit": 48, "transfer_epochs": (1, 1, 1),
        "general_epochs": 1, "tasks": ["cola", "mrpc", "rte", "stsb", "amazon-books"],
        "finetune": SMOKE_FINETUNE,
        "seeds": [42],
        "budget": {"fractions": [0.3, 1.0], "corpus_limit": 64, "tasks": ["mrpc"], "finetune": SMOKE_FINETUNE},
        "maps": {"trials": 4, "population": 3, "search_corpus_limit": 48, "full_corpus_limit": 64,
                 "tasks": ["rte", "stsb"], "finetune": SMOKE_FINETUNE},
        "sizes": {"trials": 3, "population": 2, "layers": [1, 2], "hidden": [96, 192], "latency_budget_ms": 1000,
                  "corpus_limit": 48, "tasks": ["mrpc"], "latency_rounds": 3, "finetune": SMOKE_FINETUNE},
    },
}


def _recipe_data(file: str, **changes) -> dict:
    from alembert.recipe import load_recipe

    data = load_recipe(ROOT / "recipes" / file).model_dump(exclude_unset=True)
    data.update(changes)
    return data


def _run(data: dict) -> Path:
    """Distil (or continue) a recipe given as a mapping; its run folder."""
    from alembert import api
    from alembert.recipe import recipe_from_dict

    recipe = recipe_from_dict(data, data["name"])
    final = Path(recipe.output_dir) / recipe.name
    if not (final / "report.json").is_file():
        api.distill(recipe, resume=True)
    return final


def _student(cfg: dict, **changes) -> dict:
    return {"init": "extract", "extract": "uniform", "select": "random", **cfg["student"], **changes}


def _corpus(limit: int) -> dict:
    files = ["corpus/wikitext-2/valid.txt", "corpus/wikitext-2/test.txt", "corpus/state_union.txt",
             "corpus/inaugural.txt", "corpus/tinyshakespeare.txt", "corpus/movie_reviews/reviews.tsv"]
    return {"corpus": {"type": "text", "files": files, "limit": limit}}


def general_data(cfg: dict, name: str, limit: int, epochs: float, **changes) -> dict:
    stage = _recipe_data("general.yaml")["stages"][0]
    stage["epochs"] = epochs
    data = dict(name=name, output_dir=str(cfg["runs"]), teacher=cfg["teacher"], student=_student(cfg),
                sources=_corpus(limit), max_length=cfg["distil_max_length"], speed=False, stages=[stage])
    return _recipe_data("general.yaml", **{**data, **changes})


# ---- the students --------------------------------------------------------------------------------------------


def make_teacher(cfg: dict) -> None:
    from alembert import api

    run = cfg["runs"] / "teacher-sst2"
    if not (run / "report.json").is_file():
        # checkpoints every 100 steps, and an interrupted run (a session that ends) continues from its newest
        api.finetune(cfg["teacher"], "sst2", name=run.name, output_dir=str(cfg["runs"]), speed=False, resume=True,
                     checkpoint_every=100, **cfg["sst2"])


def make_student(cfg: dict, kind: str) -> None:
    from alembert.models.loading import load_config
    from alembert.pipelines.transfer import _encoder

    runs = cfg["runs"]
    if kind == "general":
        _run(general_data(cfg, "general", cfg["corpus_limit"], cfg["general_epochs"]))
    elif kind == "transfer":
        data = _recipe_data("xtremedistil.yaml", name="transfer", output_dir=str(runs), speed=False,
                            teacher=str(runs / "teacher-sst2" / "student"), train_limit=cfg["sst2"]["train_limit"],
                            student=_student(cfg, select="importance"), max_length=cfg["distil_max_length"])
        data["sources"]["corpus"]["limit"] = cfg["transfer_corpus_limit"]
        family = load_config(cfg["teacher"]).model_type
        for stage, epochs in zip(data["stages"], cfg["transfer_epochs"]):
            stage["epochs"] = epochs
            if "unfreeze" in stage:  # one group more each third of the stage, the family's names for them
                stage["unfreeze"] = {"groups": UNFREEZE[family], "every_epochs": epochs / 3}
        _encoder(_run(data) / "student", runs / "transfer")
    else:  # extraction alone: ETD from the teacher, or MiniLM's own layers at its own width
        out = runs / kind / "student"
        if not (out / "config.json").is_file():
            extract_encoder(cfg["teacher"] if kind == "etd" else MINILM, cfg, out, narrow=kind == "etd")


def extract_encoder(source: str, cfg: dict, out: Path, narrow: bool) -> None:
    from alembert.models.layout import find_layout
    from alembert.models.loading import load_classifier
    from alembert.models.students import extract_student, pick_layers

    model, tokenizer = load_classifier(source)
    size = cfg["student"]
    layers = pick_layers("uniform", find_layout(model).num_layers, size["layers"], None)
    widths = (size["hidden"], size["heads"], size["ffn"]) if narrow else (None, None, None)
    student = extract_student(model, layers, *widths, select="random", seed=42)
    student.base_model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def student_dir(cfg: dict, key: str) -> Path:
    """The encoder a fine-tuning job starts from: a student kind, a budget run or a full-size map run."""
    runs = cfg["runs"]
    if key == "transfer":
        return runs / "transfer" / "encoder"
    return runs / key / "student"


def finetune_job(cfg: dict, key: str, task: str, seed: int, settings: dict | None = None) -> None:
    from alembert import api

    name = f"{key.replace('/', '-')}-{task}-s{seed}"
    if not (cfg["runs"] / "ft" / name / "report.json").is_file():
        api.finetune(str(student_dir(cfg, key)), task, name=name, output_dir=str(cfg["runs"] / "ft"), seed=seed,
                     speed=False, overwrite=True, **(settings or cfg["finetune"]))


# ---- ETD against random initialisation, and the searches ------------------------------------------------------


def budget_runs(cfg: dict) -> list[str]:
    """General distillation from an ETD and a random student, each at fractions of the full budget's steps."""
    from alembert.recipe import recipe_from_dict

    full = general_data(cfg, "budget-probe", cfg["budget"]["corpus_limit"], 1)
    batches = -(-cfg["budget"]["corpus_limit"] // full["batch_size"])  # one epoch of the sample
    keys = []
    for init in ("etd", "random"):
        for fraction in cfg["budget"]["fractions"]:
            key = f"budget/{init}-{round(100 * fraction)}"
            student = _student(cfg) if init == "etd" else {"init": "spec", **cfg["student"]}
            data = general_data(cfg, key.split("/")[1], cfg["budget"]["corpus_limit"], 1, student=student,
                                output_dir=str(cfg["runs"] / "budget"))
            data["stages"][0]["max_steps"] = max(1, round(fraction * batches))
            recipe_from_dict(data, key)
            if _unscored(cfg, key, cfg["budget"]["tasks"], 42):
                _run(data)
            keys.append(key)
    return keys


def run_search(cfg: dict, kind: str, log) -> dict:
    """The layer-map or size search in its own folder of the runs, on the proxy recipe sized by the config."""
    import yaml

    from alembert import api

    part = cfg[kind]
    base = _recipe_data("general_proxy.yaml", name=f"{kind}-proxy", teacher=cfg["teacher"], student=_student(cfg),
                        max_length=cfg["distil_max_length"], speed=False,
                        cache_dir=str(cfg["runs"] / "teacher-cache"))
    base["sources"]["corpus"]["limit"] = part.get("search_corpus_limit", part.get("corpus_limit"))
    if kind == "sizes":  # sizes vary the head count: hidden states alone (as recipes/searches/sizes.yaml)
        base["stages"][0]["losses"] = [loss for loss in base["stages"][0]["losses"] if loss["type"] == "hidden_mse"]
    folder = cfg["runs"] / "searches"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{kind}-proxy.yaml").write_text(yaml.safe_dump(base))
    searched = {"trials": part["trials"], "population": part["population"]}
    if kind == "sizes":
        searched.update({k: part[k] for k in ("layers", "hidden", "latency_budget_ms", "latency_rounds")})
    spec = {"name": kind, "recipe": f"{kind}-proxy.yaml", "output_dir": str(folder),
            "layer_maps" if kind == "maps" else "sizes": searched,
            "proxy": {"tasks": part["tasks"], "finetune": part["finetune"]}}
    (folder / f"{kind}.yaml").write_text(yaml.safe_dump(spec))
    return api.search(folder / f"{kind}.yaml", log=log)


def map_runs(cfg: dict, search: dict, seeds: list[int]) -> dict[str, list[str]]:
    """The best searched map and the three heuristic ones, each distilled on the larger sample, per seed."""
    from alembert.pipelines.map_search import overrides_for, targets
    from alembert.recipe import apply_overrides

    part = cfg["maps"]
    base = _recipe_data("general_proxy.yaml", teacher=cfg["teacher"], student=_student(cfg), speed=False,
                        max_length=cfg["distil_max_length"], output_dir=str(cfg["runs"] / "maps"))
    base["sources"]["corpus"]["limit"] = part["full_corpus_limit"]
    maps = {"searched": search["best"]["map"], **{r["seed"]: r["map"] for r in search["trials"] if r["seed"]}}
    keys = {}
    for name, genome in maps.items():
        keys[name] = []
        for seed in seeds:
            data = apply_overrides(json.loads(json.dumps(base)), overrides_for(genome, targets(base, None, "maps")))
            data.update(name=f"{name}-s{seed}", seed=seed)
            if _unscored(cfg, f"maps/{name}-s{seed}", part["tasks"], seed):
                _run(data)
            keys[name].append(f"maps/{name}-s{seed}")
    return keys


# ---- the driver -----------------------------------------------------------------------------------------------


def _unscored(cfg: dict, key: str, tasks: list[str], seed: int) -> bool:
    """Whether a fine-tuning of this student is still to run (its score neither here nor in the ledger)."""
    return any(report.run_record(cfg, report.finetune_run(key, t, seed)) is None for t in tasks)


def finetune_jobs(cfg: dict, config: str, students: list[tuple[str, int]], tasks: list[str],
                  part: str | None = None) -> list[str]:
    """The fine-tuning jobs still to run, of each (student, seed) on each task."""
    return [f"{config}:{key}:{task}:{seed}" + (f":{part}" if part else "") for key, seed in students
            for task in tasks if _unscored(cfg, key, [task], seed)]


def run_jobs(logs: Path, workers: int, jobs: list[str]) -> None:
    """Fine-tuning jobs, `workers` single-threaded processes side by side; 0: one after the other in this process
    (the smoke run's tiny jobs, where starting a process costs more than the job)."""
    if workers:
        _parallel.run_all(__file__, logs, workers, jobs)
        return
    for job in jobs:
        config, key, task, seed, *part = job.split(":")
        cfg = CONFIGS[config]
        finetune_job(cfg, key, task, int(seed), cfg[part[0]]["finetune"] if part else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="teacher,students,finetune,budget,maps,sizes")
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--students", default=",".join(KINDS), help="which students the students and finetune "
                        "phases make and fine-tune (e.g. etd,minilm: the two that need no distillation)")
    parser.add_argument("--workers", type=int, default=None, help="fine-tuning processes (default 2; --smoke: 0, "
                        "in this process)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    students = args.students.split(",")
    unknown = sorted(set(students) - set(KINDS))
    if unknown:
        parser.error(f"--students: unknown {', '.join(unknown)}; expected some of {', '.join(KINDS)}")
    if args.job:  # config:key:task:seed[:proxy part]
        config, key, task, seed, *part = args.job.split(":")
        cfg = CONFIGS[config]
        finetune_job(cfg, key, task, int(seed), cfg[part[0]]["finetune"] if part else None)
        return
    config = "smoke" if args.smoke else "real"
    cfg = CONFIGS[config]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else cfg["seeds"]
    phases, start, logs = args.phases.split(","), time.time(), cfg["runs"] / "logs"
    workers = args.workers if args.workers is not None else 0 if args.smoke else 2
    log = lambda message: print(message, flush=True)  # noqa: E731
    ledger = RESULTS / f"{cfg['name']}_runs.json"
    report.LEDGER.update(_parallel.read_ledger(ledger))
    if not args.summarise_only:
        kinds = [kind for kind in KINDS if kind in students]
        finetunes = finetune_jobs(cfg, config, [(k, s) for s in seeds for k in kinds], cfg["tasks"])
        needed = [kind for kind in kinds if any(job.split(":")[1] == kind for job in finetunes)]
        if "teacher" in phases and "transfer" in needed:
            make_teacher(cfg)
        if "students" in phases:
            for kind in needed:
                log(f"student: {kind}")
                make_student(cfg, kind)
        if "finetune" in phases:
            run_jobs(logs, workers, finetunes)
        if "budget" in phases:
            keys = budget_runs(cfg)
            run_jobs(logs, workers, finetune_jobs(cfg, config, [(k, 42) for k in keys], cfg["budget"]["tasks"],
                                                  "budget"))
        if "maps" in phases:
            keys = map_runs(cfg, report.search_record(cfg, "maps") or run_search(cfg, "maps", log), seeds)
            run_jobs(logs, workers, finetune_jobs(cfg, config, [(k, int(k.rsplit("-s", 1)[1])) for ks in keys.values()
                                                                for k in ks], cfg["maps"]["tasks"], "maps"))
        if "sizes" in phases and not report.search_record(cfg, "sizes"):
            run_search(cfg, "sizes", log)
    results, table = report.summarise(cfg, seeds, KINDS, RESULTS)
    _parallel.write_ledger(ledger, report.LEDGER)  # after every run the tables read was read into it
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in cfg.items()}
    settings.update(seeds=seeds, wall_seconds=None if args.summarise_only else round(time.time() - start))
    _parallel.write_results(RESULTS, cfg["name"], settings, results, table)
    print(table)


if __name__ == "__main__":
    main()
