"""Shared by the benchmarks that run many small trainings: one job per fresh single-threaded process, several side
by side, and mean ± std cells for their tables."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_job(script: str, job: str, logs: Path, threads: int = 1) -> tuple[str, float, int]:
    """`python script --job job` in a fresh process with `threads` threads; its output goes to logs/<job>.log."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    start = time.time()
    log = logs / f"{job.replace(':', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        code = subprocess.call([sys.executable, script, "--job", job], env=env, stdout=out, stderr=subprocess.STDOUT)
    return job, time.time() - start, code


def run_all(script: str, logs: Path, workers: int, *job_lists: list[str], threads: int = 1) -> None:
    """Each list's jobs, `workers` at a time, one list after the other (e.g. teachers before their students)."""
    start = time.time()
    with ThreadPoolExecutor(workers) as pool:
        for jobs in job_lists:
            for job, seconds, code in pool.map(lambda job: run_job(script, job, logs, threads), jobs):
                print(f"[{time.time() - start:.0f}s] {job} exit {code} in {seconds:.0f}s", flush=True)


def write_results(results_dir: Path, name: str, settings: dict, results: dict, table: str) -> None:
    """<name>.json (settings and results) and <name>.md (the table) under results_dir."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2)
                                              + "\n")
    (results_dir / f"{name}.md").write_text(table + "\n")


def read_ledger(path: Path) -> dict:
    """A benchmark's committed ledger of finished runs ({} before the first): what a table needs from runs another
    machine trained, so a lost machine loses no finished run."""
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded(ledger: dict, name: str, report: Path, read) -> dict | None:
    """What a table needs of the finished run `name`: `read(report)` of its report.json here (and kept in the
    ledger), else the ledger's record (a run another machine finished); None if neither."""
    if report.is_file():
        ledger[name] = read(json.loads(report.read_text()))
    return ledger.get(name)


def write_ledger(path: Path, ledger: dict) -> None:
    from alembert.files import write_text_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(ledger, indent=1, sort_keys=True) + "\n")  # never half a ledger


def spread(values: list[float]) -> dict:
    """n, mean and sample standard deviation (0 for one value, None for none)."""
    return {"n": len(values), "mean": statistics.mean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def paired(differences: list[float]) -> dict:
    """Per-seed paired differences A - B: their spread, the differences themselves and how many favour A."""
    return {**spread(differences), "differences": differences, "wins": sum(d > 0 for d in differences)}


def undecided(seeds: int) -> str | None:
    """The verdict while a claim has fewer than the 3 seeds it needs, else None."""
    return f"undecided ({seeds} seed{'s' * (seeds != 1)})" if seeds < 3 else None


def beats(values: list[float], others: list[float] | None = None) -> str:
    """The verdict on "A beats B": given per-seed paired differences A - B, a one-sided paired t-test of their mean
    above zero; given A's values and B's (`others`), a one-sided Welch t-test of A's mean above B's. Reproduced at
    5 % with at least 3 seeds each: a positive mean within the seeds' noise is not a win."""
    from scipy.stats import ttest_1samp, ttest_ind

    pending = undecided(min(len(values), len(others or values)))
    if pending:
        return pending
    baseline = others or [0.0]
    if statistics.pstdev(values) == 0 and statistics.pstdev(baseline) == 0:  # no spread: t is undefined
        p = 0.0 if statistics.mean(values) > statistics.mean(baseline) else 1.0
    elif others is None:
        p = float(ttest_1samp(values, 0.0, alternative="greater").pvalue)
    else:
        p = float(ttest_ind(values, others, equal_var=False, alternative="greater").pvalue)
    return f"{'reproduced' if p < 0.05 else 'not reproduced'} (p = {p:.2f})"


def signed(difference: dict) -> str:
    """A paired difference's spread as '+mean ± std'."""
    return f"{difference['mean']:+.1f} ± {difference['std']:.1f}"


def cell(row: dict, seeds: int) -> str:
    """'mean ± std', with the count when some seeds are missing; '–' when there is nothing."""
    if row["mean"] is None:
        return "–"
    text = f"{row['mean']:.1f}" + (f" ± {row['std']:.1f}" if row["n"] > 1 else "")
    return text + ("" if row["n"] == seeds else f" (n={row['n']})")


def phased_parser(doc: str, methods) -> argparse.ArgumentParser:
    """The options every phased benchmark shares (phases, settings, methods, seeds, workers, --smoke,
    --summarise-only, and --job, which runs one job in its own process)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--phases", default="teachers,students")
    parser.add_argument("--settings", default=None)
    parser.add_argument("--methods", default=",".join(methods))
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    return parser
