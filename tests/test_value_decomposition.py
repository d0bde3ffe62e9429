"""QMIX, BCQ-MA and CQL-MA: loss pieces against hand computations, and their special behaviour."""

import math

import pytest
import torch

from lit_omarl.algos import BCQMA, CQLMA, QMIX
from lit_omarl.algos.losses.bcq import bcq_allowed_actions
from lit_omarl.algos.losses.cql_ma import cql_ma_gap
from lit_omarl.nets.mixers import LinearMixParams
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec(env_id="test/tiny", n_agents=2, obs_dim=3, state_dim=4, n_actions=3, episode_limit=2)
COMMON = {"eval_every_steps": 0, "final_eval_episodes": 0, "agent_hidden_dim": 8}


def test_bcq_filter_by_hand():
    probs = torch.tensor([[0.5, 0.1, 0.4], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    avail = torch.tensor([[True, True, True], [True, True, True], [False, True, True]])

    def by_hand(threshold):
        out = []
        for p, av in zip(probs.tolist(), avail.tolist()):
            top = max(x for x, a in zip(p, av) if a)
            out.append([bool(a and x / top >= threshold) for x, a in zip(p, av)])
        return out

    for threshold in (0.0, 0.3, 0.5, 1.0):
        assert bcq_allowed_actions(probs, avail, threshold).tolist() == by_hand(threshold)
    assert bcq_allowed_actions(probs, avail, 0.3).tolist() == [[True, False, True], [True, True, True], [False, True, True]]
    assert bcq_allowed_actions(probs, avail, 1.0).sum(-1).tolist() == [1, 1, 1]  # never empty


def test_cql_ma_gap_by_hand():
    # B=1, T=2, N=2, A=3; agent 1 cannot use action 2 at t=0.
    q = torch.tensor([[[[1.0, 2.0, 0.0], [0.5, -1.0, 30.0]], [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]]])
    avail = torch.ones(1, 2, 2, 3, dtype=torch.bool)
    avail[0, 0, 1, 2] = False
    actions = torch.tensor([[[1, 0], [2, 1]]])
    k = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])
    b = torch.tensor([[0.3, -0.2]])
    q_tot = torch.tensor([[1.7, 2.1]])

    def lse(xs):
        return math.log(sum(math.exp(x) for x in xs))

    local, weighted = [], []
    for t in range(2):
        loc = wtd = 0.0
        for i in range(2):
            av = [a for a in range(3) if avail[0, t, i, a]]
            qs = [q[0, t, i, a].item() for a in av]
            loc += lse(qs) - q[0, t, i, actions[0, t, i]].item()
            wtd += lse([k[0, t, i].item() * x + b[0, t].item() for x in qs])
        local.append(loc)
        weighted.append(wtd - q_tot[0, t].item())
    got_local = cql_ma_gap(q, actions, avail, q_tot, None, "local")
    got_weighted = cql_ma_gap(q, actions, avail, q_tot, LinearMixParams(k, b), "weighted")
    assert got_local[0].tolist() == pytest.approx(local, rel=1e-5)
    assert got_weighted[0].tolist() == pytest.approx(weighted, rel=1e-5)
    with pytest.raises(ValueError, match="linear mixer"):
        cql_ma_gap(q, actions, avail, q_tot, None, "weighted")


def test_qmix_has_no_regulariser():
    model = QMIX(spec=SPEC.to_dict(), **COMMON)
    q_all = torch.randn(2, 2, 2, 3)
    batch = {"actions": torch.zeros(2, 2, 2, dtype=torch.long), "mask": torch.ones(2, 2), "state": torch.randn(2, 3, 4)}
    avail = torch.ones(2, 2, 2, 3, dtype=torch.bool)
    params = model.mixer.hyper(batch["state"][:, :-1])
    q_taken = model.mixer.mix(q_all[..., 0], params)
    gap, extra = model.conservative_gap(q_all, batch, avail, q_taken, params)
    assert torch.equal(gap, torch.zeros(2, 2)) and extra["greedy_gap_mean"] >= -1e-6  # greedy >= data action
    with pytest.raises(ValueError, match="cql_alpha must be 0"):
        QMIX(spec=SPEC.to_dict(), cql_alpha=1.0)


def test_cql_ma_weighted_form_needs_the_linear_mixer():
    with pytest.raises(ValueError, match="linear mixer"):
        CQLMA(spec=SPEC.to_dict(), cql_form="weighted", mixer="qmix")
    model = CQLMA(spec=SPEC.to_dict(), cql_form="weighted", **COMMON)
    assert model.hparams.mixer == "linear" and model.hparams.cql_alpha == 2.0


def test_bcq_acts_greedily_among_allowed_actions():
    torch.manual_seed(0)
    model = BCQMA(spec=SPEC.to_dict(), agent="mlp", use_last_action=False, threshold=0.5, **COMMON)
    with torch.no_grad():  # behaviour: action 0 favoured, then 1 (ratio 0.6 when 0 is available); Q: 2 > 1 > 0
        model.behaviour.net[-1].weight.zero_()
        model.behaviour.net[-1].bias.copy_(torch.tensor([0.0, math.log(0.6), -5.0]))
        model.agent.net[-1].weight.zero_()
        model.agent.net[-1].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    obs = torch.randn(6, 2, 3)
    avail = torch.tensor([[True, True, True], [False, True, True], [True, False, True]]).repeat(4, 1).reshape(6, 2, 3)
    actions, _ = model.act(obs, avail)
    # allowed: {0, 1} where 0 is available; {1} when 0 is not; {0} when 1 is not -> greedy Q among them.
    expected = torch.tensor([[1, 1], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0]])
    assert torch.equal(actions, expected)
    assert torch.equal(model.act(obs, avail, deterministic=False)[0], expected)  # greedy in both modes
