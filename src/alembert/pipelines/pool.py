"""A teacher pool: several fine-tuned teachers of distinct quality from one base encoder, for multi-teacher
distillation (RL-KD's observation that a stronger teacher does not always make a stronger student).

Each teacher is a plain no-teacher recipe run through `alembert.api.distill`, at <output_dir>/<pool>/<teacher>/;
<output_dir>/<pool>/pool.json lists them all. A teacher whose run already has a report.json is reused, so an
interrupted pool resumes where it stopped.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Callable, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from alembert.errors import AlembertError
from alembert.files import write_text_atomically
from alembert.recipe import Recipe, TaskSpec, _Strict, apply_overrides, format_validation_error, recipe_from_dict
from alembert.yaml_file import read_yaml_mapping

__all__ = ["PoolSpec", "PoolTeacher", "build_pool", "changed_settings", "load_pool", "teachers_block"]

# a teacher or pool name becomes a directory name and a YAML scalar: keep it plain
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# recipe keys that say what a run is called, where things live or what is measured, not what the teacher learns
_KEYS_THAT_DO_NOT_CHANGE_A_TEACHER = {"name", "data_dir", "output_dir", "speed", "cache_dir", "teacher_cache",
                                      "checkpoint_every", "checkpoint_keep"}  # how often a run saves, not what


class DefaultsSpec(_Strict):
    """What a teacher uses for the keys it does not set."""

    epochs: float = Field(3.0, gt=0)
    lr: float = Field(5e-5, gt=0)
    seed: int = 42


class PoolTeacher(_Strict):
    name: str = Field(pattern=_NAME_PATTERN)
    layers: int | None = Field(None, ge=1)  # the base's first N layers; null: the whole base
    seed: int | None = None
    epochs: float | None = Field(None, gt=0)
    lr: float | None = Field(None, gt=0)
    train_limit: int | None = Field(None, ge=1)  # default: the pool's
    downsample: int | None = Field(None, ge=1)  # stress: keep this many training examples
    flip_labels: float | None = Field(None, ge=0, le=1)  # stress: this fraction of examples gets a wrong label
    source: str | None = None  # another base checkpoint; default: the pool's base
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast for a big teacher, where it costs no accuracy


class PoolSpec(_Strict):
    name: str = Field(pattern=_NAME_PATTERN)
    task: str | TaskSpec
    base: str = "all-MiniLM-L6-v2"
    output_dir: str = "outputs"
    data_dir: str | None = None
    max_length: int = Field(128, ge=8, le=4096)
    batch_size: int = Field(32, ge=1)
    train_limit: int | None = Field(None, ge=1)
    data_seed: int | None = None  # seeds train subsets and stress transforms; default: each teacher's seed
    speed: bool = True  # measure each teacher's latency for its report
    defaults: DefaultsSpec = DefaultsSpec()
    teachers: list[PoolTeacher] = Field(min_length=2)

    @field_validator("teachers")
    @classmethod
    def _unique_names(cls, teachers: list[PoolTeacher]) -> list[PoolTeacher]:
        seen = set()
        for teacher in teachers:
            if teacher.name in seen:
                raise ValueError(f"teacher names must be unique ('{teacher.name}' appears twice)")
            seen.add(teacher.name)
        return teachers

    @property
    def directory(self) -> Path:
        return Path(self.output_dir) / self.name


def load_pool(spec_or_path: PoolSpec | dict | str | os.PathLike, overrides: list[str] = ()) -> tuple[PoolSpec, str]:
    """The validated pool and the name its errors are reported under (the file, or 'pool')."""
    if isinstance(spec_or_path, PoolSpec):
        data, source = spec_or_path.model_dump(), "pool"
    elif isinstance(spec_or_path, dict):
        data, source = copy.deepcopy(spec_or_path), "pool"  # overrides must not change the caller's dict
    else:
        path = Path(spec_or_path)
        data, source = read_yaml_mapping(path, "pool", "pool keys at the top level"), str(path)
    data = apply_overrides(data, list(overrides))
    try:
        return PoolSpec.model_validate(data), source
    except ValidationError as err:
        raise AlembertError(format_validation_error(err, source, PoolSpec)) from err


def teacher_recipe(pool: PoolSpec, teacher: PoolTeacher) -> Recipe:
    """The teacher's run: fine-tune its (possibly truncated) base on the labels alone."""
    source = teacher.source or pool.base
    if teacher.layers is None:
        student = {"init": "checkpoint", "source": source}
    else:  # the embeddings and the first N layers; a fresh head either way
        student = {"init": "extract", "extract": "first", "layers": teacher.layers, "source": source}
    stress = {k: v for k, v in (("downsample", teacher.downsample), ("flip_labels", teacher.flip_labels))
              if v is not None}
    task = pool.task if isinstance(pool.task, str) else pool.task.model_dump()
    return recipe_from_dict({
        "name": teacher.name, "task": task, "teacher": None, "student": student,
        "stages": [{"name": "finetune", "epochs": teacher.epochs or pool.defaults.epochs,
                    "lr": teacher.lr or pool.defaults.lr, "losses": [{"type": "prediction", "alpha": 0.0}]}],
        "data_dir": pool.data_dir, "output_dir": str(pool.directory), "max_length": pool.max_length,
        "batch_size": pool.batch_size, "train_limit": teacher.train_limit or pool.train_limit,
        "seed": pool.defaults.seed if teacher.seed is None else teacher.seed, "data_seed": pool.data_seed,
        "stress": stress or None, "speed": pool.speed, "precision": teacher.precision,
    }, f"{pool.name} (teacher {teacher.name})")


def _base_depth(name: str) -> int:
    from alembert.models.loading import load_config  # its folder checks: one line for a broken base

    return load_config(name).num_hidden_layers


def _check_depths(pool: PoolSpec, source: str) -> None:
    """A truncated teacher must fit in its base: refused before any teacher trains."""
    depths: dict[str, int] = {}
    for i, teacher in enumerate(pool.teachers):
        base = teacher.source or pool.base
        if base not in depths:
            depths[base] = _base_depth(base)
        if teacher.layers is not None and teacher.layers > depths[base]:
            raise AlembertError(f"{source}: teachers.{i}.layers: {teacher.layers} exceeds the {depths[base]} layers "
                                f"of the base {base}")


def _changed_keys(built: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ; keys the older run did not record are not compared."""
    changed = []
    for key, value in wanted.items():
        if key not in built or (not prefix and key in _KEYS_THAT_DO_NOT_CHANGE_A_TEACHER):
            continue
        if isinstance(value, dict) and isinstance(built[key], dict):
            changed += _changed_keys(built[key], value, f"{prefix}{key}.")
        elif isinstance(value, list) and isinstance(built[key], list) and len(value) == len(built[key]):
            changed += _changed_keys(dict(enumerate(built[key])), dict(enumerate(value)), f"{prefix}{key}.")
        elif built[key] != value:
            changed.append(f"{prefix}{key}")
    return changed


def changed_settings(report: dict, recipe: Recipe) -> list[str]:
    """The settings that shape a teacher (everything but its name, folders and measurements) in which the finished
    run of `report` differs from `recipe`: none, and that run is the teacher `recipe` would train."""
    return _changed_keys(report.get("recipe", {}), json.loads(recipe.model_dump_json()))


def _reusable_report(run_dir: Path, recipe: Recipe, where: str) -> dict | None:
    """The finished run's report; a run built from other settings is refused rather than silently reused."""
    report_file = run_dir / "report.json"
    if not report_file.is_file():
        return None
    report = json.loads(report_file.read_text(encoding="utf-8"))
    changed = changed_settings(report, recipe)
    if changed:
        raise AlembertError(f"{where}: {run_dir} was trained with other settings ({', '.join(changed)} differ); "
                            "pass --overwrite to retrain the pool")
    return report


def _parameters(checkpoint: Path) -> int:
    """Counted from the saved tensors' shapes: no model needs to be built."""
    from safetensors import safe_open

    total = 0
    for file in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as tensors:
            total += sum(math.prod(tensors.get_slice(key).get_shape()) for key in tensors.keys())
    return total


def _teacher_entry(run_dir: Path, report: dict, reused: bool) -> dict:
    checkpoint = run_dir / "student"
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    student = next(m for m in report["models"] if m["name"] == "student")
    metric = report["task"]["main_metric"]
    return {
        "name": report["name"], "path": str(checkpoint), "layers": config.get("num_hidden_layers"),
        "parameters": _parameters(checkpoint), "dev_metrics": student["metrics"], "main_metric": metric,
        "dev_main_metric": student["metrics"][metric], "train_examples": report["data"]["train_examples"],
        "seconds": report["training"]["seconds"], "reused": reused,
    }


def _task_name(pool: PoolSpec) -> str:
    return pool.task if isinstance(pool.task, str) else pool.task.name


def build_pool(spec_or_path: PoolSpec | dict | str | os.PathLike, overrides: list[str] = (), overwrite: bool = False,
               log: Callable[[str], None] | None = None) -> dict | None:
    """Train (or reuse) every teacher of the pool, write <output_dir>/<pool>/pool.json and return its content (None in
    the processes of an `accelerate launch` other than the main one).

    pool.json: name, task, base, main_metric and `teachers`, in the pool file's order, each with name, path (its
    student/ checkpoint), layers, parameters, dev_metrics, main_metric, dev_main_metric, train_examples, seconds,
    reused (true when an earlier run was taken as it was).
    """
    from alembert.api import distill, process_state  # torch and transformers load only when a pool is built

    pool, source = load_pool(spec_or_path, overrides)
    recipes = [teacher_recipe(pool, teacher) for teacher in pool.teachers]  # every teacher valid before any trains
    _check_depths(pool, source)
    main = process_state().is_main_process  # under `accelerate launch` every process trains, the main one records
    entries = []
    for i, (teacher, recipe) in enumerate(zip(pool.teachers, recipes)):
        run_dir = pool.directory / teacher.name
        report = None if overwrite else _reusable_report(run_dir, recipe, f"{source}: teachers.{i}")
        reused = report is not None
        if log and main:
            log(f"teacher {i + 1}/{len(recipes)}: {teacher.name} ({'reused' if reused else 'training'})")
        if not reused:
            run = distill(recipe, overwrite=overwrite)
            report = run.report if main else None
        if main:
            entries.append(_teacher_entry(run_dir, report, reused))
    if not main:
        return None
    result = {"name": pool.name, "task": _task_name(pool), "base": pool.base,
              "main_metric": entries[0]["main_metric"], "teachers": entries}
    write_text_atomically(pool.directory / "pool.json", json.dumps(result, indent=2) + "\n")
    return result


def teachers_block(pool: dict) -> str:
    """The `teachers:` lines to paste into a multi-teacher distillation recipe."""
    lines = ["teachers:"]
    for teacher in pool["teachers"]:
        entry = {"name": teacher["name"], "path": teacher["path"]}
        lines.append("  - " + yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10**6).strip())
    return "\n".join(lines)
