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
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from alembert.errors import AlembertError
from alembert.files import fsync_path, sha256_file

log = logging.getLogger(__name__)

PREFIX = "ckpt-"
STATE_FILE = "state.pt"
MANIFEST = "manifest.json"


def _tensors(group: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Own, contiguous CPU copies: safetensors refuses tensors that share storage (tied weights)."""
    return {name: t.detach().cpu().clone().contiguous() for name, t in group.items()}


class Checkpoints:
    """The checkpoints of one run, in `directory`; the newest `keep` are kept."""

    def __init__(self, directory: Path, keep: int = 2):
        self.directory, self.keep = Path(directory), max(1, keep)

    def _existing(self) -> list[Path]:
        """Complete checkpoint directories (temporary ones excluded), newest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                 and p.name[len(PREFIX):].isdigit()]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)

    def save(self, state: dict, tensors: dict[str, dict[str, torch.Tensor]]) -> Path:
        """Write one checkpoint atomically: `state` into state.pt, each tensor group into <group>.safetensors."""
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
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            why = "no space left on device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
            kept = f"; the previous checkpoint {existing[0]} is kept" if existing else ""
            raise AlembertError(f"{final}: cannot write the checkpoint ({why}){kept}") from err
        for old in self._existing()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def verify(self, path: Path) -> str | None:
        """Why checkpoint `path` cannot be used, or None when every file is present and matches its manifest."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            for name, expected in manifest["files"].items():
                file = path / name
                if not file.is_file():
                    return f"{name} is missing"
                if file.stat().st_size != expected["bytes"]:
                    return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['bytes']}"
                if sha256_file(file) != expected["sha256"]:
                    return f"{name} does not match its SHA-256"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"{MANIFEST} is unreadable ({err})"
        return None

    def latest(self) -> tuple[Path, dict, dict[str, dict[str, torch.Tensor]]] | None:
        """The newest good checkpoint as (path, state, tensor groups); None when there is none."""
        for path in self._existing():
            problem = self.verify(path)
            if problem is None:
                try:
                    groups = json.loads((path / MANIFEST).read_text())["groups"]
                    tensors = {g: load_file(path / f"{g}.safetensors") for g in groups}
                    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
                    return path, state, tensors
                except Exception as err:  # noqa: BLE001 - intact bytes that still do not load: try the previous one
                    problem = f"it does not load ({type(err).__name__}: {err})"
            log.warning("checkpoint %s is unusable (%s); trying the one before it", path, problem)
        return None

    def newest(self) -> Path | None:
        """The newest complete checkpoint directory, unverified (for messages)."""
        existing = self._existing()
        return existing[0] if existing else None
