"""Per-agent datasets (data.agent_paths, MABCQ's decentralised setting): batch composition, sampler state,
the errors, and the per-agent reward in MABCQ / DDPG-C updates."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from lit_omarl.algos import BCQC, DDPGC, ICQLC, MABCQ, MABCQBehavior
from lit_omarl.algos.base import OfflineMARLModule
from lit_omarl.data.datamodule import BatchGroup, OfflineDataModule
from lit_omarl.data.schema import DatasetError, example_arrays, write_dataset
from lit_omarl.spec import EnvSpec

from _batches import FixedBatchData

SPEC = EnvSpec("test/agent_data", n_agents=3, obs_dim=2, state_dim=3, n_actions=2, action_type="continuous",
               episode_limit=4)
NO_EVAL = {"eval_every_steps": 0, "final_eval_episodes": 0}
REWARDS = (1.0, -2.0, 5.0)  # file i's constant team reward


def write_agent_files(tmp_path, spec=SPEC, rewards=REWARDS, episodes=(6, 7, 8)):
    """One file per agent with different contents (own seed, own episode count, reward c_i on valid steps)."""
    paths, arrays = [], []
    for i, (c, e) in enumerate(zip(rewards, episodes)):
        a = example_arrays(spec, n_episodes=e, seed=10 + i)
        a["reward"] = (np.float32(c) * a["filled"]).astype(np.float32)
        paths.append(str(write_dataset(tmp_path / f"agent{i}.h5", a, {"spec": spec})))
        arrays.append(a)
    return paths, arrays


def trainer(max_steps: int) -> L.Trainer:
    return L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu")


def windows(arrays: dict, i: int) -> dict:
    """(obs_t, obs_t+1) of agent i -> (action, terminated) over the file's valid steps."""
    out = {}
    for e in range(arrays["filled"].shape[0]):
        for t in range(int(arrays["filled"][e].sum())):
            key = (arrays["obs"][e, t, i].tobytes(), arrays["obs"][e, t + 1, i].tobytes())
            out[key] = (arrays["actions"][e, t, i], float(arrays["terminated"][e, t]))
    return out


# ---- composition ------------------------------------------------------------------------------------------
def test_batch_columns_come_from_each_agents_file(tmp_path):
    paths, arrays = write_agent_files(tmp_path)
    dm = OfflineDataModule(agent_paths=paths, batch_size=32, sampling="transition", seed=1)
    assert dm.spec == SPEC.to_dict()
    dm.setup()
    batch = dm.sample()
    b, n = 32, 3
    assert batch["obs"].shape == (b, 2, n, 2) and batch["state"].shape == (b, 2, 3)
    assert batch["actions"].shape == (b, 1, n, 2) and batch["actions"].dtype == torch.float32
    assert batch["avail_actions"].shape == (b, 2, n, 2) and batch["avail_actions"].all()
    assert batch["reward"].shape == batch["terminated"].shape == (b, 1, n)
    assert batch["mask"].shape == (b, 1) and torch.all(batch["mask"] == 1)
    assert "episode" not in batch
    for i, c in enumerate(REWARDS):
        assert torch.all(batch["reward"][..., i] == c)  # file i's team reward in column i
    for i in range(n):
        own = windows(arrays[i], i)
        others = [windows(arrays[j], i) for j in range(n) if j != i]
        for row in range(b):
            key = (batch["obs"][row, 0, i].numpy().tobytes(), batch["obs"][row, 1, i].numpy().tobytes())
            assert key in own, (i, row)  # agent i's window is a transition of file i ...
            assert not any(key in o for o in others)  # ... and of no other file
            action, term = own[key]
            assert np.array_equal(batch["actions"][row, 0, i].numpy(), action)
            assert batch["terminated"][row, 0, i].item() == term
    # state comes from file 0 (documented as meaningless for per-agent data)
    states0 = {arrays[0]["state"][e, t].tobytes() for e in range(6) for t in range(5)}
    assert all(batch["state"][row, 0].numpy().tobytes() in states0 for row in range(b))


def test_same_seed_same_batches_and_state_dict_round_trip(tmp_path):
    paths, _ = write_agent_files(tmp_path)
    a = OfflineDataModule(agent_paths=paths, batch_size=8, sampling="transition", seed=4)
    b = OfflineDataModule(agent_paths=paths, batch_size=8, sampling="transition", seed=4)
    for _ in range(3):
        x, y = a.sample(), b.sample()
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    other = OfflineDataModule(agent_paths=paths, batch_size=8, sampling="transition", seed=5).sample()
    assert not torch.equal(other["obs"], x["obs"])

    state = a.state_dict()
    expected = [a.sample() for _ in range(2)]
    resumed = OfflineDataModule(agent_paths=paths, batch_size=8, sampling="transition", seed=99)
    resumed.setup()
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.sample()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_max_episodes_applies_to_each_file(tmp_path):
    paths, arrays = write_agent_files(tmp_path)
    dm = OfflineDataModule(agent_paths=paths, batch_size=64, sampling="transition", max_episodes=2, seed=0)
    dm.setup()
    assert [d.n_episodes for d in dm._agent_data] == [2, 2, 2]
    batch = dm.sample()
    for i in range(3):
        allowed = windows({k: v[:2] for k, v in arrays[i].items()}, i)
        assert all((batch["obs"][r, 0, i].numpy().tobytes(), batch["obs"][r, 1, i].numpy().tobytes()) in allowed
                   for r in range(64))


def test_updates_per_step_groups_per_agent_batches(tmp_path):
    paths, _ = write_agent_files(tmp_path)
    dm = OfflineDataModule(agent_paths=paths, batch_size=4, sampling="transition", seed=2, updates_per_step=3)
    group = next(iter(dm.train_dataloader()))
    assert isinstance(group, BatchGroup) and len(group) == 3
    assert all(one["reward"].shape == (4, 1, 3) for one in group)


# ---- errors -------------------------------------------------------------------------------------------------
def test_errors_are_clear(tmp_path):
    paths, _ = write_agent_files(tmp_path)
    with pytest.raises(ValueError, match="one file per agent"):
        OfflineDataModule(agent_paths=paths[:2], sampling="transition")
    with pytest.raises(ValueError, match="one file per agent"):
        OfflineDataModule(agent_paths=paths + paths[:1], sampling="transition")
    with pytest.raises(ValueError, match="sampling='transition'"):
        OfflineDataModule(agent_paths=paths, sampling="episode")
    with pytest.raises(ValueError, match="excludes data.path"):
        OfflineDataModule(path=paths[0], agent_paths=paths, sampling="transition")
    with pytest.raises(ValueError, match="excludes data.path"):
        OfflineDataModule(agent_paths=paths, env="matrix/xor", behaviour="xor-b", sampling="transition")
    with pytest.raises(ValueError, match="non-empty list"):
        OfflineDataModule(agent_paths=[], sampling="transition")
    with pytest.raises(DatasetError, match="does not exist"):
        OfflineDataModule(agent_paths=[paths[0], paths[1], str(tmp_path / "nope.h5")], sampling="transition")
    # spec mismatch: the error names the odd file and the differing field
    other = EnvSpec(**{**SPEC.to_dict(), "obs_dim": 3})
    odd = write_dataset(tmp_path / "odd.h5", example_arrays(other, n_episodes=3, seed=0), {"spec": other})
    with pytest.raises(DatasetError, match="odd.h5.*spec.*obs_dim: 3") as err:
        OfflineDataModule(agent_paths=[paths[0], paths[1], str(odd)], sampling="transition")
    assert err.value.key == "spec" and err.value.path.endswith("odd.h5")


def test_modules_that_learn_from_joint_transitions_are_refused(tmp_path):
    paths, _ = write_agent_files(tmp_path)
    assert OfflineMARLModule.accepts_agent_datasets is False
    spec = SPEC.to_dict()
    for cls in (MABCQ, BCQC, MABCQBehavior, DDPGC):
        assert cls(spec=spec, **NO_EVAL).accepts_agent_datasets is True, cls.__name__
    assert not ICQLC(spec=spec, **NO_EVAL).accepts_agent_datasets
    assert not DDPGC(spec=spec, shared_critic=True, **NO_EVAL).accepts_agent_datasets  # one critic for all agents
    assert not DDPGC(spec=spec, shared_actor=True, **NO_EVAL).accepts_agent_datasets
    dm = OfflineDataModule(agent_paths=paths, batch_size=8, sampling="transition")
    with pytest.raises(ValueError, match="gives each agent its own dataset.*ICQLC learns from joint transitions"):
        trainer(1).fit(ICQLC(spec=spec, **NO_EVAL), datamodule=dm)
    # a joint file is still fine for every module
    joint = OfflineDataModule(paths[0], batch_size=8, sampling="transition")
    trainer(1).fit(ICQLC(spec=spec, **NO_EVAL), datamodule=joint)


# ---- learners --------------------------------------------------------------------------------------------------
def _critic_params(model):
    return [p.detach().clone() for p in model.critic.parameters()]


@pytest.mark.parametrize("cls", [MABCQ, DDPGC])
def test_short_fit_on_per_agent_datasets_moves_the_critics(tmp_path, cls):
    paths, _ = write_agent_files(tmp_path)
    torch.manual_seed(0)
    extra = {"behaviour_pretrain_steps": 3} if cls is MABCQ else {}
    model = cls(spec=SPEC.to_dict(), agent_hidden_dim=16, **extra, **NO_EVAL)
    before = _critic_params(model)
    t = trainer(4)
    t.fit(model, datamodule=OfflineDataModule(agent_paths=paths, batch_size=16, sampling="transition", seed=0))
    assert t.global_step == 4
    after = _critic_params(model)
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def _batch(reward: torch.Tensor, terminated: torch.Tensor, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = reward.shape[0]
    return {
        "obs": torch.randn(b, 2, 3, 2, generator=g),
        "state": torch.zeros(b, 2, 3),
        "actions": torch.rand(b, 1, 3, 2, generator=g) * 2 - 1,
        "avail_actions": torch.ones(b, 2, 3, 2, dtype=torch.bool),
        "reward": reward,
        "terminated": terminated,
        "mask": torch.ones(b, 1),
    }


@pytest.mark.parametrize("cls", [MABCQ, DDPGC])
def test_identical_per_agent_rewards_equal_the_team_reward(cls):
    """Every column equal to the team reward: the same targets, so the same update bit for bit."""
    g = torch.Generator().manual_seed(3)
    reward = torch.randn(6, 1, generator=g)
    terminated = torch.zeros(6, 1)
    terminated[1] = 1.0
    models = []
    for r, d in ((reward, terminated), (reward.unsqueeze(-1).expand(6, 1, 3), terminated.unsqueeze(-1).expand(6, 1, 3))):
        torch.manual_seed(0)
        extra = {"behaviour_pretrain_steps": 0} if cls is MABCQ else {}
        model = cls(spec=SPEC.to_dict(), agent_hidden_dim=8, **extra, **NO_EVAL)
        torch.manual_seed(1)
        trainer(2).fit(model, datamodule=FixedBatchData(SPEC.to_dict(), _batch(r, d), "transition"))
        models.append(model)
    for (name, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items()):
        assert torch.equal(a, b), name


def test_mabcq_td_targets_use_each_agents_own_reward():
    """By hand: y_i = r_i + gamma (1 - d_i) V_i(x'), L_Q = sum_k mean_(b, i) (Q_i,k - y_i)^2 (weights off)."""
    gamma = 0.5
    model = MABCQ(spec=SPEC.to_dict(), use_lambda_tn=False, use_lambda_vd=False, gamma=gamma, agent_hidden_dim=8,
                  behaviour_pretrain_steps=0, **NO_EVAL)
    v_next = torch.tensor([[[3.0, 0.0, -1.0]], [[1.0, 2.0, 0.5]]])  # V_i(x') [B=2, L=1, N=3]
    model.target_value = lambda x_next: v_next
    reward = torch.tensor([[[1.0, -2.0, 5.0]], [[0.0, 4.0, -1.0]]])
    terminated = torch.tensor([[[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]])
    batch = _batch(reward, terminated)
    with torch.no_grad():
        q = model.critic(batch["obs"][:, :-1], batch["actions"])  # [K=2, B, 1, N], before the update
    losses = []
    original = model.optimise
    model.optimise = lambda opt, loss, clip: (losses.append(loss.item()), original(opt, loss, clip))
    trainer(1).fit(model, datamodule=FixedBatchData(SPEC.to_dict(), batch, "transition"))
    expected = 0.0
    for k in range(2):
        for b in range(2):
            for i in range(3):
                y = reward[b, 0, i].item() + gamma * (1 - terminated[b, 0, i].item()) * v_next[b, 0, i].item()
                expected += (q[k, b, 0, i].item() - y) ** 2 / 6
    assert losses[0] == pytest.approx(expected, rel=1e-5)
    # team [B, L] -> [B, L, 1]; [B, L, N] as is; a wrong agent count is refused
    from lit_omarl.algos.omar_c import agent_reward_terminated

    r, d = agent_reward_terminated({"reward": torch.zeros(2, 1), "terminated": torch.zeros(2, 1, 3)}, 3)
    assert r.shape == (2, 1, 1) and d.shape == (2, 1, 3)
    with pytest.raises(ValueError, match="per agent"):
        agent_reward_terminated({"reward": torch.zeros(2, 1, 2), "terminated": torch.zeros(2, 1)}, 3)


def test_resumed_fit_on_per_agent_datasets_is_exact(tmp_path):
    """Checkpoint at step 2, resume to 4: the same parameters as 4 steps in one go (one sampler state)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    paths, _ = write_agent_files(tmp_path)

    def fit(max_steps, ckpt_dir=None, ckpt_path=None):
        torch.manual_seed(0)
        model = DDPGC(spec=SPEC.to_dict(), critic_hidden_dim=8, agent_hidden_dim=8, **NO_EVAL)
        callbacks = [] if ckpt_dir is None else [ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=2,
                                                                 save_top_k=0, save_last=True)]
        t = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=ckpt_dir is not None,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", callbacks=callbacks)
        t.fit(model, datamodule=OfflineDataModule(agent_paths=paths, batch_size=8, sampling="transition", seed=7),
              ckpt_path=ckpt_path)
        return model

    straight = fit(4)
    fit(2, ckpt_dir=tmp_path / "ckpt")
    resumed = fit(4, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
