"""InSPO: its loss functions against hand-computed cases, the autoregressive
behaviour model, the per-agent networks and the sequential update order."""

from __future__ import annotations

import math

import pytest
import torch

from lit_omarl.algos import InSPO
from lit_omarl.algos.losses.inspo import (
    alpha_temperature_loss,
    importance_resample,
    inspo_critic_loss,
    inspo_policy_loss,
    inspo_policy_weights,
    kl_categorical,
    normalised_weights,
    resampling_ratio,
    soft_state_value,
)
from lit_omarl.nets.agents import MLPAgent, RNNAgent
from lit_omarl.nets.autoregressive import AutoregressiveBehaviour, SeparateAgents, conditioning_mask
from lit_omarl.spec import EnvSpec


def logs(*probs):
    return [math.log(p) for p in probs]


# ---- importance ratio and resampling -------------------------------------------
def test_resampling_ratio_geometric_mean_by_hand():
    pi = [0.5, 0.2, 0.8]  # pi^j(a^j) of the dataset actions, 3 agents
    mu_others = [0.1, 0.3, 0.05]  # mu^{-i}(a^{-i} | s, a^i) for i = 0, 1, 2
    log_pi = torch.tensor([logs(*pi)])
    log_mu = torch.tensor([logs(*mu_others)])
    for i in range(3):
        prod = 1.0
        for j in range(3):
            if j != i:
                prod *= pi[j]
        got_geo = resampling_ratio(log_pi, log_mu, i, geometric=True).item()
        got_prod = resampling_ratio(log_pi, log_mu, i, geometric=False).item()
        assert got_geo == pytest.approx((prod / mu_others[i]) ** 0.5, rel=1e-5)
        assert got_prod == pytest.approx(prod / mu_others[i], rel=1e-5)
    # clipping: 0.5 * 0.2 / 0.05 = 2.0 for agent 2 -> clipped at 1.5
    assert resampling_ratio(log_pi, log_mu, 2, geometric=False, max_ratio=1.5).item() == pytest.approx(1.5)
    # one agent: no other agents, rho = 1
    assert resampling_ratio(torch.tensor([[-3.0]]), torch.tensor([[0.0]]), 0).item() == 1.0


def test_importance_resample_counts_and_mask():
    torch.manual_seed(0)
    ratio = torch.tensor([[1.0, 3.0, 0.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last step is padding
    w = importance_resample(ratio, mask)
    assert w.sum().item() == pytest.approx(1.0)
    assert w[0, 2].item() == 0.0 and w[0, 3].item() == 0.0  # ratio 0 / padded: never drawn
    assert (w * 3).round().allclose(w * 3)  # counts / 3 draws (3 valid steps)
    # Many draws: frequencies approach the normalised ratios 1/4, 3/4.
    w = importance_resample(ratio, mask, n_draws=200_000)
    assert w[0, :2].tolist() == pytest.approx([0.25, 0.75], abs=0.01)
    assert normalised_weights(ratio, mask)[0].tolist() == pytest.approx([0.25, 0.75, 0.0, 0.0])
    # All ratios zero: uniform over the valid steps.
    assert normalised_weights(torch.zeros(1, 4), mask)[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    w = importance_resample(torch.zeros(1, 4), mask, n_draws=30_000)
    assert w[0, 3].item() == 0.0 and w[0, :3].tolist() == pytest.approx([1 / 3] * 3, abs=0.02)


# ---- critic ----------------------------------------------------------------------
def test_soft_state_value_by_hand():
    q, pi, mu = [1.0, 2.0, 4.0], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]
    alpha, beta = 0.5, 0.25
    avail = [True, True, False]  # the third action is unavailable: excluded
    pi_av = [0.2 / 0.7, 0.5 / 0.7]
    expected = sum(pi_av[a] * (q[a] - alpha * math.log(pi_av[a] / mu[a]) - beta * math.log(pi_av[a])) for a in range(2))
    log_pi = torch.tensor([[math.log(pi_av[0]), math.log(pi_av[1]), -1e10]])
    log_mu = torch.tensor([logs(*mu)])
    got = soft_state_value(torch.tensor([q]), log_pi, log_mu, torch.tensor([avail]), alpha, beta)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # E_pi Q - alpha KL + beta H, written the other way round
    kl = sum(p * math.log(p / m) for p, m in zip(pi_av, mu))
    ent = -sum(p * math.log(p) for p in pi_av)
    assert got.item() == pytest.approx(sum(p * x for p, x in zip(pi_av, q)) - alpha * kl + beta * ent, rel=1e-5)


def test_inspo_critic_loss_by_hand():
    q = [[[1.0, 2.0, 0.5]], [[0.0, -1.0, 3.0]]]  # [B=2, T=1, A=3]
    actions = [[1], [2]]
    target = [[1.5], [2.0]]
    avail = [[[True, True, True]], [[True, False, True]]]
    weights = [[0.25], [0.75]]
    cql_alpha = 0.1
    td = cql = 0.0
    for b in range(2):
        qa = q[b][0][actions[b][0]]
        td += weights[b][0] * (qa - target[b][0]) ** 2
        lse = math.log(sum(math.exp(x) for x, ok in zip(q[b][0], avail[b][0]) if ok))
        cql += weights[b][0] * (lse - qa)
    loss, got_td, got_cql = inspo_critic_loss(
        torch.tensor(q), torch.tensor(actions), torch.tensor(target), torch.tensor(avail), torch.tensor(weights), cql_alpha
    )
    assert got_td.item() == pytest.approx(td, rel=1e-5)
    assert got_cql.item() == pytest.approx(cql, rel=1e-5)
    assert loss.item() == pytest.approx(td + cql_alpha * cql, rel=1e-5)


# ---- policy ------------------------------------------------------------------------
def test_inspo_policy_weights_and_loss_by_hand():
    adv, mu, logp = [0.5, -1.0, 3.0], [0.8, 0.1, 0.1], [-0.2, -1.5, -2.0]
    alpha, beta, clip = 1.0, 2.0, 5.0
    expected_w = [min(math.exp((a - beta * math.log(m)) / (alpha + beta)), clip) for a, m in zip(adv, mu)]
    w = inspo_policy_weights(torch.tensor([adv]), torch.tensor([logs(*mu)]), alpha, beta, max_weight=clip)
    assert w[0].tolist() == pytest.approx(expected_w, rel=1e-5)
    assert expected_w[2] == clip  # (3 + 2 ln 10) / 3 > ln 5: clipped
    unclipped = inspo_policy_weights(torch.tensor([adv]), torch.tensor([logs(*mu)]), alpha, beta, max_weight=0.0)
    assert unclipped[0, 2].item() == pytest.approx(math.exp((3.0 - 2.0 * math.log(0.1)) / 3.0), rel=1e-5)
    # beta = 0: the plain advantage weights exp(A / alpha) of Eq. 7
    plain = inspo_policy_weights(torch.tensor([adv]), torch.tensor([logs(*mu)]), 0.5, 0.0)
    assert plain[0, :2].tolist() == pytest.approx([math.exp(1.0), math.exp(-2.0)], rel=1e-5)
    sample_w = [0.5, 0.5, 0.0]
    expected_loss = -sum(s * ww * lp for s, ww, lp in zip(sample_w, expected_w, logp))
    got = inspo_policy_loss(torch.tensor([logp]), w, torch.tensor([sample_w]))
    assert got.item() == pytest.approx(expected_loss, rel=1e-5)


def test_policy_loss_minimiser_is_the_closed_form():
    """E_D[-w log pi] is minimal at pi ∝ p_D(a) w(a): the QRE policy of Eq. 12 when p_D = mu."""
    mu, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([1.0, 0.0, 2.0])
    alpha, beta = 1.0, 0.5
    w = inspo_policy_weights(q, mu.log(), alpha, beta)
    expected = mu * torch.exp((q - beta * mu.log()) / (alpha + beta))  # Eq. 12
    logits = (expected / expected.sum()).log().requires_grad_(True)
    inspo_policy_loss(torch.log_softmax(logits, -1), w, mu).backward()
    assert logits.grad.abs().max().item() < 1e-6  # stationary (the loss is convex in the logits)
    other = torch.zeros(3, requires_grad=True)
    inspo_policy_loss(torch.log_softmax(other, -1), w, mu).backward()
    assert other.grad.abs().max().item() > 1e-2


def test_kl_and_alpha_loss_by_hand():
    p, q = [0.7, 0.3, 0.0], [0.5, 0.25, 0.25]
    avail = torch.tensor([[True, True, False]])
    log_p = torch.tensor([[math.log(0.7), math.log(0.3), -1e10]])
    expected = 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.25)
    assert kl_categorical(log_p, torch.tensor([logs(*q)]), avail).item() == pytest.approx(expected, rel=1e-5)

    kl = torch.tensor([[[0.1, 0.5]], [[0.3, 0.3]], [[9.0, 9.0]]])  # [B=3, T=1, N=2]; the last step is padding
    mask = torch.tensor([[1.0], [1.0], [0.0]])
    log_alpha = torch.tensor(math.log(2.0), requires_grad=True)
    target = 0.18
    per_state = [(target - 0.1) + (target - 0.5), (target - 0.3) + (target - 0.3)]
    loss = alpha_temperature_loss(log_alpha, kl, mask, target)
    assert loss.item() == pytest.approx(2.0 * sum(per_state) / 2, rel=1e-5)
    loss.backward()
    assert log_alpha.grad.item() < 0  # KL above target -> gradient descent raises alpha


# ---- networks ----------------------------------------------------------------------
def test_conditioning_mask():
    cond = conditioning_mask(3)
    # i = 1: j = 0 sees a^1 only; j = 2 sees a^1 and a^0
    assert cond[1, 0].tolist() == [False, True, False]
    assert cond[1, 2].tolist() == [True, True, False]
    assert not cond[1, 1].any()
    assert cond[0, 2].tolist() == [True, True, False]


def test_autoregressive_log_prob_matches_a_loop():
    torch.manual_seed(0)
    n, a, s = 3, 4, 5
    model = AutoregressiveBehaviour(s, n, a, hidden_dim=16)
    state = torch.randn(2, s)
    joint = torch.tensor([[0, 3, 1], [2, 2, 0]])
    avail = torch.ones(2, n, a, dtype=torch.bool)
    avail[1, 1, 3] = False
    got = model.log_prob_others(state, joint, avail)
    for b in range(2):
        for i in range(n):
            total = 0.0
            for j in range(n):
                if j == i:
                    continue
                visible = torch.zeros(n, a)
                for k in range(n):
                    if k == i or (k < j and k != i):
                        visible[k, joint[b, k]] = 1.0
                x = torch.cat([state[b], torch.eye(n)[i], torch.eye(n)[j], visible.flatten()])
                logits = model.net(x).masked_fill(~avail[b, j], -1e10)
                total += torch.log_softmax(logits, -1)[joint[b, j]].item()
            assert got[b, i].item() == pytest.approx(total, abs=1e-5)
            assert model.log_prob_others(state, joint, avail, agent=i)[b].item() == pytest.approx(total, abs=1e-5)


def test_separate_agents_have_their_own_parameters():
    torch.manual_seed(0)
    for net_cls in (MLPAgent, RNNAgent):
        agents = SeparateAgents([net_cls(6, 3, 8), net_cls(6, 3, 8)])
        x = torch.randn(2, 4, 2, 6)
        out, h = agents.forward_seq(x)
        assert out.shape == (2, 4, 2, 3)
        own, _ = agents.agent_seq(1, x)
        assert torch.allclose(own, out[:, :, 1])
        # step-by-step equals the sequence
        hidden, steps = None, []
        for t in range(4):
            o, hidden = agents.step(x[:, t], hidden)
            steps.append(o)
        assert torch.allclose(torch.stack(steps, 1), out, atol=1e-5)
        # agent 0's loss does not touch agent 1's parameters
        agents.agent_seq(0, x)[0].sum().backward()
        assert all(p.grad is None for p in agents.nets[1].parameters())


# ---- the algorithm's switches ------------------------------------------------------------
SPEC = EnvSpec(env_id="test/tiny", n_agents=3, obs_dim=2, state_dim=2, n_actions=2, episode_limit=1)


def test_update_orders_and_beta_schedule():
    common = {"spec": SPEC.to_dict(), "agent": "mlp", "use_last_action": False, "agent_hidden_dim": 8}
    assert InSPO(update_order="fixed", **common).agent_order(torch.zeros(3)) == [0, 1, 2]
    torch.manual_seed(0)
    model = InSPO(**common)
    orders = {tuple(model.agent_order(torch.zeros(3))) for _ in range(30)}
    assert len(orders) > 1 and all(sorted(o) == [0, 1, 2] for o in orders)
    semi = InSPO(update_order="semi_greedy", **common)
    assert all(semi.agent_order(torch.tensor([0.1, 0.9, 0.3]))[0] == 1 for _ in range(10))
    model.hparams.update(beta=10.0, beta_decay=0.5)
    assert model.beta_at(0) == 10.0 and model.beta_at(3) == pytest.approx(1.25)
    model.hparams.use_entropy = False
    assert model.beta_at(0) == 0.0
    with pytest.raises(ValueError, match="update_order"):
        InSPO(update_order="greedy", **common)
