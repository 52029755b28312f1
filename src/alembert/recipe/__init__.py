"""The recipe: one YAML file is one run. Validated in full, with typed fields, before any work starts."""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from alembert.errors import AlembertError, printable
from alembert.recipe.errors import format_validation_error
from alembert.recipe.overrides import apply_overrides, parse_override
from alembert.recipe.schema import TASK_SOURCE, Recipe, StageSpec
from alembert.recipe.data_specs import SourceSpec
from alembert.recipe.specs import (AssistantSpec, CacheSpec, CombineSpec, PluginOptions, RLKDOptions, StressSpec,
                                   StudentSpec, TeacherSpec, _Strict)
from alembert.recipe.task_specs import GenericTaskSpec, TaskSpec
from alembert.registry import import_modules
from alembert.yaml_file import read_yaml_mapping

__all__ = ["AssistantSpec", "CacheSpec", "CombineSpec", "GenericTaskSpec", "PluginOptions", "RLKDOptions", "Recipe",
           "SourceSpec", "StageSpec", "StressSpec", "StudentSpec", "TASK_SOURCE", "TaskSpec", "TeacherSpec", "_Strict",
           "apply_overrides", "format_validation_error", "load_recipe", "parse_override", "recipe_from_dict",
           "stage_from_dict", "without_teacher"]


def load_recipe(path: str | os.PathLike, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    data = read_yaml_mapping(path, "recipe", "recipe keys at the top level")
    return recipe_from_dict(apply_overrides(data, list(overrides)), str(path), base=path.parent,
                            overrides=_override_keys(overrides))


def recipe_from_dict(data: dict, source: str = "recipe", base: Path | None = None,
                     overrides: dict[str, str] | None = None) -> Recipe:
    """Validate a recipe's mapping. Its `imports:` are imported first (relative .py paths from `base`), so the
    losses, plugins, sources, ... they register can be named in it."""
    imports = data.get("imports") if isinstance(data, dict) else None
    if isinstance(imports, list):
        import_modules(imports, base, f"{source}: imports")
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise AlembertError(format_validation_error(err, source, Recipe, overrides)) from err


def stage_from_dict(data: dict, source: str = "stage") -> StageSpec:
    try:
        return StageSpec.model_validate(data)
    except ValidationError as err:
        raise AlembertError(format_validation_error(err, source, StageSpec)) from err


def _override_keys(overrides) -> dict[str, str]:
    return {text.split("=", 1)[0].strip(): text for text in overrides if "=" in text}


def without_teacher(recipe: Recipe, name: str) -> Recipe:
    """The no-teacher baseline of a recipe: its last stage alone, on the hard labels, with the same student
    (extracted from the teacher, when the recipe extracts) and the same schedule."""
    data = recipe.model_dump()
    last = dict(data["stages"][-1], losses=[{"type": "prediction", "alpha": 0.0}], data=TASK_SOURCE, plugins=[],
                sampler={"type": "shuffled"})
    student = dict(data["student"])
    if student["init"] != "checkpoint" and not student["source"]:
        student["source"] = recipe.teacher_list[0].path if recipe.teacher_list else None
    data.update(name=name, teacher=None, teachers=None, stages=[last], student=student, assistant=None,
                sources={}, plugins=[])
    return recipe_from_dict(data, f"{printable(name)} (no-teacher baseline)")
