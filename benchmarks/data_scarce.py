"""Benchmark: distillation for data-scarce target domains (issue 19): Learning to Augment against its baselines.

Settings: each Amazon domain as the target with 100 and with 500 labelled training examples (a seeded subset,
data_seed 42, the same for every seed and row), the other three domains as sources (their reviews, labels unused by
the students); SST-2 with 200 labelled examples, the movie-review corpus and Amazon's reviews as sources.

Phases (resumable: a run with its test.json, here or in the ledger, is done and skipped; an interrupted one continues
from its checkpoints; on a new machine a teacher is retrained only for a student still to run):
  teachers  per setting: all-mpnet-base-v2 fine-tuned on the target's scarce examples ('target', 10 epochs), and on
            them plus 300 labelled reviews of each source ('mixed', 3 epochs; SST-2: of Amazon's, whose labels are
            SST-2's); the students distil from the target teacher unless --teacher mixed
  students  per setting and seed, every student an ETD extraction of the teacher (4 layers, 384 wide, 6 heads):
            kd            KD on the target's examples alone
            tinybert-aug  + TinyBERT-style augmentation (embedding-neighbour replacement, 4 variants each)
            source-kd     + the sources' sentences, all of them, teacher-labelled (no selection)
            generated-kd  + masked-LM chain samples from target and source sentences, all of them: L2A with its
                          selector off (the same 20 % hold-out and the same candidates)
            l2a           + the same candidates under the reinforced selector (recipes/l2a.yaml)
Every student trains the same number of optimizer steps on its own data and is scored as it ends (no model selection:
no labelled data beyond the scarce training set is used). The generated examples are the setting's (plugin seed 42),
made by its first run and read back by the others (augment/cache.py). Amazon is scored on each domain's test split
(200 reviews carved from train.tsv, tasks/amazon.py), SST-2 on its dev split. Paired per-seed differences of L2A
against each row; the paper's two claims each stated as reproduced or not, per setting and over the (setting, seed)
pairs of every complete setting together; time and peak memory of every row.

    .venv/bin/python benchmarks/data_scarce.py [--phases teachers,students] [--settings kitchen-100,sst2-200]
        [--seeds 42,43,44] [--methods kd,l2a] [--teacher target|mixed] [--workers 2]
    .venv/bin/python benchmarks/data_scarce.py --smoke          # all-MiniLM-L6-v2, a few examples, minutes
    .venv/bin/python benchmarks/data_scarce.py --summarise-only

Writes benchmarks/results/data_scarce.{json,md} (the settings asked for and every other the ledger has runs of) and
the ledger data_scarce_runs.json (every finished run's score and costs, committed); --smoke writes data_scarce_smoke*
instead.
"""
from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _parallel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOMAINS = ("books", "dvd", "electronics", "kitchen")
DATA_SEED = 42
METHODS = ("kd", "tinybert-aug", "source-kd", "generated-kd", "l2a")
MOVIES = "corpus/movie_reviews/reviews.tsv"
SELECTOR_KEYS = ("keep", "keep_source", "keep_target", "generated_share", "entropy", "updates", "reward", "reward_std")
LEDGER: dict = {}  # run name -> _run's record; main() reads it from the configuration's ledger
CONFIGS = {
    "real": {
        "runs": ROOT / "benchmarks" / "runs" / "data_scarce", "name": "data_scarce",
        "base": "sentence-transformers/all-mpnet-base-v2", "max_length": 128, "batch_size": 16,
        # the mixed teacher's 1,000-1,400 examples are 2.8-10x the target's: 3 epochs (188-263 steps, GLUE's usual
        # fine-tuning) rather than 10, which would take 1.4-1.9 h of MPNet per setting here
        "teacher_epochs": 10, "mixed_epochs": 3, "teacher_lr": 3e-5,
        "student": {"init": "extract", "layers": 4, "hidden": 384, "heads": 6, "ffn": 1536, "select": "importance"},
        "steps": 600, "lr": 5e-5, "source_limit": 300, "variants": 4, "head_steps": 300, "episode": 10,
        # all of them (4,500 reviews for an Amazon target, 6,000 for SST-2) would take 6-9 h of MPNet per teacher here
        "test_limit": None, "mixed_limit": 300,
        "settings": {**{f"{d}-{n}": {"target": d, "labels": n} for n in (100, 500) for d in DOMAINS},
                     "sst2-200": {"target": "sst2", "labels": 200}},
        "seeds": [42, 43, 44]},
    "smoke": {
        "runs": ROOT / "benchmarks" / "runs" / "data_scarce_smoke", "name": "data_scarce_smoke",
        "base": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 32, "batch_size": 8,
        "teacher_epochs": 2, "mixed_epochs": 2, "teacher_lr": 1e-4,
        "student": {"init": "extract", "layers": 2, "hidden": 192, "heads": 6, "ffn": 768, "select": "importance",
                    "importance_examples": 16},
        "steps": 12, "lr": 1e-4, "source_limit": 12, "variants": 1, "head_steps": 10, "episode": 2,
        "test_limit": 40, "mixed_limit": 16,
        "settings": {"kitchen-24": {"target": "kitchen", "labels": 24}, "sst2-24": {"target": "sst2", "labels": 24}},
        "seeds": [42]},
}


def run_name(setting: str, method: str, seed: int, teacher: str) -> str:
    return f"{setting}-{method}-{teacher}-s{seed}"


def task_of(setting: dict) -> str:
    return setting["target"] if setting["target"] == "sst2" else f"amazon-{setting['target']}"


def sources_of(cfg: dict, setting: dict, labels: bool = False) -> dict:
    """The setting's sources by name: the other Amazon domains (or, for SST-2, all four and the movie reviews)."""
    limit = cfg["mixed_limit"] if labels else cfg["source_limit"]
    domains = [d for d in DOMAINS if d != setting["target"]]
    sources = {d: {"type": "task", "task": f"amazon-{d}", "labels": labels, **({"limit": limit} if limit else {})}
               for d in domains}
    if setting["target"] == "sst2" and not labels:  # the movie reviews carry neg/pos, not SST-2's labels
        sources["movies"] = {"type": "text", "files": [MOVIES], **({"limit": limit} if limit else {})}
    return sources


def _base(cfg: dict, setting_name: str, name: str, seed: int) -> dict:
    setting = cfg["settings"][setting_name]
    return {"name": name, "task": task_of(setting), "train_limit": setting["labels"], "data_seed": DATA_SEED,
            "seed": seed, "output_dir": str(cfg["runs"]), "max_length": cfg["max_length"],
            "batch_size": cfg["batch_size"], "speed": False, "dev_limit": 32, "checkpoint_every": 50}


def teacher_recipe(cfg: dict, setting_name: str, kind: str):
    from alembert.recipe import recipe_from_dict

    data = _base(cfg, setting_name, f"{setting_name}-teacher-{kind}", DATA_SEED)
    data["student"] = {"init": "checkpoint", "source": cfg["base"]}
    epochs = cfg["mixed_epochs"] if kind == "mixed" else cfg["teacher_epochs"]
    stage = {"name": "finetune", "epochs": epochs, "lr": cfg["teacher_lr"], "evaluate": False,
             "losses": [{"type": "prediction", "alpha": 0.0}]}
    if kind == "mixed":
        data["sources"] = sources_of(cfg, cfg["settings"][setting_name], labels=True)
        stage["data"] = "+".join(["task", *data["sources"]])
    data["stages"] = [stage]
    return recipe_from_dict(data, data["name"])


def student_recipe(cfg: dict, setting_name: str, method: str, seed: int, teacher: str):
    from alembert.recipe import load_recipe, recipe_from_dict

    setting = cfg["settings"][setting_name]
    data = _base(cfg, setting_name, run_name(setting_name, method, seed, teacher), seed)
    data.update(teacher=str(cfg["runs"] / f"{setting_name}-teacher-{teacher}" / "student"), student=cfg["student"])
    sources = sources_of(cfg, setting)
    stage = {"name": "kd", "epochs": 1000, "max_steps": cfg["steps"], "lr": cfg["lr"], "evaluate": False,
             "losses": [{"type": "prediction", "alpha": 0.7, "temperature": 1.0}]}
    # one chain a start; the generation is the setting's, like its labelled subset: every seed's run reads back
    # the one made first (the cache folder), and the seeds vary the student's training and L2A's selector
    generator = {"n": 1, "head_steps": cfg["head_steps"], "source_limit": cfg["source_limit"], "seed": DATA_SEED}
    if method == "source-kd":
        data["sources"] = sources
        stage["data"] = "+".join(["task", *sources])
    elif method == "tinybert-aug":
        data["sources"] = {"aug": {"type": "generated"}}
        stage["data"] = "task+aug"
        data["plugins"] = [{"type": "augment", "generator": "neighbours", "n": cfg["variants"], "seed": DATA_SEED}]
    elif method in ("generated-kd", "l2a"):
        # generated-kd is L2A with its selector off: the same hold-out and the same candidates (one generation,
        # cached, for both rows), every one kept, so l2a - generated-kd is the selector's worth alone
        shipped = load_recipe(ROOT / "recipes" / "l2a.yaml").model_dump(exclude_unset=True)
        plugin = {**shipped["stages"][0]["plugins"][0], "from_sources": list(sources), "episode": cfg["episode"],
                  **generator, "select": method == "l2a"}
        data["sources"] = {"aug": {"type": "generated"}, **sources}
        stage.update(data="task+aug", plugins=[plugin])
    data["stages"] = [stage]
    return recipe_from_dict(data, data["name"])


def _distill(recipe) -> None:
    from alembert import api

    final = Path(recipe.output_dir) / recipe.name
    if not (final / "report.json").is_file():
        api.distill(recipe, resume=True)  # an interrupted run continues from its newest checkpoint


def _score(cfg: dict, setting_name: str, run: Path) -> None:
    """The test score (SST-2: dev) of the run's model, with the job's peak memory."""
    from alembert import api

    setting = cfg["settings"][setting_name]
    split = "dev" if setting["target"] == "sst2" else "test"
    metrics = api.evaluate(str(run / "student"), task_of(setting), split=split, max_length=cfg["max_length"],
                           limit=cfg["test_limit"])["metrics"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        import torch

        gpu_mb = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
    except ImportError:
        gpu_mb = None
    # accuracy in percent, as alembert reports it
    (run / "test.json").write_text(json.dumps({"split": split, "accuracy": metrics["accuracy"],
                                               "peak_rss_mb": round(peak_mb), "peak_gpu_mb": gpu_mb}, indent=1)
                                   + "\n")


def run_job(cfg: dict, kind: str, setting: str, *rest: str) -> None:
    recipe = teacher_recipe(cfg, setting, rest[0]) if kind == "teacher" else \
        student_recipe(cfg, setting, rest[0], int(rest[1]), rest[2])
    _distill(recipe)
    _score(cfg, setting, Path(recipe.output_dir) / recipe.name)


def ledger_path(cfg: dict) -> Path:
    return RESULTS / f"{cfg['name']}_runs.json"


def _run(cfg: dict, name: str) -> dict | None:
    """A finished run's score, training seconds, of them generation (and the head's training) when the run made
    it rather than read it back, and peak memory (from its folder here, else the ledger); None before it has
    finished (test.json is written last)."""
    folder = cfg["runs"] / name

    def read(test: dict) -> dict:
        report = json.loads((folder / "report.json").read_text())
        generation = (report.get("l2a") or report.get("augment") or {}).get("generation", {})
        made = {} if generation.get("reused") else generation
        stages = list(((report.get("l2a") or {}).get("selection") or {}).values())
        return {**test, "seconds": report["training"]["seconds"], "generation_seconds": made.get("seconds"),
                "head_seconds": (made.get("head") or {}).get("seconds"),
                "kept_share": (report.get("l2a") or {}).get("kept_share"),
                "selector": {k: stages[-1].get(k) for k in SELECTOR_KEYS} if stages else None}

    return _parallel.recorded(LEDGER, name, folder / "test.json", read)


def jobs(cfg: dict, config: str, settings: list[str], seeds: list[int], methods: list[str], teacher: str,
         phases: list[str]) -> tuple[list[str], list[str]]:
    """The teachers' jobs and the students' jobs still to run. A teacher missing here trains when a student of its
    setting is still to run from it, or when even the ledger lacks its score."""
    # a setting's first l2a (or generated-kd) run makes the generation its l2a and generated-kd runs share; one that
    # starts before it is kept waits for it (augment/cache.py), holding a worker idle, so the maker goes first,
    # then the rows that need no generation, then the rest of the generation's readers
    order = sorted(methods, key=lambda m: (m != "l2a", m == "generated-kd"))
    todo = [(s, m, seed) for seed in seeds for s in settings for m in order
            if "students" in phases and not _run(cfg, run_name(s, m, seed, teacher))]
    readers = [run for run in todo if run[1] in ("l2a", "generated-kd")]
    makers = [next(run for run in readers if run[0] == s) for s in dict.fromkeys(run[0] for run in readers)]
    todo = makers + [run for run in todo if run not in readers] + [run for run in readers if run not in makers]
    students = [f"{config}:student:{s}:{m}:{seed}:{teacher}" for s, m, seed in todo]
    teachers = [f"{config}:teacher:{s}:{k}" for s in settings for k in ("target", "mixed") if "teachers" in phases
                and not (cfg["runs"] / f"{s}-teacher-{k}" / "test.json").is_file()
                and (not _run(cfg, f"{s}-teacher-{k}")
                     or k == teacher and any(job.startswith(f"{config}:student:{s}:") for job in students))]
    return teachers, students


# ---- tables -----------------------------------------------------------------------------------------------------


def tabled(cfg: dict, settings: list[str]) -> list[str]:
    """The settings the tables cover: those asked for, then every other one the ledger has a run of, so that a
    command run on one setting does not leave the committed tables with that setting alone."""
    begun = [s for s in cfg["settings"] if s not in settings and any(name.startswith(f"{s}-") for name in LEDGER)]
    return settings + begun


def summarise(cfg: dict, settings: list[str], seeds: list[int], teacher: str) -> tuple[dict, str]:
    results, lines = {}, []
    for setting in settings:
        teachers = {k: _run(cfg, f"{setting}-teacher-{k}") for k in ("target", "mixed")}
        done = {m: {s: r for s in seeds if (r := _run(cfg, run_name(setting, m, s, teacher)))} for m in METHODS}
        per_seed = {m: {s: r["accuracy"] for s, r in runs.items()} for m, runs in done.items()}
        costs = {m: list(runs.values()) for m, runs in done.items()}
        rows = {f"teacher ({k})": _parallel.spread([t["accuracy"]] if t else []) for k, t in teachers.items()}
        costs.update({f"teacher ({k})": [t] for k, t in teachers.items() if t})
        rows.update({m: _parallel.spread(list(v.values())) for m, v in per_seed.items()})
        paired = {}
        for baseline in METHODS[:-1]:
            common = sorted(set(per_seed["l2a"]) & set(per_seed[baseline]))
            if common:
                diffs = [per_seed["l2a"][s] - per_seed[baseline][s] for s in common]
                paired[baseline] = _parallel.paired(diffs)
        own = teachers[teacher]
        if own and per_seed["l2a"]:
            diffs = [v - own["accuracy"] for v in per_seed["l2a"].values()]
            # against the teacher a tie counts: the claim is "at least as good"
            paired[f"teacher ({teacher})"] = {**_parallel.paired(diffs), "wins": sum(d >= 0 for d in diffs)}
        selectors = {s: r["selector"] for s, r in done["l2a"].items() if r.get("selector")}
        results[setting] = {"rows": rows, "per_seed": per_seed, "paired": paired, "costs": costs,
                            "selectors": selectors}
        lines += _table(setting, rows, paired, costs, len(seeds)) + _selector_table(selectors)
    results["claims"] = _claims(results, settings, teacher, len(seeds))
    lines += ["| claim | evidence | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {c['evidence']} | {c['verdict']} |" for c in results["claims"]]
    _parallel.write_ledger(ledger_path(cfg), LEDGER)  # after every run above was read into it
    return results, "\n".join(lines)


def _mean(costs: list[dict], key: str) -> str:
    values = [c[key] for c in costs if c.get(key) is not None]
    return f"{statistics.mean(values):.0f}" if values else "–"


def _table(setting: str, rows: dict, paired: dict, costs: dict, seeds: int) -> list[str]:
    lines = [f"### {setting}", "", "| model | accuracy | training s | of it generation s (head s) | peak RSS MB | "
             "kept share |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        n = 1 if name.startswith("teacher") else seeds
        c = costs.get(name, [])
        kept = _mean([{"k": 100 * x["kept_share"]} for x in c if x.get("kept_share") is not None], "k")
        lines.append(f"| {name} | {_parallel.cell(row, n)} | {_mean(c, 'seconds')} | {_mean(c, 'generation_seconds')}"
                     f" ({_mean(c, 'head_seconds')}) | {_mean(c, 'peak_rss_mb')} | {kept if kept != '–' else '–'}"
                     f"{' %' if kept != '–' else ''} |")
    if paired:  # none until the setting's l2a has run
        lines += ["", "| paired, per seed | difference | wins |", "|---|---:|---:|"]
        lines += [f"| l2a − {b} | {_parallel.signed(d)} | {d['wins']}/{d['n']} |" for b, d in paired.items()]
    return lines + [""]


def _selector_table(selectors: dict[int, dict]) -> list[str]:
    """What L2A's selector did in each seed's run (its stage's totals, report.json): the share of generated examples
    drawn that it kept, by origin; the generated share of the examples drawn; the policy's mean entropy (0.693 nats
    at p = 0.5); its updates and their rewards (the held-out mean log-probability's change per episode)."""
    if not selectors:
        return []

    def pct(value) -> str:
        return "–" if value is None else f"{100 * value:.0f}"

    lines = ["| L2A's selector, seed | kept % | kept of source chains % | kept of target chains % | generated share % "
             "| entropy (nats) | policy updates | reward per update |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for seed, s in sorted(selectors.items()):
        reward = "–" if s.get("reward") is None else f"{s['reward']:+.4f} ± {s['reward_std']:.4f}"
        lines.append(f"| {seed} | {pct(s.get('keep'))} | {pct(s.get('keep_source'))} | {pct(s.get('keep_target'))} | "
                     f"{pct(s.get('generated_share'))} | {s.get('entropy', float('nan')):.3f} | "
                     f"{s.get('updates', 0)} | {reward} |")
    return lines + [""]


def _claims(results: dict, settings: list[str], teacher: str, seed_count: int) -> list[dict]:
    """L2A beats a baseline in a setting when its paired difference is above zero by a one-sided t-test at 5 % over
    at least 3 seeds (`_parallel.beats`); its student is at least as good as its teacher when the mean difference
    is >= 0 and it is at least as good on most of at least 3 seeds. With two complete settings or more (L2A and
    each row it is paired with on every seed), each claim is also judged on their seeds together: the pairs
    (setting, seed) in one test, as the paper claims it of every setting; a pair's difference is taken within its
    setting, so the settings' unlike levels cancel. A setting still running stays out of the pool, so the pooled
    rows change only when a setting is whole."""
    baselines = (*METHODS[:-1], f"teacher ({teacher})")
    scopes = {setting: (results[setting]["paired"], "seeds") for setting in settings}
    ran = [setting for setting in settings if results[setting]["paired"]
           and all(p["n"] == seed_count for p in results[setting]["paired"].values())]
    if len(ran) > 1:
        pooled = {}
        for b in baselines:
            parts = [results[s]["paired"][b] for s in ran if b in results[s]["paired"]]
            if parts:  # wins summed, not recounted: against the teacher a setting counts its ties
                pooled[b] = {**_parallel.paired([x for p in parts for x in p["differences"]]),
                             "wins": sum(p["wins"] for p in parts)}
        scopes[f"{len(ran)} settings pooled"] = (pooled, "pairs")
    claims = []
    for scope, (paired, unit) in scopes.items():
        for baseline in baselines:
            d = paired.get(baseline)
            at_least = baseline.startswith("teacher")
            verdict = "not run" if d is None else _as_good(d["differences"]) if at_least else \
                _parallel.beats(d["differences"])
            what = f"L2A's student at least as good as its {baseline}" if at_least else \
                f"L2A beats {baseline}"
            evidence = "–" if d is None else f"{_parallel.signed(d)} ({d['wins']}/{d['n']} {unit})"
            claims.append({"claim": f"{what} ({scope})", "evidence": evidence, "verdict": verdict})
    return claims


def _as_good(differences: list[float]) -> str:
    pending = _parallel.undecided(len(differences))
    if pending:
        return pending
    as_good = statistics.mean(differences) >= 0 and sum(x >= 0 for x in differences) > len(differences) / 2
    return "reproduced" if as_good else "not reproduced"


def main() -> None:
    parser = _parallel.phased_parser(__doc__, METHODS)
    parser.add_argument("--teacher", choices=("target", "mixed"), default="target")
    args = parser.parse_args()
    if args.job:
        config, kind, *rest = args.job.split(":")
        run_job(CONFIGS[config], kind, *rest)
        return
    config = "smoke" if args.smoke else "real"
    cfg = CONFIGS[config]
    settings = args.settings.split(",") if args.settings else list(cfg["settings"])
    unknown = [s for s in settings if s not in cfg["settings"]]
    if unknown:
        parser.error(f"--settings: unknown {unknown[0]!r} (known: {', '.join(cfg['settings'])})")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else cfg["seeds"]
    methods, phases, start = args.methods.split(","), args.phases.split(","), time.time()
    LEDGER.update(_parallel.read_ledger(ledger_path(cfg)))
    logs = cfg["runs"] / "logs"
    if not args.summarise_only:
        teachers, students = jobs(cfg, config, settings, seeds, methods, args.teacher, phases)
        # the big model on both cores, one run at a time; the students seed by seed, so a partial table covers
        # every setting and method (but the generation's readers after the other rows, `jobs`)
        _parallel.run_all(__file__, logs, 1, teachers, threads=2)
        _parallel.run_all(__file__, logs, args.workers, students)
    results, table = summarise(cfg, tabled(cfg, settings), seeds, args.teacher)
    settings_out = {key: (str(value) if isinstance(value, Path) else value) for key, value in cfg.items()}
    settings_out.update(seeds=seeds, data_seed=DATA_SEED, teacher=args.teacher,
                        wall_seconds=None if args.summarise_only else round(time.time() - start))
    _parallel.write_results(RESULTS, cfg["name"], settings_out, results, table)
    print(table)


if __name__ == "__main__":
    main()
