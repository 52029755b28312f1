"""Plain text as sentences, for the text sources a stage can train on (data/text.py).

CR-ILD (Ko et al., 2023) finds that ILD overfits a small training set and helps more when it runs on
supplementary data: another task's training texts, or plain sentences (its code builds a Wikipedia
sentence corpus). Layer-to-layer losses need no labels.
"""

from __future__ import annotations

import re
from pathlib import Path

from alembert.errors import AlembertError
from alembert.tasks.base import resolve_data_dir
from alembert.tasks.readers import read_table

TEXT_COLUMNS = ("text", "sentence")  # first one found is used

# Sentence end: . ! ? (optionally followed by a closing quote or bracket) then whitespace. Deliberately
# simple: abbreviations split too, and the min_words filter drops the short fragments that gives.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")
# WikiText headings: ' = Title = ', ' = = Section = = '.
_HEADING = re.compile(r"^\s*=(\s*=)*\s[^=]*?\s=(\s*=)*\s*$")


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


def _find_file(source: str, data_dir) -> Path:
    """The path as given, else relative to the data directory (so 'corpus/wikitext-2/valid.txt' works)."""
    path = Path(source).expanduser()
    tried = [str(path)]
    if path.is_dir():
        raise AlembertError(f"'{source}': is a directory, expected a .txt/.tsv/.csv file")
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


def _read_delimited(path: Path):
    if path.suffix.lower() == ".csv":
        return read_table(path, delimiter=",")
    # TSVs come both quoted (Amazon: embedded newlines) and unquoted with stray '"' in the text (GLUE,
    # movie_reviews); a strict quoted read fails on the latter, so fall back to reading quotes as text.
    try:
        return read_table(path, delimiter="\t")
    except AlembertError:
        return read_table(path, delimiter="\t", quote=False)
