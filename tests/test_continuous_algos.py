"""Continuous-action learners (issue 5): losses on hand-computed cases, networks, update schedules.

The contract (short fit, bounds, checkpoint round trip) is in tests/test_algos_contract.py.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch

import lit_omarl.algos.cfcql_c as cfcql_c_module
import lit_omarl.algos.macql_c as macql_c_module
from lit_omarl.algos import ALGORITHMS, BCC, CFCQLC, MACQLC, MATD3BC, OMARC
from lit_omarl.algos.losses.continuous import (
    action_l2,
    cfcql_c_gap,
    counterfactual_joint_actions,
    counterfactual_weights,
    cql_action_samples,
    independent_cql_c_gap,
    macql_c_gap,
    soft_logsumexp,
)
from lit_omarl.algos.losses.omar_c import omar_actor_loss, omar_search, omar_target
from lit_omarl.algos.losses.td3 import smoothed_target_actions, td3_bc_actor_loss
from lit_omarl.algos.losses.vae import importance_log_density, vae_elbo_loss
from lit_omarl.nets.continuous import AgentCritic, CentralCritic, PerAgentMLP, clip_grad_norm_per_agent, squash
from lit_omarl.spec import EnvSpec

NO_EVAL = {"eval_every_steps": 0, "final_eval_episodes": 0}


def trainer(max_steps: int) -> L.Trainer:
    return L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu")


# ---- the counterfactual CQL term ------------------------------------------------------------
def q_plain(k: int, s: list[float], a: list[list[float]]) -> float:
    """Critic k of a tiny hand-written ensemble: (k + 1) * sum(s) * sum_i (i + 1) * sum_d a[i][d] + prod of agent 0's dims."""
    lin = sum((i + 1) * sum(ai) for i, ai in enumerate(a))
    return (k + 1) * sum(s) * lin + a[0][0] * a[0][1]


class FakeCritic(torch.nn.Module):
    """The same ensemble, vectorised, behind CentralCritic's call signature (state [*s, S], joint [*j, N, A])."""

    n_critics = 2

    def forward(self, state, joint, members=None):
        n = joint.shape[-2]
        weights = torch.arange(1, n + 1, dtype=joint.dtype)
        lin = (joint.sum(-1) * weights).sum(-1)
        out = torch.stack([(k + 1) * state.sum(-1) * lin + joint[..., 0, 0] * joint[..., 0, 1] for k in range(2)])
        return out[: (2 if members is None else members)]


def test_cfcql_c_gap_equals_a_plain_loop_over_agents_and_samples(monkeypatch):
    """CFCQLC.conservative_gap with fixed samples vs the formula written out with Python loops."""
    spec = EnvSpec("test/c", n_agents=2, obs_dim=3, state_dim=2, n_actions=2, action_type="continuous", episode_limit=1)
    model = CFCQLC(spec=spec.to_dict(), cql_temperature=0.5, **NO_EVAL)
    model.critic = FakeCritic()
    state = torch.tensor([[[0.3, -0.1], [0.0, 0.0]]])  # [B=1, L+1=2, S]
    actions = torch.tensor([[[[0.2, -0.4], [0.6, 0.1]]]])  # [1, 1, N, A]
    samples = torch.tensor([[[[[0.5, 0.5], [-1.0, 0.3]], [[0.9, -0.9], [0.0, 0.2]]]]])  # [1, 1, N, C=2, A]
    log_d = torch.tensor([[[[-1.0, -0.5], [0.2, -2.0]]]])  # [1, 1, N, C]
    monkeypatch.setattr(cfcql_c_module, "cql_action_samples", lambda *a, **k: (samples, log_d))
    batch = {"state": state, "actions": actions, "mask": torch.ones(1, 1)}
    q_data = FakeCritic()(state[:, :-1], actions)
    gap, _ = model.conservative_gap(batch, q_data, torch.zeros(1, 2, 2, 2))

    s, a, t = state[0, 0].tolist(), actions[0, 0].tolist(), 0.5
    for k in range(2):
        expected = -q_plain(k, s, a)
        for i in range(2):  # lambda_i = 1/2 (softmax_temp 0)
            terms = []
            for c in range(2):
                joint = [list(x) for x in a]
                joint[i] = samples[0, 0, i, c].tolist()  # only agent i deviates
                terms.append((q_plain(k, s, joint) - float(log_d[0, 0, i, c])) / t)
            expected += 0.5 * t * math.log(sum(math.exp(x) for x in terms))
        assert gap[k, 0, 0].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_counterfactual_joint_actions_replace_one_agent_only():
    actions = torch.tensor([[1.0], [2.0], [3.0]])  # N = 3, A = 1
    samples = torch.tensor([[[10.0], [11.0]], [[20.0], [21.0]], [[30.0], [31.0]]])  # [N, C, A]
    out = counterfactual_joint_actions(actions, samples)  # [N(i), C, N, A]
    assert out.shape == (3, 2, 3, 1)
    assert out[1, 0, :, 0].tolist() == [1.0, 20.0, 3.0]
    assert out[2, 1, :, 0].tolist() == [1.0, 2.0, 31.0]


def test_cfcql_c_gap_weights_agents_and_uses_temperature():
    q_cf = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]]])  # [K=1, B=1, N=2, C=2]
    q_data = torch.tensor([[0.5]])
    lam = torch.tensor([[0.25, 0.75]])
    gap = cfcql_c_gap(q_cf, q_data, lam, None, temperature=2.0)
    lse0 = 2.0 * math.log(math.exp(0.5) + math.exp(1.0))
    lse1 = 2.0 * math.log(math.exp(0.0) + math.exp(1.5))
    assert gap.item() == pytest.approx(0.25 * lse0 + 0.75 * lse1 - 0.5, rel=1e-6)
    # importance-sampling correction: subtract log density inside
    assert soft_logsumexp(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(math.log(2 * math.e), rel=1e-6)


def test_macql_c_gap_samples_all_agents_jointly(monkeypatch):
    spec = EnvSpec("test/c", n_agents=2, obs_dim=3, state_dim=2, n_actions=2, action_type="continuous", episode_limit=1)
    model = MACQLC(spec=spec.to_dict(), **NO_EVAL)
    model.critic = FakeCritic()
    state = torch.tensor([[[0.3, -0.1], [0.0, 0.0]]])
    actions = torch.tensor([[[[0.2, -0.4], [0.6, 0.1]]]])
    samples = torch.tensor([[[[[0.5, 0.5], [-1.0, 0.3]], [[0.9, -0.9], [0.0, 0.2]]]]])  # per agent [1, 1, N, C, A]
    log_d = torch.tensor([[[[-1.0, -0.5], [0.2, -2.0]]]])
    monkeypatch.setattr(cfcql_c_module, "cql_action_samples", lambda *a, **k: (samples, log_d))
    batch = {"state": state, "actions": actions, "mask": torch.ones(1, 1)}
    gap, _ = model.conservative_gap(batch, FakeCritic()(state[:, :-1], actions), torch.zeros(1, 2, 2, 2))
    s, a = state[0, 0].tolist(), actions[0, 0].tolist()
    for k in range(2):
        terms = [q_plain(k, s, [samples[0, 0, 0, c].tolist(), samples[0, 0, 1, c].tolist()]) - float(log_d[0, 0, :, c].sum())
                 for c in range(2)]  # joint sample c = every agent's sample c; densities multiply
        assert gap[k, 0, 0].item() == pytest.approx(math.log(sum(math.exp(x) for x in terms)) - q_plain(k, s, a), rel=1e-5)
    direct = macql_c_gap(torch.tensor([[1.0, 3.0]]), torch.tensor([2.0]), torch.tensor([0.0, 1.0]), 1.0)
    assert direct.item() == pytest.approx(math.log(math.e + math.e**2) - 2.0, rel=1e-6)
    assert macql_c_module.MACQLC is MACQLC


def test_cf_target_averages_counterfactual_target_values():
    """CF_T: (1/N) sum_i Qbar(s', pibar_i(o'_i), a'^{-i}_data), joint target action where no next data action exists."""
    spec = EnvSpec("test/c", n_agents=2, obs_dim=3, state_dim=2, n_actions=2, action_type="continuous", episode_limit=2)
    model = CFCQLC(spec=spec.to_dict(), cf_target=True, **NO_EVAL)
    model.target_critic = FakeCritic()
    state = torch.tensor([[[0.0, 0.0], [0.5, 0.2], [-0.3, 0.1]]])  # [B=1, L+1=3, S]
    actions = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]], [[-0.5, 0.6], [0.7, -0.8]]]])  # [1, L=2, N, A]
    next_pi = torch.tensor([[[[0.9, 0.9], [-0.9, 0.0]], [[0.2, 0.2], [0.2, 0.2]]]])  # target policy at o_1, o_2
    batch = {"state": state, "actions": actions, "mask": torch.ones(1, 2)}
    q = model.target_values(batch, next_pi)  # [K, 1, 2]
    s1, s2 = state[0, 1].tolist(), state[0, 2].tolist()
    a1 = actions[0, 1].tolist()  # the dataset's next action of step 0
    for k in range(2):
        cf = [q_plain(k, s1, [next_pi[0, 0, 0].tolist(), a1[1]]), q_plain(k, s1, [a1[0], next_pi[0, 0, 1].tolist()])]
        assert q[k, 0, 0].item() == pytest.approx(sum(cf) / 2, rel=1e-5)
        assert q[k, 0, 1].item() == pytest.approx(q_plain(k, s2, next_pi[0, 1].tolist()), rel=1e-5)  # last step: joint


def test_independent_cql_gap_and_action_samples():
    q = torch.tensor([[[1.0, 0.0, 2.0]]])  # [K=1, N=1, C=3]
    gap = independent_cql_c_gap(q, torch.tensor([[0.5]]), -math.log(2.0), 1.0)  # uniform density on [-1, 1]
    assert gap.item() == pytest.approx(math.log(math.e + 1 + math.e**2) + math.log(2.0) - 0.5, rel=1e-6)

    torch.manual_seed(0)
    pi = torch.full((4, 2, 3), 0.9)  # [B, N, A]; agent 1 has 2 real dims
    dim_mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    samples, log_d = cql_action_samples(pi, pi, 5, -1.0, 2.0, 0.2, dim_mask)
    assert samples.shape == (4, 2, 15, 3) and log_d.shape == (4, 2, 15)
    assert (samples >= -1.0).all() and (samples <= 2.0).all() and (samples[:, 1, :, 2] == 0).all()
    assert torch.allclose(log_d[:, 0, :5], torch.tensor(-3 * math.log(3.0)))  # uniform over 3 real dims of width 3
    assert torch.allclose(log_d[:, 1, :5], torch.tensor(-2 * math.log(3.0)))
    noise = samples[:, 0, 5:10] - 0.9  # unclipped where 0.9 + eps stays below 2
    expected = (-0.5 * (noise / 0.2) ** 2 - math.log(0.2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    inside = (samples[:, 0, 5:10] < 2.0).all(-1)
    assert torch.allclose(log_d[:, 0, 5:10][inside], expected[inside], atol=1e-5)


def test_counterfactual_weights_signs_and_limits():
    log_beta = torch.tensor([0.0, math.log(3.0)])
    assert torch.allclose(counterfactual_weights(log_beta, 0.0, 1.0, "softmin"), torch.tensor([0.25, 0.75]))
    assert torch.allclose(counterfactual_weights(log_beta, 0.0, 1.0, "softmax"), torch.tensor([0.75, 0.25]))
    assert torch.allclose(counterfactual_weights(log_beta, 5.0, 0.0), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="weight mode"):
        counterfactual_weights(log_beta, 0.0, 1.0, "onehot")


# ---- OMAR's zeroth-order search -----------------------------------------------------------
def test_omar_softmax_search_two_iterations_by_hand():
    def q_fn(x):  # Q(a) = -(a - 0.5)^2, one action dim
        return -(x[..., 0] - 0.5) ** 2

    noise = torch.tensor([[[0.1], [0.3], [-0.2]], [[1.0], [-1.0], [0.0]]])  # [I=2, C=3, A=1]
    best, best_q = omar_search(q_fn, torch.zeros(1), torch.full((1,), 2.0), noise, -1.0, 1.0, "softmax")
    # iteration 1: x = 0 + 2 eps = 0.2, 0.6, -0.4
    x1 = [0.2, 0.6, -0.4]
    w = [math.exp(-((x - 0.5) ** 2)) for x in x1]
    mu = sum(wi * x for wi, x in zip(w, x1)) / sum(w)
    sigma = math.sqrt(sum((x - mu) ** 2 for x in x1) / 3)
    # iteration 2: x = clamp(mu + sigma * eps) with eps = 1, -1, 0; the best is the closest to 0.5
    x2 = [min(1.0, max(-1.0, mu + (sigma + 1e-10) * e)) for e in (1.0, -1.0, 0.0)]
    q2 = [-((x - 0.5) ** 2) for x in x2]
    k = max(range(3), key=lambda j: q2[j])
    assert best.item() == pytest.approx(x2[k], abs=1e-6)
    assert best_q.item() == pytest.approx(q2[k], abs=1e-6)
    # by hand: mu = 0.2550, sigma = 0.4286; candidates 0.6835, -0.1736, 0.2550: mu + sigma is closest to 0.5
    assert k == 0 and best.item() == pytest.approx(0.68355, abs=1e-4) and best_q.item() == pytest.approx(-0.03368, abs=1e-4)


def test_omar_cem_search_keeps_elites_between_iterations():
    def q_fn(x):
        return -(x[..., 0] - 0.5) ** 2

    noise = torch.tensor([[[0.25], [-0.5], [0.05]], [[5.0], [-5.0], [5.0]]])  # iteration 2 only samples the bounds
    best, best_q = omar_search(q_fn, torch.zeros(1), torch.full((1,), 2.0), noise, -1.0, 1.0, "cem", n_elites=2)
    # iteration 1: x = 0.5, -1.0, 0.1; elites 0.5, 0.1 -> mu 0.3, sigma std([0.5, 0.1]) = 0.2828
    # iteration 2: samples clamp(0.3 +- 1.41) = 1.0, -1.0, 1.0, plus the elites 0.5, 0.1: the kept elite 0.5 wins
    assert best.item() == pytest.approx(0.5) and best_q.item() == pytest.approx(0.0)


def test_omar_target_and_actor_loss():
    pi = torch.tensor([[[[0.0], [0.4]]]])  # [B=1, T=1, N=2, A=1]
    q_pi = torch.tensor([[[1.0, 2.0]]])
    target = omar_target(pi, q_pi, torch.tensor([[[[0.8], [-0.6]]]]), torch.tensor([[[1.5, 2.0]]]))
    assert target[0, 0, :, 0].tolist() == pytest.approx([0.8, 0.4])  # agent 1: a tie keeps the policy action
    loss, mimic = omar_actor_loss(pi, target, q_pi, torch.ones(1, 1), omar_coe=0.3)
    assert mimic.item() == pytest.approx((0.8**2 + 0.0) / 2)
    assert loss.item() == pytest.approx(0.3 * 0.32 - 0.7 * 1.5)
    icql, none = omar_actor_loss(pi, None, q_pi, torch.ones(1, 1), omar_coe=0.3)
    assert none is None and icql.item() == pytest.approx(-1.5)


# ---- TD3+BC -----------------------------------------------------------------------------
def test_td3_bc_actor_loss_by_hand():
    q_pi = torch.tensor([[2.0, -4.0, 1000.0]])  # [B=1, T=3]; the last step is padding
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    pi = torch.tensor([[[[0.5]], [[0.0]], [[9.0]]]])  # [1, 3, N=1, A=1]
    actions = torch.tensor([[[[0.0]], [[1.0]], [[-9.0]]]])
    loss, lmbda, bc = td3_bc_actor_loss(q_pi, pi, actions, mask, alpha=2.5)
    assert lmbda.item() == pytest.approx(2.5 / 3.0)  # alpha / mean |Q| = 2.5 / ((2 + 4) / 2)
    assert bc.item() == pytest.approx((0.25 + 1.0) / 2)
    assert loss.item() == pytest.approx(-(2.5 / 3.0) * (-1.0) + 0.625)


def test_target_smoothing_clips_noise_then_actions():
    a = torch.tensor([0.0, 0.9, -0.5])
    out = smoothed_target_actions(a, 0.2, 0.5, -1.0, 1.0, noise=torch.tensor([1.0, 1.0, -10.0]))
    assert out.tolist() == pytest.approx([0.2, 1.0, -1.0])  # 0 + 0.2; clamp(1.1); clamp(-0.5 - 0.5)
    assert torch.equal(smoothed_target_actions(a, 0.0, 0.5, -1.0, 1.0), a)


def test_action_l2_sums_agents_and_averages_steps():
    a = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]], [[[9.0, 9.0], [9.0, 9.0]]]])  # [B=2, T=1, N=2, A=2]
    mask = torch.tensor([[1.0], [0.0]])
    assert action_l2(a, mask).item() == pytest.approx(0.5 + 0.25)


# ---- VAE -------------------------------------------------------------------------------------
def test_vae_elbo_loss_by_hand():
    recon = torch.tensor([[0.5, 0.0], [1.0, 1.0], [7.0, 7.0]])
    action = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    mean = torch.tensor([[0.0], [1.0], [5.0]])
    std = torch.tensor([[0.5], [1.0], [5.0]])
    mask = torch.tensor([1.0, 1.0, 0.0])  # the third row is padding
    loss, rec, kl = vae_elbo_loss(recon, action, mean, std, beta=0.5, mask=mask)
    kl_rows = [-0.5 * (1 + math.log(0.25) - 0.0 - 0.25), -0.5 * (1 + 0.0 - 1.0 - 1.0)]
    assert rec.item() == pytest.approx((0.125 + 0.5) / 2)
    assert kl.item() == pytest.approx(sum(kl_rows) / 2, rel=1e-6)
    assert loss.item() == pytest.approx(rec.item() + 0.5 * kl.item(), rel=1e-6)


def test_importance_log_density_equals_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    action = torch.rand(4, generator=g)  # D = 4 = 2 groups of 2 dims
    z = torch.randn(3, 2, generator=g)  # L = 3 latents of size 2
    dec = torch.rand(3, 4, generator=g)
    mean, std = torch.randn(2, generator=g), torch.rand(2, generator=g) + 0.5
    dim_mask = torch.tensor([1.0, 1.0, 1.0, 0.0])  # the last dim is padding
    out = importance_log_density(action, dec, 0.3, z, mean, std, groups=2, dim_mask=dim_mask)

    def logn(x, m, s):
        return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)

    for grp, dims in enumerate(([0, 1], [2])):
        ws = []
        for ell in range(3):
            w = sum(logn(float(action[d]), float(dec[ell, d]), 0.3) for d in dims)
            w += sum(logn(float(z[ell, j]), 0.0, 1.0) - logn(float(z[ell, j]), float(mean[j]), float(std[j])) for j in range(2))
            ws.append(w)
        expected = math.log(sum(math.exp(w) for w in ws) / 3)
        assert out[grp].item() == pytest.approx(expected, rel=1e-5)


# ---- networks --------------------------------------------------------------------------------
def test_central_critic_broadcasts_candidates_like_single_evaluations():
    torch.manual_seed(0)
    critic = CentralCritic(state_dim=3, n_agents=2, action_dim=2, hidden_dim=8, n_critics=2)
    state, joint = torch.randn(5, 3), torch.randn(5, 4, 2, 2)  # 4 candidates per state
    many = critic(state.unsqueeze(-2), joint)
    assert many.shape == (2, 5, 4)
    for c in range(4):
        assert torch.allclose(many[:, :, c], critic(state, joint[:, c]), atol=1e-6)
    assert torch.allclose(critic(state, joint[:, 0], members=1), many[:1, :, 0], atol=1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_agent_critic_is_per_agent(shared):
    torch.manual_seed(0)
    critic = AgentCritic(n_agents=3, input_dim=4, action_dim=2, hidden_dim=8, n_critics=2, shared=shared)
    x, a = torch.randn(5, 3, 4), torch.randn(5, 3, 2)
    q = critic(x, a)
    assert q.shape == (2, 5, 3)
    x2 = x.clone()
    x2[:, 1] += 1.0  # change agent 1's input only
    q2 = critic(x2, a)
    assert torch.equal(q[:, :, [0, 2]], q2[:, :, [0, 2]]) and not torch.equal(q[:, :, 1], q2[:, :, 1])
    cand = torch.randn(5, 3, 4, 2)  # 4 candidate actions per agent
    qc = critic(x, cand, members=1)
    assert qc.shape == (1, 5, 3, 4)
    assert torch.allclose(qc[..., 2], critic(x, cand[:, :, 2], members=1), atol=1e-6)
    if not shared:  # separate critics: the two agents' networks differ
        same_in = critic(x[:, :1].expand(5, 3, 4), a[:, :1].expand(5, 3, 2))
        assert not torch.allclose(same_in[:, :, 0], same_in[:, :, 1])


def test_per_agent_gradient_clipping_is_separate():
    net = PerAgentMLP(n_agents=2, input_dim=2, output_dim=1, hidden_dim=4)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
        p.grad[0] = 1.0  # agent 0: large gradient
        p.grad[1] = 1e-3  # agent 1: small gradient
    norms = clip_grad_norm_per_agent(net, 2, 0.5)
    assert norms[0] > 0.5 > norms[1]
    after = [torch.linalg.vector_norm(torch.cat([p.grad[i].flatten() for p in net.parameters()])) for i in range(2)]
    assert after[0].item() == pytest.approx(0.5, rel=1e-4) and after[1].item() == pytest.approx(norms[1].item(), rel=1e-6)


def test_squash_maps_into_the_bounds():
    u = torch.tensor([-100.0, 0.0, 100.0])
    assert squash(u, -2.0, 1.0).tolist() == pytest.approx([-2.0, -0.5, 1.0])
    assert torch.equal(squash(u, -1.0, 1.0), torch.tanh(u))


# ---- algorithms: schedules, errors, data -----------------------------------------------------
SPEC_C = EnvSpec("test/c", n_agents=2, obs_dim=3, state_dim=4, n_actions=2, action_type="continuous", episode_limit=4)


def continuous_arrays(episodes: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    e, t, n, o, s, a = episodes, 4, 2, 3, 4, 2
    lengths = rng.integers(1, t + 1, size=e)
    filled = (np.arange(t)[None] < lengths[:, None]).astype(np.uint8)
    obs_valid = (np.arange(t + 1)[None] <= lengths[:, None])
    return {
        "obs": (rng.normal(size=(e, t + 1, n, o)) * obs_valid[:, :, None, None]).astype(np.float32),
        "state": (rng.normal(size=(e, t + 1, s)) * obs_valid[:, :, None]).astype(np.float32),
        "actions": (rng.uniform(-1, 1, size=(e, t, n, a)) * filled[:, :, None, None]).astype(np.float32),
        "reward": (rng.normal(size=(e, t)) * filled).astype(np.float32),
        "terminated": np.zeros((e, t), np.uint8),
        "filled": filled,
    }


def test_fit_from_a_continuous_hdf5_dataset(tmp_path):
    """The real data path: schema writer -> OfflineDataModule (transition sampling) -> CFCQL-C with VAE weights."""
    from lit_omarl.data.datamodule import OfflineDataModule
    from lit_omarl.data.schema import write_dataset

    path = write_dataset(tmp_path / "c.h5", continuous_arrays(), {"spec": SPEC_C, "quality": "test"})
    dm = OfflineDataModule(str(path), batch_size=8, sampling="transition")
    torch.manual_seed(0)
    model = CFCQLC(spec=dm.spec, critic_hidden_dim=8, agent_hidden_dim=8, softmax_temp=2.0, vae_hidden_dim=8,
                   vae_samples=2, behaviour_pretrain_steps=3, cql_n_samples=2, **NO_EVAL)
    trainer(6).fit(model, datamodule=dm)
    assert bool(model.behaviour_trained)
    acts, _ = model.act(torch.randn(3, 2, 3), None)
    assert acts.shape == (3, 2, 2) and (acts.abs() <= 1).all()


def count_calls(monkeypatch, obj, name):
    calls = []
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


class TinyContinuousData(L.LightningDataModule):
    def __init__(self, sampling: str = "episode") -> None:
        super().__init__()
        self.spec, self.sampling = SPEC_C, sampling
        arrays = continuous_arrays()
        self.batch = {
            "obs": torch.from_numpy(arrays["obs"]), "state": torch.from_numpy(arrays["state"]),
            "actions": torch.from_numpy(arrays["actions"]), "reward": torch.from_numpy(arrays["reward"]),
            "terminated": torch.from_numpy(arrays["terminated"]).float(), "mask": torch.from_numpy(arrays["filled"]).float(),
            "avail_actions": torch.ones(6, 5, 2, 2, dtype=torch.bool),
        }

    def sample(self):
        return self.batch

    def train_dataloader(self):
        while True:
            yield self.batch


def test_cfcql_c_updates_the_actor_every_ratio_critic_steps(monkeypatch):
    torch.manual_seed(0)
    model = CFCQLC(spec=SPEC_C.to_dict(), critic_actor_ratio=3, critic_hidden_dim=8, agent_hidden_dim=8, **NO_EVAL)
    actor_calls = count_calls(monkeypatch, model, "step_actor")
    soft = count_calls(monkeypatch, cfcql_c_module, "soft_update")
    trainer(7).fit(model, datamodule=TinyContinuousData())
    assert len(actor_calls) == 3  # critic steps 0, 3, 6 also update the actors
    assert len(soft) == 4  # after steps 2 and 5: critic and actor targets


def test_matd3_bc_updates_the_actor_every_policy_freq_steps(monkeypatch):
    torch.manual_seed(0)
    model = MATD3BC(spec=SPEC_C.to_dict(), critic_hidden_dim=8, agent_hidden_dim=8, **NO_EVAL)
    actor_calls = count_calls(monkeypatch, model, "step_actor")
    trainer(5).fit(model, datamodule=TinyContinuousData())
    assert len(actor_calls) == 2  # TD3: after critic updates 2 and 4


def test_cf_target_needs_episode_batches():
    model = CFCQLC(spec=SPEC_C.to_dict(), cf_target=True, critic_hidden_dim=8, agent_hidden_dim=8, **NO_EVAL)
    with pytest.raises(ValueError, match="cf_target=True needs the next step"):
        trainer(1).fit(model, datamodule=TinyContinuousData(sampling="transition"))
    trainer(2).fit(model, datamodule=TinyContinuousData())  # whole episodes: fine


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"agent_action_dims": [2, 3]}, "agent_action_dims"),
    ({"omar_search_mode": "grid"}, "omar_search_mode"),
    ({"omar_coe": 1.5}, "omar_coe"),
])
def test_bad_options_name_the_option(kwargs, word):
    with pytest.raises(ValueError, match=word):
        OMARC(spec=SPEC_C.to_dict(), **kwargs, **NO_EVAL)


def test_padded_action_dims_stay_zero():
    torch.manual_seed(0)
    spec = EnvSpec("test/c", n_agents=2, obs_dim=3, state_dim=4, n_actions=3, action_type="continuous", episode_limit=4)
    for cls in (OMARC, BCC):
        model = cls(spec=spec.to_dict(), agent_action_dims=[3, 1], **NO_EVAL)
        for deterministic in (True, False):
            acts, _ = model.act(torch.randn(5, 2, 3) * 10, None, deterministic=deterministic)
            assert (acts[:, 1, 1:] == 0).all() and (acts[:, 0] != 0).all()


def test_omar_search_moves_policy_targets_towards_higher_q():
    """On a fixed critic the searched targets have Q at least that of the policy action (never worse)."""
    torch.manual_seed(0)
    model = OMARC(spec=SPEC_C.to_dict(), critic_hidden_dim=8, agent_hidden_dim=8, omar_num_samples=20, **NO_EVAL)
    x = torch.randn(6, 4, 2, 3)
    pi = torch.rand(6, 4, 2, 2) * 2 - 1
    with torch.no_grad():
        q_pi = model.critic(x, pi, members=1)[0]
        target, changed = model.search_targets(x, pi, q_pi)
        q_target = model.critic(x, target, members=1)[0]
    assert (q_target >= q_pi - 1e-6).all() and changed.mean() > 0


def test_bc_c_fits_a_deterministic_behaviour():
    """BC-C's deterministic action approaches the behaviour a = 0.5 * tanh(o_0) after a short fit (loss falls)."""
    torch.manual_seed(0)
    data = TinyContinuousData()
    obs = data.batch["obs"][:, :-1]
    data.batch["actions"] = (0.5 * torch.tanh(obs[..., :1])).expand(*obs.shape[:-1], 2) * data.batch["mask"][..., None, None]
    model = BCC(spec=SPEC_C.to_dict(), lr=3e-3, vae_hidden_dim=32, **NO_EVAL)
    m = data.batch["mask"].bool()

    def error():
        acts, _ = model.act(obs[m], None)
        return (acts - data.batch["actions"][m]).abs().mean().item()

    before = error()
    trainer(150).fit(model, datamodule=data)
    assert error() < 0.5 * before
    # the density estimate prefers the behaviour's actions to their mirror images
    o, a = obs[m], data.batch["actions"][m]
    log_data, log_far = model.log_prob(o, a), model.log_prob(o, -a - 0.3)
    assert log_data.shape == (o.shape[0], 2) and torch.isfinite(log_data).all()
    assert log_data.mean() > log_far.mean()


def test_continuous_algorithms_are_registered():
    for name, cls in [("cfcql_c", CFCQLC), ("macql_c", MACQLC), ("omar_c", OMARC), ("matd3_bc", MATD3BC), ("bc_c", BCC)]:
        assert ALGORITHMS[name] is cls and cls.supports_continuous and not cls.supports_discrete
