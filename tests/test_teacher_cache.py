"""The teacher-output cache: the same features and the same training as a live teacher, and never a stale or
corrupt cache."""
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from alembert import api
from alembert.data.encoded import EncodedExamples
from alembert.data.samplers import Shuffled
from alembert.data.encoded import StageData
from alembert.engine import teacher_cache, teachers
from alembert.engine.plugins import Plugin
from alembert.evaluation.scoring import in_order
from alembert.models.features import FeatureRequest, FeatureTap
from alembert.recipe import recipe_from_dict
from alembert.tasks import Example
from conftest import WORDS, tiny_bert, write_tokenizer

FP16_RELATIVE = 2.0 ** -11  # the stated bound on a cached value's rounding
REQUEST = FeatureRequest(hidden=frozenset({0, 2, 4}), attention=frozenset({2, 4}), qkv=frozenset({3}))


def _varied_csv(path, rows, seed):
    """Sentences of 2 to 12 words, so batches carry real padding."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for _ in range(rows):
        label = rng.randint(0, 1)
        word = rng.choice(["good", "great"] if label else ["bad", "awful"])
        filler = [rng.choice(WORDS[6:]) for _ in range(rng.randint(1, 11))]
        lines.append(" ".join(filler[:1] + [word] + filler[1:]) + f",{label}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def varied_task(tmp_path):
    _varied_csv(tmp_path / "train.csv", 80, 1)
    _varied_csv(tmp_path / "dev.csv", 24, 2)
    return {"name": "varied", "format": "csv", "train": str(tmp_path / "train.csv"),
            "dev": str(tmp_path / "dev.csv"), "text_columns": ["text"]}


def _examples(n=40, seed=0):
    rng = random.Random(seed)
    return [Example(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14))), None, rng.randint(0, 1))
            for _ in range(n)]


def _assert_close_fp16(cached, live, mask):
    """Real positions agree to fp16 rounding (plus float noise from a different batch shape)."""
    keep = mask.bool()
    while keep.dim() < live.dim():
        keep = keep.unsqueeze(-1)
    keep = keep.expand_as(live)
    difference = (cached - live).abs()[keep]
    assert (difference <= live.abs()[keep] * FP16_RELATIVE + 1e-5).all(), difference.max()


def test_cached_features_match_live_ones_on_padded_batches(tmp_path):
    teacher = tiny_bert().eval()
    tokenizer = write_tokenizer(tmp_path / "tok")
    data = EncodedExamples(_examples(), tokenizer, max_length=16)
    cache = teacher_cache.build_cache(tmp_path / "c", "k", teacher, data, REQUEST)
    tap = FeatureTap(teacher, REQUEST)
    for batch in _shuffled(data, 7):
        with torch.no_grad():
            live = tap.run(batch.inputs())
        mask = batch.attention_mask
        cached = cache.features(mask, batch.example_id.numpy(), REQUEST)
        assert mask.min() == 0  # this batch is padded
        torch.testing.assert_close(cached.logits, live.logits, atol=1e-5, rtol=1e-5)
        for i in REQUEST.hidden:
            _assert_close_fp16(cached.hidden[i], live.hidden[i], mask)
        for layer in REQUEST.qkv:
            for c, l in zip(cached.qkv[layer], live.qkv[layer]):
                _assert_close_fp16(c.transpose(1, 2), l.transpose(1, 2), mask)
        for layer in REQUEST.attention:
            pairs = mask[:, None, :, None] * mask[:, None, None, :]
            real = pairs.expand_as(live.scores[layer]).bool()
            difference = (cached.scores[layer] - live.scores[layer]).abs()[real]
            assert (difference <= live.scores[layer].abs()[real] * FP16_RELATIVE + 1e-5).all()
            assert (cached.scores[layer][~real] <= -100).all()  # padding reads as masked
    tap.close()


def _shuffled(data, batch_size):
    stage = StageData({"task": data}, data.tokenizers.pad_ids())
    return torch.utils.data.DataLoader(stage, batch_sampler=Shuffled(stage, batch_size,
                                                                     torch.Generator().manual_seed(1)),
                                       collate_fn=stage.collate)


def _recipe(tmp_path, task, teacher_dir, name, **changes):
    recipe = {
        "name": name, "task": task, "teacher": str(teacher_dir), "output_dir": str(tmp_path / "out"),
        "student": {"init": "extract", "layers": 2}, "max_length": 16, "batch_size": 8, "speed": False,
        "cache_dir": str(tmp_path / "cache"),
        "stages": [
            {"name": "ild", "epochs": 2, "lr": 1e-3, "losses": [
                {"type": "hidden_mse"}, {"type": "attention_mse"}, {"type": "attention_kl", "map": "last"}]},
            {"name": "prediction", "epochs": 2, "lr": 1e-3, "eval_every": 5, "losses": [
                {"type": "prediction", "alpha": 0.7, "temperature": 2.0}]},
        ],
    }
    recipe.update(changes)
    return recipe_from_dict(recipe)


def _student(run):
    return load_file(run.student_dir / "model.safetensors")


def _max_difference(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_training_with_the_cache_equals_training_without(tmp_path, varied_task, tiny_teacher_dir, monkeypatch):
    live = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, "live", teacher_cache=False))
    cached = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, "cached"))
    assert live.report["teacher_cache"]["enabled"] is False
    info = cached.report["teacher_cache"]
    assert info["enabled"] and not info["reused"] and info["bytes"] > 0
    assert info["path"].startswith(str(tmp_path / "cache"))
    # fp16 storage: after 40 steps the students' weights (of order 0.1-1) differ by at most 3e-3 (1.1e-3 seen with
    # Engine v2's batch order; 1.6e-4 with the first engine's): rounding noise that training carries on
    assert _max_difference(_student(live), _student(cached)) < 3e-3
    live_history = [e["accuracy"] for e in live.report["training"]["evaluations"]]
    assert live_history == [e["accuracy"] for e in cached.report["training"]["evaluations"]]
    # stored in fp32 instead, the only difference left is float noise (1.2e-7 seen): the cache changes nothing
    monkeypatch.setattr(teacher_cache, "STORE_DTYPE", np.float32)
    exact = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, "cached32"))
    assert _max_difference(_student(live), _student(exact)) < 1e-5


def test_a_second_run_reuses_the_cache_and_a_changed_input_does_not(tmp_path, varied_task, tiny_teacher_dir):
    first = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, "a"))
    again = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, "b"))
    assert again.report["teacher_cache"]["reused"] and again.report["teacher_cache"]["path"] == \
        first.report["teacher_cache"]["path"]
    assert first.report["training"]["evaluations"] == again.report["training"]["evaluations"]
    paths = {first.report["teacher_cache"]["path"]}
    for name, change in [("len", {"max_length": 12}), ("data", {"train_limit": 60})]:
        run = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, name, **change))
        assert not run.report["teacher_cache"]["reused"], name  # a stale cache is never found
        paths.add(run.report["teacher_cache"]["path"])
    assert len(paths) == 3
    # other teacher weights, same everything else
    other = tmp_path / "other-teacher"
    tiny_bert(seed=5).save_pretrained(other)
    write_tokenizer(other)
    run = api.distill(_recipe(tmp_path, varied_task, other, "other"))
    assert not run.report["teacher_cache"]["reused"] and run.report["teacher_cache"]["path"] not in paths


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "drop meta", "bad meta", "drop a file"])
def test_a_corrupt_cache_is_detected_and_rebuilt(tmp_path, damage, caplog):
    teacher = tiny_bert().eval()
    data = EncodedExamples(_examples(), write_tokenizer(tmp_path / "tok"), max_length=16)

    bank = teachers.TeacherBank([teacher], lambda: torch.autocast("cpu", enabled=False), "fp32", 16)

    def prepare():
        bank.prepare("task", data, REQUEST, 2, tmp_path / "cache", False, None)
        return bank.caches["task", 0], bank.infos["task", 0]

    cache, info = prepare()
    batch = next(iter(in_order(data, 8)))
    before = cache.features(batch.attention_mask, batch.example_id, REQUEST)
    folder = teacher_cache.Path(info.path)
    hidden = folder / "hidden_2.npy"
    if damage == "flip a byte":
        raw = bytearray(hidden.read_bytes())
        raw[-3] ^= 0xFF
        hidden.write_bytes(bytes(raw))
    elif damage == "truncate":
        hidden.write_bytes(hidden.read_bytes()[:-100])
    elif damage == "drop meta":
        (folder / "meta.json").unlink()
    elif damage == "bad meta":
        (folder / "meta.json").write_text("{not json")
    else:
        hidden.unlink()
    rebuilt, info = prepare()
    assert not info.reused and "unusable" in caplog.text
    after = rebuilt.features(batch.attention_mask, batch.example_id, REQUEST)
    assert torch.equal(before.hidden[2], after.hidden[2]) and torch.equal(before.scores[4], after.scores[4])
    assert prepare()[1].reused  # and the rebuilt one is intact


class _Augmenter(Plugin):
    changes_inputs = True

    def transform_batch(self, batch, ctx):
        return batch


def test_the_teacher_runs_live_where_a_cache_would_be_wrong_or_useless(tmp_path, varied_task, tiny_teacher_dir):
    augmented = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, "aug"), plugins=[_Augmenter()])
    assert augmented.report["teacher_cache"] == {"path": None, "bytes": 0, "reused": False, "build_seconds": 0.0,
                                                 "enabled": False, "reason": "_Augmenter changes the inputs",
                                                 "shards": 0}
    once = _recipe(tmp_path, varied_task, tiny_teacher_dir, "once", stages=[
        {"name": "kd", "epochs": 1, "losses": [{"type": "prediction", "alpha": 1.0}]}])
    assert api.distill(once).report["teacher_cache"]["reason"] == "the teacher sees each input only once"
    assert not (tmp_path / "cache").exists()


def test_out_of_range_teacher_outputs_fall_back_to_a_live_teacher(tmp_path, varied_task, tiny_teacher_dir,
                                                                  monkeypatch):
    monkeypatch.setattr(teacher_cache, "FP16_MAX", 1e-3)
    run = api.distill(_recipe(tmp_path, varied_task, tiny_teacher_dir, "range"))
    info = run.report["teacher_cache"]
    assert not info["enabled"] and "exceed fp16's range" in info["reason"]
    assert not any((tmp_path / "cache").iterdir())  # the half-built cache was removed
