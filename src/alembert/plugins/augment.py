"""Augmentation as a plugin: before the first stage, generate examples and add them to a `generated` source that
the stages train on, and seal it; the teacher labels them (soft labels, as TinyBERT's augmented data), from its
output cache when the stages' epochs let it see them more than once, and the run writes them to augmented.jsonl with
the example each came from.

    sources: {aug: {type: generated}}
    plugins: [{type: augment, generator: neighbours, n: 4}]
    stages: [{..., data: task+aug}]

`generator: neighbours` is TinyBERT's word replacement by the teacher's input-embedding neighbours; `generator: mlm`
trains a masked-LM head on the teacher's frozen encoder and refills masked tokens over several Markov-chain steps
(alembert.augment). Starts: the target's training sentences and, with `from_sources`, the named sources'. The
candidates and the teacher's view of them are kept in the cache folder (augment/cache.py): a run that would make
the same ones again reads them back."""
from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from alembert.augment.cache import generation_key, load_generation, making, save_generation
from alembert.augment.generate import generate, starts_of, teacher_view, write_jsonl
from alembert.engine.plugins import Plugin
from alembert.engine.teacher_cache import default_cache_root
from alembert.errors import AlembertError
from alembert.recipe import PluginOptions
from alembert.registry import PLUGINS
from alembert.tasks import Example
from alembert.tasks.kinds import SEQUENCE


class GeneratorOptions(PluginOptions):
    """What to generate from (the target's training sentences, named sources), how (embedding neighbours, or the
    masked-LM chain) and into which `generated` source."""

    generator: Literal["neighbours", "mlm"] = "neighbours"
    n: int = Field(4, ge=1)  # variants generated from each start
    into: str = "aug"  # the generated source that receives them (the stages' data must name it)
    from_target: bool = True  # start from the target's training sentences
    from_sources: list[str] = []  # and from these sources' sentences
    source_limit: int | None = Field(500, ge=1)  # sentences drawn from each source (a seeded sample)
    # neighbours: each whole-word token replaced with probability p by one of its top_k embedding neighbours
    p: float = Field(0.4, gt=0, le=1)
    top_k: int = Field(15, ge=1)
    # mlm: the head's training, then `steps` chain steps each masking `mask_rate` of the tokens
    head_steps: int = Field(300, ge=1)
    head_batch_size: int = Field(16, ge=1)
    head_lr: float = Field(1e-3, gt=0)
    head_mask_rate: float = Field(0.15, gt=0, lt=1)
    train_layers: int = Field(0, ge=0)  # the encoder's top layers trained with the head (on a copy)
    steps: int = Field(3, ge=1)
    mask_rate: float = Field(0.15, gt=0, le=1)
    temperature: float = Field(1.0, gt=0)
    # what the plugin draws before training (starts, generation; L2A's held-out split); unset: the run's seed. Fixed,
    # students of several seeds share one generation (and, with `cache`, it is made once)
    seed: int | None = None
    cache: bool = True  # keep the candidates in the cache folder and read them back when a run would remake them


# the options a generation's result depends on, besides its starts, seed and maximum length (augment/cache.py)
GENERATION_OPTIONS = ("type", "generator", "n", "p", "top_k", "head_steps", "head_batch_size", "head_lr",
                      "head_mask_rate", "train_layers", "steps", "mask_rate", "temperature")


@PLUGINS.register("augment")
class Augment(Plugin):
    Options = GeneratorOptions

    def setup(self, ctx) -> None:
        self.check(ctx)
        target = ctx.sources["task"]
        self.teacher = ctx.teachers[0]
        self.tokenizer = target.tokenizers.teachers[0] or target.tokenizers.student
        self.seed = ctx.recipe.seed if self.options.seed is None else self.options.seed
        self.prepare_target(ctx)
        rng = random.Random(self.seed)
        target_starts = starts_of(ctx.sources["task"], "target", None, rng) if self.options.from_target else []
        source_starts = [s for name in self.options.from_sources
                         for s in starts_of(ctx.sources[name], name, self.options.source_limit, rng)]
        self.pool = ctx.sources[self.options.into]
        planned = self.options.n * (len(target_starts) + len(source_starts))
        if len(self.pool) or planned > self.pool.capacity:  # said before the generation's work, not after
            raise AlembertError(f"sources.{self.options.into}: holds {len(self.pool)} examples and capacity "
                                f"{self.pool.capacity}, but {planned} are to be generated into it (one plugin a "
                                "generated source, with room for all)")
        self.candidates, self.info, self.views = self.generated(ctx, target_starts, source_starts)
        domain = target.examples[0].domain if len(target) else None
        self.pool.add([Example(c.text_a, c.text_b, None, domain) for c in self.candidates])
        self.pool.seal()  # all it will hold: the teacher's outputs on it may be cached like any source's
        self.probs = self.views["probs"]
        self.after_generation(ctx)

    def generated(self, ctx, target_starts, source_starts) -> tuple[list, dict, dict]:
        """The candidates, the generation's record and the teacher's views of them: read back from the cache folder
        when an earlier run made them from the same inputs, else made now (and kept there)."""
        max_length, o = ctx.recipe.max_length, self.options
        root = (Path(ctx.recipe.cache_dir) if ctx.recipe.cache_dir else default_cache_root()) / "generated"
        key = generation_key(self.teacher, self.tokenizer, o.model_dump(include=set(GENERATION_OPTIONS)),
                             target_starts + source_starts, self.seed, max_length) if o.cache else None
        with making(root, key) if key else contextlib.nullcontext():
            found = load_generation(root, key) if key else None
            if found is not None:
                candidates, info, views = found
                return candidates, {**info, "reused": True}, views
            candidates, info = generate(o, self.teacher, self.tokenizer, target_starts, source_starts, self.seed,
                                        max_length)
            start = time.perf_counter()
            views = self.teacher_views(candidates, target_starts, source_starts, max_length)
            info.update(teacher_seconds=round(time.perf_counter() - start, 2), reused=False)
            if key:
                save_generation(root, key, candidates, info, views)
            return candidates, info, views

    def teacher_views(self, candidates, target_starts, source_starts, max_length) -> dict:
        """What the teacher makes of the candidates: probabilities (the soft labels augmented.jsonl shows) and
        mean-pooled last hidden states."""
        probs, pooled = teacher_view(self.teacher, self.tokenizer, [(c.text_a, c.text_b) for c in candidates],
                                     max_length)
        return {"probs": probs, "pooled": pooled}

    def check(self, ctx) -> None:
        """Refuse, in one line and before any work, what the plugin cannot do."""
        name, o = self.options.type, self.options
        if not ctx.teachers:
            raise AlembertError(f"plugins: {name} needs a teacher (it labels the generated examples)")
        if ctx.task.kind != SEQUENCE or ctx.task.is_regression:
            what = "regression" if ctx.task.is_regression else ctx.task.kind
            raise AlembertError(f"plugins: {name} generates examples for classifying a text or a text pair, not for "
                                f"task {ctx.task.name} ({what})")
        pool = ctx.sources.get(o.into)
        if pool is None or not hasattr(pool, "add"):
            raise AlembertError(f"plugins: {name}.into: '{o.into}' is not a generated source (add sources: "
                                f"{{{o.into}: {{type: generated}}}})")
        if not any(o.into in stage.sources for stage in ctx.recipe.stages):
            raise AlembertError(f"plugins: {name}.into: no stage trains on '{o.into}' (add it to a stage's data, "
                                f"e.g. data: task+{o.into})")
        for source in o.from_sources:
            if source not in ctx.sources or source == "task" or hasattr(ctx.sources[source], "add"):
                known = [n for n, s in ctx.sources.items() if n != "task" and not hasattr(s, "add")]
                raise AlembertError(f"plugins: {name}.from_sources: no task or text source named '{source}' "
                                    f"(known: {', '.join(known) or 'none; add one under sources'})")
        if not o.from_target and not o.from_sources:
            raise AlembertError(f"plugins: {name}: from_target is false and from_sources is empty: nothing to "
                                "generate from")

    def prepare_target(self, ctx) -> None:
        """A hook for L2A, which holds part of the target's training data out of training."""

    def after_generation(self, ctx) -> None:
        """A hook for L2A, which builds its selector's static features here."""

    def rows(self) -> list[dict]:
        """Per generated example, what augmented.jsonl adds to its text and origin: the teacher's probabilities."""
        return [{"teacher_probs": [round(float(p), 4) for p in row]} for row in self.probs]

    def report(self) -> dict:
        return {self.options.type: {"generation": self.info}} if hasattr(self, "info") else {}

    def save(self, run_directory) -> None:
        if not hasattr(self, "candidates"):
            return
        write_jsonl(Path(run_directory) / "augmented.jsonl", self.candidates, self.rows())
        (Path(run_directory) / "generation.json").write_text(json.dumps(self.info, indent=1) + "\n")
