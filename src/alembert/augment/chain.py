"""Markov-chain refill (Learning to Augment's generator as methods.md §2 reconstructs it): start from a sentence,
then repeatedly mask a random share of its tokens and sample new tokens for them from a masked LM. Each step is
a corrupt-and-reconstruct transition, whose chain tends to the denoiser's data distribution; a masked LM trained on
the target's text pulls source sentences towards the target domain. The result is a real token sequence, decoded
to text so every tokenizer can read it."""
from __future__ import annotations

import functools

import torch

from alembert.augment.mlm import MaskedLM, choose_masks, encode_texts, maskable


@functools.lru_cache(maxsize=8)
def _never(tokenizer) -> tuple[int, ...]:
    """Ids never sampled: special tokens and placeholders such as [unused7] or <unk>."""
    placeholders = [i for token, i in tokenizer.get_vocab().items() if len(token) > 2
                    and ((token[0], token[-1]) in (("[", "]"), ("<", ">")))]
    return tuple(sorted(set(tokenizer.all_special_ids) | set(placeholders)))


@torch.no_grad()
def refill(lm: MaskedLM, tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor, masks: torch.Tensor,
           temperature: float, generator: torch.Generator) -> torch.Tensor:
    """`input_ids` with the positions in `masks` replaced by tokens sampled from the masked LM given the rest
    (special and placeholder tokens never sampled); every other position is left as it was."""
    inputs = input_ids.masked_fill(masks, tokenizer.mask_token_id)
    logits = lm.logits(inputs, attention_mask, masks).float() / temperature
    logits[:, list(_never(tokenizer))] = float("-inf")
    probs = logits.softmax(-1).cpu()
    sampled = torch.multinomial(probs, 1, generator=generator).flatten() if len(probs) else probs.new_zeros(0)
    out = input_ids.clone()
    out[masks] = sampled.to(out)
    return out


def run_chain(lm: MaskedLM, tokenizer, texts: list[str], steps: int, mask_rate: float, temperature: float,
              max_length: int, generator: torch.Generator, batch_size: int = 32) -> tuple[list[str], list[float]]:
    """Each text after `steps` mask-and-refill transitions, and the share of its tokens that differ from the
    start (truncated to `max_length` tokens first)."""
    device = next(lm.parameters()).device
    out, changed = [], []
    for start in range(0, len(texts), batch_size):
        ids, mask = encode_texts(tokenizer, texts[start:start + batch_size], max_length, device)
        candidates = maskable(ids, mask, tokenizer)
        current = ids
        for _ in range(steps):
            masks = choose_masks(candidates, mask_rate, generator)
            current = refill(lm, tokenizer, current, mask, masks, temperature, generator)
        differ = ((current != ids) & candidates).sum(1).float() / candidates.sum(1).clamp_min(1)
        changed += differ.tolist()
        out += [tokenizer.decode(row[keep], skip_special_tokens=True).strip()
                for row, keep in zip(current.cpu(), candidates.cpu())]
    return out, changed
