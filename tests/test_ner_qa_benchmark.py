"""benchmarks/ner_qa.py's ledger: a machine that lacks the run folders keeps every finished run's scores and
retrains a teacher only where a student still needs it."""
import json
import shutil

from conftest import load_benchmark


def _fake_scores(bench, model: str, seed: int | None, f1: float) -> None:
    folder = bench.run_dir("conll2003", model, seed)
    folder.mkdir(parents=True)
    timing = {"latency_ms_b1": 9.0, "latency_ms_b32": 90.0, "seq_len": 192, "threads": 1}
    speed = {"teacher": {"parameters": 22e6, **timing}, "student": {"parameters": 15e6, **timing}} \
        if model == "tinybert" else {}
    (folder / "scores.json").write_text(json.dumps({"dev": {"entity_f1": f1 + 1}, "test": {"entity_f1": f1},
                                                    "seconds": 100.0, "speed": speed}))


def test_ledger_keeps_finished_runs_on_a_new_machine(tmp_path, monkeypatch):
    bench = load_benchmark("ner_qa", monkeypatch)
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    monkeypatch.setattr(bench, "LEDGER", {})
    _fake_scores(bench, "teacher", None, 90.0)
    for seed in (42, 43, 44):
        for i, method in enumerate(bench.METHODS):
            _fake_scores(bench, method, seed, 80.0 + i + seed / 100)
    results, table = bench.summarise(["conll2003"], [42, 43, 44])
    assert round(results["conll2003"]["rows"]["kd"]["test/entity_f1"]["mean"], 2) == 81.43
    assert results["conll2003"]["speed"]["teacher"]["latency_ms_b1"] == 9.0
    paired = results["conll2003"]["paired"]  # every method 1 point above the one before it, on every seed
    assert [round(paired[name]["mean"], 6) for name in ("kd − no-teacher", "tinybert − kd")] == [1.0, 1.0]
    assert paired["tinybert − no-teacher"]["wins"] == 3
    assert paired["kd − no-teacher"]["verdict"].startswith("reproduced")
    goal = results["conll2003"]["target"]  # tinybert, the best, keeps 82.43 / 90 = 91.6 % of the teacher's F1
    assert (goal["best"], round(goal["percent_of_teacher"], 1), goal["verdict"]) == ("tinybert", 91.6, "not met")
    assert "| kd − no-teacher | +1.0 ± 0.0 | 3/3 | reproduced (p = 0.00) |" in table

    shutil.rmtree(bench.runs_dir())  # a new machine: only the committed ledger remains
    bench.LEDGER.clear()
    bench.LEDGER.update(json.loads(bench.ledger_path().read_text()))
    again, again_table = bench.summarise(["conll2003"], [42, 43, 44])
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results)) and again_table == table
    assert table.index("| teacher | 22.0M |") < table.index("| student | 15.0M |")  # the ledger sorts its keys
    partial, _ = bench.summarise(["conll2003"], [42, 43, 44, 45])  # seed 45 not yet run: no verdict on the target
    assert partial["conll2003"]["target"]["verdict"] == "undecided"
    assert bench.jobs(["conll2003"], [42, 43, 44]) == ([], [])  # nothing to train again, not even the teacher
    teachers, students = bench.jobs(["conll2003", "squad"], [42, 45])
    assert teachers == ["conll2003:teacher", "squad:teacher"]  # conll2003's seed 45 needs its teacher back
    assert students == [f"{t}:{m}:{s}" for s, tasks in ((42, ["squad"]), (45, ["conll2003", "squad"]))
                        for t in tasks for m in bench.METHODS]
