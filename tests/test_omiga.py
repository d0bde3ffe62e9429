"""OMIGA's local objectives against hand-computed cases."""

import math

import pytest
import torch

from lit_omarl.algos import OMIGA
from lit_omarl.algos.losses.omiga import omiga_policy_weights, omiga_value_loss, omiga_z
from lit_omarl.spec import EnvSpec
from test_algos_contract import SPEC


def test_omiga_z_by_hand_with_clipping():
    w = torch.tensor([[[2.0, 0.5]]])
    q = torch.tensor([[[3.0, 100.0]]])
    v = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    alpha = 2.0
    z = omiga_z(w, q, v, alpha, clip=10.0)
    assert z.tolist() == [[[pytest.approx(2.0 * (3.0 - 1.0) / 2.0), 10.0]]]  # 0.5 * 100 / 2 = 25 -> 10
    z.sum().backward()
    assert v.grad.tolist() == [[[-1.0, 0.0]]]  # -w / alpha; none through the clipped entry


def test_omiga_value_loss_by_hand():
    alpha = 5.0
    z = [[[0.5, -2.0]], [[30.0, 30.0]]]  # [B=2, T=1, N=2]; episode 1 is padding
    w = [[[1.0, 2.0]], [[1.0, 1.0]]]
    v = [[[0.3, -0.7]], [[9.0, 9.0]]]
    mask = [[1.0], [0.0]]
    valid = [z[0][0][0], z[0][0][1]]
    m = max(max(valid), -1.0)  # padding's z = 30 is ignored
    terms = [math.exp(z[0][0][i] - m) + math.exp(-m) * w[0][0][i] * v[0][0][i] / alpha for i in range(2)]
    got = omiga_value_loss(torch.tensor(z), torch.tensor(w), torch.tensor(v), torch.tensor(mask), alpha)
    assert got.item() == pytest.approx(sum(terms) / 2)
    # all z below -1: M is floored at -1
    z_low = torch.tensor([[[-3.0]]])
    got_low = omiga_value_loss(z_low, torch.ones(1, 1, 1), torch.tensor([[[2.0]]]), torch.ones(1, 1), alpha)
    assert got_low.item() == pytest.approx(math.exp(-3.0 + 1.0) + math.exp(1.0) * 2.0 / alpha)


def test_omiga_value_minimiser_is_the_in_sample_soft_maximum():
    """d L_V / d V = 0 at V = (alpha / w) log mean_j exp(w Q_j / alpha) (the implicit local regulariser)."""
    alpha, w = 2.0, 1.5
    q = [0.0, 1.0, 4.0, -2.0]  # Qbar_i of dataset actions at one observation
    v_star = alpha / w * math.log(sum(math.exp(w * x / alpha) for x in q) / len(q))
    v = torch.full((1, 4, 1), v_star, requires_grad=True)
    wt = torch.full((1, 4, 1), w)
    z = omiga_z(wt, torch.tensor(q).reshape(1, 4, 1), v, alpha, clip=50.0)
    omiga_value_loss(z, wt, v, torch.ones(1, 4), alpha).backward()
    assert v.grad.sum().item() == pytest.approx(0.0, abs=1e-6)
    assert max(q) > v_star > sum(q) / len(q)  # between the mean and the in-sample maximum


def test_omiga_policy_weights():
    z = torch.tensor([-10.0, 0.0, 1.0], requires_grad=True)
    got = omiga_policy_weights(z)
    assert got.tolist() == pytest.approx([math.exp(-10.0), 1.0, math.e]) and not got.requires_grad


def test_omiga_samples_by_default_and_rejects_bad_alpha():
    model = OMIGA(spec=SPEC.to_dict(), agent="mlp", use_last_action=False)
    assert model.eval_deterministic is False
    with pytest.raises(ValueError, match="alpha"):
        OMIGA(spec=SPEC.to_dict(), alpha=0.0)


def test_omiga_on_xor_b_reaches_the_closed_form_policy():
    """XOR dataset (b) = {AA: 0, AB: 1, BA: 1}: the linear decomposition fits w_i (Q_i(B) - Q_i(A)) = 1,
    so the weighted BC policy is pi_i(B) = mu(B) e^{1/alpha} / (mu(A) + mu(B) e^{1/alpha}), mu(B) = 1/3
    (0.356 for alpha = 10: the expected return 0.21 of InSPO's Table 1)."""
    import lightning as L
    from test_algos_contract import Forever

    spec = EnvSpec(env_id="matrix/xor", n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)
    joint = torch.tensor([[0, 0], [0, 1], [1, 0]]).repeat(8, 1)
    payoff = torch.tensor([[0.0, 1.0], [1.0, -2.0]])
    b = joint.shape[0]
    batch = {"obs": torch.ones(b, 2, 2, 1), "state": torch.ones(b, 2, 1), "actions": joint.unsqueeze(1),
             "avail_actions": torch.ones(b, 2, 2, 2, dtype=torch.bool),
             "reward": payoff[joint[:, 0], joint[:, 1]].unsqueeze(1), "terminated": torch.ones(b, 1), "mask": torch.ones(b, 1)}

    class Data(L.LightningDataModule):
        sampling = "transition"

        def __init__(self):
            super().__init__()
            self.spec = spec

        def train_dataloader(self):
            return Forever(batch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is much faster on a loaded machine
    torch.manual_seed(0)
    alpha = 10.0
    model = OMIGA(spec=spec.to_dict(), alpha=alpha, agent="mlp", use_last_action=False, agent_hidden_dim=32,
                  lr=3e-3, tau=0.05, eval_every_steps=0, final_eval_episodes=0)
    try:
        L.Trainer(max_steps=100, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, accelerator="cpu").fit(model, datamodule=Data())
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        logits, _ = model.policy.step(model.agent_inputs.build(torch.ones(1, 2, 1)))
    p_b = torch.softmax(logits, -1)[0, :, 1]
    expected = (1 / 3) * math.exp(1 / alpha) / (2 / 3 + (1 / 3) * math.exp(1 / alpha))
    assert p_b.tolist() == pytest.approx([expected, expected], abs=0.01)
    p = p_b.mean().item()
    expected_return = 2 * p * (1 - p) * 1.0 + p * p * -2.0
    assert expected_return == pytest.approx(0.21, abs=0.02)
