"""Generated examples kept on disk. The masked-LM generator under a BERT-base teacher spends tens of minutes on a
CPU (the head's training, the chain, the teacher's view of every candidate); a later run that would make the same
candidates from the same inputs reads them back instead: a resumed run, a student trained again with another
learning rate or seed, the same candidates under another plugin's use.

One safetensors file per key, a hash of everything the result depends on (the teacher's weights and config, its
vocabulary, the plugin and its generator options, the starts, the seed and the maximum length). It holds the
teacher's views as tensors and, in its metadata, the candidates, the generation's record and a SHA-256 of all of
it, checked on every read; it is written to a temporary sibling and renamed into place. A file that fails its check
is generated again. While one run makes a key's generation it holds a lock on it, so runs side by side make it once."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from alembert.augment.generate import Candidate, Start
from alembert.engine.teacher_cache import teacher_fingerprint
from alembert.files import fsync_path

log = logging.getLogger(__name__)

FORMAT = 1


def generation_key(teacher, tokenizer, options: dict, starts: list[Start], seed: int, max_length: int) -> str:
    digest = hashlib.sha256(json.dumps({
        "format": FORMAT, "options": options, "seed": seed, "max_length": max_length,
        "teacher": teacher_fingerprint(teacher), "vocabulary": sorted(tokenizer.get_vocab().items())},
        sort_keys=True).encode())
    for start in starts:
        digest.update(json.dumps(asdict(start), ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def making(root: Path, key: str):
    """Held while the generation under `key` is looked up and, if missing, made: a second run that would make the
    same one at the same time (students of several seeds side by side) waits, then reads it back."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / f".{key}.lock", "w")
    except OSError:
        handle = None
    if handle is None:  # a folder that cannot be written: each run makes its own, as without the cache
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another run is making generated examples %s; waiting to read them back", key)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(payload: str, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(payload.encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_generation(root: Path, key: str) -> tuple[list[Candidate], dict, dict[str, torch.Tensor]] | None:
    """The candidates, the generation's record and the teacher's views kept under `key`; None when there are none
    or the file fails its check (then the caller generates them again and replaces it)."""
    path = root / f"{key}.safetensors"
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        if _digest(meta["payload"], tensors) != meta["sha256"]:
            raise ValueError("its SHA-256 does not match")
        payload = json.loads(meta["payload"])
        return [Candidate(**c) for c in payload["candidates"]], payload["info"], tensors
    except (OSError, KeyError, ValueError, TypeError, SafetensorError) as err:
        log.warning("generated examples %s unusable (%s); generating them again", path, err)
        return None


def save_generation(root: Path, key: str, candidates: list[Candidate], info: dict,
                    tensors: dict[str, torch.Tensor]) -> None:
    """Keep them under `key`; a folder that cannot be written only costs the next run the generation."""
    tensors = {name: value.detach().cpu().contiguous() for name, value in tensors.items()}
    payload = json.dumps({"candidates": [asdict(c) for c in candidates], "info": info}, ensure_ascii=False)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=root)
        os.close(handle)
    except OSError as err:
        log.warning("generated examples not kept in %s (%s)", root, err)
        return
    try:
        save_file(tensors, temporary, metadata={"payload": payload, "sha256": _digest(payload, tensors)})
        fsync_path(Path(temporary))  # complete bytes on disk before the rename publishes them
        os.replace(temporary, root / f"{key}.safetensors")
    except OSError as err:
        log.warning("generated examples not kept in %s (%s)", root, err)
    finally:
        Path(temporary).unlink(missing_ok=True)
