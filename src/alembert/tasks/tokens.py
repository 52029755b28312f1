"""Token classification (named-entity recognition and the like): sentences as words with one tag each, read from
CoNLL column files or JSON lines, any tag set in IOB1 or IOB2, scored by entity-level precision, recall and F1.

CoNLL column files hold one word a line, the word in the first column and its tag in the last (CoNLL-2003:
`word POS chunk tag`, separated by spaces or tabs), a blank line between sentences; `-DOCSTART-` lines mark
documents and are skipped. JSON lines hold one sentence a line: `{"tokens": [...], "tags": [...]}`.
A tag is `O` or `B-TYPE` / `I-TYPE`: IOB2 (every entity starts with B-) and IOB1 (I- starts an entity, B- only
between two adjacent entities of one type) are read alike and score alike (entities as the CoNLL script reads
them, tasks/entities.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from alembert.errors import AlembertError, printable, short_repr
from alembert.tasks.base import FileTask, _unlabeled
from alembert.tasks.kinds import TOKENS
from alembert.tasks.readers import read_jsonl, read_text

TAG = re.compile(r"O|[BI]-\S+")
FORMATS = ("conll", "jsonl")
SPEC_KEYS = ("name", "kind", "format", "train", "dev", "test", "tags")
METRICS = ("entity_f1", "entity_precision", "entity_recall", "tag_accuracy")
# CoNLL-2003's tags in the order of the Hugging Face `conll2003` dataset, so label ids match common checkpoints
CONLL2003_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


@dataclass(frozen=True)
class TokenExample:
    words: tuple[str, ...]
    label: tuple[int, ...] | None  # a tag id per word; None when unlabeled
    where: str = field(default="", compare=False)  # 'FILE, line 12': the sentence's place, for messages
    domain: str | None = None


# A sentence as read: (where, words, tags as written or None, where word i is: a line number in a column file)
Sentence = tuple[str, list[str], list[str] | None, int | None]


@dataclass(frozen=True)
class TokenTask(FileTask):
    kind: ClassVar[str] = TOKENS
    format: str = "conll"

    def _read(self, split: str) -> list[TokenExample]:
        index = {tag: i for i, tag in enumerate(self.label_names)}
        out = []
        for where, words, tags, line in read_sentences(self.path(split), self.format):
            ids = None
            if tags is not None:
                unknown = next((i for i, t in enumerate(tags) if t not in index), None)
                if unknown is not None:
                    place = f"{self.path(split)}, line {line + unknown}" if line else f"{where}, word {unknown + 1}"
                    raise AlembertError(f"{place}: tag {short_repr(tags[unknown])} is not one of "
                                        f"{', '.join(self.label_names)} (the task's tags)")
                ids = tuple(index[t] for t in tags)
            out.append(TokenExample(tuple(words), ids, where))
        return out

    def compute_metrics(self, predictions, labels) -> dict[str, float]:
        """predictions: per sentence, a tag id per word (None: the word got no prediction, read as O)."""
        from alembert.tasks.entities import entity_metrics

        unlabeled = sum(label is None for label in labels)
        if unlabeled:
            raise AlembertError(_unlabeled(f"task {self.name}: the set of sentences", unlabeled, len(labels)))
        return entity_metrics(predictions, labels, self.label_names)

    def check_training(self, examples: list[TokenExample], where: str) -> None:
        tags = {t for e in examples for t in e.label}
        if len(tags) < 2:
            only = self.label_names[next(iter(tags))] if tags else "none"
            raise AlembertError(f"{where}: every training word has the tag {printable(only)!r} ({len(examples)} "
                                "sentences); expected words of at least two tags")


def read_sentences(path: Path, fmt: str) -> list[Sentence]:
    sentences = read_conll(path) if fmt == "conll" else read_tokens_jsonl(path)
    if not sentences:
        raise AlembertError(f"{path}: no sentences (expected {'word and tag lines' if fmt == 'conll' else 'lines'}"
                            f"{' separated by blank lines' if fmt == 'conll' else ' of tokens and tags'})")
    return sentences


def read_conll(path: Path) -> list[Sentence]:
    """Sentences of a column file: word in the first column, tag in the last; every line has as many columns as
    the file's first."""
    sentences, words, tags, start, columns = [], [], [], 0, None
    lines = read_text(path).split("\n")
    for n, line in enumerate(lines + [""], start=1):
        fields = line.split()
        if fields and fields[0] == "-DOCSTART-":
            continue
        if not fields:
            if words:
                sentences.append((f"{path}, line {start}", words, tags, start))
            words, tags = [], []
            continue
        columns = columns or len(fields)
        if len(fields) < 2 or len(fields) != columns:
            expected = f"{columns} columns, as the file's first word line" if columns >= 2 else \
                "a word and its tag, separated by spaces or tabs"
            raise AlembertError(f"{path}, line {n}: found {len(fields)} column{'s' * (len(fields) != 1)} "
                                f"(expected {expected})")
        if not words:
            start = n
        words.append(fields[0])
        tags.append(fields[-1])
    return sentences


def read_tokens_jsonl(path: Path) -> list[Sentence]:
    """Sentences of a JSON-lines file: `tokens`, a list of non-empty strings, and `tags`, one per token (a line
    without `tags` is unlabeled)."""
    out = []
    for where, fields in read_jsonl(path):
        where = f"{path}, {where}"
        words, tags = fields.get("tokens"), fields.get("tags")
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise AlembertError(f"{where}: 'tokens' is {short_repr(words)} (expected a non-empty list of non-empty "
                                "strings)")
        if tags is not None and (not isinstance(tags, list) or len(tags) != len(words)
                                 or not all(isinstance(t, str) for t in tags)):
            raise AlembertError(f"{where}: 'tags' is {short_repr(tags)} (expected a list of {len(words)} tag "
                                "strings, one per token)")
        out.append((where, words, tags, None))
    return out


def check_tag(tag, where: str) -> str:
    if not isinstance(tag, str) or not TAG.fullmatch(tag):
        raise AlembertError(f"{where}: tag {short_repr(tag)} is not O, B-TYPE or I-TYPE (expected tags in IOB1 or "
                            "IOB2)")
    return tag


def infer_tags(path: Path, fmt: str) -> tuple[str, ...]:
    """The tags of a training file: O first, then by entity type, B- before I-."""
    seen = {}
    for where, _, tags, line in read_sentences(path, fmt):
        for i, tag in enumerate(tags or ()):
            if tag not in seen:
                seen[tag] = check_tag(tag, f"{path}, line {line + i}" if line else f"{where}, word {i + 1}")
    if len(seen) < 2:
        raise AlembertError(f"{path}: found the tags {', '.join(map(printable, seen)) or 'none'}; expected at least "
                            "two tags (set 'tags: [...]' in the task)")
    return tuple(sorted(seen, key=lambda t: (t != "O", t[2:], t[0])))


def token_task(spec: dict, data_dir=None) -> TokenTask:
    """The dict form: kind: token_classification, format (conll or jsonl; default from the first file's
    extension), train/dev/test files, and optionally tags (default: read from the train file)."""
    from alembert.tasks.generic import spec_checker, spec_format, spec_name_and_files

    bad = spec_checker(spec, SPEC_KEYS)
    name, files = spec_name_and_files(spec, data_dir, bad)
    fmt = spec_format(spec, files, FORMATS, {"txt": "conll", "json": "jsonl", "bio": "conll", "iob": "conll"}, bad)
    tags = spec.get("tags")
    if tags is None:
        if "train" not in dict(files):
            raise AlembertError(f"task spec '{name}': give 'tags' or a 'train' file to read them from")
        tags = infer_tags(dict(files)["train"], fmt)
    elif not isinstance(tags, (list, tuple)) or len(tags) < 2 or len(set(tags)) != len(tags):
        raise bad("tags", "a list of at least two distinct tags")
    else:
        tags = tuple(check_tag(t, "task spec, key 'tags'") for t in tags)
    return TokenTask(name=name, label_names=tags, metrics=METRICS, is_pair=False, format=fmt,
                     files=tuple((split, str(path)) for split, path in files))


def conll2003_task(data_dir=None) -> TokenTask:
    """CoNLL-2003 English NER as shared: DIR/conll2003/{train,dev,test}.txt (dev is testa, test is testb)."""
    return TokenTask(name="conll2003", label_names=CONLL2003_TAGS, metrics=METRICS, is_pair=False, format="conll",
                     files=tuple((s, f"conll2003/{s}.txt") for s in ("train", "dev", "test")), data_dir=data_dir)
