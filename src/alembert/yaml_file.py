"""Read the YAML the user gives (recipes, pool files, task files, --set values), strictly and within bounds.

Plain `yaml.safe_load` lets a repeated key silently replace the first one (a recipe with `stages:` twice runs
the second), builds structures of any depth (thousands of nested brackets end in a RecursionError) and of any
size through aliases (a few lines of `&a [*a, *a, ...]` expand to billions of values once anything walks the
result). The loader here refuses all three with one line naming the file and line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alembert.errors import AlembertError, printable

MAX_BYTES = 1 << 20  # a recipe, pool or task file is a few KB; a larger one is not one of them
MAX_DEPTH = 64  # levels of nested mappings and lists, aliases followed (a recipe is about 5 deep)
MAX_NODES = 100_000  # values in the document once every alias is expanded
MAX_VALUE_CHARS = 1 << 16  # a --set value


class _Refused(yaml.YAMLError):
    """A document the strict loader will not build: the reason and where (a PyYAML mark), for one line."""

    def __init__(self, mark, reason: str):
        super().__init__(reason)
        self.mark, self.reason = mark, reason


def _line(mark) -> int:
    return mark.line + 1


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys, nesting deeper than MAX_DEPTH and documents that expand
    (through aliases) to more than MAX_NODES values or contain themselves."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        # PyYAML composes nested nodes by recursion: stop at MAX_DEPTH, long before Python's recursion limit
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(self.peek_event().start_mark,
                               f"nested deeper than {MAX_DEPTH} levels (expected at most {MAX_DEPTH})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def compose_mapping_node(self, anchor):
        # checked as written, before `<<:` merges are flattened into the mapping (a merged key may be overridden)
        node = super().compose_mapping_node(anchor)
        _check_duplicates(self, node)
        return node


def _check_duplicates(loader: StrictLoader, node: yaml.MappingNode) -> None:
    """A key written twice in one mapping: both lines. Keys merged in with `<<:` may be overridden, as YAML says."""
    seen: dict = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # a list or mapping as a key cannot be a dict key: PyYAML's own error names it
        key = loader.construct_object(key_node, deep=True)  # so 'true' and 'True', '1' and '1.0' are one key
        first = seen.get(key)
        if first is not None:
            shown = key_node.value
            raise _Refused(key_node.start_mark,
                           f"key '{printable(shown)}' appears twice in one mapping (first at line {_line(first)}); "
                           "expected each key once (the second would silently replace the first)")
        seen[key] = key_node.start_mark


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root) -> None:
    """Count the values and the depth of the document as it will be built, every alias expanded where it is used.
    An alias is the very node it names, so each node is measured once (memoised) and a cycle is found by the path
    of nodes being measured; the walk is iterative, so no input can exhaust Python's stack here."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) of its expansion
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = [measured[id(child)] for child in _children(node)]
            size = 1 + sum(values for values, _ in children)
            depth = 1 + max((d for _, d in children), default=0)
            on_path.discard(key)
            if depth > MAX_DEPTH:
                raise _Refused(node.start_mark, f"aliases nest values deeper than {MAX_DEPTH} levels "
                                                f"(expected at most {MAX_DEPTH})")
            if size > MAX_NODES:
                raise _Refused(node.start_mark, f"aliases expand this value to more than {MAX_NODES} values "
                                                f"(expected at most {MAX_NODES}; repeated aliases multiply)")
            measured[key] = (size, depth)
            continue
        if key in measured:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _Refused(child.start_mark, "an alias refers to a value that contains it (expected no "
                                                 "recursive aliases)")
            if id(child) not in measured:
                stack.append((child, False))


def load_yaml_text(text: str) -> Any:
    """`yaml.safe_load` with the strict loader's refusals (raised as yaml.YAMLError subclasses)."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """`what` names the file's role ('recipe', 'task'); `expected` says what its mapping should hold."""
    path = Path(path)
    if path.is_dir():
        raise AlembertError(f"{path}: is a directory, expected a {what} file (YAML)")
    if not path.is_file():
        raise AlembertError(f"{path}: {what} file not found")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise AlembertError(f"{path}: {size} bytes, expected a {what} file of at most {MAX_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as err:
        raise AlembertError(f"{path}: cannot read the {what} file ({err.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise AlembertError(f"{path}, line {line}: cannot decode byte {raw[err.start]:#04x}, expected UTF-8") from None
    data = _parse(text, str(path))
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise AlembertError(f"{path}: expected a mapping of {expected}, found {found}")
    return data


def _parse(text: str, where: str) -> Any:
    try:
        return load_yaml_text(text)
    except _Refused as err:
        raise AlembertError(f"{where}, line {_line(err.mark)}: {err.reason}") from None
    except yaml.YAMLError as err:
        raise AlembertError(f"{where}{_where(err)}: not valid YAML ({_problem(err)})") from None
    except ValueError as err:  # a value PyYAML matched but cannot build, e.g. the date 2024-02-30
        raise AlembertError(f"{where}: not valid YAML ({err}; quote the value to keep it as text)") from None


def safe_yaml_value(text: str, where: str) -> Any:
    """A value given on the command line (`--set key=VALUE`), read as YAML by the strict loader.

    Text that is not valid YAML is returned as it is (a plain string, as `--set` has always read it); a value
    longer than MAX_VALUE_CHARS, nested deeper than MAX_DEPTH, expanding through aliases beyond MAX_NODES, or
    holding a key twice is refused with one line starting with `where` (e.g. '--set stages.0.lr=...')."""
    if len(text) > MAX_VALUE_CHARS:
        raise AlembertError(f"{where}: the value has {len(text)} characters, expected at most {MAX_VALUE_CHARS}")
    try:
        return load_yaml_text(text)
    except _Refused as err:
        raise AlembertError(f"{where}: {err.reason}") from None
    except (yaml.YAMLError, ValueError):  # ValueError: a date-like value such as 2024-02-30
        return text


def _where(err: yaml.YAMLError) -> str:
    """', line L, column C' of the problem (1-based), when PyYAML knows it."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(err: yaml.YAMLError) -> str:
    # PyYAML's own text spreads over several lines with a caret; its first sentence is enough here
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    return f"{context}: {problem}" if context else problem
