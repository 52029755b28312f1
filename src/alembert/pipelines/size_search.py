"""Student sizes under a latency budget (the NAS-BERT promise of many compressed models from one search, in a
distillation toolkit's terms): layers, hidden width, heads and FFN neurons extracted from the teacher by ETD, each
candidate distilled as a light proxy run; two objectives, its score (up) and its measured latency (down), searched
by Optuna's NSGA-II with the budget as a constraint. A candidate over the budget is measured, never trained. Every
trained point is kept as a checkpoint (points/<size>/); the Pareto front is plotted at batch 1 and 32."""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from alembert.errors import AlembertError
from alembert.recipe import _Strict


class SizeSearch(_Strict):
    trials: int = Field(12, ge=1)
    population: int = Field(6, ge=2)
    layers: list[int] = Field(min_length=1)
    hidden: list[int] = Field(min_length=1)
    heads: list[int] | None = None  # default: the teacher's head size kept
    ffn: list[int] | None = None  # default: the teacher's FFN-to-hidden ratio kept
    latency_budget_ms: float | None = Field(None, gt=0)
    batch_size: Literal[1, 32] = 1  # the batch of the latency objective (both are measured and reported)
    latency_rounds: int = Field(10, ge=3)  # timed rounds per candidate at batch 32 (three times as many at 1)
    seed: int = Field(0, ge=0)


def size_label(size: tuple) -> str:
    return "L{}-H{}-A{}-F{}".format(*size)


def candidates(options: SizeSearch, layout, where: str = "sizes") -> dict[tuple, tuple]:
    """Every (layers, hidden, heads, ffn) the sampler may propose -> the size trained: heads that do not divide a
    width become the largest listed ones that do; sizes beyond the teacher's are refused before any training."""
    from alembert.models.extract import student_width

    for value in options.layers:
        if not 1 <= value <= layout.num_layers:
            raise AlembertError(f"{where}.layers: {value} is not within the teacher's 1..{layout.num_layers} layers")
    heads_choices = options.heads or [None]
    ffn_choices = options.ffn or [None]
    grid = {}
    for layers, hidden, heads, ffn in itertools.product(options.layers, options.hidden, heads_choices, ffn_choices):
        tried = [heads] + sorted((h for h in heads_choices if h is not None and h != heads), reverse=True)
        width, last = None, None
        for h in tried:
            try:
                width = student_width(layout, hidden, h, ffn)
                break
            except AlembertError as err:
                last = err
        if width is None:
            field = str(last).split(":")[0].removeprefix("student.")
            raise AlembertError(f"{where}.{field}: {str(last).split(': ', 1)[1]}")
        grid[(layers, hidden, heads, ffn)] = (layers, width.hidden, width.heads, width.ffn)
    return grid


def latency(teacher, size: tuple | None, seq_len: int, rounds: int) -> dict:
    """The size's latency at batch 1 and 32 (ms), on a randomly initialised model of that shape (the same
    computation as the trained student's, measured before any training), timed interleaved with the teacher so
    that its speed-up survives a busy machine (evaluation/speed.py); None: the teacher's own."""
    from alembert.evaluation.speed import speed_profiles
    from alembert.models.students import student_from_spec

    models = {"teacher": teacher} if size is None else {"teacher": teacher, "model": student_from_spec(teacher, *size)}
    profiles = speed_profiles(models, seq_len, rounds={1: 3 * rounds, 32: rounds}, warmup=2)
    profile = profiles["model" if size is not None else "teacher"]
    return {"b1": profile["latency_ms_b1"], "b32": profile["latency_ms_b32"], "parameters": profile["parameters"],
            **({"speedup_b1": profile["speedup_b1"]["median"], "speedup_b32": profile["speedup_b32"]["median"]}
               if size is not None else {})}


def search_sizes(spec, runner, folder: Path, log) -> dict:
    import optuna

    from alembert.models.layout import find_layout
    from alembert.pipelines.proxy_fitness import evaluate_candidate
    from alembert.pipelines.study import finished, open_study, run_trials

    options: SizeSearch = spec.sizes
    base = runner.recipe("base", [])
    if base.student.init != "extract" or base.student.extract == "explicit":
        raise AlembertError("sizes: the size search extracts students from the teacher (expected student.init: "
                            "extract with extract: uniform or first)")
    if runner.agnostic and spec.proxy is None:
        raise AlembertError("proxy: a task-agnostic recipe has no dev set; name the proxy tasks that score each size "
                            "(proxy: {tasks: [rte, mrpc, stsb]})")
    teacher = runner.load_teachers(base)[0][0]
    grid = candidates(options, find_layout(teacher))
    key = f"b{options.batch_size}"
    if options.latency_budget_ms is not None:  # before any work: a budget nothing in the space meets
        smallest = min(grid.values(), key=lambda s: (s[0] * s[1] * (s[1] + s[3]), s))
        fastest = latency(teacher, smallest, base.max_length, options.latency_rounds)
        if fastest[key] > options.latency_budget_ms:
            raise AlembertError(f"sizes.latency_budget_ms: {options.latency_budget_ms:g} ms at batch "
                                f"{options.batch_size}, but the smallest size, {size_label(smallest)}, takes "
                                f"{fastest[key]:.1f} ms on this machine (expected a budget above it, or smaller sizes)")
    for size in set(grid.values()):  # every size a valid recipe before training
        runner.recipe("check", _overrides(size))
    runner.check_inputs()
    sampler = optuna.samplers.NSGAIISampler(population_size=options.population, seed=options.seed,
                                            constraints_func=lambda t: [t.user_attrs.get("over_budget_ms", 0.0)])
    study = open_study(folder, spec.name, ["maximize", "minimize"], sampler)
    if "teacher_latency" not in study.user_attrs:
        study.set_user_attr("teacher_latency", latency(teacher, None, base.max_length, options.latency_rounds))

    def objective(trial):
        proposed = (trial.suggest_categorical("layers", options.layers),
                    trial.suggest_categorical("hidden", options.hidden),
                    trial.suggest_categorical("heads", options.heads or [None]),
                    trial.suggest_categorical("ffn", options.ffn or [None]))
        size = grid[proposed]
        trial.set_user_attr("size", list(size))
        earlier = next((t for t in finished(study) if t.user_attrs.get("size") == list(size)), None)
        if earlier is not None:  # the same size again: its values, not another training
            for name in ("latency", "over_budget_ms", "dev", "proxy_dev", "train_seconds", "checkpoint"):
                if name in earlier.user_attrs:
                    trial.set_user_attr(name, earlier.user_attrs[name])
            trial.set_user_attr("repeat_of", earlier.number)
            return tuple(earlier.values)
        measured = latency(teacher, size, base.max_length, options.latency_rounds)
        trial.set_user_attr("latency", measured)
        over = 0.0 if options.latency_budget_ms is None else max(0.0, measured[key] - options.latency_budget_ms)
        trial.set_user_attr("over_budget_ms", over)
        if over > 0:  # infeasible: measured, not trained (the constraint ranks it below every feasible size)
            return 0.0, measured[key]
        checkpoint = folder / "points" / size_label(size)
        result = evaluate_candidate(runner, size_label(size), _overrides(size), spec.proxy, folder / "scratch",
                                    keep=checkpoint)
        trial.set_user_attr("checkpoint", str(checkpoint))
        for name in ("proxy_dev", "dev", "train_seconds", "finetune_seconds", "seconds"):
            if name in result:
                trial.set_user_attr(name, result[name])
        return result["score"], measured[key]

    def describe(trial) -> str:
        lat = trial.user_attrs.get("latency", {})
        state = "over budget, not trained" if trial.user_attrs.get("over_budget_ms") else f"score {trial.values[0]:.2f}"
        return f"{size_label(tuple(trial.user_attrs['size']))}: {lat.get(key, 0):.1f} ms at batch " \
               f"{options.batch_size}, {state}"

    run_trials(study, objective, options.trials, describe, log)
    return write_size_results(spec, study, folder)


def _overrides(size: tuple) -> list[str]:
    return [f"student.{field}={value}" for field, value in zip(("layers", "hidden", "heads", "ffn"), size)]


def write_size_results(spec, study, folder: Path) -> dict:
    from alembert.evaluation.pareto import pareto_front, plot_pareto
    from alembert.files import write_text_atomically
    from alembert.pipelines.study import finished

    teacher = study.user_attrs["teacher_latency"]
    rows = [{"trial": t.number, "size": size_label(tuple(t.user_attrs["size"])), "score": t.values[0],
             "latency_ms": {b: t.user_attrs["latency"][b] for b in ("b1", "b32")},
             "parameters": t.user_attrs["latency"]["parameters"],
             # the median of per-round ratios to the teacher, timed with it (not the ratio of separate medians)
             "speedup": {b: t.user_attrs["latency"][f"speedup_{b}"] for b in ("b1", "b32")},
             "trained": not t.user_attrs.get("over_budget_ms"), "proxy_dev": t.user_attrs.get("proxy_dev"),
             "train_seconds": t.user_attrs.get("train_seconds"), "checkpoint": t.user_attrs.get("checkpoint"),
             "repeat_of": t.user_attrs.get("repeat_of")} for t in finished(study)]
    unique = {r["size"]: r for r in rows if r["trained"] and r["repeat_of"] is None}
    fronts, pictures = {}, []
    for b in ("b1", "b32"):
        points = [(size, r["latency_ms"][b], r["score"]) for size, r in unique.items()]
        if points:
            fronts[b] = [p.label for p in pareto_front(points)]
            plot_pareto(points, folder / f"pareto_{b}.png", f"latency (ms, batch {b[1:]}; teacher "
                        f"{teacher[b]:.1f} ms)", "score", f"{spec.name}: student sizes")
            pictures.append(f"![Pareto front, batch {b[1:]}](pareto_{b}.png)")
    result = {"name": spec.name, "kind": "sizes", "teacher_latency_ms": {b: teacher[b] for b in ("b1", "b32")},
              "teacher_parameters": teacher["parameters"], "budget_ms": spec.sizes.latency_budget_ms,
              "budget_batch": spec.sizes.batch_size, "front": fronts, "trials": rows}
    table = size_table(rows, fronts, teacher)
    write_text_atomically(folder / "search.json", json.dumps(result, indent=2) + "\n")
    write_text_atomically(folder / "search.md", f"# Student-size search {spec.name}\n\n{table}\n" +
                          "\n".join(pictures) + "\n")
    return dict(result, table=table)


def size_table(rows: list[dict], fronts: dict, teacher: dict) -> str:
    lines = ["| size | score | parameters | latency b1 (ms) | latency b32 (ms) | speed-up b1 | speed-up b32 | front "
             "(b1/b32) | checkpoint |", "|---|---:|---:|---:|---:|---:|---:|---|---|",
             f"| teacher | | {teacher['parameters'] / 1e6:.1f}M | {teacher['b1']:.1f} | {teacher['b32']:.1f} | 1.0 | "
             "1.0 | | |"]
    for r in sorted((r for r in rows if r["repeat_of"] is None), key=lambda r: r["latency_ms"]["b1"]):
        front = "/".join("yes" if r["size"] in fronts.get(b, []) else "-" for b in ("b1", "b32"))
        score = f"{r['score']:.2f}" if r["trained"] else "over budget"
        lines.append(f"| {r['size']} | {score} | {r['parameters'] / 1e6:.1f}M | {r['latency_ms']['b1']:.1f} | "
                     f"{r['latency_ms']['b32']:.1f} | {r['speedup']['b1']:.1f} | {r['speedup']['b32']:.1f} | "
                     f"{front} | {r['checkpoint'] or ''} |")
    return "\n".join(lines) + "\n"
