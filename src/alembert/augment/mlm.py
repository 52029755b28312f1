"""A masked-LM head for an encoder that ships without one (sentence-transformers checkpoints, fine-tuned
classifiers): BERT's head shape (dense, GELU, LayerNorm, then the output layer tied to the encoder's input
embeddings, with a bias of its own), trained briefly on masked text while the encoder stays frozen.

The encoder is frozen so the generator is the teacher's own encoder (its vocabulary and domain knowledge) and the
head is cheap: only its dense layer, LayerNorm and bias train, and the encoder runs without gradient."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from alembert.errors import AlembertError


class MLMHead(nn.Module):
    """Logits over the vocabulary from the encoder's last hidden states; the output weights are the (frozen)
    input embeddings, held by reference so they are neither trained nor saved with the head."""

    def __init__(self, embeddings: nn.Embedding, hidden_size: int):
        super().__init__()
        width = embeddings.weight.shape[1]
        self.dense, self.norm = nn.Linear(hidden_size, width), nn.LayerNorm(width)
        self.bias = nn.Parameter(torch.zeros(embeddings.weight.shape[0]))
        self._embeddings = (embeddings,)  # a tuple: not a submodule

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.gelu(self.dense(hidden.float())))
        return x @ self._embeddings[0].weight.detach().float().t() + self.bias


@torch.no_grad()
def last_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden states, in eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    try:
        return model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]
    finally:
        model.train(was_training)


def maskable(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer) -> torch.Tensor:
    """(B, L) bool: the real tokens that are not special ([CLS], [SEP], padding)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


def choose_masks(candidates: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """(B, L) bool: each candidate position with probability `rate`, and at least one per row that has any."""
    draw = torch.rand(candidates.shape, generator=generator).to(candidates.device)
    masks = (draw < rate) & candidates
    for row in torch.nonzero(~masks.any(1) & candidates.any(1)).flatten().tolist():
        options = torch.nonzero(candidates[row]).flatten()
        pick = int(torch.randint(len(options), (1,), generator=generator))
        masks[row, options[pick]] = True
    return masks


def encode_texts(tokenizer, texts: list[str], max_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def masked_loss(model, head: MLMHead, tokenizer, input_ids, attention_mask, masks) -> torch.Tensor:
    inputs = input_ids.masked_fill(masks, tokenizer.mask_token_id)
    logits = head(last_hidden(model, inputs, attention_mask)[masks])
    return F.cross_entropy(logits, input_ids[masks])


@dataclass
class HeadTraining:
    """What training the head took and did: the held-out masked loss before and after, per-step losses, time."""

    loss_before: float
    loss_after: float
    steps: int
    seconds: float
    texts: int
    losses: list[float] = field(default_factory=list)


def train_head(model, tokenizer, texts: list[str], steps: int = 200, batch_size: int = 16, lr: float = 1e-3,
               mask_rate: float = 0.15, max_length: int = 128, seed: int = 0) -> tuple[MLMHead, HeadTraining]:
    """A head on `model`'s frozen encoder, trained `steps` Adam steps on `texts` with `mask_rate` of the tokens
    masked; scored before and after on a fixed held-out slice of the texts (its own masks)."""
    if tokenizer.mask_token_id is None:
        raise AlembertError("generator: the teacher's tokenizer has no mask token, so a masked-LM head cannot be "
                            "trained on it")
    if len(texts) < 2:
        raise AlembertError(f"generator: {len(texts)} text(s) to train the masked-LM head on; expected at least 2")
    start = time.perf_counter()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the head's initial weights, without touching the run's streams
        torch.manual_seed(seed)
        head = MLMHead(model.get_input_embeddings(), model.config.hidden_size).to(device)
    order = torch.randperm(len(texts), generator=generator).tolist()
    held = [texts[i] for i in order[:max(1, min(64, len(texts) // 10))]]
    train = [texts[i] for i in order[len(held):]] or held
    held_ids, held_mask = encode_texts(tokenizer, held, max_length, device)
    held_masks = choose_masks(maskable(held_ids, held_mask, tokenizer), mask_rate, generator)

    def held_out() -> float:
        with torch.no_grad():
            return float(masked_loss(model, head, tokenizer, held_ids, held_mask, held_masks))

    before = held_out()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    losses, queue = [], []
    for _ in range(steps):
        if len(queue) < batch_size:
            queue += torch.randperm(len(train), generator=generator).tolist()
        rows, queue = queue[:batch_size], queue[batch_size:]
        ids, mask = encode_texts(tokenizer, [train[i] for i in rows], max_length, device)
        masks = choose_masks(maskable(ids, mask, tokenizer), mask_rate, generator)
        loss = masked_loss(model, head, tokenizer, ids, mask, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    head.eval()
    return head, HeadTraining(before, held_out(), steps, time.perf_counter() - start, len(texts), losses)
