"""Several teachers: the combination rules exact on hand-made logits, teachers with their own tokenizers in one
batch, and RL-KD's selector running on the training loop."""
import json
import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from alembert import api
from alembert.data.encoded import EncodedExamples
from alembert.engine.combine import TeacherCombination, gold_losses
from alembert.evaluation.scoring import in_order
from alembert.errors import AlembertError
from alembert.losses import PredictionLoss
from alembert.recipe import CombineSpec, TeacherSpec, recipe_from_dict
from alembert.tasks import Example
from conftest import WORDS, tiny_bert, write_tokenizer

LOGITS = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],     # example 0: teacher 0 says class 0, teacher 1 class 1
                       [[0.0, 3.0], [1.0, 1.0]]])    # example 1: teacher 0 sure of class 1, teacher 1 unsure
LABELS = torch.tensor([0, 1])


def _log_p(logits, label):
    return logits[label] - torch.logsumexp(logits, 0)


def test_gold_losses_are_each_teachers_cross_entropy_or_squared_error():
    expected = torch.tensor([[-_log_p(LOGITS[0, 0], 0), -_log_p(LOGITS[0, 1], 0)],
                             [-_log_p(LOGITS[1, 0], 1), -_log_p(LOGITS[1, 1], 1)]])
    assert torch.allclose(gold_losses(LOGITS, LABELS, regression=False), expected)
    predictions = torch.tensor([[[0.5], [2.0]], [[1.0], [4.0]]])
    assert torch.allclose(gold_losses(predictions, torch.tensor([1.0, 3.0]), regression=True),
                          torch.tensor([[0.25, 1.0], [4.0, 1.0]]))


@pytest.mark.parametrize("rule, expected", [
    ("mean", [[0.5, 0.5], [0.5, 0.5]]),
    ("fixed", [[0.75, 0.25], [0.75, 0.25]]),  # weights 3 and 1
])
def test_mean_and_fixed_rules_give_every_example_the_same_shares(rule, expected):
    teachers = [TeacherSpec(path="a", weight=3.0), TeacherSpec(path="b", weight=1.0)]
    weights = TeacherCombination(CombineSpec(rule=rule), teachers, regression=False)(LOGITS, LABELS)
    assert torch.allclose(weights, torch.tensor(expected))


def test_confidence_rule_is_a_softmax_of_minus_the_gold_loss_over_teachers():
    teachers = [TeacherSpec(path="a"), TeacherSpec(path="b")]
    weights = TeacherCombination(CombineSpec(rule="confidence", temperature=2.0), teachers, False)(LOGITS, LABELS)
    p = torch.tensor([[_log_p(LOGITS[0, 0], 0).exp(), _log_p(LOGITS[0, 1], 0).exp()],
                      [_log_p(LOGITS[1, 0], 1).exp(), _log_p(LOGITS[1, 1], 1).exp()]])
    expected = p.sqrt() / p.sqrt().sum(1, keepdim=True)  # softmax(log p / 2) = p^(1/2), normalised
    assert torch.allclose(weights, expected)
    assert weights[0, 0] > weights[0, 1] and weights[1, 0] > weights[1, 1]  # the teacher that is right counts more


def _kl(teacher_logits, student_logits, tau):
    p_t = torch.softmax(teacher_logits / tau, 0)
    return float((p_t * (p_t.log() - torch.log_softmax(student_logits / tau, 0))).sum())


def test_prediction_loss_weighs_each_examples_loss_against_each_teacher():
    student = torch.tensor([[0.5, 0.5], [0.0, 2.0]])
    weights = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    tau = 2.0
    value, parts = PredictionLoss(alpha=1.0, temperature=tau)(student, LOGITS, None, teacher_weights=weights)
    per_example = [sum(float(weights[j, k]) * _kl(LOGITS[j, k], student[j], tau) for k in range(2))
                   for j in range(2)]
    assert math.isclose(float(value), tau ** 2 * sum(per_example) / 2, rel_tol=1e-5)
    # an example whose teachers are all deselected learns from none: only the other example's loss is left
    none = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    value, _ = PredictionLoss(alpha=1.0, temperature=tau)(student, LOGITS, None, teacher_weights=none)
    assert math.isclose(float(value), tau ** 2 * _kl(LOGITS[1, 0], student[1], tau) / 2, rel_tol=1e-5)
    # one teacher with weight 1 is exactly the one-teacher loss
    single, _ = PredictionLoss(alpha=1.0, temperature=tau)(student, LOGITS[:, 0], None)
    alone, _ = PredictionLoss(alpha=1.0, temperature=tau)(student, LOGITS[:, :1], None,
                                                          teacher_weights=torch.ones(2, 1))
    assert torch.allclose(single, alone)


def _permuted_tokenizer(folder):
    """The same words under other ids: a different vocabulary, so this teacher reads its own tokens."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *reversed(WORDS)]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    tokenizer.save_pretrained(folder)
    return tokenizer


def test_teachers_with_their_own_tokenizers_read_their_own_tokens_in_one_batch(tmp_path):
    student_tok = write_tokenizer(tmp_path / "student")
    other = _permuted_tokenizer(tmp_path / "other")
    longer = write_tokenizer(tmp_path / "longer", extra_words=("superb",))
    examples = [Example("the movie was good", None, 1), Example("a superb plot", None, 1),
                Example("awful", None, 0)]
    data = EncodedExamples(examples, student_tok, 16, [None, other, longer])
    batch = next(iter(in_order(data, 3)))
    assert "teacher0" not in batch.views  # teacher 0 shares the student's tokens
    assert torch.equal(batch.teacher_inputs(0)["input_ids"], batch.inputs()["input_ids"])
    for k, tokenizer in ((1, other), (2, longer)):
        view = batch.teacher_inputs(k)
        for row, example in enumerate(examples):
            ids = tokenizer(example.text_a)["input_ids"]
            assert view["input_ids"][row, :len(ids)].tolist() == ids
            assert view["attention_mask"][row].sum() == len(ids)
    assert not torch.equal(batch.teacher_inputs(1)["input_ids"], batch.inputs()["input_ids"])
    assert batch.teacher_inputs(2)["input_ids"][1, 2] == longer.convert_tokens_to_ids("superb")
    assert student_tok.convert_tokens_to_ids("superb") == student_tok.unk_token_id


def _teacher(folder, tokenizer_writer, seed):
    tokenizer = tokenizer_writer(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


def _recipe(tmp_path, task, teachers, combine, stages=None, **changes):
    data = {"name": "multi", "task": task, "teachers": teachers, "combine": combine,
            "output_dir": str(tmp_path / "out"), "student": {"init": "extract", "layers": 1}, "max_length": 16,
            "batch_size": 8, "speed": False, "cache_dir": str(tmp_path / "cache"),
            "stages": stages or [{"name": "kd", "epochs": 2, "lr": 1e-3,
                                  "losses": [{"type": "prediction", "alpha": 0.5, "temperature": 2.0}]}],
            **changes}
    return recipe_from_dict(data)


def test_two_teachers_with_different_tokenizers_distil_one_student(tmp_path, toy_task):
    first = _teacher(tmp_path / "first", write_tokenizer, 0)
    second = _teacher(tmp_path / "second", _permuted_tokenizer, 1)
    run = api.distill(_recipe(tmp_path, toy_task, [{"path": first, "name": "a"}, {"path": second, "name": "b"}],
                              {"rule": "confidence"}))
    names = [m["name"] for m in run.report["models"]]
    assert names == ["teacher:a", "teacher:b", "student"]
    assert run.report["combine"] == "confidence" and [t["name"] for t in run.report["teachers"]] == ["a", "b"]
    caches = run.report["teacher_caches"]  # each teacher has its own output cache, built from its own tokens
    assert [c["enabled"] for c in caches] == [True, True] and caches[0]["path"] != caches[1]["path"]
    assert run.report["teacher_cache"] == caches[0] and run.report["training"]["examples_seen"] == 2 * 96
    with open(run.path / "metrics.csv") as f:
        keys = {line.split(",")[2] for line in f}
    assert {"weight/a", "weight/b"} <= keys
    assert (run.path / "teachers.png").is_file()


def test_one_teacher_in_a_list_or_twice_under_mean_trains_the_same_student_as_teacher(tmp_path, toy_task,
                                                                                   tiny_teacher_dir):
    stages = [{"name": "kd", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}]
    base = dict(student={"init": "extract", "layers": 2}, stages=stages)
    single = api.distill(recipe_from_dict({
        "name": "single", "task": toy_task, "teacher": str(tiny_teacher_dir), "output_dir": str(tmp_path / "out"),
        "max_length": 16, "batch_size": 8, "speed": False, "cache_dir": str(tmp_path / "cache"), **base}))
    twice = api.distill(_recipe(tmp_path, toy_task, [{"path": str(tiny_teacher_dir)}] * 2, {"rule": "mean"},
                                name="twice", **base))
    with pytest.raises(AlembertError, match="names must be unique"):
        _recipe(tmp_path, toy_task, [{"path": "x", "name": "a"}, {"path": "y", "name": "a"}], {})
    student = lambda run: json.loads((run.path / "report.json").read_text())["models"][-1]["metrics"]  # noqa: E731
    assert student(single) == student(twice)
    assert [m["name"] for m in twice.report["models"]] == ["teacher:t0", "teacher:t1", "student"]


@pytest.mark.parametrize("changes, message", [
    ({"teacher": "t"}, "set either teacher"),
    ({"stages": [{"name": "ild", "losses": [{"type": "hidden_mse"}]}]}, "only prediction losses"),
    ({"assistant": {}}, "exactly one teacher"),
    ({"plugins": [{"type": "rl_kd"}], "sources": {"extra": {"type": "text", "files": ["x.txt"]}},
      "stages": [{"name": "kd", "data": "task+extra", "losses": [{"type": "prediction", "alpha": 1.0}]}]},
     "rl_kd weighs teachers by the gold labels"),
    ({"combine": {"rule": "confidence"}, "stages": [{"name": "kd", "plugins": [{"type": "mixup"}],
                                                     "losses": [{"type": "prediction", "alpha": 1.0}]}]},
     "only prediction losses are supported .intermediate-layer losses and mixup need one teacher"),
    ({"combine": {"rule": "best"}}, "combine.rule: .*unknown teacher-combination rule 'best'"),
    ({"combine": {"rule": "rl"}}, "rule 'rl' is now the rl_kd plugin"),
    ({"plugins": [{"type": "rl_kd", "reward": "accuracy"}]}, "plugins.0.rl_kd.reward"),
])
def test_recipe_rejects_what_several_teachers_cannot_do(changes, message):
    data = {"name": "x", "task": "sst2", "teachers": [{"path": "a"}, {"path": "b"}],
            "student": {"init": "extract", "layers": 2},
            "stages": [{"name": "kd", "losses": [{"type": "prediction", "alpha": 0.5}]}], **changes}
    with pytest.raises(AlembertError, match=message):
        recipe_from_dict(data)


@pytest.mark.parametrize("selector", [
    {"reward": "student_loss", "warmup": 0.5},
    {"reward": "distill_loss", "action": "soft", "policy": "shared", "baseline": "ema"},
    {"reward": "dev_metric", "episode": 3, "dev_limit": 16, "hidden": 8, "state": ["probs", "divergence"]},
])
def test_rl_kd_selects_teachers_per_example_and_keeps_its_policy(tmp_path, toy_task, tiny_teacher_dir, selector):
    weak = tmp_path / "weak"
    tiny_bert(seed=5).save_pretrained(weak)
    write_tokenizer(weak)
    stages = [{"name": "mean", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]},
              {"name": "rl", "epochs": 2, "lr": 1e-3, "plugins": [{"type": "rl_kd", **selector}],
               "losses": [{"type": "prediction", "alpha": 0.5, "temperature": 2.0}]}]
    run = api.distill(_recipe(tmp_path, toy_task, [{"path": str(tiny_teacher_dir), "name": "strong"},
                                                   {"path": str(weak), "name": "weak"}],
                              {"rule": "mean"}, stages, student={"init": "extract", "layers": 2}))
    selection = run.report["teacher_selection"]
    assert list(selection) == ["rl"]  # the equal-weight stage first, the policy idle
    summary = selection["rl"]
    steps = 2 * 96 // 8
    warmup = round(selector.get("warmup", 0) * 96 / 8)
    assert summary["warmup_steps"] == warmup
    episode = selector.get("episode", 1)
    assert summary["episodes"] == summary["policy_updates"] == (steps - warmup) // episode
    for key in ("selection_rate", "mean_pi", "selection_rate_when_right", "selection_rate_when_wrong", "right_share"):
        assert set(summary[key]) == {"strong", "weak"} and all(0 <= r <= 1 for r in summary[key].values()), key
    assert 0 <= summary["no_teacher_share"] <= 1 and 0 < summary["entropy"] <= math.log(2) + 1e-6
    assert summary["reward"]["mean"] is not None and summary["advantage"]["std"] is not None
    assert summary["over_time"] and set(summary["over_time"][-1]["pi"]) == {"strong", "weak"}
    saved = json.loads((run.path / "selector" / "selector.json").read_text())
    assert saved["teachers"] == ["strong", "weak"] and saved["selector"]["reward"] == selector["reward"]
    assert saved["history"]["rl"] and saved["state"] == selector.get("state", ["embedding", "probs", "gold_loss"])
    assert (run.path / "selector" / "policy.safetensors").is_file()
    assert (run.path / "selector" / "selection.png").is_file()
    report_md = (run.path / "report.md").read_text()
    assert "## Teacher selection (RL-KD)" in report_md and "selector/selection.png" in report_md
    with open(run.path / "metrics.csv") as f:
        keys = {line.split(",")[2] for line in f}
    assert {"select/strong", "select/weak", "pi/strong", "select_right/strong", "policy/no_teacher",
            "policy/entropy", "policy/reward", "policy/advantage_std", "policy/baseline"} <= keys
