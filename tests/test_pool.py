"""`alembert pool`: teachers of distinct quality from one tiny base, reused on a second run; bad pool files."""
from __future__ import annotations

import json

import pytest
import yaml

from alembert.cli import main
from alembert.errors import AlembertError
from alembert.pipelines.pool import build_pool, load_pool, teachers_block


def _pool(tmp_path, toy_task, base_dir, **changes) -> dict:
    pool = {
        "name": "toy-pool", "task": toy_task, "base": str(base_dir), "output_dir": str(tmp_path / "out"),
        "max_length": 16, "batch_size": 16, "speed": False, "defaults": {"epochs": 1, "lr": 1e-3, "seed": 3},
        "teachers": [{"name": "full", "layers": None}, {"name": "shallow", "layers": 2, "seed": 5}],
    }
    pool.update(changes)
    return pool


def _write(tmp_path, pool: dict):
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(pool))
    return path


def test_pool_builds_then_reuses_its_teachers(tmp_path, toy_task, tiny_teacher_dir, capsys):
    path = _write(tmp_path, _pool(tmp_path, toy_task, tiny_teacher_dir))
    pool = build_pool(path)
    pool_dir = tmp_path / "out" / "toy-pool"
    assert json.loads((pool_dir / "pool.json").read_text()) == pool
    assert [t["name"] for t in pool["teachers"]] == ["full", "shallow"]
    for teacher, layers in zip(pool["teachers"], (4, 2)):  # the tiny base has 4 layers
        config = json.loads((pool_dir / teacher["name"] / "student" / "config.json").read_text())
        assert config["num_hidden_layers"] == teacher["layers"] == layers
        assert (pool_dir / teacher["name"] / "student" / "model.safetensors").is_file()
        assert teacher["path"] == str(pool_dir / teacher["name"] / "student")
        assert 0 <= teacher["dev_main_metric"] == teacher["dev_metrics"][pool["main_metric"]] <= 100
        assert teacher["train_examples"] == 96 and not teacher["reused"]
    assert pool["teachers"][0]["parameters"] > pool["teachers"][1]["parameters"] > 0

    reports = [pool_dir / name / "report.json" for name in ("full", "shallow")]
    before = [r.stat().st_mtime_ns for r in reports]
    assert main(["pool", str(path)]) == 0  # the CLI, on the finished pool
    assert [r.stat().st_mtime_ns for r in reports] == before  # nothing retrained
    out = capsys.readouterr().out
    assert "| shallow | 2 |" in out and "teachers:\n  - {name: full, path: " in out
    assert str(pool_dir / "pool.json") in out
    again = json.loads((pool_dir / "pool.json").read_text())
    assert all(t["reused"] for t in again["teachers"])
    assert [t["dev_metrics"] for t in again["teachers"]] == [t["dev_metrics"] for t in pool["teachers"]]

    with pytest.raises(AlembertError, match=r"teachers\.1: .*stages\.0\.lr differ.*--overwrite"):
        build_pool(path, ["teachers.1.lr=0.01"])  # a changed teacher is not silently taken as it was

    assert yaml.safe_load(teachers_block(pool)) == {"teachers": [
        {"name": "full", "path": str(pool_dir / "full" / "student")},
        {"name": "shallow", "path": str(pool_dir / "shallow" / "student")}]}


def _error(tmp_path, pool: dict) -> str:
    with pytest.raises(AlembertError) as caught:
        build_pool(_write(tmp_path, pool))
    assert not (tmp_path / "out").exists()  # refused before any teacher trained
    return str(caught.value)


def test_bad_pools_are_refused_before_training(tmp_path, toy_task, tiny_teacher_dir):
    pool = _pool(tmp_path, toy_task, tiny_teacher_dir)
    pool["teachers"][0]["layrs"] = 2
    assert "pool.yaml: teachers.0.layrs: unknown key" in _error(tmp_path, pool)

    pool = _pool(tmp_path, toy_task, tiny_teacher_dir)
    pool["teachers"][1]["name"] = "full"
    assert "pool.yaml: teachers: teacher names must be unique ('full' appears twice)" in _error(tmp_path, pool)

    pool = _pool(tmp_path, toy_task, tiny_teacher_dir)
    pool["teachers"][1]["layers"] = 9
    assert f"teachers.1.layers: 9 exceeds the 4 layers of the base {tiny_teacher_dir}" in _error(tmp_path, pool)

    assert "teachers: List should have at least 2 items" in _error(
        tmp_path, _pool(tmp_path, toy_task, tiny_teacher_dir, teachers=[{"name": "only"}]))


def test_overrides_do_not_change_the_callers_pool(tmp_path, toy_task, tiny_teacher_dir):
    pool = _pool(tmp_path, toy_task, tiny_teacher_dir)
    spec, _ = load_pool(pool, ["teachers.0.epochs=2", "defaults.lr=0.5"])
    assert spec.teachers[0].epochs == 2 and spec.defaults.lr == 0.5
    assert "epochs" not in pool["teachers"][0] and pool["defaults"]["lr"] == 1e-3


def test_cli_gives_one_error_line(tmp_path, toy_task, tiny_teacher_dir, capsys):
    pool = _pool(tmp_path, toy_task, tiny_teacher_dir)
    pool["teachers"][1]["layrs"] = 2
    assert main(["pool", str(_write(tmp_path, pool)), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "teachers.1.layrs: unknown key" in err


def test_a_teacher_run_elsewhere_counts_as_the_pools_when_every_shaping_setting_agrees(tmp_path, toy_task,
                                                                                       tiny_teacher_dir):
    """changed_settings: what benchmarks/multi_teacher.py checks before it links base_teacher.py's MPNet teacher."""
    from alembert.pipelines.finetune import finetune_recipe
    from alembert.pipelines.pool import changed_settings, teacher_recipe

    pool, _ = load_pool(_pool(tmp_path, toy_task, tiny_teacher_dir,
                              teachers=[{"name": "big", "precision": "bf16"}, {"name": "small", "layers": 2}]))
    wanted = teacher_recipe(pool, pool.teachers[0])
    assert wanted.precision == "bf16" and teacher_recipe(pool, pool.teachers[1]).precision == "fp32"

    def run_elsewhere(**changes) -> dict:  # the report of a plain fine-tune under another name and folder
        settings = dict(epochs=1, lr=1e-3, batch_size=16, max_length=16, seed=3, precision="bf16", speed=True)
        recipe = finetune_recipe(str(tiny_teacher_dir), toy_task, name="other-name", output_dir=str(tmp_path / "x"),
                                 **{**settings, **changes})
        return {"recipe": json.loads(recipe.model_dump_json())}

    assert changed_settings(run_elsewhere(), wanted) == []
    assert changed_settings(run_elsewhere(precision="fp32"), wanted) == ["precision"]
    assert changed_settings(run_elsewhere(epochs=2, train_limit=50), wanted) == ["stages.0.epochs", "train_limit"]
