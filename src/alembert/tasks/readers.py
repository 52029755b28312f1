"""Strict readers for delimited and JSON-lines files: every problem becomes one AlembertError line
naming the file and the row (1-based data row, header excluded) or line."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable

from alembert.errors import AlembertError, printable, short_repr

# A record is (where, fields): where is 'row 12' or 'line 12', fields maps column name -> value.
Record = tuple[str, dict]

# csv's own default field limit, applied to every format: a longer text is a broken file (an unbalanced
# quote swallowing the lines after it) far more often than a real input, and it would be truncated anyway.
MAX_TEXT_CHARS = 131072
# JSON values nested deeper than this in one line are refused: a record is an object of plain values, and a line
# nested thousands deep would otherwise end in Python's RecursionError
MAX_JSON_DEPTH = 64


def read_text(path: Path) -> str:
    """The whole file as text (UTF-8, optional BOM), refusing undecodable bytes."""
    if path.is_dir():
        raise AlembertError(f"{path}: is a directory, expected a data file")
    if not path.is_file():
        raise AlembertError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AlembertError(f"{path}: cannot read ({e.strerror})") from None
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
        why = str(e)
        if "field larger than field limit" in why:
            why = (f"a field is longer than {csv.field_size_limit()} characters (check for an unbalanced quote, "
                   "or shorten the text)")
        elif "unexpected end of data" in why:
            why = "a quoted field is still open at the end of the file (check for an unbalanced quote)"
        elif "expected after" in why:
            why += ' (a quote inside a quoted field is written twice: "")'
        raise AlembertError(f"{path}, row {n} (line {reader.line_num}): {why}") from None
    while rows and not rows[-1]:  # a file may end with blank lines; blank lines inside are errors
        rows.pop()
    if names is None:
        if not rows:
            raise AlembertError(f"{path}: empty file, expected a header line and data rows")
        header, rows = rows[0], rows[1:]
        if not header:
            raise AlembertError(f"{path}, line 1: empty header line, expected column names")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:  # zip into a dict would silently keep only the last of them
            raise AlembertError(f"{path}, line 1: column {repeated[0]!r} appears more than once in the header "
                                "(expected distinct column names)")
    else:
        header = list(names)
    if not rows:
        raise AlembertError(f"{path}: no data rows (expected at least one row after the header)"
                            if names is None else f"{path}: no data rows")
    records = []
    for n, fields in enumerate(rows, start=1):
        if len(fields) != len(header):
            raise AlembertError(
                f"{path}, row {n}: expected {len(header)} fields ({', '.join(map(printable, header))}), found {len(fields)}"
            )
        records.append((f"row {n}", dict(zip(header, fields))))
    return records


def read_jsonl(path: Path) -> list[Record]:
    """One JSON object per line; blank lines are skipped (they carry no data)."""
    records = []
    # lines end at '\n' alone: splitlines() would also cut at U+2028, U+0085 and others that JSON strings may hold
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AlembertError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise AlembertError(f"{path}, line {n}: JSON nested deeper than {MAX_JSON_DEPTH} levels (expected an "
                                "object of plain values)") from None
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            raise AlembertError(f"{path}, line {n}: not valid JSON ({str(e).split(';')[0]})") from None
        # only a line with that many brackets can nest that deep: the walk is skipped for all the others
        if line.count("[") + line.count("{") > MAX_JSON_DEPTH and _json_depth(obj) > MAX_JSON_DEPTH:
            raise AlembertError(f"{path}, line {n}: JSON nested deeper than {MAX_JSON_DEPTH} levels (expected an "
                                "object of plain values)")
        if not isinstance(obj, dict):
            raise AlembertError(f"{path}, line {n}: expected a JSON object, found {type(obj).__name__}")
        records.append((f"line {n}", obj))
    if not records:
        raise AlembertError(f"{path}: no data rows")
    return records


def _json_depth(value) -> int:
    """Levels of nested lists and objects in a parsed JSON value (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}


def check_columns(path: Path, records: list[Record], columns: Iterable[str | None]) -> None:
    """For tables: name a missing column once, with the columns that were found."""
    found = list(records[0][1])
    for col in columns:
        if col is not None and col not in found:
            hint = ""
            if len(found) == 1:  # one wide column: the file is most likely split by another character
                other = next((name for d, name in DELIMITER_NAMES.items() if d in found[0]), None)
                if other:
                    hint = f"; the header looks {other}-separated, check the file's format or delimiter"
            raise AlembertError(f"{path}: column '{col}' not found (columns: {', '.join(map(printable, found))}){hint}")


# a number as people write one in a label column: ASCII digits, optional sign, point and a short exponent
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,2})?")


def label_number(raw: object) -> Decimal | None:
    """The label as a number when it is one (text such as '1', '1.0', '01', ' 2e0 ', or a JSON number), else None.
    Exact (Decimal), so two distinct integers are never equal through float rounding."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        if isinstance(raw, float) and not math.isfinite(raw):
            return None
        raw = str(raw)
    if not isinstance(raw, str) or not _NUMBER.fullmatch(raw.strip()) or len(raw) > 100:
        return None
    return Decimal(raw.strip())


def label_name(value: Decimal) -> str:
    """A numeric label's one spelling: '1' for 1, 1.0 and 01; '0.5' for .50."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def class_label(label_names: tuple[str, ...]) -> Callable[[object], int]:
    """Map a raw label (string, or number from JSON) to its class id.

    When every name is a number, labels are compared as numbers: '1', '1.0' and 1 are the same class. Otherwise
    they are compared as text (stripped), and a JSON integer as its decimal text."""
    numbers = [label_number(name) for name in label_names]
    numeric = all(n is not None for n in numbers)
    index = {n if numeric else name: i for i, (n, name) in enumerate(zip(numbers, label_names))}

    def parse(raw: object) -> int:
        if numeric:
            key = label_number(raw)
        else:
            key = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            key = key.strip() if isinstance(key, str) else None
        if key is None or key not in index:
            raise ValueError(f"label {short_repr(raw)} is not one of {', '.join(map(printable, label_names))}")
        return index[key]

    return parse


def float_label(low: float | None = None, high: float | None = None) -> Callable[[object], float]:
    """Parse a regression target: a finite number, optionally within [low, high]."""

    def parse(raw: object) -> float:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise ValueError(f"target {short_repr(raw)} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"target {short_repr(raw)} is not a finite number")
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
            raise AlembertError(f"{path}, {where}: missing key '{key}' (keys found: {', '.join(map(printable, fields))})")
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
                raise AlembertError(f"{path}, {where}: text '{key}' must be a string, found {short_repr(value)}")
            if len(value) > MAX_TEXT_CHARS:
                raise AlembertError(f"{path}, {where}: text '{key}' has {len(value)} characters, expected at most "
                                    f"{MAX_TEXT_CHARS} (shorten the text; models read the first max_length tokens)")
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
