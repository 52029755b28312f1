"""The intermediate-layer family on the engine: MixUp, consistency regularisation, relation heads, PKD maps,
supplementary text, stress transforms and the teacher assistant, on tiny random models."""
import csv

import pytest
import torch

from alembert import api
from alembert.data.batch import Batch
from alembert.engine.objective import Objective
from alembert.errors import AlembertError
from alembert.models.features import FeatureRequest, Features, FeatureTap
from alembert.models.layout import find_layout
from alembert.plugins.mixup import MixUp, consistency
from alembert.recipe import recipe_from_dict, stage_from_dict
from alembert.recipe.specs import MixUpOptions
from conftest import tiny_bert


def _batch() -> Batch:
    ids = torch.tensor([[2, 7, 8, 9, 3, 0], [2, 10, 3, 0, 0, 0], [2, 11, 12, 13, 14, 3]])
    view = {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}
    zeros = torch.zeros(3, dtype=torch.long)
    return Batch({"student": view}, zeros, torch.ones(3, dtype=torch.bool), zeros, zeros, torch.arange(3))


def _mixup(alpha=1.0, seed=0) -> MixUp:
    return MixUp(MixUpOptions(type="mixup", alpha=alpha), seed=seed)


def test_mixup_lambda_is_folded_to_at_least_one_half_and_seeded():
    draws = [_mixup(1.0, seed=3).sample() for _ in range(2)]
    assert draws[0] == draws[1]  # same seed, same lambda
    mix = _mixup(0.4, seed=0)
    assert all(0.5 <= mix.sample() <= 1.0 for _ in range(200))


def test_mixed_batch_unites_each_mask_with_its_reversed_partner():
    batch = _batch()
    mixed = MixUp.mixed_batch(batch)
    # partners: 0 <-> 2 and 1 <-> 1; example 0 (5 tokens) with example 2 (6 tokens) gives 6
    assert mixed.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0], [1] * 6]
    assert mixed.inputs()["input_ids"] is batch.inputs()["input_ids"] and batch.attention_mask[0].sum() == 5


def test_teacher_and_student_mix_their_own_embedding_outputs_with_one_lambda():
    student, teacher = tiny_bert(layers=2, hidden=16, heads=2, seed=1).eval(), tiny_bert(seed=2).eval()
    batch = MixUp.mixed_batch(_batch()).inputs()
    request = FeatureRequest(hidden=frozenset({0}))
    with FeatureTap(student, request) as s_tap, FeatureTap(teacher, request) as t_tap:
        clean = s_tap.run(batch).hidden[0], t_tap.run(batch).hidden[0]
        with _mixup().mixing([student, teacher], 0.7):
            mixed = s_tap.run(batch).hidden[0], t_tap.run(batch).hidden[0]
        after = s_tap.run(batch).hidden[0]  # the hooks are gone once the block ends
    for e, m in zip(clean, mixed):
        assert m.shape == e.shape
        torch.testing.assert_close(m, 0.7 * e + 0.3 * e.flip(0))
    torch.testing.assert_close(after, clean[0])


def _features(hidden: torch.Tensor) -> Features:
    batch, tokens, _ = hidden.shape
    return Features(logits=torch.zeros(batch, 2), attention_mask=torch.ones(batch, tokens), hidden={1: hidden})


def _layout(layers=2, heads=2, hidden=4):
    return find_layout(tiny_bert(layers=layers, hidden=hidden, heads=heads))


def _stage(losses, **extra):
    return stage_from_dict(dict(name="ild", losses=losses, **extra))


def test_consistency_is_the_lambda_weighted_loss_against_the_clean_input_and_its_partner():
    objective = Objective(_stage([{"type": "hidden_mse", "map": "last", "embeddings": False, "weight": 2.0}]),
                          _layout(layers=1), _layout(layers=1), regression=False)
    # three examples whose every hidden value is 0, 1, 2; the mix equals the clean input, so only the partner
    # term (examples reversed: 2, 1, 0) counts: mean of (0-2)^2, (1-1)^2, (2-0)^2 = 8/3
    clean = _features(torch.arange(3.0).view(3, 1, 1).expand(3, 2, 4).contiguous())
    value = consistency(clean, clean, 0.75, objective.layer_terms(released_script=False))
    assert value.item() == pytest.approx(2.0 * 0.25 * 8 / 3)


def test_released_script_consistency_is_inert_for_qkv_relations_and_acts_on_attention_kl():
    layout = _layout(layers=2)
    qkv = Objective(_stage([{"type": "relation"}]), layout, layout, False)
    assert qkv.layer_terms(released_script=True) == []
    assert [t.name for t in qkv.layer_terms(released_script=False)] == ["relation"]
    both = Objective(_stage([{"type": "relation"}, {"type": "attention_kl", "map": "last"}]), layout, layout, False)
    assert [t.name for t in both.layer_terms(released_script=True)] == ["attention_kl"]


def test_relation_heads_let_head_counts_differ_and_are_checked_before_training():
    student, teacher = _layout(heads=2, hidden=8), _layout(layers=4, heads=4, hidden=16)
    objective = Objective(_stage([{"type": "relation", "heads": 4}]), student, teacher, False)
    assert objective.student_request.qkv == {2} and objective.teacher_request.qkv == {4}
    with pytest.raises(AlembertError, match="student has 2 heads and teacher 4; set heads"):
        Objective(_stage([{"type": "relation"}]), student, teacher, False)
    with pytest.raises(AlembertError, match="heads 3 does not divide the student's width 8"):
        Objective(_stage([{"type": "relation", "heads": 3}]), student, teacher, False)


def test_pkd_compares_transformer_layers_only_with_the_skip_and_top_maps():
    student, teacher = _layout(layers=3), _layout(layers=6)
    skip = Objective(_stage([{"type": "pkd"}]), student, teacher, False)
    top = Objective(_stage([{"type": "pkd", "map": "top"}]), student, teacher, False)
    assert skip.terms[0].pairs == [(1, 2), (2, 4)]
    assert top.terms[0].pairs == [(1, 4), (2, 5)]  # PKD-Last: never the embeddings, nor the last pair


def test_pkd_averages_over_layer_pairs_where_other_layer_terms_sum():
    """PKD's released code takes one MSE over (batch, pairs, width), so beta means the same at any depth; the other
    layer terms keep the sum over mapped layers (TinyBERT's)."""
    student, teacher = _layout(layers=3), _layout(layers=6)
    torch.manual_seed(0)
    s_hidden = {i: torch.randn(2, 3, 4) for i in range(4)}
    t_hidden = {i: torch.randn(2, 3, 4) for i in range(7)}
    s = Features(logits=torch.zeros(2, 2), attention_mask=torch.ones(2, 3), hidden=s_hidden)
    t = Features(logits=torch.zeros(2, 2), attention_mask=torch.ones(2, 3), hidden=t_hidden)
    labels, rows = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool)
    pkd = Objective(_stage([{"type": "pkd"}]), student, teacher, False)
    per_pair = [torch.nn.functional.normalize(s_hidden[a][:, 0], dim=-1)
                - torch.nn.functional.normalize(t_hidden[b][:, 0], dim=-1) for a, b in pkd.terms[0].pairs]
    expected = torch.stack([d.pow(2).mean() for d in per_pair]).mean()  # F.mse_loss over (B, pairs, width)
    assert pkd(s, [t], labels, rows)[1]["pkd"] == pytest.approx(float(expected), rel=1e-6)
    hidden = Objective(_stage([{"type": "hidden_mse", "map": "uniform", "embeddings": False}]), student, teacher, False)
    per_pair = [(s_hidden[a] - t_hidden[b]).pow(2).mean() for a, b in hidden.terms[0].pairs]
    assert hidden(s, [t], labels, rows)[1]["hidden_mse"] == pytest.approx(float(sum(per_pair)), rel=1e-6)


TEXT = {"movies": {"type": "text", "files": ["reviews.tsv"]}}


@pytest.mark.parametrize("stage, message", [
    ({"plugins": [{"type": "consistency"}]}, "consistency needs the mixup plugin too"),
    ({"plugins": [{"type": "mixup"}], "losses": [{"type": "prediction", "alpha": 0.5}]},
     "mixup mixes the inputs, which then have no single label"),
    ({"data": "movies", "losses": [{"type": "prediction", "alpha": 0.0}]}, "movies is unlabeled"),
    ({"data": "task+extra"}, "no source named 'extra' .known: task, movies"),
    ({"mixup": {}}, "mixup is now a plugin"),
    ({"plugins": [{"type": "mixupp"}]}, "unknown plugin 'mixupp' .did you mean 'mixup'"),
    ({"plugins": [{"type": "mixup", "alpha": "high"}]}, "plugins.0.mixup.alpha: Input should be a valid number"),
])
def test_recipe_rejects_stages_the_method_cannot_run(stage, message):
    data = {"name": "x", "task": "sst2", "teacher": "t", "student": {"init": "extract", "layers": 2},
            "sources": TEXT, "stages": [{"name": "ild", "losses": [{"type": "relation"}], **stage}]}
    with pytest.raises(AlembertError, match=message):
        recipe_from_dict(data)


def _recipe(tmp_path, task, teacher_dir, stages, **changes):
    data = {"name": "run", "task": task, "teacher": str(teacher_dir), "output_dir": str(tmp_path / "out"),
            "student": {"init": "extract", "layers": 2}, "max_length": 16, "batch_size": 8, "speed": False,
            "cache_dir": str(tmp_path / "cache"), "stages": stages, **changes}
    return recipe_from_dict(data)


def _logged(run, key):
    with open(run.path / "metrics.csv") as f:
        return [(row["stage"], int(row["step"])) for row in csv.DictReader(f) if row["key"] == key]


CRILD_STAGE = {"name": "ild", "epochs": 3, "lr": 1e-3,
               "losses": [{"type": "relation"}, {"type": "attention_kl", "map": "last"}]}


def test_crild_runs_with_a_live_teacher_and_ramps_consistency_in_from_the_second_epoch(tmp_path, toy_task,
                                                                                     tiny_teacher_dir):
    stage = dict(CRILD_STAGE, plugins=[{"type": "mixup", "alpha": 1.0}, {"type": "consistency", "weight": 0.1}])
    run = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, [stage]))
    steps_per_epoch = 96 // 8
    logged = _logged(run, "consistency")
    assert logged and min(step for _, step in logged) > steps_per_epoch  # weight 0 in the first epoch
    assert run.report["teacher_cache"]["reason"] == "mixup changes the inputs"
    inert = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, [dict(
        stage, losses=[{"type": "relation"}],
        plugins=[{"type": "mixup"}, {"type": "consistency", "released_script": True}])], name="inert"))
    assert _logged(inert, "relation") and not _logged(inert, "consistency")
    paper = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, [dict(
        stage, losses=[{"type": "relation"}],
        plugins=[{"type": "mixup"}, {"type": "consistency", "on": ["attention", "hidden"]}])], name="paper"))
    assert _logged(paper, "relation") and _logged(paper, "consistency")  # acts on what CR-ILD regularises


def test_consistency_on_the_last_layer_attention_and_hidden_states_whatever_is_distilled():
    from alembert.plugins.mixup import last_layer_terms

    layout = _layout(layers=2, heads=2, hidden=4)
    terms = last_layer_terms(["attention", "hidden"], layout)
    assert [(t.name, t.kind, t.pairs) for t in terms] == [("attention_kl", "attention", [(2, 2)]),
                                                          ("hidden_mse", "hidden", [(2, 2)])]
    assert not list(terms[1].parameters())  # the student against itself: no projection
    hidden = torch.arange(3.0).view(3, 1, 1).expand(3, 2, 4).contiguous()
    scores = torch.zeros(3, 2, 2, 2)  # uniform attention everywhere: the attention part is 0
    clean = Features(logits=torch.zeros(3, 2), attention_mask=torch.ones(3, 2), hidden={2: hidden}, scores={2: scores})
    # hidden as in the test above: only the partner term counts, 0.25 * 8/3 (here MSE over the width: 8/3 per value)
    assert consistency(clean, clean, 0.75, terms).item() == pytest.approx(0.25 * 8 / 3)
    with pytest.raises(AlembertError, match="set on .* or released_script"):
        recipe_from_dict({"name": "x", "task": "sst2", "teacher": "t", "student": {"init": "extract", "layers": 2},
                          "stages": [{"name": "ild", "losses": [{"type": "relation"}], "plugins": [
                              {"type": "mixup"}, {"type": "consistency", "on": ["hidden"], "released_script": True}]}]})


def test_ild_on_supplementary_text_then_prediction_on_the_task(tmp_path, toy_task, tiny_teacher_dir):
    extra = tmp_path / "extra.txt"
    extra.write_text("the film was very good and the actor was great.\n" * 10 + "it is a bad and awful plot.\n" * 6)
    stages = [{"name": "ild", "epochs": 2, "lr": 1e-3, "data": "task+extra",
               "losses": [{"type": "hidden_mse", "map": "last"}]},
              {"name": "prediction", "epochs": 2, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}]
    run = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, stages,
                              sources={"extra": {"type": "text", "files": [str(extra)], "limit": 12}}))
    assert run.report["data"]["sources"] == {"extra": 12}
    assert run.report["training"]["examples_seen"] == 2 * (96 + 12) + 2 * 96
    extra_cache = run.report["source_caches"]["extra"]
    assert extra_cache["enabled"] and run.report["teacher_cache"]["enabled"]
    assert extra_cache["path"] != run.report["teacher_cache"]["path"]


def test_stress_transforms_and_data_seed_fix_the_training_set_across_seeds(tmp_path, toy_task, tiny_teacher_dir):
    stages = [{"name": "kd", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}]
    stress = {"downsample": 40, "flip_labels": 0.25}
    runs = [api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, stages, name=f"s{seed}", seed=seed,
                                data_seed=7, stress=stress)) for seed in (1, 2)]
    labels = [run.report["data"]["train_labels"] for run in runs]
    assert labels[0] == labels[1] and labels[0]["examples"] == 40 and sum(labels[0]["class_counts"]) == 40
    assert runs[0].report["data"]["train_examples"] == 40


def test_teacher_assistant_has_the_teachers_depth_and_the_students_width(tmp_path, toy_task, tiny_teacher_dir):
    stages = [{"name": "ild", "epochs": 1, "lr": 1e-3, "losses": [{"type": "attention_kl", "map": "last"},
                                                                   {"type": "relation", "relations": ["vv"]}]},
              {"name": "prediction", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 1.0}]}]
    run = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, stages, assistant={},
                              student={"init": "spec", "layers": 2, "hidden": 16, "heads": 4}))
    assert [m["name"] for m in run.report["models"]] == ["teacher", "assistant", "student"]
    assert run.report["assistant"] == {"layers": 4, "hidden": 16, "heads": 4}  # the tiny teacher: 4 x 32
    with open(run.path / "metrics.csv") as f:
        stages_logged = {row["stage"] for row in csv.DictReader(f)}
    assert {"assistant-ild", "assistant-prediction", "ild", "prediction"} <= stages_logged


def test_teacher_assistant_starts_from_the_teachers_layers_by_etd_not_at_random():
    from alembert.pipelines.assistant import assistant_model

    teacher = tiny_bert(seed=3)  # 4 layers x 32 wide, 4 heads
    base = {"name": "x", "task": "sst2", "teacher": "t", "stages": [{"name": "kd", "losses": [{"type": "prediction"}]}]}
    full = recipe_from_dict(dict(base, assistant={}, student={"init": "extract", "layers": 2, "select": "random"}))
    same = assistant_model(full, teacher, tiny_bert(layers=2, seed=4))
    assert all(torch.equal(same.state_dict()[k], v) for k, v in teacher.state_dict().items())  # the teacher's width
    narrow = recipe_from_dict(dict(base, assistant={}, student={"init": "spec", "layers": 2, "hidden": 16,
                                                                "heads": 4, "select": "random"}))
    student = tiny_bert(layers=2, hidden=16, heads=4, seed=4)
    assistant = assistant_model(narrow, teacher, student)
    words, source = assistant.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight
    kept = [next(j for j in range(32) if torch.equal(words[:, i], source[:, j])) for i in range(16)]
    assert len(set(kept)) == 16 and kept == sorted(kept)  # 16 of the teacher's dimensions, in its order
    assert assistant.config.num_hidden_layers == 4
    rand = assistant_model(recipe_from_dict(dict(narrow.model_dump(), assistant={"init": "spec"})), teacher, student)
    assert not any(torch.equal(rand.bert.embeddings.word_embeddings.weight[:, i], source[:, j])
                   for i in range(16) for j in range(32))


def test_mixup_needs_one_tokenization_for_teacher_and_student(tmp_path, toy_task, tiny_teacher_dir):
    from conftest import write_tokenizer

    other = tmp_path / "other"
    tiny_bert().save_pretrained(other)
    write_tokenizer(other, extra_words=("extra",))
    stages = [{"name": "kd", "epochs": 1, "plugins": [{"type": "mixup"}],
               "losses": [{"type": "prediction", "alpha": 1.0}]}]
    recipe = _recipe(tmp_path, toy_task, tiny_teacher_dir, stages, student={"init": "checkpoint", "source": str(other)})
    with pytest.raises(AlembertError, match="MixUp need one tokenization"):
        api.distill(recipe)


def test_tinybert_padding_convention_pads_batches_to_max_length_and_averages_every_position(tmp_path, toy_task,
                                                                                             tiny_teacher_dir):
    from alembert.data.encoded import StageData

    layout = _layout(layers=2)
    hidden = {"type": "hidden_mse", "map": "last", "embeddings": False}
    real, every = (Objective(_stage([dict(hidden, positions=p)]), layout, layout, False).terms[0]
                   for p in ("real", "all"))
    assert real.masked and not every.masked
    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 4), torch.randn(2, 4, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    feats = [Features(logits=torch.zeros(2, 2), attention_mask=mask, hidden={2: x}) for x in (s, t)]
    squared = (s - t).pow(2).sum(-1)
    assert real.pair_values(*feats, real.pairs, mask, real.loss).mean().item() == pytest.approx(
        float((squared * mask).sum() / (mask.sum() * 4)), rel=1e-5)
    assert every.pair_values(*feats, every.pairs, mask, every.loss).mean().item() == pytest.approx(
        float(squared.mean() / 4), rel=1e-5)
    item = {"id": 0, "student": {"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1]}, "label": 1, "domain": 0}
    assert StageData({"task": [item]}, {"student": 0}, pad_to=16).collate([dict(item, source=0)]).attention_mask.shape \
        == (1, 16)
    stage = {"name": "ild", "epochs": 1, "lr": 1e-3, "losses": [dict(hidden, positions="all"),
                                                                 {"type": "attention_mse", "positions": "all"}]}
    run = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, [stage]))
    assert run.report["teacher_cache"]["reason"].startswith("a loss averages over padding")
