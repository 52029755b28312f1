"""Token classification and extractive QA through the engine, on tiny random models: the teacher cache against the
live teacher, whole runs through the CLI (finetune, distill, eval, export), resume, and what a run refuses."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification

from alembert import api
from alembert.cli import main
from alembert.data.encoded import encode_examples
from alembert.engine import teacher_cache
from alembert.errors import AlembertError
from alembert.models.features import FeatureRequest, FeatureTap
from alembert.onnx_check import make_session
from alembert.recipe import recipe_from_dict
from alembert.tasks import get_task
from conftest import write_tokenizer
from kinds_data import qa_task, save, tiny_reader, tiny_tagger, token_task
from test_resume import CrashAt, _assert_same_run
from test_teacher_cache import _assert_close_fp16, _shuffled

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
KINDS = {"tokens": (token_task, tiny_tagger, AutoModelForTokenClassification, ["logits"], "entity_f1"),
         "qa": (qa_task, tiny_reader, AutoModelForQuestionAnswering, ["start_logits", "end_logits"], "f1")}
REQUEST = FeatureRequest(hidden=frozenset({0, 2}), attention=frozenset({4}))


@pytest.mark.parametrize("kind", KINDS)
def test_cached_per_token_logits_match_the_live_teacher(tmp_path, kind):
    make_task, make_model = KINDS[kind][:2]
    task = get_task(make_task(tmp_path))
    teacher = make_model().eval()
    data = encode_examples(task.load("train"), write_tokenizer(tmp_path / "tok"), 24)
    cache = teacher_cache.build_cache(tmp_path / "c", "k", teacher, data, REQUEST)
    assert cache.token_logits and cache.arrays["logits"].shape == (sum(data.lengths), 5 if kind == "tokens" else 2)
    tap, padded = FeatureTap(teacher, REQUEST), False
    for batch in _shuffled(data, 7):
        with torch.no_grad():
            live = tap.run(batch.inputs())
        mask = batch.attention_mask
        cached = cache.features(mask, batch.example_id.numpy(), REQUEST)
        padded = padded or bool(mask.min() == 0)
        assert cached.logits.shape == live.logits.shape
        real = mask.bool()
        torch.testing.assert_close(cached.logits[real], live.logits[real], atol=1e-5, rtol=1e-5)  # fp32, exact
        assert (cached.logits[~real] == 0).all()  # padding is not stored
        _assert_close_fp16(cached.hidden[2], live.hidden[2], mask)
    tap.close()
    assert padded


def _kd_recipe(tmp_path, task, teacher, name, **changes):
    data = {"name": name, "task": task, "teacher": str(teacher) if teacher else None,
            "output_dir": str(tmp_path / "out"),
            "student": {"init": "extract", "layers": 2}, "max_length": 24, "batch_size": 8, "speed": False,
            "cache_dir": str(tmp_path / "cache"),
            "stages": [{"name": "kd", "epochs": 2, "lr": 1e-3, "eval_every": 3,
                        "losses": [{"type": "prediction", "alpha": 0.5, "temperature": 2.0}]}]}
    data.update(changes)
    return recipe_from_dict(data)


@pytest.mark.parametrize("kind", KINDS)
def test_training_from_the_cache_equals_training_from_the_live_teacher(tmp_path, kind):
    make_task, make_model = KINDS[kind][:2]
    task, teacher = make_task(tmp_path), save(make_model(), tmp_path / "teacher")
    live = api.distill(_kd_recipe(tmp_path, task, teacher, "live", teacher_cache=False))
    cached = api.distill(_kd_recipe(tmp_path, task, teacher, "cached"))
    assert cached.report["teacher_cache"]["enabled"] and not live.report["teacher_cache"]["enabled"]
    a, b = (load_file(run.student_dir / "model.safetensors") for run in (live, cached))
    # softmax over a window's positions ignores a shift of all its logits, so the QA head's bias (and the last
    # LayerNorm's bias, through it) get gradients of float noise only, which Adam turns into steps of lr's size
    noise_only = {"qa_outputs.bias", "bert.encoder.layer.1.output.LayerNorm.bias"} if kind == "qa" else set()
    assert max((a[k] - b[k]).abs().max().item() for k in a if k not in noise_only) < 1e-6  # logits kept in fp32
    assert live.report["training"]["evaluations"] == cached.report["training"]["evaluations"]


@pytest.mark.parametrize("kind", KINDS)
def test_finetune_distill_eval_and_export_through_the_cli(tmp_path, kind, capsys):
    make_task, make_model, auto, outputs, metric = KINDS[kind]
    task = make_task(tmp_path)
    (tmp_path / "task.yaml").write_text(json.dumps(task))
    base = save(make_model(), tmp_path / "base")
    out = tmp_path / "out"
    assert main(["finetune", "--model", str(base), "--task", str(tmp_path / "task.yaml"), "--name", "teacher",
                 "--output-dir", str(out), "--epochs", "2", "--lr", "1e-3", "--batch-size", "8",
                 "--max-length", "24"]) == 0
    assert main(["distill", str(RECIPES / "tinybert.yaml"), "--set", f"task={json.dumps(task)}", "--set",
                 f"teacher={out / 'teacher' / 'student'}", "--set", f"output_dir={out}", "--set", "name=student",
                 "--set", "max_length=24", "--set", "batch_size=8", "--set", "train_limit=null",
                 "--set", "student.layers=2"]) == 0
    report = json.loads((out / "student" / "report.json").read_text())
    assert report["task"]["kind"] == get_task(task).kind and report["task"]["main_metric"] == metric
    assert {m["name"] for m in report["models"]} == {"teacher", "student"}
    assert all(metric in m["metrics"] and "speed" in m for m in report["models"])
    card = (out / "student" / "student" / "README.md").read_text()
    assert f"Load it with `{auto.__name__}.from_pretrained(path)`" in card
    student = auto.from_pretrained(out / "student" / "student")  # loads without alembert
    assert student.config.num_hidden_layers == 2
    if kind == "tokens":
        assert student.config.id2label[1] == "B-ACT"
    capsys.readouterr()
    assert main(["eval", str(out / "student" / "student"), "--task", str(tmp_path / "task.yaml")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert set(scored["metrics"]) == set(report["task"]["metrics"])
    assert main(["export", str(out / "student" / "student"), "--onnx", "--int8", "--task",
                 str(tmp_path / "task.yaml")]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["fp32"]["max_abs_diff"] <= 1e-4 and 0 <= exported["int8"]["argmax_agreement"] <= 1
    fp32, onnx = exported["task"]["metrics"]["torch-fp32"], exported["task"]["metrics"]["onnx-fp32"]
    assert abs(fp32[metric] - onnx[metric]) <= 0.1
    session = make_session(out / "student" / "student" / "onnx" / "model.onnx")
    assert [o.name for o in session.get_outputs()] == outputs


def test_a_token_classification_run_resumes_bit_for_bit(tmp_path):
    task, teacher = token_task(tmp_path), save(tiny_tagger(), tmp_path / "teacher")
    changes = {"checkpoint_every": 1, "stages": [
        {"name": "ild", "epochs": 1, "lr": 1e-3, "losses": [{"type": "hidden_mse"}, {"type": "attention_kl"}]},
        {"name": "kd", "epochs": 2, "lr": 1e-3, "eval_every": 3, "losses": [{"type": "prediction", "alpha": 0.5}]}]}
    whole = api.distill(_kd_recipe(tmp_path, task, teacher, "whole", **changes))
    recipe = _kd_recipe(tmp_path, task, teacher, "crashed", **changes)
    with pytest.raises(KeyboardInterrupt):
        api.distill(recipe, plugins=[CrashAt("kd", 4)])
    _assert_same_run(whole.path, api.distill(recipe, resume=True).path)


@pytest.mark.parametrize("change, match", [
    ({"stress": {"downsample": 10}}, "stress: the stress transforms change class labels; task toy-ner is "
                                     "token_classification"),
    ({"plugins": [{"type": "mixup"}]}, "stages.0.plugins: mixup mixes inputs"),
    ({"sources": {"more": {"type": "text", "files": ["x.txt"]}}}, "sources.more: task toy-ner is "
                                                                  "token_classification, which trains on labelled"),
])
def test_what_needs_one_class_label_per_example_is_refused(tmp_path, change, match):
    task, teacher = token_task(tmp_path), save(tiny_tagger(), tmp_path / "teacher")
    changes = dict(change)
    if "plugins" in changes:  # mixup is a stage's plugin here, with alpha 1 as it requires
        changes = {"stages": [{"name": "kd", "epochs": 1, "lr": 1e-3, "plugins": changes["plugins"],
                               "losses": [{"type": "prediction", "alpha": 1.0}]}]}
    with pytest.raises(AlembertError, match=match):
        api.distill(_kd_recipe(tmp_path, task, teacher, "refused", **changes))


def test_a_model_of_another_kind_is_refused_by_eval_and_export(tmp_path):
    task = qa_task(tmp_path)
    tagger = save(tiny_tagger(), tmp_path / "tagger")
    with pytest.raises(AlembertError, match="no trained question-answering head"):
        api.evaluate(str(tagger), task)
    from alembert.export import export_onnx

    with pytest.raises(AlembertError, match="a token-classification model, but task toy-qa is extractive_qa"):
        export_onnx(tagger, task=task)
    assert not (tagger / "onnx").exists()


def test_two_teachers_of_one_vocabulary_teach_a_tagger(tmp_path):
    task = token_task(tmp_path)
    teachers = [{"path": str(save(tiny_tagger(seed), tmp_path / f"t{seed}")), "name": f"t{seed}"} for seed in (0, 1)]
    run = api.distill(_kd_recipe(tmp_path, task, None, "two", teachers=teachers))
    assert [m["name"] for m in run.report["models"]] == ["teacher:t0", "teacher:t1", "student"]
    assert run.report["teacher_caches"][1]["enabled"]


def test_two_processes_match_one_for_a_tagger(tmp_path):
    """DDP: each process averages its share's per-example values, which is the whole batch's average."""
    import yaml

    from test_distributed import TOLERANCE, _launch_two, _losses, _run

    teacher = tiny_tagger(seed=3)
    teacher.config.hidden_dropout_prob = teacher.config.attention_probs_dropout_prob = 0.0  # students inherit it
    save(teacher, tmp_path / "teacher")
    recipe = {"task": token_task(tmp_path, train=48), "teacher": str(tmp_path / "teacher"),
              "output_dir": str(tmp_path / "out"), "student": {"init": "extract", "layers": 2}, "max_length": 24,
              "batch_size": 8, "speed": False,
              "stages": [{"name": "kd", "epochs": 2, "lr": 5e-3, "eval_every": 3, "warmup": 0,
                          "losses": [{"type": "prediction", "alpha": 0.5, "temperature": 2.0}]}]}
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(dict(recipe, name=name)))
    _run(["-m", "alembert", "distill", str(tmp_path / "one.yaml")])
    _launch_two("distill", str(tmp_path / "two.yaml"))
    one, two = _losses(tmp_path / "out" / "one"), _losses(tmp_path / "out" / "two")
    assert one.keys() == two.keys()
    assert all(abs(one[k] - two[k]) <= max(TOLERANCE * abs(one[k]), 1e-6) for k in one)
    a, b = (load_file(tmp_path / "out" / n / "student" / "model.safetensors") for n in ("one", "two"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= TOLERANCE
