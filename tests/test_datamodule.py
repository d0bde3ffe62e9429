"""OfflineDataModule: batch format, episode vs transition sampling, generation cache, sampler state."""

import h5py
import numpy as np
import pytest
import torch

from lit_omarl.data.datamodule import OfflineDataModule
from lit_omarl.data.schema import example_arrays, write_dataset
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec(env_id="test/toy", n_agents=2, obs_dim=5, state_dim=6, n_actions=3, episode_limit=7)


@pytest.fixture
def dataset(tmp_path):
    arrays = example_arrays(SPEC, n_episodes=9, seed=3)
    path = write_dataset(tmp_path / "toy.h5", arrays, {"spec": SPEC, "quality": "test"})
    return path, arrays


def test_episode_batches_are_whole_episodes_cut_to_longest(dataset):
    path, arrays = dataset
    dm = OfflineDataModule(str(path), batch_size=16, sampling="episode", seed=1)
    assert dm.spec == SPEC.to_dict()
    dm.setup("fit")
    batch = dm.sample()
    lengths = arrays["filled"].sum(1)
    L = batch["mask"].shape[1]
    assert batch["obs"].shape == (16, L + 1, 2, 5)
    assert batch["state"].shape == (16, L + 1, 6)
    assert batch["actions"].shape == (16, L, 2) and batch["actions"].dtype == torch.int64
    assert batch["avail_actions"].shape == (16, L + 1, 2, 3) and batch["avail_actions"].dtype == torch.bool
    assert batch["reward"].shape == batch["terminated"].shape == (16, L)
    # the batch is cut to its longest episode: some row is full, none longer than L
    row_lengths = batch["mask"].sum(1)
    assert int(row_lengths.max()) == L <= lengths.max()
    # each row is one stored episode, bit-exact
    for row in range(16):
        matches = [e for e in range(9) if lengths[e] == row_lengths[row]
                   and np.array_equal(arrays["obs"][e, : L + 1], batch["obs"][row].numpy())]
        assert matches, f"row {row} is not a stored episode"
        e = matches[0]
        assert np.array_equal(arrays["actions"][e, :L], batch["actions"][row].numpy())
        assert np.array_equal(arrays["reward"][e, :L], batch["reward"][row].numpy())


def test_episode_key_is_the_dataset_index_of_each_row(dataset):
    path, arrays = dataset
    dm = OfflineDataModule(str(path), batch_size=32, sampling="episode", seed=2, max_episodes=6)
    dm.setup("fit")
    batch = dm.sample()
    assert batch["episode"].dtype == torch.int64 and batch["episode"].shape == (32,)
    assert 0 <= int(batch["episode"].min()) and int(batch["episode"].max()) < 6
    L = batch["mask"].shape[1]
    for row, e in enumerate(batch["episode"].tolist()):
        n = int(arrays["filled"][e].sum())
        assert int(batch["mask"][row].sum()) == n
        assert np.array_equal(arrays["obs"][e, : L + 1], batch["obs"][row].numpy()), (row, e)
        assert np.array_equal(arrays["actions"][e, :L], batch["actions"][row].numpy()), (row, e)
    # transition windows carry no episode key (their rows are steps, not episodes)
    assert "episode" not in OfflineDataModule(str(path), batch_size=4, sampling="transition").sample()


def test_transition_batches_are_windows_of_valid_steps(dataset):
    path, arrays = dataset
    dm = OfflineDataModule(str(path), batch_size=64, sampling="transition", seed=0)
    dm.setup()
    batch = dm.sample()
    assert batch["obs"].shape == (64, 2, 2, 5)
    assert batch["actions"].shape == (64, 1, 2)
    assert torch.all(batch["mask"] == 1)
    # every window (obs_t, a_t, r_t, obs_t+1) occurs in the file
    for row in range(0, 64, 7):
        found = False
        for e in range(9):
            for t in range(int(arrays["filled"][e].sum())):
                if (np.array_equal(arrays["obs"][e, t], batch["obs"][row, 0].numpy())
                        and np.array_equal(arrays["obs"][e, t + 1], batch["obs"][row, 1].numpy())
                        and arrays["reward"][e, t] == batch["reward"][row, 0].item()):
                    found = True
        assert found


def test_sampler_state_round_trip_gives_the_same_next_batch(dataset):
    path, _ = dataset
    dm = OfflineDataModule(str(path), batch_size=4, seed=5)
    dm.setup()
    dm.sample()
    state = dm.state_dict()
    expected = dm.sample()
    dm2 = OfflineDataModule(str(path), batch_size=4, seed=99)
    dm2.setup()
    dm2.load_state_dict(state)
    got = dm2.sample()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_max_episodes_uses_the_first_episodes(dataset):
    path, _ = dataset
    dm = OfflineDataModule(str(path), batch_size=4, max_episodes=3)
    dm.setup()
    assert dm.n_episodes == 3


def test_generated_dataset_is_cached_and_never_overwritten(tmp_path):
    out = tmp_path / "xor_b.h5"
    dm = OfflineDataModule(str(out), batch_size=8, sampling="transition", env="matrix/xor", behaviour="xor-b", episodes=30, generate_seed=0)
    assert dm.spec["env_id"] == "matrix/xor" and dm.spec["n_actions"] == 2
    dm.setup()
    assert out.exists()
    mtime = out.stat().st_mtime_ns
    OfflineDataModule(str(out), batch_size=8, sampling="transition", env="matrix/xor", behaviour="xor-b", episodes=30, generate_seed=0).setup()
    assert out.stat().st_mtime_ns == mtime  # reused, not regenerated
    with pytest.raises(ValueError, match="not overwritten"):
        OfflineDataModule(str(out), batch_size=8, env="matrix/xor", behaviour="xor-c", episodes=30, generate_seed=0)


def test_default_cache_location_is_used_without_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_OMARL_CACHE", str(tmp_path / "c"))
    dm = OfflineDataModule(batch_size=8, sampling="transition", env="matrix/xor", behaviour="xor-a", episodes=10)
    dm.setup()
    assert dm.path.parent == tmp_path / "c" and dm.path.exists()


def test_missing_file_and_bad_options_are_clear(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        OfflineDataModule(str(tmp_path / "nope.h5"))
    with pytest.raises(ValueError, match="sampling"):
        OfflineDataModule(str(tmp_path / "nope.h5"), sampling="steps")
    with pytest.raises(ValueError, match="together"):
        OfflineDataModule(env="matrix/xor")
    not_ours = tmp_path / "plain.h5"
    with h5py.File(not_ours, "w") as f:
        f["obs"] = np.zeros(3)
    with pytest.raises(Exception, match="spec"):
        OfflineDataModule(str(not_ours))
