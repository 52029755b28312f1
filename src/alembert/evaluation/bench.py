"""Latency, throughput and task quality of models on several inference backends, measured in one process.

Every (model, backend, sequence length, batch size) is timed the same way: warm-up runs, then timed runs on one
full batch of seeded random token ids without padding. Batch 1 is the latency case, larger batches the
throughput case. Torch and ONNX Runtime get the same number of threads, so the backends compare like with like.
`interleaved`: every (model, backend) is timed in the same rounds, each round running each once, and each row
gains its speed-up over the first (model, backend) with its spread (evaluation/speed.py), a ratio that survives
a busy machine; all the models are then held in memory at once.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from alembert.errors import AlembertError
from alembert.evaluation.scoring import task_length
from alembert.evaluation.speed import count_parameters
from alembert.models.heads import head_logits
from alembert.tasks.kinds import TOKENS

BACKENDS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
# Defaults sized for a 2-layer MiniLM student on 2 CPU cores; a batch of 32 costs ~30 batches of 1.
WARMUP_B1, WARMUP_LARGE = 5, 2
REPEATS_B1, REPEATS_LARGE = 30, 10


@dataclass
class Backend:
    """One way of running a model: `prepare` turns torch inputs into what `run` takes; `run` returns logits."""

    name: str
    device: str
    file_bytes: int
    prepare: Callable[[dict[str, torch.Tensor]], object]
    run: Callable[[object], np.ndarray]
    synchronize: Callable[[], None] = lambda: None

    def runner(self, inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
        """One timed run on `inputs`, prepared once here, outside any clock."""
        prepared = self.prepare(inputs)
        return lambda: (self.run(prepared), self.synchronize())


def torch_backend(model, names: list[str], bf16: bool, file_bytes: int) -> Backend:
    device = next(model.parameters()).device

    def prepare(inputs):
        return {k: inputs[k].to(device) for k in names}

    @torch.no_grad()
    def run(prepared):
        # bf16 by autocast: fp32 weights, matmuls in bf16 (what the `precision: bf16` training recipe uses)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            return head_logits(model(**prepared)).float().cpu().numpy()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return Backend("torch-bf16" if bf16 else "torch-fp32", device.type, file_bytes, prepare, run, sync)


def onnx_backend(name: str, path: Path, threads: int) -> Backend:
    from alembert.onnx_check import as_logits, make_session

    session = make_session(path, threads)
    wanted = [i.name for i in session.get_inputs()]

    def prepare(inputs):
        return {k: inputs[k].cpu().numpy().astype(np.int64) for k in wanted}

    def run(feed):  # the head's outputs as one array, as torch_backend gives them (models/heads.py)
        return as_logits(session.run(None, feed))

    return Backend(name, "cpu", path.stat().st_size, prepare, run)


def random_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full batch of seeded random ids, no padding (the ids skip the special tokens at the vocabulary start)."""
    low = 1000 if vocab_size > 2000 else 1
    ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def time_backend(backend: Backend, inputs: dict[str, torch.Tensor], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each timed run; input preparation is outside the clock."""
    run = backend.runner(inputs)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        run()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return times


def summarise_times(times: list[float], batch_size: int) -> dict[str, float]:
    p50, p95 = np.percentile(times, [50, 95])
    return {"latency_ms_p50": float(p50), "latency_ms_p95": float(p95),
            "throughput": float(batch_size * 1000.0 / p50)}  # examples per second at the median


def machine_info() -> dict:
    import onnxruntime

    cpu = platform.processor() or ""
    try:  # platform.processor() is often empty on Linux; /proc/cpuinfo names the model
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name")) or cpu
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _model_label(path: Path, taken: set[str]) -> str:
    """The folder name; a run's `student/` folder is named after its run."""
    label = path.parent.name if path.name == "student" and path.parent.name else path.name
    return label if label not in taken else str(path)


def _weights_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin"))


def _onnx_files(model_dir: Path, int8: bool, scratch: Path) -> tuple[Path, dict | None]:
    """<model>/onnx/ when it already holds what is needed, else a fresh, checked export into `scratch`."""
    from alembert.export import INT8_FILE, MODEL_FILE, export_onnx

    saved = model_dir / "onnx"
    if (saved / MODEL_FILE).is_file() and (not int8 or (saved / INT8_FILE).is_file()):
        return saved, None
    info = export_onnx(model_dir, scratch, int8=int8)
    return scratch, info


def _validate(seq_lens, batch_sizes, backends, threads, warmup, repeats) -> None:
    for field, values in (("seq_lens", seq_lens), ("batch_sizes", batch_sizes)):
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise AlembertError(f"bench {field}: expected positive integers, got {list(values)}")
    unknown = [b for b in backends if b not in BACKENDS]
    if not backends or unknown:
        raise AlembertError(f"bench backends: unknown {unknown or 'none given'} (expected some of "
                            f"{', '.join(BACKENDS)})")
    for field, value, least in (("threads", threads, 1), ("warmup", warmup, 0), ("repeats", repeats, 1)):
        if value is not None and (not isinstance(value, int) or value < least):
            raise AlembertError(f"bench {field}: expected an integer >= {least}, got {value!r}")


def _task_data(task, tokenizer, limit: int | None, max_length: int):
    from alembert.data.encoded import encode_examples

    return encode_examples(task.load("dev", limit), tokenizer, max_length)


def backend_metrics(backend: Backend, data, task, batch_size: int = 64) -> dict[str, float]:
    """The task metrics of one backend on encoded (padded) dev batches."""
    from alembert.evaluation.scoring import score_with

    return score_with(lambda batch: backend.run(backend.prepare(batch)), data, task, batch_size)


def bench(models: list[str | os.PathLike], seq_lens=(64, 128), batch_sizes=(1, 32), backends=BACKENDS,
          threads: int | None = None, warmup: int | None = None, repeats: int | None = None,
          task: str | dict | None = None, data_dir: str | None = None, limit: int | None = None,
          seed: int = 0, names: list[str] | None = None, log: Callable[[str], None] | None = None,
          interleaved: bool = False) -> dict:
    """Time every model x backend x sequence length x batch size; with `task`, score each (model, backend) on
    dev. Warm-up/repeats default to 5/30 at batch 1 and 2/10 at larger batches (with `interleaved`, the repeats are
    rounds); `threads` defaults to torch's current count and applies to torch and ONNX Runtime alike. `names`
    labels the models (default: their folder names)."""
    from alembert.export import check_checkpoint_dir, load_checkpoint

    seq_lens, batch_sizes, backends = list(seq_lens), list(batch_sizes), list(dict.fromkeys(backends))
    _validate(seq_lens, batch_sizes, backends, threads, warmup, repeats)
    if not models:
        raise AlembertError("bench models: none given (expected checkpoint directories)")
    for model_dir in models:  # every model is checked before the first one is timed
        check_checkpoint_dir(model_dir)
    if names is not None and (len(names) != len(models) or len(set(names)) != len(names)):
        raise AlembertError(f"bench names: expected {len(models)} distinct names, one per model, got {names}")
    task_obj = None
    if task is not None:
        from alembert.tasks import get_task

        task_obj = get_task(task, data_dir)
    log = log or (lambda message: None)
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {"machine": machine_info(), "threads": threads, "torch_device": device.type, "onnx_device": "cpu",
              "settings": {"seq_lens": seq_lens, "batch_sizes": batch_sizes, "backends": backends,
                           "warmup": warmup, "repeats": repeats, "seed": seed, "interleaved": interleaved,
                           "defaults": {"warmup": [WARMUP_B1, WARMUP_LARGE], "repeats": [REPEATS_B1, REPEATS_LARGE]}},
              "task": None, "models": [], "rows": []}
    labels: set[str] = set()
    held = []  # interleaved: every (entry, backend, vocabulary, longest sequence), timed together at the end
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="alembert-bench-") as scratch:
            for index, model_dir in enumerate(map(Path, models)):
                model, tokenizer = load_checkpoint(model_dir, task_obj.num_labels if task_obj else None, task_obj)
                model.to(device)
                label = names[index] if names else _model_label(model_dir, labels)
                labels.add(label)
                entry = {"name": label, "path": str(model_dir), "parameters": count_parameters(model),
                         "files": {}, "onnx_export": None, "metrics": {}}
                built = _backends(model, model_dir, backends, threads, Path(scratch) / str(index), entry)
                max_len = min(max(seq_lens), getattr(model.config, "max_position_embeddings", max(seq_lens)))
                if task_obj and task_obj.kind == TOKENS:  # sentences are read whole: up to the model's limit
                    max_len = task_length(task_obj, model, None)
                data = _task_data(task_obj, tokenizer, limit, max_len) if task_obj else None
                if task_obj and result["task"] is None:
                    result["task"] = {"name": task_obj.name, "main_metric": task_obj.main_metric, "split": "dev",
                                      "examples": len(data), "limit": limit, "max_length": max_len}
                positions = getattr(model.config, "max_position_embeddings", max(seq_lens))
                for backend in built:
                    if data is not None:
                        log(f"{label} {backend.name}: scoring {len(data)} dev examples")
                        entry["metrics"][backend.name] = backend_metrics(backend, data, task_obj)
                    if interleaved:
                        held.append((entry, backend, model.config.vocab_size, positions))
                        continue
                    for seq in (min(seq_len, positions) for seq_len in seq_lens):
                        for batch_size in batch_sizes:
                            log(f"{label} {backend.name}: seq {seq}, batch {batch_size}")
                            warm, reps = _counts(batch_size, warmup, repeats)
                            inputs = random_batch(model.config.vocab_size, batch_size, seq, seed)
                            result["rows"].append(_row(entry, backend, seq, batch_size, warm,
                                                       time_backend(backend, inputs, warm, reps), task_obj))
                result["models"].append(entry)
                del built, model
            for seq_len in seq_lens if held else ():
                for batch_size in batch_sizes:
                    log(f"all models, interleaved: seq {seq_len}, batch {batch_size}")
                    result["rows"] += _interleaved_rows(held, seq_len, batch_size, warmup, repeats, seed, task_obj)
    finally:
        torch.set_num_threads(previous_threads)
    return result


def _backends(model, model_dir: Path, backends: list[str], threads: int, scratch: Path, entry: dict):
    from alembert.export import INT8_FILE, MODEL_FILE, input_names

    names = input_names(model)
    built = []
    weights = _weights_bytes(model_dir)
    for name in backends:
        if name.startswith("torch-"):
            built.append(torch_backend(model, names, name == "torch-bf16", weights))
            entry["files"][name] = str(model_dir)
    onnx_wanted = [b for b in backends if b.startswith("onnx-")]
    if onnx_wanted:
        folder, info = _onnx_files(model_dir, "onnx-int8" in onnx_wanted, scratch)
        entry["onnx_export"] = info and {k: info[k] for k in ("fp32", "int8") if k in info}
        for name in onnx_wanted:
            path = folder / (INT8_FILE if name == "onnx-int8" else MODEL_FILE)
            built.append(onnx_backend(name, path, threads))
            entry["files"][name] = str(path) if folder != scratch else f"(temporary) {path.name}"
    order = {b: i for i, b in enumerate(backends)}
    return sorted(built, key=lambda b: order[b.name])


def speedup_cell(speedup: dict | None) -> str:
    """'6.31x (6.02-6.60)', '?' after it when the interval is too wide to trust; '1x' for the reference (None)."""
    if speedup is None:
        return "1x"
    interval = f" ({speedup['ci95'][0]:.2f}-{speedup['ci95'][1]:.2f})" if speedup["ci95"] else ""
    return f"{speedup['median']:.2f}x{interval}" + ("" if speedup["trusted"] else " ?")


def _counts(batch_size: int, warmup: int | None, repeats: int | None) -> tuple[int, int]:
    return (warmup if warmup is not None else (WARMUP_B1 if batch_size == 1 else WARMUP_LARGE),
            repeats if repeats is not None else (REPEATS_B1 if batch_size == 1 else REPEATS_LARGE))


def _interleaved_rows(held: list, seq_len: int, batch_size: int, warmup, repeats, seed: int, task) -> list[dict]:
    """Every held (model, backend) timed in the same rounds; each row's speed-up is over the first one's."""
    from alembert.evaluation.speed import interleaved_rounds, speedup

    warm, rounds = _counts(batch_size, warmup, repeats)
    runners, lengths = {}, []
    for index, (entry, backend, vocab_size, positions) in enumerate(held):
        lengths.append(min(seq_len, positions))
        runners[index] = backend.runner(random_batch(vocab_size, batch_size, lengths[-1], seed))
    times = interleaved_rounds(runners, rounds, warm)
    rows = [_row(entry, backend, length, batch_size, warm, times[i], task)
            for i, ((entry, backend, _, _), length) in enumerate(zip(held, lengths))]
    for i, row in enumerate(rows[1:], 1):
        row["speedup"] = speedup(times[0], times[i])
    return rows


def _row(entry, backend, seq_len, batch_size, warmup, times, task) -> dict:
    row = {"model": entry["name"], "backend": backend.name, "device": backend.device, "seq_len": seq_len,
           "batch_size": batch_size, "warmup": warmup, "repeats": len(times), **summarise_times(times, batch_size),
           "parameters": entry["parameters"], "file_bytes": backend.file_bytes}
    if task is not None:
        row["metric_name"] = task.main_metric
        row["metric"] = entry["metrics"][backend.name][task.main_metric]
    return row


def markdown_table(result: dict) -> str:
    """One line per row: latency percentiles, throughput, size, with a task the dev metric and, timed interleaved,
    the speed-up over the first row's model and backend (its 95 % interval; '?' where too wide to trust)."""
    metric = result["task"]["main_metric"] if result.get("task") else None
    interleaved = result["settings"].get("interleaved")
    head = "| model | backend | seq | batch | p50 ms | p95 ms | examples/s | size MB |" + (f" dev {metric} |"
                                                                                      if metric else "")
    head += " speed-up (95 % interval) |" if interleaved else ""
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if metric else "")
             + ("---:|" if interleaved else "")]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['backend']} | {r['seq_len']} | {r['batch_size']} | "
                     f"{r['latency_ms_p50']:.2f} | {r['latency_ms_p95']:.2f} | {r['throughput']:.1f} | "
                     f"{r['file_bytes'] / 1e6:.1f} |" + (f" {r['metric']:.2f} |" if metric else "")
                     + (f" {speedup_cell(r.get('speedup'))} |" if interleaved else ""))
    lines.append("")
    machine, threads = result["machine"], result["threads"]
    lines.append(f"{threads} thread{'s' if threads != 1 else ''}; torch on {result['torch_device']}, ONNX Runtime on "
                 f"{result['onnx_device']}; {machine['cpu'] or 'cpu'}, {machine['cpu_count']} cores; "
                 f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}.")
    return "\n".join(lines)
