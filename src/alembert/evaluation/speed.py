"""Size and latency of a model, measured the same way for every model in a report."""
from __future__ import annotations

import time

import torch


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def latency_ms(model, batch_size: int, seq_len: int, repeats: int = 10, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of one forward pass on a full (unpadded) batch of random token ids."""
    model.eval()
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    ids = torch.randint(1000 if vocab > 2000 else 1, vocab, (batch_size, seq_len), device=device,
                        generator=torch.Generator(device=device).manual_seed(0))
    mask = torch.ones_like(ids)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        model(input_ids=ids, attention_mask=mask)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return float(sorted(times)[len(times) // 2])


def speed_profile(model, seq_len: int, repeats: int = 10) -> dict[str, float]:
    seq_len = min(seq_len, getattr(model.config, "max_position_embeddings", seq_len))
    return {
        "parameters": count_parameters(model),
        "latency_ms_b1": latency_ms(model, 1, seq_len, repeats=repeats * 3),
        "latency_ms_b32": latency_ms(model, 32, seq_len, repeats=repeats),
        "seq_len": seq_len,
        "threads": torch.get_num_threads(),
    }
