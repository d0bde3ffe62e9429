"""The speed paths of issue 7 compute what the plain expressions compute.

* ``QMixer.counterfactual_reduce`` (CFCQL's counterfactual term with its
  gradient contracted in the forward pass) against a straightforward loop over
  agents x actions with hand-built mixer weights, in float64;
* the fused, chunked GRU of ``RNNAgent.forward_seq`` against ``torch.nn.GRU``;
* a whole CFCQL / QMIX update with every fast path on against the same update
  with them off (``fused = False`` agent, ``fused_candidates = False`` mixer).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lit_omarl.nets.agents as agents
import lit_omarl.nets.mixers as mixers
from lit_omarl.algos import CFCQL, QMIX
from lit_omarl.algos.losses import KL_EPS, cfcql_counterfactual_reduce, counterfactual_lambda, cql_counterfactual_term
from lit_omarl.nets import QMixer, RNNAgent
from lit_omarl.spec import EnvSpec
from _batches import one_training_step, random_episode_batch  # noqa: E402

N, A, E = 3, 4, 5


@pytest.fixture
def small_chunks(monkeypatch):
    """Several chunks even on tiny inputs, so the chunk loops and their boundaries are exercised."""
    monkeypatch.setattr(mixers, "FUSED_CHUNK_ELEMENTS", 2 * N * A * E)  # 2 states per chunk
    monkeypatch.setattr(agents, "GRU_CHUNK_ELEMENTS", 1)  # one time step per chunk


def hand_case(rows: int = 5, seed: int = 0):
    """Per-agent Qs, taken actions, availability, behaviour probabilities and mixer weights (float64)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(rows, N, A, generator=g, dtype=torch.double)
    actions = torch.randint(0, A, (rows, N), generator=g)
    avail = torch.rand(rows, N, A, generator=g) > 0.4
    avail.scatter_(-1, actions.unsqueeze(-1), True)  # the taken action is available
    avail[0, 1] = False
    avail[0, 1, actions[0, 1]] = True  # an agent with a single available action
    logits = torch.randn(rows, N, A, generator=g, dtype=torch.double)
    beta = torch.softmax(logits.masked_fill(~avail, -1e10), -1) * avail
    w1 = torch.rand(rows, N, E, generator=g, dtype=torch.double)  # >= 0 like |hyper_w1|
    b1 = torch.randn(rows, E, generator=g, dtype=torch.double)
    w2 = torch.rand(rows, E, generator=g, dtype=torch.double)
    b2 = torch.randn(rows, generator=g, dtype=torch.double)
    return q, actions, avail, beta, (w1, b1, w2, b2)


def reference_value(q, actions, avail, beta, weights, temperature, mode):
    """sum_i lambda_i log sum_{j avail} exp Q_tot(j, a^{-i}) by explicit loops; Q_tot = w2 . elu(q W1 + b1) + b2."""
    w1, b1, w2, b2 = weights
    values, negs, lams = [], [], []
    for r in range(q.shape[0]):
        taken = q[r].gather(-1, actions[r].unsqueeze(-1)).squeeze(-1)  # [N]
        neg, cand_rows = [], []
        for i in range(N):
            cand = []
            for j in range(A):
                joint = torch.cat([taken[:i], q[r, i, j : j + 1], taken[i + 1 :]])
                qtot = (w2[r] * F.elu(joint @ w1[r] + b1[r])).sum() + b2[r]
                cand.append(qtot if avail[r, i, j] else None)
            avail_cands = torch.stack([c for c in cand if c is not None])
            neg.append(torch.logsumexp(avail_cands, 0))
            cand_rows.append(cand)
        neg = torch.stack(neg)
        with torch.no_grad():  # lambda is detached
            ratio = []
            for i in range(N):
                kl = 0.0
                lse = neg[i]
                for j in range(A):
                    if cand_rows[i][j] is not None:
                        mu = torch.exp(cand_rows[i][j] - lse)
                        kl = kl + (mu + KL_EPS) * (torch.log(mu + KL_EPS) - torch.log(beta[r, i, j] + KL_EPS))
                ratio.append(kl)
            ratio = torch.stack(ratio)
            if mode == "uniform":
                lam = torch.full((N,), 1.0 / N, dtype=q.dtype)
            elif mode == "onehot":
                lam = F.one_hot(ratio.argmax(), N).to(q.dtype)
            else:
                lam = torch.softmax(temperature * ratio, 0)
        values.append((lam * neg).sum())
        negs.append(neg.detach())
        lams.append(lam)
    return torch.stack(values), torch.stack(negs), torch.stack(lams)


def fused_value(q, actions, avail, beta, weights, temperature, mode, rows=None):
    w1, b1, w2, b2 = weights
    mixer = QMixer(N, 1, embed_dim=E)
    taken = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    pick = (lambda x: x) if rows is None else (lambda x: x.index_select(0, rows))
    use_beta = None if mode == "uniform" else pick(beta)
    reduce = cfcql_counterfactual_reduce(pick(avail), use_beta, temperature, mode)
    return mixer.counterfactual_reduce(q, taken, mixers.QMixParams(w1, b1, w2, b2), reduce, rows=rows)


@pytest.mark.parametrize("mode,temperature", [("softmax", 2.0), ("onehot", 0.0), ("uniform", 0.0)])
def test_counterfactual_reduce_matches_the_loops(small_chunks, mode, temperature):
    q, actions, avail, beta, weights = hand_case()
    leaves = [q, *weights]
    for x in leaves:
        x.requires_grad_(True)
    ref, ref_neg, ref_lam = reference_value(q, actions, avail, beta, weights, temperature, mode)
    ref_grads = torch.autograd.grad((ref * torch.arange(1.0, 6.0, dtype=torch.double)).sum(), leaves)
    value, neg, lam, ratio = fused_value(q, actions, avail, beta, weights, temperature, mode)
    grads = torch.autograd.grad((value * torch.arange(1.0, 6.0, dtype=torch.double)).sum(), leaves)
    torch.testing.assert_close(value, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(neg, ref_neg, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lam, ref_lam, rtol=1e-10, atol=1e-10)
    assert not neg.requires_grad and not lam.requires_grad and not ratio.requires_grad
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    # the unavailable actions get no gradient; an agent with one available action still does (its
    # candidate is the data's Q_tot)
    assert (grads[0][~avail] == 0).all()


def test_counterfactual_reduce_on_selected_rows(small_chunks):
    """rows=...: only those states are computed; the others get 0 and no gradient."""
    q, actions, avail, beta, weights = hand_case()
    q.requires_grad_(True)
    rows = torch.tensor([0, 2, 3])
    full = fused_value(q, actions, avail, beta, weights, 2.0, "softmax")
    part = fused_value(q, actions, avail, beta, weights, 2.0, "softmax", rows=rows)
    for x, y in zip(full, part):
        torch.testing.assert_close(y[rows], x[rows], rtol=1e-12, atol=1e-12)
        assert (y[torch.tensor([1, 4])] == 0).all()
    (grad,) = torch.autograd.grad(part[0].sum(), q)
    assert (grad[torch.tensor([1, 4])] == 0).all() and (grad[rows] != 0).any()


def test_counterfactual_reduce_gradcheck(small_chunks):
    q, actions, avail, beta, (w1, b1, w2, b2) = hand_case(rows=4, seed=1)
    taken = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1).detach()
    reduce = cfcql_counterfactual_reduce(avail, beta, 2.0, "softmax")

    with torch.no_grad():  # lambda at the evaluation point, then held fixed (it is detached)
        _, _, lam, _ = mixers._QMixCounterfactualReduce.apply(q, taken, w1, b1, w2, b2, reduce)

    def fixed(cand, sl):
        cand = cand.masked_fill(~avail[sl], -1e10)
        return (lam[sl] * torch.logsumexp(cand, -1)).sum(-1), torch.softmax(cand, -1) * lam[sl].unsqueeze(-1), ()

    def value(*args):
        return mixers._QMixCounterfactualReduce.apply(*args, fixed)[0]

    inputs = [x.clone().requires_grad_() for x in (q, taken, w1, b1, w2, b2)]
    assert torch.autograd.gradcheck(value, inputs)


def test_cfcql_reduce_equals_the_composable_functions():
    """cfcql_counterfactual_reduce == cql_counterfactual_term + counterfactual_lambda on the same candidates."""
    g = torch.Generator().manual_seed(3)
    cand = torch.randn(6, N, A, generator=g)
    avail = torch.rand(6, N, A, generator=g) > 0.3
    avail[..., 0] = True
    beta = torch.softmax(torch.randn(6, N, A, generator=g).masked_fill(~avail, -1e10), -1) * avail
    value, grad, (neg, lam, ratio) = cfcql_counterfactual_reduce(avail, beta, 1.5, "softmax")(cand.clone(), slice(0, 6))
    # cql_counterfactual_term with a "mixer" that returns candidate (i, j)'s own Q: Q_tot^{(i,j)} = cand[i, j]
    q_all = cand.unsqueeze(0)
    actions = torch.zeros(1, 6, N, dtype=torch.long)
    pick_own = lambda c, params: torch.stack([c[..., i * A : (i + 1) * A, i] for i in range(N)], -2).flatten(-2)  # noqa: E731
    ref_neg, ref_cand = cql_counterfactual_term(q_all, actions, avail.unsqueeze(0), None, pick_own)
    ref_neg, ref_cand = ref_neg[0], ref_cand[0]
    ref_lam, ref_ratio = counterfactual_lambda(ref_cand, beta, avail, 1.5, "softmax")
    torch.testing.assert_close(neg, ref_neg)
    torch.testing.assert_close(lam, ref_lam)
    torch.testing.assert_close(ratio, ref_ratio)
    torch.testing.assert_close(value, (ref_lam * ref_neg).sum(-1))
    torch.testing.assert_close(grad, torch.softmax(ref_cand, -1) * ref_lam.unsqueeze(-1))


def test_single_q_mix_is_the_qmix_formula():
    """mix() of one Q vector per state (the element-wise path) is w2 . elu(q W1 + b1) + b2."""
    torch.manual_seed(0)
    mixer = QMixer(n_agents=N, state_dim=4, embed_dim=E)
    states, qs = torch.randn(2, 3, 4), torch.randn(2, 3, N)
    p = mixer.hyper(states)
    want = torch.stack([
        torch.stack([(p.w2[b, t] * F.elu(qs[b, t] @ p.w1[b, t] + p.b1[b, t])).sum() + p.b2[b, t] for t in range(3)])
        for b in range(2)
    ])
    torch.testing.assert_close(mixer.mix(qs, p), want, rtol=1e-6, atol=1e-6)


# ---- the fused GRU ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_h0", [False, True])
def test_fused_gru_agent_matches_torch_gru(small_chunks, dtype, with_h0):
    torch.manual_seed(0)
    net = RNNAgent(input_dim=7, output_dim=4, hidden_dim=6).to(dtype)
    x = torch.randn(3, 5, 2, 9, dtype=dtype)[..., :7].requires_grad_()  # a non-contiguous input
    h0 = torch.randn(3, 2, 6, dtype=dtype, requires_grad=True) if with_h0 else None
    leaves = [x, *net.parameters()] + ([h0] if with_h0 else [])
    weights_out = torch.randn(3, 5, 2, 4, dtype=dtype)
    weights_h = torch.randn(3, 2, 6, dtype=dtype)

    def run(fn):
        out, h = fn(x, h0)
        loss = (out * weights_out).sum() + (h * weights_h).sum()
        return out, h, torch.autograd.grad(loss, leaves)

    ref = run(net.forward_seq_reference)
    got = run(net.forward_seq)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(got[0], ref[0], **tol)
    torch.testing.assert_close(got[1], ref[1], **tol)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, **tol)
    with torch.no_grad():  # the inference path (no saved tensors)
        out, h = net.forward_seq(x, h0)
    torch.testing.assert_close(out, ref[0], **tol)
    torch.testing.assert_close(h, ref[1], **tol)


def test_fused_gru_gradcheck(small_chunks):
    torch.manual_seed(0)
    net = RNNAgent(input_dim=3, output_dim=2, hidden_dim=4).double()
    x = torch.randn(2, 4, 2, 3, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(4, 4, dtype=torch.double, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in net._params()]
    fn = lambda *args: agents._FusedGRUAgent.apply(*args)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, h0, *params))


# ---- whole updates: fast paths on vs off -----------------------------------------------------

B, T, O, S = 4, 5, 6, 7
SPEC = EnvSpec(env_id="test/speed", n_agents=N, obs_dim=O, state_dim=S, n_actions=A, episode_limit=T)


def padded_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Episodes of lengths 5, 2, 4, 1 (padding cut at the longest), one terminated."""
    return random_episode_batch([5, 2, 4, 1], (2, 3), 2, t=T, n=N, a=A, o=O, s=S, seed=seed)


def one_update(model, data, fast: bool):
    """Loss, metrics and pre-clipping gradients of one training_step (bare loop) with the fast paths on/off."""
    for net in (model.agent, model.target_agent, getattr(model, "behaviour", None)):
        if net is not None:
            net.fused = fast
    model.mixer.fused_candidates = fast
    return one_training_step(model, data)


@pytest.mark.parametrize("algo,kwargs", [
    (CFCQL, {"lambda_mode": "softmax", "softmax_temp": 2.0}),
    (CFCQL, {"lambda_mode": "onehot"}),
    (CFCQL, {"softmax_temp": 0.0}),
    (QMIX, {}),
])
def test_update_with_fast_paths_equals_plain_update(small_chunks, algo, kwargs):
    import copy

    torch.manual_seed(0)
    common = {"eval_every_steps": 0, "final_eval_episodes": 0, "agent_hidden_dim": 8, "mixer_embed_dim": 6,
              "hypernet_embed_dim": 10}
    if algo is CFCQL:
        common.update(behaviour_pretrain_steps=0, cql_alpha=3.0)
    model = algo(spec=SPEC.to_dict(), **kwargs, **common)
    if getattr(model, "behaviour", None) is not None:  # a behaviour model that is not uniform
        with torch.no_grad():
            for p in model.behaviour.parameters():
                p.normal_(0.0, 0.5)
    twin = copy.deepcopy(model)
    data = padded_batch()
    fast, plain = one_update(model, data, True), one_update(twin, data, False)
    assert set(fast) == set(plain)
    for key in plain:
        if key == "grads":
            assert set(fast[key]) == set(plain[key])
            for name, grad in plain[key].items():
                torch.testing.assert_close(fast[key][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        else:
            assert math.isfinite(float(fast[key]))
            torch.testing.assert_close(fast[key], plain[key], rtol=1e-5, atol=1e-6, msg=key)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):  # the same Adam step
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


# ---- CFCQL's behaviour-probability cache (batches with an "episode" key) ----------------------


def test_behaviour_cache_gives_the_same_update_and_follows_the_model():
    import copy

    torch.manual_seed(0)
    model = CFCQL(spec=SPEC.to_dict(), behaviour_pretrain_steps=0, eval_every_steps=0, final_eval_episodes=0,
                  agent_hidden_dim=8, softmax_temp=2.0)
    with torch.no_grad():
        for p in model.behaviour.parameters():
            p.normal_(0.0, 0.5)
    twin = copy.deepcopy(model)
    calls = []
    forward = model.behaviour.forward_seq
    model.behaviour.forward_seq = lambda x, *a: calls.append(x.shape[0]) or forward(x, *a)

    data = padded_batch(1)
    for value in data.values():  # row 2 is episode 7 again (sampling with replacement)
        value[2] = value[0]
    keyed = {**data, "episode": torch.tensor([7, 3, 7, 11])}
    avail = data["avail_actions"][:, :-1] | ~data["avail_actions"][:, :-1].any(-1, keepdim=True)
    plain = twin._behaviour_probs(data, avail)
    first = model._behaviour_probs(keyed, avail)
    second = model._behaviour_probs(keyed, avail)
    assert calls == [4]  # computed once, then read from the cache
    mask = data["mask"].bool()
    torch.testing.assert_close(first[mask], plain[mask])
    torch.testing.assert_close(second[mask], plain[mask])
    # a shorter batch of the same episodes (cut at its longest episode) is served from the cache too
    short = {k: (v[1:, :3] if v.dim() > 1 and k not in ("obs", "state", "avail_actions") else v[1:, :4] if v.dim() > 1 else v[1:])
             for k, v in keyed.items()}
    assert torch.equal(model._behaviour_probs(short, avail[1:, :3])[short["mask"].bool()], plain[1:, :3][short["mask"].bool()])
    assert calls == [4]
    # the same whole update with and without the key (a new fit starts with an empty cache)
    fast, ref = one_update(model, keyed, True), one_update(twin, data, True)
    torch.testing.assert_close(fast["loss"], ref["loss"])
    for name, grad in ref["grads"].items():
        torch.testing.assert_close(fast["grads"][name], grad, msg=name)
    assert calls == [4, 4]
    model._behaviour_probs(keyed, avail)
    assert calls == [4, 4]
    # any change of the behaviour model empties the cache
    with torch.no_grad():
        next(model.behaviour.parameters()).add_(0.1)
    model._behaviour_probs(keyed, avail)
    assert calls == [4, 4, 4]


def test_fused_gru_restores_the_thread_count(monkeypatch):
    monkeypatch.setattr(agents, "GRU_THREADS", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = RNNAgent(input_dim=3, output_dim=2, hidden_dim=4)
        seen = []
        step = agents._gru_agent_forward
        monkeypatch.setattr(agents, "_gru_agent_forward", lambda *a, **k: seen.append(torch.get_num_threads()) or step(*a, **k))
        out, _ = net.forward_seq(torch.randn(2, 3, 2, 3))
        assert torch.get_num_threads() == 2
        out.sum().backward()
        assert torch.get_num_threads() == 2 and seen == [1]
        with pytest.raises(RuntimeError):
            net.forward_seq(torch.randn(2, 3, 2, 5))  # wrong input size: the count is restored all the same
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

