"""Tasks from the user's own CSV, TSV or JSON-lines files, described by a dict (e.g. from a recipe)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from alembert.errors import AlembertError, printable, short_repr
from alembert.tasks.base import Example, Task
from alembert.tasks.kinds import KINDS, SEQUENCE, SPANS, TOKENS
from alembert.tasks.metrics import METRIC_NAMES, REGRESSION_METRICS
from alembert.tasks.readers import (check_columns, class_label, float_label, label_name, label_number, make_examples,
                                    read_jsonl, read_table)

FORMATS = {"csv": ",", "tsv": "\t", "jsonl": None}
SPEC_KEYS = ("name", "kind", "format", "train", "dev", "test", "text_columns", "label_column", "labels",
             "regression", "metrics")


@dataclass(frozen=True)
class GenericTask(Task):
    format: str = "csv"
    files: tuple[tuple[str, Path], ...] = ()  # (split, path) for the splits the spec names
    text_columns: tuple[str, ...] = ()
    label_column: str = "label"

    def source(self, split: str) -> str:
        return str(dict(self.files).get(split, super().source(split)))

    def _read(self, split: str) -> list[Example]:
        files = dict(self.files)
        if split not in files:
            raise AlembertError(f"{self.name}: no '{split}' file in the task spec (expected key '{split}: PATH')")
        path = files[split]
        records = read_records(path, self.format)
        a, b = self.text_columns[0], (self.text_columns[1] if self.is_pair else None)
        label_required = split != "test"  # a test file may come without labels
        label = self.label_column
        if self.format != "jsonl":
            if not label_required and label not in records[0][1]:
                label = None
            check_columns(path, records, (a, b, label))
        parse = float_label() if self.is_regression else class_label(self.label_names)
        return make_examples(path, records, a, b, label, parse, label_required=label_required)


def read_records(path: Path, fmt: str):
    if fmt == "jsonl":
        return read_jsonl(path)
    return read_table(path, delimiter=FORMATS[fmt], quote=True)


def _sort_labels(values: set[str]) -> tuple[str, ...]:
    """Numeric labels sort by value ('2' before '10'); anything else alphabetically."""
    numbers = {v: label_number(v) for v in values}
    if all(n is not None for n in numbers.values()):
        return tuple(sorted(values, key=numbers.get))
    return tuple(sorted(values))


def _listing(values) -> str:
    """Labels as a one-line list, the first ten of many."""
    values = [printable(v) for v in values]
    more = f" and {len(values) - 10} more" if len(values) > 10 else ""
    return ", ".join(values[:10]) + more


def spec_checker(spec: dict, keys: tuple[str, ...]):
    """Refuse a key outside `keys`; return `bad(key, expected)`, the one-line error for a key's wrong value."""
    def bad(key, expected):
        return AlembertError(f"task spec, key '{key}': expected {expected}, found {short_repr(spec.get(key))}")

    unknown = sorted(set(spec) - set(keys), key=str)  # YAML keys need not be strings
    if unknown:
        raise AlembertError(f"task spec: unknown key {short_repr(unknown[0])} (expected keys: {', '.join(keys)})")
    return bad


def spec_name_and_files(spec: dict, data_dir, bad) -> tuple[str, list[tuple[str, Path]]]:
    """The task's name and its (split, path) files; relative paths are taken from `data_dir` when one is given."""
    name = spec.get("name", "custom")
    if not isinstance(name, str) or not name:
        raise bad("name", "a non-empty string")
    files = []
    for split in ("train", "dev", "test"):
        if spec.get(split) is not None:
            if not isinstance(spec[split], (str, Path)):
                raise bad(split, "a file path")
            path = Path(spec[split]).expanduser()
            if data_dir is not None and not path.is_absolute():
                path = Path(data_dir) / path
            files.append((split, path))
    if not files:
        raise AlembertError("task spec: expected at least one of the keys 'train', 'dev', 'test' with a file path")
    return name, files


def spec_format(spec: dict, files, formats, aliases: dict, bad) -> str:
    """The spec's `format`, or the one its first file's extension names (through `aliases`)."""
    fmt = spec.get("format")
    if fmt is None:  # infer from the first file's extension
        fmt = files[0][1].suffix.lstrip(".").lower()
        fmt = aliases.get(fmt, fmt)
    if fmt not in formats:
        raise bad("format", f"one of {', '.join(formats)}")
    return fmt


def generic_task(spec: dict, data_dir=None) -> Task:
    """Validate the dict form of a task. Relative paths are taken from `data_dir` when one is given. A spec with
    `kind: token_classification` or `kind: extractive_qa` is read by that kind's module."""
    kind = spec.get("kind", SEQUENCE)
    if kind == TOKENS:
        from alembert.tasks.tokens import token_task

        return token_task(spec, data_dir)
    if kind == SPANS:
        from alembert.tasks.squad import span_task

        return span_task(spec, data_dir)
    bad = spec_checker(spec, SPEC_KEYS)
    if kind != SEQUENCE:
        raise bad("kind", f"one of {', '.join(KINDS)}")
    name, files = spec_name_and_files(spec, data_dir, bad)
    fmt = spec_format(spec, files, FORMATS, {"json": "jsonl"}, bad)

    cols = spec.get("text_columns")
    if isinstance(cols, str):
        cols = [cols]
    if not isinstance(cols, (list, tuple)) or len(cols) not in (1, 2) or not all(isinstance(c, str) for c in cols):
        raise bad("text_columns", "a list of one or two column names")
    label_column = spec.get("label_column", "label")
    if not isinstance(label_column, str):
        raise bad("label_column", "a column name")
    regression = spec.get("regression", False)
    if not isinstance(regression, bool):
        raise bad("regression", "true or false")

    label_names = None
    if not regression:
        labels = spec.get("labels")
        if labels is None:
            label_names = _infer_labels(dict(files), fmt, label_column, name)
        elif isinstance(labels, (list, tuple)) and labels and all(
                isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in labels):
            numbers = [label_number(x) for x in labels]
            if all(n is not None for n in numbers):  # numbers are compared as numbers: 1 and 1.0 are one class
                label_names, keys = tuple(label_name(n) for n in numbers), numbers
            elif any(isinstance(x, float) for x in labels):
                raise bad("labels", "label values that are all text or all finite numbers")
            else:
                label_names = keys = tuple(str(x).strip() for x in labels)
            if len(set(keys)) != len(keys):
                raise bad("labels", "distinct label values")
        else:
            raise bad("labels", "a non-empty list of label values")
        if len(label_names) < 2:
            raise bad("labels", "at least two classes")

    metrics = spec.get("metrics") or (REGRESSION_METRICS if regression else ("accuracy",))
    if isinstance(metrics, str):
        metrics = [metrics]
    allowed = REGRESSION_METRICS if regression else tuple(m for m in METRIC_NAMES if m not in REGRESSION_METRICS)
    if not isinstance(metrics, (list, tuple)) or any(m not in allowed for m in metrics):
        raise bad("metrics", f"a list drawn from {', '.join(allowed)}")

    return GenericTask(name=name, label_names=label_names, metrics=tuple(metrics), is_pair=len(cols) == 2,
                       format=fmt, files=tuple(files), text_columns=tuple(cols), label_column=label_column)


def _infer_labels(files: dict, fmt: str, label_column: str, name: str) -> tuple[str, ...]:
    if "train" not in files:
        raise AlembertError(f"task spec '{name}': give 'labels' or a 'train' file to infer them from")
    path = files["train"]
    records = read_records(path, fmt)
    if fmt != "jsonl":
        check_columns(path, records, (label_column,))
    numbers = {}  # each label as written (stripped) -> its value when it is a number, else None
    for where, fields in records:
        if label_column not in fields:
            raise AlembertError(f"{path}, {where}: missing key '{label_column}' "
                                f"(keys found: {', '.join(map(printable, fields))})")
        raw = fields[label_column]
        number = label_number(raw)
        if isinstance(raw, float) and not math.isfinite(raw):  # a JSON NaN or infinity
            raise AlembertError(f"{path}, {where}: label {short_repr(raw)} is not a finite number")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str) or not raw.strip():
            raise AlembertError(f"{path}, {where}: label {short_repr(raw)} is empty or not a string/number")
        numbers[raw.strip()] = number
    if all(n is not None for n in numbers.values()):
        # numeric labels are compared as numbers: '1' and '1.0' are one class, named '1'
        values = {label_name(n) for n in numbers.values()}
    elif any(n is not None for n in numbers.values()):
        found = _sort_labels(set(numbers))
        raise AlembertError(f"{path}: column '{label_column}' mixes numeric and text labels (found {len(found)}: "
                            f"{_listing(found)}); expected all numbers or all text (set 'labels: [...]' in the task "
                            "to take them as written)")
    else:
        values = set(numbers)
    if len(values) < 2:
        raise AlembertError(f"{path}: found only the label {', '.join(map(printable, values))}; "
                            "expected at least two classes")
    return _sort_labels(values)
