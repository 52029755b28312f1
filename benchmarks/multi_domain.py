"""Benchmark: multi-domain distillation on the four Amazon review domains (issue 18): per-domain KD, multi-domain KD,
Meta-KD and HRKD, on the full training sets and on a few-shot share of each domain, 3 seeds.

Phases (resumable: a run with its report.json and test.json is done and skipped; an interrupted one continues from
its checkpoints with --resume):
  teachers  per setting: all-MiniLM-L6-v2 (all-mpnet-base-v2 with --mpnet) fine-tuned on all four domains at once
            (recipes/amazon_teacher.yaml), and Meta-KD's meta-teacher (recipes/meta_teacher.yaml), on the setting's
            training examples
  students  per setting and seed, every student an ETD extraction (4 layers, 384 wide, FFN 1536, importance; 12 heads
            at MiniLM's width, so 4 of its 6 layers copied whole; 6 heads with --mpnet, MPNet's 64 wide):
            domain-kd  a student per domain on that domain alone (recipes/domain_kd.yaml)
            multi-kd   one student, a head per domain, HRKD's batches and losses without the graph
                       (recipes/multi_domain_kd.yaml)
            meta-kd    a student per domain from the meta-teacher (recipes/meta_kd.yaml)
            hrkd       one student, a head per domain, the domain-relational graph (recipes/hrkd.yaml)
            hrkd-release  the same with the graph never trained and a standard step, as the released code: what
                       training the graph (the lookahead) adds
            meta-kd-b8  meta-kd at per-domain KD's batch of 8: as many optimizer steps a stage as domain-kd's (the
                       release's batch of 32 gives a quarter of them), to tell the recipe from its step count
Students train 10 epochs on the few-shot share, as released, and one on the full sets: the same number of optimizer
steps, which a CPU affords (Meta-KD: each of its two stages as long). Model selection is on each run's dev set (a
domain's 300 reviews, or all four domains' for the joint students); every model is then scored on each domain's
test split (200 reviews carved from train.tsv, tasks/amazon.py). The few-shot share is one seeded subset (data_seed
42) for every seed and method, teachers included.

    .venv/bin/python benchmarks/multi_domain.py [--phases teachers,students] [--settings full,few]
        [--seeds 42,43,44] [--methods domain-kd,multi-kd,meta-kd,hrkd] [--workers 2] [--mpnet]
    .venv/bin/python benchmarks/multi_domain.py --smoke          # all-MiniLM-L6-v2, a few reviews, minutes
    .venv/bin/python benchmarks/multi_domain.py --summarise-only

Writes benchmarks/results/multi_domain.{json,md} and multi_domain_weights_<setting>.png (HRKD's learned domain
weights over training, the first seed); --smoke writes multi_domain_smoke.*, --mpnet multi_domain_mpnet.*.
Every finished run's scores and seconds also go to the ledger benchmarks/results/multi_domain_runs.json, which is
committed: on a machine without the run directories, the tables keep those runs and only the missing ones train
(their teacher retrained first). A student whose teacher scored otherwise than the teacher in the table is named
under the table.
"""
from __future__ import annotations

import json
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
METHODS = ("domain-kd", "multi-kd", "meta-kd", "hrkd", "hrkd-release", "meta-kd-b8")
PER_DOMAIN = ("domain-kd", "meta-kd", "meta-kd-b8")  # a student per domain
BASELINES = ("domain-kd", "multi-kd", "meta-kd", "hrkd-release", "meta-kd-b8")
CONFIGS = {
    # all-mpnet-base-v2 as the teacher measured 36 s per 32-review step on 2 cores (about 1 h per teacher on the
    # few-shot share, 6 h on the full sets, two teachers per setting): the CPU benchmark takes all-MiniLM-L6-v2;
    # --mpnet runs the teacher where the compute allows.
    "real": {
        "runs": ROOT / "benchmarks" / "runs" / "multi_domain", "name": "multi_domain",
        "base": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 128, "teacher_epochs": 3,
        "student": {"init": "extract", "layers": 4, "hidden": 384, "heads": 12, "ffn": 1536, "select": "importance"},
        # the students' epochs per setting: the release's 10 on the few-shot share, and on the full sets one, the
        # same number of optimizer steps (188 against 190), which a CPU can afford
        "teacher_lr": 1e-4, "epochs": {"full": 1, "few": 10}, "k": 8, "dev_limit": None, "test_limit": None,
        "log_every": 10, "settings": {"full": {}, "few": {"train_fraction": 0.1}}, "seeds": [42, 43, 44]},
    "smoke": {
        "runs": ROOT / "benchmarks" / "runs" / "multi_domain_smoke", "name": "multi_domain_smoke",
        "base": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 32, "teacher_epochs": 3, "teacher_lr": 1e-4,
        "student": {"init": "extract", "layers": 2, "hidden": 192, "heads": 6, "ffn": 768, "select": "importance",
                    "importance_examples": 32},
        "epochs": {"full": 1, "few": 1}, "k": 4, "dev_limit": 24, "test_limit": 40, "log_every": 1,
        "settings": {"full": {"train_limit": 24}, "few": {"train_limit": 8}}, "seeds": [42]},
}
CONFIGS["mpnet"] = dict(CONFIGS["real"], runs=ROOT / "benchmarks" / "runs" / "multi_domain_mpnet",
                        name="multi_domain_mpnet", base="sentence-transformers/all-mpnet-base-v2", teacher_lr=3e-5,
                        student=dict(CONFIGS["real"]["student"], heads=6))


def run_name(setting: str, method: str, seed: int, domain: str | None = None) -> str:
    return f"{setting}-{method}{f'-{domain}' if domain else ''}-s{seed}"


def _recipe(cfg: dict, file: str, setting: str, name: str, changes: dict):
    from alembert.recipe import load_recipe, recipe_from_dict

    data = load_recipe(ROOT / "recipes" / file).model_dump(exclude_unset=True)
    data.update(name=name, output_dir=str(cfg["runs"]), max_length=cfg["max_length"], data_seed=DATA_SEED,
                dev_limit=cfg["dev_limit"], speed=False, **cfg["settings"][setting], **changes)
    return recipe_from_dict(data, name)


def _distill(recipe) -> None:
    from alembert import api

    final = Path(recipe.output_dir) / recipe.name
    if not (final / "report.json").is_file():
        api.distill(recipe, resume=True)  # an interrupted run continues from its newest checkpoint


def _score_test(cfg: dict, run: Path, domains, heads: bool) -> None:
    """Each domain's test accuracy: the run's student, or with a head per domain, that domain's model."""
    from alembert import api

    scores = {d: api.evaluate(str(run / "domains" / f"amazon-{d}" if heads else run / "student"), f"amazon-{d}",
                              split="test", max_length=cfg["max_length"], limit=cfg["test_limit"]
                              )["metrics"]["accuracy"] for d in domains}
    (run / "test.json").write_text(json.dumps(scores, indent=1) + "\n")


def run_teacher(cfg: dict, setting: str, kind: str) -> None:
    name = f"{setting}-{kind}"
    file = "amazon_teacher.yaml" if kind == "teacher" else "meta_teacher.yaml"
    stage = {"name": "finetune", "epochs": cfg["teacher_epochs"], "lr": cfg["teacher_lr"],
             "losses": [{"type": "prediction", "alpha": 0.0}]}
    _distill(_recipe(cfg, file, setting, name, {"student": {"init": "checkpoint", "source": cfg["base"]},
                                                "stages": [stage]}))
    _score_test(cfg, cfg["runs"] / name, DOMAINS, heads=False)


def student_recipe(cfg: dict, setting: str, method: str, seed: int, domain: str | None = None):
    teacher = cfg["runs"] / f"{setting}-{'meta-teacher' if method.startswith('meta-kd') else 'teacher'}" / "student"
    file = {"domain-kd": "domain_kd.yaml", "multi-kd": "multi_domain_kd.yaml", "meta-kd": "meta_kd.yaml",
            "hrkd": "hrkd.yaml", "hrkd-release": "hrkd.yaml", "meta-kd-b8": "meta_kd.yaml"}[method]
    changes = {"teacher": str(teacher), "seed": seed, "student": cfg["student"]}
    if domain:
        changes["task"] = f"amazon-{domain}"
    from alembert.recipe import load_recipe

    stages = load_recipe(ROOT / "recipes" / file).model_dump(exclude_unset=True)["stages"]
    for stage in stages:
        stage["epochs"] = cfg["epochs"][setting]  # Meta-KD's two stages each as long as the others' one
        if "sampler" in stage:
            stage["sampler"]["k"] = cfg["k"]
    if method in ("domain-kd", "meta-kd-b8"):
        changes["batch_size"] = cfg["k"]  # as many examples of the domain per step as the joint batches hold
    if method.startswith("hrkd"):
        graph = "frozen" if method == "hrkd-release" else "trained"
        changes["plugins"] = [{"type": "domain_heads"}, {"type": "hrkd", "graph": graph,
                                                         "log_every": cfg["log_every"]}]
    if method == "hrkd-release":  # the released code: the graph at its initialisation, the student's step alone
        for stage in stages:
            stage["step"] = {"type": "standard"}
    return _recipe(cfg, file, setting, run_name(setting, method, seed, domain), dict(changes, stages=stages))


def run_student(cfg: dict, setting: str, method: str, seed: int, domain: str | None = None) -> None:
    recipe = student_recipe(cfg, setting, method, seed, domain)
    _distill(recipe)
    _score_test(cfg, cfg["runs"] / recipe.name, [domain] if domain else DOMAINS, heads=domain is None)


# ---- tables -----------------------------------------------------------------------------------------------------


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _done(cfg: dict, name: str) -> bool:
    return (cfg["runs"] / name / "report.json").is_file() and (cfg["runs"] / name / "test.json").is_file()


def _ledger_path(cfg: dict) -> Path:
    return RESULTS / f"{cfg['name']}_runs.json"


def _teacher_kind(method: str) -> str:
    return "meta-teacher" if method.startswith("meta-kd") else "teacher"


def _method_runs(setting: str, method: str, seed: int) -> list[str]:
    return [run_name(setting, method, seed, d) for d in DOMAINS] if method in PER_DOMAIN else \
        [run_name(setting, method, seed)]


def _teacher_scores(cfg: dict, ledger: dict, setting: str, kind: str) -> dict | None:
    """A teacher's {domain: test accuracy}: from its run here (recorded in the ledger), else from the ledger."""
    scores = _json(cfg["runs"] / f"{setting}-{kind}" / "test.json")
    if scores:
        ledger[f"{setting}/{kind}"] = {"test": scores}
    return ledger.get(f"{setting}/{kind}", {}).get("test")


def _method_scores(cfg: dict, ledger: dict, setting: str, method: str, seed: int, teacher: float | None) -> dict | None:
    """One method and seed's ledger entry: {domain: test accuracy}, training seconds, the average of its teacher (here,
    `teacher`) and, for HRKD, its mean domain weights. A run finished here is (re)recorded; None until every part
    has run."""
    names, key = _method_runs(setting, method, seed), f"{setting}/{method}/s{seed}"
    if all(_done(cfg, n) for n in names):
        scores, reports = {}, [_json(cfg["runs"] / n / "report.json") for n in names]
        for n in names:
            scores.update(_json(cfg["runs"] / n / "test.json"))
        ledger[key] = {"test": scores, "seconds": sum(r["training"]["seconds"] for r in reports), "teacher": teacher,
                       "mean_ratios": (reports[0].get("hrkd") or {}).get("mean_ratios")}
    return ledger.get(key)


def _finished(cfg: dict, ledger: dict, setting: str, method: str, seed: int, domain: str | None) -> bool:
    return _done(cfg, run_name(setting, method, seed, domain)) or f"{setting}/{method}/s{seed}" in ledger


def _average(scores: dict) -> float:
    return statistics.mean(scores[d] for d in DOMAINS)


def summarise(cfg: dict, settings: list[str], seeds: list[int]) -> tuple[dict, str]:
    """The tables from the runs here and, for runs this machine lacks, the ledger (which this updates)."""
    ledger, results, lines = _parallel.read_ledger(_ledger_path(cfg)), {}, []
    for setting in settings:
        rows, per_seed, seconds, teachers = {}, {}, {}, {}
        for kind in ("teacher", "meta-teacher"):
            scores = _teacher_scores(cfg, ledger, setting, kind)
            if scores:
                teachers[kind] = _average(scores)
                rows[kind] = {**{d: _parallel.spread([scores[d]]) for d in DOMAINS},
                              "average": _parallel.spread([teachers[kind]])}
        other_teacher = []  # students distilled from a teacher run that scored otherwise than the one in the table
        for method in METHODS:
            teacher = teachers.get(_teacher_kind(method))
            found = {s: _method_scores(cfg, ledger, setting, method, s, teacher) for s in seeds}
            found = {s: entry for s, entry in found.items() if entry}
            per_seed[method] = {s: entry["test"] for s, entry in found.items()}
            seconds[method] = [entry["seconds"] for entry in found.values()]
            other_teacher += [f"{method} s{s} ({entry['teacher']:.2f})" for s, entry in found.items()
                              if None not in (entry.get("teacher"), teacher) and abs(entry["teacher"] - teacher) > 1e-6]
            rows[method] = {**{d: _parallel.spread([v[d] for v in per_seed[method].values()]) for d in DOMAINS},
                            "average": _parallel.spread([_average(v) for v in per_seed[method].values()])}
        paired = {}
        for baseline in BASELINES:
            common = sorted(set(per_seed["hrkd"]) & set(per_seed[baseline]))
            if common:
                diffs = {d: [_pick(per_seed["hrkd"][s], d) - _pick(per_seed[baseline][s], d) for s in common]
                         for d in (*DOMAINS, "average")}
                paired[baseline] = {d: _parallel.paired(v) for d, v in diffs.items()}
        hrkd = _json(cfg["runs"] / run_name(setting, "hrkd", seeds[0]) / "report.json")
        weights = hrkd.get("hrkd") if hrkd else None
        if weights and weights.get("history"):  # the plot needs the run's history: kept from the machine that ran it
            from alembert.plugins.hrkd import plot_ratios

            RESULTS.mkdir(parents=True, exist_ok=True)
            plot_ratios(weights["history"], [d.removeprefix("amazon-") for d in weights["domains"]],
                        RESULTS / f"{cfg['name']}_weights_{setting}.png",
                        f"HRKD domain weights, {setting} ({run_name(setting, 'hrkd', seeds[0])})")
        first_hrkd = ledger.get(f"{setting}/hrkd/s{seeds[0]}") or {}
        results[setting] = {"rows": rows, "per_seed": per_seed, "paired": paired, "seconds": seconds,
                            "hrkd_mean_ratios": first_hrkd.get("mean_ratios"), "other_teacher": other_teacher}
        lines += _table(setting, rows, paired, seconds, len(seeds))
        if other_teacher:
            lines += [f"Distilled from an earlier run of the teacher that scored otherwise (its average): "
                      f"{', '.join(other_teacher)}.", ""]
    _parallel.write_ledger(_ledger_path(cfg), ledger)
    results["claims"] = _claims(results, settings)
    lines += ["", "| claim | evidence | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {c['evidence']} | {c['verdict']} |" for c in results["claims"]]
    return results, "\n".join(lines)


def _pick(scores: dict, key: str) -> float:
    return _average(scores) if key == "average" else scores[key]


def _table(setting: str, rows: dict, paired: dict, seconds: dict, seeds: int) -> list[str]:
    lines = [f"### {setting}", "", "| model | " + " | ".join(DOMAINS) + " | average | training s (mean) |",
             "|---|" + "---:|" * (len(DOMAINS) + 2)]
    for name, row in rows.items():
        n = 1 if name.endswith("teacher") else seeds
        cost = f"{statistics.mean(seconds[name]):.0f}" if seconds.get(name) else "–"
        lines.append(f"| {name} | " + " | ".join(_parallel.cell(row[d], n) for d in (*DOMAINS, "average"))
                     + f" | {cost} |")
    lines += ["", "| paired, per seed (wins) | " + " | ".join(DOMAINS) + " | average |",
              "|---|" + "---:|" * (len(DOMAINS) + 1)]
    for baseline, diffs in paired.items():
        lines.append(f"| hrkd − {baseline} | " + " | ".join(
            f"{_parallel.signed(diffs[d])} ({diffs[d]['wins']}/{diffs[d]['n']})" for d in (*DOMAINS, "average"))
            + " |")
    return lines + [""]


def _claims(results: dict, settings: list[str]) -> list[dict]:
    """The paper's claims, each decided by `_parallel.beats`: HRKD beats a baseline when its paired difference
    (average over the domains) is above zero by a one-sided t-test at 5 % over at least 3 seeds; the few-shot margin
    grows when the few-shot differences are above the full-set ones by a one-sided Welch t-test at 5 %."""
    claims = []
    for baseline in ("domain-kd", "meta-kd"):
        for setting in settings:
            d = results[setting]["paired"].get(baseline, {}).get("average")
            verdict = "not run" if d is None else _parallel.beats(d["differences"])
            evidence = "–" if d is None else f"{_parallel.signed(d)} ({d['wins']}/{d['n']} seeds)"
            claims.append({"claim": f"HRKD beats {baseline} ({setting})", "evidence": evidence, "verdict": verdict})
        if {"full", "few"} <= set(settings):
            full, few = (results[s]["paired"].get(baseline, {}).get("average") for s in ("full", "few"))
            verdict = "not run" if full is None or few is None else \
                _parallel.beats(few["differences"], others=full["differences"])
            evidence = "–" if verdict == "not run" else f"few {few['mean']:+.1f} against full {full['mean']:+.1f}"
            claims.append({"claim": f"the margin over {baseline} grows in few-shot", "evidence": evidence,
                           "verdict": verdict})
    return claims


def main() -> None:
    parser = _parallel.phased_parser(__doc__, METHODS)
    parser.add_argument("--mpnet", action="store_true", help="all-mpnet-base-v2 as the teacher (hours on a CPU)")
    args = parser.parse_args()
    if args.job:
        config, kind, *rest = args.job.split(":")
        cfg = CONFIGS[config]
        if kind == "teacher":
            run_teacher(cfg, rest[0], rest[1])
        else:
            run_student(cfg, rest[0], rest[1], int(rest[2]), rest[3] if len(rest) > 3 else None)
        return
    config = "smoke" if args.smoke else "mpnet" if args.mpnet else "real"
    cfg = CONFIGS[config]
    settings = args.settings.split(",") if args.settings else list(cfg["settings"])
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else cfg["seeds"]
    methods, phases, start = args.methods.split(","), args.phases.split(","), time.time()
    logs, ledger = cfg["runs"] / "logs", _parallel.read_ledger(_ledger_path(cfg))
    if not args.summarise_only:
        # seed by seed, so a partial table covers every setting and method; a run in the ledger is not repeated
        pending = [(s, m, seed, d) for seed in seeds for s in settings for m in methods
                   for d in (DOMAINS if m in PER_DOMAIN else (None,)) if not _finished(cfg, ledger, s, m, seed, d)]
        if "teachers" in phases:  # the big model on both cores, one run at a time; again only where a student needs it
            needed = {(s, _teacher_kind(m)) for s, m, _, _ in pending} if "students" in phases else set()
            _parallel.run_all(__file__, logs, 1, [f"{config}:teacher:{s}:{k}" for s in settings
                                                  for k in ("teacher", "meta-teacher") if not _done(cfg, f"{s}-{k}")
                                                  and ((s, k) in needed or f"{s}/{k}" not in ledger)], threads=2)
        if "students" in phases:
            _parallel.run_all(__file__, logs, args.workers, [f"{config}:student:{s}:{m}:{seed}" + (f":{d}" if d else "")
                                                             for s, m, seed, d in pending])
    results, table = summarise(cfg, settings, seeds)
    settings_out = {key: (str(value) if isinstance(value, Path) else value) for key, value in cfg.items()}
    settings_out.update(seeds=seeds, data_seed=DATA_SEED, wall_seconds=None if args.summarise_only else
                        round(time.time() - start))
    _parallel.write_results(RESULTS, cfg["name"], settings_out, results, table)
    print(table)


if __name__ == "__main__":
    main()
