"""The tables and claims of benchmarks/task_agnostic.py, read back from its runs, or from the ledger for runs another
machine finished (so --summarise-only works on a partial benchmark: what has not run shows as '–' and its claim as
'not run')."""
from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import _parallel

LABELS = {"general": "general distillation", "transfer": "task transfer (XtremeDistil)",
          "etd": "ETD extraction, no distillation", "minilm": "all-MiniLM-L6-v2's layers (reference)"}


# a run's folder under the runs (e.g. "general", "ft/etd-mrpc-s42", "searches/maps") -> what the tables read of it;
# benchmarks/task_agnostic.py reads it from, and writes it to, results/<name>_runs.json
LEDGER: dict = {}


def run_record(cfg: dict, run: str) -> dict | None:
    """A finished run's dev score (None for a task-agnostic distillation), seconds and optimizer steps (its
    report.json here, else the ledger)."""
    def keep(report: dict) -> dict:
        main = (report.get("task") or {}).get("main_metric")
        return {"score": report["models"][-1]["metrics"].get(main) if main else None,
                "seconds": report["training"]["seconds"], "steps": report["training"].get("optimizer_steps")}

    return _parallel.recorded(LEDGER, run, cfg["runs"] / run / "report.json", keep)


def search_record(cfg: dict, kind: str) -> dict | None:
    """A finished search's search.json (here, else the ledger)."""
    run = f"searches/{kind}"
    return _parallel.recorded(LEDGER, run, cfg["runs"] / run / "search.json", lambda search: search)


def finetune_run(key: str, task: str, seed: int) -> str:
    return f"ft/{key.replace('/', '-')}-{task}-s{seed}"


def _dev(cfg: dict, key: str, task: str, seed: int) -> float | None:
    found = run_record(cfg, finetune_run(key, task, seed))
    return None if found is None else found["score"]


def _mean_over(cfg: dict, key: str, tasks: list[str], seed: int) -> float | None:
    """The mean dev score over `tasks` of one student and seed, once every task has run."""
    scores = [_dev(cfg, key, t, seed) for t in tasks]
    return None if any(s is None for s in scores) else statistics.mean(scores)


def _seconds(cfg: dict, run: str) -> float | None:
    found = run_record(cfg, run)
    return found["seconds"] if found else None


def _paired(a: dict, b: dict) -> dict | None:
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [a[s] - b[s] for s in common]
    return _parallel.paired(diffs)


def _verdict(diff: dict | None) -> str:
    return "not run" if diff is None else _parallel.beats(diff["differences"])


def _evidence(diff: dict | None) -> str:
    return "–" if diff is None else f"{_parallel.signed(diff)} ({diff['wins']}/{diff['n']} seeds)"


def students_table(cfg: dict, seeds: list[int], kinds) -> tuple[dict, list[str], dict]:
    tasks = cfg["tasks"]
    compute = {"general": (None, _seconds(cfg, "general")),
               "transfer": (_seconds(cfg, "teacher-sst2"), _seconds(cfg, "transfer")),
               "etd": (None, 0.0), "minilm": (None, 0.0)}
    rows, averages = {}, {}
    for kind in kinds:
        rows[kind] = {t: _parallel.spread([v for s in seeds if (v := _dev(cfg, kind, t, s)) is not None])
                      for t in tasks}
        averages[kind] = {s: v for s in seeds if (v := _mean_over(cfg, kind, tasks, s)) is not None}
        rows[kind]["average"] = _parallel.spread(list(averages[kind].values()))
    lines = ["### Students fine-tuned on each task (dev, mean ± std over seeds)", "",
             "| student | " + " | ".join(tasks) + " | average | teacher fine-tuning s | distillation s (teacher + "
             "student) |", "|---|" + "---:|" * (len(tasks) + 3)]
    for kind in kinds:
        teacher_s, distil_s = compute[kind]
        lines.append(f"| {LABELS[kind]} | " + " | ".join(_parallel.cell(rows[kind][t], len(seeds))
                                                         for t in (*tasks, "average"))
                     + f" | {'–' if teacher_s is None else f'{teacher_s:.0f}'} | "
                     f"{'–' if distil_s is None else f'{distil_s:.0f}'} |")
    diff = _paired(averages.get("transfer", {}), averages.get("general", {}))
    claim = {"claim": "task transfer beats general distillation (average over the tasks)",
             "evidence": _evidence(diff), "verdict": _verdict(diff)}
    return {"rows": rows, "averages": averages, "compute_seconds": compute, "transfer_minus_general": diff}, \
        lines + [""], claim


def budget_table(cfg: dict) -> tuple[dict, list[str], dict]:
    part, rows = cfg["budget"], {}
    for init in ("etd", "random"):
        for fraction in part["fractions"]:
            key = f"budget/{init}-{round(100 * fraction)}"
            run = run_record(cfg, key)
            rows[key] = {"init": init, "fraction": fraction, "score": _mean_over(cfg, key, part["tasks"], 42),
                         "steps": run["steps"] if run else None, "seconds": run["seconds"] if run else None}
    lines = [f"### ETD against random initialisation (general distillation; mean dev over "
             f"{', '.join(part['tasks'])}, one seed)", "", "| student init | share of the steps | steps | seconds | "
             "score |", "|---|---:|---:|---:|---:|"]
    for r in rows.values():
        seconds = "–" if r["seconds"] is None else f"{r['seconds']:.0f}"
        score = "–" if r["score"] is None else f"{r['score']:.2f}"
        lines.append(f"| {r['init']} | {100 * r['fraction']:.0f} % | {r['steps'] or '–'} | {seconds} | {score} |")
    full = {init: rows[f"budget/{init}-100"]["score"] for init in ("etd", "random")}
    reach = [r["fraction"] for r in rows.values() if r["init"] == "etd" and r["score"] is not None
             and full["random"] is not None and r["score"] >= full["random"]]
    if None in full.values():
        claims = [{"claim": "ETD scores higher at equal compute", "evidence": "–", "verdict": "not run"},
                  {"claim": "ETD saves about 70 % of the compute to equal score", "evidence": "–",
                   "verdict": "not run"}]
    else:
        saved = 1 - min(reach) if reach else 0.0
        claims = [{"claim": "ETD scores higher at equal compute (one seed)",
                   "evidence": f"{full['etd']:.2f} against {full['random']:.2f}",
                   "verdict": "reproduced" if full["etd"] > full["random"] else "not reproduced"},
                  {"claim": "ETD saves about 70 % of the compute to equal score (one seed)",
                   "evidence": f"ETD reaches random init's full-budget score with {100 * (1 - saved):.0f} % of the "
                               "steps" if reach else "ETD never reaches random init's full-budget score",
                   "verdict": "reproduced" if saved >= 0.7 else f"partly ({100 * saved:.0f} % saved)" if saved > 0
                   else "not reproduced"}]
    return {"rows": rows}, lines + [""], claims


def maps_table(cfg: dict, seeds: list[int]) -> tuple[dict, list[str], dict]:
    search = search_record(cfg, "maps")
    part = cfg["maps"]
    if search is None:
        return {}, ["### Layer maps", "", "not run", ""], {"claim": "a searched map beats uniform, last and skip",
                                                            "evidence": "–", "verdict": "not run"}
    label = lambda genome: "[" + ",".join(str(g) if g else "-" for g in genome) + "]"  # noqa: E731
    maps = {"searched": search["best"]["map"], **{r["seed"]: r["map"] for r in search["trials"] if r["seed"]}}
    per_seed = {name: {s: v for s in seeds if (v := _mean_over(cfg, f"maps/{name}-s{s}", part["tasks"], s))
                       is not None} for name in maps}
    lines = [f"### Layer maps: the search ({len(search['trials'])} trials, proxy score = mean dev over "
             f"{', '.join(part['tasks'])}), then each map distilled on the larger sample", "",
             "| map | teacher layer per student layer | proxy score in the search | full size, mean dev over seeds |",
             "|---|---|---:|---:|"]
    proxy = {tuple(r["map"]): r["score"] for r in search["trials"]}
    for name, genome in maps.items():
        lines.append(f"| {name} | {label(genome)} | {proxy.get(tuple(genome), float('nan')):.2f} | "
                     f"{_parallel.cell(_parallel.spread(list(per_seed[name].values())), len(seeds))} |")
    diffs = {h: _paired(per_seed["searched"], per_seed[h]) for h in maps if h != "searched"}
    same = [h for h in maps if h != "searched" and maps[h] == maps["searched"]]
    if same:
        claim = {"claim": "a searched map beats uniform, last and skip",
                 "evidence": f"the search's best map is the {same[0]} map", "verdict": "not reproduced"}
    else:
        verdicts = [_verdict(d) for d in diffs.values()]
        verdict = "reproduced" if all(v == "reproduced" for v in verdicts) else next(
            (v for v in verdicts if v.startswith(("not run", "undecided"))), "not reproduced")
        claim = {"claim": "a searched map beats uniform, last and skip",
                 "evidence": "; ".join(f"− {h}: {_evidence(d)}" for h, d in diffs.items()), "verdict": verdict}
    return {"search_best": search["best"], "per_seed": per_seed, "paired": diffs}, lines + [""], claim


def sizes_table(cfg: dict, results_dir: Path) -> tuple[dict, list[str]]:
    folder = cfg["runs"] / "searches" / "sizes"
    search = search_record(cfg, "sizes")
    if search is None:
        return {}, ["### Student sizes", "", "not run", ""]
    from alembert.pipelines.size_search import size_table

    teacher = {**search["teacher_latency_ms"], "parameters": search["teacher_parameters"]}
    pictures = []
    for b in ("b1", "b32"):
        picture = results_dir / f"{cfg['name']}_pareto_{b}.png"  # committed: a new machine has it without the runs
        if (folder / f"pareto_{b}.png").is_file():
            results_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / f"pareto_{b}.png", picture)
        if picture.is_file():
            pictures.append(f"![Pareto front, batch {b[1:]}]({picture.name})")
    budget = f"{search['budget_ms']} ms at batch {search['budget_batch']}" if search["budget_ms"] else "none"
    lines = [f"### Student sizes under a latency budget ({budget}; score = mean dev over "
             f"{', '.join(cfg['sizes']['tasks'])})", "", size_table(search["trials"], search["front"], teacher),
             *pictures]
    return {"front": search["front"], "teacher_latency_ms": search["teacher_latency_ms"]}, lines + [""]


def summarise(cfg: dict, seeds: list[int], kinds, results_dir: Path) -> tuple[dict, str]:
    students, lines, transfer_claim = students_table(cfg, seeds, kinds)
    budget, budget_lines, budget_claims = budget_table(cfg)
    maps, map_lines, map_claim = maps_table(cfg, seeds)
    sizes, size_lines = sizes_table(cfg, results_dir)
    claims = [transfer_claim, *budget_claims, map_claim]
    lines += budget_lines + map_lines + size_lines
    lines += ["| claim | evidence | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {c['evidence']} | {c['verdict']} |" for c in claims]
    return {"students": students, "budget": budget, "maps": maps, "sizes": sizes, "claims": claims}, \
        "\n".join(lines)
