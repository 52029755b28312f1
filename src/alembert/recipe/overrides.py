"""`--set key=value`: override a recipe (or pool) key by its dotted path."""
from __future__ import annotations

from typing import Any

from alembert.errors import AlembertError, printable, short_repr
from alembert.yaml_file import safe_yaml_value


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise AlembertError(f"--set {printable(text)}: expected key=value, e.g. stages.0.lr=3e-5")
    key, raw = text.split("=", 1)
    # the strict reader: a value that is not YAML stays the text it is; one built to exhaust the parser is refused
    return key.strip().split("."), safe_yaml_value(raw, f"--set {printable(text)}")


def _index(key: str) -> int | None:
    # ASCII digits only: '²'.isdigit() is true, but int('²') fails
    return int(key) if key.isascii() and key.isdigit() else None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        where = f"--set {printable(text)}"
        node = data
        for depth, key in enumerate(keys):
            here = ".".join(keys[: depth + 1])
            if isinstance(node, list):
                index = _index(key)
                if index is None or index >= len(node):
                    indices = f"an index 0..{len(node) - 1}" if node else "nothing: the list is empty"
                    raise AlembertError(f"{where}: {printable(here)} does not exist in the recipe "
                                        f"(expected {indices})")
                if depth == len(keys) - 1:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if depth == len(keys) - 1:
                    node[key] = value
                else:
                    if node.get(key) is None:
                        node[key] = {}
                    node = node[key]
            else:
                parent = ".".join(keys[:depth])
                raise AlembertError(f"{where}: {printable(parent)} holds the value {short_repr(node)}, "
                                    f"not a mapping or list (set {printable(parent)}=VALUE instead)")
    return data
