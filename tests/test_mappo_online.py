"""Online MAPPO (lit_omarl.behaviour.mappo_online): GAE and value normalisation by hand, the policy's
masks, a PPO iteration on a fixed batch, and a tiny SMAX run whose checkpoints load like QMIX's."""

import json
import math

import pytest
import torch

from lit_omarl.behaviour import load_policy
from lit_omarl.behaviour.mappo_online import (MAPPOLearner, MAPPOOnlineConfig, MAPPOPolicy, ValueNorm, gae,
                                              trim)
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec(env_id="toy", n_agents=2, obs_dim=3, state_dim=4, n_actions=3, episode_limit=4)



def test_gae_by_hand_with_termination_and_a_step_limit_cut():
    g, lam = 0.9, 0.5
    # episode 0: 2 steps, terminated; episode 1: 3 steps, cut by the step limit (bootstraps V(s_3))
    reward = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    terminated = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 1.0, 7.0, 7.0], [0.2, 0.4, 0.6, 0.8]])  # 7.0: after the end, must not count
    adv = gae(reward, terminated, mask, values, g, lam)
    d01 = 2.0 - 1.0  # terminal: no bootstrap
    d00 = 1.0 + g * 1.0 - 0.5
    d12 = 1.0 + g * 0.8 - 0.6  # cut: bootstraps V(s_3) = 0.8
    d11 = 1.0 + g * 0.6 - 0.4
    d10 = 0.0 + g * 0.4 - 0.2
    expected = torch.tensor([[d00 + g * lam * d01, d01, 0.0],
                             [d10 + g * lam * (d11 + g * lam * d12), d11 + g * lam * d12, d12]])
    assert torch.allclose(adv, expected, atol=1e-6)


def test_value_norm_statistics_by_hand():
    vn = ValueNorm(beta=0.5)
    assert torch.equal(vn.normalize(torch.tensor([3.0])), torch.tensor([3.0]))  # no statistics yet: identity
    vn.update(torch.tensor([1.0, 3.0]))  # mean 2, mean square 5
    vn.update(torch.tensor([4.0]))  # debiased: mean (0.25*2 + 0.5*4)/0.75 = 10/3, mean sq (0.25*5 + 0.5*16)/0.75
    mean, std = vn.stats()
    assert mean.item() == pytest.approx(10 / 3)
    assert std.item() == pytest.approx(math.sqrt((0.25 * 5 + 0.5 * 16) / 0.75 - (10 / 3) ** 2))
    x = torch.tensor([0.0, 5.0])
    assert torch.allclose(vn.denormalize(vn.normalize(x)), x, atol=1e-6)
    off = ValueNorm(enabled=False)
    off.update(torch.tensor([10.0]))
    assert torch.equal(off.normalize(x), x)


def test_policy_respects_avail_and_sequence_equals_steps():
    torch.manual_seed(0)
    policy = MAPPOPolicy(SPEC, hidden_dim=8)
    obs = torch.randn(64, 2, 3)
    avail = torch.tensor([[True, False, True], [False, True, False]]).expand(64, 2, 3)
    g = torch.Generator().manual_seed(1)
    actions, _ = policy.sample(obs, avail, None, False, g)
    assert avail.gather(-1, actions.unsqueeze(-1)).all()
    assert (actions[:, 1] == 1).all() and set(actions[:, 0].tolist()) == {0, 2}  # both available ones sampled
    greedy, _ = policy.act(obs, avail)
    logits, _ = policy.logits_step(obs, avail, None)
    assert torch.equal(greedy, logits.argmax(-1)) and avail.gather(-1, greedy.unsqueeze(-1)).all()

    # log_probs over whole episodes = the step-by-step policy fed its own last actions
    b, steps = 3, 4
    batch = {"obs": torch.randn(b, steps + 1, 2, 3), "avail_actions": torch.ones(b, steps + 1, 2, 3, dtype=torch.bool),
             "actions": torch.randint(0, 3, (b, steps, 2))}
    logp, entropy = policy.log_probs(batch)
    hidden = None
    for t in range(steps):
        step_logits, hidden = policy.logits_step(batch["obs"][:, t], batch["avail_actions"][:, t], hidden)
        hidden["last_action"] = torch.nn.functional.one_hot(batch["actions"][:, t], 3).float()
        step_logp = torch.log_softmax(step_logits, -1)
        want = step_logp.gather(-1, batch["actions"][:, t].unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(logp[:, t], want, atol=1e-5)
        assert torch.allclose(entropy[:, t], -(step_logp.exp() * step_logp).sum(-1), atol=1e-5)


def _bandit_batch(b=32):
    """One-step episodes: reward 1 when both agents take action 2, else 0; actions uniform."""
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 3, (b, 1, 2), generator=g)
    reward = (actions == 2).all(-1).float()
    return {"obs": torch.zeros(b, 2, 2, 3), "state": torch.zeros(b, 2, 4),
            "avail_actions": torch.ones(b, 2, 2, 3, dtype=torch.bool), "actions": actions, "reward": reward,
            "terminated": torch.ones(b, 1), "mask": torch.ones(b, 1),
            "mask_padded": torch.tensor([[1.0, 0.0]]).expand(b, 2)}


def test_ppo_iterations_move_probability_to_the_rewarded_joint_action():
    torch.manual_seed(0)
    learner = MAPPOLearner(SPEC, MAPPOOnlineConfig(epochs=4, minibatches=2, lr=1e-2, critic_lr=1e-2, entropy_coef=0.0))
    batch = _bandit_batch()
    g = torch.Generator().manual_seed(0)

    def prob_of_2():
        logp, _ = learner.policy.log_probs({**batch, "actions": torch.full_like(batch["actions"], 2)})
        return logp.exp().mean().item()

    before = prob_of_2()
    for _ in range(5):
        stats = learner.update(batch, g)
    assert prob_of_2() > before + 0.1
    assert set(stats) == {"policy_loss", "value_loss", "entropy", "clip_frac"}
    assert all(math.isfinite(v) for v in stats.values())


def test_trim_cuts_to_the_longest_episode():
    b, limit = 2, 6
    filled = torch.zeros(b, limit, dtype=torch.bool)
    filled[0, :2], filled[1, :4] = True, True
    raw = {"obs": torch.randn(b, limit + 1, 2, 3), "state": torch.randn(b, limit + 1, 4),
           "avail_actions": torch.ones(b, limit + 1, 2, 3, dtype=torch.bool),
           "actions": torch.zeros(b, limit, 2, dtype=torch.long), "reward": torch.ones(b, limit),
           "terminated": torch.zeros(b, limit, dtype=torch.bool), "filled": filled}
    out = trim(raw)
    assert out["actions"].shape == (2, 4, 2) and out["obs"].shape == (2, 5, 2, 3)
    assert out["mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert out["mask_padded"].tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]]


def test_tiny_smax_run_writes_checkpoints_that_load_and_act(tmp_path):
    from lit_omarl.behaviour.mappo_online import train_mappo
    from lit_omarl.data.schema import read_dataset
    from lit_omarl.eval.rollout import evaluate

    cfg = MAPPOOnlineConfig(env_id="smax/2s3z", env_steps=300, num_envs=4, epochs=1, eval_every=10**9,
                            eval_episodes=4, checkpoint_every=200, milestones=(0.0,), replay_milestones=(0.0,))
    summary = train_mappo(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert summary["env_steps"] >= 300 and summary["updates"] > 0 and summary["algorithm"] == "mappo"
    assert json.loads((run / "config.json").read_text())["algorithm"] == "mappo"
    assert sorted(run.glob("step_*.pt")) and (run / "winrate_0.00.pt").exists() and (run / "tb").is_dir()
    replay = read_dataset(run / "replay_winrate_0.00.h5")
    assert replay.attrs["quality"] == "medium_replay" and replay.n_episodes >= 4
    assert "mappo_online" in replay.attrs["behaviour"]

    policy = load_policy(run / "final.pt")
    assert isinstance(policy, MAPPOPolicy)
    metrics = evaluate(policy, "smax/2s3z", None, episodes=4, seed=0, deterministic=True, max_envs=4)
    assert 0.0 <= metrics["win_rate"] <= 1.0 and metrics["episode_length"] >= 1
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a policy checkpoint"):
        load_policy(tmp_path / "list.pt")
    with pytest.raises(FileExistsError, match="already holds a mappo_online run"):
        train_mappo(cfg, run)

    # a continuation starts from a checkpoint's weights and counters (ship.py reads the chain)
    from dataclasses import replace

    start = json.loads((run / "final.json").read_text())
    more = replace(cfg, env_steps=start["env_steps"] + 150, init_from=str(run / "final.pt"), milestones=(),
                   replay_milestones=())
    cont = train_mappo(more, tmp_path / "cont")
    first = json.loads((tmp_path / "cont" / "curve.jsonl").read_text().splitlines()[0])
    assert first["env_steps"] == start["env_steps"] and first["episodes"] == start["episodes"]
    assert first["return"] == start["return"]  # the same weights, the same seeded test episodes
    assert cont["env_steps"] >= start["env_steps"] + 150 and cont["updates"] > start["updates"]
    assert json.loads((tmp_path / "cont" / "config.json").read_text())["init_from"] == str(run / "final.pt")
    with pytest.raises(ValueError, match="network sizes differ"):
        train_mappo(replace(more, critic_hidden_dim=16), tmp_path / "bad")
    with pytest.raises(ValueError, match="not a mappo_online checkpoint"):
        train_mappo(replace(more, init_from=str(tmp_path / "list.pt")), tmp_path / "bad2")


def test_a_failed_replay_dump_is_reported_and_training_goes_on(tmp_path, monkeypatch, capsys):
    import lit_omarl.data.schema as schema
    from lit_omarl.behaviour._online_common import MilestoneRecorder

    class Buffer:
        added = 3

        def __len__(self):
            return 3

        def to_arrays(self):
            return {}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    saved = []
    cfg = MAPPOOnlineConfig(milestones=(0.5,), replay_milestones=(0.2, 0.4), stop_at_win_rate=0.4)
    recorder = MilestoneRecorder(tmp_path, cfg, SPEC, Buffer(), lambda path, meta: saved.append(path.name), "test")
    monkeypatch.setattr(schema, "write_dataset", disk_full)
    recorder.after_test({"win_rate": 0.5}, {}, 100)
    assert saved == ["winrate_0.50.pt"]  # the checkpoint is still written
    assert recorder.dumped == set() and set(recorder.dump_errors) == {0.2, 0.4}
    assert "No space left on device" in capsys.readouterr().err
    recorder.after_test({"win_rate": 0.5}, {}, 200)
    assert capsys.readouterr().err == ""  # not retried at every test
    assert recorder.should_stop(0.5)  # a failed dump does not keep a stop_at_win_rate run going forever


def test_anneal_lr_sets_the_linear_fraction_of_both_learning_rates():
    learner = MAPPOLearner(SPEC, MAPPOOnlineConfig(lr=4e-3, critic_lr=1e-3, anneal_lr=True))
    learner.set_lr_fraction(1.0 - 2500 / 10_000)
    assert learner.actor_optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)
    assert learner.critic_optimizer.param_groups[0]["lr"] == pytest.approx(7.5e-4)
    learner.set_lr_fraction(1.0 - 12_000 / 10_000)  # past env_steps (a run stopped late): 0, never negative
    assert learner.actor_optimizer.param_groups[0]["lr"] == 0.0


def test_anneal_lr_reaches_the_optimizer_during_a_run(tmp_path, monkeypatch):
    from lit_omarl.behaviour import mappo_online

    seen: list[float] = []
    real_update = mappo_online.MAPPOLearner.update

    def spy(self, batch, generator):
        seen.append(self.actor_optimizer.param_groups[0]["lr"])
        return real_update(self, batch, generator)

    monkeypatch.setattr(mappo_online.MAPPOLearner, "update", spy)
    cfg = MAPPOOnlineConfig(env_id="smax/2s3z", env_steps=400, num_envs=4, epochs=1, eval_every=10**9, eval_episodes=4,
                            checkpoint_every=10**9, milestones=(), replay_milestones=(), lr=1e-3, anneal_lr=True)
    mappo_online.train_mappo(cfg, tmp_path / "run")
    assert seen[0] < 1e-3 and all(b < a for a, b in zip(seen, seen[1:]))  # decays after every collected batch
    assert json.loads((tmp_path / "run" / "config.json").read_text())["anneal_lr"] is True


def test_a_stop_file_ends_the_run_like_its_budget(tmp_path, monkeypatch):
    from lit_omarl.behaviour import mappo_online
    from lit_omarl.behaviour._online_common import STOP_FILE

    run = tmp_path / "run"
    real_update, calls = mappo_online.MAPPOLearner.update, []

    def update_then_ask_to_stop(self, batch, generator):
        calls.append(1)
        if len(calls) == 2:
            (run / STOP_FILE).touch()
        return real_update(self, batch, generator)

    monkeypatch.setattr(mappo_online.MAPPOLearner, "update", update_then_ask_to_stop)
    cfg = MAPPOOnlineConfig(env_id="smax/2s3z", env_steps=10**9, num_envs=4, epochs=1, eval_every=10**9, eval_episodes=4,
                            checkpoint_every=10**9, milestones=(), replay_milestones=())
    summary = mappo_online.train_mappo(cfg, run)
    assert len(calls) == 2 and summary["updates"] == 2 and summary["stopped_by_request"] is True
    assert (run / "final.pt").exists() and json.loads((run / "summary.json").read_text())["stopped_by_request"]
    assert summary["curve"][-1]["env_steps"] == summary["env_steps"]  # the final test ran
