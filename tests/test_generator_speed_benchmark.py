"""benchmarks/generator_speed.py on a tiny teacher: both heads make the same chains, and bf16 stays near fp32."""
import json
import sys

import yaml

from conftest import load_benchmark


def test_the_masked_positions_head_makes_the_whole_heads_chains(tmp_path, monkeypatch, tiny_teacher_dir, toy_task):
    task = tmp_path / "toy.yaml"
    task.write_text(yaml.safe_dump(toy_task))
    bench = load_benchmark("generator_speed")
    monkeypatch.setattr(sys, "argv", ["generator_speed", "--model", str(tiny_teacher_dir), "--task", str(task),
                                      "--texts", "12", "--max-length", "16", "--rounds", "1",
                                      "--results-dir", str(tmp_path / "results")])
    assert bench.main() == 0
    result = json.loads((tmp_path / "results" / "generator_speed.json").read_text())
    assert result["texts"] == 12 and result["same_texts"] == 12
    assert set(result["chain_seconds"]) == {"head at masked positions", "head over every position"}
    assert result["bf16_speedup"] > 0 and result["bf16_token_cosine"]["min"] > 0.9
    assert "Same chain texts: 12 of 12" in (tmp_path / "results" / "generator_speed.md").read_text()
