"""Size and latency of a model, measured the same way for every model in a report."""
from __future__ import annotations

import torch


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def latency_ms(model, batch_size: int, seq_len: int, repeats: int = 10, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of one forward pass on a full (unpadded) batch of random token ids, timed
    as `alembert bench` times its torch-fp32 backend."""
    from alembert.evaluation.bench import random_batch, time_backend, torch_backend
    from alembert.export import input_names

    model.eval()
    backend = torch_backend(model, input_names(model), bf16=False, file_bytes=0)
    times = time_backend(backend, random_batch(model.config.vocab_size, batch_size, seq_len), warmup, repeats)
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
