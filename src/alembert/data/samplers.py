"""Batch samplers over a stage's sources: each yields lists of global indices into a StageData.

An epoch's whole order is drawn from the sampler's torch.Generator when the epoch starts, so the generator's state
at an epoch's start replays that epoch (how a resumed run continues mid-epoch).
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import RandomSampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from alembert.errors import AlembertError
from alembert.recipe.data_specs import MixtureSamplerSpec, PerDomainSamplerSpec, ShuffledSamplerSpec
from alembert.registry import SAMPLERS



def _perm(n: int, generator: torch.Generator) -> list[int]:
    return torch.randperm(n, generator=generator).tolist()


class Sampler:
    """A batch sampler: `batch_size` (the global batch: accelerate splits it across processes), a generator,
    `__iter__` over one epoch's batches and `__len__` its number of batches."""

    Options = None
    drop_last = False

    def __init__(self, data, batch_size: int, generator: torch.Generator, options=None, group_by_length: bool = False,
                 domain_names: tuple[str, ...] = ()):
        self.data, self.batch_size, self.generator, self.options = data, batch_size, generator, options
        self.group, self.domain_names = group_by_length, domain_names


@SAMPLERS.register("shuffled")
class Shuffled(Sampler):
    """Every example once an epoch. When every source is held in memory (one shard each), the stage's examples are
    shuffled together by torch's RandomSampler, or with `group_by_length` by transformers' length grouping (a
    random permutation sorted by length within mega-batches, the longest batch first); a source read in shards (text files) is taken shard by shard
    in a shuffled order, each shard's examples shuffled (and grouped by length), so one shard is tokenized at a
    time."""

    Options = ShuffledSamplerSpec

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        data = self.data
        self.units = [range(data.starts[s] + r.start, data.starts[s] + r.stop)
                      for s, source in enumerate(data.sources) for r in source.shards]
        self.whole = all(len(source.shards) <= 1 for source in data.sources)
        self._lengths = None

    def lengths(self) -> list[int]:
        if self._lengths is None:
            self._lengths = [n for source in self.data.sources for n in source.lengths]
        return self._lengths

    def __len__(self):
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self):
        if self.whole:  # torch's and transformers' own samplers: their orders, draw for draw
            order = get_length_grouped_indices(self.lengths(), self.batch_size, generator=self.generator) \
                if self.group else list(RandomSampler(range(len(self.data)), generator=self.generator))
        else:
            order = []
            for u in _perm(len(self.units), self.generator):
                unit = [self.units[u][i] for i in _perm(len(self.units[u]), self.generator)]
                if self.group:
                    lengths = self.lengths()
                    unit = sorted(unit, key=lambda i: -lengths[i])
                order += unit
        for i in range(0, len(order), self.batch_size):
            yield order[i:i + self.batch_size]


def _domain_indices(data) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for s, source in enumerate(data.sources):
        for i, d in enumerate(source.domain_ids):
            groups.setdefault(d, []).append(data.starts[s] + i)
    return dict(sorted(groups.items()))


@SAMPLERS.register("per_domain")
class PerDomain(Sampler):
    """k examples of every domain per batch; an epoch is as many batches as the fit domain fills, every other domain
    reshuffled and cycled when it runs out (HRKD's multi-domain batches)."""

    Options = PerDomainSamplerSpec

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        options = self.options
        self.k = options.k
        self.groups = _domain_indices(self.data)
        names = {d: (self.domain_names[d] if d < len(self.domain_names) else str(d)) for d in self.groups}
        if len(self.groups) < 2:
            raise AlembertError("sampler per_domain: the stage's data holds one domain (give the task as a list of "
                                "one task per domain)")
        for d, members in self.groups.items():
            if len(members) < self.k:
                raise AlembertError(f"sampler per_domain: k = {self.k} examples per domain, but domain "
                                    f"'{names[d]}' has {len(members)}")
        if options.fit is None:
            self.fit = max(self.groups, key=lambda d: len(self.groups[d]))
        elif options.fit in names.values():
            self.fit = next(d for d, name in names.items() if name == options.fit)
        else:
            raise AlembertError(f"sampler per_domain: fit '{options.fit}' is not a domain of the data "
                                f"({', '.join(names.values())})")
        self.batch_size = self.k * len(self.groups)

    def __len__(self):
        return math.ceil(len(self.groups[self.fit]) / self.k)

    def __iter__(self):
        queues = {d: [] for d in self.groups}

        def take(d: int, n: int) -> list[int]:
            out = []
            while len(out) < n:
                if not queues[d]:
                    queues[d] = [self.groups[d][i] for i in _perm(len(self.groups[d]), self.generator)]
                out.append(queues[d].pop(0))
            return out

        fit = [self.groups[self.fit][i] for i in _perm(len(self.groups[self.fit]), self.generator)]
        for b in range(len(self)):
            part = fit[b * self.k:(b + 1) * self.k]
            part += take(self.fit, self.k - len(part)) if len(part) < self.k else []
            yield [i for d in self.groups for i in (part if d == self.fit else take(d, self.k))]


@SAMPLERS.register("mixture")
class Mixture(Sampler):
    """Each batch from one source, drawn with probability by fixed ratios or by size ** tau; each source's examples
    reshuffled and cycled when it runs out. An epoch is as many batches as the sources hold examples."""

    Options = MixtureSamplerSpec

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        sizes = [len(source) for source in self.data.sources]
        if self.options.ratios is not None:
            weights = [self.options.ratios.get(name, 0.0) for name in self.data.names]
        else:
            weights = [size ** self.options.tau for size in sizes]
        self.probs = torch.tensor(weights, dtype=torch.float64) / sum(weights)

    def __len__(self):
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self):
        starts, queues = self.data.starts, [[] for _ in self.data.sources]
        for _ in range(len(self)):
            s = int(torch.multinomial(self.probs, 1, generator=self.generator))
            batch = []
            while len(batch) < self.batch_size:
                if not queues[s]:
                    queues[s] = [starts[s] + i for i in _perm(len(self.data.sources[s]), self.generator)]
                batch.append(queues[s].pop(0))
            yield batch


def make_sampler(spec, data, batch_size: int, seed: int, group_by_length: bool, domain_names=()) -> Sampler:
    generator = torch.Generator().manual_seed(seed)
    cls = SAMPLERS.get(spec.type, "sampler")
    return cls(data, batch_size, generator, options=spec, group_by_length=group_by_length, domain_names=domain_names)
