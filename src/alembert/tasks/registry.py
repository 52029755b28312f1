"""Find a task by name ('sst2', 'SST-2', 'mnli-mm', 'amazon-books') or build one from a dict spec
(or a YAML file holding one)."""

from __future__ import annotations

from pathlib import Path

from alembert.errors import AlembertError
from alembert.yaml_file import read_yaml_mapping
from alembert.tasks.amazon import AMAZON_DOMAINS, amazon_task
from alembert.tasks.base import Task, resolve_data_dir
from alembert.tasks.generic import generic_task
from alembert.tasks.glue import GLUE_NAMES, glue_task
from alembert.tasks.squad import squad_task
from alembert.tasks.tokens import conll2003_task

# token classification and extractive QA on the shared data (tasks/tokens.py, tasks/squad.py)
OTHER_KINDS = {"conll2003": conll2003_task, "squad": lambda d: squad_task("squad", d),
               "squad-dev-split": lambda d: squad_task("squad-dev-split", d)}
TASK_NAMES = GLUE_NAMES + tuple(f"amazon-{d}" for d in AMAZON_DOMAINS) + tuple(OTHER_KINDS)

# Spellings people use, with '-' and '_' removed: 'SST-2' -> 'sst2', 'STS-B' -> 'stsb'.
_ALIASES = {name.replace("-", ""): name for name in GLUE_NAMES}
_ALIASES.update({"mnlim": "mnli", "mnlimatched": "mnli", "mnlimismatched": "mnli-mm"})
_ALIASES.update({name.replace("-", ""): name for name in OTHER_KINDS})
_ALIASES.update({"conll03": "conll2003", "squadv1": "squad", "squadv11": "squad"})


def get_task(spec, data_dir=None) -> Task:
    if isinstance(spec, (list, tuple)):  # one task per domain
        from alembert.tasks.domains import domains_task

        if not spec:
            raise AlembertError("task: an empty list (expected one task per domain)")
        return domains_task([get_task(member, data_dir) for member in spec])
    if isinstance(spec, str) and spec.endswith((".yaml", ".yml")):
        spec = read_task_file(Path(spec))
    if isinstance(spec, dict):
        return generic_task(spec, data_dir)
    if not isinstance(spec, str):
        raise AlembertError(f"task: expected a task name or a dict describing files, found {spec!r}")
    key = spec.strip().lower()
    for prefix in ("amazon-", "amazon_", "amazon/"):
        if key.startswith(prefix) and len(key) > len(prefix):
            return _amazon(key[len(prefix):], spec, data_dir)
    name = _ALIASES.get(key.replace("-", "").replace("_", ""))
    if name is None:
        raise AlembertError(f"unknown task '{spec}' (known tasks: {', '.join(TASK_NAMES)}, or a dict with files)")
    return OTHER_KINDS[name](data_dir) if name in OTHER_KINDS else glue_task(name, data_dir)


def read_task_file(path: Path) -> dict:
    """A YAML file holding the dict form (your own files); relative paths are taken from the file's folder."""
    spec = read_yaml_mapping(path, "task", "task keys (format, train, dev, text_columns, label_column)")
    for split in ("train", "dev", "test"):
        if isinstance(spec.get(split), str) and not Path(spec[split]).is_absolute():
            spec[split] = str(path.parent / spec[split])
    return spec


def _amazon(domain: str, spec: str, data_dir):
    # Any folder under amazon/ is a domain; the four standard ones need no folder check up front.
    if domain not in AMAZON_DOMAINS:
        folder = resolve_data_dir(data_dir) / "amazon" / domain
        if not folder.is_dir():
            raise AlembertError(f"unknown task '{spec}': no folder {folder} (known tasks: {', '.join(TASK_NAMES)})")
    return amazon_task(domain, data_dir)
