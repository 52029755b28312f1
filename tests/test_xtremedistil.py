"""XtremeDistil's task transfer (recipes/xtremedistil.yaml) end to end on tiny random models: the top-aligned
multi-layer map, attention-probability MSE, the transfer set as a mixture of the task's text and a corpus, and the
released stages' gradual unfreezing; then the student fine-tuned on another task."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from alembert import api
from alembert.engine.plugins import Plugin
from alembert.losses import AttentionProbMSE
from alembert.mapping import attention_map, layer_map
from alembert.errors import AlembertError
from alembert.recipe import load_recipe
from test_task_agnostic import corpus_file

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "xtremedistil.yaml"


class Trainable(Plugin):
    """Records which parameter groups train at each optimizer step."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def after_step(self, ctx, parts) -> None:
        groups = {name.split(".")[0] if not name.startswith("bert.") else "encoder"
                  for name, p in ctx.student.named_parameters() if p.requires_grad}
        self.seen.append((ctx.stage.name, ctx.step, frozenset(groups)))


def _overrides(tmp_path, toy_task, teacher) -> list[str]:
    corpus = corpus_file(tmp_path / "corpus.txt", lines=40)
    return [f"teacher={teacher}", f"task={json.dumps(toy_task)}", f"output_dir={tmp_path / 'out'}",
            f"cache_dir={tmp_path / 'cache'}", f"sources.corpus.files={json.dumps([str(corpus)])}",
            "student.layers=2", "student.hidden=16", "student.heads=4", "student.ffn=32",
            "student.importance_examples=16", "max_length=16", "batch_size=16", "speed=false",
            "stages.0.epochs=1", "stages.0.lr=1e-3", "stages.1.epochs=2", "stages.1.lr=1e-3", "stages.2.lr=1e-3",
            "stages.2.epochs=2",
            # a BERT student's head is classifier, its encoder bert.*
            'stages.1.unfreeze={"groups": [["classifier"], ["bert."]], "every_epochs": 1.0}',
            'stages.2.unfreeze={"groups": [["classifier"], ["bert."]], "every_epochs": 1.0}']


def test_xtremedistil_runs_its_stages_with_gradual_unfreezing(tmp_path, toy_task, tiny_teacher_dir):
    recipe = load_recipe(RECIPE, _overrides(tmp_path, toy_task, tiny_teacher_dir))
    watch = Trainable()
    run = api.distill(recipe, plugins=[watch])
    stages = [s["name"] for s in run.report["stages"]]
    assert stages == ["representation", "logits", "labels"]
    assert run.report["data"]["sources"] == {"corpus": 40}
    for stage in ("logits", "labels"):
        steps = [groups for name, _, groups in watch.seen if name == stage]
        half = len(steps) // 2
        assert all(g == {"classifier"} for g in steps[:half]), stage  # the head alone first
        assert all(g == {"classifier", "encoder"} for g in steps[half:]), stage  # then the encoder too
    assert all(g == {"classifier", "encoder"} for name, _, g in watch.seen if name == "representation")
    assert run.report["training"]["best_stage"] == "labels"
    logged = (run.path / "metrics.csv").read_text()
    assert "attention_prob_mse" in logged and "hidden_mse" in logged


def test_the_top_aligned_map_pairs_the_student_with_the_teachers_top_layers():
    assert layer_map("top_aligned", 4, 12) == [(0, 8), (1, 9), (2, 10), (3, 11), (4, 12)]
    assert attention_map("top_aligned", 4, 12) == [(1, 9), (2, 10), (3, 11), (4, 12)]
    with pytest.raises(AlembertError, match="needs student_layers <= teacher_layers"):
        layer_map("top_aligned", 6, 4)


def test_attention_probability_mse_is_zero_for_equal_maps_and_ignores_padded_queries():
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 4, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    loss = AttentionProbMSE()
    assert loss(scores, scores.clone(), mask).item() == 0
    other = scores.clone()
    other[0, :, 3] += 5.0  # the padded query row of example 0 only
    assert loss.per_example(scores, other, mask)[0].item() == pytest.approx(0, abs=1e-7)
    probs = torch.softmax(scores, -1), torch.softmax(other, -1)
    expected = (probs[0] - probs[1]).pow(2).mean()
    assert loss(scores, other).item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_task_transfer_student_fine_tunes_on_another_task(tmp_path, toy_task, tiny_teacher_dir):
    from alembert.recipe.overrides import apply_overrides

    data = apply_overrides(yaml.safe_load(RECIPE.read_text()), _overrides(tmp_path, toy_task, tiny_teacher_dir))
    (tmp_path / "xd.yaml").write_text(yaml.safe_dump(data))
    spec = tmp_path / "transfer.yaml"
    spec.write_text(yaml.safe_dump({"name": "xfer", "distill": "xd.yaml", "output_dir": str(tmp_path / "out"),
                                    "tasks": [{"task": toy_task}],
                                    "finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 16}}))
    result = api.transfer(spec)
    assert [r["task"] for r in result["rows"]] == ["toy"] and 0 <= result["rows"][0]["dev"] <= 100
    encoder = json.loads((tmp_path / "out" / "xfer" / "encoder" / "config.json").read_text())
    assert encoder["architectures"] == ["BertModel"]  # the SST-2-like head dropped: the task gets a fresh one
