"""MABCQ (mabcq.md Sec. 3.2-3.3) and its Fig. 2 baselines: weights on hand-computed cases, the max over
perturbed candidates, the ablation flags, losses of one update, and a short fit on a synthetic bandit.

The contract (short fit, bounds, checkpoint round trip) is in tests/test_algos_contract.py.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from lit_omarl.algos import ALGORITHMS, BCQC, DDPGC, MABCQ, MABCQBehavior
from lit_omarl.algos.losses.continuous import (
    soft_clipped_double_q,
    transition_normalization_weights,
    value_deviation_weights,
)
from lit_omarl.spec import EnvSpec

NO_EVAL = {"eval_every_steps": 0, "final_eval_episodes": 0}
SPEC = EnvSpec("test/mabcq", n_agents=2, obs_dim=1, state_dim=2, n_actions=1, action_type="continuous", episode_limit=1)


def trainer(max_steps: int) -> L.Trainer:
    return L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu")


class Data(L.LightningDataModule):
    """``spec`` / ``sampling`` / ``sample()`` and batches: a fixed batch, or random rows of a transition set."""

    def __init__(self, spec: EnvSpec, batch: dict, batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.spec, self.sampling, self.batch, self.batch_size = spec, "transition", batch, batch_size
        self.g = torch.Generator().manual_seed(seed)

    def sample(self) -> dict:
        if self.batch_size is None:
            return self.batch
        idx = torch.randint(self.batch["obs"].shape[0], (self.batch_size,), generator=self.g)
        return {k: v[idx] for k, v in self.batch.items()}

    def train_dataloader(self):
        data = self

        class Forever:
            def __iter__(self):
                while True:
                    yield data.sample()

        return Forever()


# ---- the weights, by hand ---------------------------------------------------------------------------
def test_value_deviation_weights_by_hand():
    gamma, eps = 0.5, 0.8
    # E = (q_hat - r) / gamma; lambda = clip(1 + (V - E) / |E|, 0.2, 1.8)
    q_hat = torch.tensor([3.0, 3.0, 3.0, 0.0, 1.0, 3.0])
    r = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    v = torch.tensor([5.0, 0.0, 10.0, -1.0, 1e-7, 5.0])
    d = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    w = value_deviation_weights(v, q_hat, r, d, gamma, eps)
    expected = [
        1 + (5 - 4) / 4,  # E = 4 -> 1.25
        0.2,  # 1 + (0 - 4) / 4 = 0 -> clipped to 1 - eps
        1.8,  # 2.5 -> clipped to 1 + eps
        1 + (-1 - (-2)) / 2,  # E = -2: |E| in the denominator -> 1.5
        1 + 1e-7 / 1e-6,  # E = 0: the denominator is floored at 1e-6 -> 1.1
        1.0,  # terminal transition
    ]
    assert w.tolist() == pytest.approx(expected, rel=1e-5)
    assert not w.requires_grad
    # optimism 0 switches value deviation off entirely (every weight 1)
    assert value_deviation_weights(v, q_hat, r, d, gamma, 0.0).tolist() == [1.0] * 6
    with pytest.raises(ValueError, match="optimism"):
        value_deviation_weights(v, q_hat, r, d, gamma, 1.5)


def test_transition_normalization_is_the_ratio_of_unit_gaussian_densities():
    mu1 = torch.tensor([[1.0, 0.0], [0.5, -0.5]])  # encoder means of G^1(s, a)
    mu2 = torch.tensor([[0.0, 2.0], [0.5, -0.5]])  # encoder means of G^2(s, a, s')

    def density(m):  # N(m; 0, I) in 2 dims, written out
        return math.exp(-0.5 * sum(x * x for x in m)) / (2 * math.pi)

    w = transition_normalization_weights(mu1, mu2)
    assert w[0].item() == pytest.approx(density([1.0, 0.0]) / density([0.0, 2.0]), rel=1e-6)  # = e^1.5
    assert w[0].item() == pytest.approx(math.exp(1.5), rel=1e-6)
    assert w[1].item() == pytest.approx(1.0)  # same encoding: P = 1
    assert transition_normalization_weights(mu1, mu2, max_weight=2.0)[0].item() == 2.0
    with pytest.raises(ValueError, match="latents of one size"):
        transition_normalization_weights(mu1, mu2[:, :1])


def test_soft_clipped_double_q():
    q = torch.tensor([[1.0, 4.0], [3.0, 2.0]])  # [K=2, 2]: min (1, 2), max (3, 4)
    assert soft_clipped_double_q(q, 0.75).tolist() == pytest.approx([0.75 * 1 + 0.25 * 3, 0.75 * 2 + 0.25 * 4])
    assert soft_clipped_double_q(q, 1.0).tolist() == [1.0, 2.0]


# ---- fakes with known values ----------------------------------------------------------------------
class FakeAgentCritic(torch.nn.Module):
    """Q_k(x, a) = (k + 1) * a + x (one obs entry, one action dim); a dummy parameter for the optimizer."""

    n_critics = 2

    def __init__(self, fn=None) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.fn = fn

    def forward(self, x, actions, members=None):
        if self.fn is not None:
            out = torch.stack([self.fn(k, x, actions) for k in range(2)])
        else:
            out = torch.stack([(k + 1) * actions[..., 0] + x[..., 0] for k in range(2)])
        return (out + 0.0 * self.p)[: (2 if members is None else members)]


class ShiftPerturbation(torch.nn.Module):
    """xi(x, a) = clamp(a + 0.1, -1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, cond, action):
        return (action + 0.1 + 0.0 * self.p).clamp(-1.0, 1.0)


def fixed_vae_samples(model, values):
    """Make the VAE decode to ``values`` [n] (the same n candidates for every agent and state)."""

    def sample(cond, latents=None, clip=0.5):
        v = torch.tensor(values, dtype=cond.dtype).reshape(len(values), *([1] * (cond.dim() - 1)))
        return v.expand(*cond.shape[:-1], 1)

    model.vae.sample = sample


def test_target_is_the_max_over_perturbed_candidates_and_act_takes_the_best_q1():
    model = BCQC(spec=SPEC.to_dict(), n_candidates=3, behaviour_pretrain_steps=0, **NO_EVAL)
    fixed_vae_samples(model, [-0.5, 0.2, 0.6])  # perturbed: -0.4, 0.3, 0.7
    model.target_perturb = ShiftPerturbation()
    model.perturb = ShiftPerturbation()
    model.target_critic = FakeAgentCritic(lambda k, x, a: (k + 1) * a[..., 0])  # Q_1 = a, Q_2 = 2a
    x = torch.zeros(1, 1, 2, 1)
    v = model.target_value(x)  # soft double Q = 0.75 min + 0.25 max: a > 0 -> 1.25 a, a < 0 -> 1.75 a
    assert v.shape == (1, 1, 2)
    assert v.flatten().tolist() == pytest.approx([1.25 * 0.7] * 2)  # max of (-0.7, 0.375, 0.875)

    model.critic = FakeAgentCritic(lambda k, x, a: -(a[..., 0] - 0.3 - 0.1 * k) ** 2)  # Q_1 peaks at 0.3
    actions, _ = model.act(torch.zeros(4, 2, 1), None)
    assert actions.shape == (4, 2, 1)
    assert torch.allclose(actions, torch.full((4, 2, 1), 0.3))  # candidate 0.2 perturbed to 0.3


def test_act_is_deterministic_with_fixed_latents_and_samples_otherwise():
    torch.manual_seed(0)
    model = MABCQ(spec=SPEC.to_dict(), behaviour_pretrain_steps=0, agent_hidden_dim=8, **NO_EVAL)
    obs = torch.randn(5, 2, 1)
    a1, _ = model.act(obs, None, deterministic=True)
    a2, _ = model.act(obs, None, deterministic=True)
    assert torch.equal(a1, a2) and model.act_latents.shape == (10, 2, 10)
    samples = torch.stack([model.act(obs, None, deterministic=False)[0] for _ in range(5)])
    assert samples.std(0).max() > 0  # fresh latents each call
    assert model.default_eval_deterministic is False  # the paper's policy samples its latents


# ---- flags --------------------------------------------------------------------------------------------
def random_batch(b: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(b, 1)
    terminated[0] = 1.0
    return {
        "obs": torch.randn(b, 2, 2, 1, generator=g),
        "state": torch.randn(b, 2, 2, generator=g),
        "actions": torch.rand(b, 1, 2, 1, generator=g) * 2 - 1,
        "avail_actions": torch.ones(b, 2, 2, 1, dtype=torch.bool),
        "reward": torch.randn(b, 1, generator=g),
        "terminated": terminated,
        "mask": torch.ones(b, 1),
    }


@pytest.mark.parametrize(("tn", "vd"), [(True, True), (False, True), (True, False), (False, False)])
def test_flags_switch_the_weights_off(tn, vd):
    torch.manual_seed(0)
    model = MABCQ(spec=SPEC.to_dict(), use_lambda_tn=tn, use_lambda_vd=vd, optimism=0.5, agent_hidden_dim=8,
                  behaviour_pretrain_steps=0, **NO_EVAL)
    assert (model.transition_vae is not None) == tn  # no G^2 without lambda_tn
    batch = random_batch()
    x = model.sequence_inputs(batch, include_last_obs=True)
    r, d = batch["reward"].unsqueeze(-1), batch["terminated"].unsqueeze(-1)
    with torch.no_grad():
        v_next = model.target_value(x[:, 1:])
        w, lam_vd, lam_tn = model.transition_weights(x[:, :-1], x[:, 1:], batch["actions"], r, d, v_next)
        assert torch.equal(w, lam_vd * lam_tn)
        if vd:
            q_hat = 0.75 * model.target_critic(x[:, :-1], batch["actions"]).amin(0) \
                + 0.25 * model.target_critic(x[:, :-1], batch["actions"]).amax(0)
            e = (q_hat - r) / 0.99
            expected = (1 + (v_next - e) / e.abs()).clamp(0.5, 1.5)
            expected[0] = 1.0  # the terminal transition
            assert torch.allclose(lam_vd, expected, atol=1e-5)
            assert ((lam_vd >= 0.5) & (lam_vd <= 1.5)).all() and not torch.all(lam_vd == 1)
        else:
            assert torch.all(lam_vd == 1)
        if tn:
            n1 = torch.distributions.Normal(0.0, 1.0)
            mu1 = model.vae.encode(x[:, :-1], batch["actions"])[0]
            mu2 = model.transition_vae.encode(torch.cat([x[:, :-1], x[:, 1:]], -1), batch["actions"])[0]
            ratio = (n1.log_prob(mu1).sum(-1) - n1.log_prob(mu2).sum(-1)).exp()
            assert torch.allclose(lam_tn, ratio, rtol=1e-5) and not torch.all(lam_tn == 1)
        else:
            assert torch.all(lam_tn == 1)


def test_registered_baselines_are_the_fig2_settings():
    assert ALGORITHMS["mabcq"] is MABCQ and ALGORITHMS["bcq_c"] is BCQC
    bcq = BCQC(spec=SPEC.to_dict(), **NO_EVAL)
    assert not bcq.hparams.use_lambda_tn and not bcq.hparams.use_lambda_vd and bcq.transition_vae is None
    ddpg = DDPGC(spec=SPEC.to_dict(), **NO_EVAL)
    assert ddpg.hparams.cql_alpha == 0.0 and ddpg.critic.n_critics == 1 and not ddpg.hparams.use_omar
    behavior = MABCQBehavior(spec=SPEC.to_dict(), **NO_EVAL)
    assert behavior.behaviour_pretrain_budget() == (0, 0)


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"optimism": 1.5}, "optimism"),
    ({"perturbation": -0.1}, "perturbation"),
    ({"n_candidates": 0}, "n_candidates"),
    ({"perturb_source": "policy"}, "perturb_source"),
    ({"lambda_tn_max": 0.0}, "lambda_tn_max"),
    ({"double_q_weight": 2.0}, "double_q_weight"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"agent": "rnn"}, "agent"),
])
def test_bad_options_name_the_option(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MABCQ(spec=SPEC.to_dict(), **kwargs, **NO_EVAL)


# ---- one update: the weighted losses (Eq. 1-2) by hand ----------------------------------------------------
def test_one_update_uses_the_weighted_td_and_perturbation_losses():
    model = MABCQ(spec=SPEC.to_dict(), use_lambda_tn=False, optimism=0.5, gamma=0.5, behaviour_pretrain_steps=0,
                  **NO_EVAL)
    model.critic, model.target_critic = FakeAgentCritic(), FakeAgentCritic()
    model.perturb = ShiftPerturbation()
    v_next = torch.tensor([[[3.0, 0.0]], [[1.0, 2.0]]])  # V_i(x') [B=2, L=1, N=2]
    model.target_value = lambda x_next: v_next
    obs = [[1.0, -1.0], [0.5, 0.25]]
    act = [[0.5, -0.5], [1.0, 0.0]]
    rew = [1.0, 0.0]
    batch = {
        "obs": torch.tensor([[o, [0.0, 0.0]] for o in obs]).unsqueeze(-1),  # [2, 2, N, 1]
        "state": torch.zeros(2, 2, 2),
        "actions": torch.tensor(act).reshape(2, 1, 2, 1),
        "avail_actions": torch.ones(2, 2, 2, 1, dtype=torch.bool),
        "reward": torch.tensor(rew).reshape(2, 1),
        "terminated": torch.zeros(2, 1),
        "mask": torch.ones(2, 1),
    }
    losses = []
    original = model.optimise, model.step_optimizer
    model.optimise = lambda opt, loss, clip: (losses.append(loss.item()), original[0](opt, loss, clip))
    model.step_optimizer = lambda i, loss, params, clip, **k: (losses.append(loss.item()), original[1](i, loss, params, clip, **k))
    trainer(1).fit(model, datamodule=Data(SPEC, batch))

    critic_loss = actor_loss = 0.0
    for b in range(2):
        for i in range(2):
            x, a, r, v = obs[b][i], act[b][i], rew[b], v_next[b, 0, i].item()
            q = [a + x, 2 * a + x]  # Q_1, Q_2 of the fake critic (also the target critic)
            e = (0.75 * min(q) + 0.25 * max(q) - r) / 0.5
            lam = min(max(1 + (v - e) / abs(e), 0.5), 1.5)
            y = r + 0.5 * v
            critic_loss += lam * ((q[0] - y) ** 2 + (q[1] - y) ** 2) / 4  # sum over critics, mean over (b, i)
            actor_loss -= lam * (min(a + 0.1, 1.0) + x) / 4  # Q_1(x, xi(x, a)), a = the dataset action (Eq. 2)
    assert losses == pytest.approx([critic_loss, actor_loss], rel=1e-5)


# ---- a short fit: each agent's BCQ policy finds the best action of a bandit -------------------------------
def bandit_batch(n: int = 256, seed: int = 0) -> dict:
    """One-step episodes, 2 agents, a_i ~ U(-1, 1), team reward -sum_i (a_i - 0.5)^2 (best action 0.5 each)."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.rand(n, 1, 2, 1, generator=g) * 2 - 1
    return {
        "obs": torch.randn(n, 2, 2, 1, generator=g) * 0.1,
        "state": torch.zeros(n, 2, 2),
        "actions": actions,
        "avail_actions": torch.ones(n, 2, 2, 1, dtype=torch.bool),
        "reward": -((actions - 0.5) ** 2).sum((-1, -2)),
        "terminated": torch.ones(n, 1),
        "mask": torch.ones(n, 1),
    }


@pytest.mark.parametrize("name", ["mabcq", "bcq_c"])
def test_short_fit_beats_the_behaviour_on_a_bandit(name):
    torch.manual_seed(0)
    model = ALGORITHMS[name](spec=SPEC.to_dict(), agent_hidden_dim=32, behaviour_pretrain_steps=300, vae_lr=3e-3,
                             critic_lr=3e-3, **NO_EVAL)
    batch = bandit_batch()
    trainer(200).fit(model, datamodule=Data(SPEC, batch, batch_size=64))
    actions, _ = model.act(torch.zeros(8, 2, 1), None, deterministic=True)
    # behaviour: E|a - 0.5| = 0.625 under U(-1, 1). The policy is the best of 10 perturbed VAE samples under the
    # learnt Q; latents clipped to [-0.5, 0.5] decode to the middle of the data (about [-0.5, 0.35] here).
    assert (actions - 0.5).abs().max() < 0.35, actions.flatten().tolist()
    reward = -((actions - 0.5) ** 2).sum((-1, -2)).mean()
    assert reward > batch["reward"].mean() + 0.5  # dataset mean about -1.17, the policy's about -0.1
