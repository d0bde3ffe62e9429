"""AlberDICE: its loss functions against hand-computed cases, the alpha
schedule and the sampled KL of the other agents."""

from __future__ import annotations

import math

import pytest
import torch

from lit_omarl.algos import AlberDICE
from lit_omarl.algos.losses.alberdice import (
    absorbing_mass,
    absorbing_value,
    dice_nu_loss,
    dice_residual,
    e_network_loss,
    i_projection_loss,
)
from lit_omarl.spec import EnvSpec


def test_dice_residual_by_hand():
    r, d, nu, nu_next, kl = [1.0, -0.5], [0.0, 1.0], [0.3, 2.0], [1.5, 7.0], [0.2, 0.4]
    alpha, gamma = 0.5, 0.9
    expected = [r[k] - alpha * kl[k] + gamma * (1 - d[k]) * nu_next[k] - nu[k] for k in range(2)]
    got = dice_residual(*(torch.tensor([x]) for x in (r, d, nu, nu_next, kl)), alpha, gamma)
    assert got[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert got[0, 1].item() == pytest.approx(-0.5 - 0.2 - 2.0)  # terminal: no bootstrap from s'
    with_abs = dice_residual(*(torch.tensor([x]) for x in (r, d, nu, nu_next, kl)), alpha, gamma, nu_absorbing=3.0)
    assert with_abs[0, 1].item() == pytest.approx(-0.5 - 0.2 + 0.9 * 3.0 - 2.0, abs=1e-5)  # ... but from nu_abs
    assert with_abs[0, 0].item() == pytest.approx(expected[0])


def test_dice_nu_loss_by_hand():
    e = [[0.5], [-1.0], [2.0], [9.0]]  # [B=4, T=1]
    w = [[0.5], [0.25], [0.25], [0.0]]  # resampled weights; the last sample was never drawn
    nu_init = [0.1, 0.4, -0.2]
    alpha, gamma, mean_ratio = 0.5, 0.9, 1.7
    soft = alpha * math.log(sum(wk[0] * math.exp(ek[0] / alpha) for wk, ek in zip(w, e)))
    expected = (1 - gamma) * sum(nu_init) / 3 + soft + alpha * math.log(mean_ratio)
    e_t = torch.tensor(e, requires_grad=True)
    got = dice_nu_loss(e_t, torch.tensor(w), mean_ratio, torch.tensor(nu_init), alpha, gamma)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    got.backward()
    # d/de_k = w_k exp(e_k/alpha) / sum_l w_l exp(e_l/alpha): a softmax, 0 for the undrawn sample
    z = [wk[0] * math.exp(ek[0] / alpha) for wk, ek in zip(w, e)]
    assert e_t.grad[:, 0].tolist() == pytest.approx([x / sum(z) for x in z], abs=1e-6)


def test_absorbing_mass_and_value_by_hand():
    terminated = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last (terminal) step is padding
    assert absorbing_mass(terminated, mask, 4.0) == pytest.approx(8 / 11)  # 2 terminal steps x 4 / (3 + 8)
    assert absorbing_mass(terminated, mask, 0.0) == 0.0

    # nu_abs minimises L(v) = log[(1-p) sum_k w_k exp(e_k(v)/alpha) + p exp(-(1-gamma) v/alpha)]
    b = [0.3, -0.4, 1.0]  # residuals without the gamma * nu_abs term; steps 0 and 2 are terminal
    term, w = [1.0, 0.0, 1.0], [0.2, 0.5, 0.3]
    alpha, gamma, p = 0.5, 0.9, 0.4
    s_t = sum(wk * math.exp(bk / alpha) for wk, bk, tk in zip(w, b, term) if tk)
    expected = alpha * (math.log(p * (1 - gamma)) - math.log((1 - p) * gamma) - math.log(s_t))
    got = absorbing_value(torch.tensor([b]), torch.tensor([term]), torch.tensor([w]), p, alpha, gamma).item()
    assert got == pytest.approx(expected, rel=1e-5)

    def dual(v):
        e = [bk + (gamma * v if tk else 0.0) for bk, tk in zip(b, term)]
        z = (1 - p) * sum(wk * math.exp(ek / alpha) for wk, ek in zip(w, e)) + p * math.exp(-(1 - gamma) * v / alpha)
        return alpha * math.log(z)

    assert dual(got) < dual(got + 0.05) and dual(got) < dual(got - 0.05)
    # the loss function agrees with the hand-written dual at nu_abs (ratio 1, no initial-state term)
    e = torch.tensor([[bk + (gamma * got if tk else 0.0) for bk, tk in zip(b, term)]])
    loss = dice_nu_loss(e, torch.tensor([w]), 1.0, torch.zeros(1), alpha, gamma, p_abs=p, nu_absorbing=got)
    assert loss.item() == pytest.approx(dual(got), rel=1e-5)
    # no terminal step or no absorbing mass: 0
    assert absorbing_value(torch.tensor([b]), torch.zeros(1, 3), torch.tensor([w]), p, alpha, gamma).item() == 0.0
    assert absorbing_value(torch.tensor([b]), torch.tensor([term]), torch.tensor([w]), 0.0, alpha, gamma).item() == 0.0


def test_e_network_loss_by_hand():
    e_all = [[[1.0, 2.0, 0.0]], [[0.5, -1.0, 1.0]]]  # [B=2, T=1, A=3]
    actions = [[0], [2]]
    target = [[0.5], [2.0]]
    avail = [[[True, True, True]], [[True, False, True]]]
    mu = [[[0.2, 0.5, 0.3]], [[0.6, 0.0, 0.4]]]
    w = [[0.4], [0.6]]
    coeff = 0.1
    reg = cql = 0.0
    for b in range(2):
        reg += w[b][0] * (e_all[b][0][actions[b][0]] - target[b][0]) ** 2
        lse = math.log(sum(math.exp(x) for x, ok in zip(e_all[b][0], avail[b][0]) if ok))
        cql += w[b][0] * (lse - sum(m * x for m, x in zip(mu[b][0], e_all[b][0])))
    loss, got_reg, got_cql = e_network_loss(*(torch.tensor(x) for x in (e_all, actions, target, avail, mu, w)), coeff)
    assert got_reg.item() == pytest.approx(reg, rel=1e-5)
    assert got_cql.item() == pytest.approx(cql, rel=1e-5)
    assert loss.item() == pytest.approx(reg + coeff * cql, rel=1e-5)


def test_i_projection_loss_by_hand_and_its_minimiser():
    pi, e, mu = [0.3, 0.7, 0.0], [1.0, 0.5, 5.0], [0.5, 0.4, 0.1]
    avail = torch.tensor([[True, True, False]])
    alpha = 0.5
    expected = sum(p * (-x + alpha * math.log(p / m)) for p, x, m in zip(pi[:2], e[:2], mu[:2]))
    log_pi = torch.tensor([[math.log(0.3), math.log(0.7), -1e10]])
    got = i_projection_loss(log_pi, torch.tensor([e]), torch.tensor([[math.log(m) for m in mu]]), avail, torch.ones(1), alpha)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # stationary at pi ∝ mu exp(e / alpha) over the available actions
    target = torch.tensor([mu[0] * math.exp(e[0] / alpha), mu[1] * math.exp(e[1] / alpha)])
    logits = torch.cat([(target / target.sum()).log(), torch.tensor([0.0])]).unsqueeze(0).requires_grad_(True)
    log_pi = torch.log_softmax(logits.masked_fill(~avail, -1e10), -1)
    i_projection_loss(log_pi, torch.tensor([e]), torch.tensor([[math.log(m) for m in mu]]), avail, torch.ones(1), alpha).backward()
    assert logits.grad.abs().max().item() < 1e-6


SPEC = EnvSpec(env_id="test/tiny", n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)


def test_alpha_schedule_and_others_kl():
    model = AlberDICE(spec=SPEC.to_dict(), agent="mlp", use_last_action=False, agent_hidden_dim=8,
                      alpha_start=5.0, alpha_end=0.05, alpha_decay_steps=100, n_kl_samples=4)
    assert model.alpha_at(0) == pytest.approx(5.0)
    assert model.alpha_at(50) == pytest.approx(5.0 * 0.01**0.5)
    assert model.alpha_at(100) == pytest.approx(0.05) and model.alpha_at(500) == pytest.approx(0.05)
    # Deterministic policy of agent 1 (always action 1): the sampled KL is exact,
    # log 1 - log mu(a^1 = 1 | s, a^0).
    log_pi = torch.log(torch.tensor([[[[0.5, 0.5], [1e-12, 1.0]]]]).clamp_min(1e-30))  # [B=1, L=1, N=2, A=2]
    state, actions = torch.zeros(1, 1, 1), torch.tensor([[[0, 0]]])
    avail = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    kl = model._others_kl(0, log_pi, state, actions, avail)
    log_mu = model.ar_behaviour.log_prob_others(state, torch.tensor([[[0, 1]]]), avail, agent=0)
    assert kl.item() == pytest.approx(-log_mu.item(), abs=1e-5)
