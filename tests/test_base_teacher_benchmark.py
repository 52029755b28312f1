"""benchmarks/base_teacher.py's ledger: finished runs survive a machine that lacks their run directories, and its
latency table reads the interleaved speed-ups."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import load_benchmark


@pytest.fixture
def bench(tmp_path, monkeypatch):
    module = load_benchmark("base_teacher", monkeypatch)
    monkeypatch.setattr(module, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(module, "LEDGER_PATH", tmp_path / "results" / "base_teacher_runs.json")
    monkeypatch.setattr(module, "LEDGER", {})
    return module


def _fake_run(runs: Path, name: str, score: float, parameters: int = 12) -> None:
    run = runs / name
    (run / "student").mkdir(parents=True)
    save_file({"weight": torch.zeros(parameters)}, str(run / "student" / "model.safetensors"))
    (run / "report.json").write_text(json.dumps({
        "task": {"main_metric": "accuracy"}, "models": [{"name": "student", "metrics": {"accuracy": score}}],
        "training": {"seconds": 20.0, "train_seconds": 18.0,
                     "evaluations": [{"step": 5, "accuracy": score - 1}, {"step": 10, "accuracy": score}]}}))


def _bench_row(model, backend, batch, ms, metric, speedup=None):
    row = {"model": model, "backend": backend, "batch_size": batch, "latency_ms_p50": ms, "parameters": 110e6
           if model == "teacher" else 19e6, "metric": metric}
    return row | ({"speedup": {"median": speedup, "ci95": [speedup - 0.1, speedup + 0.1], "trusted": True}}
                  if speedup else {})


def test_ledger_keeps_finished_runs_and_the_latency_table(bench):
    runs = bench.RUNS
    _fake_run(runs, "sst2-teacher", 92.0, parameters=40)
    _fake_run(runs, "cola-teacher", 50.0, parameters=40)  # no student yet: sst2's students are kept of sst2's teacher
    for seed, score in ((42, 88.0), (43, 87.0), (44, 89.0)):
        _fake_run(runs, f"sst2-kd-s{seed}", score)
        _fake_run(runs, f"sst2-tinybert-s{seed}", score + 0.5)
    _fake_run(runs, "sst2-kd-rand-s42", 85.0)
    _fake_run(runs, "sst2-kd-depth-s42", 86.5, parameters=30)  # the teacher's width: a larger student
    _fake_run(runs, "sst2-kd-e10-probe", 89.0)
    rows = [_bench_row("teacher", "torch-fp32", 1, 40.0, 92.0), _bench_row("teacher", "torch-fp32", 32, 900.0, 92.0),
            _bench_row("sst2-tinybert-s44", "torch-fp32", 1, 6.0, 89.5, 6.6),
            _bench_row("sst2-tinybert-s44", "torch-fp32", 32, 100.0, 89.5, 9.0),
            _bench_row("sst2-tinybert-s44", "onnx-int8", 1, 2.5, 89.0, 16.0),
            _bench_row("sst2-tinybert-s44", "onnx-int8", 32, 50.0, 89.0, 18.0)]
    (runs / "sst2-latency.json").write_text(json.dumps({"student": "sst2-tinybert-s44", "bench": {"rows": rows}}))

    results, table = bench.summarise(["sst2", "cola"], [42, 43, 44])
    assert "sst2-kd-e10-probe" in json.loads(bench.LEDGER_PATH.read_text())  # the probes are kept too
    sst2 = results["sst2"]
    assert sst2["rows"]["teacher"]["mean"] == 92.0 and sst2["rows"]["teacher"]["parameters"] == 40
    assert sst2["per_seed"]["kd"] == {42: 88.0, 43: 87.0, 44: 89.0} and sst2["rows"]["kd"]["parameters"] == 12
    assert sst2["claims"]["tinybert-kd"]["differences"] == [0.5, 0.5, 0.5]
    assert sst2["etd"]["rand"]["mean"] == 85.0 and sst2["etd"]["impt"]["curves"][42] == [[5, 87.0], [10, 88.0]]
    # each fake curve is one point below the final score at step 5, the final score at step 10. The lowest final
    # score of the three inits is rand's 85.0: kd (ETD-Impt, 87/86/88 at step 5) and depth (85.5) reach it at
    # step 5, rand only at step 10
    reached = {init: sst2["etd"][init]["to_common_score"] for init in ("impt", "rand", "depth")}
    assert reached["impt"]["steps"] == [5, 5, 5]
    assert reached["rand"]["steps"] == [10] and reached["depth"]["steps"] == [5]
    assert "| rand | 10 (n=1) (to 85.0) |" in table
    assert sst2["etd"]["depth"]["parameters"] == 30 and sst2["etd"]["depth"]["seconds"] == [20.0]
    assert "| depth | 0.0M | 86.5 (n=1) |" in table and "| impt | 20 |" in table  # its size and its seconds
    assert bench._best_student("sst2", [42, 43, 44]) == "sst2-tinybert-s44"
    assert not bench._latency_pending("sst2", [42, 43, 44])  # the best student is the one timed
    assert "| sst2 | sst2-tinybert-s44 | 19.0M (110.0M) | 40.0 / 900 | 6.60x (6.50-6.70) |" in table
    assert "| -0.50 |" in table  # int8 costs the student half a point
    assert "| kd | 0.0M | 20 |" in table  # 12 parameters; 20 s a run
    assert "| sst2-kd-e10-probe | 89.0 | 10 | 20 |" in table and "| sst2-kd-lr3e-4-probe | – | – | – |" in table
    assert "| sst2-kd-s42 | 88.0 | 10 | 20 |" in table and "| cola-kd-e10-probe | – | – | – |" in table
    claims = {c["claim"]: c for c in results["claims"]}
    kept = claims["the best student keeps ≥ 95 % of the teacher's GLUE-5 average"]
    assert kept["evidence"] == "–" and kept["verdict"] == "undecided (2 of 5 tasks)"  # no seed has both tasks
    assert "| kd | 88.0 ± 1.0 | – | 88.0 (1 of 2 tasks) | 95.7% |" in table
    assert claims["tinybert beats kd (five-task average)"]["evidence"] == "–"  # over seeds that have every task
    fp32 = claims["the best student is ≥ 6× faster than the fp32 teacher at batch 1 as fp32"]
    assert fp32["evidence"] == "lowest of 1 tasks: 6.60x (6.50-6.70)"

    for task in ("stsb", "mrpc", "rte"):  # every task's teacher, no student yet on all five: nothing decided
        _fake_run(runs, f"{task}-teacher", 80.0)
    every = {c["claim"]: c["verdict"] for c in bench.summarise(list(bench.TASKS), [42, 43, 44])[0]["claims"]}
    assert every["the best student keeps ≥ 95 % of the teacher's GLUE-5 average"] == \
        "undecided (no seed has every task)"
    assert every["the best student is ≥ 6× faster than the fp32 teacher at batch 1 as fp32"] == \
        "undecided (1 of 5 tasks timed)"
    for task in ("stsb", "mrpc", "rte"):
        shutil.rmtree(runs / f"{task}-teacher")
        bench.LEDGER.pop(f"{task}-teacher")

    shutil.rmtree(runs)  # a new machine: only the committed ledger remains
    bench.LEDGER.clear()
    bench.LEDGER.update(json.loads(bench.LEDGER_PATH.read_text()))
    again, again_table = bench.summarise(["sst2", "cola"], [42, 43, 44])
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results)) and again_table == table
    assert bench._best_student("sst2", [42, 43, 44]) is None  # latency needs a checkpoint on this machine


def test_a_job_another_runner_finished_is_not_trained_again(bench, monkeypatch):
    from alembert import api

    trained = []
    monkeypatch.setattr(api, "distill", lambda recipe, **kw: trained.append(recipe.name))
    monkeypatch.setattr(bench, "student_recipe", lambda task, method, seed, *a, **kw: type("R", (), {
        "name": a[1] if len(a) > 1 else f"{task}-{method}-s{seed}"}))
    _fake_run(bench.RUNS, "rte-kd-s42", 55.0)
    _fake_run(bench.RUNS, "rte-kd-rand-s42", 54.0)
    bench.run_student("rte", "kd", 42)
    bench.run_etd("rte", "rand", 42)
    bench.run_etd("rte", "impt", 42)  # ETD-Impt is the KD row, finished above
    assert trained == []
    bench.run_student("rte", "kd", 43)
    bench.run_etd("rte", "depth", 42)
    assert trained == ["rte-kd-s43", "rte-kd-depth-s42"]
