"""benchmarks/task_agnostic.py's ledger: a machine that lacks the runs keeps every finished run's numbers and the
searches' results, and rebuilds a student only for a fine-tuning still to run from it."""
import json
import shutil

import pytest

from conftest import load_benchmark


def _fake_report(folder, score: float | None, seconds: float = 30.0) -> None:
    """A run's report.json; with no score, a task-agnostic distillation's (no main metric, no metrics)."""
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({
        "task": {"main_metric": "accuracy" if score is not None else None},
        "models": [{"name": "student", "metrics": {"accuracy": score} if score is not None else {}}],
        "training": {"seconds": seconds, "optimizer_steps": 12}}))


def test_ledger_keeps_finished_runs_on_a_new_machine(tmp_path, monkeypatch):
    bench = load_benchmark("task_agnostic", monkeypatch)
    report = bench.report
    monkeypatch.setattr(report, "LEDGER", {})
    cfg = dict(bench.CONFIGS["smoke"], runs=tmp_path / "runs", name="t")
    runs, tasks = cfg["runs"], cfg["tasks"]
    _fake_report(runs / "general", None, seconds=500.0)
    for i, kind in enumerate(bench.KINDS):
        for task in tasks:
            _fake_report(runs / report.finetune_run(kind, task, 42), 60.0 + i)
    (runs / "searches" / "maps").mkdir(parents=True)
    search = {"best": {"map": [2, 4], "score": 61.0}, "trials": [
        {"map": [2, 4], "seed": None, "score": 61.0}, {"map": [1, 2], "seed": "uniform", "score": 60.0}]}
    (runs / "searches" / "maps" / "search.json").write_text(json.dumps(search))
    results, table = report.summarise(cfg, [42], bench.KINDS, tmp_path / "results")
    assert results["students"]["averages"]["transfer"] == {42: 61.0}
    assert results["students"]["compute_seconds"]["general"] == (None, 500.0)
    assert results["maps"]["search_best"]["map"] == [2, 4]

    ledger = dict(report.LEDGER)
    shutil.rmtree(runs)  # a new machine: only the committed ledger remains
    report.LEDGER.clear()
    report.LEDGER.update(json.loads(json.dumps(ledger)))
    again, again_table = report.summarise(cfg, [42], bench.KINDS, tmp_path / "results")
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results)) and again_table == table
    students = [(kind, 42) for kind in bench.KINDS]
    assert bench.finetune_jobs(cfg, "smoke", students, tasks) == []  # no student to distil again
    assert bench.finetune_jobs(cfg, "smoke", students + [("general", 43)], ["rte"]) == ["smoke:general:rte:43"]
    assert report.search_record(cfg, "maps") == search and report.search_record(cfg, "sizes") is None


def test_unknown_student_kind_is_one_line_and_exit_2(monkeypatch, capsys):
    bench = load_benchmark("task_agnostic", monkeypatch)
    monkeypatch.setattr("sys.argv", ["task_agnostic.py", "--students", "etd,tiny"])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2
    assert "--students: unknown tiny; expected some of general, transfer, etd, minilm" in capsys.readouterr().err
