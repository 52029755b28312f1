"""GLUE tasks in their native file formats, with the Hugging Face hub as a fallback when a file is absent."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alembert.errors import AlembertError
from alembert.tasks.base import Example, Task, resolve_data_dir
from alembert.tasks.readers import check_columns, class_label, float_label, make_examples, read_table

STSB_CSV_COLUMNS = ("sentence1", "sentence2", "score")  # STSbenchmark CSV has no header


@dataclass(frozen=True)
class GlueTask(Task):
    folder: str = ""  # e.g. 'SST-2' under DIR/glue
    columns: tuple = ()  # (text_a, text_b or None, label) header names in the native TSV
    hub_config: str = ""  # nyu-mll/glue config name
    hub_columns: tuple = ()  # (text_a, text_b or None) in the hub dataset
    headerless: tuple[str, ...] | None = None  # column names of header-less train/dev files (CoLA)
    split_files: tuple[tuple[str, str], ...] = (("train", "train"), ("dev", "dev"), ("test", "test"))
    data_dir: str | os.PathLike | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(split for split, _ in self.split_files)

    def _read(self, split: str) -> list[Example]:
        stem = dict(self.split_files)[split]
        try:
            root = resolve_data_dir(self.data_dir)
        except AlembertError:
            return self._from_hub(stem, None)  # no data directory at all: online users still get GLUE
        folder = root / "glue" / self.folder
        tsv, csv_ = folder / f"{stem}.tsv", folder / f"{stem}.csv"
        if tsv.is_file():
            names = self.headerless if stem != "test" else None
            records = read_table(tsv, delimiter="\t", quote=False, names=names)  # GLUE text has stray quotes
            path = tsv
        elif self.is_regression and csv_.is_file():
            records = read_table(csv_, delimiter=",", quote=True, names=STSB_CSV_COLUMNS)
            path = csv_
        else:
            return self._from_hub(stem, tsv)

        text_a, text_b, label = self.columns
        is_test = stem.startswith("test")
        if is_test and label not in records[0][1]:
            label = None  # GLUE test files carry no labels
        check_columns(path, records, (text_a, text_b, label))
        parse = float_label(0.0, 5.0) if self.is_regression else class_label(self.label_names)
        return make_examples(path, records, text_a, text_b, label, parse, label_required=not is_test)

    def _from_hub(self, stem: str, path: Path | None) -> list[Example]:
        """Load the split from nyu-mll/glue; any failure becomes one line telling how to use local files."""
        where = f"no file at {path}" if path is not None else "no data directory"
        hint = f"pass --data-dir DIR with glue/{self.folder}/{stem}.tsv"
        # Checked up front: the hub libraries read these variables only when first imported.
        offline_vars = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in offline_vars):
            raise AlembertError(f"{self.name}: {where} and the Hugging Face hub cannot be reached (offline); {hint}")
        try:
            import datasets

            ds = datasets.load_dataset("nyu-mll/glue", self.hub_config, split=stem.replace("dev", "validation"))
        except Exception as e:  # network, auth, missing split: all mean "use local files"
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise AlembertError(
                f"{self.name}: {where} and the Hugging Face hub cannot be reached ({reason}); {hint}"
            ) from None
        names = None if self.is_regression else ds.features["label"].names
        out = []
        a, b = self.hub_columns
        for row in ds:
            y = row["label"]
            if self.is_regression:
                y = float(y)
            elif y < 0:
                y = None  # hub test splits use -1 for "no label"
            else:
                # The hub's label order can differ from ours (MNLI); 0/1 tasks keep the integer.
                y = self.label_names.index(names[y]) if names[y] in self.label_names else int(y)
            out.append(Example(row[a], row[b] if b else None, y))
        return out


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_MNLI = ("contradiction", "entailment", "neutral")
_MNLI_FILES = (("dev_matched", "dev_matched"), ("dev_mismatched", "dev_mismatched"))

# name: (folder, label_names, metrics, native columns, hub columns, extra fields)
_GLUE = {
    "cola": ("CoLA", _BINARY, ("matthews_corr",), ("sentence", None, "label"), ("sentence", None),
             {"headerless": ("source", "label", "mark", "sentence")}),
    "sst2": ("SST-2", _BINARY, ("accuracy",), ("sentence", None, "label"), ("sentence", None), {}),
    "mrpc": ("MRPC", _BINARY, ("f1", "accuracy"), ("#1 String", "#2 String", "Quality"),
             ("sentence1", "sentence2"), {}),
    "qqp": ("QQP", _BINARY, ("f1", "accuracy"), ("question1", "question2", "is_duplicate"),
            ("question1", "question2"), {}),
    "stsb": ("STS-B", None, ("pearson", "spearman"), ("sentence1", "sentence2", "score"),
             ("sentence1", "sentence2"), {}),
    "mnli": ("MNLI", _MNLI, ("accuracy",), ("sentence1", "sentence2", "gold_label"), ("premise", "hypothesis"),
             {"split_files": (("train", "train"), ("dev", "dev_matched"), ("test", "test_matched")) + _MNLI_FILES}),
    "mnli-mm": ("MNLI", _MNLI, ("accuracy",), ("sentence1", "sentence2", "gold_label"), ("premise", "hypothesis"),
                {"split_files": (("train", "train"), ("dev", "dev_mismatched"), ("test", "test_mismatched")) + _MNLI_FILES}),
    "qnli": ("QNLI", _NLI2, ("accuracy",), ("question", "sentence", "label"), ("question", "sentence"), {}),
    "rte": ("RTE", _NLI2, ("accuracy",), ("sentence1", "sentence2", "label"), ("sentence1", "sentence2"), {}),
    "wnli": ("WNLI", _BINARY, ("accuracy",), ("sentence1", "sentence2", "label"), ("sentence1", "sentence2"), {}),
}
GLUE_NAMES = tuple(_GLUE)


def glue_task(name: str, data_dir=None) -> GlueTask:
    folder, labels, metrics, columns, hub_columns, extra = _GLUE[name]
    return GlueTask(
        name=name,
        label_names=labels,
        metrics=metrics,
        is_pair=columns[1] is not None,
        folder=folder,
        columns=columns,
        hub_config=name.split("-")[0],
        hub_columns=hub_columns,
        data_dir=data_dir,
        **extra,
    )
