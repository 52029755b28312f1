"""Transfer: distil a student (or take one), then fine-tune it on N tasks; one table of the tasks' dev scores.

The student's classification head is dropped (`head: drop`: each task gets a fresh head on the distilled encoder)
or kept where the task has the same labels (`head: keep`). Every fine-tuning run is an ordinary run under
<output_dir>/<name>/<task>-s<seed>/; finished ones are reused, so an interrupted transfer resumes.
"""
from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from alembert.errors import AlembertError
from alembert.files import write_text_atomically
from alembert.recipe import TaskSpec, _Strict, apply_overrides, format_validation_error
from alembert.yaml_file import read_yaml_mapping

ENCODER = "encoder"  # the distilled student without its head


class FinetuneSpec(_Strict):
    epochs: float = Field(3.0, gt=0)
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(128, ge=8, le=4096)
    train_limit: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"


class TransferTask(FinetuneSpec):
    task: str | TaskSpec | list[str | TaskSpec]
    epochs: float | None = Field(None, gt=0)
    lr: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8, le=4096)


class TransferSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    distill: str | None = None  # a recipe file to run first (relative to this file)
    student: str | None = None  # or a student checkpoint to start from
    head: Literal["drop", "keep"] = "drop"
    tasks: list[TransferTask] = Field(min_length=1)
    finetune: FinetuneSpec = FinetuneSpec()  # what each task uses unless it says otherwise
    seeds: list[int] = Field([42], min_length=1)
    output_dir: str = "outputs"
    data_dir: str | None = None

    @model_validator(mode="after")
    def _one_student(self):
        if (self.distill is None) == (self.student is None):
            raise ValueError("set distill (a recipe to run first) or student (a checkpoint), one of them")
        return self


def load_transfer(path: str | os.PathLike, overrides: list[str] = ()) -> tuple[TransferSpec, Path]:
    path = Path(path)
    data = apply_overrides(read_yaml_mapping(path, "transfer", "transfer keys at the top level"), list(overrides))
    try:
        return TransferSpec.model_validate(data), path.parent
    except ValidationError as err:
        raise AlembertError(format_validation_error(err, str(path), TransferSpec)) from err


def _relative(base: Path, name: str) -> str:
    path = Path(name)
    return str(path if path.is_absolute() or not (base / path).exists() else base / path)


def run_transfer(path: str | os.PathLike, overrides: list[str] = (), overwrite: bool = False,
                 log: Callable[[str], None] | None = None) -> dict:
    from alembert.pipelines.finetune import finetune_recipe
    from alembert.pipelines.run import distill
    from alembert.recipe import load_recipe

    log = log or (lambda message: None)
    spec, base = load_transfer(path, overrides)
    folder = Path(spec.output_dir) / spec.name
    if spec.distill is not None:
        recipe = load_recipe(_relative(base, spec.distill), [f"output_dir={folder}"] +
                             ([f"data_dir={spec.data_dir}"] if spec.data_dir else []))
        run_dir = folder / recipe.name
        if not (run_dir / "report.json").is_file() or overwrite:
            log(f"distilling: {recipe.name}")
            distill(recipe, overwrite=overwrite, log=log)
        student = run_dir / "student"
    else:
        student = Path(_relative(base, spec.student))
    source = _encoder(student, folder) if spec.head == "drop" else student
    rows = []
    for entry in spec.tasks:
        settings = {k: v if v is not None else getattr(spec.finetune, k)
                    for k, v in entry.model_dump(exclude={"task"}).items()}
        task = [t if isinstance(t, str) else t.model_dump() for t in entry.task] if isinstance(entry.task, list) \
            else entry.task if isinstance(entry.task, str) else entry.task.model_dump()
        for seed in spec.seeds:
            name = f"{_task_name(entry.task)}-s{seed}"
            recipe = finetune_recipe(str(source), task, name=name, output_dir=str(folder), seed=seed,
                                     data_dir=spec.data_dir, speed=False, **settings)
            report_file = folder / name / "report.json"
            if report_file.is_file() and not overwrite:
                report = json.loads(report_file.read_text(encoding="utf-8"))
            else:
                log(f"fine-tuning on {name}")
                report = distill(recipe, overwrite=overwrite, log=log).report
            student_row = next(m for m in report["models"] if m["name"] == "student")
            rows.append({"task": _task_name(entry.task), "seed": seed, "metric": report["task"]["main_metric"],
                         "dev": student_row["metrics"][report["task"]["main_metric"]],
                         "seconds": report["training"]["seconds"]})
    result = {"name": spec.name, "student": str(student), "head": spec.head, "rows": rows}
    write_text_atomically(folder / "transfer.json", json.dumps(result, indent=2) + "\n")
    write_text_atomically(folder / "transfer.md", table(rows))
    return result


def _task_name(task) -> str:
    if isinstance(task, list):
        return "+".join(_task_name(t) for t in task)
    return task if isinstance(task, str) else task.name


def _encoder(student: Path, folder: Path) -> Path:
    """The student's encoder without its head, saved once: each task then gets a fresh head."""
    from transformers import AutoModel, AutoTokenizer

    out = folder / ENCODER
    if not (out / "config.json").is_file():
        AutoModel.from_pretrained(student).save_pretrained(out, safe_serialization=True)
        AutoTokenizer.from_pretrained(student).save_pretrained(out)
    return out


def table(rows: list[dict]) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    means = {t: statistics.mean(r["dev"] for r in rows if r["task"] == t) for t in tasks}
    spread = {t: statistics.pstdev([r["dev"] for r in rows if r["task"] == t]) for t in tasks}
    lines = ["| " + " | ".join(["", *tasks, "average"]) + " |", "|---" + "|---:" * (len(tasks) + 1) + "|",
             "| dev (mean ± std over seeds) | " + " | ".join(f"{means[t]:.2f} ± {spread[t]:.2f}" for t in tasks)
             + f" | {statistics.mean(means.values()):.2f} |"]
    return "\n".join(lines) + "\n"
