"""OMAC: coupled value factorization by hand, the coupled mixer and the ablation switches."""

import lightning as L
import pytest
import torch

from lit_omarl.algos import OMAC
from lit_omarl.algos.losses.omac import coupled_q_tot, coupled_v_tot, local_expectile_loss
from lit_omarl.nets.coupled import CoupledMixer, WeightedSumMixer
from test_algos_contract import SPEC, TinyData


def test_coupled_mixing_by_hand():
    w_v, v, v_share = [0.5, 2.0], [1.0, -3.0], 0.25
    w_q, q = [1.5, 0.1], [0.0, -4.0]
    v_tot = sum(w_v[i] * v[i] for i in range(2)) + v_share  # 0.5 - 6 + 0.25
    q_tot = v_tot + sum(w_q[i] * (q[i] - v[i]) for i in range(2))  # -5.25 + 1.5 * -1 + 0.1 * -1
    got_v = coupled_v_tot(torch.tensor(w_v), torch.tensor(v), torch.tensor(v_share))
    got_q = coupled_q_tot(got_v, torch.tensor(w_q), torch.tensor(q), torch.tensor(v))
    assert got_v.item() == pytest.approx(v_tot) == pytest.approx(-5.25)
    assert got_q.item() == pytest.approx(q_tot) == pytest.approx(-6.85)


def test_local_expectile_loss_by_hand():
    q_bar = torch.tensor([[[2.0, 0.0], [1.0, 1.0]]])  # [B=1, T=2, N=2]
    v = torch.tensor([[[1.0, 1.0], [5.0, 5.0]]], requires_grad=True)
    mask = torch.tensor([[1.0, 0.0]])  # step 1 is padding
    tau = 0.8
    terms = [(tau if u >= 0 else 1 - tau) * u * u for u in (2.0 - 1.0, 0.0 - 1.0)]
    got = local_expectile_loss(q_bar, v, mask, tau)
    assert got.item() == pytest.approx(sum(terms) / 2)  # (0.8 + 0.2) / 2
    got.backward()
    assert v.grad[0, 1].abs().sum() == 0  # no gradient from padding


def test_coupled_mixer_weights_shapes_and_property_one():
    torch.manual_seed(0)
    mixer = CoupledMixer(n_agents=3, state_dim=4, n_actions=5, hidden_dim=16)
    states = torch.randn(6, 7, 4)
    actions = torch.randint(0, 5, (6, 7, 3))
    params = mixer.hyper(states)
    w_q = mixer.q_weights(states, actions, params)
    assert params.w_v.shape == w_q.shape == (6, 7, 3) and params.v_share.shape == (6, 7)
    assert (params.w_v >= 0).all() and (w_q >= 0).all()
    # Property 1: with V_i = max_a Q_i, Q_tot <= V_tot and equality at the greedy joint action.
    q_all = torch.randn(6, 7, 3, 5)
    v_local = q_all.max(-1).values
    v_tot = coupled_v_tot(params.w_v, v_local, params.v_share)
    q_tot = coupled_q_tot(v_tot, w_q, q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1), v_local)
    assert (q_tot <= v_tot + 1e-6).all()
    greedy = q_all.argmax(-1)
    q_greedy = coupled_q_tot(v_tot, mixer.q_weights(states, greedy, params), v_local, v_local)
    assert torch.allclose(q_greedy, v_tot)


@pytest.mark.parametrize("coupled", [True, False])
def test_coupled_credit_assignment_shares_the_state_encoder(coupled):
    torch.manual_seed(0)
    mixer = CoupledMixer(n_agents=2, state_dim=3, n_actions=2, hidden_dim=8, coupled=coupled)
    states, actions = torch.randn(4, 3), torch.randint(0, 2, (4, 2))
    mixer.q_weights(states, actions, mixer.hyper(states)).sum().backward()
    grad = mixer.f_v1[0].weight.grad
    # CCA: training w^q also trains the encoder h_v of w^v; w/o CCA the two are independent.
    assert (grad is not None and grad.abs().sum() > 0) == coupled


def test_weighted_sum_mixer_by_hand():
    mixer = WeightedSumMixer(n_agents=2, state_dim=1, hidden_dim=4)
    states = torch.tensor([[0.3]])
    w, b = mixer.hyper(states)
    q = torch.tensor([[2.0, -1.0]])
    expected = w[0, 0] * 2.0 + w[0, 1] * -1.0 + b[0]
    assert (w >= 0).all()
    assert mixer(q, states).item() == pytest.approx(expected.item())
    cands = torch.tensor([[[2.0, -1.0], [0.0, 1.0]]])  # [1, K=2, N=2]
    assert mixer.mix(cands, mixer.hyper(states))[0, 1].item() == pytest.approx((w[0, 1] + b[0]).item())


@pytest.mark.parametrize(
    ("kwargs", "mixer_type", "has_v"),
    [
        ({}, CoupledMixer, True),
        ({"coupled_value_factorization": False}, WeightedSumMixer, True),
        ({"coupled_credit_assignment": False}, CoupledMixer, True),
        ({"cvf_max_q": True}, CoupledMixer, False),
    ],
)
def test_ablation_switches_build_and_train(kwargs, mixer_type, has_v):
    torch.manual_seed(0)
    model = OMAC(spec=SPEC.to_dict(), agent="mlp", use_last_action=False, agent_hidden_dim=8, mixer_hidden_dim=8,
                 eval_every_steps=0, final_eval_episodes=0, **kwargs)
    assert isinstance(model.mixer, mixer_type) and (model.v_net is not None) == has_v
    if "coupled_credit_assignment" in kwargs:
        assert model.mixer.f_q2.in_features == 8
    before = model.policy.net[0].weight.detach().clone()
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=TinyData(sampling="transition"))
    assert trainer.global_step == 2
    assert not torch.equal(before, model.policy.net[0].weight)
