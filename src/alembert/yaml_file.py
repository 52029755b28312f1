"""Read a YAML file that must hold a mapping, with one-line errors."""
from __future__ import annotations

from pathlib import Path

import yaml

from alembert.errors import AlembertError


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """`what` names the file's role ('recipe', 'task'); `expected` says what its mapping should hold."""
    if not path.is_file():
        raise AlembertError(f"{path}: {what} file not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise AlembertError(f"{path}: cannot read the {what} file ({err.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise AlembertError(f"{path}, line {line}: cannot decode byte {raw[err.start]:#04x}, expected UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise AlembertError(f"{path}{_where(err)}: not valid YAML ({_problem(err)})") from None
    except ValueError as err:  # a value PyYAML matched but cannot build, e.g. the date 2024-02-30
        raise AlembertError(f"{path}: not valid YAML ({err}; quote the value to keep it as text)") from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise AlembertError(f"{path}: expected a mapping of {expected}, found {found}")
    return data


def _where(err: yaml.YAMLError) -> str:
    """', line L, column C' of the problem (1-based), when PyYAML knows it."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(err: yaml.YAMLError) -> str:
    # PyYAML's own text spreads over several lines with a caret; its first sentence is enough here
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    return f"{context}: {problem}" if context else problem
