"""Shared by the benchmarks that run many small trainings: one job per fresh single-threaded process, several side
by side, and mean ± std cells for their tables."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_job(script: str, job: str, logs: Path) -> tuple[str, float, int]:
    """`python script --job job` in a fresh process with one thread; its output goes to logs/<job>.log."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    start = time.time()
    log = logs / f"{job.replace(':', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        code = subprocess.call([sys.executable, script, "--job", job], env=env, stdout=out, stderr=subprocess.STDOUT)
    return job, time.time() - start, code


def spread(values: list[float]) -> dict:
    """n, mean and sample standard deviation (0 for one value, None for none)."""
    return {"n": len(values), "mean": statistics.mean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def cell(row: dict, seeds: int) -> str:
    """'mean ± std', with the count when some seeds are missing; '–' when there is nothing."""
    if row["mean"] is None:
        return "–"
    text = f"{row['mean']:.1f}" + (f" ± {row['std']:.1f}" if row["n"] > 1 else "")
    return text + ("" if row["n"] == seeds else f" (n={row['n']})")
