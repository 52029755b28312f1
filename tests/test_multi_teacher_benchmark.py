"""benchmarks/multi_teacher.py's ledger: a machine that lacks the run folders keeps every finished run's numbers and
retrains a teacher only where a student still needs it."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import load_benchmark


def _fake_run(folder: Path, score: float, rates: dict | None = None) -> None:
    folder.mkdir(parents=True)
    report = {"task": {"main_metric": "accuracy"}, "models": [{"name": "student", "metrics": {"accuracy": score}}],
              "training": {"train_seconds": 10.0 + score / 10,
                           "evaluations": [{"stage": "mean", "accuracy": score + 1}, {"stage": "rl", "accuracy": score},
                                           {"stage": "rl", "accuracy": score - 2}]}}
    if rates:
        report["teacher_selection"] = {"rl": {"selection_rate": rates,
                                              "selection_rate_when_right": {t: r + 0.1 for t, r in rates.items()},
                                              "selection_rate_when_wrong": {t: r - 0.1 for t, r in rates.items()}}}
    (folder / "report.json").write_text(json.dumps(report))


def test_ledger_keeps_finished_runs_on_a_new_machine(tmp_path, monkeypatch):
    bench = load_benchmark("multi_teacher", monkeypatch)
    setup = bench.Setup(smoke=False)
    setup.runs, setup.ledger_path, setup.ledger = tmp_path / "runs", tmp_path / "results" / "runs.json", {}
    for teacher, score in zip(bench.TEACHERS, (80.0, 85.0, 70.0)):
        _fake_run(setup.runs / "rte-pool" / teacher, score)
    for seed in (42, 43, 44):
        for i, method in enumerate(bench.METHODS):
            rates = {t: 0.5 for t in bench.TEACHERS} if method.startswith("rl-") else None
            _fake_run(setup.runs / bench.run_name("rte", method, seed), 60.0 + i + seed / 100, rates)

    results, table = bench.summarise(setup, ["rte"], [42, 43, 44])
    assert results["rte"]["teachers"] == {"minilm": 80.0, "mpnet": 85.0, "minilm-3l": 70.0}
    assert results["rte"]["rows"]["rl-dev_metric"]["selection_rate"] == {t: 0.5 for t in bench.TEACHERS}
    claims = results["rte"]["claims"]  # every method scores i points above the first, on every seed
    assert claims["best_teacher"] == "mpnet" and claims["best_teacher_for_the_student"] == "minilm-3l"
    assert claims["single_minus_best_teacher"]["minilm-3l"]["verdict"].startswith("reproduced")  # +1, 3/3
    assert claims["single_minus_best_teacher"]["minilm"]["verdict"].startswith("not reproduced")  # -1
    rl, at = claims["rl-student_loss"], bench.METHODS.index("rl-student_loss")
    assert rl["minus_mean"]["mean"] == pytest.approx(at - bench.METHODS.index("mean"))
    assert rl["minus_best_single"]["difference"]["mean"] == pytest.approx(at - 2)
    assert rl["selection"]["right_minus_wrong"] == pytest.approx({t: 0.2 for t in bench.TEACHERS})
    assert results["rte"]["first_minus_last_stage"] == {"n": 24, "mean": pytest.approx(1.0), "std": pytest.approx(0.0),
                                                        "last_lower": 24}
    assert "does it beat it?" in table and "reproduced (p = 0.00)" in table

    shutil.rmtree(setup.runs)  # a new machine: only the committed ledger remains
    setup.ledger = json.loads(setup.ledger_path.read_text())
    again, again_table = bench.summarise(setup, ["rte"], [42, 43, 44])
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results)) and again_table == table
    assert bench.student_run(setup, "rte", "mean", 43)["metric"] == 60.0 + bench.METHODS.index("mean") + 0.43
    assert bench.teacher_run(setup, "mrpc", "mpnet") is None  # never trained anywhere


def test_a_teacher_retrains_only_for_a_student_still_to_run(tmp_path, monkeypatch):
    bench = load_benchmark("multi_teacher", monkeypatch)
    setup = bench.Setup(smoke=False)
    setup.runs, setup.ledger_path = tmp_path / "runs", tmp_path / "runs.json"
    setup.ledger = {f"{d}-pool/{t}": {"main_metric": "accuracy", "metric": 80.0} for d in ("mrpc", "rte")
                    for t in bench.TEACHERS}
    setup.ledger |= {bench.run_name("rte", m, s): {"metric": 60.0} for m in bench.METHODS for s in (42, 43, 44)}
    setup.ledger |= {bench.run_name("mrpc", m, 42): {"metric": 60.0} for m in bench.METHODS}
    teachers, students = bench.jobs(setup, ["mrpc", "rte"], [42, 43])
    assert students == [f"mrpc:{m}:43" for m in bench.METHODS]  # RTE is whole in the ledger
    assert teachers == [f"mrpc:teacher:{t}" for t in bench.TEACHERS]
