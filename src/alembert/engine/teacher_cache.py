"""Teacher-output cache: the frozen teacher's features for every training example, computed once, then read back
from memory-mapped files on every later pass instead of running the teacher.

Only real tokens are stored (padding depends on the batch; the losses ignore it), and only the features the
losses ask for: logits in fp32 (one row per example, or, for a head that predicts per token, a token classifier's
or an extractive QA head's, one row per real token, as hidden states are kept); hidden states, Q/K/V and
pre-softmax attention scores in fp16. fp16 rounds each
value to within a relative 2**-11 (about 4.9e-4) of the live value, and to within 2**-25 absolutely below its
normal range; a teacher whose outputs leave fp16's range (|x| > 65504) or are not finite is not cached.

This module stores one shard: a directory named by its key, a hash of everything its contents depend on (the
teacher's weights and config, the exact token ids the teacher sees, so the tokenizer, data and maximum length,
and the precision). The features it holds are recorded in `meta.json`; a later run that needs no more than those
reuses it, one that needs more rebuilds it with the union (engine/teachers.py keeps a source's shards). It is
written in a temporary sibling and renamed into place when complete; `meta.json` records each file's size and
SHA-256, checked on every open. A stale cache is never found (its key differs); a corrupt one is rebuilt.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from alembert.files import fsync_path, sha256_file
from alembert.models.features import MASK_VALUE, FeatureRequest, Features, FeatureTap, split_heads
from alembert.models.heads import kind_of_model, output_width, per_token
from alembert.models.layout import find_layout

log = logging.getLogger(__name__)

FORMAT = 2
STORE_DTYPE = np.float16
FP16_MAX = float(np.finfo(np.float16).max)
BUILD_BATCH = 64


def default_cache_root() -> Path:
    return Path(os.environ.get("ALEMBERT_CACHE", Path.home() / ".cache" / "alembert")) / "teacher"


class CacheUnusable(Exception):
    """The teacher's outputs cannot be cached (out of fp16 range, not finite, or no room on disk)."""


def teacher_fingerprint(teacher) -> str:
    """A hash of the teacher's class, config and weights: part of every cache key (computed once per run)."""
    digest = hashlib.sha256(json.dumps({"teacher_class": type(teacher).__name__, "config": teacher.config.to_dict()},
                                       sort_keys=True, default=str).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(fingerprint: str, encodings: list[dict], max_length: int, precision: str,
              cls_only: bool = False) -> str:
    digest = hashlib.sha256(json.dumps({
        "format": FORMAT, "store": np.dtype(STORE_DTYPE).name, "max_length": max_length, "precision": precision,
        "teacher": fingerprint, **({"cls_only": True} if cls_only else {})}, sort_keys=True).encode())
    for enc in encodings:
        for field in ("input_ids", "token_type_ids", "attention_mask"):
            if field in enc:
                digest.update(np.asarray(enc[field], dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:32]


def request_of(meta: dict) -> FeatureRequest:
    return FeatureRequest(**{k: frozenset(meta["request"][k]) for k in ("hidden", "attention", "qkv")})


def _layout(request: FeatureRequest, lengths: np.ndarray, num_labels: int, width: int, heads: int,
            qkv_width: int, cls_only: bool = False, token_logits: bool = False) -> dict:
    """Every stored array: name -> (shape, dtype). Token arrays are the examples' real tokens back to back (with
    `cls_only`, hidden states only at position 0: one row per example; with `token_logits`, the logits too); score
    arrays each example's (heads, L, L) block, flattened."""
    tokens, store = int(lengths.sum()), np.dtype(STORE_DTYPE).name
    arrays = {"logits": ((tokens if token_logits else len(lengths), num_labels), "float32")}
    for i in sorted(request.hidden):
        arrays[f"hidden_{i}"] = ((len(lengths) if cls_only else tokens, width), store)
    for layer in sorted(request.qkv):
        for part in "qkv":
            arrays[f"{part}_{layer}"] = ((tokens, qkv_width), store)
    for layer in sorted(request.attention):
        arrays[f"scores_{layer}"] = ((int((heads * lengths ** 2).sum()),), store)
    return arrays


def _offsets(lengths: np.ndarray, heads: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each example starts (and the next ends) in the token arrays and in the score arrays."""
    return np.concatenate([[0], np.cumsum(lengths)]), np.concatenate([[0], np.cumsum(heads * lengths ** 2)])


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


class TeacherCache:
    """Read side of one shard: `features(mask, local, request)` gives the teacher's Features for the shard's
    examples at positions `local`, padded as `mask` (their attention mask in this teacher's view) says."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta
        self.request = request_of(meta)
        self.cls_only = meta.get("cls_only", False)
        self.token_logits = meta.get("token_logits", False)
        self.lengths = np.load(path / "lengths.npy")
        self.heads = meta["heads"]
        self.token_offsets, self.pair_offsets = _offsets(self.lengths, self.heads)
        self.arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir())

    def features(self, mask: torch.Tensor, local, request: FeatureRequest) -> Features:
        index = np.asarray(local)
        lengths = self.lengths[index]
        if not np.array_equal(lengths, mask.sum(dim=1).numpy()):
            raise RuntimeError(f"teacher cache {self.path}: a batch's lengths differ from the cached ones")
        size, length = mask.shape
        logits = self._tokens("logits", index, length) if self.token_logits else \
            torch.from_numpy(np.asarray(self.arrays["logits"][index]))
        features = Features(logits=logits, attention_mask=mask)
        for i in request.hidden:
            features.hidden[i] = torch.from_numpy(np.asarray(self.arrays[f"hidden_{i}"][index], dtype=np.float32))[
                :, None] if self.cls_only else self._tokens(f"hidden_{i}", index, length)
        for layer in request.qkv:
            features.qkv[layer] = tuple(split_heads(self._tokens(f"{p}_{layer}", index, length), self.heads)
                                        for p in "qkv")
        for layer in request.attention:
            scores = np.full((size, self.heads, length, length), MASK_VALUE, dtype=np.float32)
            store = self.arrays[f"scores_{layer}"]
            for row, (i, n) in enumerate(zip(index, lengths)):
                start = self.pair_offsets[i]
                scores[row, :, :n, :n] = store[start:start + self.heads * n * n].reshape(self.heads, n, n)
            features.scores[layer] = torch.from_numpy(scores)
        return features

    def _tokens(self, name: str, index: np.ndarray, length: int) -> torch.Tensor:
        store = self.arrays[name]
        out = np.zeros((len(index), length, store.shape[1]), dtype=np.float32)
        for row, i in enumerate(index):
            start, end = self.token_offsets[i], self.token_offsets[i + 1]
            out[row, :end - start] = store[start:end]
        return torch.from_numpy(out)


def open_cache(path: Path, key: str) -> TeacherCache | None:
    """The cache at `path` if it is complete and intact; None (after removing it) if it is corrupt."""
    if not path.exists():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
            raise ValueError("its key or format differs")
        for name, entry in {**meta["arrays"], "lengths": meta["lengths"]}.items():
            file = path / f"{name}.npy"
            if file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                raise ValueError(f"{file.name} does not match its recorded size and checksum")
        return TeacherCache(path, meta)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("teacher cache %s is unusable (%s); rebuilding it", path, err)
        shutil.rmtree(path, ignore_errors=True)
        return None


@torch.no_grad()
def build_cache(path: Path, key: str, teacher, data, request: FeatureRequest,
                autocast=contextlib.nullcontext, teacher_index: int = 0, cls_only: bool = False) -> TeacherCache:
    """Run the teacher once over `data`, one shard's EncodedExamples (longest first, little padding), and write its
    features to `path`, replacing what is there."""
    lengths = np.asarray([len(e["input_ids"]) for e in data.teacher_encodings(teacher_index)], dtype=np.int64)
    kind, layout = kind_of_model(teacher), find_layout(teacher)
    heads, width, token_logits = layout.num_heads, layout.hidden_size, per_token(kind)
    arrays = _layout(request, lengths, output_width(kind, teacher.config.num_labels), width, heads,
                     heads * layout.head_size, cls_only, token_logits)
    need = sum(_nbytes(shape, dtype) for shape, dtype in arrays.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if need > free - (1 << 30):  # leave a GiB for everything else
        raise CacheUnusable(f"it needs {need / 2**30:.1f} GiB and {path.parent} has {free / 2**30:.1f} GiB free")
    remove_abandoned(path.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent))
    try:
        stores = {name: np.lib.format.open_memmap(work / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
                  for name, (shape, dtype) in arrays.items()}
        token_offsets, pair_offsets = _offsets(lengths, heads)
        order = np.argsort(-lengths, kind="stable")
        device = next(teacher.parameters()).device
        teacher.eval()
        with FeatureTap(teacher, request) as tap:
            for start in range(0, len(order), BUILD_BATCH):
                batch = data.collate([data[int(i)] for i in order[start:start + BUILD_BATCH]]).to(device)
                with autocast():
                    feats = tap.run(batch.teacher_inputs(teacher_index))
                if cls_only:  # the [CLS] vectors: one row per example
                    feats.hidden = {i: h[:, :1] for i, h in feats.hidden.items()}
                _write(stores, feats, batch.example_id.cpu().numpy(), lengths, token_offsets, pair_offsets, heads,
                       cls_only, token_logits)
        for store in stores.values():
            store.flush()
        del stores
        np.save(work / "lengths.npy", lengths)
        entries = {name: {"bytes": (work / f"{name}.npy").stat().st_size, "sha256": sha256_file(work / f"{name}.npy"),
                          "shape": list(shape), "dtype": dtype} for name, (shape, dtype) in arrays.items()}
        lengths_file = work / "lengths.npy"
        meta = {"format": FORMAT, "key": key, "examples": len(lengths), "heads": heads, "arrays": entries,
                "lengths": {"bytes": lengths_file.stat().st_size, "sha256": sha256_file(lengths_file)},
                "request": {k: sorted(getattr(request, k)) for k in ("hidden", "attention", "qkv")},
                "cls_only": cls_only, "token_logits": token_logits}
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        for file in work.iterdir():  # on disk before the rename makes the cache visible
            fsync_path(file)
        if path.exists():  # a smaller cache of the same shard: this one holds all it held and more
            shutil.rmtree(path, ignore_errors=True)
        try:
            work.rename(path)
        except OSError:  # another process built the same cache meanwhile: keep theirs if it holds enough
            theirs = open_cache(path, key)
            if theirs is None or not covers(theirs.request, request):
                raise
            shutil.rmtree(work, ignore_errors=True)
            return theirs
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return TeacherCache(path, meta)


def covers(stored: FeatureRequest, needed: FeatureRequest) -> bool:
    return needed.hidden <= stored.hidden and needed.attention <= stored.attention and needed.qkv <= stored.qkv


def _write(stores, feats: Features, index, lengths, token_offsets, pair_offsets, heads, cls_only=False,
           token_logits=False) -> None:
    def fp16(x: torch.Tensor, what: str) -> np.ndarray:
        x = x.float()
        if not torch.isfinite(x).all():
            raise CacheUnusable(f"the teacher's {what} are not all finite")
        if x.abs().max() > FP16_MAX:
            raise CacheUnusable(f"the teacher's {what} exceed fp16's range")
        return x.cpu().numpy().astype(STORE_DTYPE)

    logits = feats.logits.float().cpu().numpy()
    if not token_logits:
        stores["logits"][index] = logits
    tokens = {f"hidden_{i}": fp16(h, f"hidden states {i}") for i, h in feats.hidden.items()}
    if token_logits:  # kept in fp32, one row per real token
        tokens["logits"] = logits
    for layer, qkv in feats.qkv.items():
        for part, x in zip("qkv", qkv):  # back to (B, T, width) for storage
            tokens[f"{part}_{layer}"] = fp16(x.transpose(1, 2).flatten(2), f"{part} of layer {layer}")
    # only real (query, key) pairs are stored, so no -10000 mask value reaches the range check
    scores = {f"scores_{layer}": fp16(s, f"attention scores {layer}") for layer, s in feats.scores.items()}
    for row, i in enumerate(index):
        n = lengths[i]
        for name, values in tokens.items():
            if cls_only and name.startswith("hidden_"):
                stores[name][i] = values[row, 0]
            else:
                stores[name][token_offsets[i]:token_offsets[i + 1]] = values[row, :n]
        for name, values in scores.items():
            stores[name][pair_offsets[i]:pair_offsets[i + 1]] = values[row, :, :n, :n].reshape(-1)


def remove_abandoned(folder: Path) -> None:
    """Delete the temporary folders of builds whose process is gone (killed mid-build): `.<key>.<pid>.<random>`.
    A build of a live process (another rank, another run) is left alone."""
    for entry in folder.glob(".*.*.*"):
        parts = entry.name.split(".")
        if entry.is_dir() and len(parts) >= 4 and parts[2].isdigit() and not _alive(int(parts[2])):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
