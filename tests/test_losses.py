"""Each expected value is worked out by hand below, not by re-running the loss formula."""

import math

import pytest
import torch

from alembert.errors import AlembertError
from alembert.losses import (
    AttentionProbKL,
    AttentionScoreMSE,
    HardLabelCE,
    HiddenMSE,
    KDLoss,
    LogitMSE,
    PredictionLoss,
    RegressionMSE,
)

LOG3 = math.log(3.0)

# Two examples, two classes, chosen so the softmaxes are simple fractions:
#   teacher: [0, log 3] -> (1/4, 3/4);   [0, 0]      -> (1/2, 1/2)
#   student: [0, 0]     -> (1/2, 1/2);   [log 3, 0]  -> (3/4, 1/4)
TEACHER = torch.tensor([[0.0, LOG3], [0.0, 0.0]])
STUDENT = torch.tensor([[0.0, 0.0], [LOG3, 0.0]])
KL1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
KL2 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
CE1 = -(0.25 * math.log(0.5) + 0.75 * math.log(0.5))
CE2 = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
H_TEACHER = (-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) + math.log(2.0)) / 2


def close(value, expected):
    return value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


# --- KDLoss -----------------------------------------------------------------------------------

def test_kd_kl_value():
    assert close(KDLoss()(STUDENT, TEACHER), (KL1 + KL2) / 2)


def test_kd_soft_ce_value_and_entropy_offset():
    kl = KDLoss(kind="kl")(STUDENT, TEACHER)
    ce = KDLoss(kind="soft_ce")(STUDENT, TEACHER)
    assert close(ce, (CE1 + CE2) / 2)
    assert close(ce - kl, H_TEACHER)


def test_kd_temperature_and_tau_squared():
    # Logits doubled at tau = 2 give the same distributions as above.
    with_sq = KDLoss(temperature=2.0)(2 * STUDENT, 2 * TEACHER)
    without = KDLoss(temperature=2.0, tau_squared=False)(2 * STUDENT, 2 * TEACHER)
    assert close(without, (KL1 + KL2) / 2)
    assert close(with_sq, 4 * (KL1 + KL2) / 2)


def test_kd_average_classes_divides_by_class_count():
    assert close(KDLoss(tau_squared=False, average_classes=True)(STUDENT, TEACHER), (KL1 + KL2) / 4)


def test_kd_weights():
    # sum_i w_i l_i / B
    assert close(KDLoss()(STUDENT, TEACHER, weights=torch.tensor([2.0, 0.0])), KL1)
    assert close(KDLoss()(STUDENT, TEACHER, weights=torch.tensor([1.0, 3.0])), (KL1 + 3 * KL2) / 2)


def test_kd_identical_is_zero_and_grad_only_to_student():
    student = TEACHER.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    loss = KDLoss()(student, teacher)
    assert abs(loss.item()) < 1e-7
    loss.backward()
    assert teacher.grad is None


def test_kd_validation():
    with pytest.raises(AlembertError, match="temperature"):
        KDLoss(temperature=0)
    with pytest.raises(AlembertError, match="kind"):
        KDLoss(kind="js")
    with pytest.raises(AlembertError, match="weights"):
        KDLoss()(STUDENT, TEACHER, weights=torch.ones(3))


# --- hard labels and MSEs -----------------------------------------------------------------------

def test_hard_label_ce():
    labels = torch.tensor([1, 0])
    # softmax([0, log 3]) = (1/4, 3/4) -> -log 3/4; softmax([log 3, 0])[0] = 3/4 -> -log 3/4
    expected = (-math.log(0.75) - math.log(0.75)) / 2
    logits = torch.stack([TEACHER[0], STUDENT[1]])
    assert close(HardLabelCE()(logits, labels), expected)
    # weights: only the second example, counted twice, over B = 2
    value = HardLabelCE()(logits, labels, weights=torch.tensor([0.0, 2.0]))
    assert close(value, -math.log(0.75))


def test_logit_mse_with_temperature_and_weights():
    student = torch.tensor([[2.0, 4.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    # divided by tau=2: diffs (1, 2) and (-1, 0) -> per-example means 2.5 and 0.5
    assert close(LogitMSE(temperature=2.0)(student, teacher), 1.5)
    assert close(LogitMSE(temperature=2.0)(student, teacher, weights=torch.tensor([1.0, 3.0])), 2.0)
    assert close(LogitMSE()(student, teacher), 6.0)  # (4+16)/2=10 and (4+0)/2=2 -> 6


def test_regression_mse_shapes():
    labels = torch.tensor([0.0, 1.0])
    assert close(RegressionMSE()(torch.tensor([[1.0], [3.0]]), labels), 2.5)  # (1 + 4) / 2
    assert close(RegressionMSE()(torch.tensor([1.0, 3.0]), labels), 2.5)
    with pytest.raises(AlembertError, match="RegressionMSE"):
        RegressionMSE()(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), labels)


# --- PredictionLoss ------------------------------------------------------------------------------

LABELS = torch.tensor([1, 0])
CE_STUDENT = (-math.log(0.5) - math.log(0.75)) / 2  # student probs for the true labels: 1/2, 3/4


def test_prediction_alpha_zero_is_ce_only():
    total, parts = PredictionLoss(alpha=0.0)(STUDENT, None, LABELS)
    assert close(total, CE_STUDENT)
    assert parts == {"ce": pytest.approx(CE_STUDENT, rel=1e-5)}


def test_prediction_alpha_one_is_kd_only():
    total, parts = PredictionLoss(alpha=1.0, temperature=2.0)(2 * STUDENT, 2 * TEACHER, None)
    assert close(total, 4 * (KL1 + KL2) / 2)
    assert set(parts) == {"kd"}


def test_prediction_half_and_half():
    total, parts = PredictionLoss(alpha=0.5, kind="soft_ce", tau_squared=False)(STUDENT, TEACHER, LABELS)
    assert close(total, 0.5 * CE_STUDENT + 0.5 * (CE1 + CE2) / 2)
    assert parts["ce"] == pytest.approx(CE_STUDENT, rel=1e-5)
    assert parts["kd"] == pytest.approx((CE1 + CE2) / 2, rel=1e-5)


def test_prediction_regression():
    student = torch.tensor([[1.0], [3.0]])
    teacher = torch.tensor([[0.0], [2.0]])
    labels = torch.tensor([0.0, 1.0])
    total, parts = PredictionLoss(alpha=0.5, regression=True)(student, teacher, labels)
    # mse = (1 + 4) / 2 = 2.5; kd_mse = (1 + 1) / 2 = 1
    assert close(total, 0.5 * 2.5 + 0.5 * 1.0)
    assert parts == {"mse": pytest.approx(2.5), "kd_mse": pytest.approx(1.0)}


def test_prediction_weights_pass_through():
    total, _ = PredictionLoss(alpha=0.0)(STUDENT, None, LABELS, weights=torch.tensor([2.0, 0.0]))
    assert close(total, -math.log(0.5))


@pytest.mark.parametrize("kwargs, field", [({"alpha": -0.1}, "alpha"), ({"alpha": 1.5}, "alpha"),
                                           ({"temperature": 0.0}, "temperature"),
                                           ({"temperature": -1.0}, "temperature")])
def test_prediction_validation(kwargs, field):
    with pytest.raises(AlembertError, match=field):
        PredictionLoss(**kwargs)


def test_prediction_missing_inputs():
    with pytest.raises(AlembertError, match="teacher_logits"):
        PredictionLoss(alpha=0.5)(STUDENT, None, LABELS)
    with pytest.raises(AlembertError, match="labels"):
        PredictionLoss(alpha=0.5)(STUDENT, TEACHER, None)


# --- HiddenMSE -----------------------------------------------------------------------------------

def test_hidden_equal_widths_no_params():
    loss = HiddenMSE(2, 2)
    assert list(loss.parameters()) == []
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    teacher = torch.zeros(1, 2, 2)
    assert close(loss(student, teacher), (1 + 4 + 9 + 16) / 4)


def test_hidden_mask_averages_real_tokens_only():
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    teacher = torch.zeros(1, 2, 2)
    assert close(HiddenMSE(2, 2)(student, teacher, mask=torch.tensor([[1, 0]])), (1 + 4) / 2)


def test_hidden_weights():
    student = torch.tensor([[[1.0, 1.0]], [[2.0, 2.0]]])  # (B=2, T=1, d=2)
    teacher = torch.zeros(2, 1, 2)
    # squared errors 1,1 and 4,4; weights 3 and 0 -> (3*2 + 0) / 4 elements
    assert close(HiddenMSE(2, 2)(student, teacher, weights=torch.tensor([3.0, 0.0])), 1.5)


def test_hidden_projection_set_by_hand():
    loss = HiddenMSE(2, 3)
    assert isinstance(loss.projection, torch.nn.Linear)
    assert loss.projection.in_features == 2 and loss.projection.out_features == 3
    with torch.no_grad():
        loss.projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        loss.projection.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    student = torch.tensor([[[1.0, 2.0]]])  # projects to (1, 2, 4)
    teacher = torch.tensor([[[1.0, 1.0, 1.0]]])
    value = loss(student, teacher)
    assert close(value, (0 + 1 + 9) / 3)
    value.backward()
    assert loss.projection.weight.grad is not None


def test_hidden_width_mismatch():
    with pytest.raises(AlembertError, match="widths"):
        HiddenMSE(2, 3)(torch.zeros(1, 1, 2), torch.zeros(1, 1, 4))


# --- attention -----------------------------------------------------------------------------------

def test_attention_score_mse_zeroes_masked_entries():
    student = torch.tensor([[[[1.0, -10000.0], [2.0, -10000.0]]]])
    teacher = torch.tensor([[[[3.0, -10000.0], [2.0, -10000.0]]]])
    # after zeroing: (1,0;2,0) vs (3,0;2,0) -> squared diffs 4,0,0,0 -> mean 1
    assert close(AttentionScoreMSE()(student, teacher), 1.0)


def test_attention_score_mse_threshold_is_minus_100():
    student = torch.tensor([[[[-100.0, -99.0], [0.0, 0.0]]]])
    teacher = torch.zeros(1, 1, 2, 2)
    # -100 becomes 0, -99 stays: 99^2 / 4
    assert close(AttentionScoreMSE()(student, teacher), 99.0 ** 2 / 4)


def test_attention_score_mse_weights():
    student = torch.tensor([[[[1.0]]], [[[3.0]]]])
    teacher = torch.zeros(2, 1, 1, 1)
    assert close(AttentionScoreMSE()(student, teacher, weights=torch.tensor([2.0, 1.0])), (2 * 1 + 9) / 2)


def test_attention_head_mismatch():
    with pytest.raises(AlembertError, match="attention_mse needs equal head counts: student has 4, teacher 12"):
        AttentionScoreMSE()(torch.zeros(1, 4, 2, 2), torch.zeros(1, 12, 2, 2))
    with pytest.raises(AlembertError, match="head counts"):
        AttentionProbKL()(torch.zeros(1, 4, 2, 2), torch.zeros(1, 12, 2, 2))


ROW_KL = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL((1/4,3/4) || (1/2,1/2))


def test_attention_kl_identical_is_zero():
    scores = torch.randn(2, 3, 4, 4)
    assert abs(AttentionProbKL()(scores, scores.clone()).item()) < 1e-6


def test_attention_kl_one_head_two_tokens():
    student = torch.zeros(1, 1, 2, 2)  # both rows uniform
    teacher = torch.tensor([[[[0.0, LOG3], [LOG3, 0.0]]]])  # rows (1/4,3/4) and (3/4,1/4)
    assert close(AttentionProbKL()(student, teacher), ROW_KL)  # both rows have the same KL


def test_attention_kl_averages_over_heads():
    student = torch.zeros(1, 2, 2, 2)
    teacher = torch.zeros(1, 2, 2, 2)
    teacher[0, 0] = torch.tensor([[0.0, LOG3], [LOG3, 0.0]])  # head 2 identical to the student
    assert close(AttentionProbKL()(student, teacher), ROW_KL / 2)


def test_attention_kl_padded_rows_ignored():
    # Token 2 is padding: its key carries -10000 and its query row is arbitrary.
    student = torch.tensor([[[[0.0, -10000.0], [5.0, -3.0]]]])
    teacher = torch.tensor([[[[0.0, -10000.0], [-4.0, 7.0]]]])
    mask = torch.tensor([[1, 0]])
    assert abs(AttentionProbKL()(student, teacher, mask=mask).item()) < 1e-6
    # Row 1 over one real key is (1, 0) for both, so only padded rows could differ.
    student2 = torch.tensor([[[[0.0, 0.0], [5.0, -3.0]]]])
    teacher2 = torch.tensor([[[[0.0, LOG3], [-4.0, 7.0]]]])
    assert close(AttentionProbKL()(student2, teacher2, mask=mask), ROW_KL)
    assert AttentionProbKL()(student2, teacher2).item() > ROW_KL  # the padded row would count


def test_attention_kl_per_example_normalisation_and_weights():
    # Example 1 has 2 real rows each with ROW_KL; example 2 has 1 real row with KL 0.
    student = torch.zeros(2, 1, 2, 2)
    teacher = torch.zeros(2, 1, 2, 2)
    teacher[0, 0] = torch.tensor([[0.0, LOG3], [LOG3, 0.0]])
    teacher[1, 0, 1] = torch.tensor([9.0, -9.0])  # padded row of example 2
    mask = torch.tensor([[1, 1], [1, 0]])
    assert close(AttentionProbKL()(student, teacher, mask=mask), ROW_KL / 2)
    assert close(AttentionProbKL()(student, teacher, mask=mask, weights=torch.tensor([3.0, 1.0])),
                 3 * ROW_KL / 2)


def test_attention_mse_with_mask_averages_over_real_pairs_only():
    student = torch.zeros(2, 1, 3, 3)
    teacher = torch.zeros(2, 1, 3, 3)
    teacher[0, 0, :2, :2] = 2.0  # example 0: two real tokens, every real pair off by 2
    teacher[0, 0, 2, :] = 50.0  # a padded query row: must not count
    teacher[1] = 1.0  # example 1: three real tokens, off by 1
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert close(AttentionScoreMSE()(student, teacher, mask), (4.0 + 1.0) / 2)
    padded = torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 5, 5)
    padded[1][:, :, :3, :3] = teacher[:, :, :3, :3]
    padded[1][0, 0, 2, :] = 0.0
    wide_mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    assert close(AttentionScoreMSE()(*padded, wide_mask), (4.0 + 1.0) / 2)  # more padding, same value
