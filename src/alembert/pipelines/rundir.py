"""A run's folder: written into a hidden sibling while it trains (with the checkpoints `--resume` continues from),
published whole when it succeeds, locked against a second run of the same name meanwhile."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from alembert.engine.checkpoint import Checkpoints, check_run_state
from alembert.errors import AlembertError
from alembert.files import write_text_atomically

RECIPE_RECORD = "recipe.json"


def check_writable(folder: Path) -> None:
    """Refuse, before any long work and without creating anything, an output folder that cannot be written: its
    nearest existing ancestor must be a writable directory."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise AlembertError(f"{folder}: cannot write the output directory ({existing} is not a writable directory)")


def work_dir(final: Path) -> Path:
    """The hidden sibling of the run directory that a run writes into, its checkpoints included."""
    return final.with_name(f".{final.name}.partial")


class RunLock:
    """An exclusive lock on a run's name, held while it runs: a second run of the same output name refuses at its
    start instead of writing into the first one's folder. The kernel releases it when the process ends, however."""

    def __init__(self, final: Path):
        self.path = final.with_name(f".{final.name}.lock")
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise AlembertError(f"{self.path.with_name(self.path.name[1:-5])}: another run with this output name is "
                                "in progress (wait for it, or give this run another name)") from None
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _recipe_differences(saved: dict, recipe) -> list[str]:
    current = json.loads(json.dumps(recipe.model_dump(), default=str))
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def resume_point(work: Path, recipe, resume: bool, overwrite: bool, log) -> tuple | None:
    """The checkpoint to continue from (path, state, tensors), or None to start afresh, clearing what an earlier
    attempt left. Refuses to guess: an interrupted run is continued only with `resume`, replaced only with
    `overwrite`, and continued only under the recipe it was started with (which its record must prove)."""
    if not work.exists():
        if resume:
            log(f"{work}: no interrupted run to resume; starting afresh")
        return None
    if not (resume or overwrite):
        raise AlembertError(f"{work}: an interrupted run of this recipe is there (pass --resume to continue it, or "
                            "--overwrite to start again)")
    found = None
    if resume:
        found = Checkpoints(work / "checkpoints", validate=check_run_state).latest()
        _check_same_recipe(work / RECIPE_RECORD, recipe, work, required=found is not None)
        if found is None:
            log(f"{work}: no usable checkpoint; starting afresh")
    if found is None:
        shutil.rmtree(work)
    else:
        path, state, _ = found
        log(f"resuming from {path} ({state['phase']}, stage {state['stage']}, step {state['step']})")
    return found


def _check_same_recipe(saved: Path, recipe, work: Path, required: bool) -> None:
    """The interrupted run's recipe record must match; without a record, a checkpoint cannot be continued."""
    fix = "pass --overwrite to start again"
    if not saved.is_file() and not required:
        return
    if not saved.is_file():
        raise AlembertError(f"{saved}: missing, so the recipe the interrupted run was started with is unknown and "
                            f"resuming under another would mix two runs; {fix}")
    try:
        earlier = json.loads(saved.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise AlembertError(f"{saved}: unreadable ({err}); {fix}") from err
    if not isinstance(earlier, dict):
        raise AlembertError(f"{saved}: expected the recipe's keys, found {type(earlier).__name__}; {fix}")
    changed = _recipe_differences(earlier, recipe)
    if changed:
        raise AlembertError(f"{work}: the interrupted run had a different recipe (changed: {', '.join(changed)}); "
                            "undo the change to resume, or pass --overwrite instead")


def create_work_dir(work: Path, recipe) -> None:
    try:
        work.mkdir(parents=True, exist_ok=True)
        write_text_atomically(work / RECIPE_RECORD, json.dumps(recipe.model_dump(), indent=1, default=str))
    except OSError as err:
        shutil.rmtree(work, ignore_errors=True)
        raise AlembertError(f"{work.parent}: cannot write the output directory ({err.strerror})") from err


def publish(work: Path, final: Path) -> None:
    """Swap the finished run into place; an existing run is removed only once the new one is complete."""
    shutil.rmtree(work / "checkpoints", ignore_errors=True)  # the published run is the student and its report
    (work / RECIPE_RECORD).unlink(missing_ok=True)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    work.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
