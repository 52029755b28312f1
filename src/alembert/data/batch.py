"""The typed batch every stage trains on, whatever sources it draws from."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

TOKEN_FIELDS = ("input_ids", "attention_mask", "token_type_ids")
STUDENT = "student"
IGNORE = -100  # a token's label where nothing is scored: special tokens, a word's later sub-tokens, padding


def teacher_key(k: int) -> str:
    return f"teacher{k}"


@dataclass
class Batch:
    """B examples: token views per model ('student'; 'teacher{k}' where teacher k has its own tokenizer), labels
    with a per-example label mask (unlabeled rows hold 0), a domain id, and where each example came from: the
    index of its source among `source_names` and its stable id (position) within that source.

    Labels by the task's kind: (B,) class ids or targets; (B, T) tag ids aligned to the student's tokens, IGNORE
    where no word starts (token classification); (B, 2) the answer's start and end token, (0, 0) when the answer
    is not in the window (extractive QA: an example is a window)."""

    views: dict[str, dict[str, torch.Tensor]]
    labels: torch.Tensor
    label_mask: torch.Tensor
    domain: torch.Tensor
    source: torch.Tensor
    example_id: torch.Tensor
    source_names: tuple[str, ...] = ()
    phase: str = "train"  # a step strategy's part of the batch: the meta step's 'support' and 'query' (ctx.phase)

    @property
    def size(self) -> int:
        return len(self.example_id)

    def inputs(self, view: str = STUDENT) -> dict[str, torch.Tensor]:
        """The token tensors of one view; a teacher without its own view reads the student's."""
        return self.views.get(view, self.views[STUDENT])

    def teacher_inputs(self, k: int) -> dict[str, torch.Tensor]:
        return self.inputs(teacher_key(k))

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.views[STUDENT]["attention_mask"]

    @property
    def gold(self) -> torch.Tensor | None:
        """The labels when every example has one (what label-based rules need), else None."""
        return self.labels if bool(self.label_mask.all()) else None

    def to(self, device) -> Batch:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        views = {name: {k: v.to(device) for k, v in view.items()} for name, view in self.views.items()}
        return replace(self, views=views, **moved)

    def select(self, rows: torch.Tensor | list[int]) -> Batch:
        """The examples at `rows`, padding trimmed to their longest."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        views = {}
        for name, view in self.views.items():
            length = int(view["attention_mask"][rows].sum(dim=1).max()) if len(rows) else 0
            views[name] = {k: v[rows, :length] for k, v in view.items()}
        picked = {f.name: getattr(self, f.name)[rows] for f in fields(self)
                  if isinstance(getattr(self, f.name), torch.Tensor)}
        if self.token_labels:  # tag ids follow the student's tokens: trimmed with them
            picked["labels"] = picked["labels"][:, :views[STUDENT]["input_ids"].shape[1]]
        return replace(self, views=views, **picked)

    @property
    def token_labels(self) -> bool:
        """Whether the labels are per token of the student's view (token classification)."""
        return self.labels.dim() == 2 and self.labels.shape[1] == self.views[STUDENT]["input_ids"].shape[1]

    def describe(self) -> str:
        """Which examples these are, for messages: source:id pairs."""
        names = self.source_names or ("data",)
        return ", ".join(f"{names[s]}:{i}" for s, i in zip(self.source.tolist(), self.example_id.tolist()))


def pad(encodings: list[dict], pad_id: int, length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad token lists to the longest of the batch, or to `length` (TinyBERT's fixed-length batches)."""
    length = max(max(len(e["input_ids"]) for e in encodings), length or 0)
    out = {}
    for key in (k for k in TOKEN_FIELDS if k in encodings[0]):
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.tensor([e[key] + [fill] * (length - len(e[key])) for e in encodings])
    return out
