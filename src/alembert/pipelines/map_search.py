"""Layer-map search (Jiao et al., "Improving task-agnostic BERT distillation with layer mapping search"): a genetic
search, Optuna's NSGA-II sampler, over which teacher layer each student layer learns from.

A genome g = (g_1..g_M) gives student layer m the teacher layer g_m (1..N), or none (0: that layer is not
supervised), applied to the base recipe's layer losses as explicit maps (hidden states also keep embeddings <->
embeddings where the loss includes them). The first generation holds the heuristic maps, enqueued: uniform
(m <-> m N / M), last (only M <-> N) and skip (PKD-Skip: the uniform map less the last layer), so the baselines
are always evaluated. The fitness is a proxy run's score (pipelines/proxy_fitness.py). With `monotone`, the
supervised genes are sorted (a deeper student layer never learns from a shallower teacher layer); genomes that
come out equal are trained once and their score reused.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from alembert.errors import AlembertError
from alembert.mapping import scaled_layer
from alembert.recipe import _Strict

LAYER_LOSSES = ("hidden_mse", "attention_mse", "attention_kl", "attention_prob_mse", "relation", "pkd")


class LayerMapSearch(_Strict):
    trials: int = Field(20, ge=1)  # completed trials in all, the seeds included
    population: int = Field(8, ge=2)  # NSGA-II's generation size
    # "stage.loss" indices to map, e.g. ["0.1"] (any loss whose spec takes map and layers); default: every
    # built-in layer loss
    losses: list[str] | None = None
    none: bool = True  # a student layer may learn from no teacher layer (the last and skip maps need it)
    monotone: bool = True
    seed: int = Field(0, ge=0)


def seed_maps(m: int, n: int, none: bool) -> dict[str, list[int]]:
    uniform = [scaled_layer(k, m, n) for k in range(1, m + 1)]
    if not none:  # without unsupervised layers, 'last' is the top-aligned map and skip is left out
        return {"uniform": uniform, "last": [n - m + k for k in range(1, m + 1)]}
    seeds = {"uniform": uniform, "last": [0] * (m - 1) + [n]}
    if m >= 2:
        seeds["skip"] = uniform[:-1] + [0]
    return seeds


def repair(genome: list[int], n: int, monotone: bool) -> list[int]:
    """Monotone: the supervised genes sorted in place; at least one layer supervised (the last, by the teacher's
    last, when the sampler proposed none)."""
    genome = list(genome)
    if monotone:
        supervised = iter(sorted(g for g in genome if g))
        genome = [next(supervised) if g else 0 for g in genome]
    if not any(genome):
        genome[-1] = n
    return genome


def targets(base: dict, chosen: list[str] | None, where: str) -> list[tuple[int, int, dict]]:
    """The (stage, loss, spec) a genome maps."""
    found = []
    for i, stage in enumerate(base.get("stages") or []):
        for j, loss in enumerate(stage.get("losses") or []):
            if (chosen is None and loss.get("type") in LAYER_LOSSES) or (chosen and f"{i}.{j}" in chosen):
                found.append((i, j, loss))
    if chosen:
        missing = sorted(set(chosen) - {f"{i}.{j}" for i, j, _ in found})
        if missing:
            raise AlembertError(f"{where}.losses: no loss {missing[0]} in the recipe (expected 'stage.loss' indices)")
    # a loss named explicitly may be a user's: its spec takes map and layers, or the recipe check says it does not
    if not found:
        raise AlembertError(f"{where}: the recipe has no layer loss to map (expected one of {', '.join(LAYER_LOSSES)})")
    return found


def overrides_for(genome: list[int], mapped: list[tuple[int, int, dict]]) -> list[str]:
    pairs = [[m, g] for m, g in enumerate(genome, start=1) if g]
    out = []
    for i, j, loss in mapped:
        layers = ([[0, 0]] if loss.get("type") == "hidden_mse" and loss.get("embeddings", True) else []) + pairs
        out += [f"stages.{i}.losses.{j}.map=explicit", f"stages.{i}.losses.{j}.layers={json.dumps(layers)}"]
    return out


def label(genome: list[int]) -> str:
    return "[" + ",".join(str(g) if g else "-" for g in genome) + "]"


def student_depth(runner, where: str) -> tuple[int, int]:
    """(student layers M, teacher layers N), checked before any training."""
    from alembert.models.layout import find_layout

    recipe = runner.recipe("base", [])
    student = recipe.student
    if student.init != "extract":
        raise AlembertError(f"{where}: the layer-map search extracts the student from the teacher (expected "
                            f"student.init: extract, got {student.init})")
    n = find_layout(runner.load_teachers(recipe)[0][0]).num_layers
    m = len(student.layer_ids) if student.extract == "explicit" and student.layer_ids else student.layers
    if m > n:
        raise AlembertError(f"{where}: the student has {m} layers, more than the teacher's {n} (expected "
                            f"student.layers <= {n} to map each student layer to a teacher layer)")
    return m, n


def search_layer_maps(spec, runner, folder: Path, log) -> dict:
    import optuna

    from alembert.pipelines.proxy_fitness import evaluate_candidate
    from alembert.pipelines.study import finished, open_study, run_trials

    options: LayerMapSearch = spec.layer_maps
    mapped = targets(runner.base, options.losses, "layer_maps")
    m, n = student_depth(runner, "layer_maps")
    if runner.agnostic and spec.proxy is None:
        raise AlembertError("proxy: a task-agnostic recipe has no dev set; name the proxy tasks that score each map "
                            "(proxy: {tasks: [rte, mrpc, stsb]})")
    runner.recipe("check", overrides_for(seed_maps(m, n, options.none)["uniform"], mapped))  # valid before training
    runner.check_inputs()
    sampler = optuna.samplers.NSGAIISampler(population_size=options.population, seed=options.seed)
    study = open_study(folder, spec.name, ["maximize"], sampler)
    seeds = seed_maps(m, n, options.none)
    if not study.trials:  # a new study: the heuristic maps first
        for genome in seeds.values():
            study.enqueue_trial({f"layer_{k}": g for k, g in enumerate(genome, start=1)})
    low = 0 if options.none else 1
    names = {tuple(g): name for name, g in seeds.items()}

    def objective(trial):
        raw = [trial.suggest_int(f"layer_{k}", low, n) for k in range(1, m + 1)]
        genome = repair(raw, n, options.monotone)
        trial.set_user_attr("genome", genome)
        trial.set_user_attr("seed", names.get(tuple(genome)))
        earlier = next((t for t in finished(study) if t.user_attrs.get("genome") == genome), None)
        if earlier is not None:  # the same map again: its score, not another training
            trial.set_user_attr("repeat_of", earlier.number)
            return earlier.value
        result = evaluate_candidate(runner, f"map-{trial.number}", overrides_for(genome, mapped), spec.proxy,
                                    folder / "scratch")
        for key in ("proxy_dev", "dev", "train_seconds", "finetune_seconds", "seconds", "cache_reused"):
            if key in result:
                trial.set_user_attr(key, result[key])
        return result["score"]

    def describe(trial) -> str:
        best = max(finished(study), key=lambda t: t.value)
        return (f"map {label(trial.user_attrs.get('genome', []))} score {trial.value:.2f} (best "
                f"{label(best.user_attrs['genome'])} {best.value:.2f})")

    run_trials(study, objective, options.trials, describe, log)
    return write_results(spec, study, mapped, folder)


def write_results(spec, study, mapped, folder: Path) -> dict:
    from alembert.files import write_text_atomically
    from alembert.pipelines.study import finished

    trials = finished(study)
    rows = [{"trial": t.number, "map": t.user_attrs["genome"], "seed": t.user_attrs.get("seed"), "score": t.value,
             "proxy_dev": t.user_attrs.get("proxy_dev"), "repeat_of": t.user_attrs.get("repeat_of"),
             "train_seconds": t.user_attrs.get("train_seconds"), "seconds": t.user_attrs.get("seconds"),
             "overrides": overrides_for(t.user_attrs["genome"], mapped)} for t in trials]
    best = max(rows, key=lambda r: r["score"])
    result = {"name": spec.name, "kind": "layer_maps", "best": best, "trials": rows}
    table = map_table(rows)
    write_text_atomically(folder / "search.json", json.dumps(result, indent=2) + "\n")
    write_text_atomically(folder / "search.md", f"# Layer-map search {spec.name}\n\nBest map {label(best['map'])}: "
                          f"{best['score']:.2f}\n\n{table}\n![fitness by trial](fitness.png)\n")
    plot_fitness(rows, folder / "fitness.png")
    return dict(result, table=table)


def map_table(rows: list[dict]) -> str:
    lines = ["| trial | map (teacher layer per student layer; - none) | seed | score | proxy dev | train s |",
             "|---:|---|---|---:|---|---:|"]
    for r in sorted(rows, key=lambda r: -r["score"]):
        dev = ", ".join(f"{k} {v:.1f}" for k, v in (r["proxy_dev"] or {}).items())
        again = f" (= trial {r['repeat_of']})" if r["repeat_of"] is not None else ""
        seconds = f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else ""
        lines.append(f"| {r['trial']} | {label(r['map'])}{again} | {r['seed'] or ''} | {r['score']:.2f} | {dev} | "
                     f"{seconds} |")
    return "\n".join(lines) + "\n"


def plot_fitness(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(rows, key=lambda r: r["trial"])
    best, running = [], float("-inf")
    for r in order:
        running = max(running, r["score"])
        best.append(running)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter([r["trial"] for r in order], [r["score"] for r in order], s=14, color="#999", label="trial")
    ax.step([r["trial"] for r in order], best, where="post", color="#2a7", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("proxy score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
