import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alembert.errors import AlembertError
from alembert.models.layout import find_layout
from alembert.models.students import extract_student, pick_layers, student_from_spec
from conftest import tiny_bert
from families import FAMILIES


def test_extraction_copies_exactly_the_chosen_layers():
    teacher = tiny_bert(layers=4)
    student = extract_student(teacher, [1, 3])
    t, s = teacher.state_dict(), student.state_dict()
    assert find_layout(student).num_layers == 2
    for name, value in s.items():
        if ".layer.0." in name:
            torch.testing.assert_close(value, t[name.replace(".layer.0.", ".layer.1.")], rtol=0, atol=0)
        elif ".layer.1." in name:
            torch.testing.assert_close(value, t[name.replace(".layer.1.", ".layer.3.")], rtol=0, atol=0)
        else:  # embeddings, pooler, classifier
            torch.testing.assert_close(value, t[name], rtol=0, atol=0)
    assert not any(".layer.2." in n for n in s)


def test_extracted_student_loads_without_alembert(tmp_path):
    student = extract_student(tiny_bert(layers=4), [0, 2])
    student.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    ids = torch.tensor([[2, 7, 8, 3]])
    torch.testing.assert_close(reloaded.eval()(ids).logits, student.eval()(ids).logits)


@pytest.mark.parametrize("how,layers,explicit,expected", [
    ("uniform", 2, None, [2, 5]),  # TinyBERT's map for 6 -> 2: teacher layers 3 and 6 (1-based)
    ("uniform", 3, None, [1, 3, 5]),
    ("uniform", 4, None, [1, 2, 4, 5]),  # 6 -> 4: teacher layers 2, 3, 5, 6, the uniform map's (half up)
    ("first", 2, None, [0, 1]),
    ("explicit", None, [0, 4], [0, 4]),
])
def test_pick_layers(how, layers, explicit, expected):
    assert pick_layers(how, 6, layers, explicit) == expected


def test_pick_layers_out_of_range():
    with pytest.raises(AlembertError, match="layer 7 is out of range for a model with 6 layers"):
        pick_layers("explicit", 6, None, [0, 7])
    with pytest.raises(AlembertError, match="exceeds"):
        pick_layers("first", 6, 8, None)


def test_student_from_spec_resizes_in_teacher_architecture():
    student = student_from_spec(tiny_bert(layers=4, hidden=32), layers=2, hidden=16, heads=2, ffn=40)
    layout = find_layout(student)
    assert (layout.num_layers, layout.hidden_size, layout.num_heads) == (2, 16, 2)
    assert student.config.intermediate_size == 40 and student.config.num_labels == 2
    with pytest.raises(AlembertError, match="not divisible"):
        student_from_spec(tiny_bert(), layers=2, hidden=30, heads=4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_student_from_spec_for_every_family(family):
    teacher = AutoModelForSequenceClassification.from_config(FAMILIES[family]())
    student = student_from_spec(teacher, layers=2, hidden=16, heads=2, ffn=40)
    layout = find_layout(student)
    assert (layout.num_layers, layout.hidden_size, layout.num_heads, layout.ffn_size) == (2, 16, 2, 40)
    ids = torch.randint(5, 99, (2, 7))
    assert student(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (2, 2)
    if family == "modernbert":  # global every second layer, as the teacher
        assert student.config.layer_types == ["full_attention", "sliding_attention"]
