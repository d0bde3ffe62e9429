"""The fast paths compute what the naive (pymarl-style) reference computes.

benchmarks/naive_cfcql.py unrolls agents step by step and calls the full
mixer once per counterfactual candidate / sampled joint action; our modules
vectorise all of it (fused candidate kernels, chunked sampling, cached agent
inputs). Same batch, same weights -> same loss and same gradients.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import lit_omarl.algos.losses as losses
import lit_omarl.nets.mixers as mixers
from lit_omarl.algos import BC, CFCQL, MACQL
from lit_omarl.spec import EnvSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import BareLoop  # noqa: E402
from naive_cfcql import naive_learner  # noqa: E402
from _batches import one_training_step, random_episode_batch  # noqa: E402

B, T, N, O, S, A = 5, 4, 3, 6, 7, 4
SPEC = EnvSpec(env_id="test/naive", n_agents=N, obs_dim=O, state_dim=S, n_actions=A, episode_limit=T)
COMMON = {"eval_every_steps": 0, "final_eval_episodes": 0, "agent_hidden_dim": 16}


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Episodes of lengths 4, 2, 4, 1, 3 (one terminated, the others cut by the time limit)."""
    return random_episode_batch([4, 2, 4, 1, 3], (1, 1), 1, t=T, n=N, a=A, o=O, s=S, seed=seed)


class OneBatch:
    def __init__(self, data):
        self.data = data

    def sample(self):
        return self.data


def our_loss_and_grads(model, data):
    """Run the module's own training_step once (bare loop); its logged loss and pre-clipping grads."""
    seen = one_training_step(model, data)
    return seen["loss"], seen["grads"]


def naive_loss_and_grads(learner, data, prefix_nets):
    loss, _ = learner.loss(data)
    loss.backward()
    grads = {}
    for prefix, net in prefix_nets:
        grads.update({f"{prefix}.{k}": p.grad for k, p in net.named_parameters() if p.grad is not None})
    return loss.detach(), grads


def assert_same(ours, naive):
    our_loss, our_grads = ours
    ref_loss, ref_grads = naive
    assert our_loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-5)
    assert set(ref_grads) <= set(our_grads)
    for key, grad in ref_grads.items():
        torch.testing.assert_close(our_grads[key], grad, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("lambda_mode", ["softmax", "uniform"])
def test_cfcql_matches_the_naive_reference(lambda_mode):
    torch.manual_seed(0)
    model = CFCQL(spec=SPEC.to_dict(), lambda_mode=lambda_mode, behaviour_pretrain_steps=0, cql_alpha=2.0, **COMMON)
    data = batch()
    naive = naive_learner(model)  # copies of the initial networks
    nets = [("agent", naive.agent), ("mixer", naive.mixer)]
    assert_same(our_loss_and_grads(model, data), naive_loss_and_grads(naive, data, nets))


@pytest.mark.parametrize("agent", ["rnn", "mlp"])
def test_macql_matches_the_naive_reference(agent):
    torch.manual_seed(0)
    model = MACQL(spec=SPEC.to_dict(), agent=agent, n_samples=6, cql_alpha=2.0, seed=3, **COMMON)
    data = batch(1)
    naive = naive_learner(model, generator=torch.Generator().manual_seed(3))  # the module's sample stream
    nets = [("agent", naive.agent), ("mixer", naive.mixer)]
    assert_same(our_loss_and_grads(model, data), naive_loss_and_grads(naive, data, nets))


def test_bc_matches_the_naive_reference():
    torch.manual_seed(0)
    model = BC(spec=SPEC.to_dict(), **COMMON)
    data = batch(2)
    naive = naive_learner(model)
    assert_same(our_loss_and_grads(model, data), naive_loss_and_grads(naive, data, [("policy", naive.policy)]))


def test_naive_update_steps_like_the_module():
    """One update of each: same parameters afterwards (Adam, clipping and target copies included)."""
    torch.manual_seed(0)
    model = CFCQL(spec=SPEC.to_dict(), behaviour_pretrain_steps=0, target_update_interval=1, **COMMON)
    naive = naive_learner(model)
    data = batch(3)
    naive.update(data)
    BareLoop(model, OneBatch(data)).step()
    for ours, ref in ((model.agent, naive.agent), (model.mixer, naive.mixer), (model.target_agent, naive.target_agent)):
        for (key, p), q in zip(ours.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=key)


# ---- the fused kernels against the plain expressions --------------------------------------


@pytest.fixture
def small_chunks(monkeypatch):
    """Force several chunks on tiny inputs so the chunk loops are exercised."""
    monkeypatch.setattr(mixers, "FUSED_CHUNK_ELEMENTS", 64)
    monkeypatch.setattr(losses, "SAMPLE_CHUNK_ELEMENTS", 40)


def test_fused_kernels_have_exact_gradients(small_chunks):
    g = torch.Generator().manual_seed(0)
    r, k, n, a, e = 6, 5, 3, 4, 8

    def rand(*shape, positive=False):
        x = torch.randn(*shape, generator=g, dtype=torch.double)
        return (x.abs() if positive else x).requires_grad_()

    w1, b1, w2, b2 = rand(r, n, e, positive=True), rand(r, e), rand(r, e, positive=True), rand(r)
    assert torch.autograd.gradcheck(mixers._QMixCandidates.apply, (rand(r, k, n), w1, b1, w2, b2))
    assert torch.autograd.gradcheck(mixers._QMixCounterfactual.apply, (rand(r, n, a), rand(r, n), w1, b1, w2, b2))


def test_fused_and_plain_mixing_agree(small_chunks):
    torch.manual_seed(0)
    mixer = mixers.QMixer(N, S, embed_dim=8, hypernet_embed=16)
    data = batch()
    q_all = torch.randn(B, T, N, A, requires_grad=True)
    avail = losses.ensure_some_available(data["avail_actions"][:, :-1])
    gen = torch.Generator()

    def run(fused: bool):
        mixer.fused_candidates = fused
        params = mixer.hyper(data["state"][:, :-1])
        neg, cand = losses.cql_counterfactual_term(q_all, data["actions"], avail, params, mixer.mix)
        q_taken = mixer.mix(q_all.gather(-1, data["actions"].unsqueeze(-1)).squeeze(-1), params)
        gap = losses.macql_term(q_all, avail, q_taken, params, mixer.mix, 7, gen.manual_seed(5))
        total = (neg.square().sum() + gap.square().sum()) / 100
        return [neg, cand, gap], torch.autograd.grad(total, [q_all, *mixer.parameters()])

    (fused_out, fused_grads), (plain_out, plain_grads) = run(True), run(False)
    for x, y in zip(fused_out + list(fused_grads), plain_out + list(plain_grads)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_chunked_sampling_draws_what_one_rand_call_draws(small_chunks):
    avail = torch.rand(3, 4, N, A, generator=torch.Generator().manual_seed(0)) > 0.5
    avail[..., 2] = True
    got = losses.sample_available_actions(avail, 5, torch.Generator().manual_seed(9))
    u = torch.rand(3, 4, 5, N, A, generator=torch.Generator().manual_seed(9))
    assert torch.equal(got, u.masked_fill(~avail.unsqueeze(-3), -1.0).argmax(-1))


def test_sequence_inputs_are_cached_per_batch_and_follow_in_place_changes():
    model = BC(spec=SPEC.to_dict(), **COMMON)
    data = batch()
    full = model.sequence_inputs(data, include_last_obs=True)
    assert model.sequence_inputs(data, include_last_obs=True) is full
    short = model.sequence_inputs(data, include_last_obs=False)
    assert torch.equal(short, model.agent_inputs.sequence(data["obs"][:, :-1], data["actions"]))
    data["obs"].mul_(2.0)  # modified in place: recomputed
    again = model.sequence_inputs(data, include_last_obs=True)
    assert again is not full and torch.equal(again, model.agent_inputs.sequence(data["obs"], data["actions"]))
    other = batch(1)
    assert torch.equal(model.sequence_inputs(other, True), model.agent_inputs.sequence(other["obs"], other["actions"]))
    model.on_train_batch_end(None, other, 0)
    assert not model._inputs_cache


# ---- the benchmark harness: result lines --------------------------------------------------


def test_emit_appends_a_stamped_line_and_report_tabulates_it(tmp_path, monkeypatch, capsys):
    import json

    import common
    import report

    monkeypatch.setenv("LIT_OMARL_BENCH_RESULTS", str(tmp_path))
    fig = {"cpu_s_per_update_bare": 2.0, "updates_per_s_trainer": 0.5, "updates_per_s_bare": 0.5,
           "trainer_over_bare_throughput": 1.0, "trainer_over_bare_throughput_cpu": 1.0,
           "s_per_update_bare": {"median_s": 2.0}, "breakdown_cpu_ms": {"sampling": 10.0, "backward": 990.0},
           "peak_rss_mb": 100.0}
    common.emit({"benchmark": "updates", "results": {"s": {"cfcql": fig}}}, save_as="updates")
    common.emit({"benchmark": "updates", "results": {"s": {"x": {**fig, "cpu_s_per_update_bare": 5.0}}}}, save_as="updates")
    common.emit({"child": True})  # a child's line: printed only
    lines = (tmp_path / "updates.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["timestamp"].endswith("Z") and first["machine"]["torch"] == torch.__version__
    assert len(first["machine"]["load_avg_1_5_15"]) == 3 and first["machine"]["threads"] >= 1
    assert capsys.readouterr().out.count("\n") == 3
    # the newest line of each algorithm is kept; "x CFCQL (CPU)" = 5.0 / 2.0
    rows = report.latest_updates([json.loads(x) for x in lines])["s"]
    table = report.updates_table("s", rows)
    assert "| x | 0.500 | 0.500 | 1.00 | 1.00 | 2.00 | 5.00 | 2.50 | 10 / - / - / 990 / - / - | 100 |" in table


@pytest.mark.parametrize("k", [1, 3])
def test_paired_steps_time_each_trainer_step_beside_an_identical_bare_copy(tmp_path, monkeypatch, k):
    """benchmarks/common.paired_steps: n timed pairs of k updates each; both the Trainer's module and the
    bare copy train; the data module's own setting is restored."""
    import common

    monkeypatch.setattr(common, "BENCH_DIR", tmp_path)
    spec = common.spec_of("bridge")
    path = common.dataset_file("bridge", 8, directory=tmp_path)
    dm = common.make_datamodule("bridge", 4, path=str(path))
    model = common.make_model("bc", spec, agent_hidden_dim=8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = common.paired_steps(model, dm, 3, warmup=1, updates_per_step=k)
    assert {key: len(v) for key, v in out.items()} == {"trainer_wall": 3, "trainer_cpu": 3, "bare_wall": 3, "bare_cpu": 3}
    assert all(x > 0 for v in out.values() for x in v)
    assert model.trainer.global_step == 4 * k and dm.updates_per_step == 1
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
