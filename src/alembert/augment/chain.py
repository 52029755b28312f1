"""Markov-chain refill (Learning to Augment's generator as methods.md §2 reconstructs it): start from a sentence,
then repeatedly mask a random share of its tokens and sample new tokens for them from a masked LM. Each step is
a corrupt-and-reconstruct transition, whose chain tends to the denoiser's data distribution; a head trained on the
target's text pulls source sentences towards the target domain. The result is a real token sequence, decoded to
text so every tokenizer can read it."""
from __future__ import annotations

import torch

from alembert.augment.mlm import MLMHead, choose_masks, encode_texts, last_hidden, maskable


@torch.no_grad()
def refill(model, head: MLMHead, tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor,
           masks: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """`input_ids` with the positions in `masks` replaced by tokens sampled from the head's distribution given
    the rest (special tokens never sampled); every other position is left as it was."""
    inputs = input_ids.masked_fill(masks, tokenizer.mask_token_id)
    logits = head(last_hidden(model, inputs, attention_mask)[masks]) / temperature
    logits[:, sorted(set(tokenizer.all_special_ids))] = float("-inf")
    probs = logits.softmax(-1).cpu()
    sampled = torch.multinomial(probs, 1, generator=generator).flatten() if len(probs) else probs.new_zeros(0)
    out = input_ids.clone()
    out[masks] = sampled.to(out)
    return out


def run_chain(model, head: MLMHead, tokenizer, texts: list[str], steps: int, mask_rate: float, temperature: float,
              max_length: int, generator: torch.Generator, batch_size: int = 32) -> tuple[list[str], list[float]]:
    """Each text after `steps` mask-and-refill transitions, and the share of its tokens that differ from the
    start (truncated to `max_length` tokens first)."""
    device = next(model.parameters()).device
    out, changed = [], []
    for start in range(0, len(texts), batch_size):
        ids, mask = encode_texts(tokenizer, texts[start:start + batch_size], max_length, device)
        candidates = maskable(ids, mask, tokenizer)
        current = ids
        for _ in range(steps):
            masks = choose_masks(candidates, mask_rate, generator)
            current = refill(model, head, tokenizer, current, mask, masks, temperature, generator)
        differ = ((current != ids) & candidates).sum(1).float() / candidates.sum(1).clamp_min(1)
        changed += differ.tolist()
        out += [tokenizer.decode(row[keep], skip_special_tokens=True).strip()
                for row, keep in zip(current.cpu(), candidates.cpu())]
    return out, changed
