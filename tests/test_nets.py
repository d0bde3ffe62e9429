"""Agent networks and mixers: monotonicity, hyper/mix split, sequence vs step."""

import pytest
import torch

from lit_omarl.nets import AgentInputs, LinearMixer, MLPAgent, QMixer, RNNAgent, VDNMixer, make_agent, make_mixer


def test_qmixer_is_monotonic():
    torch.manual_seed(0)
    mixer = QMixer(n_agents=3, state_dim=4)
    qs = torch.randn(5, 7, 3, requires_grad=True)
    states = torch.randn(5, 7, 4)
    (grad,) = torch.autograd.grad(mixer(qs, states).sum(), qs)
    assert (grad >= 0).all()


@pytest.mark.parametrize("mixer_cls", [QMixer, LinearMixer, VDNMixer])
def test_hyper_mix_split_equals_forward(mixer_cls):
    torch.manual_seed(0)
    mixer = mixer_cls(3, 4)
    states = torch.randn(2, 5, 4)
    qs = torch.randn(2, 5, 3)
    params = mixer.hyper(states)
    assert torch.allclose(mixer.mix(qs, params), mixer(qs, states))
    # K candidates per state mixed at once == one forward per candidate.
    cands = torch.randn(2, 5, 6, 3)
    batched = mixer.mix(cands, params)
    assert batched.shape == (2, 5, 6)
    for k in range(6):
        assert torch.allclose(batched[:, :, k], mixer(cands[:, :, k], states), atol=1e-6)


def test_linear_mixer_weights_are_a_convex_combination():
    torch.manual_seed(0)
    mixer = LinearMixer(3, 4)
    k = mixer.k(torch.randn(10, 4))
    assert (k >= 0).all() and torch.allclose(k.sum(-1), torch.ones(10))


def test_rnn_forward_seq_equals_stepping():
    torch.manual_seed(0)
    agent = RNNAgent(input_dim=6, output_dim=4, hidden_dim=8)
    x = torch.randn(3, 5, 2, 6)  # [B, T, N, in]
    h0 = torch.randn(3, 2, 8)
    out_seq, h_seq = agent.forward_seq(x, h0)
    h, outs = h0, []
    for t in range(5):
        o, h = agent.step(x[:, t], h)
        outs.append(o)
    assert out_seq.shape == (3, 5, 2, 4)
    assert torch.allclose(out_seq, torch.stack(outs, 1), atol=1e-5)
    assert torch.allclose(h_seq, h, atol=1e-5)
    # h0=None means zeros.
    assert torch.allclose(agent.forward_seq(x)[0], agent.forward_seq(x, torch.zeros(3, 2, 8))[0])


def test_mlp_agent_interface():
    agent = make_agent("mlp", 6, 4)
    assert isinstance(agent, MLPAgent)
    out, h = agent.forward_seq(torch.randn(3, 5, 2, 6))
    assert out.shape == (3, 5, 2, 4) and h is None
    out, h = agent.step(torch.randn(3, 2, 6), None)
    assert out.shape == (3, 2, 4) and h is None


def test_agent_inputs_sequence_layout():
    spec = AgentInputs(obs_dim=2, n_agents=2, n_actions=3)
    assert spec.dim == 2 + 2 + 3
    obs = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # [B, L+1, N, O]
    actions = torch.tensor([[[0, 2], [1, 1]], [[2, 0], [0, 0]]])  # [B, L, N]
    x = spec.sequence(obs, actions)
    assert x.shape == (2, 3, 2, 7)
    assert torch.equal(x[..., :2], obs)
    assert torch.equal(x[0, 0, 1, 2:4], torch.tensor([0.0, 1.0]))  # agent id of agent 1
    assert torch.equal(x[:, 0, :, 4:], torch.zeros(2, 2, 3))  # no last action at t = 0
    assert torch.equal(x[0, 1, 1, 4:], torch.tensor([0.0, 0.0, 1.0]))  # agent 1 took 2 at t = 0
    assert torch.equal(x[1, 2, 0, 4:], torch.tensor([1.0, 0.0, 0.0]))  # agent 0 took 0 at t = 1
    no_extras = AgentInputs(2, 2, 3, use_agent_id=False, use_last_action=False)
    assert torch.equal(no_extras.sequence(obs, actions), obs)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="agent type"):
        make_agent("transformer", 2, 2)
    with pytest.raises(ValueError, match="mixer"):
        make_mixer("qplex", 2, 2)
