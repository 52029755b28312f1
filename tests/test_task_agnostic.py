"""Task-agnostic students on tiny random models: general distillation on unlabeled text (no task, no head, a bare
encoder saved), transfer from such a student, and what a run without a task refuses."""
import json
import random
from pathlib import Path

import pytest
import yaml

from alembert import api
from alembert.cli import main
from alembert.errors import AlembertError
from alembert.recipe import recipe_from_dict
from conftest import WORDS, tiny_bert, write_tokenizer


def pretrained_teacher(folder: Path) -> Path:
    """A tiny encoder saved without a head, as pre-trained checkpoints are."""
    tiny_bert(layers=4).bert.save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def corpus_file(path: Path, lines: int = 48, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 10))) + "."
                              for _ in range(lines)) + "\n", encoding="utf-8")
    return path


def general_recipe(tmp_path, teacher, **changes) -> dict:
    data = {"name": "general", "teacher": str(teacher), "output_dir": str(tmp_path / "out"),
            "cache_dir": str(tmp_path / "cache"), "max_length": 24, "batch_size": 8, "speed": False,
            "student": {"init": "extract", "layers": 2, "hidden": 16, "heads": 2, "ffn": 32, "select": "random"},
            "sources": {"corpus": {"type": "text", "files": [str(corpus_file(tmp_path / "corpus.txt"))],
                                   "shard_size": 16}},
            "stages": [{"name": "general", "epochs": 2, "lr": 1e-3, "data": "corpus",
                        "losses": [{"type": "relation", "map": "last", "heads": 2},
                                   {"type": "hidden_mse", "map": "last", "embeddings": False}]}]}
    data.update(changes)
    return data


def test_general_distillation_saves_a_task_agnostic_encoder(tmp_path):
    teacher = pretrained_teacher(tmp_path / "teacher")
    run = api.distill(recipe_from_dict(general_recipe(tmp_path, teacher)))
    config = json.loads((run.student_dir / "config.json").read_text())
    assert config["architectures"] == ["BertModel"] and config["num_hidden_layers"] == 2
    assert config["hidden_size"] == 16
    report = run.report
    assert report["task"]["name"] == "general" and report["task"]["main_metric"] is None
    assert report["data"]["sources"] == {"corpus": 48} and report["training"]["optimizer_steps"] == 12
    assert report["training"]["best_metric"] is None  # nothing to select on: the last state is kept
    assert "feature-extraction" in (run.student_dir / "README.md").read_text()
    assert "Task-agnostic" in (run.path / "report.md").read_text()
    losses = [row for row in (run.path / "metrics.csv").read_text().splitlines() if ",relation" in row]
    assert losses  # the relation term was trained and logged


def test_transfer_fine_tunes_a_general_student_on_tasks(tmp_path, toy_task):
    teacher = pretrained_teacher(tmp_path / "teacher")
    (tmp_path / "general.yaml").write_text(yaml.safe_dump(general_recipe(tmp_path, teacher)))
    spec = tmp_path / "transfer.yaml"
    spec.write_text(yaml.safe_dump({"name": "xfer", "distill": "general.yaml", "output_dir": str(tmp_path / "out"),
                                    "tasks": [{"task": toy_task}], "seeds": [1, 2],
                                    "finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 16}}))
    result = api.transfer(spec)
    assert [(r["task"], r["seed"]) for r in result["rows"]] == [("toy", 1), ("toy", 2)]
    assert all(0 <= r["dev"] <= 100 for r in result["rows"])
    finetuned = json.loads((tmp_path / "out" / "xfer" / "toy-s1" / "student" / "config.json").read_text())
    assert finetuned["architectures"] == ["BertForSequenceClassification"]


def test_a_general_student_fine_tunes_directly_with_a_fresh_head(tmp_path, toy_task):
    teacher = pretrained_teacher(tmp_path / "teacher")
    run = api.distill(recipe_from_dict(general_recipe(tmp_path, teacher)))
    tuned = api.finetune(str(run.student_dir), toy_task, name="tuned", output_dir=str(tmp_path / "out"), epochs=1,
                         batch_size=8, max_length=16, speed=False)
    assert tuned.report["models"][-1]["metrics"]["accuracy"] >= 0


@pytest.mark.parametrize("change, expected", [
    ({"stages": [{"name": "s", "losses": [{"type": "hidden_mse"}]}]},
     "stages.0.data: a run without a task trains on its sources only"),
    ({"stages": [{"name": "s", "data": "corpus", "losses": [{"type": "prediction"}]}]},
     "stages.0.losses: prediction compares the models' task heads"),
    ({"stages": [{"name": "s", "data": "corpus", "evaluate": True, "losses": [{"type": "hidden_mse"}]}]},
     "stages.0.evaluate: a run without a task has no dev set"),
    ({"sources": {"corpus": {"type": "text", "files": ["/no/such/corpus.txt"]}}},
     "/no/such/corpus.txt"),
    ({"stages": [{"name": "s", "data": "corpus", "losses": [{"type": "attention_kl", "map": "last"}]}]},
     "stages.s.losses.0: attention_kl compares each model's own heads, but the student has 2 and the teacher 4"),
])
def test_bad_task_agnostic_recipes_are_one_line_and_exit_2(tmp_path, capsys, change, expected):
    teacher = pretrained_teacher(tmp_path / "teacher")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(general_recipe(tmp_path, teacher, **change)))
    capsys.readouterr()
    assert main(["distill", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists()


def test_importance_selection_without_labels_is_refused(tmp_path):
    teacher = pretrained_teacher(tmp_path / "teacher")
    data = general_recipe(tmp_path, teacher)
    data["student"]["select"] = "importance"
    with pytest.raises(AlembertError, match="importance needs labelled training examples"):
        api.distill(recipe_from_dict(data))
    assert not (tmp_path / "out").exists()
