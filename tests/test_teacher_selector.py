from __future__ import annotations

import math

import pytest
import torch

from alembert.plugins.teacher_selector import (
    STATE_FEATURES,
    Reinforce,
    SelectionPolicy,
    selection_states,
    state_size,
)
from alembert.errors import AlembertError

# B=2 examples, K=2 teachers, C=2 labels, D=3: small enough to check by hand.
EMB = torch.tensor([[3.0, 0.0, 4.0], [1.0, 1.0, 1.0]])
TEACHER = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [-1.0, 3.0]]])
STUDENT = torch.tensor([[0.5, 0.0], [0.0, 2.0]])
LABELS = torch.tensor([0, 1])


def _softmax2(a: float, b: float) -> tuple[float, float]:
    ea, eb = math.exp(a), math.exp(b)
    return ea / (ea + eb), eb / (ea + eb)


def test_classification_states_match_hand_computation():
    states = selection_states(EMB, TEACHER, STUDENT, LABELS, regression=False)
    assert states.shape == (2, 2, state_size(STATE_FEATURES, 3, 2, False)) == (2, 2, 3 + 2 + 1 + 1)
    assert states.dtype == torch.float32
    # Embedding slice: the same unit vector for every teacher of an example.
    assert torch.allclose(states[0, :, :3], torch.tensor([0.6, 0.0, 0.8]).expand(2, 3))
    assert torch.allclose(states[..., :3].norm(dim=-1), torch.ones(2, 2))
    for j in range(2):
        p_s = _softmax2(*STUDENT[j].tolist())
        for k in range(2):
            p_t = _softmax2(*TEACHER[j, k].tolist())
            assert states[j, k, 3:5].tolist() == pytest.approx(p_t, abs=1e-6)
            assert states[j, k, 5].item() == pytest.approx(-math.log(p_t[LABELS[j]]), abs=1e-6)
            kl = sum(p * math.log(p / q) for p, q in zip(p_t, p_s))
            assert states[j, k, 6].item() == pytest.approx(kl, abs=1e-6)


def test_regression_states_match_hand_computation():
    teacher = torch.tensor([[[1.0], [3.0]], [[0.0], [-2.0]]])
    student = torch.tensor([[2.0], [1.0]])
    labels = torch.tensor([1.5, 0.5])
    states = selection_states(EMB, teacher, student, labels, regression=True)
    assert states.shape == (2, 2, state_size(STATE_FEATURES, 3, 1, True)) == (2, 2, 6)
    assert states[..., 3].tolist() == [[1.0, 3.0], [0.0, -2.0]]  # raw predictions
    assert states[..., 4].tolist() == [[0.25, 2.25], [0.25, 6.25]]  # squared error to the label
    assert states[..., 5].tolist() == [[1.0, 1.0], [1.0, 9.0]]  # squared gap to the student


@pytest.mark.parametrize("features", [("probs",), ("gold_loss", "divergence"), ("embedding", "divergence")])
def test_feature_subset_sets_the_state_size(features):
    states = selection_states(EMB, TEACHER, STUDENT, LABELS, regression=False, features=features)
    assert states.shape[-1] == state_size(features, 3, 2, False)
    assert state_size(features, 3, 2, False) < state_size(STATE_FEATURES, 3, 2, False)


def test_gold_loss_without_labels_raises():
    with pytest.raises(AlembertError, match="labels"):
        selection_states(EMB, TEACHER, STUDENT, None, regression=False)
    # Without gold_loss no labels are needed.
    assert selection_states(EMB, TEACHER, STUDENT, None, False, features=("probs",)).shape == (2, 2, 2)


def test_bad_input_raises_naming_the_field():
    with pytest.raises(AlembertError, match="features"):
        selection_states(EMB, TEACHER, STUDENT, LABELS, False, features=("logits",))
    with pytest.raises(AlembertError, match="student_logits"):
        selection_states(EMB, TEACHER, STUDENT[:, :1], LABELS, False)
    with pytest.raises(AlembertError, match="teacher_logits"):
        selection_states(EMB, TEACHER, STUDENT, LABELS, True)


def test_states_carry_no_gradient():
    emb, teacher, student = (t.clone().requires_grad_(True) for t in (EMB, TEACHER, STUDENT))
    states = selection_states(emb, teacher, student, LABELS, regression=False)
    assert not states.requires_grad and states.grad_fn is None


@pytest.mark.parametrize("hidden", [0, 8])
def test_policy_starts_at_one_half(hidden):
    policy = SelectionPolicy(5, hidden=hidden)
    logits = policy(torch.randn(4, 3, 5) * 10)
    assert logits.shape == (4, 3)
    assert torch.sigmoid(logits).eq(0.5).all()
    assert sum(p.numel() for p in policy.parameters()) == (6 if hidden == 0 else 5 * 8 + 8 + 8 + 1)


def test_bernoulli_weights_are_normalised_selections():
    rl = Reinforce(SelectionPolicy(4), seed=1)
    weights, rates = rl.act(torch.randn(64, 3, 4))
    sums = weights.sum(-1)
    assert ((sums - 1).abs() < 1e-6).logical_or(sums == 0).all()
    assert (sums == 0).any() and (sums > 0).any()  # at p = 0.5, 1 in 8 rows selects nobody
    selected = weights > 0
    assert torch.allclose(weights[selected], (1 / selected.sum(-1, keepdim=True).float()).expand_as(weights)[selected])
    assert torch.allclose(rates, selected.float().mean(0))
    assert not weights.requires_grad and rl.pending == 1


def test_soft_weights_are_positive_and_sum_to_one():
    rl = Reinforce(SelectionPolicy(4), action="soft", seed=1)
    weights, rates = rl.act(torch.randn(64, 3, 4))
    assert (weights > 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(64))
    assert rates.shape == (3,) and ((rates > 0) & (rates < 1)).all()
    assert torch.allclose(rl.greedy(torch.randn(5, 3, 4)), torch.full((5, 3), 1 / 3))
    assert rl.pending == 1  # greedy records nothing


@pytest.mark.parametrize("action", ["bernoulli", "soft"])
def test_same_seed_same_actions_independent_of_global_rng(action):
    states = torch.randn(8, 3, 4)
    torch.manual_seed(0)
    first = Reinforce(SelectionPolicy(4), action=action, seed=7).act(states)[0]
    torch.manual_seed(123)
    second = Reinforce(SelectionPolicy(4), action=action, seed=7).act(states)[0]
    other = Reinforce(SelectionPolicy(4), action=action, seed=8).act(states)[0]
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_first_episode_only_sets_the_baseline():
    policy = SelectionPolicy(4)
    rl = Reinforce(policy, lr=0.1)
    rl.act(torch.randn(4, 3, 4))
    out = rl.end_episode(-2.0)
    assert out == {"reward": -2.0, "baseline": -2.0, "advantage": 0.0, "policy_loss": 0.0}
    assert rl.pending == 0 and rl.baseline == -2.0
    assert all(p.eq(0).all() for p in policy.parameters())
    rl.act(torch.randn(4, 3, 4))
    out = rl.end_episode(-1.0)
    assert out["advantage"] == pytest.approx(1.0) and out["baseline"] == -2.0
    assert rl.baseline == pytest.approx(0.9 * -2.0 + 0.1 * -1.0)
    assert any(p.ne(0).any() for p in policy.parameters())
    # An empty episode only moves the baseline.
    assert rl.end_episode(-1.0)["policy_loss"] == 0.0


def test_per_batch_rewards_must_match_the_recorded_batches():
    rl = Reinforce(SelectionPolicy(4))
    rl.act(torch.randn(2, 3, 4))
    rl.act(torch.randn(2, 3, 4))
    with pytest.raises(AlembertError, match="rewards"):
        rl.end_episode([1.0])
    out = rl.end_episode([1.0, 3.0])
    assert out["reward"] == 2.0 and rl.baseline == 2.0


# Toy bandit: the student's loss falls the more weight goes to teacher 1; an example with no teacher
# costs as much as a bad teacher (no distillation signal), so "select nobody" is not a loophole.
COST = torch.tensor([1.0, 0.2, 1.0])


def _bandit_states(batch: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(batch, 3, 4, generator=generator)
    return torch.cat([noise, torch.eye(3).expand(batch, 3, 3)], dim=-1)  # one-hot: teachers are distinguishable


def _bandit_reward(weights: torch.Tensor, generator: torch.Generator) -> float:
    cost = (weights * COST).sum(-1) + (1 - weights.sum(-1))
    return float(-cost.mean() + 0.01 * torch.randn(1, generator=generator))


def _train_bandit(action: str, lr: float, episodes: int, batches_per_episode: int = 1) -> Reinforce:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(100)
    rl = Reinforce(SelectionPolicy(7), action=action, lr=lr, seed=0)
    for _ in range(episodes):
        rewards = [_bandit_reward(rl.act(_bandit_states(16, generator))[0], generator) for _ in range(batches_per_episode)]
        rl.end_episode(rewards if batches_per_episode > 1 else rewards[0])
    return rl


def test_bandit_bernoulli_learns_the_best_teacher():
    rl = _train_bandit("bernoulli", lr=0.05, episodes=300)
    states = _bandit_states(256, torch.Generator().manual_seed(5))
    with torch.no_grad():
        p = torch.sigmoid(rl.policy(states)).mean(0)
    # Over seeds 0-5 this reaches p1 ~ 0.98, p0/p2 ~ 0.02.
    assert p[1] > 0.8 and p[0] < 0.3 and p[2] < 0.3
    assert torch.equal(rl.greedy(states).mean(0), torch.tensor([0.0, 1.0, 0.0]))


def test_bandit_per_batch_rewards_learn_too():
    rl = _train_bandit("bernoulli", lr=0.05, episodes=100, batches_per_episode=3)
    with torch.no_grad():
        p = torch.sigmoid(rl.policy(_bandit_states(256, torch.Generator().manual_seed(5)))).mean(0)
    assert p[1] > 0.8 and p[0] < 0.3 and p[2] < 0.3


def test_bandit_soft_favours_the_best_teacher():
    rl = _train_bandit("soft", lr=0.05, episodes=300)
    weights = rl.greedy(_bandit_states(256, torch.Generator().manual_seed(5))).mean(0)
    # Over seeds 0-5 teacher 1's greedy weight is 0.88-0.99, the others below 0.07.
    assert weights[1] > weights[0] + 0.5 and weights[1] > weights[2] + 0.5


@pytest.mark.parametrize("action", ["bernoulli", "soft"])
def test_state_dict_round_trip_continues_identically(action):
    generator = torch.Generator().manual_seed(3)
    rl = Reinforce(SelectionPolicy(7, hidden=4), action=action, lr=0.05, seed=2)
    for _ in range(5):
        rl.end_episode(_bandit_reward(rl.act(_bandit_states(8, generator))[0], generator))
    rl.act(_bandit_states(8, generator))  # mid-episode: the buffer is saved too
    saved = rl.state_dict()

    fresh = Reinforce(SelectionPolicy(7, hidden=4), action=action, lr=0.05, seed=99)
    fresh.load_state_dict(saved)
    assert fresh.baseline == rl.baseline and fresh.pending == rl.pending == 1
    states = _bandit_states(8, generator)
    for learner in (rl, fresh):
        learner.act(states)
        learner.end_episode(-0.5)
    assert torch.equal(rl.act(states)[0], fresh.act(states)[0])
    for a, b in zip(rl.policy.parameters(), fresh.policy.parameters()):
        assert torch.equal(a, b)
