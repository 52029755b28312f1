"""Many light proxy runs of one recipe, one table: each variant (a list of `--set` overrides) trains in memory,
with no output folder, checkpoint or teacher re-scoring, the teachers loaded once and one teacher cache shared
(kept with `store: all`, so variants that differ in their layer map read the same one). Results go to
<output_dir>/<name>/search.json and search.md as each variant finishes; a search run again skips the variants it
has. The genetic layer-map search and the size search build on `proxy_run`."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, ValidationError

from alembert.errors import AlembertError
from alembert.files import write_text_atomically
from alembert.recipe import _Strict, apply_overrides, format_validation_error, recipe_from_dict
from alembert.yaml_file import read_yaml_mapping


class SearchSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    recipe: str  # the base recipe file (relative to the search file)
    variants: dict[str, list[str]] = Field(min_length=1)  # name -> --set overrides of the base recipe
    output_dir: str = "outputs"


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

    def proxy_run(self, name: str, overrides: list[str]) -> dict:
        """Train one variant; its best dev metric and what it cost."""
        from alembert.models.loading import load_classifier
        from alembert.pipelines.run import distill
        from alembert.tasks import get_task

        recipe = self.recipe(name, overrides)
        if self.teachers is None:
            task = get_task(recipe.task_spec, recipe.data_dir)
            self.teachers = [load_classifier(t.path, task.num_labels, recipe.trust_remote_code, require_head=True,
                                             kind=task.kind) for t in recipe.teacher_list]
        start = time.perf_counter()
        run = distill(recipe.model_copy(update={"speed": False}), keep=False, teachers=self.teachers,
                      score_teachers=False)
        student = next(m for m in run.report["models"] if m["name"] == "student")
        return {"variant": name, "overrides": list(overrides), "metric": run.report["task"]["main_metric"],
                "dev": student["metrics"], "best": run.report["training"]["best_metric"],
                "train_seconds": run.report["training"]["train_seconds"],
                "seconds": round(time.perf_counter() - start, 1),
                "cache_reused": run.report["teacher_cache"].get("reused")}


def run_search(path: str | os.PathLike, overrides: list[str] = (), log: Callable[[str], None] | None = None) -> dict:
    log = log or (lambda message: None)
    spec, base_path = load_search(path, overrides)
    base = read_yaml_mapping(base_path, "recipe", "recipe keys at the top level")
    runner = ProxyRunner(base, str(base_path))
    for name, variant in spec.variants.items():  # every variant valid before any trains
        runner.recipe(name, variant)
    folder = Path(spec.output_dir) / spec.name
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
