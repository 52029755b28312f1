"""What the masked-LM generator's time goes to, on a teacher the data-scarce benchmark uses: the Markov chain with the
head's vocabulary-wide output layer at the masked positions only (as augment/mlm.py does) against the head over every
position, with the texts each makes; and the encoder's forward in fp32 against bf16 autocast, with how far bf16 moves
its last hidden states. Variants alternate, one thread, so the machine's noise falls on each alike.

    .venv/bin/python benchmarks/generator_speed.py \
        --model benchmarks/runs/data_scarce/kitchen-100-teacher-target/student
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from alembert.augment.chain import run_chain
from alembert.augment.mlm import MaskedLM, train_head
from alembert.tasks import get_task

ROOT = Path(__file__).resolve().parent


class WholeHeadLM(MaskedLM):
    """The head over every position, then the asked-for ones picked out: the generator before 03b190c."""

    def logits(self, input_ids, attention_mask, at, grad=False):
        with torch.no_grad():
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  output_hidden_states=True).hidden_states[-1]
            return self.head(hidden)[at]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def chains(lm, tokenizer, texts, args) -> tuple[float, list[str]]:
    seconds, (out, _) = timed(lambda: run_chain(lm, tokenizer, texts, args.steps, 0.15, 1.0, args.max_length,
                                                torch.Generator().manual_seed(args.seed)))
    return seconds, out


@torch.no_grad()
def last_hidden(model, enc, bf16: bool, batch_size: int = 16) -> torch.Tensor:
    parts = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(enc["input_ids"]), batch_size):
            out = model(input_ids=enc["input_ids"][i:i + batch_size],
                        attention_mask=enc["attention_mask"][i:i + batch_size], output_hidden_states=True)
            parts.append(out.hidden_states[-1].float())
    return torch.cat(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved classifier checkpoint (the teacher)")
    parser.add_argument("--task", default="amazon-kitchen", help="whose training sentences the chains start from")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--texts", type=int, default=48)
    parser.add_argument("--steps", type=int, default=3, help="chain steps")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the variants")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    texts = [e.text_a for e in get_task(args.task, args.data_dir).load("train", limit=args.texts, seed=42)]
    lm, _ = train_head(model, tokenizer, texts, steps=4, batch_size=8, max_length=args.max_length, seed=1)
    variants = {"head at masked positions": lm, "head over every position": WholeHeadLM(lm.encoder, lm.head)}
    enc = tokenizer(texts, truncation=True, max_length=args.max_length, padding=True, return_tensors="pt")
    chain_s, outputs, forward_s, hidden = {n: [] for n in variants}, {}, {"fp32": [], "bf16": []}, {}
    for _ in range(args.rounds):
        for name, variant in variants.items():
            seconds, outputs[name] = chains(variant, tokenizer, texts, args)
            chain_s[name].append(seconds)
        for name in forward_s:
            seconds, hidden[name] = timed(lambda: last_hidden(model, enc, name == "bf16"))
            forward_s[name].append(seconds)
    real = enc["attention_mask"].bool()
    cosine = torch.nn.functional.cosine_similarity(hidden["fp32"][real], hidden["bf16"][real], dim=-1)
    first, second = outputs.values()
    result = {
        "model": args.model, "task": args.task, "texts": len(texts), "steps": args.steps, "rounds": args.rounds,
        "chain_seconds": chain_s, "same_texts": sum(a == b for a, b in zip(first, second)),
        "forward_seconds": forward_s, "bf16_speedup": min(forward_s["fp32"]) / min(forward_s["bf16"]),
        "bf16_token_cosine": {"min": float(cosine.min()), "mean": float(cosine.mean())}}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / "generator_speed.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    table = ["| what | variant | best of rounds (s) |", "|---|---|---:|"]
    table += [f"| {len(texts)} chains of {args.steps} steps | {n} | {min(s):.1f} |" for n, s in chain_s.items()]
    table += [f"| encoder forward, {len(texts)} texts | {n} | {min(s):.1f} |" for n, s in forward_s.items()]
    table += ["", f"Same chain texts: {result['same_texts']} of {len(texts)}. bf16 against fp32: "
              f"{result['bf16_speedup']:.2f}× faster,", f"last hidden states' cosine per token min {cosine.min():.4f},"
              f" mean {cosine.mean():.5f}."]
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
