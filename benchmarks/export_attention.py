"""Why `alembert export` exports from eager attention: the same model exported from SDPA and from eager attention,
fp32 and int8, timed side by side in ONNX Runtime at batch 1 (interleaved blocks, so noise falls on all alike).

    .venv/bin/python benchmarks/export_attention.py --model benchmarks/runs/sst2-tinybert-s42/student
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from alembert.evaluation.bench import onnx_backend, random_batch, time_backend
from alembert.export import export_fp32, input_names, load_checkpoint, quantize_int8

ROOT = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved classifier checkpoint")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved blocks of --repeats runs per variant")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    model, _ = load_checkpoint(args.model)
    names = input_names(model)
    with tempfile.TemporaryDirectory() as tmp:
        backends = {}
        for kernel in ("sdpa", "eager"):
            fp32, int8 = Path(tmp) / f"{kernel}.onnx", Path(tmp) / f"{kernel}.int8.onnx"
            export_fp32(model, names, fp32, opset=18, attention=kernel)
            quantize_int8(fp32, int8)
            for name, path in ((f"{kernel} fp32", fp32), (f"{kernel} int8", int8)):
                backends[name] = onnx_backend(name, path, args.threads)
        rows = []
        for seq_len in args.seq_lens:
            batch = random_batch(model.config.vocab_size, 1, seq_len)
            times = {name: [] for name in backends}
            for _ in range(args.rounds):  # one block per variant per round: ORT's pool threads settle in a block
                for name, backend in backends.items():
                    times[name] += time_backend(backend, batch, warmup=5, repeats=args.repeats)
            rows += [{"variant": name, "seq_len": seq_len, "p50_ms": statistics.median(t)} for name, t in times.items()]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / "export_attention.json"
    out.write_text(json.dumps({"model": args.model, "threads": args.threads, "rounds": args.rounds,
                               "repeats": args.repeats, "rows": rows}, indent=1))
    table = ["| exported from | seq | p50 batch 1 (ms) |", "|---|---:|---:|"]
    table += [f"| {r['variant']} | {r['seq_len']} | {r['p50_ms']:.2f} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
