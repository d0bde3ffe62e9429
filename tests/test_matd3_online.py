"""Online MATD3 (lit_omarl.behaviour.matd3_online): hand-computed targets, buffer, a tiny MPE run, behaviours, prey."""

import json

import numpy as np
import pytest
import torch

from lit_omarl.behaviour.matd3_online import (EpisodeReplay, MATD3Learner, MATD3OnlineConfig, MATD3Policy,
                                              replace_own_action, smoothed_target_actions, td3_targets, train_matd3)
from lit_omarl.data.generate import BehaviourError, generate_dataset
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec(env_id="toy", n_agents=2, obs_dim=3, state_dim=4, n_actions=2, action_type="continuous",
               episode_limit=5, action_low=-1.0, action_high=1.0)


def tiny_config(**kw):
    base = dict(env_id="mpe/simple_spread", env_steps=300, num_envs=4, batch_size=32, start_steps=100,
                updates_per_step=0.25, eval_every=100, eval_episodes=4, checkpoint_every=100, buffer_size=2000)
    base.update(kw)
    return MATD3OnlineConfig(**base)


# ------------------------------------------------------------------ hand-computed pieces
def test_target_policy_smoothing_by_hand():
    mu = torch.tensor([[0.9, -0.2], [0.0, 0.3]])
    eps = torch.tensor([[1.0, -5.0], [0.5, 4.0]])
    # sigma 0.2, clip 0.5, bounds [-1, 1] (half-range 1):
    #  0.9 + 0.2 = 1.1 -> 1.0;  -0.2 + clip(-1.0) = -0.2 - 0.5 = -0.7;  0 + 0.1 = 0.1;  0.3 + clip(0.8) = 0.8
    out = smoothed_target_actions(mu, eps, 0.2, 0.5, -1.0, 1.0)
    assert torch.allclose(out, torch.tensor([[1.0, -0.7], [0.1, 0.8]]))
    # bounds [0, 1] (half-range 0.5): 0.9 + 0.2 * 0.5 = 1.0;  -0.2 - 0.5 * 0.5 -> clamp 0;  pad mask zeroes entry (1, 1)
    out = smoothed_target_actions(mu, eps, 0.2, 0.5, 0.0, 1.0, torch.tensor([[True, True], [True, False]]))
    assert torch.allclose(out, torch.tensor([[1.0, 0.0], [0.05, 0.0]]))


def test_td3_targets_by_hand():
    q_next = torch.tensor([[2.0, 5.0, -1.0], [3.0, 4.0, 0.0]])  # [K=2, B=3]
    y = td3_targets(torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 1.0, 0.0]), q_next, gamma=0.95)
    # 1 + 0.95 * min(2, 3) = 2.9;  terminated: 0.5;  -1 + 0.95 * min(-1, 0) = -1.95
    assert torch.allclose(y, torch.tensor([2.9, 0.5, -1.95]))


def test_learner_targets_use_the_target_networks_by_hand():
    torch.manual_seed(0)
    cfg = MATD3OnlineConfig(gamma=0.9, target_noise=0.2, target_noise_clip=0.5)
    learner = MATD3Learner(SPEC, cfg)
    with torch.no_grad():  # target actor: tanh(0) = 0 everywhere; target critics: Q_1 = 1 + sum(a), Q_2 = 2 + sum(a)
        for p in learner.target_policy.parameters():
            p.zero_()
        for p in learner.target_critic.parameters():
            p.zero_()
        learner.target_critic.body.layers[-1].bias.copy_(torch.tensor([[1.0], [2.0]]))
        learner.target_critic.action_in.weight.fill_(1.0)  # h = relu(sum(a)) in every hidden unit of layer 1
        learner.target_critic.body.layers[0].weight.zero_()
        learner.target_critic.body.layers[0].weight[:, 0, 0] = 1.0  # hidden unit 0 of layer 2 = h
        learner.target_critic.body.layers[1].weight.zero_()
        learner.target_critic.body.layers[1].weight[:, 0, 0] = 1.0  # Q_k = bias_k + relu(relu(sum a))
    batch = {"next_obs": torch.zeros(2, 2, 3), "next_state": torch.zeros(2, 4), "reward": torch.tensor([1.0, 0.0]),
             "terminated": torch.tensor([0.0, 0.0])}
    eps = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[-1.0, -1.0], [-1.0, -1.0]]])  # noise +0.2 / -0.2 on 4 entries
    y = learner.targets(batch, eps)
    # episode 0: a' = 0.2 x 4 -> sum 0.8 -> min(1.8, 2.8) = 1.8 -> y = 1 + 0.9 * 1.8 = 2.62
    # episode 1: a' = -0.2 x 4 -> relu -> 0 -> min(1, 2) = 1 -> y = 0 + 0.9 * 1 = 0.9
    assert torch.allclose(y, torch.tensor([2.62, 0.9]))


def test_replace_own_action():
    a = torch.tensor([[[1.0], [2.0], [3.0]]])  # [B=1, N=3, A=1]
    pi = torch.tensor([[[-1.0], [-2.0], [-3.0]]])
    out = replace_own_action(a, pi)[:, 0, :, 0]  # [N, N]
    assert torch.equal(out, torch.tensor([[-1.0, 2.0, 3.0], [1.0, -2.0, 3.0], [1.0, 2.0, -3.0]]))


def test_actor_update_only_moves_towards_higher_q():
    torch.manual_seed(1)
    learner = MATD3Learner(SPEC, MATD3OnlineConfig(policy_delay=1, actor_lr=1e-2, critic_lr=1e-9, actor_reg=0.0))
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(64, 2, 3, generator=g), "next_obs": torch.randn(64, 2, 3, generator=g),
             "state": torch.randn(64, 4, generator=g), "next_state": torch.randn(64, 4, generator=g),
             "actions": torch.rand(64, 2, 2, generator=g) * 2 - 1, "reward": torch.randn(64, generator=g),
             "terminated": torch.zeros(64)}

    def q_pi():
        with torch.no_grad():
            pi, _ = learner.policy(batch["obs"])
            joint = replace_own_action(batch["actions"], pi)
            return learner.critic(batch["state"].expand(2, 64, 4), joint, members=1).sum().item()

    before = q_pi()
    for _ in range(20):
        metrics = learner.update(batch, g)
    assert "actor_loss" in metrics and q_pi() > before


# ------------------------------------------------------------------ buffer
def test_episode_replay_samples_only_stored_steps_and_dumps_completed_episodes():
    from lit_omarl.envs.base import TimeStep

    buf = EpisodeReplay(10, SPEC)  # 2 slots of 5 steps
    assert buf.slots == 2
    buf.start(torch.zeros(2, 2, 3), torch.zeros(2, 4))
    for t in range(5):
        ts = TimeStep(obs=torch.full((2, 2, 3), t + 1.0), state=torch.full((2, 4), t + 1.0), avail=torch.ones(2, 2, 2, dtype=torch.bool),
                      reward=torch.tensor([t + 1.0, 10 * (t + 1.0)]), terminated=torch.tensor([t == 2, False]),
                      truncated=torch.tensor([False, t == 4]))
        active = torch.tensor([t <= 2, True])
        buf.record(t, torch.full((2, 2, 2), 0.5), ts, active, ts.terminated | ts.truncated)
    assert len(buf) == 3 + 5 and buf.completed_episodes() == 2
    s = buf.sample(200, torch.Generator().manual_seed(0))
    assert torch.equal(s["next_obs"][:, 0, 0], s["obs"][:, 0, 0] + 1)  # consecutive steps
    assert ((s["reward"] == 3.0) == (s["terminated"] == 1.0)).all()  # terminated only at episode 0's last step
    arrays = buf.to_arrays()
    assert arrays["filled"].sum(1).tolist() == [3, 5] and arrays["reward"][0].tolist() == [1, 2, 3, 0, 0]
    buf.start(torch.zeros(1, 2, 3), torch.zeros(1, 4))  # the ring overwrites the oldest slot
    assert buf.completed_episodes() == 1 and len(buf) == 5


# ------------------------------------------------------------------ a tiny run on MPE
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("matd3")
    cfg = tiny_config(milestones=(-1e9,), replay_milestones=(-1e9,))
    summary = train_matd3(cfg, root / "a")
    return root, cfg, summary


def test_tiny_run_writes_checkpoints_curve_and_replay(tiny_run):
    root, cfg, summary = tiny_run
    run = root / "a"
    assert summary["env_steps"] == 300 and summary["updates"] > 0
    assert sorted(p.name for p in run.glob("step_*.pt")) == ["step_100.pt", "step_200.pt", "step_300.pt"]
    assert (run / "final.pt").exists() and (run / "tb").is_dir() and (run / "return_-1e+09.pt").exists()
    curve = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines()]
    assert [p["env_steps"] for p in curve] == [0, 100, 200, 300]
    meta = json.loads((run / "step_200.json").read_text())
    assert meta["kind"] == "periodic" and meta["return"] == curve[2]["return"]
    ckpt = torch.load(run / "final.pt", weights_only=True)
    assert ckpt["format"] == "lit_omarl.matd3_online/1" and "critic" in ckpt
    from lit_omarl.data.schema import read_dataset

    dump = read_dataset(run / "replay_return_-1e+09.h5")  # first test with a completed episode: 100 steps = 4 episodes
    assert dump.n_episodes == 4 and dump.attrs["quality"] == "medium_replay" and int(dump.attrs["env_steps"]) == 100


def test_tiny_run_is_deterministic_given_its_seed(tiny_run, tmp_path):
    root, cfg, summary = tiny_run
    again = train_matd3(tiny_config(milestones=(-1e9,), replay_milestones=(-1e9,)), tmp_path / "b")
    train_matd3(tiny_config(seed=1), tmp_path / "c")
    assert [p["return"] for p in again["curve"]] == [p["return"] for p in summary["curve"]]
    a = torch.load(root / "a" / "final.pt", weights_only=True)["actor"]
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)["actor"]
    c = torch.load(tmp_path / "c" / "final.pt", weights_only=True)["actor"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_stop_at_return_stops_after_the_dump(tmp_path):
    summary = train_matd3(tiny_config(env_steps=10_000, replay_milestones=(-1e9,), stop_at_return=-1e9), tmp_path / "s")
    assert summary["stopped_at_return"] and summary["env_steps"] == 100  # step 0 has no completed episode yet
    assert (tmp_path / "s" / "replay_return_-1e+09.h5").exists()


def test_init_from_continues_weights_counters_and_refills_the_buffer(tiny_run, tmp_path):
    """--init-from: the loaded actors act at once (no uniform start), the first test is the checkpoint's, updates
    wait for start_steps fresh transitions, the counters and minutes go on, other settings are refused."""
    root, cfg, _ = tiny_run
    ckpt = root / "a" / "step_200.pt"
    saved = torch.load(ckpt, weights_only=True)
    summary = train_matd3(tiny_config(env_steps=400, init_from=str(ckpt)), tmp_path / "c")
    curve = summary["curve"]
    assert [p["env_steps"] for p in curve] == [200, 300, 400]
    assert curve[0]["return"] == next(p["return"] for p in tiny_run[2]["curve"] if p["env_steps"] == 200)
    assert curve[0]["updates"] == saved["updates"] and curve[0]["minutes"] >= saved["minutes"]
    # no update before start_steps (100) fresh transitions; the vector step completing them brings the first
    # update (4 envs x 0.25), then 0.25 updates per step over the next 100 steps
    assert curve[1]["updates"] == saved["updates"] + 1 and curve[2]["updates"] == saved["updates"] + 1 + 25
    assert sorted(p.name for p in (tmp_path / "c").glob("step_*.pt")) == ["step_300.pt", "step_400.pt"]
    assert summary["init_from"] == str(ckpt) and summary["env_steps"] == 400
    with pytest.raises(ValueError, match="network sizes differ"):
        train_matd3(tiny_config(init_from=str(ckpt), actor_hidden_dim=32), tmp_path / "d")
    with pytest.raises(ValueError, match="another spec"):
        train_matd3(tiny_config(env_id="mpe/simple_tag", init_from=str(ckpt)), tmp_path / "e")
    from lit_omarl.behaviour.matd3_online import export_actor

    small = export_actor(ckpt, tmp_path / "actor.pt")
    with pytest.raises(ValueError, match="without its critic"):
        train_matd3(tiny_config(init_from=str(small)), tmp_path / "f")


def test_checkpoint_loads_as_policy_and_behaviour(tiny_run):
    from lit_omarl.behaviour.matd3_online import export_actor

    root, cfg, _ = tiny_run
    path = root / "a" / "final.pt"
    policy = MATD3Policy.load(path)
    a, _ = policy.act(torch.randn(5, 3, 18))
    assert a.shape == (5, 3, 2) and bool((a.abs() <= 1).all())
    small = export_actor(path, root / "expert.pt")
    assert "critic" not in torch.load(small, weights_only=True) and small.stat().st_size < path.stat().st_size
    assert json.loads((root / "expert.json").read_text())["exported_from"] == "final.pt"
    greedy, _ = generate_dataset("mpe/simple_spread", f"policy:{small}", 8, 0, batch_size=8)
    again, _ = generate_dataset("mpe/simple_spread", f"policy:{path}", 8, 0, batch_size=8)
    noisy, _ = generate_dataset("mpe/simple_spread", f"noise:0.3:policy:{small}", 8, 0, batch_size=8)
    assert np.array_equal(greedy["actions"], again["actions"])
    assert not np.array_equal(greedy["actions"], noisy["actions"]) and np.abs(noisy["actions"]).max() <= 1.0
    with torch.no_grad():  # the recorded greedy actions are the actor's actions on the recorded observations
        expect, _ = policy(torch.from_numpy(greedy["obs"][:, 3]))
    assert np.allclose(greedy["actions"][:, 3], expect.numpy(), atol=1e-6)
    with pytest.raises(BehaviourError, match="does not fit env 'mpe/simple_tag'"):
        generate_dataset("mpe/simple_tag", f"policy:{small}", 2, 0)
    with pytest.raises(BehaviourError, match="noise: needs a continuous"):
        generate_dataset("matrix/xor", "noise:0.1:uniform", 2, 0)
    with pytest.raises(BehaviourError, match="noise std must be"):
        generate_dataset("mpe/simple_spread", "noise:-1:uniform", 2, 0)


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="option critic_input"):
        tiny_config(critic_input="joint").check()
    with pytest.raises(ValueError, match="option batch_size must be >= 1"):
        tiny_config(batch_size=0).check()
    with pytest.raises(ValueError, match="discrete actions"):
        train_matd3(tiny_config(env_id="matrix/xor"), tmp_path / "x")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(ValueError, match=r"bad.pt: key 'format'"):
        MATD3Policy.load(bad)
    with pytest.raises(BehaviourError, match="cannot load matd3_online checkpoint"):
        generate_dataset("mpe/simple_spread", f"policy:{tmp_path / 'missing.pt'}", 2, 0)


# ------------------------------------------------------------------ the prey
def test_prey_view_export_and_pretrained_loading(tmp_path, monkeypatch):
    import lit_omarl.envs.mpe as mpe
    from lit_omarl.behaviour.mpe_prey import PreyView, export_prey
    from lit_omarl.envs import make

    view = PreyView("simple_tag", 3, 0)
    ts = view.reset()
    assert ts.obs.shape == (3, 1, 14) and view.spec.env_id == "mpe_prey/simple_tag"
    ts = view.step(torch.zeros(3, 1, 2))
    assert torch.allclose(ts.reward, view.inner.all_rewards[:, 3])
    cfg = tiny_config(env_id="mpe_prey/simple_tag", env_steps=100, eval_every=100, checkpoint_every=0)
    train_matd3(cfg, tmp_path / "prey", make_env=lambda b, s: PreyView("simple_tag", b, s))
    out = export_prey(tmp_path / "prey" / "final.pt", "simple_tag", tmp_path / "assets" / "simple_tag.pt", meta={"x": 1})
    actor = MATD3Policy.load(tmp_path / "prey" / "final.pt")
    obs = torch.randn(7, 1, 14)
    loaded = mpe.MLPPreyPolicy.load(out)
    assert torch.allclose(loaded.act(obs, None), actor.act(obs)[0], atol=1e-6) and loaded.meta == {"x": 1}
    monkeypatch.setattr(mpe, "PRETRAINED_PREY_DIR", tmp_path / "assets")
    env = make("mpe/simple_tag", num_envs=2, prey_policy="pretrained")
    env.reset()
    assert env.spec.env_options["prey_policy"] == "pretrained" and env.prey_policy.policy is not None
    env2 = make("mpe/simple_world_comm", num_envs=2, prey_policy="pretrained")
    with pytest.raises(ValueError, match="no prey shipped for simple_world_comm"):
        env2.reset()


def test_the_shipped_prey_of_both_tasks_load_and_act():
    from lit_omarl.envs import make

    for task in ("simple_tag", "simple_world_comm"):
        env = make(f"mpe/{task}", num_envs=3, seed=0, prey_policy="pretrained")
        env.reset()
        assert env.prey_policy.policy.task_name == task
        ts = env.step(torch.zeros(3, env.spec.n_agents, env.spec.n_actions))
        assert torch.isfinite(ts.reward).all()
