"""Shared advantage-weighting pieces (losses/advantage.py) and the CTDE IQL / AWAC learners.

Loss functions are checked against small cases computed by hand with plain Python loops.
"""

import itertools
import math

import pytest
import torch

from lit_omarl.algos import AWAC, IQL
from lit_omarl.algos.losses.advantage import (
    all_joint_actions,
    awr_weights,
    expectile_loss,
    joint_policy_expectation,
    policy_actions,
    soft_update,
    squared_td_loss,
    taken_log_probs,
    value_targets,
    weighted_nll,
)
from lit_omarl.nets.coupled import JointActionCritic
from lit_omarl.spec import EnvSpec


def test_expectile_loss_by_hand():
    diffs, tau = [-2.0, 0.5, 3.0, 0.0], 0.7
    expected = [(tau if u >= 0 else 1 - tau) * u * u for u in diffs]
    assert expected[:3] == pytest.approx([1.2, 0.175, 6.3])
    assert expectile_loss(torch.tensor(diffs), tau).tolist() == pytest.approx(expected)
    # tau = 0.5 is half the squared error
    assert expectile_loss(torch.tensor(diffs), 0.5).tolist() == pytest.approx([0.5 * u * u for u in diffs])
    with pytest.raises(ValueError, match="expectile"):
        expectile_loss(torch.tensor(diffs), 1.0)


def test_awr_weights_clip_and_no_gradient():
    adv = torch.tensor([-1.0, 0.0, 1.0, 10.0], requires_grad=True)
    w = awr_weights(adv, temperature=0.5, max_weight=100.0)
    expected = [min(math.exp(0.5 * a), 100.0) for a in [-1.0, 0.0, 1.0, 10.0]]
    assert w.tolist() == pytest.approx(expected)
    assert w[-1].item() == 100.0 and not w.requires_grad
    low = awr_weights(torch.tensor([-30.0, 30.0]), 1.0, max_weight=math.exp(10), min_weight=math.exp(-10))
    assert low.tolist() == pytest.approx([math.exp(-10), math.exp(10)])


def test_taken_log_probs_and_weighted_nll_by_hand():
    logits = torch.tensor([[[[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]]]])  # [B=1, T=1, N=2, A=3]
    avail = torch.tensor([[[[True, True, False], [True, True, True]]]])
    actions = torch.tensor([[[1, 2]]])
    lp = taken_log_probs(logits, actions, avail)
    agent0 = 2.0 - math.log(math.exp(1.0) + math.exp(2.0))  # action 2 is unavailable
    agent1 = 5.0 - math.log(2.0 + math.exp(5.0))
    assert lp[0, 0].tolist() == pytest.approx([agent0, agent1], abs=1e-6)

    # two steps, the second padded; per-agent weights and joint weights
    lp2 = torch.tensor([[[-1.0, -2.0], [-50.0, -50.0]]])
    mask = torch.tensor([[1.0, 0.0]])
    w_agent = torch.tensor([[[2.0, 0.5], [9.0, 9.0]]])
    assert weighted_nll(lp2, w_agent, mask).item() == pytest.approx((2.0 * 1.0 + 0.5 * 2.0) / 2)
    w_joint = torch.tensor([[3.0, 9.0]])
    assert weighted_nll(lp2, w_joint, mask).item() == pytest.approx((3.0 * 1.0 + 3.0 * 2.0) / 2)


def test_value_targets_and_squared_td_loss_by_hand():
    r = torch.tensor([[1.0, 2.0]])
    d = torch.tensor([[0.0, 1.0]])
    v_next = torch.tensor([[10.0, 20.0]], requires_grad=True)
    y = value_targets(r, d, v_next, 0.9)
    assert y.tolist() == [[pytest.approx(1.0 + 0.9 * 10.0), 2.0]] and not y.requires_grad
    q = torch.tensor([[9.0, 4.0]])
    mask = torch.tensor([[1.0, 0.0]])
    assert squared_td_loss(q, y, mask).item() == pytest.approx((9.0 - 10.0) ** 2)
    ensemble = torch.stack([q, q + 1.0])  # two critics: losses are summed
    assert squared_td_loss(ensemble, y, mask).item() == pytest.approx(1.0 + 0.0)


def test_all_joint_actions_and_exact_expectation_by_hand():
    assert all_joint_actions(2, 3).tolist() == [list(p) for p in itertools.product(range(3), repeat=2)]
    table = torch.tensor([[0.0, 1.0, 4.0], [1.0, -2.0, 3.0], [5.0, 6.0, 7.0]])  # Q(a1, a2)
    probs = torch.tensor([[[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]]])  # [B=1, N=2, A=3]

    def q_fn(joint):  # [..., K, N] -> [..., K]
        return table[joint[..., 0], joint[..., 1]]

    expected = sum(
        probs[0, 0, i].item() * probs[0, 1, j].item() * table[i, j].item() for i in range(3) for j in range(3)
    )
    got = joint_policy_expectation(q_fn, probs)
    assert got.shape == (1,) and got.item() == pytest.approx(expected)
    # sampling branch: deterministic policies give the exact value
    onehot = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    sampled = joint_policy_expectation(q_fn, onehot, max_enumerate=0, n_samples=5, generator=torch.Generator().manual_seed(0))
    assert sampled.item() == pytest.approx(table[2, 1].item())
    # and many samples approach the exact expectation
    many = joint_policy_expectation(q_fn, probs, max_enumerate=0, n_samples=20000, generator=torch.Generator().manual_seed(0))
    assert many.item() == pytest.approx(expected, abs=0.05)


def test_policy_actions_soft_update_and_critic_candidates():
    logits = torch.tensor([[5.0, 1.0, 0.0]]).expand(200, 3)
    avail = torch.tensor([[False, True, True]]).expand(200, 3)
    assert (policy_actions(logits, avail, True) == 1).all()
    assert avail.gather(-1, policy_actions(logits, avail, False).unsqueeze(-1)).all()

    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    expected = 0.1 * online.weight.detach() + 0.9 * target.weight.detach()
    soft_update(target, online, 0.1)
    assert torch.allclose(target.weight, expected)

    torch.manual_seed(0)
    critic = JointActionCritic(state_dim=3, n_agents=2, n_actions=4, hidden_dim=8, n_critics=2)
    states = torch.randn(5, 3)
    cands = torch.randint(0, 4, (5, 6, 2))
    batched = critic(states, cands)  # [2, 5, 6]
    one_by_one = torch.stack([critic(states, cands[:, k]) for k in range(6)], dim=-1)
    assert batched.shape == (2, 5, 6) and torch.allclose(batched, one_by_one, atol=1e-6)


SPEC = EnvSpec(env_id="test/xor", n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)


def test_awac_expected_q_matches_enumeration():
    torch.manual_seed(0)
    model = AWAC(spec=SPEC.to_dict(), agent="mlp", use_last_action=False, critic_hidden_dim=8, agent_hidden_dim=8)
    state = torch.randn(3, 1, 1)
    probs = torch.softmax(torch.randn(3, 1, 2, 2), -1)
    got = model._expected_q(model.critic, state, probs)
    expected = torch.zeros(3, 1)
    for a1, a2 in itertools.product(range(2), repeat=2):
        q = model.critic(state, torch.tensor([a1, a2]).expand(3, 1, 2)).min(0).values
        expected += probs[..., 0, a1] * probs[..., 1, a2] * q
    assert torch.allclose(got, expected, atol=1e-6)


def test_iql_rejects_bad_expectile():
    with pytest.raises(ValueError, match="expectile"):
        IQL(spec=SPEC.to_dict(), expectile=1.5)
