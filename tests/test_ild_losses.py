"""PKDLoss and RelationKL. Each expected value is worked out by hand below, not by re-running the formula."""

import math

import pytest
import torch

from alembert.errors import AlembertError
from alembert.losses import PKDLoss, RelationKL
from alembert.models.features import split_heads

LOG3 = math.log(3.0)
ROW_KL = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL((1/4,3/4) || (1/2,1/2))


def close(value, expected):
    return value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


# --- PKDLoss -------------------------------------------------------------------------------------

# (B=2, T=2, D=2); only position 0 ([CLS]) counts, position 1 is noise.
PKD_STUDENT = torch.tensor([[[3.0, 4.0], [9.0, -9.0]], [[0.0, 2.0], [1.0, 1.0]]])
PKD_TEACHER = torch.tensor([[[4.0, 3.0], [-5.0, 5.0]], [[5.0, 0.0], [2.0, 7.0]]])
# example 1: (3,4)/5 = (0.6, 0.8) vs (4,3)/5 = (0.8, 0.6) -> diffs (-0.2, 0.2) -> (0.04 + 0.04) / 2 = 0.04
# example 2: (0,2)/2 = (0, 1)     vs (5,0)/5 = (1, 0)     -> diffs (-1, 1)     -> (1 + 1) / 2 = 1
PKD_1, PKD_2 = 0.04, 1.0


def test_pkd_hand_value():
    assert close(PKDLoss(2, 2)(PKD_STUDENT, PKD_TEACHER), (PKD_1 + PKD_2) / 2)


def test_pkd_only_cls_position_counts():
    student, teacher = PKD_STUDENT.clone(), PKD_TEACHER.clone()
    student[:, 1] = 100.0
    teacher[:, 1] = -3.0
    assert close(PKDLoss(2, 2)(student, teacher), (PKD_1 + PKD_2) / 2)


def test_pkd_weights():
    loss = PKDLoss(2, 2)
    assert close(loss(PKD_STUDENT, PKD_TEACHER, weights=torch.ones(2)), (PKD_1 + PKD_2) / 2)
    # sum_i w_i l_i / B = (1 * 0.04 + 3 * 1) / 2
    assert close(loss(PKD_STUDENT, PKD_TEACHER, weights=torch.tensor([1.0, 3.0])), 1.52)
    with pytest.raises(AlembertError, match="weights"):
        loss(PKD_STUDENT, PKD_TEACHER, weights=torch.ones(3))


def test_pkd_scale_invariant():
    teacher = torch.randn(3, 4, 5)
    student = teacher * torch.tensor([7.0, 0.5, 2.0]).view(3, 1, 1)  # same directions, other lengths
    assert abs(PKDLoss(5, 5)(student, teacher).item()) < 1e-6


def test_pkd_projection_iff_widths_differ_and_trains():
    assert isinstance(PKDLoss(4, 4).projection, torch.nn.Identity)
    assert list(PKDLoss(4, 4).parameters()) == []
    loss = PKDLoss(2, 3)
    assert isinstance(loss.projection, torch.nn.Linear)
    assert loss.projection.in_features == 2 and loss.projection.out_features == 3
    with torch.no_grad():
        loss.projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        loss.projection.bias.zero_()
    student = torch.tensor([[[3.0, 4.0]]])  # projects to (3, 4, 0) -> (0.6, 0.8, 0)
    teacher = torch.tensor([[[0.0, 0.0, 5.0]]])  # -> (0, 0, 1)
    value = loss(student, teacher)
    assert close(value, (0.36 + 0.64 + 1.0) / 3)  # mean over the teacher width 3
    value.backward()
    assert loss.projection.weight.grad is not None and loss.projection.weight.grad.abs().sum() > 0


def test_pkd_gradient_to_student_only():
    student = torch.randn(2, 3, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, requires_grad=True)
    PKDLoss(4, 4)(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad[:, 0].abs().sum() > 0
    assert student.grad[:, 1:].abs().sum() == 0  # non-[CLS] positions are not used


def test_pkd_validation():
    with pytest.raises(AlembertError, match="PKDLoss: student_dim"):
        PKDLoss(0, 4)
    with pytest.raises(AlembertError, match="teacher_dim"):
        PKDLoss(4, True)
    loss = PKDLoss(2, 3)
    with pytest.raises(AlembertError, match=r"PKDLoss: expected student \(batch, tokens, 2\)"):
        loss(torch.zeros(2, 3, 2), torch.zeros(3, 3, 3))  # batch sizes differ
    with pytest.raises(AlembertError, match="PKDLoss"):
        loss(torch.zeros(2, 3, 2), torch.zeros(2, 3, 4))  # teacher width is not 3
    with pytest.raises(AlembertError, match="PKDLoss"):
        loss(torch.zeros(2, 3), torch.zeros(2, 3))  # not (B, T, D)
    loss(torch.zeros(2, 3, 2), torch.zeros(2, 5, 3))  # token counts may differ: only [CLS] is read


# --- RelationKL ----------------------------------------------------------------------------------

def test_relation_hand_value_one_head():
    # (B=1, H=1, T=2, d=1); relation logits are x_i * x_j / sqrt(1).
    student = torch.zeros(1, 1, 2, 1)  # all logits 0 -> both rows (1/2, 1/2)
    teacher = torch.tensor([0.0, math.sqrt(LOG3)]).view(1, 1, 2, 1)
    # teacher logits: row 1 (0, 0) -> (1/2, 1/2), KL 0;  row 2 (0, log 3) -> (1/4, 3/4), KL = ROW_KL
    # averaged over the 2 query rows and 1 head
    assert close(RelationKL()(student, teacher), ROW_KL / 2)


def test_relation_scales_by_sqrt_head_width():
    # d = 4: token 2 is (s, s, s, s) with 4 s^2 / sqrt(4) = 2 s^2 = log 3 -> same rows as above.
    s = math.sqrt(LOG3 / 2)
    teacher = torch.zeros(1, 1, 2, 4)
    teacher[0, 0, 1] = s
    assert close(RelationKL()(torch.zeros(1, 1, 2, 4), teacher), ROW_KL / 2)


def test_relation_heads_resplit_by_hand():
    # Teacher H=2, d=1: head 1 x = (0, a), head 2 x = (0, a). Merged width 2: token 1 (0, 0), token 2 (a, a).
    # One relation head, d_r = 2: token 2's self-logit (a^2 + a^2) / sqrt(2) = sqrt(2) a^2 = log 3.
    a = math.sqrt(LOG3 / math.sqrt(2.0))
    teacher = torch.zeros(1, 2, 2, 1)
    teacher[0, :, 1, 0] = a
    student = torch.zeros(1, 4, 2, 1)  # H=4: every relation row uniform
    assert close(RelationKL(heads=1)(student, teacher), ROW_KL / 2)


def test_relation_identical_is_zero():
    x = torch.randn(2, 3, 5, 4)
    assert abs(RelationKL()(x, x.clone()).item()) < 1e-6
    assert abs(RelationKL(heads=2)(x, x.clone()).item()) < 1e-6


def test_relation_resplit_into_own_head_count_is_no_op():
    student, teacher = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    own = RelationKL()(student, teacher)
    assert own.item() > 0
    assert close(RelationKL(heads=3)(student, teacher), own.item())


@pytest.mark.parametrize("heads", [2, 4])
def test_relation_unequal_head_counts(heads):
    torch.manual_seed(0)
    # Different widths: student H=2 x d=8 (16), teacher H=4 x d=8 (32).
    value = RelationKL(heads=heads)(torch.randn(2, 2, 5, 8), torch.randn(2, 4, 5, 8))
    assert torch.isfinite(value) and value.item() > 0
    # Same merged states split two ways (H=2 x 8 and H=4 x 4) give the same relations: loss 0.
    merged = torch.randn(2, 5, 16)
    assert abs(RelationKL(heads=heads)(split_heads(merged, 2), split_heads(merged, 4)).item()) < 1e-6


def test_relation_validation():
    with pytest.raises(AlembertError, match="equal head counts.*set heads"):
        RelationKL()(torch.zeros(1, 2, 3, 8), torch.zeros(1, 4, 3, 4))
    with pytest.raises(AlembertError, match="width 16 is not divisible by heads=3"):
        RelationKL(heads=3)(torch.zeros(1, 2, 3, 8), torch.zeros(1, 4, 3, 3))
    with pytest.raises(AlembertError, match="heads must be an integer"):
        RelationKL(heads=0)
    with pytest.raises(AlembertError, match="RelationKL: expected"):
        RelationKL()(torch.zeros(1, 2, 3, 8), torch.zeros(2, 2, 3, 8))  # batch sizes differ
    with pytest.raises(AlembertError, match="RelationKL: expected"):
        RelationKL()(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 4, 8))  # token counts differ
    with pytest.raises(AlembertError, match="mask must have shape"):
        RelationKL()(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 8), mask=torch.ones(1, 4))


def test_relation_mask_by_hand():
    # The hand case above with a third, padded token carrying arbitrary values.
    student = torch.tensor([0.0, 0.0, -7.0]).view(1, 1, 3, 1)
    teacher = torch.tensor([0.0, math.sqrt(LOG3), 5.0]).view(1, 1, 3, 1)
    mask = torch.tensor([[1, 1, 0]])
    # padded key left out: rows 1 and 2 over keys 1, 2 are as in the 2-token case; padded row 3 not averaged
    assert close(RelationKL()(student, teacher, mask=mask), ROW_KL / 2)
    # without the mask token 3 takes part (teacher row 1 is no longer uniform, etc.)
    assert not close(RelationKL()(student, teacher), ROW_KL / 2)


@pytest.mark.parametrize("heads", [None, 2])
def test_relation_mask_invariant_to_padded_values(heads):
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 2, 4, 3), torch.randn(2, 2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    student2, teacher2 = student.clone(), teacher.clone()
    student2[0, :, 3], teacher2[0, :, 3] = 4.0, -6.0
    student2[1, :, 2:] = torch.randn(2, 2, 3) * 10
    loss = RelationKL(heads=heads)
    masked = loss(student, teacher, mask=mask)
    assert close(loss(student2, teacher2, mask=mask), masked.item())
    assert not close(loss(student2, teacher2), loss(student, teacher).item())  # unmasked: padding counts


def test_relation_per_example_normalisation_and_weights():
    # Example 1: the 2-token hand case (ROW_KL / 2). Example 2: identical inputs (0).
    student = torch.zeros(2, 1, 2, 1)
    teacher = torch.zeros(2, 1, 2, 1)
    teacher[0, 0, 1, 0] = math.sqrt(LOG3)
    assert close(RelationKL()(student, teacher), ROW_KL / 4)
    assert close(RelationKL()(student, teacher, weights=torch.ones(2)), ROW_KL / 4)
    assert close(RelationKL()(student, teacher, weights=torch.tensor([3.0, 1.0])), 3 * ROW_KL / 4)


def test_relation_gradient_to_student_only_and_finite_with_empty_example():
    student = torch.randn(2, 2, 4, 3, requires_grad=True)
    teacher = torch.randn(2, 4, 4, 2, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])  # example 2 is all padding
    value = RelationKL(heads=2)(student, teacher, mask=mask)
    assert torch.isfinite(value)
    value.backward()
    assert teacher.grad is None
    assert torch.isfinite(student.grad).all() and student.grad[0].abs().sum() > 0
    assert student.grad[1].abs().sum() == 0  # nothing real in example 2


def test_relation_half_precision_computed_in_float32():
    # 300 * 300 * 8 / sqrt(8) overflows float16 if X X^T were formed in half precision.
    x = torch.full((1, 1, 2, 8), 300.0, dtype=torch.float16)
    value = RelationKL()(x, x.clone())
    assert value.dtype == torch.float16 and torch.isfinite(value) and abs(value.item()) < 1e-3
