"""Unlabeled "supplementary" text for intermediate-layer distillation.

CR-ILD (Ko et al., 2023) finds that ILD overfits a small training set and helps more when it runs on
supplementary data: another task's training texts, or plain sentences (its code builds a Wikipedia
sentence corpus). Layer-to-layer losses need no labels, so every Example here has label None.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from alembert.errors import AlembertError
from alembert.tasks.base import Example, resolve_data_dir, subset
from alembert.tasks.readers import read_table, read_text
from alembert.tasks.registry import get_task

FILE_SUFFIXES = (".txt", ".tsv", ".csv")
TEXT_COLUMNS = ("text", "sentence")  # first one found is used

# Sentence end: . ! ? (optionally followed by a closing quote or bracket) then whitespace. Deliberately
# simple: abbreviations split too, and the min_words filter drops the short fragments that gives.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")
# WikiText headings: ' = Title = ', ' = = Section = = '.
_HEADING = re.compile(r"^\s*=(\s*=)*\s[^=]*?\s=(\s*=)*\s*$")


def load_supplementary(source: str, limit: int | None, seed: int, data_dir=None,
                       min_words: int = 5) -> list[Example]:
    """Unlabeled Examples from `source`, then a seeded sample of `limit` of them (file order kept).

    `source` is a path to a .txt/.tsv/.csv file (as given, else relative to the data directory) or a task
    name known to get_task ('sst2', 'mrpc', 'amazon-books', ...), whose train split is used without labels
    (text_b kept for pair tasks). `min_words` applies to sentences split from files, not to task texts."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise AlembertError(f"supplementary data: limit must be a positive integer, got {limit!r}")
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
        raise AlembertError(f"supplementary data: min_words must be a positive integer, got {min_words!r}")
    if not isinstance(source, str) or not source.strip():
        raise AlembertError(f"supplementary data: expected a task name or a .txt/.tsv/.csv file, got {source!r}")
    if Path(source).suffix.lower() in FILE_SUFFIXES:
        examples = _from_file(_find_file(source, data_dir), min_words)
    else:
        examples = _from_task(source, data_dir)
    return subset(examples, limit, seed)


def split_sentences(text: str, min_words: int = 5) -> list[str]:
    """Sentences of running text: split at line breaks and sentence ends, WikiText heading lines and
    fragments of fewer than `min_words` words dropped."""
    out = []
    for line in text.splitlines():
        if _HEADING.match(line):
            continue
        for piece in _SENTENCE_END.split(line):
            piece = piece.strip()
            if piece and len(piece.split()) >= min_words:
                out.append(piece)
    return out


def _from_task(source: str, data_dir) -> list[Example]:
    try:
        task = get_task(source, data_dir)
    except AlembertError as e:
        raise AlembertError(
            f"supplementary data '{source}': not a .txt/.tsv/.csv file and not a task ({e})"
        ) from None
    return [replace(e, label=None) for e in task.load("train")]


def _find_file(source: str, data_dir) -> Path:
    """The path as given, else relative to the data directory (so 'corpus/wikitext-2/valid.txt' works)."""
    path = Path(source).expanduser()
    tried = [str(path)]
    if not path.is_file() and not path.is_absolute():
        try:
            beside = resolve_data_dir(data_dir) / path
        except AlembertError:
            beside = None  # no data directory: only the path as given could have worked
        if beside is not None:
            if beside.is_file():
                return beside
            tried.append(str(beside))
    if not path.is_file():
        raise AlembertError(
            f"supplementary data '{source}': no such file (tried {', '.join(tried)}); "
            f"expected a .txt/.tsv/.csv file or a task name such as sst2"
        )
    return path


def _from_file(path: Path, min_words: int) -> list[Example]:
    if path.suffix.lower() == ".txt":
        texts = [read_text(path)]
    else:
        records = _read_delimited(path)
        found = list(records[0][1])
        column = next((c for c in TEXT_COLUMNS if c in found), None)
        if column is None:
            raise AlembertError(f"{path}: no column 'text' or 'sentence' (columns: {', '.join(found)})")
        texts = [fields[column] for _, fields in records]
    sentences = [s for t in texts for s in split_sentences(t, min_words)]
    if not sentences:
        raise AlembertError(f"{path}: no sentences of at least {min_words} words, expected running text")
    return [Example(s, None, None) for s in sentences]


def _read_delimited(path: Path):
    if path.suffix.lower() == ".csv":
        return read_table(path, delimiter=",")
    # TSVs come both quoted (Amazon: embedded newlines) and unquoted with stray '"' in the text (GLUE,
    # movie_reviews); a strict quoted read fails on the latter, so fall back to reading quotes as text.
    try:
        return read_table(path, delimiter="\t")
    except AlembertError:
        return read_table(path, delimiter="\t", quote=False)
