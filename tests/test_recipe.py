from pathlib import Path

import pytest

from alembert.errors import AlembertError
from alembert.pipelines.pool import load_pool
from alembert.recipe import load_recipe, recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _base(**extra):
    data = {"name": "r", "task": "sst2", "teacher": "t", "student": {"layers": 2},
            "stages": [{"name": "pred", "losses": [{"type": "prediction"}]}]}
    data.update(extra)
    return data


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    if path.stem.endswith("pool"):  # a teacher pool file: several fine-tuning runs
        pool, _ = load_pool(path)
        assert len(pool.teachers) >= 2
        return
    recipe = load_recipe(path)
    assert recipe.stages


def test_unknown_key_is_named_with_its_path():
    data = _base()
    data["stages"][0]["losses"][0]["temprature"] = 2
    with pytest.raises(AlembertError, match=r"stages\.0\.losses\.0\.prediction\.temprature: unknown key"):
        recipe_from_dict(data, "x.yaml")


def test_wrong_type_is_named_with_its_path():
    data = _base()
    data["stages"][0]["lr"] = "fast"
    with pytest.raises(AlembertError, match=r"x.yaml: stages\.0\.lr: .*number.*'fast'"):
        recipe_from_dict(data, "x.yaml")


def test_unknown_loss_type():
    data = _base()
    data["stages"][0]["losses"][0]["type"] = "magic"
    with pytest.raises(AlembertError, match=r"stages\.0\.losses\.0"):
        recipe_from_dict(data)


def test_missing_key():
    data = _base()
    del data["stages"][0]["name"]
    with pytest.raises(AlembertError, match=r"stages\.0\.name: required key is missing"):
        recipe_from_dict(data)


def test_losses_that_need_a_teacher_are_refused_without_one():
    with pytest.raises(AlembertError, match="need a teacher"):
        recipe_from_dict(_base(teacher=None, student={"init": "checkpoint", "source": "m"}))


def test_overrides_set_nested_and_list_keys(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\ntask: sst2\nteacher: t\nstudent: {layers: 2}\n"
                    "stages:\n  - name: pred\n    losses: [{type: prediction}]\n")
    recipe = load_recipe(path, ["stages.0.lr=3e-5", "student.layers=3", "stages.0.losses.0.alpha=0.5",
                                "train_limit=100"])
    assert recipe.stages[0].lr == 3e-5 and recipe.student.layers == 3
    assert recipe.stages[0].losses[0].alpha == 0.5 and recipe.train_limit == 100
    with pytest.raises(AlembertError, match="stages.5"):
        load_recipe(path, ["stages.5.lr=1"])
    with pytest.raises(AlembertError, match="expected key=value"):
        load_recipe(path, ["lr"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(AlembertError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(AlembertError, match="not valid YAML"):
        load_recipe(bad)


def test_without_teacher_keeps_the_student_and_last_stage():
    from alembert.recipe import without_teacher

    data = _base(stages=[{"name": "ild", "losses": [{"type": "hidden_mse"}]},
                         {"name": "pred", "epochs": 2, "lr": 1e-4, "losses": [{"type": "prediction"}]}])
    baseline = without_teacher(recipe_from_dict(data), "base")
    assert baseline.teacher is None and baseline.name == "base"
    assert baseline.student.source == "t" and baseline.student.layers == 2  # extracted from the same teacher
    assert [s.name for s in baseline.stages] == ["pred"] and baseline.stages[0].epochs == 2
    assert baseline.stages[0].losses[0].alpha == 0.0
