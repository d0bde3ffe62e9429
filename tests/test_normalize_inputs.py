"""normalize_inputs of the continuous modules: the dataset's input statistics, standardised batches and act()."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from lit_omarl.algos import MABCQ, MATD3BC
from lit_omarl.data.datamodule import OfflineDataModule
from lit_omarl.data.schema import example_arrays, write_dataset
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec("test/normalize", n_agents=2, obs_dim=3, state_dim=4, n_actions=2, action_type="continuous",
               episode_limit=5)
NO_EVAL = {"eval_every_steps": 0, "final_eval_episodes": 0}


def scaled_file(tmp_path, name="data.h5", seed=0, episodes=9):
    """Random valid arrays with features of very different scales (as MaMuJoCo's velocities)."""
    a = example_arrays(SPEC, n_episodes=episodes, seed=seed)
    seen = np.arange(SPEC.episode_limit + 1)[None] <= a["filled"].sum(1)[:, None]  # obs[0 .. length]
    a["obs"] = (a["obs"] * np.array([0.1, 1.0, 10.0], np.float32) + np.array([5.0, 0.0, -3.0], np.float32)) \
        * seen[..., None, None].astype(np.float32)
    a["state"] = a["state"] * np.float32(7.0)
    return str(write_dataset(tmp_path / name, a, {"spec": SPEC})), a


def hand_stats(a):
    """Mean and population std + 1e-3 over the valid steps t < length (obs[t] of every filled step)."""
    valid = a["filled"].astype(bool)
    obs = a["obs"][:, :-1][valid].astype(np.float64)  # [V, N, O]
    state = a["state"][:, :-1][valid].astype(np.float64)
    return obs.mean(0), obs.std(0) + 1e-3, state.mean(0), state.std(0) + 1e-3


def test_input_statistics_by_hand(tmp_path):
    path, a = scaled_file(tmp_path)
    stats = OfflineDataModule(path, sampling="transition").input_statistics()
    om, os_, sm, ss = hand_stats(a)
    np.testing.assert_allclose(stats["obs_mean"].numpy(), om, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["obs_std"].numpy(), os_, rtol=1e-5)
    np.testing.assert_allclose(stats["state_mean"].numpy(), sm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["state_std"].numpy(), ss, rtol=1e-5)
    assert stats["obs_std"].shape == (2, 3) and stats["state_std"].shape == (4,)


def test_per_agent_files_give_each_agent_its_own_statistics(tmp_path):
    (p0, a0), (p1, a1) = scaled_file(tmp_path, "a0.h5", seed=1), scaled_file(tmp_path, "a1.h5", seed=2, episodes=6)
    stats = OfflineDataModule(agent_paths=[p0, p1], sampling="transition").input_statistics()
    np.testing.assert_allclose(stats["obs_mean"][0].numpy(), hand_stats(a0)[0][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["obs_mean"][1].numpy(), hand_stats(a1)[0][1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["state_std"].numpy(), hand_stats(a0)[3], rtol=1e-5)


def _fit(model, dm, steps=3):
    L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu").fit(model, datamodule=dm)


def test_fit_sets_the_buffers_and_standardises_batches_and_acting(tmp_path):
    path, a = scaled_file(tmp_path)
    dm = OfflineDataModule(path, batch_size=16, sampling="transition", seed=0)
    model = MATD3BC(spec=SPEC.to_dict(), agent="mlp", agent_hidden_dim=8, critic_hidden_dim=8, normalize_inputs=True,
                    **NO_EVAL)
    seen = []
    original = model.transform_batch
    model.transform_batch = lambda batch: seen.append(original(batch)) or seen[-1]
    _fit(model, dm)
    om, os_, sm, ss = hand_stats(a)
    np.testing.assert_allclose(model.obs_shift.numpy(), om, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.state_scale.numpy(), ss, rtol=1e-5)
    assert len(seen) == 3
    batch = seen[0]  # what the first update saw: (raw - mean) / std of the first batch drawn with seed 0
    raw = OfflineDataModule(path, batch_size=16, sampling="transition", seed=0).sample()
    torch.testing.assert_close(batch["obs"], (raw["obs"] - model.obs_shift) / model.obs_scale)
    torch.testing.assert_close(batch["state"], (raw["state"] - model.state_shift) / model.state_scale)
    # acting standardises the observation the same way: a copy without normalisation fed standardised obs agrees
    plain = MATD3BC(spec=SPEC.to_dict(), agent="mlp", agent_hidden_dim=8, critic_hidden_dim=8, **NO_EVAL)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith(("_shift", "_scale"))})
    obs = torch.randn(4, 2, 3) * 5
    torch.testing.assert_close(model.act(obs)[0], plain.act((obs - model.obs_shift) / model.obs_scale)[0])
    # the statistics travel with the checkpoint
    again = MATD3BC(spec=SPEC.to_dict(), agent="mlp", agent_hidden_dim=8, critic_hidden_dim=8, normalize_inputs=True,
                    **NO_EVAL)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.act(obs)[0], model.act(obs)[0])


def test_off_by_default_and_behaviour_pretraining_sees_standardised_batches(tmp_path):
    path, _ = scaled_file(tmp_path)
    assert not any(k.endswith("_shift") for k in MATD3BC(spec=SPEC.to_dict(), agent="mlp", **NO_EVAL).state_dict())
    model = MABCQ(spec=SPEC.to_dict(), agent="mlp", agent_hidden_dim=8, normalize_inputs=True,
                  behaviour_pretrain_steps=2, **NO_EVAL)
    seen = []
    original = model.behaviour_update
    model.behaviour_update = lambda batch: seen.append(batch) or original(batch)
    _fit(model, OfflineDataModule(path, batch_size=8, sampling="transition", seed=0), steps=1)
    assert len(seen) == 2
    obs = seen[0]["obs"]
    assert float(obs.abs().max()) < 10  # standardised, where the raw third feature has std ~10 around -3
