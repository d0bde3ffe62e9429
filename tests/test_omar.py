"""OMAR / ICQL (discrete): losses against hand-computed cases (plain Python loops) and module checks."""

import math

import pytest
import torch

from lit_omarl.algos import ALGORITHMS, ICQL, OMAR
from lit_omarl.algos.losses import NEG_INF, td_lambda_targets
from lit_omarl.algos.losses.omar import (
    OMAR_SIGMA_EPS,
    bootstrap_values,
    independent_cql_loss,
    omar_actor_loss,
    omar_index_search,
    omar_targets,
    policy_gradient_loss,
    target_nll,
)
from lit_omarl.spec import EnvSpec

# B=1 episode, T=2 steps, N=2 agents, A=3 actions; the second step is padding.
Q = [[[1.0, 2.0, 0.5], [0.3, -1.0, 1.5]], [[4.0, 4.0, 4.0], [9.0, 9.0, 9.0]]]
ACTIONS = [[0, 2], [1, 1]]
AVAIL = [[[True, True, True], [True, False, True]], [[True, True, True], [True, True, True]]]
TARGETS = [[2.0, 1.0], [0.0, 0.0]]
MASK = [1.0, 0.0]


def tensors():
    return (
        torch.tensor([Q]),
        torch.tensor([ACTIONS]),
        torch.tensor([AVAIL]),
        torch.tensor([TARGETS]),
        torch.tensor([MASK]),
    )


@pytest.mark.parametrize("mask_unavailable", [False, True])
def test_independent_cql_loss_by_hand(mask_unavailable):
    alpha = 3.0
    td_terms, gaps = [], []
    for t in range(2):
        if not MASK[t]:
            continue
        for i in range(2):
            q, a = Q[t][i], ACTIONS[t][i]
            td_terms.append((q[a] - TARGETS[t][i]) ** 2)
            js = [j for j in range(3) if AVAIL[t][i][j] or not mask_unavailable]
            gaps.append(math.log(sum(math.exp(q[j]) for j in js)) - q[a])
    td, cql = sum(td_terms) / len(td_terms), sum(gaps) / len(gaps)
    loss, cql_got, td_got, q_taken = independent_cql_loss(*tensors()[:4], torch.tensor([MASK]), alpha, mask_unavailable)
    assert td_got.item() == pytest.approx(td, abs=1e-5)
    assert cql_got.item() == pytest.approx(cql, abs=1e-5)
    assert loss.item() == pytest.approx(td + alpha * cql, abs=1e-5)
    assert q_taken[0, 0].tolist() == pytest.approx([1.0, 1.5])


def test_independent_cql_gradient_pushes_down_unseen_actions():
    q, actions, avail, targets, mask = tensors()
    q.requires_grad_(True)
    loss, *_ = independent_cql_loss(q, actions, avail, targets, mask, 1.0)
    (grad,) = torch.autograd.grad(loss, q)
    assert grad[0, 0, 0, 1] > 0 and grad[0, 0, 0, 2] > 0  # unseen actions: pushed down
    assert grad[0, 1].abs().sum() == 0  # padded step


def test_bootstrap_values_by_hand():
    # [B=1, T+1=3, N=1, A=2] target Qs, dataset actions at t=0,1; step 1 is padding.
    tq = [[5.0, 1.0], [2.0, 4.0], [3.0, 7.0]]
    probs = [[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]
    actions, mask = [1, 0], [1.0, 0.0]
    target_q = torch.tensor(tq).view(1, 3, 1, 2)
    next_probs = torch.tensor(probs).view(1, 3, 1, 2)
    a = torch.tensor(actions).view(1, 2, 1)
    m = torch.tensor([mask])
    expected = [sum(p * q for p, q in zip(probs[t], tq[t])) for t in range(3)]
    got_policy = bootstrap_values(target_q, a, m, next_probs, "policy")[0, :, 0].tolist()
    assert got_policy == pytest.approx(expected)
    got_data = bootstrap_values(target_q, a, m, next_probs, "data")[0, :, 0].tolist()
    # valid step 0: Q'(o_0, a_0 = 1); padded step 1 and the final observation: the policy expectation
    assert got_data == pytest.approx([tq[0][1], expected[1], expected[2]])


def hand_index_search(q, avail, noise):
    """Plain-Python CEM over action indices, as documented in omar_index_search."""
    n = len(q)
    mu = sigma = n / 2.0
    for eps in noise:
        acts = [int(math.floor(min(max(mu + sigma * e, 0.0), n - 1.0) + 0.5)) for e in eps]
        qs = [q[a] if avail[a] else NEG_INF for a in acts]
        top = max(qs)
        w = [math.exp(x - top) for x in qs]
        z = sum(w)
        mu = sum(wk * a for wk, a in zip(w, acts)) / z
        sigma = math.sqrt(sum(((a - mu) * avail[a]) ** 2 for a in acts) / len(acts)) + OMAR_SIGMA_EPS
    best = max(range(len(qs)), key=lambda k: (qs[k], -k))  # first maximum
    return acts[best], qs[best], mu, sigma


def test_omar_index_search_by_hand_with_explicit_noise():
    q, avail = [0.0, 3.0, 1.0, 2.5], [True, True, False, True]
    noise = [[-1.0, 0.2, 0.9], [0.1, -0.3, 2.0]]
    # by hand: round 1 mu = sigma = 2 -> x = 0, 2.4, 3.8 -> actions 0, 2 (unavailable), 3 -> ...
    act, val, _, _ = hand_index_search(q, avail, noise)
    got_a, got_q = omar_index_search(torch.tensor(q), torch.tensor(avail), torch.tensor(noise))
    assert got_a.item() == act and got_q.item() == pytest.approx(val)
    # first round's samples: 0, 2, 3 (2 unavailable); the refit concentrates on action 3
    w0, w3 = math.exp(0.0 - 2.5), 1.0
    mu1 = 3 * w3 / (w0 + w3)
    assert hand_index_search(q, avail, noise[:1])[2] == pytest.approx(mu1)


def test_omar_targets_on_a_fixed_q_table_with_a_fixed_generator():
    # 2 agents x 3 states of a tiny Q table, 5 actions, action 4 unavailable for agent 1.
    q = torch.tensor([[[0.0, 1.0, 5.0, 2.0, 9.0], [3.0, 0.0, 0.0, 0.0, 1.0]],
                      [[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 4.0, 6.0, 8.0]],
                      [[-1.0, 0.0, -2.0, 0.0, 0.5], [2.0, 2.0, 2.0, 2.0, 2.0]]])  # [3, 2, 5]
    avail = torch.ones(3, 2, 5, dtype=torch.bool)
    avail[:, 1, 4] = False
    policy = torch.tensor([[1, 0], [2, 3], [0, 1]])
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(4, 3, 2, 6, generator=g)  # 4 rounds, 6 samples
    got = omar_targets(q, avail, policy, noise)
    for s in range(3):
        for i in range(2):
            per = [[float(x) for x in noise[r, s, i]] for r in range(4)]
            a, val, _, _ = hand_index_search(q[s, i].tolist(), avail[s, i].tolist(), per)
            pol = policy[s, i].item()
            expected = a if val > q[s, i, pol].item() else pol
            assert got[s, i].item() == expected, (s, i)
            assert avail[s, i, got[s, i]]
    # the same generator seed gives the same targets
    again = omar_targets(q, avail, policy, torch.randn(4, 3, 2, 6, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(got, again)


def test_omar_targets_keep_the_policy_action_on_ties_and_unavailable_samples():
    q = torch.tensor([2.0, 2.0, 2.0])
    noise = torch.zeros(2, 4)  # every sample at mu = 1.5 -> index 2
    assert omar_targets(q, torch.ones(3, dtype=torch.bool), torch.tensor(0), noise).item() == 0  # tie: keep
    avail = torch.tensor([True, True, False])  # all samples unavailable: keep the policy's action
    assert omar_targets(torch.tensor([0.0, 0.0, 99.0]), avail, torch.tensor(1), noise).item() == 1


def test_policy_gradient_losses_by_hand():
    logits = torch.tensor([[[[0.2, -0.4, 1.0]]], [[[0.0, 0.0, 0.0]]]]).view(1, 2, 1, 3)
    avail = torch.tensor([[[[True, True, False]]], [[[True, True, True]]]]).view(1, 2, 1, 3)
    q = torch.tensor([[[[1.0, 3.0, 100.0]]], [[[5.0, 5.0, 5.0]]]]).view(1, 2, 1, 3)
    actions = torch.tensor([[[0], [2]]])
    mask = torch.tensor([[1.0, 0.0]])
    logp = torch.log_softmax(logits.masked_fill(~avail, NEG_INF), -1)
    z = math.exp(0.2) + math.exp(-0.4)
    p = [math.exp(0.2) / z, math.exp(-0.4) / z]
    baseline = p[0] * 1.0 + p[1] * 3.0
    adv = 1.0 - baseline
    assert policy_gradient_loss(logp, q, actions, mask).item() == pytest.approx(-adv * math.log(p[0]), abs=1e-5)
    assert policy_gradient_loss(logp, q, actions, mask, "expected_q").item() == pytest.approx(-baseline, abs=1e-5)
    assert target_nll(logp, torch.tensor([[[1], [0]]]), mask).item() == pytest.approx(-math.log(p[1]), abs=1e-5)
    pg, nll = torch.tensor(2.0), torch.tensor(4.0)
    assert omar_actor_loss(pg, nll, 0.25).item() == pytest.approx(0.75 * 2.0 + 0.25 * 4.0)
    assert omar_actor_loss(pg, None, 0.25).item() == 2.0


SPEC = EnvSpec(env_id="test/tiny", n_agents=2, obs_dim=3, state_dim=4, n_actions=3, episode_limit=3)


def test_icql_is_omar_without_the_omar_term():
    assert ALGORITHMS["omar"] is OMAR and ALGORITHMS["icql"] is ICQL
    model = ICQL(spec=SPEC.to_dict(), eval_every_steps=0, final_eval_episodes=0)
    assert model.hparams.use_omar is False
    assert OMAR(spec=SPEC.to_dict(), eval_every_steps=0, final_eval_episodes=0).hparams.use_omar is True


def test_per_agent_td_targets_are_one_recursion_per_agent():
    model = OMAR(spec=SPEC.to_dict(), td_lambda=0.5, gamma=0.9, eval_every_steps=0, final_eval_episodes=0)
    batch = {
        "reward": torch.tensor([[1.0, 2.0, 0.0]]),
        "terminated": torch.tensor([[0.0, 1.0, 0.0]]),
        "mask": torch.tensor([[1.0, 1.0, 0.0]]),
    }
    values = torch.tensor([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]])  # [1, T+1, N]
    got = model.per_agent_td_targets(batch, values)
    for i in range(2):
        one = td_lambda_targets(batch["reward"], batch["terminated"], batch["mask"], values[..., i], 0.9, 0.5)
        assert torch.allclose(got[..., i], one)
    # by hand, agent 1: G_1 = 2 (terminal), G_0 = 1 + 0.9 * (0.5 * 20 + 0.5 * 2)
    assert got[0, :2, 1].tolist() == pytest.approx([1 + 0.9 * (0.5 * 20 + 0.5 * 2), 2.0])


def test_critic_inputs_hold_state_obs_and_id():
    model = OMAR(spec=SPEC.to_dict(), eval_every_steps=0, final_eval_episodes=0)
    batch = {"obs": torch.randn(2, 3, 2, 3), "state": torch.randn(2, 3, 4)}
    x = model.critic_inputs(batch)
    assert x.shape == (2, 3, 2, 4 + 3 + 2)
    assert torch.equal(x[:, :, 1, :4], batch["state"]) and torch.equal(x[:, :, 1, 4:7], batch["obs"][:, :, 1])
    assert x[0, 0, 1, 7:].tolist() == [0.0, 1.0]
    local = OMAR(spec=SPEC.to_dict(), critic_inputs="obs", eval_every_steps=0, final_eval_episodes=0)
    assert local.critic_inputs(batch).shape[-1] == 3 + 2
