"""RL-KD's core: states by hand, the running standardisation, the per-teacher and shared policies, the learner's
actions, baselines and steps, bandits it must solve, and a bit-for-bit state round trip."""
from __future__ import annotations

import math

import pytest
import torch

from alembert.errors import AlembertError
from alembert.plugins.example_embeddings import standardised
from alembert.plugins.teacher_selector import (
    STATE_FEATURES,
    Reinforce,
    RunningMoments,
    SelectionPolicy,
    bernoulli_entropy,
    selection_states,
    state_size,
    teacher_scalars,
)

# B=2 examples, K=2 teachers, C=2 labels, D=3: small enough to check by hand.
EMB = torch.tensor([[3.0, 0.0, 4.0], [1.0, 1.0, 1.0]])
TEACHER = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [-1.0, 3.0]]])
STUDENT = torch.tensor([[0.5, 0.0], [0.0, 2.0]])
LABELS = torch.tensor([0, 1])


def _softmax2(a: float, b: float) -> tuple[float, float]:
    ea, eb = math.exp(a), math.exp(b)
    return ea / (ea + eb), eb / (ea + eb)


def test_classification_states_match_hand_computation():
    scalars = teacher_scalars(TEACHER, STUDENT, LABELS, False, STATE_FEATURES)
    states = selection_states(EMB, scalars)
    assert states.shape == (2, 2, state_size(STATE_FEATURES, 3, 2, False)) == (2, 2, 3 + 2 + 1 + 1)
    assert states.dtype == torch.float32
    assert torch.equal(states[0, :, :3], EMB[0].expand(2, 3))  # the example's embedding, the same for each teacher
    for j in range(2):
        p_s = _softmax2(*STUDENT[j].tolist())
        for k in range(2):
            p_t = _softmax2(*TEACHER[j, k].tolist())
            assert states[j, k, 3:5].tolist() == pytest.approx(p_t, abs=1e-6)
            assert states[j, k, 5].item() == pytest.approx(-math.log(p_t[LABELS[j]]), abs=1e-6)
            kl = sum(p * math.log(p / q) for p, q in zip(p_t, p_s))
            assert states[j, k, 6].item() == pytest.approx(kl, abs=1e-6)


def test_regression_scalars_match_hand_computation():
    teacher = torch.tensor([[[1.0], [3.0]], [[0.0], [-2.0]]])
    student = torch.tensor([[2.0], [1.0]])
    labels = torch.tensor([1.5, 0.5])
    scalars = teacher_scalars(teacher, student, labels, True, STATE_FEATURES)
    assert scalars.shape == (2, 2, 3) and state_size(STATE_FEATURES, 3, 1, True) == 6
    assert scalars[..., 0].tolist() == [[1.0, 3.0], [0.0, -2.0]]  # raw predictions
    assert scalars[..., 1].tolist() == [[0.25, 2.25], [0.25, 6.25]]  # squared error to the label
    assert scalars[..., 2].tolist() == [[1.0, 1.0], [1.0, 9.0]]  # squared gap to the student


def test_the_papers_state_is_the_default_and_subsets_set_the_size():
    from alembert.recipe.specs import RLKDOptions

    assert RLKDOptions(type="rl_kd").state == ["embedding", "probs", "gold_loss"]
    assert teacher_scalars(TEACHER, None, LABELS, False, ("probs", "gold_loss")).shape == (2, 2, 3)
    assert state_size(("gold_loss",), 3, 2, False) == 1
    assert selection_states(None, teacher_scalars(TEACHER, None, None, False, ("probs",))).shape == (2, 2, 2)


def test_bad_input_raises_naming_the_field():
    with pytest.raises(AlembertError, match="features"):
        teacher_scalars(TEACHER, STUDENT, LABELS, False, ("logits",))
    with pytest.raises(AlembertError, match="labels"):
        teacher_scalars(TEACHER, STUDENT, None, False, ("gold_loss",))
    with pytest.raises(AlembertError, match="student_logits"):
        teacher_scalars(TEACHER, STUDENT[:, :1], LABELS, False, ("divergence",))
    with pytest.raises(AlembertError, match="teacher_logits"):
        teacher_scalars(TEACHER, STUDENT, LABELS, True, ("probs",))
    with pytest.raises(AlembertError, match="embedding"):
        selection_states(EMB[:1], teacher_scalars(TEACHER, None, LABELS, False, ("gold_loss",)))


def test_states_carry_no_gradient():
    emb, teacher, student = (t.clone().requires_grad_(True) for t in (EMB, TEACHER, STUDENT))
    states = selection_states(emb, teacher_scalars(teacher, student, LABELS, False, STATE_FEATURES))
    assert not states.requires_grad and states.grad_fn is None


def test_running_moments_standardise_with_the_statistics_of_everything_seen():
    torch.manual_seed(0)
    a, b = torch.randn(50, 2) * 3 + 1, torch.randn(30, 2) * 0.5 - 2
    moments = RunningMoments(2)
    moments.update(a)
    moments.update(b)
    both = torch.cat([a, b]).double()
    assert moments.count == 80
    torch.testing.assert_close(moments.mean, both.mean(0))
    torch.testing.assert_close(moments.var, both.var(0, unbiased=False))
    z = moments.standardise(torch.cat([a, b]))
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    restored = RunningMoments(2)
    restored.load_state_dict(moments.state_dict())
    assert torch.equal(restored.standardise(a), moments.standardise(a))


def test_embedding_table_is_standardised_per_dimension_and_scaled_to_unit_total_variance():
    table = torch.randn(200, 16) * torch.arange(1.0, 17.0) + 5
    z = standardised(table).double()
    torch.testing.assert_close(z.mean(0), torch.zeros(16, dtype=torch.float64), atol=1e-6, rtol=0)
    assert float(z.var(0, unbiased=False).sum()) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("shared, hidden, count", [(False, 0, 3 * 5 + 3), (True, 0, 5 + 3),
                                                   (False, 8, 5 * 8 + 8 + 3 * 8 + 3)])
def test_policy_starts_at_one_half_with_weights_per_teacher_or_shared(shared, hidden, count):
    policy = SelectionPolicy(5, 3, shared=shared, hidden=hidden)
    logits = policy(torch.randn(4, 3, 5) * 10)
    assert logits.shape == (4, 3) and torch.sigmoid(logits).eq(0.5).all()
    assert sum(p.numel() for p in policy.parameters()) == count
    with pytest.raises(AlembertError, match="states"):
        policy(torch.randn(4, 2, 5))


def test_per_teacher_policies_tell_apart_teachers_whose_states_are_identical():
    """The failure the benchmark showed: one shared unit scores teachers with equal states equally, whatever it
    learns; a weight vector per teacher (or a bias per teacher) need not."""
    states = torch.randn(6, 3, 4).expand(6, 3, 4).clone()
    states[:, 1:] = states[:, :1]  # every teacher's state is the same
    for shared in (False, True):
        policy = SelectionPolicy(4, 3, shared=shared)
        with torch.no_grad():
            policy.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
        p = torch.sigmoid(policy(states))
        assert (p[:, 0] > p[:, 1]).all() and (p[:, 1] > p[:, 2]).all()


def test_bernoulli_weights_are_normalised_selections():
    rl = Reinforce(SelectionPolicy(4, 3), seed=1)
    weights, chosen, probs = rl.act(torch.randn(64, 3, 4))
    sums = weights.sum(-1)
    assert ((sums - 1).abs() < 1e-6).logical_or(sums == 0).all()
    assert (sums == 0).any() and (sums > 0).any()  # at p = 0.5, 1 in 8 rows selects nobody
    selected = weights > 0
    assert torch.equal(selected.float(), chosen) and probs.eq(0.5).all()
    assert torch.allclose(weights[selected], (1 / selected.sum(-1, keepdim=True).float()).expand_as(weights)[selected])
    assert not weights.requires_grad and rl.pending == 1
    assert bernoulli_entropy(probs).mean().item() == pytest.approx(math.log(2), rel=1e-5)


def test_soft_weights_are_positive_and_sum_to_one():
    rl = Reinforce(SelectionPolicy(4, 3), action="soft", seed=1)
    weights, chosen, _ = rl.act(torch.randn(64, 3, 4))
    assert (weights > 0).all() and ((chosen > 0) & (chosen < 1)).all()
    assert torch.allclose(weights.sum(-1), torch.ones(64))
    assert torch.allclose(rl.greedy(torch.randn(5, 3, 4)), torch.full((5, 3), 1 / 3))
    assert rl.pending == 1  # greedy records nothing


@pytest.mark.parametrize("action", ["bernoulli", "soft"])
def test_same_seed_same_actions_independent_of_global_rng(action):
    states = torch.randn(8, 3, 4)
    torch.manual_seed(0)
    first = Reinforce(SelectionPolicy(4, 3), action=action, seed=7).act(states)[0]
    torch.manual_seed(123)
    second = Reinforce(SelectionPolicy(4, 3), action=action, seed=7).act(states)[0]
    other = Reinforce(SelectionPolicy(4, 3), action=action, seed=8).act(states)[0]
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_ema_baseline_first_episode_only_sets_it():
    policy = SelectionPolicy(4, 3)
    rl = Reinforce(policy, lr=0.1, baseline="ema")
    rl.act(torch.randn(4, 3, 4))
    out = rl.end_episode(-2.0)
    assert out["reward"] == -2.0 and out["baseline"] == -2.0 and out["advantage"] == 0.0
    assert out["policy_loss"] == 0.0 and rl.pending == 0 and rl.baseline == -2.0
    assert all(p.eq(0).all() for p in policy.parameters())
    rl.act(torch.randn(4, 3, 4))
    out = rl.end_episode(-1.0)
    assert out["advantage"] == pytest.approx(1.0) and out["baseline"] == -2.0
    assert rl.baseline == pytest.approx(0.9 * -2.0 + 0.1 * -1.0)
    assert any(p.ne(0).any() for p in policy.parameters())


def test_batch_baseline_is_the_other_examples_mean_reward():
    policy = SelectionPolicy(4, 2)
    rl = Reinforce(policy, lr=0.1, baseline="batch")
    states = torch.randn(3, 2, 4)
    _, chosen, _ = rl.act(states)
    rewards = torch.tensor([1.0, 2.0, 6.0])
    out = rl.end_episode([rewards])
    advantages = torch.tensor([1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5])
    assert out["advantage"] == pytest.approx(float(advantages.mean()))
    assert out["reward"] == pytest.approx(3.0) and out["reward_std"] == pytest.approx(float(rewards.std()))
    # the step: on the bias of teacher k, the gradient of -mean A_j log pi(a_jk) is -sum_j A_j (a_jk - 0.5) / (3*2)
    grad = -(advantages[:, None] * (chosen - 0.5)).sum(0) / 6
    assert torch.equal(torch.sign(policy.bias.detach()), -torch.sign(grad))


def test_per_batch_rewards_must_match_the_recorded_batches():
    rl = Reinforce(SelectionPolicy(4, 3))
    rl.act(torch.randn(2, 3, 4))
    rl.act(torch.randn(2, 3, 4))
    with pytest.raises(AlembertError, match="rewards"):
        rl.end_episode([1.0])
    with pytest.raises(AlembertError, match="finite"):
        rl.end_episode([torch.tensor([1.0, float("nan")]), torch.tensor([0.0, 0.0])])


# Toy bandit: the student's loss falls the more weight goes to teacher 1; an example with no teacher costs as much
# as a bad teacher (no distillation signal), so "select nobody" is not a loophole. Per-example rewards.
COST = torch.tensor([1.0, 0.2, 1.0])


def _bandit_states(batch: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(batch, 3, 4, generator=generator)  # nothing in the state tells the teachers apart


def _bandit_rewards(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    cost = (weights * COST).sum(-1) + (1 - weights.sum(-1))
    return -cost + 0.3 * torch.randn(cost.shape, generator=generator) - torch.randn(1, generator=generator)


def _train_bandit(action: str, baseline: str, episodes: int, shared: bool = False) -> Reinforce:
    generator = torch.Generator().manual_seed(100)
    rl = Reinforce(SelectionPolicy(4, 3, shared=shared), action=action, lr=0.05, baseline=baseline, seed=0)
    for _ in range(episodes):
        weights = rl.act(_bandit_states(16, generator))[0]
        rl.end_episode([_bandit_rewards(weights, generator)])
    return rl


@pytest.mark.parametrize("baseline, shared", [("batch", False), ("ema", False), ("batch", True)])
def test_bandit_bernoulli_learns_the_best_teacher_from_per_example_rewards(baseline, shared):
    rl = _train_bandit("bernoulli", baseline, 200, shared)
    with torch.no_grad():
        p = torch.sigmoid(rl.policy(_bandit_states(256, torch.Generator().manual_seed(5)))).mean(0)
    assert p[1] > 0.8 and p[0] < 0.35 and p[2] < 0.35, p


def test_bandit_soft_favours_the_best_teacher():
    rl = _train_bandit("soft", "batch", 300)
    weights = rl.greedy(_bandit_states(256, torch.Generator().manual_seed(5))).mean(0)
    assert weights[1] > weights[0] + 0.3 and weights[1] > weights[2] + 0.3, weights


@pytest.mark.parametrize("action", ["bernoulli", "soft"])
def test_state_dict_round_trip_continues_identically(action):
    generator = torch.Generator().manual_seed(3)
    rl = Reinforce(SelectionPolicy(4, 3, hidden=4), action=action, lr=0.05, seed=2, baseline="ema")
    for _ in range(5):
        rl.end_episode([_bandit_rewards(rl.act(_bandit_states(8, generator))[0], generator)])
    rl.act(_bandit_states(8, generator))  # mid-episode: the buffer is saved too
    saved = rl.state_dict()

    fresh = Reinforce(SelectionPolicy(4, 3, hidden=4), action=action, lr=0.05, seed=99, baseline="ema")
    fresh.load_state_dict(saved)
    assert fresh.baseline == rl.baseline and fresh.pending == rl.pending == 1
    states = _bandit_states(8, generator)
    for learner in (rl, fresh):
        learner.act(states)
        learner.end_episode(-0.5)
    assert torch.equal(rl.act(states)[0], fresh.act(states)[0])
    for a, b in zip(rl.policy.parameters(), fresh.policy.parameters()):
        assert torch.equal(a, b)
