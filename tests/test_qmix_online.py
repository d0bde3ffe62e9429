"""Online QMIX (lit_omarl.behaviour.qmix_online): learner on a fixed batch, a tiny SMAX run, checkpoints."""

import importlib.util
import json
import math

import pytest
import torch

from lit_omarl.behaviour import PolicyBehaviour, load_policy, policy_behaviour
from lit_omarl.behaviour.qmix_online import EpisodeBuffer, QMIXLearner, QMIXOnlineConfig, QMIXPolicy
from lit_omarl.data.generate import BehaviourError
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec(env_id="toy", n_agents=3, obs_dim=6, state_dim=7, n_actions=4, episode_limit=5)



def _fixed_batch(b=6, steps=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = SPEC
    avail = torch.rand(b, steps + 1, s.n_agents, s.n_actions, generator=g) < 0.7
    avail[..., 0] = True
    lengths = torch.randint(2, steps + 1, (b,), generator=g)
    mask = (torch.arange(steps)[None] < lengths[:, None]).float()
    terminated = torch.zeros(b, steps)
    terminated[torch.arange(b), lengths - 1] = (torch.arange(b) % 2 == 0).float()  # some episodes truncated
    return {
        "obs": torch.randn(b, steps + 1, s.n_agents, s.obs_dim, generator=g),
        "state": torch.randn(b, steps + 1, s.state_dim, generator=g),
        "actions": torch.zeros(b, steps, s.n_agents, dtype=torch.long),  # action 0 is always available
        "avail_actions": avail,
        "reward": torch.rand(b, steps, generator=g) * mask,
        "terminated": terminated,
        "mask": mask,
    }


def test_td_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    learner = QMIXLearner(SPEC, QMIXOnlineConfig(lr=1e-3, td_lambda=0.6))
    batch = _fixed_batch()
    first = float(learner.td_loss(batch)[0].detach())
    for _ in range(150):
        metrics = learner.update(batch)  # targets stay fixed: no target update
    assert math.isfinite(first) and float(metrics["td_loss"]) < 0.2 * first


def test_one_step_targets_and_rmsprop_also_learn():
    torch.manual_seed(1)
    learner = QMIXLearner(SPEC, QMIXOnlineConfig(optimizer="rmsprop", td_lambda=0.0, double_q=False, lr=1e-3))
    batch = _fixed_batch(seed=1)
    first = float(learner.td_loss(batch)[0].detach())
    for _ in range(150):
        learner.update(batch)
    assert float(learner.td_loss(batch)[0].detach()) < 0.5 * first
    with pytest.raises(ValueError, match="optimizer"):
        QMIXLearner(SPEC, QMIXOnlineConfig(optimizer="sgd"))


def test_epsilon_greedy_respects_avail_and_schedule():
    policy = QMIXPolicy(SPEC)
    g = torch.Generator().manual_seed(0)
    avail = torch.zeros(50, 3, 4, dtype=torch.bool)
    avail[..., 2] = True
    avail[:25, :, 3] = True
    hidden = None
    for _ in range(3):
        actions, hidden = policy.act_epsilon(torch.randn(50, 3, 6), avail, hidden, 1.0, g)
        assert avail.gather(-1, actions[..., None]).all()
    greedy, _ = policy.act(torch.randn(50, 3, 6), avail)
    assert avail.gather(-1, greedy[..., None]).all()
    cfg = QMIXOnlineConfig()
    assert cfg.epsilon(0) == 1.0 and cfg.epsilon(25_000) == pytest.approx(0.525) and cfg.epsilon(10**6) == pytest.approx(0.05)


def test_episode_buffer_is_fifo_and_pads():
    buf = EpisodeBuffer(3, SPEC)
    for k in range(2):
        b = _fixed_batch(b=2, seed=k)
        buf.add({"obs": b["obs"], "state": b["state"], "avail_actions": b["avail_actions"], "actions": b["actions"],
                 "reward": b["reward"], "terminated": b["terminated"].bool(), "filled": b["mask"].bool(),
                 "won": torch.tensor([True, False])})
    assert len(buf) == 3 and buf.added == 4
    arrays = buf.to_arrays()
    assert arrays["obs"].shape == (3, 6, 3, 6) and arrays["filled"].shape == (3, 5)
    sample = buf.sample(4, torch.Generator().manual_seed(0))
    assert sample["obs"].shape[1] == sample["reward"].shape[1] + 1 == int(sample["mask"].sum(1).max()) + 1


# ------------------------------------------------------------------ a tiny run on SMAX
needs_smax = pytest.mark.skipif(importlib.util.find_spec("jaxmarl") is None or importlib.util.find_spec("jax") is None,
                                reason="jaxmarl (pip install lit-omarl[smax]) is not installed")


@needs_smax
def test_tiny_smax_run_writes_checkpoints_that_load_and_act(tmp_path):
    from lit_omarl.behaviour.qmix_online import train_qmix
    from lit_omarl.data.generate import generate_dataset, register_behaviour
    from lit_omarl.data.schema import read_dataset
    from lit_omarl.eval.rollout import evaluate

    cfg = QMIXOnlineConfig(env_id="smax/2s3z", env_steps=300, num_envs=4, batch_size=4, eval_every=10**9,
                           eval_episodes=4, checkpoint_every=200, milestones=(0.0,), replay_milestones=(0.0,))
    summary = train_qmix(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert summary["env_steps"] >= 300 and summary["updates"] > 0
    assert (run / "tb").is_dir() and (run / "curve.jsonl").exists()
    periodic = sorted(run.glob("step_*.pt"))
    assert periodic and json.loads(periodic[0].with_suffix(".json").read_text())["kind"] == "periodic"

    ckpt = torch.load(run / "winrate_0.00.pt", weights_only=True)  # plain tensors and numbers
    meta = json.loads((run / "winrate_0.00.json").read_text())
    assert meta["milestone"] == 0.0 and 0.0 <= meta["win_rate"] <= 1.0 and ckpt["win_rate"] == meta["win_rate"]
    assert ckpt["spec"]["obs_dim"] == 127

    # the replay buffer at the milestone is a valid medium_replay dataset
    replay = read_dataset(run / "replay_winrate_0.00.h5")
    assert replay.attrs["quality"] == "medium_replay" and replay.n_episodes >= 4

    policy = load_policy(run / "final.pt")
    metrics = evaluate(policy, "smax/2s3z", None, episodes=4, seed=0, deterministic=True, max_envs=4)
    assert 0.0 <= metrics["win_rate"] <= 1.0 and metrics["episode_length"] >= 1
    policy2 = load_policy(run / "final.pt")
    obs, avail = torch.randn(2, 5, 127), torch.ones(2, 5, 10, dtype=torch.bool)
    assert torch.equal(policy.act(obs, avail)[0], policy2.act(obs, avail)[0])

    # as a generation behaviour: greedy with one-hot probabilities, epsilon-mixed on top
    path = run / "final.pt"
    register_behaviour("test-qmix-online", lambda text, spec: PolicyBehaviour(text, spec, path))
    arrays, _ = generate_dataset("smax/2s3z", "epsilon:0.2:test-qmix-online", episodes=4, seed=0, batch_size=4)
    probs = arrays["behaviour_probs"][arrays["filled"].astype(bool)]
    assert probs.max() > 0.8 and abs(probs.sum(-1) - 1).max() < 1e-5
    with pytest.raises(BehaviourError, match="does not fit"):
        policy_behaviour(f"policy:{path}", SPEC)
    with pytest.raises(BehaviourError, match="cannot load"):
        policy_behaviour(f"policy:{tmp_path / 'missing.pt'}", SPEC)

    # a run folder is never reused; a continuation starts from a checkpoint's weights and counters
    from dataclasses import replace

    with pytest.raises(FileExistsError, match="already holds a qmix_online run"):
        train_qmix(cfg, run)
    start = json.loads((run / "final.json").read_text())
    more = replace(cfg, env_steps=start["env_steps"] + 150, init_from=str(run / "final.pt"),
                   milestones=(), replay_milestones=())
    cont = train_qmix(more, tmp_path / "cont")
    first = json.loads((tmp_path / "cont" / "curve.jsonl").read_text().splitlines()[0])
    assert first["env_steps"] == start["env_steps"] and first["episodes"] == start["episodes"]
    assert first["win_rate"] == start["win_rate"]  # the same weights, the same seeded test episodes
    assert cont["env_steps"] >= start["env_steps"] + 150 and cont["updates"] > start["updates"]
    assert cont["init_from"] == str(run / "final.pt")
    with pytest.raises(ValueError, match="network sizes differ"):
        train_qmix(replace(more, agent_hidden_dim=32), tmp_path / "bad")
