"""Many light proxy runs of one recipe, one table: each variant (a list of `--set` overrides) trains in memory,
with no output folder, checkpoint or teacher re-scoring, the teachers loaded once and one teacher cache shared
(kept with `store: all`, so variants that differ in their layer map read the same one). Results go to
<output_dir>/<name>/search.json and search.md as each variant finishes; a search run again skips the variants it
has. The genetic layer-map search (map_search.py) and the size search (size_search.py) build on `proxy_run`,
their Optuna studies kept in the same folder."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from alembert.errors import AlembertError
from alembert.pipelines.map_search import LayerMapSearch
from alembert.pipelines.proxy_fitness import ProxySpec
from alembert.pipelines.size_search import SizeSearch
from alembert.files import write_text_atomically
from alembert.recipe import _Strict, apply_overrides, format_validation_error, recipe_from_dict
from alembert.yaml_file import read_yaml_mapping


class SearchSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    recipe: str  # the base recipe file (relative to the search file)
    # what is searched, one of: a list of variants, layer maps (genetic), student sizes under a latency budget
    variants: dict[str, list[str]] | None = Field(None, min_length=1)  # name -> --set overrides of the base recipe
    layer_maps: LayerMapSearch | None = None
    sizes: SizeSearch | None = None
    proxy: ProxySpec | None = None  # how a task-agnostic recipe's candidates are scored
    set: list[str] = []  # --set overrides of the base recipe shared by every candidate
    output_dir: str = "outputs"

    @model_validator(mode="after")
    def _one_kind(self):
        given = [k for k in ("variants", "layer_maps", "sizes") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set one of variants, layer_maps or sizes (what the search tries)"
                             + (f"; got {', '.join(given)}" if given else ""))
        return self


def load_search(path: str | os.PathLike, overrides: list[str] = ()) -> tuple[SearchSpec, Path]:
    path = Path(path)
    data = apply_overrides(read_yaml_mapping(path, "search", "search keys at the top level"), list(overrides))
    try:
        spec = SearchSpec.model_validate(data)
    except ValidationError as err:
        raise AlembertError(format_validation_error(err, str(path), SearchSpec)) from err
    base = Path(spec.recipe)
    return spec, base if base.is_absolute() else path.parent / base


class ProxyRunner:
    """Runs variants of one base recipe in memory, the teachers loaded once."""

    def __init__(self, base: dict, source: str):
        self.base, self.source, self.teachers = base, source, None

    def recipe(self, name: str, overrides: list[str]):
        data = apply_overrides(json.loads(json.dumps(self.base)), list(overrides))
        data["name"] = name
        cache = data.get("teacher_cache", True)
        if cache is not False:  # one superset cache for every variant
            data["teacher_cache"] = dict(cache if isinstance(cache, dict) else {}, store="all")
        return recipe_from_dict(data, f"{self.source} (variant {name})")

    @property
    def agnostic(self) -> bool:
        return self.base.get("task") is None

    @property
    def data_dir(self) -> str | None:
        return self.base.get("data_dir")

    def load_teachers(self, recipe=None) -> list:
        """The teachers, loaded once for every variant."""
        from alembert.pipelines.run import load_teachers
        from alembert.tasks import get_task
        from alembert.tasks.agnostic import NoTask

        if self.teachers is None:
            recipe = recipe or self.recipe("base", [])
            task = NoTask() if recipe.agnostic else get_task(recipe.task_spec, recipe.data_dir)
            self.teachers = load_teachers(recipe, task)
        return self.teachers

    def check_inputs(self) -> None:
        """The base recipe's data, teachers and student loaded once and dropped: a missing file or a bad size is
        one line before a search writes anything."""
        from alembert.pipelines.run import load_inputs

        recipe = self.recipe("base", [])
        load_inputs(recipe, self.load_teachers(recipe))

    def proxy_run(self, name: str, overrides: list[str], keep_model: bool = False) -> dict:
        """Train one variant; its best dev metric (none for a task-agnostic recipe) and what it cost; with
        `keep_model`, the trained run under 'model' (its student and tokenizer)."""
        from alembert.pipelines.run import distill

        recipe = self.recipe(name, overrides)
        start = time.perf_counter()
        run = distill(recipe.model_copy(update={"speed": False}), keep=False, teachers=self.load_teachers(recipe),
                      score_teachers=False)
        student = next(m for m in run.report["models"] if m["name"] == "student")
        training = run.report["training"]
        return {"variant": name, "overrides": list(overrides), "metric": run.report["task"]["main_metric"],
                "dev": student["metrics"], "best": training["best_metric"],
                "train_seconds": training["train_seconds"], "optimizer_steps": training["optimizer_steps"],
                "seconds": round(time.perf_counter() - start, 1),
                "cache_reused": _cache_reused(run.report),
                **({"model": run} if keep_model else {})}


def _cache_reused(report: dict) -> bool | None:
    """Whether the teacher's outputs came from an earlier run's cache (the task's, or a source's)."""
    caches = [report["teacher_cache"] or {}, *(report.get("source_caches") or {}).values()]
    found = [c["reused"] for c in caches if "reused" in c]
    return any(found) if found else None


def run_search(path: str | os.PathLike, overrides: list[str] = (), log: Callable[[str], None] | None = None) -> dict:
    """Variants: {'name', 'results'}; a layer-map or size search: its rows, best and markdown 'table' too."""
    log = log or (lambda message: None)
    spec, base_path = load_search(path, overrides)
    base = apply_overrides(read_yaml_mapping(base_path, "recipe", "recipe keys at the top level"), spec.set)
    runner = ProxyRunner(base, str(base_path))
    folder = Path(spec.output_dir) / spec.name
    if spec.layer_maps is not None:
        from alembert.pipelines.map_search import search_layer_maps

        return search_layer_maps(spec, runner, folder, log)
    if spec.sizes is not None:
        from alembert.pipelines.size_search import search_sizes

        return search_sizes(spec, runner, folder, log)
    for name, variant in spec.variants.items():  # every variant valid before any trains
        runner.recipe(name, variant)
    record = folder / "search.json"
    done = json.loads(record.read_text(encoding="utf-8"))["results"] if record.is_file() else []
    for i, (name, variant) in enumerate(spec.variants.items()):
        earlier = next((r for r in done if r["variant"] == name and r["overrides"] == variant), None)
        log(f"variant {i + 1}/{len(spec.variants)}: {name} ({'done' if earlier else 'training'})")
        if earlier is None:
            done = [r for r in done if r["variant"] != name] + [runner.proxy_run(name, variant)]
            _write(folder, spec, done)
    _write(folder, spec, done)
    return {"name": spec.name, "results": [r for r in done if r["variant"] in spec.variants]}


def _write(folder: Path, spec: SearchSpec, results: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / "search.json", json.dumps({"name": spec.name, "results": results}, indent=2))
    write_text_atomically(folder / "search.md", table(results))


def table(results: list[dict]) -> str:
    if not results:
        return ""
    metric = results[0]["metric"]
    lines = [f"| variant | dev {metric} (best) | train s | overrides |", "|---|---:|---:|---|"]
    for r in sorted(results, key=lambda r: -r["best"]):
        lines.append(f"| {r['variant']} | {r['best']:.2f} | {r['train_seconds']:.0f} | {' '.join(r['overrides'])} |")
    return "\n".join(lines) + "\n"
