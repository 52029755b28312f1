"""Strict readers for delimited and JSON-lines files: every problem becomes one AlembertError line
naming the file and the row (1-based data row, header excluded) or line."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Callable, Iterable

from alembert.errors import AlembertError

# A record is (where, fields): where is 'row 12' or 'line 12', fields maps column name -> value.
Record = tuple[str, dict]


def read_text(path: Path) -> str:
    """The whole file as text (UTF-8, optional BOM), refusing undecodable bytes."""
    if not path.is_file():
        raise AlembertError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AlembertError(f"{path}, line {line} (byte {e.start}): cannot decode byte, expected UTF-8") from None


def read_table(path: Path, *, delimiter: str, quote: bool = True, names: Iterable[str] | None = None) -> list[Record]:
    """Rows of a CSV/TSV file as records. `names` gives the columns of a header-less file;
    otherwise the first line is the header. `quote=False` reads quotes as plain text (GLUE TSVs)."""
    text = read_text(path)
    reader = csv.reader(
        io.StringIO(text, newline=""),  # keep newlines untranslated: csv handles \r\n and quoted newlines
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
        strict=True,
    )
    rows = []
    try:
        for fields in reader:
            rows.append(fields)
    except csv.Error as e:
        n = len(rows) if names is None else len(rows) + 1  # the failing row, header excluded
        raise AlembertError(f"{path}, row {n} (line {reader.line_num}): {e}") from None
    while rows and not rows[-1]:  # a file may end with blank lines; blank lines inside are errors
        rows.pop()
    if names is None:
        if not rows:
            raise AlembertError(f"{path}: empty file, expected a header line and data rows")
        header, rows = rows[0], rows[1:]
    else:
        header = list(names)
    if not rows:
        raise AlembertError(f"{path}: no data rows")
    records = []
    for n, fields in enumerate(rows, start=1):
        if len(fields) != len(header):
            raise AlembertError(
                f"{path}, row {n}: expected {len(header)} fields ({', '.join(header)}), found {len(fields)}"
            )
        records.append((f"row {n}", dict(zip(header, fields))))
    return records


def read_jsonl(path: Path) -> list[Record]:
    """One JSON object per line; blank lines are skipped (they carry no data)."""
    records = []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AlembertError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise AlembertError(f"{path}, line {n}: expected a JSON object, found {type(obj).__name__}")
        records.append((f"line {n}", obj))
    if not records:
        raise AlembertError(f"{path}: no data rows")
    return records


def check_columns(path: Path, records: list[Record], columns: Iterable[str | None]) -> None:
    """For tables: name a missing column once, with the columns that were found."""
    found = list(records[0][1])
    for col in columns:
        if col is not None and col not in found:
            raise AlembertError(f"{path}: column '{col}' not found (columns: {', '.join(found)})")


def class_label(label_names: tuple[str, ...]) -> Callable[[object], int]:
    """Map a raw label (string, or integer from JSON) to its class id."""
    index = {name: i for i, name in enumerate(label_names)}

    def parse(raw: object) -> int:
        key = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(key, str) or key.strip() not in index:
            raise ValueError(f"label {raw!r} is not one of {', '.join(label_names)}")
        return index[key.strip()]

    return parse


def float_label(low: float | None = None, high: float | None = None) -> Callable[[object], float]:
    """Parse a regression target: a finite number, optionally within [low, high]."""

    def parse(raw: object) -> float:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise ValueError(f"target {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"target {raw!r} is not a finite number")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"target {value} is outside {low}..{high}")
        return value

    return parse


def make_examples(path, records, text_a, text_b, label, parse_label, *, label_required=True, domain=None):
    """Turn records into Examples. Without `label_required` (test splits) a missing or empty label
    gives an unlabeled example; labeled examples must have non-empty texts."""
    from alembert.tasks.base import Example

    def get(where, fields, key):
        if key not in fields:
            raise AlembertError(f"{path}, {where}: missing key '{key}' (keys found: {', '.join(fields)})")
        return fields[key]

    out = []
    for where, fields in records:
        texts = []
        for key in (text_a, text_b):
            if key is None:
                texts.append(None)
                continue
            value = get(where, fields, key)
            if not isinstance(value, str):
                raise AlembertError(f"{path}, {where}: text '{key}' must be a string, found {value!r}")
            texts.append(value)
        y = None
        if label is not None:
            raw = fields.get(label) if not label_required else get(where, fields, label)
            if label_required or raw not in (None, ""):
                try:
                    y = parse_label(raw)
                except ValueError as e:
                    raise AlembertError(f"{path}, {where}: {e}") from None
        if y is not None:
            for key, value in zip((text_a, text_b), texts):
                if value is not None and not value.strip():
                    raise AlembertError(f"{path}, {where}: text '{key}' is empty, expected a sentence")
        out.append(Example(texts[0], texts[1], y, domain))
    return out
