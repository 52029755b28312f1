"""Extract-Then-Distill students: width extraction by random or importance selection, for every family."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alembert.errors import AlembertError
from alembert.models.extract import plan, student_width
from alembert.models.importance import importance
from alembert.models.layout import find_layout
from alembert.models.roles import parameter_roles
from alembert.models.students import extract_student
from families import FAMILIES, VOCAB


def _teacher(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(FAMILIES[family]()).eval()


def _batches(count: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(5, VOCAB, (4, 10), generator=generator)
        mask = torch.ones_like(ids)
        mask[1, 7:] = 0
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 2, (4,),
                                                                                          generator=generator)})
    return batches


def _logits(model, batch):
    with torch.no_grad():
        return model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("select", ["random", "importance"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_full_width_extraction_is_the_teacher(family, select):
    teacher = _teacher(family)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = extract_student(teacher, [0, 1, 2], hidden=32, heads=4, ffn=64, select=select, batches=_batches())
    batch = _batches(1, seed=5)[0]
    torch.testing.assert_close(_logits(student, batch), _logits(teacher, batch), atol=1e-5, rtol=0)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # the teacher is untouched
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in teacher.modules())
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_narrow_student_has_its_sizes_runs_and_loads_without_alembert(family, tmp_path):
    teacher = _teacher(family)
    student = extract_student(teacher, [0, 2], hidden=16, heads=2, ffn=24, seed=3)
    layout = find_layout(student)
    assert (layout.num_layers, layout.hidden_size, layout.num_heads, layout.head_size, layout.ffn_size) == \
        (2, 16, 2, 8, 24)
    assert type(student) is type(teacher)
    batch = _batches(1)[0]
    logits = _logits(student, batch)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    student.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(_logits(reloaded, batch), logits)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"modernbert"}))
def test_smaller_heads_keep_the_same_units_inside_each_head(family):
    teacher = _teacher(family)
    student = extract_student(teacher, [1], hidden=24, heads=4, ffn=40, select="importance", batches=_batches())
    assert find_layout(student).head_size == 6
    assert torch.isfinite(_logits(student, _batches(1)[0])).all()


def test_the_slices_are_the_chosen_rows_and_columns():
    teacher = _teacher("bert")
    layout = find_layout(teacher)
    student = extract_student(teacher, [2], hidden=16, heads=2, ffn=24, seed=7)
    kept = plan(teacher, layout, [2], student_width(layout, 16, 2, 24), "random", None, 7)
    h, f = kept.hidden, kept.ffn[2]
    units = (kept.heads[2][:, None] * 8 + torch.arange(8)).flatten()
    t, s = teacher.state_dict(), student.state_dict()
    layer, source = "bert.encoder.layer.0.", "bert.encoder.layer.2."
    torch.testing.assert_close(s["bert.embeddings.word_embeddings.weight"],
                               t["bert.embeddings.word_embeddings.weight"][:, h], rtol=0, atol=0)
    torch.testing.assert_close(s[layer + "attention.self.query.weight"],
                               t[source + "attention.self.query.weight"][units][:, h], rtol=0, atol=0)
    torch.testing.assert_close(s[layer + "attention.output.dense.weight"],
                               t[source + "attention.output.dense.weight"][h][:, units], rtol=0, atol=0)
    torch.testing.assert_close(s[layer + "output.dense.weight"], t[source + "output.dense.weight"][h][:, f],
                               rtol=0, atol=0)
    torch.testing.assert_close(s["classifier.weight"], t["classifier.weight"][:, h], rtol=0, atol=0)


def test_random_selection_is_seeded():
    teacher = _teacher("roberta")
    a, b = (extract_student(teacher, [0, 2], hidden=16, heads=2, ffn=24, seed=1) for _ in range(2))
    c = extract_student(teacher, [0, 2], hidden=16, heads=2, ffn=24, seed=2)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not all(torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in a.state_dict())


def _zero_head(model, layer: int, head: int) -> None:
    attention = model.bert.encoder.layer[layer].attention
    rows = slice(head * 8, (head + 1) * 8)
    with torch.no_grad():
        for proj in (attention.self.query, attention.self.key, attention.self.value):
            proj.weight[rows] = 0
            proj.bias[rows] = 0
        attention.output.dense.weight[:, rows] = 0


def test_importance_ranks_a_dead_head_a_dead_neuron_and_a_dead_dimension_last():
    teacher = _teacher("bert")
    _zero_head(teacher, layer=1, head=2)
    ffn = teacher.bert.encoder.layer[0]
    with torch.no_grad():
        ffn.intermediate.dense.weight[5] = 0
        ffn.intermediate.dense.bias[5] = 0
        ffn.output.dense.weight[:, 5] = 0
    layout = find_layout(teacher)
    with torch.no_grad():  # dimension 9 of the residual stream: every parameter entry that reads or writes it
        for name, p in teacher.named_parameters():
            for axis, kind in enumerate(parameter_roles(layout, name)[0]):
                if kind == "h":
                    p.index_fill_(axis, torch.tensor([9]), 0.0)
    scores = importance(teacher, layout, _batches(3))
    assert scores.heads[1].argmin() == 2 and scores.heads[1, 2] == 0 and (scores.heads[1, [0, 1, 3]] > 0).all()
    assert scores.ffn[0].argmin() == 5 and scores.ffn[0, 5] == 0
    assert scores.hidden.argmin() == 9 and scores.hidden[9] == 0
    kept = plan(teacher, layout, [0, 1], student_width(layout, 28, 4, 63), "importance", _batches(3), 0)
    assert 9 not in kept.hidden and 5 not in kept.ffn[0]
    kept = plan(teacher, layout, [1], student_width(layout, 24, 3, 48), "importance", _batches(3), 0)
    assert kept.heads[1].tolist() == [0, 1, 3]


def test_importance_on_shared_and_fused_layers():
    """ALBERT's one layer is scored over all its applications; ModernBERT's fused Q/K/V and gated FFN split up."""
    for family in ("albert", "modernbert"):
        teacher = _teacher(family)
        scores = importance(teacher, find_layout(teacher), _batches())
        modules = 1 if family == "albert" else 3
        assert scores.heads.shape == (modules, 4) and scores.ffn.shape == (modules, 64)
        assert (scores.heads > 0).all() and (scores.ffn > 0).all() and (scores.qk > 0).all()


def test_mpnet_keeps_one_head_set_for_its_shared_position_bias():
    teacher = _teacher("mpnet")
    layout = find_layout(teacher)
    kept = plan(teacher, layout, [0, 1, 2], student_width(layout, 16, 2, 32), "importance", _batches(), 0)
    assert kept.heads[0].tolist() == kept.heads[1].tolist() == kept.heads[2].tolist()
    student = extract_student(teacher, [0, 1, 2], hidden=16, heads=2, select="importance", batches=_batches())
    torch.testing.assert_close(student.mpnet.encoder.relative_attention_bias.weight,
                               teacher.mpnet.encoder.relative_attention_bias.weight[:, kept.heads[0]])


def test_albert_depth_is_how_often_its_shared_layer_runs():
    teacher = _teacher("albert")
    student = extract_student(teacher, [1, 2])
    assert student.config.num_hidden_layers == 2
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in student.state_dict().items())


@pytest.mark.parametrize("family, kwargs, message", [
    ("modernbert", {"layer_ids": [1, 2]}, "the first extracted layer must be teacher layer 0"),
    ("modernbert", {"hidden": 24, "heads": 4}, "modernbert' keeps its head size 8"),
    ("electra", {"hidden": 8, "heads": 1}, "equals the electra embedding_size"),
    ("bert", {"hidden": 48}, r"student.hidden: expected an integer from 1 to the teacher's 32, got 48"),
    ("bert", {"hidden": 16, "heads": 1}, "heads of 16, wider than the teacher's 8"),
    ("bert", {"hidden": 20}, "student.heads: give a number of heads for hidden 20"),
    ("bert", {"hidden": 16, "select": "best"}, "student.select: 'best' is not one of random, importance"),
    ("bert", {"hidden": 16, "select": "importance"}, "needs labelled training batches"),
    ("bert", {"hidden": 16, "select": "importance", "batches": [{"input_ids": torch.ones(1, 3, dtype=torch.long),
                                                                "attention_mask": torch.ones(1, 3)}]},
     "importance: batch 0 has no 'labels'"),
])
def test_extraction_that_cannot_be_done_right_is_refused_in_one_line(family, kwargs, message):
    kwargs = dict(kwargs)
    layer_ids = kwargs.pop("layer_ids", [0, 2])
    with pytest.raises(AlembertError, match=message):
        extract_student(_teacher(family), layer_ids, **kwargs)


def test_albert_with_several_layer_groups_is_refused():
    config = FAMILIES["albert"]()
    config.num_hidden_groups = 3
    teacher = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(AlembertError, match="with 3 layer groups cannot be extracted"):
        extract_student(teacher, [0])
