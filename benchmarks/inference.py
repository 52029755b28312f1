"""Benchmark: inference latency and quality of a teacher and its student on four backends.

Both models run on torch fp32, torch bf16 (autocast), ONNX Runtime fp32 and ONNX Runtime int8 (dynamic
quantization), at sequence lengths 64 and 128 and batch sizes 1 and 32, in one process with one thread count,
each scored on the task's dev split. Target: the student on onnx-int8 at least 6x faster than the teacher on
torch fp32 at batch 1, sequence 128, with int8 losing at most 1 point of the student's fp32 task metric.

    .venv/bin/python benchmarks/inference.py --teacher outputs/sst2-teacher/student \\
        --student outputs/sst2-tinybert/student [--task sst2] [--limit N] [--output-dir benchmarks/results]

Writes inference.json, inference.md and inference_pareto.png into --output-dir.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alembert.errors import AlembertError  # noqa: E402
from alembert.evaluation.bench import BACKENDS, bench  # noqa: E402
from alembert.evaluation.pareto import collect_points, plot_pareto  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEQ_LENS, BATCH_SIZES = (64, 128), (1, 32)
BASELINE = ("teacher", "torch-fp32", 1, 128)  # model, backend, batch size, sequence length
TARGET_SPEEDUP, TARGET_MAX_LOSS = 6.0, 1.0


def _row(result: dict, model: str, backend: str, batch_size: int, seq_len: int) -> dict:
    for r in result["rows"]:
        if (r["model"], r["backend"], r["batch_size"], r["seq_len"]) == (model, backend, batch_size, seq_len):
            return r
    raise AlembertError(f"bench result: no row for {model} {backend} at batch {batch_size}, sequence {seq_len} "
                        "(a model shorter than 128 positions cannot be compared at 128)")


def target_check(result: dict) -> dict:
    """The speed-up of the int8 student over the fp32 teacher, and what int8 costs the student: its metric
    against the same student in fp32 PyTorch (the distillation gap to the teacher is reported beside it)."""
    teacher = _row(result, *BASELINE)
    student = _row(result, "student", "onnx-int8", 1, 128)
    student_fp32 = _row(result, "student", "torch-fp32", 1, 128)
    speedup = teacher["latency_ms_p50"] / student["latency_ms_p50"]
    loss = student_fp32["metric"] - student["metric"]
    return {"speedup": speedup, "metric_loss": loss, "teacher_p50_ms": teacher["latency_ms_p50"],
            "student_p50_ms": student["latency_ms_p50"], "teacher_metric": teacher["metric"],
            "student_fp32_metric": student_fp32["metric"], "student_metric": student["metric"],
            "required_speedup": TARGET_SPEEDUP, "max_metric_loss": TARGET_MAX_LOSS,
            "met": speedup >= TARGET_SPEEDUP and loss <= TARGET_MAX_LOSS}


def summarise(result: dict, target: dict) -> str:
    metric = result["task"]["main_metric"]
    baseline = _row(result, *BASELINE)["latency_ms_p50"]
    machine = result["machine"]
    lines = ["# Inference benchmark", "",
             f"Task {result['task']['name']}, dev {metric} on {result['task']['examples']} examples "
             f"(max length {result['task']['max_length']}); {result['threads']} thread"
             f"{'s' if result['threads'] != 1 else ''}; torch on "
             f"{result['torch_device']}, ONNX Runtime on {result['onnx_device']}; {machine['cpu']}, "
             f"{machine['cpu_count']} cores; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}. "
             "Latency: p50/p95 of timed runs on a full batch of random ids (no padding). Speed-up: the teacher "
             f"on torch-fp32 at batch 1, sequence 128 ({baseline:.2f} ms) over the row's batch-1 p50.", ""]
    for seq_len in result["settings"]["seq_lens"]:
        lines += [f"## Sequence length {seq_len}", "",
                  f"| model | backend | dev {metric} | p50 b1 (ms) | p95 b1 (ms) | throughput b32 (ex/s) | "
                  "speed-up b1 vs teacher torch-fp32 s128 |", "|---|---|---:|---:|---:|---:|---:|"]
        for model in ("teacher", "student"):
            for backend in result["settings"]["backends"]:
                b1, b32 = _row(result, model, backend, 1, seq_len), _row(result, model, backend, 32, seq_len)
                lines.append(f"| {model} | {backend} | {b1['metric']:.2f} | {b1['latency_ms_p50']:.2f} | "
                             f"{b1['latency_ms_p95']:.2f} | {b32['throughput']:.1f} | "
                             f"{baseline / b1['latency_ms_p50']:.2f}x |")
        lines.append("")
    lines += ["## Target", "", target_line(target), "", "![latency against quality](inference_pareto.png)", ""]
    return "\n".join(lines)


def target_line(t: dict) -> str:
    return (f"{'MET' if t['met'] else 'NOT MET'}: student onnx-int8 is {t['speedup']:.2f}x faster than the teacher "
            f"on torch-fp32 at batch 1, sequence 128 ({t['student_p50_ms']:.2f} vs {t['teacher_p50_ms']:.2f} ms; "
            f"target >= {t['required_speedup']:g}x); int8 costs the student {t['metric_loss']:.2f} points "
            f"({t['student_metric']:.2f} vs {t['student_fp32_metric']:.2f} in fp32 PyTorch; target <= "
            f"{t['max_metric_loss']:g}). The distilled student itself is {t['teacher_metric'] - t['student_fp32_metric']:.2f} "
            f"points below the teacher ({t['teacher_metric']:.2f}).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="teacher checkpoint directory")
    parser.add_argument("--student", required=True, help="student checkpoint directory")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--limit", type=int, help="score a seeded subset of this many dev examples (default: all)")
    parser.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    parser.add_argument("--output-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's count)")
    parser.add_argument("--warmup", type=int, help="warm-up runs (default: bench's, 5 at batch 1, 2 at 32)")
    parser.add_argument("--repeats", type=int, help="timed runs (default: bench's, 30 at batch 1, 10 at 32)")
    args = parser.parse_args(argv)
    out, start = Path(args.output_dir), time.time()
    try:
        out.mkdir(parents=True, exist_ok=True)
        result = bench([args.teacher, args.student], SEQ_LENS, BATCH_SIZES, BACKENDS, threads=args.threads,
                       warmup=args.warmup, repeats=args.repeats, task=args.task, data_dir=args.data_dir,
                       limit=args.limit, names=["teacher", "student"],
                       log=lambda message: print(f"[{time.time() - start:.0f}s] {message}", file=sys.stderr,
                                                 flush=True))
        target = target_check(result)
        result["target"] = target
        result["wall_seconds"] = round(time.time() - start)
        (out / "inference.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        points, metric = collect_points([out / "inference.json"], batch_size=1)
        plot_pareto(points, out / "inference_pareto.png", "latency p50 at batch 1, sequence 128 (ms)",
                    f"dev {metric}", title=f"{result['task']['name']}: teacher and student on four backends")
        table = summarise(result, target)
        (out / "inference.md").write_text(table, encoding="utf-8")
    except AlembertError as err:
        print(f"inference benchmark: error: {err}", file=sys.stderr)
        return 2
    print(table)
    print(f"results: {out / 'inference.json'}, {out / 'inference.md'}, {out / 'inference_pareto.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
