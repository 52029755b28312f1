"""Generated examples for distillation: where they start (the target's training sentences, a source's), how they
are made (embedding-neighbour replacement, or the masked-LM Markov chain), what the teacher makes of them, and
the readable file a run writes (one JSON object a line, with the example each one came from)."""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from alembert.augment.chain import run_chain
from alembert.augment.mlm import train_head
from alembert.augment.neighbours import NeighbourReplacer
from alembert.errors import AlembertError


@dataclass
class Start:
    """A sentence a generated example starts from: its origin ('target', or a source's name) and id there."""

    origin: str
    origin_id: int
    text_a: str
    text_b: str | None = None


@dataclass
class Candidate:
    text_a: str
    text_b: str | None
    origin: str
    origin_id: int
    variant: int  # 0..n-1 among the variants of its start
    changed: float | None = None  # share of its tokens the chain changed (mlm generator)


def starts_of(dataset, origin: str, limit: int | None, rng: random.Random) -> list[Start]:
    """Up to `limit` sentences of a source or the target (a seeded sample), in memory or read from text files."""
    n = len(dataset)
    rows = sorted(rng.sample(range(n), limit)) if limit is not None and limit < n else list(range(n))
    if hasattr(dataset, "examples"):
        return [Start(origin, i, dataset.examples[i].text_a, dataset.examples[i].text_b) for i in rows]
    return [Start(origin, i, dataset.texts(range(i, i + 1))[0]) for i in rows]


def by_neighbours(starts: list[Start], n: int, replacer: NeighbourReplacer, rng: random.Random) -> list[Candidate]:
    """n variants of every start by embedding-neighbour word replacement (both sentences of a pair)."""
    return [Candidate(replacer.variant(s.text_a, rng), None if s.text_b is None else replacer.variant(s.text_b, rng),
                      s.origin, s.origin_id, v) for s in starts for v in range(n)]


def by_chain(starts: list[Start], n: int, lm, tokenizer, steps: int, mask_rate: float, temperature: float,
             max_length: int, generator: torch.Generator) -> list[Candidate]:
    """n chains from every start (single sentences: a pair's second sentence is kept as it is)."""
    texts = [s.text_a for s in starts for _ in range(n)]
    out, changed = run_chain(lm, tokenizer, texts, steps, mask_rate, temperature, max_length, generator)
    return [Candidate(text, starts[i // n].text_b, starts[i // n].origin, starts[i // n].origin_id, i % n, c)
            for i, (text, c) in enumerate(zip(out, changed))]


def generate(options, teacher, tokenizer, target: list[Start], sources: list[Start], seed: int,
             max_length: int) -> tuple[list[Candidate], dict]:
    """The candidates from target and source starts by `options.generator`, and what it took: seconds, and for
    the masked-LM generator the head's training (held-out masked loss before and after)."""
    start = time.perf_counter()
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    info: dict = {"generator": options.generator, "starts": {"target": len(target), "sources": len(sources)}}
    if options.generator == "neighbours":
        replacer = NeighbourReplacer(tokenizer, teacher.get_input_embeddings().weight, options.top_k, options.p)
        candidates = by_neighbours(target + sources, options.n, replacer, rng)
    else:
        texts = [s.text_a for s in target + sources] + [s.text_b for s in target + sources if s.text_b]
        lm, training = train_head(teacher, tokenizer, texts, options.head_steps, options.head_batch_size,
                                  options.head_lr, options.head_mask_rate, max_length, seed, options.train_layers)
        info["head"] = {"steps": training.steps, "texts": training.texts, "seconds": round(training.seconds, 2),
                        "train_layers": training.train_layers,
                        "masked_loss_before": training.loss_before, "masked_loss_after": training.loss_after}
        chain_start = time.perf_counter()
        candidates = by_chain(target + sources, options.n, lm, tokenizer, options.steps,
                              options.mask_rate, options.temperature, max_length, generator)
        info["chain_seconds"] = round(time.perf_counter() - chain_start, 2)
    candidates = [c for c in candidates if c.text_a.strip()]
    if not candidates:
        raise AlembertError("generator: every generated example came out empty (no text to start from)")
    info.update(candidates=len(candidates), seconds=round(time.perf_counter() - start, 2))
    return candidates, info


@torch.no_grad()
def teacher_view(teacher, tokenizer, pairs: list[tuple[str, str | None]], max_length: int,
                 batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's probabilities (N, C) and mean-pooled last hidden states (N, D) of texts (eval mode, fp32)."""
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    probs, pooled = [], []
    try:
        for i in range(0, len(pairs), batch_size):
            part = pairs[i:i + batch_size]
            second = [b for _, b in part] if part[0][1] is not None else None
            enc = tokenizer([a for a, _ in part], second, truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            out = teacher(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                          output_hidden_states=True)
            mask = enc["attention_mask"].to(device)[..., None].float()
            pooled.append(((out.hidden_states[-1].float() * mask).sum(1) / mask.sum(1)).cpu())
            probs.append(out.logits.float().softmax(-1).cpu())
    finally:
        teacher.train(was_training)
    return torch.cat(probs), torch.cat(pooled)


def write_jsonl(path: Path, candidates: list[Candidate], extra: list[dict] | None = None) -> None:
    """One generated example a line: its pool id, text, origin and variant, and any per-example `extra` fields."""
    with open(path, "w", encoding="utf-8") as handle:
        for i, c in enumerate(candidates):
            row = {"id": i, **{k: v for k, v in asdict(c).items() if v is not None}, **(extra[i] if extra else {})}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

