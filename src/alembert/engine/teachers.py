"""The run's frozen teachers as a source of features: their output caches per data source (shard by shard), or
live forward passes where a cache would be wrong or useless."""
from __future__ import annotations

import functools
import logging
import operator
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from alembert.engine.teacher_cache import (CacheUnusable, TeacherCache, build_cache, cache_key, covers, open_cache,
                                           teacher_fingerprint)
from alembert.models.features import FeatureRequest, Features, FeatureTap
from alembert.models.layout import find_layout

log = logging.getLogger(__name__)


@dataclass
class CacheInfo:
    """What a report says of a teacher's cache of one source."""

    path: str | None
    bytes: int = 0
    reused: bool = False
    build_seconds: float = 0.0
    enabled: bool = True
    reason: str | None = None  # why the run went live instead
    shards: int = 0


class SourceCache:
    """Teacher k's outputs over one data source: one TeacherCache per shard of the source."""

    def __init__(self, shards: list[TeacherCache], ranges: list[range]):
        self.shards, self.starts = shards, [r.start for r in ranges]

    def features(self, mask: torch.Tensor, ids: torch.Tensor, request: FeatureRequest) -> Features:
        ids = ids.tolist()
        shard_of = [_bisect(self.starts, i) for i in ids]
        parts = []
        for j in sorted(set(shard_of)):
            rows = [r for r, s in enumerate(shard_of) if s == j]
            local = [ids[r] - self.starts[j] for r in rows]
            parts.append((rows, self.shards[j].features(mask[rows], local, request)))
        return stitch(parts, mask)


def _bisect(starts: list[int], i: int) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if starts[mid] <= i else (lo, mid - 1)
    return lo


def stitch(parts: list[tuple[list[int], Features]], mask: torch.Tensor) -> Features:
    """Features of row subsets (each padded like `mask`) put back together in the batch's row order."""
    if len(parts) == 1 and parts[0][0] == list(range(len(mask))):
        return parts[0][1]
    size = len(mask)

    def place(get):
        first = get(parts[0][1])
        out = first.new_empty((size, *first.shape[1:]))
        for rows, features in parts:
            out[rows] = get(features)
        return out

    sample = parts[0][1]
    return Features(
        logits=place(lambda f: f.logits), attention_mask=mask,
        hidden={i: place(lambda f, i=i: f.hidden[i]) for i in sample.hidden},
        scores={i: place(lambda f, i=i: f.scores[i]) for i in sample.scores},
        qkv={i: tuple(place(lambda f, i=i, p=p: f.qkv[i][p]) for p in range(3)) for i in sample.qkv})


def everything(request: FeatureRequest, layers: int) -> FeatureRequest:
    """Every layer of each kind of feature `request` uses (cache store: all)."""
    return FeatureRequest(hidden=frozenset(range(layers + 1)) if request.hidden else frozenset(),
                          attention=frozenset(range(1, layers + 1)) if request.attention else frozenset(),
                          qkv=frozenset(range(1, layers + 1)) if request.qkv else frozenset())


class TeacherBank:
    """The frozen teachers, in the order of the recipe's teacher list, and their caches by (source name, k)."""

    def __init__(self, teachers: list, autocast, precision: str, max_length: int):
        self.teachers, self.autocast, self.precision, self.max_length = teachers, autocast, precision, max_length
        self.caches: dict[tuple[str, int], SourceCache | None] = {}
        self.infos: dict[tuple[str, int], CacheInfo] = {}
        self._fingerprints: dict[int, str] = {}

    def fingerprint(self, k: int) -> str:
        if k not in self._fingerprints:
            self._fingerprints[k] = teacher_fingerprint(self.teachers[k])
        return self._fingerprints[k]

    def prepare(self, name: str, source, request: FeatureRequest | None, passes: float, root: Path,
                store_all: bool, off_reason: str | None, cls_only: bool = False) -> None:
        """Open (or, when the teacher would see the data more than once, build) each teacher's cache of one
        source. `request` None: no stage needs the teacher on it; `off_reason`: why the cache may not be used."""
        for k, teacher in enumerate(self.teachers or [None]):
            if request is None or off_reason is not None:
                reason = off_reason or "no stage needs the teacher"
                self.caches[name, k], self.infos[name, k] = None, CacheInfo(None, enabled=False, reason=reason)
                continue
            if store_all:
                request = everything(request, find_layout(teacher).num_layers)
            start = time.perf_counter()
            try:
                cache, reused, why = self._shards(source, k, request, root, passes > 1, cls_only)
            except CacheUnusable as err:
                log.warning("teacher-output cache off: %s; the teacher runs live", err)
                cache, reused, why = None, False, str(err)
            info = CacheInfo(None, enabled=False, reason=why) if cache is None else CacheInfo(
                str(cache.shards[0].path), sum(s.nbytes for s in cache.shards), reused,
                shards=len(cache.shards))
            info.build_seconds = time.perf_counter() - start
            self.caches[name, k], self.infos[name, k] = cache, info

    def _shards(self, source, k: int, request: FeatureRequest, root: Path, build: bool, cls_only: bool):
        shards, reused = [], True
        for j in range(len(source.shards)):
            part = source.encoded_shard(j)
            key = cache_key(self.fingerprint(k), part.teacher_encodings(k), self.max_length, self.precision, cls_only)
            found = open_cache(root / key, key)
            if found is not None and covers(found.request, request):
                shards.append(found)
                continue
            if not build:
                return None, False, "the teacher sees each input only once"
            wanted = request if found is None else request | found.request  # grow, never shrink
            shards.append(build_cache(root / key, key, self.teachers[k], part, wanted, self.autocast, k, cls_only))
            reused = False
        return SourceCache(shards, source.shards), reused, None

    def info(self, name: str, k: int = 0) -> dict:
        return asdict(self.infos[name, k])

    def reader(self, sources: list[str], request: FeatureRequest, use_cache: bool) -> "TeacherReader":
        return TeacherReader(self, sources, request, use_cache)


class TeacherReader:
    """One stage's way to its teachers' features: from the caches when every source of the batch has one, else
    by a live forward pass (hooks registered only then). Close it at the stage's end."""

    def __init__(self, bank: TeacherBank, sources: list[str], request: FeatureRequest, use_cache: bool):
        self.bank, self.request = bank, request
        self.caches = [{name: bank.caches.get((name, k)) if use_cache else None for name in sources}
                       for k in range(len(bank.teachers))]
        self.taps: dict[int, FeatureTap] = {}

    @property
    def live(self) -> list:
        """The teachers that may run live in this stage (MixUp hooks them)."""
        return [t for k, t in enumerate(self.bank.teachers)
                if any(cache is None for cache in self.caches[k].values())]

    @torch.no_grad()
    def features(self, batch, inputs) -> list[Features]:
        """Each teacher's features on `inputs` (the batch the models read), from its cache where it can."""
        out = []
        for k, teacher in enumerate(self.bank.teachers):
            names = [batch.source_names[s] for s in batch.source.unique().tolist()] if batch.source_names else []
            caches = [self.caches[k].get(name) for name in names]
            if names and all(cache is not None for cache in caches):
                out.append(self._cached(batch, k).to(inputs.attention_mask.device))
                continue
            if k not in self.taps:
                self.taps[k] = FeatureTap(teacher, self.request)
            out.append(self.taps[k].run(inputs.teacher_inputs(k)))
        return out

    def _cached(self, batch, k: int) -> Features:
        mask = batch.teacher_inputs(k)["attention_mask"].cpu()
        parts = []
        for s in batch.source.unique().tolist():
            rows = (batch.source == s).nonzero().flatten().tolist()
            cache = self.caches[k][batch.source_names[s]]
            parts.append((rows, cache.features(mask[rows], batch.example_id[rows].cpu(), self.request)))
        return stitch(parts, mask)

    def close(self) -> None:
        for tap in self.taps.values():
            tap.close()
        self.taps = {}


def union(requests) -> FeatureRequest:
    return functools.reduce(operator.or_, requests, FeatureRequest())
