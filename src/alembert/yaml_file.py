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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise AlembertError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(data, dict):
        raise AlembertError(f"{path}: expected a mapping of {expected}")
    return data
