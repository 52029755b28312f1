import pytest

from alembert.errors import AlembertError
from alembert.mapping import MAP_KINDS, attention_map, layer_map


def test_kinds_exported():
    assert MAP_KINDS == ("uniform", "last", "skip", "top", "top_aligned", "explicit")


def test_uniform_6_to_2():
    assert layer_map("uniform", 2, 6) == [(0, 0), (1, 3), (2, 6)]
    assert attention_map("uniform", 2, 6) == [(1, 3), (2, 6)]


def test_uniform_12_to_4_uses_teacher_layers_3_6_9_12():
    assert [t for _, t in attention_map("uniform", 4, 12)] == [3, 6, 9, 12]
    assert layer_map("uniform", 4, 12) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]


def test_uniform_not_divisible_rounds_half_up():
    # 6 / 4 = 1.5 per student layer: 1.5, 3, 4.5, 6 -> 2, 3, 5, 6
    assert attention_map("uniform", 4, 6) == [(1, 2), (2, 3), (3, 5), (4, 6)]
    # 10 / 4 = 2.5: 2.5, 5, 7.5, 10 -> 3, 5, 8, 10 (round() would give 2, 5, 8, 10)
    assert attention_map("uniform", 4, 10) == [(1, 3), (2, 5), (3, 8), (4, 10)]


@pytest.mark.parametrize("teacher, student", [(6, 4), (10, 4), (12, 5), (7, 3), (12, 4)])
def test_uniform_extraction_starts_each_student_layer_from_the_layer_it_is_distilled_against(teacher, student):
    from alembert.models.students import pick_layers

    extracted = [i + 1 for i in pick_layers("uniform", teacher, student, None)]  # 0-based -> 1-based
    assert extracted == [t for _, t in attention_map("uniform", student, teacher)]


def test_uniform_without_embeddings():
    assert layer_map("uniform", 2, 6, include_embeddings=False) == [(1, 3), (2, 6)]


def test_last():
    assert layer_map("last", 4, 12) == [(4, 12)]
    assert attention_map("last", 4, 12) == [(4, 12)]


def test_skip_12_to_6():
    expected = [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]
    assert layer_map("skip", 6, 12) == expected
    assert attention_map("skip", 6, 12) == expected


def test_skip_one_layer_student_is_an_error():
    with pytest.raises(AlembertError, match="student_layers >= 2"):
        layer_map("skip", 1, 12)


def test_top_is_pkd_last():
    # PKD-Last for a 6-layer student of a 12-layer teacher: student 1..5 <-> teacher 7..11, never the last pair
    expected = [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]
    assert layer_map("top", 6, 12) == expected
    assert attention_map("top", 6, 12) == expected
    assert layer_map("top", 2, 6) == [(1, 5)]  # no embeddings pair
    assert layer_map("top", 3, 3) == [(1, 1), (2, 2)]


def test_top_one_layer_student_is_an_error():
    with pytest.raises(AlembertError, match="student_layers >= 2"):
        attention_map("top", 1, 12)


def test_top_student_deeper_than_teacher_is_an_error():
    with pytest.raises(AlembertError, match="student_layers <= teacher_layers"):
        layer_map("top", 4, 2)


def test_explicit_teacher_lists():
    assert layer_map("explicit", 3, 6, explicit=[0, 2, 4, 6]) == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert layer_map("explicit", 3, 6, explicit=[2, 4, 6]) == [(1, 2), (2, 4), (3, 6)]
    assert layer_map("explicit", 3, 6, explicit=[0, 2, 4, 6], include_embeddings=False) == [
        (1, 2), (2, 4), (3, 6)
    ]
    assert attention_map("explicit", 2, 6, explicit=[1, 6]) == [(1, 1), (2, 6)]


def test_explicit_pairs():
    assert layer_map("explicit", 2, 6, explicit=[[0, 0], [2, 5]]) == [(0, 0), (2, 5)]
    assert attention_map("explicit", 2, 6, explicit=[(2, 6)]) == [(2, 6)]


def test_explicit_wrong_length():
    with pytest.raises(AlembertError, match="expected 3"):
        attention_map("explicit", 3, 6, explicit=[1, 2])
    with pytest.raises(AlembertError, match="expected 4 or 3"):
        layer_map("explicit", 3, 6, explicit=[1, 2])


def test_explicit_missing_or_misused():
    with pytest.raises(AlembertError, match="non-empty list"):
        layer_map("explicit", 2, 6)
    with pytest.raises(AlembertError, match="only used with kind 'explicit'"):
        layer_map("uniform", 2, 6, explicit=[0, 3, 6])
    with pytest.raises(AlembertError, match="not valid"):
        layer_map("explicit", 2, 6, explicit=[[1, 2, 3]])


def test_teacher_out_of_range_message():
    with pytest.raises(AlembertError) as err:
        layer_map("explicit", 1, 6, explicit=[0, 9])
    assert str(err.value) == (
        "layer map 'explicit': teacher layer 9 is out of range for a teacher with 6 layers "
        "(expected 0..6)"
    )


def test_attention_index_zero_is_out_of_range():
    with pytest.raises(AlembertError, match=r"teacher attention layer 0 is out of range .*expected 1\.\.6"):
        attention_map("explicit", 1, 6, explicit=[0])


def test_student_out_of_range():
    message = r"student layer 5 is out of range for a student with 2 layers \(expected 0\.\.2\)"
    with pytest.raises(AlembertError, match=message):
        layer_map("explicit", 2, 6, explicit=[[5, 1]])
    with pytest.raises(AlembertError, match=r"student attention layer 0 .*expected 1\.\.2"):
        attention_map("explicit", 2, 6, explicit=[[0, 1]])


def test_unknown_kind():
    with pytest.raises(AlembertError, match="kind 'middle' is not known"):
        layer_map("middle", 2, 6)


@pytest.mark.parametrize("student, teacher, field", [(0, 6, "student_layers"), (2, 0, "teacher_layers"),
                                                     (2.0, 6, "student_layers")])
def test_layer_counts_validated(student, teacher, field):
    with pytest.raises(AlembertError, match=field):
        attention_map("uniform", student, teacher)
