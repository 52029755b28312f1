"""Amazon multi-domain sentiment (Blitzer et al., 2007): one task per product domain."""

from __future__ import annotations

import os
from dataclasses import dataclass

from alembert.tasks.base import Example, Task, resolve_data_dir
from alembert.tasks.readers import check_columns, class_label, make_examples, read_table

AMAZON_DOMAINS = ("books", "dvd", "electronics", "kitchen")


@dataclass(frozen=True)
class AmazonTask(Task):
    domain: str = ""
    data_dir: str | os.PathLike | None = None

    def _read(self, split: str) -> list[Example]:
        path = resolve_data_dir(self.data_dir) / "amazon" / self.domain / f"{split}.tsv"
        # Reviews are quoted and hold newlines and tabs: a real CSV parse, never line splitting.
        records = read_table(path, delimiter="\t", quote=True)
        check_columns(path, records, ("sentence", "label"))
        return make_examples(path, records, "sentence", None, "label", class_label(self.label_names),
                             domain=self.domain)


def amazon_task(domain: str, data_dir=None) -> AmazonTask:
    return AmazonTask(name=f"amazon-{domain}", label_names=("0", "1"), metrics=("accuracy",), is_pair=False,
                      domain=domain, data_dir=data_dir)
