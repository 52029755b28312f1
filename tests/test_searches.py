"""The genetic layer-map search and the student-size search on tiny random models: seeds first, resumable from the
Optuna journal, a Pareto front with a checkpoint per point, and bad input in one line."""
import json
from pathlib import Path

import pytest
import yaml

from alembert import api
from alembert.cli import main
from alembert.pipelines.map_search import repair, seed_maps
from test_task_agnostic import general_recipe, pretrained_teacher


def _search(tmp_path, toy_task, kind: dict, recipe_changes: dict | None = None, name: str = "s") -> Path:
    teacher = pretrained_teacher(tmp_path / "teacher")
    base = general_recipe(tmp_path, teacher, **(recipe_changes or {}))
    base["stages"][0]["epochs"] = 1
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump({
        "name": name, "recipe": "base.yaml", "output_dir": str(tmp_path / "out"), **kind,
        "proxy": {"tasks": [toy_task], "finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 16}}}))
    return spec


def test_seed_maps_and_repair():
    assert seed_maps(4, 12, True) == {"uniform": [3, 6, 9, 12], "last": [0, 0, 0, 12], "skip": [3, 6, 9, 0]}
    assert seed_maps(2, 4, False) == {"uniform": [2, 4], "last": [3, 4]}
    assert repair([5, 0, 2], 6, monotone=True) == [2, 0, 5]
    assert repair([0, 0], 6, monotone=False) == [0, 6]


def test_layer_map_search_evaluates_the_seeds_first_and_resumes(tmp_path, toy_task):
    spec = _search(tmp_path, toy_task, {"layer_maps": {"trials": 4, "population": 3, "seed": 1}})
    messages = []
    result = api.search(spec, log=messages.append)
    trials = sorted(result["trials"], key=lambda r: r["trial"])
    assert [t["map"] for t in trials[:3]] == [[2, 4], [0, 4], [2, 0]]  # uniform, last, skip (2 of 4 teacher layers)
    assert [t["seed"] for t in trials[:3]] == ["uniform", "last", "skip"]
    assert len(trials) == 4 and all(0 <= t["score"] <= 100 for t in trials)
    assert all(set(t["proxy_dev"]) == {"toy"} for t in trials if t["repeat_of"] is None)
    assert result["best"]["score"] == max(t["score"] for t in trials)
    folder = tmp_path / "out" / "s"
    assert {"search.json", "search.md", "fitness.png", "study.journal"} <= {p.name for p in folder.iterdir()}
    assert sum("trial " in m for m in messages) == 4
    # run again with more trials: the finished four are kept, only the fifth trains
    again = []
    more = api.search(spec, ["layer_maps.trials=5"], log=again.append)
    assert len(more["trials"]) == 5 and sum("trial " in m for m in again) == 1
    assert sorted(t["trial"] for t in more["trials"])[:4] == [t["trial"] for t in trials]


def test_size_search_writes_a_pareto_front_and_a_checkpoint_per_point(tmp_path, toy_task):
    spec = _search(tmp_path, toy_task, {"sizes": {"trials": 3, "population": 2, "layers": [1, 2], "hidden": [8, 16],
                                                  "heads": [2], "latency_rounds": 3}})
    result = api.search(spec)
    folder = tmp_path / "out" / "s"
    assert (folder / "pareto_b1.png").is_file() and (folder / "pareto_b32.png").is_file()
    trained = [r for r in result["trials"] if r["trained"] and r["repeat_of"] is None]
    assert trained and all(json.loads((folder / "points" / r["size"] / "config.json").read_text())
                           ["architectures"] == ["BertModel"] for r in trained)
    assert set(result["front"]["b1"]) <= {r["size"] for r in trained} and result["front"]["b1"]
    assert result["teacher_latency_ms"]["b1"] > 0 and "| teacher |" in result["table"]
    assert all(r["latency_ms"]["b32"] > 0 for r in result["trials"])


@pytest.mark.parametrize("kind, recipe_changes, expected", [
    ({"layer_maps": {"trials": 2}}, {"student": {"init": "extract", "extract": "first", "layers": 6}},
     "layer_maps: the student has 6 layers, more than the teacher's 4"),
    ({"sizes": {"trials": 2, "layers": [1], "hidden": [8], "heads": [2], "latency_budget_ms": 1e-6,
                "latency_rounds": 3}}, None, "sizes.latency_budget_ms: 1e-06 ms at batch 1, but the smallest size"),
    ({"sizes": {"trials": 2, "layers": [9], "hidden": [8]}}, None, "sizes.layers: 9 is not within the teacher's"),
    ({"layer_maps": {"trials": 2}, "sizes": {"layers": [1], "hidden": [8]}}, None,
     "set one of variants, layer_maps or sizes"),
    ({"layer_maps": {"trials": 2}},
     {"sources": {"corpus": {"type": "text", "files": ["/no/such/corpus.txt"]}}}, "/no/such/corpus.txt"),
])
def test_bad_searches_are_one_line_and_exit_2(tmp_path, capsys, toy_task, kind, recipe_changes, expected):
    spec = _search(tmp_path, toy_task, kind, recipe_changes)
    capsys.readouterr()
    assert main(["search", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_search_interrupted_mid_trial_evaluates_every_seed_when_run_again(tmp_path, toy_task, monkeypatch):
    import alembert.pipelines.proxy_fitness as fitness

    spec = _search(tmp_path, toy_task, {"layer_maps": {"trials": 3, "population": 3}})
    real, calls = fitness.evaluate_candidate, []

    def crash_on_second(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(fitness, "evaluate_candidate", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        api.search(spec)
    monkeypatch.setattr(fitness, "evaluate_candidate", real)
    result = api.search(spec)
    assert sorted(t["seed"] for t in result["trials"]) == ["last", "skip", "uniform"]


@pytest.mark.parametrize("name", ["layer_maps.yaml", "sizes.yaml"])
def test_shipped_search_files_validate(name):
    from alembert.pipelines.search import ProxyRunner, load_search
    from alembert.recipe import apply_overrides
    from alembert.yaml_file import read_yaml_mapping

    spec, base = load_search(Path(__file__).resolve().parents[1] / "recipes" / "searches" / name)
    assert (spec.layer_maps or spec.sizes) and spec.proxy and base.is_file()
    recipe = ProxyRunner(apply_overrides(read_yaml_mapping(base, "recipe", "keys"), spec.set), str(base)).recipe(
        "x", [])
    assert recipe.agnostic and (spec.layer_maps or [s.type for s in recipe.stages[0].losses] == ["hidden_mse"])


def test_the_benchmark_summary_of_a_benchmark_not_run_says_so(tmp_path, monkeypatch):
    """benchmarks/task_agnostic.py --summarise-only before any run: every table empty, every claim 'not run'."""
    import sys

    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    sys.modules.pop("task_agnostic", None)
    import task_agnostic

    cfg = dict(task_agnostic.CONFIGS["smoke"], runs=tmp_path / "runs", name="t")
    results, table = task_agnostic.report.summarise(cfg, [42], task_agnostic.KINDS, tmp_path / "results")
    assert [c["verdict"] for c in results["claims"]] == ["not run"] * 4
    assert "| general distillation | – | – |" in table and not (tmp_path / "results").exists()
