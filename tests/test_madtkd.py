"""MADTKD: distillation losses by hand, the sliding-window transformer, and act() = training outputs."""

import math

import pytest
import torch

from lit_omarl.algos import ALGORITHMS, MADTKD
from lit_omarl.algos.losses.madtkd import distillation_kl, madtkd_loss, relation_loss, returns_to_go
from lit_omarl.nets.transformer import DecisionTransformer, sliding_window_causal_mask
from lit_omarl.spec import EnvSpec


def softmax(xs):
    top = max(xs)
    e = [math.exp(x - top) for x in xs]
    return [v / sum(e) for v in e]


def test_returns_to_go_by_hand():
    reward = torch.tensor([[1.0, -2.0, 3.0, 7.0], [0.5, 0.5, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    assert returns_to_go(reward, mask).tolist() == [[9.0, 8.0, 10.0, 7.0], [1.0, 0.5, 0.0, 0.0]]


# One step, N=2 agents, A=3 actions; agent 1 cannot take action 2.
S_LOGITS = [[0.5, -1.0, 2.0], [1.0, 0.0, 3.0]]
T_LOGITS = [[1.5, 0.0, -0.5], [0.2, 0.4, 9.0]]
AVAIL = [[True, True, True], [True, True, False]]
ACTIONS = [2, 1]


def as_batch(x):
    return torch.tensor([[x]])  # [B=1, T=1, ...]


def hand_kl_and_bc():
    kls, nlls = [], []
    for i in range(2):
        js = [j for j in range(3) if AVAIL[i][j]]
        ps, pt = softmax([S_LOGITS[i][j] for j in js]), softmax([T_LOGITS[i][j] for j in js])
        kls.append(sum(t * (math.log(t) - math.log(s)) for s, t in zip(ps, pt)))
        nlls.append(-math.log(ps[js.index(ACTIONS[i])]))
    return sum(kls) / 2, sum(nlls) / 2


def test_distillation_kl_by_hand():
    kl, _ = hand_kl_and_bc()
    got = distillation_kl(as_batch(S_LOGITS), as_batch(T_LOGITS), as_batch(AVAIL), torch.ones(1, 1))
    assert got.item() == pytest.approx(kl, abs=1e-5)
    same = distillation_kl(as_batch(S_LOGITS), as_batch(S_LOGITS), as_batch(AVAIL), torch.ones(1, 1))
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def cos(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def huber(x, y):
    d = abs(x - y)
    return 0.5 * d * d if d < 1.0 else d - 0.5


F_S = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]  # 3 agents, E=2
F_T = [[1.0, 1.0], [-1.0, 1.0], [2.0, -1.0]]


def hand_relation():
    return sum(huber(cos(F_S[i], F_S[j]), cos(F_T[i], F_T[j])) for i in range(3) for j in range(3) if i != j)


def test_relation_loss_by_hand():
    # two steps; the second is padding with different features
    fs = torch.tensor([[F_S, F_T]])  # [B=1, T=2, N=3, E=2]
    ft = torch.tensor([[F_T, F_S]])
    got = relation_loss(fs, ft, torch.tensor([[1.0, 0.0]]))
    assert got.item() == pytest.approx(hand_relation(), abs=1e-5)
    # a large cosine gap uses the linear branch of Huber: cos = 1 vs -1 -> |d| = 2 -> 1.5 per ordered pair
    opposite = relation_loss(torch.tensor([[[[1.0, 0.0], [2.0, 0.0]]]]), torch.tensor([[[[1.0, 0.0], [-1.0, 0.0]]]]), torch.ones(1, 1))
    assert opposite.item() == pytest.approx(2 * 1.5)


def test_madtkd_loss_by_hand():
    kl, bc = hand_kl_and_bc()
    fs, ft = torch.tensor([[F_S[:2]]]), torch.tensor([[F_T[:2]]])
    rel = sum(huber(cos(F_S[i], F_S[j]), cos(F_T[i], F_T[j])) for i, j in ((0, 1), (1, 0)))
    total, parts = madtkd_loss(
        as_batch(S_LOGITS), as_batch(T_LOGITS), as_batch(ACTIONS), as_batch(AVAIL), torch.ones(1, 1),
        kd_coef=0.5, relation_coef=0.25, student_features=fs, teacher_features=ft,
    )
    assert parts["bc"].item() == pytest.approx(bc, abs=1e-5)
    assert parts["kd_kl"].item() == pytest.approx(kl, abs=1e-5)
    assert parts["relation"].item() == pytest.approx(rel, abs=1e-5)
    assert total.item() == pytest.approx(bc + 0.5 * kl + 0.25 * rel, abs=1e-5)
    no_rel, _ = madtkd_loss(as_batch(S_LOGITS), as_batch(T_LOGITS), as_batch(ACTIONS), as_batch(AVAIL), torch.ones(1, 1), 0.0)
    assert no_rel.item() == pytest.approx(bc, abs=1e-5)


def test_teacher_gets_no_gradient_from_the_student_loss():
    t_logits = as_batch(T_LOGITS).requires_grad_(True)
    s_logits = as_batch(S_LOGITS).requires_grad_(True)
    total, _ = madtkd_loss(s_logits, t_logits, as_batch(ACTIONS), as_batch(AVAIL), torch.ones(1, 1), 1.0)
    total.backward()
    assert t_logits.grad is None and s_logits.grad is not None


def test_sliding_window_mask_by_hand():
    mask = sliding_window_causal_mask(steps=3, tokens_per_step=2, context_length=2)
    for q in range(6):
        for k in range(6):
            assert mask[q, k].item() == (k <= q and k // 2 > q // 2 - 2), (q, k)


def test_transformer_last_history_steps_reproduce_the_whole_sequence():
    torch.manual_seed(0)
    net = DecisionTransformer(input_dim=4, n_actions=3, embed_dim=16, n_layers=2, n_heads=2, context_length=3, max_timestep=20)
    steps = 9
    x, a, r = torch.randn(2, steps, 4), torch.randint(0, 3, (2, steps)), torch.randn(2, steps)
    t = torch.arange(steps).expand(2, steps)
    full, _ = net(x, a, t, r)
    h = net.history_steps
    assert h == 5
    for end in range(1, steps + 1):
        lo = max(0, end - h)
        part, _ = net(x[:, lo:end], a[:, lo:end], t[:, lo:end], r[:, lo:end])
        assert torch.allclose(part[:, -1], full[:, end - 1], atol=1e-5)
    # the prediction at step t never depends on a_t
    a2 = a.clone()
    a2[:, 4] = (a2[:, 4] + 1) % 3
    assert torch.allclose(net(x, a2, t, r)[0][:, :5], full[:, :5], atol=1e-6)


SPEC = EnvSpec(env_id="test/tiny", n_agents=2, obs_dim=3, state_dim=4, n_actions=3, episode_limit=8)
SMALL = dict(embed_dim=16, n_layers=2, context_length=2, eval_every_steps=0, final_eval_episodes=0)


def episode_batch(steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(1, steps + 1, 2, 3, generator=g),
        "state": torch.randn(1, steps + 1, 4, generator=g),
        "actions": torch.randint(0, 3, (1, steps, 2), generator=g),
        "avail_actions": torch.ones(1, steps + 1, 2, 3, dtype=torch.bool),
        "reward": torch.tensor([[-1.0, -2.0, 0.5, 0.0, -1.0, 3.0][:steps]]),
        "terminated": torch.zeros(1, steps),
        "mask": torch.ones(1, steps),
    }


@pytest.mark.parametrize("mode", ["episode_return", "return_to_go", "none"])
def test_act_reproduces_the_training_forward_pass(mode):
    torch.manual_seed(0)
    model = MADTKD(spec=SPEC.to_dict(), return_conditioning=mode, **SMALL).eval()
    batch = episode_batch()
    returns = model.return_tokens(batch)  # also sets the return scale and the best return
    assert model.best_return.item() == pytest.approx(-0.5)
    assert model.return_scale_used.item() == pytest.approx(0.5)
    hidden, acts = None, []
    for t in range(6):
        a, hidden = model.act(batch["obs"][:, t], batch["avail_actions"][:, t], hidden)
        if mode == "return_to_go":
            hidden = model.observe_reward(hidden, batch["reward"][:, t])
        acts.append(a)
    acts = torch.stack(acts, 1)  # [1, T, N]
    # the forward pass over the acted episode, conditioned on the same returns
    cond = None
    if mode != "none":
        cond = returns_to_go(batch["reward"], batch["mask"]) if mode == "return_to_go" else torch.full((1, 6), -0.5)
        cond = cond / 0.5
        if mode == "episode_return":
            assert torch.allclose(returns, cond)
    logits, _ = MADTKD.run_agents(model.student, model.sequence_inputs(batch, include_last_obs=False).clone(), acts, cond)
    assert torch.equal(logits.argmax(-1), acts)


def test_teacher_is_centralised_and_pretrained_by_the_base_hooks():
    model = MADTKD(spec=SPEC.to_dict(), teacher_pretrain_steps=7, teacher_patience=3, **SMALL)
    assert ALGORITHMS["madtkd"] is MADTKD
    assert model.requires_episodes
    assert model.behaviour_pretrain_budget() == (7, 3)
    batch = episode_batch()
    x_s = model.sequence_inputs(batch, include_last_obs=False)
    x_t = model.teacher_inputs(batch)
    assert x_t.shape[-1] == x_s.shape[-1] + 4
    assert torch.equal(x_t[0, :, 1, -4:], batch["state"][0, :6])
    joint = MADTKD(spec=SPEC.to_dict(), teacher_inputs="joint_obs", **SMALL)
    assert torch.equal(joint.teacher_inputs(batch)[0, :, 0, -6:], batch["obs"][0, :6].reshape(6, 6))


def test_target_return_option():
    model = MADTKD(spec=SPEC.to_dict(), target_return=2.0, return_scale=4.0, **SMALL)
    _, hidden = model.act(torch.zeros(3, 2, 3), torch.ones(3, 2, 3, dtype=torch.bool))
    assert hidden["ret"][:, :, -1].tolist() == [[0.5, 0.5]] * 3
    unset = MADTKD(spec=SPEC.to_dict(), **SMALL)
    assert unset._target_return() == 0.0  # nothing seen yet
