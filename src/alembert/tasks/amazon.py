"""Amazon multi-domain sentiment (Blitzer et al., 2007): one task per product domain.

The shared files hold train.tsv (1,700 reviews per domain) and dev.tsv (300), no test split. Multi-domain
distillation (HRKD, Meta-KD) needs train/dev/test, so the test split is carved out of train.tsv by a fixed rule
that depends on the reviews' text alone, never on file order, a seed or Python's hash seed:

- each review gets the key sha256("alembert-amazon-test\\0" + text);
- within each label, the reviews with the smallest keys form the test split, round(count * 2/17) of them (100 of
  850 per label in the shared files: 200 test reviews per domain, balanced), and the rest stay in train (1,500);
- a text written more than once in train.tsv goes wholly to one side (its copies share a key), so no test review
  is also a training review.

So train/dev/test = 1,500/300/200 per domain (HRKD's split was about 1,630/180/200). A domain folder with a
test.tsv of its own reads that file as its test split and keeps all of train.tsv for training.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from alembert.tasks.base import Example, Task, resolve_data_dir
from alembert.tasks.readers import check_columns, class_label, make_examples, read_table

AMAZON_DOMAINS = ("books", "dvd", "electronics", "kitchen")
TEST_SHARE = (2, 17)  # of each label's training reviews: 100 of 850 per label, 200 of 1,700 per domain
_SALT = b"alembert-amazon-test\0"


def split_key(text: str) -> str:
    """The review's place in the test-split order: a hash of its text alone."""
    return hashlib.sha256(_SALT + text.encode("utf-8")).hexdigest()


def carve_test(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """(train, test): per label, the round(count * 2/17) examples of smallest key (whole groups of copies of one
    text) are test, the rest train; both keep file order."""
    test_ids: set[int] = set()
    for label in sorted({e.label for e in examples}, key=str):
        rows = [i for i, e in enumerate(examples) if e.label == label]
        wanted = round(len(rows) * TEST_SHARE[0] / TEST_SHARE[1])
        taken: list[int] = []
        keys: dict[str, list[int]] = {}
        for i in rows:
            keys.setdefault(split_key(examples[i].text_a), []).append(i)
        for key in sorted(keys):
            if len(taken) >= wanted:
                break
            taken += keys[key]  # every copy of a text goes with it
        test_ids.update(taken)
    train = [e for i, e in enumerate(examples) if i not in test_ids]
    test = [e for i, e in enumerate(examples) if i in test_ids]
    return train, test


@dataclass(frozen=True)
class AmazonTask(Task):
    domain: str = ""
    data_dir: str | os.PathLike | None = None

    def source(self, split: str) -> str:
        folder = resolve_data_dir(self.data_dir) / "amazon" / self.domain
        if split in ("train", "test") and not (folder / "test.tsv").is_file():
            return f"{folder / 'train.tsv'} ({split} part)"
        return str(folder / f"{split}.tsv")

    def _read(self, split: str) -> list[Example]:
        folder = resolve_data_dir(self.data_dir) / "amazon" / self.domain
        if split == "dev" or (folder / "test.tsv").is_file():
            return self._read_file(folder / f"{split}.tsv")
        train, test = carve_test(self._read_file(folder / "train.tsv"))
        return train if split == "train" else test

    def _read_file(self, path) -> list[Example]:
        # Reviews are quoted and hold newlines and tabs: a real CSV parse, never line splitting.
        records = read_table(path, delimiter="\t", quote=True)
        check_columns(path, records, ("sentence", "label"))
        return make_examples(path, records, "sentence", None, "label", class_label(self.label_names),
                             domain=self.domain)


def amazon_task(domain: str, data_dir=None) -> AmazonTask:
    return AmazonTask(name=f"amazon-{domain}", label_names=("0", "1"), metrics=("accuracy",), is_pair=False,
                      domain=domain, data_dir=data_dir)
