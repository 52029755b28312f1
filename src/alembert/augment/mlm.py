"""A masked-LM generator for an encoder that ships without a masked-LM head (sentence-transformers checkpoints,
fine-tuned classifiers): BERT's head shape (dense, GELU, LayerNorm, then the output layer tied to the encoder's
input embeddings, with a bias of its own) on a copy of the encoder whose top `train_layers` layers train with it,
briefly, on masked text of the target and the sources.

Why the copy's top layers train too: a head on a frozen sentence encoder learns little more than word frequencies
(measured on all-MiniLM-L6-v2 and Amazon reviews: held-out masked loss 6.5 nats after 150 steps, against 7.9 for
the frequencies alone), so its chains drift into noise. The teacher itself is never changed."""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from alembert.errors import AlembertError
from alembert.models.layout import find_layout


class MLMHead(nn.Module):
    """Logits over the vocabulary from hidden states; the output weights are the (frozen) input embeddings, held by
    reference so they are neither trained nor saved with the head."""

    def __init__(self, embeddings: nn.Embedding, hidden_size: int):
        super().__init__()
        width = embeddings.weight.shape[1]
        self.dense, self.norm = nn.Linear(hidden_size, width), nn.LayerNorm(width)
        self.bias = nn.Parameter(torch.zeros(embeddings.weight.shape[0]))
        self._embeddings = (embeddings,)  # a tuple: not a submodule

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.gelu(self.dense(hidden.float())))
        return x @ self._embeddings[0].weight.detach().float().t() + self.bias


class MaskedLM(nn.Module):
    """An encoder (a model that returns hidden states) and its head: `logits(input_ids, attention_mask, at)`."""

    def __init__(self, encoder, head: MLMHead, encoder_trains: bool = False):
        super().__init__()
        self.encoder, self.head, self.encoder_trains = encoder, head, encoder_trains

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, at: torch.Tensor,
               grad: bool = False) -> torch.Tensor:
        """(N, V) logits at the N positions where `at` (B, L) is true: the head, a matrix over the whole vocabulary,
        reads only the positions asked for (about 15 % of its work at a 15 % mask rate)."""
        was_training = self.encoder.training
        self.encoder.eval()  # no dropout: the chain and the scores are deterministic given the masks
        try:
            with contextlib.nullcontext() if grad and self.encoder_trains else torch.no_grad():
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                      output_hidden_states=True).hidden_states[-1]
            with contextlib.nullcontext() if grad else torch.no_grad():
                return self.head(hidden[at])
        finally:
            self.encoder.train(was_training)


def generator_copy(model, train_layers: int):
    """`model` itself when nothing of the encoder trains, else a copy whose top `train_layers` layers train."""
    if train_layers == 0:
        return model
    layout = find_layout(model)
    if train_layers > layout.num_layers:
        raise AlembertError(f"generator: train_layers {train_layers} is more than the encoder's {layout.num_layers} "
                            "layers")
    encoder = copy.deepcopy(model).requires_grad_(False)
    for layer in encoder.get_submodule(layout.layers_path)[layout.num_layers - train_layers:]:
        layer.requires_grad_(True)
    return encoder


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


def masked_loss(lm: MaskedLM, tokenizer, input_ids, attention_mask, masks, grad: bool = False) -> torch.Tensor:
    inputs = input_ids.masked_fill(masks, tokenizer.mask_token_id)
    return F.cross_entropy(lm.logits(inputs, attention_mask, masks, grad), input_ids[masks])


@dataclass
class HeadTraining:
    """What training the generator took and did: the held-out masked loss before and after, per-step losses,
    seconds, the texts it read and the encoder layers that trained with the head."""

    loss_before: float
    loss_after: float
    steps: int
    seconds: float
    texts: int
    train_layers: int
    losses: list[float] = field(default_factory=list)


def train_head(model, tokenizer, texts: list[str], steps: int = 200, batch_size: int = 16, lr: float = 1e-3,
               mask_rate: float = 0.15, max_length: int = 128, seed: int = 0,
               train_layers: int = 0) -> tuple[MaskedLM, HeadTraining]:
    """A masked LM from `model`'s encoder: a new head (and a copy of the top `train_layers` layers) trained `steps`
    Adam steps on `texts` with `mask_rate` of the tokens masked; scored before and after on a fixed held-out slice
    of the texts (its own masks)."""
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
        encoder = generator_copy(model, train_layers)
        head = MLMHead(encoder.get_input_embeddings(), encoder.config.hidden_size).to(device)
        lm = MaskedLM(encoder, head, encoder_trains=encoder is not model)
    order = torch.randperm(len(texts), generator=generator).tolist()
    held = [texts[i] for i in order[:max(1, min(64, len(texts) // 10))]]
    train = [texts[i] for i in order[len(held):]] or held
    held_ids, held_mask = encode_texts(tokenizer, held, max_length, device)
    held_masks = choose_masks(maskable(held_ids, held_mask, tokenizer), mask_rate, generator)

    def held_out() -> float:
        return float(masked_loss(lm, tokenizer, held_ids, held_mask, held_masks))

    with torch.no_grad():  # start from the texts' token frequencies (add-one): the head then learns the context
        counts = torch.ones_like(head.bias)
        for i in range(0, len(train), 256):
            ids, mask = encode_texts(tokenizer, train[i:i + 256], max_length, device)
            counts.index_add_(0, ids[mask.bool()], torch.ones(int(mask.sum()), device=device))
        head.bias.copy_((counts / counts.sum()).log())
    before = held_out()
    # the head, and the copy's open layers; never the caller's model (which is the encoder when nothing else trains)
    trained = list(lm.head.parameters()) + ([p for p in encoder.parameters() if p.requires_grad]
                                            if encoder is not model else [])
    optimizer = torch.optim.Adam(trained, lr=lr)
    losses, queue = [], []
    for _ in range(steps):
        if len(queue) < batch_size:
            queue += torch.randperm(len(train), generator=generator).tolist()
        rows, queue = queue[:batch_size], queue[batch_size:]
        ids, mask = encode_texts(tokenizer, [train[i] for i in rows], max_length, device)
        masks = choose_masks(maskable(ids, mask, tokenizer), mask_rate, generator)
        loss = masked_loss(lm, tokenizer, ids, mask, masks, grad=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    lm.head.requires_grad_(False)
    if encoder is not model:
        encoder.requires_grad_(False)
    return lm, HeadTraining(before, held_out(), steps, time.perf_counter() - start, len(texts), train_layers, losses)
