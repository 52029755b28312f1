"""RL-KD learns whom to trust: on real SST-2 sentences, with a real all-MiniLM-L6-v2 teacher fine-tuned briefly, a
pool of three teachers where one is wrong on purpose (the good teacher with its two head rows swapped, so it
predicts the other class with the same confidence) ends up selected clearly less than the other two."""
import shutil

import pytest
from safetensors.torch import load_file, save_file

from alembert import api
from alembert.recipe import recipe_from_dict
from conftest import skip_without_minilm_and_data

pytestmark = pytest.mark.integration

COMMON = {"task": "sst2", "train_limit": 512, "data_seed": 0, "dev_limit": 100, "seed": 0, "max_length": 32,
          "batch_size": 32, "speed": False}


def _derive(teacher, folder, how: str):
    """A copy of `teacher` whose head is changed: 'wrong' swaps the two rows (every prediction flipped, confidence
    kept); 'hedged' halves them (the same predictions, less sure)."""
    shutil.copytree(teacher, folder)
    weights = load_file(folder / "model.safetensors")
    for key in ("classifier.weight", "classifier.bias"):
        weights[key] = (weights[key][[1, 0]] if how == "wrong" else weights[key] * 0.5).contiguous()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_rl_kd_selects_a_teacher_that_is_wrong_on_purpose_clearly_less(tmp_path):
    skip_without_minilm_and_data()
    cache = {"output_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}
    # the embeddings stay frozen throughout: 12 of MiniLM's 23M parameters, not what this test is about
    teacher = api.distill(recipe_from_dict({
        **COMMON, **cache, "name": "teacher", "teacher": None,
        "student": {"init": "checkpoint", "source": "sentence-transformers/all-MiniLM-L6-v2"},
        "stages": [{"name": "finetune", "epochs": 2, "lr": 1e-4, "freeze": ["embeddings"],
                    "losses": [{"type": "prediction", "alpha": 0.0}]}]}))
    assert teacher.report["models"][-1]["metrics"]["accuracy"] > 65  # the teacher learned the task
    good = teacher.student_dir
    pool = [("good", good), ("hedged", _derive(good, tmp_path / "hedged", "hedged")),
            ("wrong", _derive(good, tmp_path / "wrong", "wrong"))]
    loss = {"type": "prediction", "alpha": 0.7, "temperature": 2.0}
    run = api.distill(recipe_from_dict({
        **COMMON, **cache, "name": "rlkd", "teachers": [{"name": n, "path": str(p)} for n, p in pool],
        "student": {"init": "extract", "layers": 2},
        "stages": [{"name": "mean", "epochs": 1, "lr": 1e-4, "freeze": ["embeddings"], "losses": [loss]},
                   {"name": "rl", "epochs": 2, "lr": 1e-4, "freeze": ["embeddings"], "losses": [loss],
                    "plugins": [{"type": "rl_kd", "reward": "student_loss", "lr": 0.05}]}]}))
    summary = run.report["teacher_selection"]["rl"]
    print("teacher:", teacher.report["models"][-1]["metrics"], "selection:", summary)
    rate, last = summary["selection_rate"], summary["over_time"][-1]["select"]
    assert summary["right_share"]["wrong"] < 0.3 < summary["right_share"]["good"]  # the pool is what it says
    assert rate["wrong"] < min(rate["good"], rate["hedged"]) - 0.1
    assert last["wrong"] < min(last["good"], last["hedged"]) - 0.15 and last["wrong"] < 0.4
    assert summary["mean_pi"]["wrong"] < 0.45 < summary["mean_pi"]["good"]
    assert (run.path / "selector" / "selection.png").is_file()
