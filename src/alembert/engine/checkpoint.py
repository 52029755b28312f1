"""Training checkpoints: written whole or not at all, checked on reading, the newest good one used.

A checkpoint is a directory `ckpt-<seq>` under the run's `checkpoints/` folder, holding tensors as safetensors
(one file per group: the student, the objective's projections, the best state so far) and everything else
(optimizer, scheduler, RNG states, data position, controllers, logged rows) in `state.pt`, which is read back with
`torch.load(weights_only=True)`: plain containers of numbers, strings and tensors, no code. `manifest.json` lists
each file's size and SHA-256. It is written into a temporary sibling, every file flushed to disk, and renamed into
place, so a crash at any moment leaves either the whole checkpoint or none; one found torn or corrupt anyway (a
bad disk, a copy gone wrong) is passed over for the one before it, with a warning.
"""
from __future__ import annotations

import errno
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from alembert.errors import AlembertError
from alembert.files import fsync_path, sha256_file

log = logging.getLogger(__name__)

PREFIX = "ckpt-"
STATE_FILE = "state.pt"
MANIFEST = "manifest.json"
# what a failed write raises: OSError from Python's own writes, SafetensorError from safetensors (its I/O errors
# included), RuntimeError from torch.save (its C++ stream reports a full disk as "unexpected pos ...")
WRITE_ERRORS = (OSError, SafetensorError, RuntimeError)
LOW_SPACE = 1 << 20  # bytes free below which a failed write is put down to a full disk

# What every checkpoint of a training run holds (engine/loop.py writes them); see check_run_state
RUN_STATE_KEYS = ("phase", "stage", "step", "micro", "running", "metric", "epoch_micro", "epoch_generator",
                  "accelerator_step", "result", "logger_rows", "rng", "plugins", "sources")
RUN_STATE_WITHIN_STAGE = ("optimizer", "scheduler")  # also there when taken within a stage (micro > 0)


def check_run_state(state: dict, tensors: dict) -> str | None:
    """Why a training run's checkpoint cannot be resumed from, or None: its state lacks a key every checkpoint of
    the run has, or holds one of the wrong kind, or its student weights are missing. For `Checkpoints(validate=)`."""
    missing = [key for key in RUN_STATE_KEYS if key not in state]
    if not missing and state["micro"]:
        missing = [key for key in RUN_STATE_WITHIN_STAGE if key not in state]
    if missing:
        return f"{STATE_FILE} lacks {', '.join(missing)}"
    kinds = {"phase": str, "stage": int, "step": int, "micro": int, "result": dict, "logger_rows": list,
             "rng": dict, "plugins": list, "sources": dict}
    wrong = [key for key, kind in kinds.items() if not isinstance(state[key], kind) or isinstance(state[key], bool)]
    if wrong:
        return f"{STATE_FILE} holds {', '.join(f'{k} of type {type(state[k]).__name__}' for k in wrong)}"
    if "student" not in tensors:
        return "it has no student weights"
    return None


def _tensors(group: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Own, contiguous CPU copies: safetensors refuses tensors that share storage (tied weights)."""
    return {name: t.detach().cpu().clone().contiguous() for name, t in group.items()}


class Checkpoints:
    """The checkpoints of one run, in `directory`; the newest `keep` are kept."""

    def __init__(self, directory: Path, keep: int = 2,
                 validate: Callable[[dict, dict], str | None] | None = None):
        """`validate(state, tensors)`: why a checkpoint that loads is still unusable (None when it is fine); a
        training run passes `check_run_state`."""
        self.directory, self.keep, self.validate = Path(directory), max(1, keep), validate

    def _existing(self) -> list[Path]:
        """Complete checkpoint directories (temporary ones excluded), newest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                 and p.name[len(PREFIX):].isdigit()]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)

    def save(self, state: dict, tensors: dict[str, dict[str, torch.Tensor]]) -> Path:
        """Write one checkpoint atomically: `state` into state.pt, each tensor group into <group>.safetensors.

        Any failure removes the temporary folder and leaves the checkpoints as they were; a failed write (a full
        disk, an I/O error) becomes one line naming the checkpoint and the one kept."""
        existing = self._existing()
        seq = int(existing[0].name[len(PREFIX):]) + 1 if existing else 1
        final = self.directory / f"{PREFIX}{seq:06d}"
        tmp = self.directory / f".{final.name}.tmp"
        try:
            shutil.rmtree(tmp, ignore_errors=True)  # what a crash mid-write left
            tmp.mkdir(parents=True)
            for group, values in tensors.items():
                save_file(_tensors(values), tmp / f"{group}.safetensors")
            torch.save(state, tmp / STATE_FILE)
            files = sorted(p for p in tmp.iterdir() if p.is_file())
            manifest = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}
            (tmp / MANIFEST).write_text(json.dumps({"files": manifest, "groups": sorted(tensors)}, indent=1))
            for p in tmp.iterdir():
                fsync_path(p)
            tmp.rename(final)
            fsync_path(self.directory)
        except BaseException as err:
            why = _write_failure(err, self.directory) if isinstance(err, WRITE_ERRORS) else None
            shutil.rmtree(tmp, ignore_errors=True)  # after measuring the free space: the removal frees it
            if why is None:  # not a failed write (an interrupt, a bug): as it is, with nothing half-written left
                raise
            kept = f"; the previous checkpoint {existing[0]} is kept" if existing else "; no earlier checkpoint exists"
            raise AlembertError(f"{final}: cannot write the checkpoint ({why}){kept}") from err
        for old in self._existing()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def verify(self, path: Path) -> str | None:
        """Why checkpoint `path` cannot be used, or None when its manifest is whole and every file it lists (the
        state and each tensor group among them) is present and matches it."""
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return f"{MANIFEST} is unreadable ({err})"
        problem = _manifest_shape(manifest)
        if problem:
            return f"{MANIFEST} {problem}"
        try:
            for name, expected in manifest["files"].items():
                file = path / name
                if not file.is_file():
                    return f"{name} is missing"
                if file.stat().st_size != expected["bytes"]:
                    return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['bytes']}"
                if sha256_file(file) != expected["sha256"]:
                    return f"{name} does not match its SHA-256"
        except OSError as err:
            return f"it cannot be read ({err})"
        return None

    def latest(self) -> tuple[Path, dict, dict[str, dict[str, torch.Tensor]]] | None:
        """The newest good checkpoint as (path, state, tensor groups); None when there is none. Good: it passes
        `verify`, loads, its state is a mapping, and `validate(state, tensors)` (when given) finds nothing wrong."""
        for path in self._existing():
            problem = self.verify(path)
            if problem is None:
                try:
                    groups = json.loads((path / MANIFEST).read_text(encoding="utf-8"))["groups"]
                    tensors = {g: load_file(path / f"{g}.safetensors") for g in groups}
                    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
                except Exception as err:  # noqa: BLE001 - intact bytes that still do not load: try the previous one
                    problem = f"it does not load ({type(err).__name__}: {err})"
                else:
                    if not isinstance(state, dict):
                        problem = f"{STATE_FILE} holds a {type(state).__name__}, expected a mapping"
                    elif self.validate is not None:
                        problem = self.validate(state, tensors)
                    if problem is None:
                        return path, state, tensors
            log.warning("checkpoint %s is unusable (%s); trying the one before it", path, problem)
        return None

    def newest(self) -> Path | None:
        """The newest complete checkpoint directory, unverified (for messages)."""
        existing = self._existing()
        return existing[0] if existing else None


def _manifest_shape(manifest) -> str | None:
    """What is wrong with a manifest's structure (valid JSON of another shape), or None."""
    if not isinstance(manifest, dict):
        return f"holds a {type(manifest).__name__}, expected an object"
    files, groups = manifest.get("files"), manifest.get("groups")
    if not isinstance(files, dict) or not files:
        return "has no 'files' object"
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        return "has no 'groups' list of names"
    for name, expected in files.items():
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            return f"lists {name!r}, expected a file name inside the checkpoint"
        if not isinstance(expected, dict) or not isinstance(expected.get("bytes"), int) \
                or not isinstance(expected.get("sha256"), str):
            return f"entry {name!r} is not {{bytes, sha256}}"
    unlisted = [n for n in [STATE_FILE] + [f"{g}.safetensors" for g in groups] if n not in files]
    if unlisted:  # a file the checkpoint loads must be one the manifest vouches for
        return f"does not list {', '.join(unlisted)}"
    return None


def _write_failure(err: BaseException, directory: Path) -> str:
    """Why a checkpoint write failed, in words: a full disk whatever the writer's way of saying so, else its text."""
    text = str(err)
    if getattr(err, "errno", None) == errno.ENOSPC or "os error 28" in text or "No space left" in text:
        return "no space left on device"
    try:
        if shutil.disk_usage(directory).free < LOW_SPACE:
            return "no space left on device"
    except OSError:
        pass
    if isinstance(err, OSError):
        return err.strerror or text
    return f"{type(err).__name__}: {text.splitlines()[0] if text else 'write failed'}"
