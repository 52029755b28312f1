"""benchmarks/multi_domain.py's ledger: finished runs survive a machine that lacks their run directories."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import load_benchmark

DOMAINS = ("books", "dvd", "electronics", "kitchen")


@pytest.fixture
def bench(tmp_path, monkeypatch):
    module = load_benchmark("multi_domain", monkeypatch)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    return module, dict(module.CONFIGS["smoke"], runs=tmp_path / "runs")


def _fake_run(runs: Path, name: str, scores: dict, seconds: float = 10.0) -> None:
    run = runs / name
    run.mkdir(parents=True)
    (run / "test.json").write_text(json.dumps(scores))
    (run / "report.json").write_text(json.dumps({"training": {"seconds": seconds}}))


def test_ledger_keeps_finished_runs_when_their_directories_are_gone(bench):
    module, cfg = bench
    _fake_run(cfg["runs"], "few-teacher", dict.fromkeys(DOMAINS, 90.0))
    for seed, score in ((42, 80.0), (43, 82.0)):
        _fake_run(cfg["runs"], f"few-hrkd-s{seed}", dict.fromkeys(DOMAINS, score + 1), seconds=30.0)
        for domain in DOMAINS:
            _fake_run(cfg["runs"], f"few-domain-kd-{domain}-s{seed}", {domain: score})
    results, table = module.summarise(cfg, ["few"], [42, 43, 44])
    assert results["few"]["per_seed"]["domain-kd"] == {42: dict.fromkeys(DOMAINS, 80.0),
                                                       43: dict.fromkeys(DOMAINS, 82.0)}
    assert results["few"]["seconds"]["domain-kd"] == [40.0, 40.0]  # four per-domain runs of 10 s
    assert results["few"]["paired"]["domain-kd"]["average"]["differences"] == [1.0, 1.0]

    shutil.rmtree(cfg["runs"])  # a new machine: only the committed results remain
    again, again_table = module.summarise(cfg, ["few"], [42, 43, 44])
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results)) and again_table == table
    ledger = json.loads((module.RESULTS / "multi_domain_smoke_runs.json").read_text())
    assert module._finished(cfg, ledger, "few", "hrkd", 43, None)
    assert not module._finished(cfg, ledger, "few", "hrkd", 44, None)

    # the teacher retrained for seed 44 scores otherwise: the table names the students of the earlier teacher
    _fake_run(cfg["runs"], "few-teacher", dict.fromkeys(DOMAINS, 89.0))
    _fake_run(cfg["runs"], "few-hrkd-s44", dict.fromkeys(DOMAINS, 84.0))
    results, table = module.summarise(cfg, ["few"], [42, 43, 44])
    assert results["few"]["rows"]["teacher"]["average"]["mean"] == 89.0
    assert results["few"]["other_teacher"] == ["domain-kd s42 (90.00)", "domain-kd s43 (90.00)",
                                               "hrkd s42 (90.00)", "hrkd s43 (90.00)"]
    assert "hrkd s43 (90.00)" in table
