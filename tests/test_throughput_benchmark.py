"""The training-throughput benchmark's table, built from a synthetic results file (no models, no data)."""
import json
import subprocess
import sys
from conftest import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "training_throughput.py"


def _results() -> dict:
    rates = {"textbrewer": [10.0, 11.0, 12.0], "plain": [10.5, 11.0, 11.5], "alembert-live": [14.0, 13.0, 15.0],
             "alembert-cached": [25.0, 24.0, 26.0]}
    trials = [{"system": s, "mode": "steps", "round": r, "examples_per_s": v, "examples": 960, "train_seconds": 960 / v,
               "peak_rss_mib": 1000.0, "checkpoint_save_seconds": 0.1,
               "teacher_cache": {"enabled": s == "alembert-cached"}}
              for s, values in rates.items() for r, v in enumerate(values)]
    full = [{"system": s, "mode": "full", "examples_per_s": rates[s][0], "accuracy": 84.0 + i * 0.5,
             "peak_rss_mib": 1100.0, "recipe": {"group_by_length": True, "compile": False},
             "teacher_cache": {"enabled": s == "alembert-cached", "bytes": 3 * 2 ** 20, "build_seconds": 4.0}}
            for i, s in enumerate(rates)]
    return {"settings": {"systems": list(rates), "rounds": 3, "steps": 30, "epochs": 2, "dev_examples": 872,
                         "batch_size": 32, "max_length": 64, "lr": 1e-4, "warmup": 0.1, "seed": 42,
                         "hidden_pairs": [[0, 0], [1, 3], [2, 6]], "attention_pairs": [[1, 3], [2, 6]], "command": ""},
            "machine": {"cpu": "test cpu", "cores": 2, "torch_threads": 2, "cpu_capability": "AVX512",
                        "torch": "2", "transformers": "5", "textbrewer": "0.2.1.post1"},
            "setup": {"flops": {"student_fwd_bwd": 2e8, "teacher_fwd": 2e8, "length": 13},
                      "peak": {"float32": {"flops_per_s": 1e11, "n": 4096}}, "teacher_dev_accuracy": 85.0,
                      "teacher_layers": [2, 5], "train_examples": 2000, "mean_tokens": 12.6,
                      "mean_padded_tokens": 30.0, "mean_padded_tokens_grouped": 14.0},
            "trials": trials, "full": full, "warm": None}


def test_table_ratios_targets_and_mfu():
    table = load_benchmark("training_throughput").summarise(_results())
    assert "| (d) alembert, teacher cache | 25.0 [24.0–26.0] | 2.27× | 85.5 |" in table
    assert "| (c) alembert, live teacher | 14.0 [13.0–15.0] | 1.27× |" in table
    assert "≥ 2.0× TextBrewer: 2.27× — met" in table and "≥ 1.2× TextBrewer: 1.27× — met" in table
    assert "largest gap 1.5 — met" in table  # 2σ at 84 % on 872 examples is 2.5 points
    assert "| 0.200 | 5.00% |" in table  # (d): student FLOPs only, 25 examples/s × 2e8 / 1e11
    assert "3.0 MiB on disk, built in 4.0 s" in table and "Problems" not in table


def test_summarise_only_rewrites_the_markdown(tmp_path):
    (tmp_path / "training_throughput.json").write_text(json.dumps(_results()))
    subprocess.run([sys.executable, str(SCRIPT), "--summarise-only", "--results-dir", str(tmp_path)], check=True,
                   capture_output=True)
    assert "| system | examples/s" in (tmp_path / "training_throughput.md").read_text()
