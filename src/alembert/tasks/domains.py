"""A task given as one task per domain (e.g. the four Amazon review domains): one label set, examples tagged with
their domain, so a run can sample per domain and score each domain apart."""
from __future__ import annotations

from dataclasses import dataclass, replace

from alembert.errors import AlembertError
from alembert.tasks.base import Example, Task
from alembert.tasks.kinds import SEQUENCE


@dataclass(frozen=True)
class DomainsTask(Task):
    members: tuple[Task, ...] = ()

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.members[0].splits if all(s in m.splits for m in self.members))

    def load(self, split: str, limit: int | None = None, seed: int = 0,
             fraction: float | None = None) -> list[Example]:
        """Every domain's split, domain by domain. `limit` and `fraction` apply to each domain on its own (a
        few-shot count, or a share of each domain's examples), with the same seed: a domain's subset is the one
        that domain loaded alone gives (so per-domain and multi-domain runs train on the same examples)."""
        if split not in self.splits:
            raise AlembertError(f"{self.name}: unknown split '{split}' (expected one of {', '.join(self.splits)})")
        out = []
        for member in self.members:
            examples = member.load(split, limit, seed, fraction)
            if not examples:
                raise AlembertError(f"{member.name}: the {split} split is empty (expected examples in every domain)")
            out += [replace(e, domain=member.name) for e in examples]
        return out


def domains_task(members: list[Task]) -> DomainsTask:
    """Refused unless every domain has the same labels, metrics and input form (single sentence or pair)."""
    names = [m.name for m in members]
    if len(set(names)) < len(names):
        raise AlembertError(f"task: each domain once (got {', '.join(names)})")
    first = members[0]
    other = next((m for m in members if m.kind != SEQUENCE), None)
    if other is not None:
        raise AlembertError(f"task: a task given per domain is a sequence-classification task; {other.name} is "
                            f"{other.kind} (give it as one task)")
    for member in members[1:]:
        if member.label_names != first.label_names:
            def shown(task):
                return "a regression target" if task.label_names is None else ", ".join(task.label_names)
            raise AlembertError(f"task: domains {first.name} and {member.name} have different labels "
                                f"({shown(first)} against {shown(member)}); every domain needs the same label set")
        if member.is_pair != first.is_pair:
            raise AlembertError(f"task: {first.name} and {member.name} differ in input form (sentence pairs against "
                                "single sentences)")
    return DomainsTask(name="+".join(names), label_names=first.label_names, metrics=first.metrics,
                       is_pair=first.is_pair, members=tuple(members))
