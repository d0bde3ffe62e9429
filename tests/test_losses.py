"""Loss functions against small cases computed by hand with plain Python loops."""

import math

import pytest
import torch

from lit_omarl.algos.losses import (
    bc_nll,
    cfcql_loss,
    counterfactual_lambda,
    cql_counterfactual_term,
    ensure_some_available,
    macql_term,
    masked_mean,
    sample_available_actions,
    td_lambda_targets,
)


def lambda_return_forward_view(rewards, q_next, terminated, gamma, lam):
    """G^lambda_t = (1 - lam) sum_n lam^(n-1) G^(n)_t + lam^(H-1) G^(H)_t, H = steps left (textbook form)."""
    length = len(rewards)
    out = []
    for t in range(length):
        horizon = length - t

        def n_step(n):
            g = sum(gamma**k * rewards[t + k] for k in range(n))
            end = t + n - 1
            if not terminated[end]:
                g += gamma**n * q_next[end]  # q_next[end] = Q'(obs after step `end`)
            return g

        if lam == 1.0:
            out.append(n_step(horizon))
            continue
        g = (1 - lam) * sum(lam ** (n - 1) * n_step(n) for n in range(1, horizon))
        out.append(g + lam ** (horizon - 1) * n_step(horizon))
    return out


@pytest.mark.parametrize("lam", [0.0, 1.0, 0.6])
@pytest.mark.parametrize("terminal", [True, False])
def test_td_lambda_targets_one_episode(lam, terminal):
    gamma = 0.9
    rewards, q = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0]  # q[t] = Q'(obs_t), t = 0..3
    term = [0.0, 0.0, 1.0 if terminal else 0.0]
    got = td_lambda_targets(
        torch.tensor([rewards]), torch.tensor([term]), torch.ones(1, 3), torch.tensor([q]), gamma, lam
    )[0].tolist()
    expected = lambda_return_forward_view(rewards, q[1:], term, gamma, lam)
    assert got == pytest.approx(expected, abs=1e-5)
    if lam == 0.0:
        assert got == pytest.approx([1 + 0.9 * 20, 2 + 0.9 * 30, 3 + (0 if terminal else 0.9 * 40)], abs=1e-5)
    if lam == 1.0 and terminal:
        assert got == pytest.approx([1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3], abs=1e-5)


def test_td_lambda_targets_with_padding():
    """A shorter episode in the batch: its own last Q' bootstraps, padding gets 0."""
    gamma, lam = 0.9, 0.6
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    term = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    q = torch.tensor([[10.0, 20.0, 30.0, 40.0], [5.0, 6.0, 7.0, 99.0]])
    got = td_lambda_targets(rewards, term, mask, q, gamma, lam)
    first = lambda_return_forward_view([1.0, 2.0, 3.0], [20.0, 30.0, 40.0], [0, 0, 1], gamma, lam)
    second = lambda_return_forward_view([0.5, -1.0], [6.0, 7.0], [0, 0], gamma, lam)
    assert got[0].tolist() == pytest.approx(first, abs=1e-5)
    assert got[1, :2].tolist() == pytest.approx(second, abs=1e-5)
    assert got[1, 2].item() == 0.0


def test_masked_mean_and_empty_rows():
    x = torch.tensor([[1.0, 2.0, 100.0]])
    assert masked_mean(x, torch.tensor([[1.0, 1.0, 0.0]])).item() == pytest.approx(1.5)
    assert masked_mean(x, torch.zeros(1, 3)).item() == 0.0
    avail = torch.tensor([[True, False], [False, False]])
    assert ensure_some_available(avail).tolist() == [[True, False], [True, True]]


# A 2-agent, 3-action case with a FIXED linear mixer Q_tot = w1 q1 + w2 q2 + b.
W, BIAS = (0.7, 1.3), 0.2
Q1, Q2 = [1.0, 2.0, 0.5], [0.3, -1.0, 1.5]
ACTIONS = (0, 2)
AVAIL = [[True, True, True], [True, False, True]]  # agent 2 cannot take action 1


def linear_mix(qs, params):
    w, b = params
    return (qs * w).sum(-1) + b


def cf_inputs():
    q_all = torch.tensor([[[Q1, Q2]]])  # [1, 1, 2, 3]
    actions = torch.tensor([[list(ACTIONS)]])
    avail = torch.tensor([[AVAIL]])
    return q_all, actions, avail, (torch.tensor(W), torch.tensor(BIAS))


def hand_candidates():
    """cand[i][j] = Q_tot when agent i plays j and the other its dataset action (None if unavailable)."""
    qs = [Q1, Q2]
    cand = []
    for i in range(2):
        row = []
        for j in range(3):
            joint = [qs[k][ACTIONS[k]] if k != i else qs[i][j] for k in range(2)]
            row.append(W[0] * joint[0] + W[1] * joint[1] + BIAS if AVAIL[i][j] else None)
        cand.append(row)
    return cand


def test_counterfactual_cql_term_by_hand():
    q_all, actions, avail, params = cf_inputs()
    neg, cand_qtot = cql_counterfactual_term(q_all, actions, avail, params, linear_mix)
    cand = hand_candidates()
    for i in range(2):
        expected = math.log(sum(math.exp(c) for c in cand[i] if c is not None))
        assert neg[0, 0, i].item() == pytest.approx(expected, abs=1e-5)
        for j in range(3):
            if cand[i][j] is None:
                assert cand_qtot[0, 0, i, j].item() <= -1e9
            else:
                assert cand_qtot[0, 0, i, j].item() == pytest.approx(cand[i][j], abs=1e-5)


def test_counterfactual_term_gradients_reach_all_agents():
    q_all, actions, avail, params = cf_inputs()
    q_all.requires_grad_(True)
    neg, _ = cql_counterfactual_term(q_all, actions, avail, params, linear_mix)
    (grad,) = torch.autograd.grad(neg.sum(), q_all)
    assert grad[0, 0, 1, 1].item() == 0.0  # unavailable action gets no gradient
    assert (grad[0, 0, 0] > 0).all()


BETA = [[0.2, 0.5, 0.3], [0.6, 0.0, 0.4]]


def hand_kl_ratios():
    cand = hand_candidates()
    ratios = []
    for i in range(2):
        avail_j = [j for j in range(3) if cand[i][j] is not None]
        z = sum(math.exp(cand[i][j]) for j in avail_j)
        r = 0.0
        for j in avail_j:
            mu = math.exp(cand[i][j]) / z
            r += (mu + 1e-5) * math.log((mu + 1e-5) / (BETA[i][j] + 1e-5))
        ratios.append(r)
    return ratios


def run_lambda(temperature, mode="softmax"):
    q_all, actions, avail, params = cf_inputs()
    _, cand_qtot = cql_counterfactual_term(q_all, actions, avail, params, linear_mix)
    lam, ratio = counterfactual_lambda(cand_qtot, torch.tensor([[BETA]]), avail, temperature, mode)
    return lam[0, 0].tolist(), ratio[0, 0].tolist()


def test_lambda_temperature_zero_is_uniform():
    lam, ratio = run_lambda(0.0)
    assert lam == pytest.approx([0.5, 0.5])
    assert ratio == pytest.approx(hand_kl_ratios(), abs=1e-5)
    assert run_lambda(3.0, mode="uniform")[0] == pytest.approx([0.5, 0.5])


def test_lambda_finite_temperature_is_softmax_of_kl():
    tau = 2.0
    r = hand_kl_ratios()
    z = sum(math.exp(tau * x) for x in r)
    lam, _ = run_lambda(tau)
    assert lam == pytest.approx([math.exp(tau * x) / z for x in r], abs=1e-5)
    # POSITIVE sign: the agent with the larger KL gets the larger weight.
    assert (lam[0] > lam[1]) == (r[0] > r[1])


def test_lambda_huge_temperature_is_onehot():
    r = hand_kl_ratios()
    onehot = [1.0 if i == max(range(2), key=lambda k: r[k]) else 0.0 for i in range(2)]
    assert run_lambda(1e6)[0] == pytest.approx(onehot, abs=1e-6)
    assert run_lambda(0.0, mode="onehot")[0] == onehot


def test_lambda_has_no_gradient():
    q_all, actions, avail, params = cf_inputs()
    q_all.requires_grad_(True)
    _, cand_qtot = cql_counterfactual_term(q_all, actions, avail, params, linear_mix)
    lam, _ = counterfactual_lambda(cand_qtot, torch.tensor([[BETA]]), avail, 2.0)
    assert not lam.requires_grad


def test_cfcql_loss_by_hand():
    neg = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]])  # [1, 2, 2]
    lam = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])
    q_taken = torch.tensor([[0.5, 1.0]])
    td = torch.tensor([[2.0, -4.0]])
    mask = torch.tensor([[1.0, 0.0]])
    loss, cql, td_part = cfcql_loss(neg, lam, q_taken, td, mask, alpha=3.0)
    gap0 = 0.25 * 1.0 + 0.75 * 3.0 - 0.5  # the second step is masked out
    assert cql.item() == pytest.approx(gap0)
    assert td_part.item() == pytest.approx(0.5 * 2.0**2)
    assert loss.item() == pytest.approx(3.0 * gap0 + 2.0)


def test_macql_term_matches_a_manual_loop():
    torch.manual_seed(0)
    b, t, n, a, k = 2, 3, 2, 3, 5
    q_all = torch.randn(b, t, n, a)
    avail = torch.rand(b, t, n, a) > 0.3
    avail[..., 0] = True
    q_taken = torch.randn(b, t)
    w, bias = torch.tensor([0.4, 1.1]), torch.tensor(-0.3)
    got = macql_term(q_all, avail, q_taken, (w, bias), linear_mix, k, torch.Generator().manual_seed(7))
    # Same random numbers, then every sample, agent and step by hand.
    u = torch.rand(b, t, k, n, a, generator=torch.Generator().manual_seed(7)).tolist()
    for bi in range(b):
        for ti in range(t):
            values = []
            for ki in range(k):
                total = bias.item()
                for i in range(n):
                    choices = [j for j in range(a) if avail[bi, ti, i, j]]
                    j = max(choices, key=lambda c: u[bi][ti][ki][i][c])
                    total += w[i].item() * q_all[bi, ti, i, j].item()
                values.append(total)
            expected = math.log(sum(math.exp(v) for v in values)) - q_taken[bi, ti].item()
            assert got[bi, ti].item() == pytest.approx(expected, abs=1e-5)


def test_sampled_joint_actions_are_available_and_uniform():
    avail = torch.tensor([[True, False, True, True], [False, True, False, False]])
    samples = sample_available_actions(avail, 30000, torch.Generator().manual_seed(0))  # [K, N]
    assert avail.gather(-1, samples.T).all()
    freq = torch.bincount(samples[:, 0], minlength=4).float() / 30000
    assert freq.tolist() == pytest.approx([1 / 3, 0.0, 1 / 3, 1 / 3], abs=0.02)
    assert (samples[:, 1] == 1).all()


def test_bc_nll_with_masked_actions():
    logits = torch.tensor([[[[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], [[9.0, 9.0, 9.0], [9.0, 9.0, 9.0]]]])  # [1, 2, 2, 3]
    actions = torch.tensor([[[0, 2], [1, 1]]])
    avail = torch.tensor([[[[True, True, False], [True, False, True]], [[True, True, True], [True, True, True]]]])
    mask = torch.tensor([[1.0, 0.0]])  # the second step is padding
    expected = []
    for i in range(2):
        row, act = logits[0, 0, i].tolist(), actions[0, 0, i].item()
        z = sum(math.exp(v) for j, v in enumerate(row) if avail[0, 0, i, j])
        expected.append(-(row[act] - math.log(z)))
    assert bc_nll(logits, actions, avail, mask).item() == pytest.approx(sum(expected) / 2, abs=1e-5)
