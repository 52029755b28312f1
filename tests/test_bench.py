"""`bench` on a tiny model with every backend, the CLI commands, and the Pareto frontier and plot."""
import json

import pytest

from alembert.cli import main
from alembert.errors import AlembertError
from alembert.evaluation.bench import BACKENDS, bench, markdown_table
from alembert.evaluation.pareto import Point, collect_points, pareto_front, plot_pareto
from conftest import tiny_bert, write_tokenizer

ROW_KEYS = {"model", "backend", "device", "seq_len", "batch_size", "warmup", "repeats", "latency_ms_p50",
            "latency_ms_p95", "throughput", "parameters", "file_bytes"}


@pytest.fixture
def tiny_dir(tmp_path):
    folder = tmp_path / "tiny"
    tiny_bert(layers=1, hidden=16, heads=2).save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def test_bench_every_backend_with_task(tiny_dir, toy_task):
    result = bench([tiny_dir], seq_lens=[8], batch_sizes=[1, 2], backends=BACKENDS, threads=1, warmup=1,
                   repeats=2, task=toy_task, limit=16)
    assert result["threads"] == 1 and {"platform", "cpu_count", "torch", "onnxruntime"} <= set(result["machine"])
    assert result["task"]["main_metric"] == "accuracy" and result["task"]["examples"] == 16
    rows = result["rows"]
    assert [(r["backend"], r["batch_size"]) for r in rows] == [(b, n) for b in BACKENDS for n in (1, 2)]
    for r in rows:
        assert ROW_KEYS | {"metric", "metric_name"} <= set(r)
        assert r["model"] == "tiny" and r["seq_len"] == 8 and r["repeats"] == 2
        assert r["latency_ms_p50"] > 0 and r["latency_ms_p95"] > 0 and r["throughput"] > 0 and r["file_bytes"] > 0
        assert 0 <= r["metric"] <= 100
    model = result["models"][0]
    assert model["parameters"] > 0 and set(model["metrics"]) == set(BACKENDS)
    assert model["onnx_export"]["fp32"]["max_abs_diff"] <= 1e-4  # exported on the fly, checked
    table = markdown_table(result)
    assert "| tiny | onnx-int8 | 8 | 2 |" in table and "dev accuracy" in table


def test_bench_interleaved_times_every_model_and_backend_in_the_same_rounds(tiny_dir, tmp_path, monkeypatch):
    import alembert.evaluation.speed as speed

    big = tmp_path / "big"
    tiny_bert(layers=2, hidden=32, heads=2).save_pretrained(big)
    write_tokenizer(big)
    calls = []

    def fake_rounds(runners, rounds, warmup):  # the teacher pair takes 10 ms a round, every other pair 4 ms
        calls.append((len(runners), rounds, warmup))
        for run in runners.values():
            run()  # each runner really runs its backend
        return {k: [10.0 if k == 0 else 4.0] * rounds for k in runners}

    monkeypatch.setattr(speed, "interleaved_rounds", fake_rounds)
    result = bench([big, tiny_dir], seq_lens=[8], batch_sizes=[1, 2], backends=["torch-fp32", "onnx-int8"],
                   threads=1, warmup=1, repeats=7, names=["teacher", "student"], interleaved=True)
    assert calls == [(4, 7, 1), (4, 7, 1)]  # per (sequence, batch): all four pairs in one set of rounds
    rows = result["rows"]
    assert [(r["model"], r["backend"], r["batch_size"]) for r in rows] == [
        (m, b, n) for n in (1, 2) for m in ("teacher", "student") for b in ("torch-fp32", "onnx-int8")]
    assert all(r["repeats"] == 7 for r in rows)
    for r in rows:
        if (r["model"], r["backend"]) == ("teacher", "torch-fp32"):
            assert "speedup" not in r
        else:
            assert r["speedup"]["median"] == 2.5 and r["speedup"]["trusted"] and r["speedup"]["rounds"] == 7
    table = markdown_table(result)
    assert "speed-up (95 % interval)" in table and "| 1x |" in table and "2.50x (2.50-2.50)" in table


def test_bench_refuses_unknown_backend(tiny_dir):
    with pytest.raises(AlembertError, match="backends"):
        bench([tiny_dir], backends=["tensorrt"])


def test_cli_bench_writes_json_and_reuses_saved_onnx(tiny_dir, tmp_path, capsys):
    from alembert.export import export_onnx

    export_onnx(tiny_dir)  # <model>/onnx/model.onnx: bench uses it instead of exporting again
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_dir), "--seq-lens", "8", "--batch-sizes", "1", "--backends", "torch-fp32",
                 "onnx-fp32", "--warmup", "1", "--repeats", "2", "--threads", "1", "--output", str(out)]) == 0
    assert "| tiny | onnx-fp32 | 8 | 1 |" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 2 and result["models"][0]["files"]["onnx-fp32"] == str(tiny_dir / "onnx" /
                                                                                          "model.onnx")


def test_cli_bench_missing_model(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["bench", str(missing), "--warmup", "1", "--repeats", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err


def test_pareto_front_on_hand_made_points():
    points = [("a", 1.0, 70.0), ("b", 2.0, 80.0), ("c", 3.0, 75.0),  # c: slower and worse than b
              ("d", 4.0, 90.0), ("e", 4.0, 85.0),  # e: as fast as d, worse
              ("f", 0.5, 60.0), ("g", 5.0, 90.0)]  # g: as good as d, slower
    assert [p.label for p in pareto_front(points)] == ["f", "a", "b", "d"]
    assert pareto_front([("x", 1.0, 50.0)]) == [Point("x", 1.0, 50.0)]
    # identical points do not dominate each other
    assert len(pareto_front([("x", 1.0, 50.0), ("y", 1.0, 50.0)])) == 2


def test_plot_pareto_writes_png(tmp_path):
    path = tmp_path / "pareto.png"
    front = plot_pareto([("teacher", 10.0, 85.0), ("student", 3.0, 80.0), ("worse", 4.0, 79.0)], path,
                        "latency (ms)", "dev accuracy")
    assert [p.label for p in front] == ["student", "teacher"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _bench_file(tmp_path):
    rows = [{"model": "s", "backend": "onnx-int8", "seq_len": s, "batch_size": b, "latency_ms_p50": s * b / 10,
             "metric": 80.0} for s in (64, 128) for b in (1, 32)]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"task": {"main_metric": "accuracy"}, "rows": rows}))
    return path


def test_collect_points_from_runs_and_bench_files(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    run.joinpath("report.json").write_text(json.dumps({
        "name": "sst2-kd", "task": {"main_metric": "accuracy"},
        "models": [{"name": "teacher", "metrics": {"accuracy": 86.0}, "speed": {"latency_ms_b1": 11.0}},
                   {"name": "student", "metrics": {"accuracy": 80.0}, "speed": {"latency_ms_b1": 3.5}}]}))
    points, metric = collect_points([run, _bench_file(tmp_path)], batch_size=1)
    assert metric == "accuracy"
    # the bench file contributes its largest sequence length at the chosen batch size
    assert points == [Point("sst2-kd/teacher", 11.0, 86.0), Point("sst2-kd/student", 3.5, 80.0),
                      Point("s onnx-int8", 12.8, 80.0)]
    with pytest.raises(AlembertError, match="latency_ms_b32"):
        collect_points([run], batch_size=32)
    assert main(["pareto", str(run), str(tmp_path / "bench.json"), "--output", str(tmp_path / "p.png")]) == 0
    assert "sst2-kd/student" in capsys.readouterr().out and (tmp_path / "p.png").is_file()
    assert main(["pareto", str(tmp_path / "nothing"), "--output", str(tmp_path / "q.png")]) == 2
