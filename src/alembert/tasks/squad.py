"""Extractive question answering in the SQuAD v1.1 format: questions on paragraphs of articles, each answer a span of
its paragraph (`answer_start`, a character offset into the context, and its `text`). Scored by exact match and
F1 as the official v1.1 evaluation computes them (tasks/squad_metrics.py).

Built-in: `squad` reads DIR/squad/train-v1.1.json and dev-v1.1.json as users have them; `squad-dev-split`
splits the official dev file by article, since only it is at hand here: its first 40 articles (in file order,
Super_Bowl_50 to Chloroplast) train, its last 8 (Prime_number, Rhine, Scottish_Parliament, Islamism, Imperialism,
United_Methodist_Church, French_and_Indian_War, Force: 1,589 questions) are held out as the dev split.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from alembert.errors import AlembertError, short_repr
from alembert.tasks.base import FileTask, _unlabeled
from alembert.tasks.kinds import SPANS
from alembert.tasks.readers import read_text

SPEC_KEYS = ("name", "kind", "format", "train", "dev", "test")
METRICS = ("f1", "exact_match")
DEV_ARTICLES, DEV_SPLIT_TRAIN = 48, 40  # the official dev file's articles; how many of them squad-dev-split trains on


@dataclass(frozen=True)
class SpanExample:
    question: str
    context: str
    label: tuple[tuple[int, str], ...] | None  # gold answers as (character start, text); training reads the first
    id: str = ""
    title: str = ""
    where: str = field(default="", compare=False)  # 'FILE, data[0].paragraphs[3].qas[1]', for messages
    domain: str | None = None

    @property
    def answer_texts(self) -> list[str]:
        return [text for _, text in self.label or ()]


@dataclass(frozen=True)
class SquadTask(FileTask):
    kind: ClassVar[str] = SPANS
    articles: tuple[tuple[str, int, int], ...] = ()  # (split, first, stop): the split is these articles of its file

    def _read(self, split: str) -> list[SpanExample]:
        path = self.path(split)
        data = read_squad(path)
        chosen = {s: (first, stop) for s, first, stop in self.articles}
        if split in chosen:
            if len(data) != DEV_ARTICLES:
                raise AlembertError(f"{path}: {len(data)} articles; {self.name} splits the official SQuAD v1.1 dev "
                                    f"file by article and expected its {DEV_ARTICLES}")
            first, stop = chosen[split]
            return [e for a in range(first, stop) for e in article_examples(path, data, a, split != "test")]
        return [e for a in range(len(data)) for e in article_examples(path, data, a, split != "test")]

    def compute_metrics(self, predictions, labels) -> dict[str, float]:
        """predictions: an answer text per question; labels: each question's gold answers, (start, text) pairs."""
        from alembert.tasks.squad_metrics import squad_metrics

        unlabeled = sum(label is None for label in labels)
        if unlabeled:
            raise AlembertError(_unlabeled(f"task {self.name}: the set of questions", unlabeled, len(labels)))
        return squad_metrics(list(predictions), [[text for _, text in label] for label in labels])

    def check_training(self, examples, where: str) -> None:
        """Every question read has an answer that matches its context (checked as the file is read)."""


def read_squad(path: Path) -> list:
    """The articles of a SQuAD JSON file: {"data": [{"title", "paragraphs": [...]}, ...]}."""
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise AlembertError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise AlembertError(f"{path}: JSON nested too deep (expected SQuAD's articles, paragraphs and "
                            "questions)") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not data:
        raise AlembertError(f"{path}: expected SQuAD JSON, an object whose 'data' is a non-empty list of articles")
    return data


def _get(value, key: str, kind: type, where: str, expected: str):
    found = value.get(key) if isinstance(value, dict) else None
    if not isinstance(found, kind) or isinstance(found, bool):
        raise AlembertError(f"{where}: '{key}' is {short_repr(found)} (expected {expected})")
    return found


def article_examples(path: Path, data: list, a: int, labelled: bool) -> list[SpanExample]:
    """The questions of article `a`, each checked: a non-empty context and question, and answers whose
    `answer_start` points at their `text` in the context (required when `labelled`)."""
    article, out = data[a], []
    where = f"{path}, data[{a}]"
    title = article.get("title", "") if isinstance(article, dict) else ""
    for p, paragraph in enumerate(_get(article, "paragraphs", list, where, "a list of paragraphs")):
        place = f"{where}.paragraphs[{p}]"
        context = _get(paragraph, "context", str, place, "the paragraph's text")
        if not context.strip():
            raise AlembertError(f"{place}: empty context (expected the paragraph's text the answers are taken from)")
        for q, qa in enumerate(_get(paragraph, "qas", list, place, "a list of questions")):
            spot = f"{place}.qas[{q}]"
            question = _get(qa, "question", str, spot, "the question's text")
            if not question.strip():
                raise AlembertError(f"{spot}: empty question (expected the question's text)")
            if qa.get("is_impossible"):
                raise AlembertError(f"{spot}: an unanswerable question (is_impossible, SQuAD v2.0); expected SQuAD "
                                    "v1.1, where every question has an answer in its context")
            answers = qa.get("answers")
            if answers is None and not labelled:
                out.append(SpanExample(question, context, None, str(qa.get("id", "")), str(title), spot))
                continue
            if not isinstance(answers, list) or not answers:
                raise AlembertError(f"{spot}: 'answers' is {short_repr(answers)} (expected a non-empty list of "
                                    "{answer_start, text})")
            gold = tuple(_answer(answer, context, f"{spot}.answers[{k}]") for k, answer in enumerate(answers))
            out.append(SpanExample(question, context, gold, str(qa.get("id", "")), str(title), spot))
    return out


def _answer(answer, context: str, where: str) -> tuple[int, str]:
    start = _get(answer, "answer_start", int, where, "a character offset into the context")
    text = _get(answer, "text", str, where, "the answer's text")
    if not text.strip():
        raise AlembertError(f"{where}: empty answer text (expected the span of the context that answers)")
    found = context[start:start + len(text)] if 0 <= start else ""
    if found != text:
        raise AlembertError(f"{where}: answer_start {start} points at {short_repr(found)} in the context, not at the "
                            f"answer {short_repr(text)} (expected the answer's character offset in the context)")
    return start, text


def span_task(spec: dict, data_dir=None) -> SquadTask:
    """The dict form: kind: extractive_qa, format squad, train/dev/test SQuAD JSON files."""
    from alembert.tasks.generic import spec_checker, spec_format, spec_name_and_files

    bad = spec_checker(spec, SPEC_KEYS)
    name, files = spec_name_and_files(spec, data_dir, bad)
    spec_format(spec, files, ("squad",), {"json": "squad"}, bad)
    return SquadTask(name=name, label_names=("start", "end"), metrics=METRICS, is_pair=True,
                     files=tuple((split, str(path)) for split, path in files))


def squad_task(name: str, data_dir=None) -> SquadTask:
    """`squad`: the official train and dev files; `squad-dev-split`: the dev file's articles, 40 to train, 8 held
    out."""
    if name == "squad":
        files, articles = (("train", "squad/train-v1.1.json"), ("dev", "squad/dev-v1.1.json")), ()
    else:
        files = (("train", "squad/dev-v1.1.json"), ("dev", "squad/dev-v1.1.json"))
        articles = (("train", 0, DEV_SPLIT_TRAIN), ("dev", DEV_SPLIT_TRAIN, DEV_ARTICLES))
    return SquadTask(name=name, label_names=("start", "end"), metrics=METRICS, is_pair=True, files=files,
                     articles=articles, data_dir=data_dir)
