"""IQL-C, AWAC-C and ICQ-C (issue 5 part 3): Gaussian policies and the losses of one update on hand-computed cases.

Critics, value and mixer are replaced by fakes with known outputs; each test runs one real update through
Lightning and compares the losses handed to the optimizers with the formulas written out in Python.
The contract (short fit, bounds, checkpoint round trip) is in tests/test_algos_contract.py.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from lit_omarl.algos import AWACC, ICQC, IQLC
from lit_omarl.algos.losses.continuous import icq_c_actor_loss
from lit_omarl.spec import EnvSpec

from _batches import FixedBatchData

NO_EVAL = {"eval_every_steps": 0, "final_eval_episodes": 0}
# two agents, one obs entry, one state entry, one action dim in [-1, 1]
SPEC = EnvSpec("test/c2", n_agents=2, obs_dim=1, state_dim=1, n_actions=1, action_type="continuous", episode_limit=2)


def fit_one_update(model, batch) -> dict[str, float]:
    """One update through Lightning; returns the losses handed to the optimizers by index (0 = main)."""
    losses: dict[str, float] = {}
    optimise, step_optimizer = model.optimise, model.step_optimizer

    def record_main(opt, loss, clip):
        losses["main"] = loss.item()
        return optimise(opt, loss, clip)

    def record(index, loss, params, clip, **kwargs):
        losses[f"opt{index}"] = loss.item()
        return step_optimizer(index, loss, params, clip, **kwargs)

    model.optimise, model.step_optimizer = record_main, record
    L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu").fit(model, datamodule=FixedBatchData(SPEC, batch))
    return losses


class Dummy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))


class FakeCentralCritic(Dummy):
    """Q_k(s, a^1..a^N) = (k + 1) * sum_i a^i + s (two critics)."""

    def forward(self, state, joint, members=None):
        q = torch.stack([(k + 1) * joint.sum((-1, -2)) + state[..., 0] for k in range(2)])
        return (q + 0.0 * self.p)[: (2 if members is None else members)]


def q_central(k: int, s: float, joint: list[float]) -> float:
    return (k + 1) * sum(joint) + s


class FakeValue(Dummy):
    """V(s) = 2 s."""

    def forward(self, state):
        return 2.0 * state + 0.0 * self.p


def one_step_batch() -> dict:
    """Two one-step episodes (B = 2, L = 1); episode 1 terminates."""
    return {
        "obs": torch.tensor([[[0.3, -0.2], [0.1, 0.0]], [[-0.5, 0.4], [0.2, 0.2]]]).unsqueeze(-1),  # [2, 2, N, 1]
        "state": torch.tensor([[0.5, -0.3], [0.1, 0.8]]).unsqueeze(-1),  # [2, 2, 1]
        "actions": torch.tensor([[[0.4, -0.6]], [[0.9, 0.1]]]).unsqueeze(-1),  # [2, 1, N, 1]
        "avail_actions": torch.ones(2, 2, 2, 1, dtype=torch.bool),
        "reward": torch.tensor([[1.0], [-0.5]]),
        "terminated": torch.tensor([[0.0], [1.0]]),
        "mask": torch.ones(2, 1),
    }


def transition(batch: dict, b: int) -> tuple[float, float, list[float], float, float]:
    """(s, s', joint action, r, d) of one-step episode b."""
    return (batch["state"][b, 0, 0].item(), batch["state"][b, 1, 0].item(), batch["actions"][b, 0, :, 0].tolist(),
            batch["reward"][b, 0].item(), batch["terminated"][b, 0].item())


def normal_logp(x: float, mean: float, std: float) -> float:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def policy_log_probs(model, batch) -> list[list[float]]:
    """log pi_i(a_i) of the (not yet updated) policies, from their means and stds, in plain Python."""
    with torch.no_grad():
        means = model.policy_means(batch, include_last_obs=False)  # [B, 1, N, 1], normalised = action units here
        std = model.actor.std()
    return [[normal_logp(batch["actions"][b, 0, i, 0].item(), means[b, 0, i, 0].item(), std[i, 0].item())
             for i in range(2)] for b in range(2)]


# ---- the Gaussian policies ------------------------------------------------------------------------
def test_gaussian_log_probs_use_normalised_actions_and_real_dims_only():
    spec = EnvSpec("test/c", n_agents=2, obs_dim=3, state_dim=2, n_actions=2, action_type="continuous",
                   episode_limit=1, action_low=-2.0, action_high=1.0)
    model = IQLC(spec=spec.to_dict(), agent_action_dims=[2, 1], **NO_EVAL)
    stds = [[0.5, 0.2], [0.3, 0.9]]
    with torch.no_grad():
        model.actor.log_std.copy_(torch.tensor(stds).log())
    mean = torch.tensor([[0.1, -0.2], [0.5, 0.0]])  # [N, A], normalised
    actions = torch.tensor([[0.5, -2.0], [-1.0, 0.0]])  # bounds [-2, 1]: normalised (a + 0.5) / 1.5
    logp = model.log_probs(mean, actions)
    expected0 = normal_logp(1.0 / 1.5, 0.1, 0.5) + normal_logp(-1.0, -0.2, 0.2)
    expected1 = normal_logp(-0.5 / 1.5, 0.5, 0.3)  # agent 1's second dim is padding
    assert logp.tolist() == pytest.approx([expected0, expected1], rel=1e-5)

    # samples: in the bounds, padding 0; the mean maps back to the bounds
    torch.manual_seed(0)
    joint = model.sampled_joint_actions(mean.expand(7, 2, 2), 5)
    assert joint.shape == (5, 7, 2, 2) and (joint >= -2).all() and (joint <= 1).all() and (joint[..., 1, 1] == 0).all()
    assert model.to_bounds(mean)[0].tolist() == pytest.approx([-0.5 + 0.1 * 1.5, -0.5 - 0.2 * 1.5])  # centre + x * half-range
    with torch.no_grad():
        model.actor.log_std.fill_(-20.0)
    assert model.actor.std().min().item() == pytest.approx(math.exp(-5.0))  # clamped at log_std_min


# ---- IQL-C -------------------------------------------------------------------------------------------------
def test_iql_c_losses_by_hand():
    torch.manual_seed(0)
    tau, beta, gamma = 0.7, 3.0, 0.9
    model = IQLC(spec=SPEC.to_dict(), expectile=tau, temperature=beta, gamma=gamma, agent_hidden_dim=8, **NO_EVAL)
    model.critic, model.target_critic, model.value = FakeCentralCritic(), FakeCentralCritic(), FakeValue()
    batch = one_step_batch()
    logp = policy_log_probs(model, batch)
    losses = fit_one_update(model, batch)

    v_loss = q_loss = policy_loss = 0.0
    for b in range(2):
        s, s_next, a, r, d = transition(batch, b)
        q_bar = min(q_central(0, s, a), q_central(1, s, a))
        u = q_bar - 2 * s  # Q - V(s)
        v_loss += (tau if u >= 0 else 1 - tau) * u * u / 2
        y = r + gamma * (1 - d) * 2 * s_next
        q_loss += sum((q_central(k, s, a) - y) ** 2 for k in range(2)) / 2
        w = min(math.exp(beta * u), 100.0)
        policy_loss -= w * (logp[b][0] + logp[b][1]) / 4  # mean over steps and agents
    assert losses["opt2"] == pytest.approx(v_loss, rel=1e-5)
    assert losses["main"] == pytest.approx(q_loss, rel=1e-5)
    assert losses["opt1"] == pytest.approx(policy_loss, rel=1e-5)


# ---- AWAC-C ------------------------------------------------------------------------------------------------
def test_awac_c_losses_by_hand():
    torch.manual_seed(0)
    lam, gamma = 0.5, 0.9
    model = AWACC(spec=SPEC.to_dict(), temperature=1 / lam, n_action_samples=2, gamma=gamma, agent_hidden_dim=8,
                  **NO_EVAL)
    model.critic, model.target_critic = FakeCentralCritic(), FakeCentralCritic()
    # policy samples: at s' every agent plays 0.5 then -0.1; at s every agent plays -0.25 then 0.75
    values = iter([(0.5, -0.1), (-0.25, 0.75)])

    def fixed_samples(mean, n):
        v = torch.tensor(next(values)).reshape(2, 1, 1, 1, 1)
        return v.expand(n, *mean.shape)

    model.sampled_joint_actions = fixed_samples
    batch = one_step_batch()
    logp = policy_log_probs(model, batch)
    losses = fit_one_update(model, batch)

    q_loss = policy_loss = 0.0
    for b in range(2):
        s, s_next, a, r, d = transition(batch, b)
        v_next = sum(min(q_central(k, s_next, [m, m]) for k in range(2)) for m in (0.5, -0.1)) / 2
        y = r + gamma * (1 - d) * v_next
        q_loss += sum((q_central(k, s, a) - y) ** 2 for k in range(2)) / 2
        v_pi = sum(min(q_central(k, s, [m, m]) for k in range(2)) for m in (-0.25, 0.75)) / 2
        w = min(math.exp((min(q_central(k, s, a) for k in range(2)) - v_pi) / lam), 100.0)
        policy_loss -= w * (logp[b][0] + logp[b][1]) / 4
    assert losses["main"] == pytest.approx(q_loss, rel=1e-5)
    assert losses["opt1"] == pytest.approx(policy_loss, rel=1e-5)


# ---- ICQ-C -------------------------------------------------------------------------------------------------
def test_icq_c_actor_loss_by_hand():
    log_probs = torch.tensor([[[-1.0]], [[-2.0]], [[-7.0]]])  # [B=3, T=1, N=1]
    adv = torch.tensor([[[1.0]], [[0.0]], [[5.0]]])
    coef = torch.tensor([[[0.5]], [[1.0]], [[1.0]]])
    mask = torch.tensor([[1.0], [1.0], [0.0]])  # episode 2 is padding: not in the softmax, not in the loss
    e = math.e
    loss, w = icq_c_actor_loss(log_probs, adv, coef, mask, alpha=1.0, weighting="code")
    w_code = [0.5 * 2 * e / (e + 1), 1.0 * 2 / (e + 1)]  # k_i * n * softmax(adv / alpha), n = 2 valid episodes
    assert w[:2].flatten().tolist() == pytest.approx(w_code, rel=1e-6) and w[2].item() == 0.0
    assert loss.item() == pytest.approx((w_code[0] * 1.0 + w_code[1] * 2.0) / 2, rel=1e-6)
    loss_p, w_p = icq_c_actor_loss(log_probs, adv, coef, mask, alpha=1.0, weighting="paper")
    h = math.exp(0.5)
    w_paper = [2 * h / (h + 1), 2 / (h + 1)]  # n * softmax(k_i * adv / alpha)
    assert w_p[:2].flatten().tolist() == pytest.approx(w_paper, rel=1e-6)
    assert loss_p.item() == pytest.approx((w_paper[0] * 1.0 + w_paper[1] * 2.0) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="actor_weighting"):
        icq_c_actor_loss(log_probs, adv, coef, mask, 1.0, "both")


class FakeAgentCritic(Dummy):
    """Q_i(s, o_i, a_i) = s + 2 o_i + 3 a_i on the inputs [s, o_i, one-hot(i)] (one critic)."""

    def forward(self, x, actions, members=None):
        if actions.dim() == x.dim() + 1:  # candidates [..., N, C, A]
            x = x.unsqueeze(-2)
        return (x[..., 0] + 2 * x[..., 1] + 3 * actions[..., 0] + 0.0 * self.p).unsqueeze(0)


K = (0.25, 0.75)


class FakeMixer(Dummy):
    """Q_tot = 0.25 Q_1 + 0.75 Q_2."""

    def k(self, state):
        return torch.tensor(K).expand(*state.shape[:-1], 2) + 0.0 * self.p

    def forward(self, q, state):
        return (q * self.k(state)).sum(-1)


def test_icq_c_losses_by_hand():
    """td_lambda 0 and a huge critic temperature (rho = 1): G_t = r_t + gamma (1 - d_t) Q'_tot(s_{t+1}, a_{t+1})."""
    torch.manual_seed(0)
    gamma = 0.9
    model = ICQC(spec=SPEC.to_dict(), td_lambda=0.0, critic_alpha=1e9, actor_alpha=1.0, n_baseline_samples=0,
                 gamma=gamma, agent_hidden_dim=8, **NO_EVAL)
    model.critic, model.target_critic = FakeAgentCritic(), FakeAgentCritic()
    model.mixer, model.target_mixer = FakeMixer(), FakeMixer()
    # two episodes of lengths 2 and 1 (L = 2)
    batch = {
        "obs": torch.tensor([[[0.1, 0.2], [0.3, -0.1], [0.0, 0.5]], [[-0.2, 0.4], [0.6, 0.1], [0.0, 0.0]]]).unsqueeze(-1),
        "state": torch.tensor([[0.2, -0.4, 0.3], [0.5, 0.1, 0.0]]).unsqueeze(-1),
        "actions": torch.tensor([[[0.5, -0.5], [0.2, 0.8]], [[-0.3, 0.6], [0.0, 0.0]]]).unsqueeze(-1),
        "avail_actions": torch.ones(2, 3, 2, 1, dtype=torch.bool),
        "reward": torch.tensor([[1.0, 0.5], [-1.0, 0.0]]),
        "terminated": torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
        "mask": torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
    }
    with torch.no_grad():
        means = model.policy_means(batch, include_last_obs=True)
        policy = model.to_bounds(means)  # the bootstrap action where the data has none
        std = model.actor.std()
    losses = fit_one_update(model, batch)

    def q_tot(b, t, acts):
        s = batch["state"][b, t, 0].item()
        return sum(K[i] * (s + 2 * batch["obs"][b, t, i, 0].item() + 3 * acts[i]) for i in range(2))

    def data_action(b, t):
        return batch["actions"][b, t, :, 0].tolist()

    # episode 0: steps 0, 1 (next action of step 0 from the data, of step 1 the policy's); episode 1: step 0 only
    y00 = 1.0 + gamma * q_tot(0, 1, data_action(0, 1))
    y01 = 0.5 + gamma * q_tot(0, 2, policy[0, 2, :, 0].tolist())
    y10 = -1.0 + gamma * q_tot(1, 1, policy[1, 1, :, 0].tolist())
    errors = [q_tot(0, 0, data_action(0, 0)) - y00, q_tot(0, 1, data_action(0, 1)) - y01, q_tot(1, 0, data_action(1, 0)) - y10]
    assert losses["main"] == pytest.approx(sum(e * e for e in errors) / 3, rel=1e-5)

    # actor: A_i = Q_i(a_i) (no baseline); weights k_i * n * softmax over the valid episodes of each (t, i)
    def q_i(b, t, i):
        return batch["state"][b, t, 0].item() + 2 * batch["obs"][b, t, i, 0].item() + 3 * batch["actions"][b, t, i, 0].item()

    def logp(b, t, i):
        return normal_logp(batch["actions"][b, t, i, 0].item(), means[b, t, i, 0].item(), std[i, 0].item())

    total = 0.0
    for i in range(2):
        z = math.exp(q_i(0, 0, i)) + math.exp(q_i(1, 0, i))
        total += K[i] * 2 * math.exp(q_i(0, 0, i)) / z * logp(0, 0, i) + K[i] * 2 * math.exp(q_i(1, 0, i)) / z * logp(1, 0, i)
        total += K[i] * 1 * logp(0, 1, i)  # t = 1: one valid episode, softmax weight n * 1 = 1
    assert losses["opt1"] == pytest.approx(-total / 6, rel=1e-5)  # mean over 3 valid steps x 2 agents


def test_icq_c_baseline_uses_policy_samples():
    model = ICQC(spec=SPEC.to_dict(), n_baseline_samples=2, agent_hidden_dim=8, **NO_EVAL)
    model.critic = FakeAgentCritic()
    model.sampled_joint_actions = lambda mean, n: torch.tensor([0.2, -0.6]).reshape(2, 1, 1, 1, 1).expand(n, *mean.shape)
    x = torch.tensor([[[[0.5, 1.0, 1.0, 0.0], [0.5, -1.0, 0.0, 1.0]]]])  # [B=1, L=1, N=2, S+O+N]
    actions = torch.tensor([[[[0.4], [0.0]]]])
    adv = model.advantages(x, actions, torch.zeros(1, 1, 2, 1))
    # Q_i(a_i) - mean_m Q_i(a~_m) = 3 (a_i - mean(0.2, -0.6)) = 3 (a_i + 0.2)
    assert adv.flatten().tolist() == pytest.approx([3 * 0.6, 3 * 0.2], rel=1e-6)


@pytest.mark.parametrize(("cls", "kwargs", "word"), [
    (IQLC, {"expectile": 1.5}, "expectile"),
    (IQLC, {"log_std_min": 3.0}, "log_std_min"),
    (IQLC, {"n_critics": 0}, "n_critics"),
    (AWACC, {"n_action_samples": 0}, "n_action_samples"),
    (ICQC, {"actor_weighting": "both"}, "actor_weighting"),
    (ICQC, {"optimizer": "sgd"}, "optimizer"),
    (ICQC, {"critic_alpha": 0.0}, "critic_alpha"),
    (ICQC, {"n_baseline_samples": -1}, "n_baseline_samples"),
])
def test_bad_options_name_the_option(cls, kwargs, word):
    with pytest.raises(ValueError, match=word):
        cls(spec=SPEC.to_dict(), **kwargs, **NO_EVAL)
