"""benchmarks/data_scarce.py's ledger: a machine that lacks the run folders keeps every finished run's score and
costs, and retrains a teacher only where a student still needs it."""
import json
import shutil

from conftest import load_benchmark


def _fake_run(cfg: dict, name: str, accuracy: float, kept: float | None = None, reused: bool = False) -> None:
    folder = cfg["runs"] / name
    folder.mkdir(parents=True)
    report = {"training": {"seconds": 50.0}}
    if kept is not None:  # a run that read its generation back carries the maker's figures, not its own costs
        made = {"seconds": 99.0 if reused else 20.0, "head": {"seconds": 99.0 if reused else 5.0}}
        selection = {"kd": {"keep": kept, "keep_source": kept, "generated_share": 0.9, "entropy": 0.6, "updates": 3,
                            "reward": 0.01, "reward_std": 0.02}}
        report["l2a"] = {"kept_share": kept, "generation": {**made, "reused": reused}, "selection": selection}
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "test.json").write_text(json.dumps({"split": "test", "accuracy": accuracy, "peak_rss_mb": 900,
                                                  "peak_gpu_mb": None}))


def test_ledger_keeps_finished_runs_on_a_new_machine(tmp_path, monkeypatch):
    bench = load_benchmark("data_scarce", monkeypatch)
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench, "LEDGER", {})
    cfg = dict(bench.CONFIGS["smoke"], runs=tmp_path / "runs")
    _fake_run(cfg, "kitchen-24-teacher-target", 80.0)
    for seed in (42, 43, 44):
        for i, method in enumerate(bench.METHODS):
            _fake_run(cfg, bench.run_name("kitchen-24", method, seed, "target"), 70.0 + i + seed - 42,
                      0.5 if method == "l2a" else None, reused=seed != 42)
    results, table = bench.summarise(cfg, ["kitchen-24"], [42, 43, 44], "target")
    assert results["kitchen-24"]["paired"]["kd"]["differences"] == [4.0, 4.0, 4.0]
    assert "| l2a | 75.0 ± 1.0 | 50 | 20 (5) | 900 | 50 % |" in table
    assert "| 43 | 50 | 50 | – | 90 | 0.600 | 3 | +0.0100 ± 0.0200 |" in table  # what the selector did, per seed

    shutil.rmtree(cfg["runs"])  # a new machine: only the committed ledger remains
    bench.LEDGER.clear()
    bench.LEDGER.update(json.loads(bench.ledger_path(cfg).read_text()))
    again, again_table = bench.summarise(cfg, ["kitchen-24"], [42, 43, 44], "target")
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results)) and again_table == table
    phases = ["teachers", "students"]
    assert bench.jobs(cfg, "smoke", ["kitchen-24"], [42, 43, 44], list(bench.METHODS), "target", phases) == \
        (["smoke:teacher:kitchen-24:mixed"], [])  # only the teacher no run has finished
    teachers, students = bench.jobs(cfg, "smoke", ["kitchen-24"], [45], ["kd"], "target", phases)
    assert teachers == ["smoke:teacher:kitchen-24:target", "smoke:teacher:kitchen-24:mixed"]
    assert students == ["smoke:student:kitchen-24:kd:45:target"]
    _, students = bench.jobs(cfg, "smoke", ["kitchen-24"], [45], list(bench.METHODS), "target", ["students"])
    assert [job.split(":")[3] for job in students] == ["l2a", "kd", "tinybert-aug", "source-kd", "generated-kd"]
    # over seeds: the first l2a makes the generation, the rows that need none run while it does, its readers last
    _, students = bench.jobs(cfg, "smoke", ["kitchen-24"], [45, 46], ["kd", "generated-kd", "l2a"], "target",
                             ["students"])
    assert [job.split(":", 3)[3] for job in students] == [
        "l2a:45:target", "kd:45:target", "kd:46:target", "generated-kd:45:target", "l2a:46:target",
        "generated-kd:46:target"]


def test_generated_kd_is_l2a_with_its_selector_off_and_the_same_generation(monkeypatch):
    """The 'generated, no selector' row differs from L2A in the selector alone, so both read one cached generation;
    the mixed teacher trains fewer epochs than the target one on its larger data."""
    from alembert.plugins.augment import GENERATION_OPTIONS

    bench = load_benchmark("data_scarce", monkeypatch)
    cfg = bench.CONFIGS["real"]
    plugins = {m: bench.student_recipe(cfg, "kitchen-100", m, 43, "target").stages[0].plugins[0].model_dump()
               for m in ("generated-kd", "l2a")}
    assert plugins["generated-kd"]["select"] is False and plugins["l2a"]["select"] is True
    assert {k: v for k, v in plugins["generated-kd"].items() if k != "select"} == \
        {k: v for k, v in plugins["l2a"].items() if k != "select"}
    assert set(GENERATION_OPTIONS) <= set(plugins["l2a"]) and plugins["l2a"]["seed"] == bench.DATA_SEED
    epochs = {k: bench.teacher_recipe(cfg, "kitchen-100", k).stages[0].epochs for k in ("target", "mixed")}
    assert epochs == {"target": cfg["teacher_epochs"], "mixed": cfg["mixed_epochs"]}


def test_claims_are_also_judged_on_every_settings_seeds_together(tmp_path, monkeypatch):
    """Two settings of 3 seeds make one pooled test of 6 (setting, seed) pairs; one setting makes none."""
    bench = load_benchmark("data_scarce", monkeypatch)
    monkeypatch.setattr(bench, "LEDGER", {})
    cfg = dict(bench.CONFIGS["smoke"], runs=tmp_path / "runs")
    l2a_minus_kd = {"kitchen-24": [1.0, 2.0, 3.0], "sst2-24": [-1.0, 0.5, 2.5]}
    for setting, differences in l2a_minus_kd.items():
        _fake_run(cfg, f"{setting}-teacher-target", 90.0)
        for seed, difference in zip((42, 43, 44), differences):
            _fake_run(cfg, bench.run_name(setting, "kd", seed, "target"), 70.0 + seed - 42)
            _fake_run(cfg, bench.run_name(setting, "l2a", seed, "target"), 70.0 + seed - 42 + difference, 0.5)
    results, _ = bench.summarise(cfg, ["kitchen-24", "sst2-24"], [42, 43, 44], "target")
    claims = {c["claim"]: c for c in results["claims"]}
    pooled = claims["L2A beats kd (2 settings pooled)"]
    assert pooled["evidence"] == "+1.3 ± 1.5 (5/6 pairs)"  # mean 8/6, sample std of the six pairs
    assert pooled["verdict"] == "reproduced (p = 0.04)"  # sst2-24's 3 seeds alone are too noisy
    assert claims["L2A beats kd (sst2-24)"]["verdict"].startswith("not reproduced")
    assert claims["L2A beats source-kd (2 settings pooled)"]["verdict"] == "not run"
    assert claims["L2A's student at least as good as its teacher (target) (2 settings pooled)"]["verdict"] == \
        "not reproduced"
    alone, _ = bench.summarise(cfg, ["kitchen-24"], [42, 43, 44], "target")
    assert not any("pooled" in c["claim"] for c in alone["claims"])
    # a setting still running (l2a and kd on one seed of three) is tabled alone and stays out of the pool
    _fake_run(cfg, bench.run_name("kitchen-48", "kd", 42, "target"), 70.0)
    _fake_run(cfg, bench.run_name("kitchen-48", "l2a", 42, "target"), 60.0, 0.5)
    begun, _ = bench.summarise(cfg, ["kitchen-24", "sst2-24", "kitchen-48"], [42, 43, 44], "target")
    claims = {c["claim"]: c for c in begun["claims"]}
    assert claims["L2A beats kd (2 settings pooled)"] == pooled
    assert claims["L2A beats kd (kitchen-48)"]["evidence"] == "-10.0 ± 0.0 (0/1 seeds)"


def test_a_setting_without_l2a_yet_prints_no_paired_table(tmp_path, monkeypatch):
    """A setting begun with its baselines has nothing to pair until its l2a runs."""
    bench = load_benchmark("data_scarce", monkeypatch)
    monkeypatch.setattr(bench, "LEDGER", {})
    cfg = dict(bench.CONFIGS["smoke"], runs=tmp_path / "runs")
    _fake_run(cfg, bench.run_name("kitchen-24", "kd", 42, "target"), 70.0)
    _, table = bench.summarise(cfg, ["kitchen-24"], [42], "target")
    assert "| kd | 70.0 |" in table
    assert "paired, per seed" not in table  # not an empty table under the setting's heading
    _fake_run(cfg, bench.run_name("kitchen-24", "l2a", 42, "target"), 71.0, 0.5)
    _, table = bench.summarise(cfg, ["kitchen-24"], [42], "target")
    assert "| l2a − kd | +1.0 ± 0.0 | 1/1 |" in table


def test_tables_keep_every_setting_the_ledger_has_runs_of(monkeypatch):
    """A command run on one setting rewrites the results files: they still cover every setting begun."""
    bench = load_benchmark("data_scarce", monkeypatch)
    monkeypatch.setattr(bench, "LEDGER", {bench.run_name("sst2-24", "kd", 42, "target"): {"accuracy": 70.0}})
    cfg = bench.CONFIGS["smoke"]
    assert bench.tabled(cfg, ["kitchen-24"]) == ["kitchen-24", "sst2-24"]
    assert bench.tabled(cfg, ["sst2-24"]) == ["sst2-24"]
    monkeypatch.setattr(bench, "LEDGER", {})
    assert bench.tabled(cfg, ["kitchen-24"]) == ["kitchen-24"]
