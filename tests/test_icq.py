"""ICQ-MA: loss pieces against hand computations (plain Python loops), networks and update schedule."""

import math

import lightning as L
import pytest
import torch

from lit_omarl.algos import ICQ
from lit_omarl.algos.losses import masked_log_softmax
from lit_omarl.algos.losses.icq import icq_actor_loss, icq_critic_targets, minibatch_softmax_weights
from lit_omarl.nets.critics import BiasFreeLinearMixer, StateObsCritic, make_linear_mixer, state_obs_id_inputs
from lit_omarl.nets.mixers import LinearMixer
from lit_omarl.spec import EnvSpec


def softmax_weights_by_hand(column, valid, alpha):
    """n * exp(x / alpha) / sum_valid exp(x / alpha) for valid entries, 0 otherwise."""
    exps = [math.exp(x / alpha) if v else 0.0 for x, v in zip(column, valid)]
    n = sum(valid)
    return [n * e / sum(exps) if v else 0.0 for e, v in zip(exps, valid)]


def test_minibatch_softmax_weights_by_hand():
    values = torch.tensor([[1.0, 5.0], [2.0, -1.0], [4.0, 0.0]])  # [B=3, 2 columns]
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    got = minibatch_softmax_weights(values, valid, alpha=2.0)
    for col in range(2):
        expected = softmax_weights_by_hand(values[:, col].tolist(), valid[:, col].tolist(), 2.0)
        assert got[:, col].tolist() == pytest.approx(expected, rel=1e-5)
    assert got[:, 0].sum().item() == pytest.approx(3.0) and got[:, 1].sum().item() == pytest.approx(2.0)
    # Large alpha: all ones (the official alpha_critic = 1000 is close to this); no valid entry: zeros.
    assert torch.allclose(minibatch_softmax_weights(values, valid, 1e9), valid.float())
    assert minibatch_softmax_weights(values, torch.zeros_like(valid), 1.0).abs().sum() == 0


def test_icq_critic_targets_by_hand():
    gamma, lam, alpha = 0.9, 0.5, 2.0
    # ep0: 2 steps (time limit); ep1: 1 step then padding (time limit); ep2: 2 steps, terminated at step 1.
    rewards = [[1.0, 2.0], [0.5, 0.0], [-1.0, 3.0]]
    terminated = [[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    mask = [[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    q = [[10.0, 12.0, 14.0], [8.0, 11.0, 99.0], [6.0, 9.0, 7.0]]  # Q'_tot at obs 0..2
    targets, rho = icq_critic_targets(
        torch.tensor(rewards), torch.tensor(terminated), torch.tensor(mask), torch.tensor(q), alpha, gamma, lam
    )
    # rho per observation index over the episodes whose observation exists.
    obs_valid = [[True, True, True], [True, True, False], [True, True, True]]
    w = [[0.0] * 3 for _ in range(3)]
    for t in range(3):
        col = softmax_weights_by_hand([q[e][t] for e in range(3)], [obs_valid[e][t] for e in range(3)], alpha)
        for e in range(3):
            w[e][t] = col[e]
    assert rho.tolist() == [pytest.approx(row, rel=1e-5) for row in w]
    v = [[w[e][t] * q[e][t] for t in range(3)] for e in range(3)]  # re-weighted bootstrap values
    # Forward view: G_1 = r_1 + gamma (1 - d_1) v_2; G_0 = r_0 + gamma [(1 - lam) v_1 + lam G_1] (2-step episodes).
    g01 = rewards[0][1] + gamma * v[0][2]
    g00 = rewards[0][0] + gamma * ((1 - lam) * v[0][1] + lam * g01)
    g10 = rewards[1][0] + gamma * v[1][1]  # truncated after one step: bootstrap on its own last observation
    g21 = rewards[2][1]  # terminated
    g20 = rewards[2][0] + gamma * ((1 - lam) * v[2][1] + lam * g21)
    assert targets.tolist() == [pytest.approx([g00, g01], rel=1e-5), pytest.approx([g10, 0.0], abs=1e-5),
                                pytest.approx([g20, g21], rel=1e-5)]


@pytest.mark.parametrize("weighting", ["code", "paper"])
def test_icq_actor_loss_by_hand(weighting):
    alpha = 0.5
    # B=3 episodes, T=1, N=2 agents, A=3 actions; episode 2's step is padding; agent 1 cannot use action 2.
    logits = torch.tensor([[[[0.2, -0.1, 0.5], [1.0, 0.0, 3.0]]],
                           [[[0.0, 0.3, -0.2], [0.1, 0.4, 9.0]]],
                           [[[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]]])
    avail = torch.ones(3, 1, 2, 3, dtype=torch.bool)
    avail[:, :, 1, 2] = False
    q_all = torch.tensor([[[[1.0, 2.0, 0.5], [0.0, 3.0, 50.0]]],
                          [[[2.0, -1.0, 1.0], [1.5, 0.5, 50.0]]],
                          [[[7.0, 7.0, 7.0], [7.0, 7.0, 7.0]]]])
    actions = torch.tensor([[[1, 0]], [[0, 1]], [[0, 0]]])
    coef = torch.tensor([[[0.3, 0.7]], [[0.6, 0.4]], [[0.5, 0.5]]])
    mask = torch.tensor([[1.0], [1.0], [0.0]])
    log_pi = masked_log_softmax(logits, avail).requires_grad_(True)
    loss, weights, adv = icq_actor_loss(log_pi, q_all, actions, coef, mask, alpha, weighting)

    def pi_by_hand(e, i):
        av = [a for a in range(3) if avail[e, 0, i, a]]
        z = sum(math.exp(logits[e, 0, i, a].item()) for a in av)
        return {a: math.exp(logits[e, 0, i, a].item()) / z for a in av}

    adv_h, logp_h = {}, {}
    for e in range(2):  # valid episodes only
        for i in range(2):
            pi = pi_by_hand(e, i)
            baseline = sum(p * q_all[e, 0, i, a].item() for a, p in pi.items())
            a_e = actions[e, 0, i].item()
            adv_h[e, i] = q_all[e, 0, i, a_e].item() - baseline
            logp_h[e, i] = math.log(pi[a_e])
    total = 0.0
    for i in range(2):
        if weighting == "code":
            xs = [adv_h[e, i] for e in range(2)]
            w = [coef[e, 0, i].item() * wi for e, wi in enumerate(softmax_weights_by_hand(xs, [True, True], alpha))]
        else:
            xs = [coef[e, 0, i].item() * adv_h[e, i] for e in range(2)]
            w = softmax_weights_by_hand(xs, [True, True], alpha)
        for e in range(2):
            assert weights[e, 0, i].item() == pytest.approx(w[e], rel=1e-5)
            assert adv[e, 0, i].item() == pytest.approx(adv_h[e, i], rel=1e-5)
            total += -w[e] * logp_h[e, i]
    assert weights[2].abs().sum() == 0  # padding gets no weight
    assert loss.item() == pytest.approx(total / 4, rel=1e-5)  # mean over 2 valid steps x 2 agents
    loss.backward()
    assert log_pi.grad[2].abs().sum() == 0


def test_bootstrap_values_use_dataset_actions_else_the_policy():
    # B=2, L=2, N=1, A=2: episode 1 has one step, so obs 1 of episode 1 and obs 2 of both have no dataset action.
    q = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]],
                      [[[7.0, 8.0]], [[9.0, 10.0]], [[11.0, 12.0]]]])
    pi = torch.tensor([[[[0.5, 0.5]], [[0.25, 0.75]], [[1.0, 0.0]]],
                       [[[0.5, 0.5]], [[0.1, 0.9]], [[0.3, 0.7]]]])
    actions = torch.tensor([[[1], [0]], [[0], [0]]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    got = ICQ.bootstrap_values(q, pi, actions, mask)[..., 0]
    expected = [[2.0, 3.0, 5.0], [7.0, 0.1 * 9 + 0.9 * 10, 0.3 * 11 + 0.7 * 12]]
    assert got.flatten().tolist() == pytest.approx(sum(expected, []))


def test_critic_inputs_and_networks():
    state = torch.randn(2, 3, 4)
    obs = torch.randn(2, 3, 5, 6)
    x = state_obs_id_inputs(state, obs)
    assert x.shape == (2, 3, 5, 4 + 6 + 5)
    assert torch.equal(x[1, 2, 3, :4], state[1, 2]) and torch.equal(x[1, 2, 3, 4:10], obs[1, 2, 3])
    assert x[1, 2, 3, 10:].tolist() == [0, 0, 0, 1, 0]
    critic = StateObsCritic(15, 7, hidden_dim=8, dueling=True)
    assert critic(x).shape == (2, 3, 5, 7)
    assert StateObsCritic(15, 7, hidden_dim=8, dueling=False).fc_v is None
    mixer = make_linear_mixer(5, 4, 16, bias=False)
    assert isinstance(mixer, BiasFreeLinearMixer) and not hasattr(mixer, "hyper_b")
    qs = torch.randn(2, 3, 5)
    assert torch.allclose(mixer(qs, state), (mixer.k(state) * qs).sum(-1))
    assert type(make_linear_mixer(5, 4, 16, bias=True)) is LinearMixer


SPEC = EnvSpec(env_id="test/tiny", n_agents=2, obs_dim=3, state_dim=4, n_actions=3, episode_limit=2)


def tiny_batch():
    g = torch.Generator().manual_seed(0)
    return {
        "obs": torch.randn(8, 3, 2, 3, generator=g),
        "state": torch.randn(8, 3, 4, generator=g),
        "actions": torch.randint(0, 3, (8, 2, 2), generator=g),
        "avail_actions": torch.ones(8, 3, 2, 3, dtype=torch.bool),
        "reward": torch.randn(8, 2, generator=g),
        "terminated": torch.zeros(8, 2),
        "mask": torch.ones(8, 2),
    }


class Forever(L.LightningDataModule):
    def train_dataloader(self):
        batch = tiny_batch()
        while True:
            yield batch


def fit(model, steps):
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=Forever())
    return trainer


def test_icq_target_copies_follow_the_critic_steps():
    torch.manual_seed(0)
    model = ICQ(spec=SPEC.to_dict(), agent="mlp", use_last_action=False, agent_hidden_dim=8, critic_hidden_dim=8,
                target_update_interval=2, eval_every_steps=0, final_eval_episodes=0, optimizer="adam")
    assert fit(model, 2).global_step == 2  # the actor's optimizer does not count
    for online, target in ((model.critic, model.target_critic), (model.mixer, model.target_mixer)):
        for key, value in online.state_dict().items():
            assert torch.equal(value, target.state_dict()[key])
    fit(model, 3)
    assert not torch.equal(model.critic.fc1.weight, model.target_critic.fc1.weight)


def test_icq_acts_greedy_by_default_and_rejects_bad_options():
    torch.manual_seed(0)
    model = ICQ(spec=SPEC.to_dict(), agent="mlp", use_last_action=False, agent_hidden_dim=8, eval_every_steps=0)
    assert model.eval_deterministic
    obs = torch.randn(5, 2, 3)
    avail = torch.ones(5, 2, 3, dtype=torch.bool)
    logits, _ = model.actor.step(model.agent_inputs.build(obs))
    actions, _ = model.act(obs, avail)
    assert torch.equal(actions, logits.argmax(-1))
    with pytest.raises(ValueError, match="actor_weighting"):
        ICQ(spec=SPEC.to_dict(), actor_weighting="both")
    with pytest.raises(ValueError, match="optimizer"):
        ICQ(spec=SPEC.to_dict(), optimizer="sgd")
