"""Tests of lit_omarl.data.importers (pymarl .npy folders and CFCQL SMAC .h5 files).

Synthetic sources are built here in the exact pymarl buffer layout (episode-major,
T+1 slots, ``filled`` covering L+1 slots, garbage after the episode end) and the
expected schema-v1 arrays are written out step by step, independently of the
vectorised implementation. The real AlberDICE Bridge buffers are used when
present in ../shared/datasets (skipped otherwise).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from lit_omarl.data.importers import (
    IMPORTERS,
    guess_quality,
    import_cfcql_h5,
    import_dataset,
    import_pymarl_npy,
)
from lit_omarl.data.schema import DatasetError, read_dataset
from lit_omarl.spec import EnvSpec

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BRIDGE = DATASETS / "alberdice_bridge"
BRIDGE_SPEC = EnvSpec("bridge", n_agents=2, obs_dim=8, state_dim=8, n_actions=5, action_type="discrete", episode_limit=50)

# Synthetic SMAC-like layout: T+1 = 11 slots, 3 agents, O=7, S=9, A=6.
T1, N, O, S, A = 11, 3, 7, 9, 6
T = T1 - 1
# (length L, terminated flag at L-1): time-limit ends, early terminations, a
# termination exactly at the limit and a one-step episode.
EPISODES = [(10, 0), (3, 1), (10, 1), (1, 1), (7, 1), (10, 0)]


def make_pymarl(episodes=EPISODES, *, seed=0, garbage=True, onehot=False, probs=True):
    """Source arrays in the pymarl buffer layout and the expected schema-v1 arrays."""
    rng = np.random.default_rng(seed)
    E = len(episodes)
    src = {
        "obs": np.zeros((E, T1, N, O), np.float32),
        "state": np.zeros((E, T1, S), np.float32),
        "actions": np.zeros((E, T1, N, 1), np.int64),
        "avail_actions": np.zeros((E, T1, N, A), np.int32),
        "reward": np.zeros((E, T1, 1), np.float32),
        "terminated": np.zeros((E, T1, 1), np.uint8),
        "filled": np.zeros((E, T1, 1), np.int64),
    }
    if probs:
        src["probs"] = np.zeros((E, T1, N, A), np.float32)
    exp = {
        "obs": np.zeros((E, T1, N, O), np.float32),
        "state": np.zeros((E, T1, S), np.float32),
        "actions": np.zeros((E, T, N), np.int64),
        "avail_actions": np.zeros((E, T1, N, A), np.uint8),
        "reward": np.zeros((E, T), np.float32),
        "terminated": np.zeros((E, T), np.uint8),
        "filled": np.zeros((E, T), np.uint8),
    }
    if probs:
        exp["behaviour_probs"] = np.zeros((E, T, N, A), np.float32)
    for e, (L, term) in enumerate(episodes):
        for t in range(L + 1):  # slots 0..L hold observations (slot L: final one)
            src["filled"][e, t] = 1
            src["obs"][e, t] = rng.standard_normal((N, O))
            src["state"][e, t] = rng.standard_normal(S)
            avail = rng.random((N, A)) < 0.6
            avail[:, 0] = True
            src["avail_actions"][e, t] = avail
            # pymarl also stores an action at the final slot L: it is dropped.
            src["actions"][e, t, :, 0] = [rng.choice(np.flatnonzero(avail[i])) for i in range(N)]
            if probs:
                src["probs"][e, t] = avail / avail.sum(-1, keepdims=True)
            exp["obs"][e, t] = src["obs"][e, t]
            exp["state"][e, t] = src["state"][e, t]
            exp["avail_actions"][e, t] = src["avail_actions"][e, t]
        for t in range(L):
            src["reward"][e, t] = rng.standard_normal()
            exp["actions"][e, t] = src["actions"][e, t, :, 0]
            exp["reward"][e, t] = src["reward"][e, t, 0]
            exp["filled"][e, t] = 1
            if probs:
                exp["behaviour_probs"][e, t] = src["probs"][e, t]
        src["terminated"][e, L - 1] = term
        exp["terminated"][e, L - 1] = term
        if garbage and L + 1 < T1:  # nonzero padding after the final observation
            src["obs"][e, L + 1 :] = 7.0
            src["state"][e, L + 1 :] = -3.0
            src["avail_actions"][e, L + 1 :] = 1
            src["actions"][e, L + 1 :] = 2
            src["reward"][e, L:] = 5.0
            if probs:
                src["probs"][e, L + 1 :] = 0.5
            if term:  # after a termination even `filled` / `terminated` may hold junk
                src["filled"][e, L + 1 :] = 1
                src["terminated"][e, L + 1 :] = 1
    if onehot:
        src["actions_onehot"] = np.eye(A, dtype=np.float32)[src["actions"][..., 0]] * src["filled"][..., None]
    return src, exp


def write_npy_folder(folder: Path, arrays, meta=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in arrays.items():
        np.save(folder / f"{key}.npy", value)
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def write_h5(path: Path, arrays) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def assert_arrays_equal(got, expected):
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        assert got[key].shape == expected[key].shape, key
        assert np.array_equal(got[key], expected[key]), key


# ----------------------------------------------------------------------------- CFCQL .h5


def test_cfcql_h5_exact_values_and_dropped_padding(tmp_path):
    src, exp = make_pymarl()
    h5 = write_h5(tmp_path / "3s_vs_5z_medium_replay.h5", src)
    arrays, attrs = import_cfcql_h5(h5)

    assert_arrays_equal(arrays, exp)
    spec = attrs["spec"]
    assert (spec.env_id, spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions, spec.episode_limit) == (
        "sc2/3s_vs_5z", N, O, S, A, T,
    )
    assert attrs["quality"] == "medium_replay"
    assert attrs["n_terminated_at_limit"] == 1  # episode 2 terminates at step T-1
    assert attrs["episodes_without_final_obs"] == 0
    dropped = attrs["padding_nonzero_dropped"]
    assert dropped["obs"] > 0 and dropped["state"] > 0 and dropped["reward"] > 0
    assert dropped["actions"] > 0 and dropped["probs"] > 0 and dropped["filled"] > 0 and dropped["terminated"] > 0
    assert attrs["padding_nonzero_dropped_total"] == sum(dropped.values())


def test_cfcql_h5_counts_dropped_values_exactly(tmp_path):
    src, _ = make_pymarl(probs=False)
    _, attrs = import_cfcql_h5(write_h5(tmp_path / "2s3z_expert.h5", src))
    expected = {"obs": 0, "state": 0, "reward": 0, "actions": 0, "avail_actions": 0, "filled": 0, "terminated": 0}
    for e, (L, term) in enumerate(EPISODES):
        expected["obs"] += int(np.count_nonzero(src["obs"][e, L + 1 :]))
        expected["state"] += int(np.count_nonzero(src["state"][e, L + 1 :]))
        expected["avail_actions"] += int(np.count_nonzero(src["avail_actions"][e, L + 1 :]))
        expected["actions"] += int(np.count_nonzero(src["actions"][e, L:]))
        expected["reward"] += int(np.count_nonzero(src["reward"][e, L:]))
        expected["filled"] += int(np.count_nonzero(src["filled"][e, L + 1 :]))
        expected["terminated"] += int(np.count_nonzero(src["terminated"][e, L:]))
    assert attrs["padding_nonzero_dropped"] == expected


def test_cfcql_h5_without_trailing_singletons_gives_same_arrays(tmp_path):
    src, exp = make_pymarl()
    squeezed = {k: (v[..., 0] if k in ("actions", "reward", "terminated", "filled") else v) for k, v in src.items()}
    a1, _ = import_cfcql_h5(write_h5(tmp_path / "2s3z_mixed.h5", src))
    a2, attrs = import_cfcql_h5(write_h5(tmp_path / "2s3z_medium.h5", squeezed), "sc2/2s3z")
    assert_arrays_equal(a2, exp)
    assert_arrays_equal(a1, a2)
    assert attrs["quality"] == "medium"


def test_cfcql_h5_writes_readable_dataset(tmp_path):
    src, exp = make_pymarl()
    h5 = write_h5(tmp_path / "MMM2_expert.h5", src)
    out = tmp_path / "out" / "mmm2.h5"
    path = import_dataset("cfcql-h5", h5, None, out)
    assert path == out
    data = read_dataset(out)
    assert_arrays_equal(data.arrays, exp)
    assert data.spec.env_id == "sc2/MMM2"
    assert data.attrs["quality"] == "expert"
    assert data.attrs["behaviour"] == "imported"
    assert data.attrs["source"] == str(h5.resolve())
    assert data.attrs["generator"].startswith("lit_omarl ") and data.attrs["generator"].endswith(" import cfcql-h5")
    assert data.attrs["padding_nonzero_dropped"]["obs"] > 0
    lengths = [L for L, _ in EPISODES]
    assert data.lengths().tolist() == lengths


def test_cfcql_h5_env_override_and_spec_check(tmp_path):
    src, _ = make_pymarl()
    h5 = write_h5(tmp_path / "data.h5", src)
    with pytest.raises(ValueError, match="map"):  # no <map>_<quality> in the name
        import_cfcql_h5(h5)
    _, attrs = import_cfcql_h5(h5, "sc2/custom")
    assert attrs["spec"].env_id == "sc2/custom" and attrs["quality"] == "unknown"
    good = EnvSpec("sc2/custom", N, O, S, A, "discrete", T)
    _, attrs = import_cfcql_h5(h5, good)
    assert attrs["spec"] == good
    bad = EnvSpec("sc2/custom", N, O, S, A + 1, "discrete", T)
    with pytest.raises(DatasetError, match="n_actions") as info:
        import_cfcql_h5(h5, bad)
    assert info.value.path == str(h5.resolve()) and info.value.key == "avail_actions"
    bad_limit = EnvSpec("sc2/custom", N, O, S, A, "discrete", T + 5)
    with pytest.raises(DatasetError, match="episode_limit"):
        import_cfcql_h5(h5, bad_limit)


# ----------------------------------------------------------------------------- pymarl .npy


def test_pymarl_npy_exact_values_onehot_and_meta(tmp_path):
    src, exp = make_pymarl(onehot=True, probs=False)
    folder = write_npy_folder(tmp_path / "buffer_optimal", src, meta={"buffer_size": 6})
    arrays, attrs = import_pymarl_npy(folder, "bridge_like", check_env=False)
    assert_arrays_equal(arrays, exp)
    assert json.loads(attrs["source_meta"]) == {"buffer_size": 6}
    assert attrs["quality"] == "optimal"
    assert attrs["padding_nonzero_dropped"]["actions_onehot"] > 0
    assert attrs["env_check"] == "skipped (disabled)"


def test_pymarl_npy_clear_terminated_at_limit(tmp_path):
    src, exp = make_pymarl(probs=False)
    folder = write_npy_folder(tmp_path / "buffer_mix", src)
    arrays, attrs = import_pymarl_npy(folder, "x", check_env=False, clear_terminated_at_limit=True)
    exp["terminated"][2, T - 1] = 0
    assert_arrays_equal(arrays, exp)
    assert attrs["n_terminated_at_limit"] == 1 and attrs["cleared_terminated_at_limit"] is True
    assert attrs["quality"] == "mixed"


def test_pymarl_npy_skips_empty_buffer_slots(tmp_path):
    src, exp = make_pymarl(probs=False)
    for key in src:  # an unused buffer slot at episode 3: all zeros
        src[key][3] = 0
    folder = write_npy_folder(tmp_path / "buf", src)
    arrays, attrs = import_pymarl_npy(folder, "x", check_env=False)
    keep = [0, 1, 2, 4, 5]
    assert_arrays_equal(arrays, {k: v[keep] for k, v in exp.items()})
    assert attrs["empty_episodes_dropped"] == 1 and attrs["n_source_episodes"] == 6


def test_pymarl_npy_short_episode_without_termination(tmp_path):
    # Learner convention: step t valid iff filled[t] (t < T) and no termination before t,
    # so an unterminated episode with filled slots 0..3 has 4 steps and no final obs.
    src, _ = make_pymarl([(10, 0), (3, 0)], probs=False, garbage=False)
    assert src["filled"][1, :, 0].tolist() == [1] * 4 + [0] * 7
    folder = write_npy_folder(tmp_path / "buf", src)
    arrays, attrs = import_pymarl_npy(folder, "x", check_env=False)
    assert arrays["filled"].sum(1).tolist() == [10, 4]
    assert attrs["episodes_without_final_obs"] == 1


def test_registry_cross_check(tmp_path, monkeypatch):
    src, _ = make_pymarl(probs=False)
    folder = write_npy_folder(tmp_path / "buf", src)

    class FakeEnv:
        def __init__(self, spec):
            self.spec = spec

    specs = {
        "good": EnvSpec("good", N, O, S, A, "discrete", T, env_options={"k": 1}),
        "bad": EnvSpec("bad", N, O + 1, S, A, "discrete", T),
    }

    def make(env_id, num_envs=1, seed=0, **options):
        if env_id not in specs:
            raise KeyError(f"unknown env {env_id!r}")
        return FakeEnv(specs[env_id])

    fake = types.ModuleType("lit_omarl.envs")
    fake.make = make
    monkeypatch.setitem(sys.modules, "lit_omarl.envs", fake)

    _, attrs = import_pymarl_npy(folder, "good")
    assert attrs["env_check"] == "ok" and attrs["spec"] == specs["good"]
    with pytest.raises(DatasetError, match=r"obs_dim is 7 in the data but 8") as info:
        import_pymarl_npy(folder, "bad")
    assert info.value.path.endswith("obs.npy")
    _, attrs = import_pymarl_npy(folder, "unknown/id")
    assert attrs["env_check"].startswith("skipped") and attrs["spec"].obs_dim == O


# ----------------------------------------------------------------------------- errors


def test_wrong_format_errors(tmp_path):
    src, _ = make_pymarl(probs=False)
    h5 = write_h5(tmp_path / "2s3z_expert.h5", src)
    folder = write_npy_folder(tmp_path / "buf", src)
    with pytest.raises(DatasetError, match="cfcql-h5"):
        import_pymarl_npy(h5, "x")
    with pytest.raises(DatasetError, match="pymarl-npy"):
        import_cfcql_h5(folder, "x")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        import_cfcql_h5(folder / "obs.npy", "x")
    with pytest.raises(DatasetError, match="does not exist"):
        import_pymarl_npy(tmp_path / "nowhere", "x")
    with pytest.raises(DatasetError, match="does not exist"):
        import_cfcql_h5(tmp_path / "nowhere_expert.h5")
    (folder / "state.npy").write_text("not an array")
    with pytest.raises(DatasetError, match="not a readable .npy") as info:
        import_pymarl_npy(folder, "x")
    assert info.value.key == "state"


@pytest.mark.parametrize("missing", ["obs", "filled", "avail_actions"])
def test_missing_file_or_key(tmp_path, missing):
    src, _ = make_pymarl(probs=False)
    del src[missing]
    folder = write_npy_folder(tmp_path / "buf", src)
    out = tmp_path / "out.h5"
    with pytest.raises(DatasetError, match="missing") as info:
        import_pymarl_npy(folder, "x", out=out)
    assert info.value.path == str(folder.resolve() / f"{missing}.npy") and info.value.key == missing
    h5 = write_h5(tmp_path / "2s3z_expert.h5", src)
    with pytest.raises(DatasetError, match="missing") as info:
        import_cfcql_h5(h5, out=out)
    assert info.value.key == missing
    assert not out.exists()


@pytest.mark.parametrize(
    "key, change, words",
    [
        ("state", lambda a: a[:-1], "episode count 5 disagrees"),
        ("reward", lambda a: a[:, :-1], r"time length \(T\+1\) 10 disagrees"),
        ("actions", lambda a: np.concatenate([a, a], axis=2), "agent count 6 disagrees"),
        ("probs", lambda a: a[..., :-1], "disagrees"),
        ("obs", lambda a: a[..., 0], "expected rank 4"),
        ("filled", lambda a: np.repeat(a, 2, axis=-1), "trailing 1"),
    ],
)
def test_shape_disagreements(tmp_path, key, change, words):
    src, _ = make_pymarl()
    src[key] = change(src[key])
    h5 = write_h5(tmp_path / "2s3z_expert.h5", src)
    out = tmp_path / "out.h5"
    with pytest.raises(DatasetError, match=words) as info:
        import_cfcql_h5(h5, out=out)
    assert info.value.key == key and info.value.path == str(h5.resolve())
    assert not out.exists()


def test_onehot_mismatch_names_the_file(tmp_path):
    src, _ = make_pymarl(onehot=True, probs=False)
    src["actions_onehot"][4, 2, 1] = np.roll(src["actions_onehot"][4, 2, 1], 1)
    folder = write_npy_folder(tmp_path / "buf", src)
    out = tmp_path / "out.h5"
    with pytest.raises(DatasetError, match="episode 4 step 2 agent 1") as info:
        import_pymarl_npy(folder, "x", out=out, check_env=False)
    assert info.value.path.endswith("actions_onehot.npy")
    assert not out.exists()


def test_value_errors(tmp_path):
    src, _ = make_pymarl(probs=False)
    bad_filled = {k: v.copy() for k, v in src.items()}
    bad_filled["filled"][0, 4] = 0  # a hole in a time-limit episode
    with pytest.raises(DatasetError, match="contiguous prefix") as info:
        import_cfcql_h5(write_h5(tmp_path / "a_expert.h5", bad_filled))
    assert info.value.key == "filled"
    bad_avail = {k: v.copy() for k, v in src.items()}
    bad_avail["avail_actions"][1, 1, 0, 0] = 3
    with pytest.raises(DatasetError, match="0 or 1"):
        import_cfcql_h5(write_h5(tmp_path / "b_expert.h5", bad_avail))
    bad_action = {k: v.copy() for k, v in src.items()}
    bad_action["avail_actions"][0, 0, 0] = 0
    bad_action["avail_actions"][0, 0, 0, 1] = 1
    bad_action["actions"][0, 0, 0] = 0  # not available
    with pytest.raises(DatasetError, match="not available") as info:
        import_cfcql_h5(write_h5(tmp_path / "c_expert.h5", bad_action))
    assert info.value.path == str((tmp_path / "c_expert.h5").resolve())
    float_actions = {k: v.copy() for k, v in src.items()}
    float_actions["actions"] = float_actions["actions"].astype(np.float32) + 0.5
    with pytest.raises(DatasetError, match="integers"):
        import_cfcql_h5(write_h5(tmp_path / "d_expert.h5", float_actions))


def test_refuses_to_overwrite(tmp_path):
    src, _ = make_pymarl()
    h5 = write_h5(tmp_path / "2s3z_expert.h5", src)
    out = tmp_path / "out.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        import_dataset("cfcql-h5", h5, None, out)
    assert out.read_bytes() == b"keep me"
    import_dataset("cfcql-h5", h5, None, out, overwrite=True)
    assert read_dataset(out).n_episodes == len(EPISODES)


def test_import_dataset_arguments(tmp_path):
    assert set(IMPORTERS) == {"pymarl-npy", "cfcql-h5", "omar-npy"}
    with pytest.raises(ValueError, match="unknown import format"):
        import_dataset("d4rl", tmp_path, "x", tmp_path / "o.h5")
    with pytest.raises(ValueError, match="env id"):
        import_dataset("pymarl-npy", tmp_path, None, tmp_path / "o.h5")


@pytest.mark.parametrize(
    "name, quality",
    [
        ("buffer_optimal", "optimal"),
        ("buffer_mix", "mixed"),
        ("2s3z_medium_replay.h5", "medium_replay"),
        ("3s_vs_5z_expert.h5", "expert"),
        ("6h_vs_8z_mixed.h5", "mixed"),
        ("somewhere", "unknown"),
    ],
)
def test_guess_quality(name, quality):
    assert guess_quality(Path("/data") / name) == quality


# ----------------------------------------------------------------------------- real Bridge data


@pytest.mark.skipif(not BRIDGE.is_dir(), reason="AlberDICE Bridge datasets not present")
@pytest.mark.parametrize("name, n_episodes, mean_return", [("buffer_optimal", 500, -1.26), ("buffer_mix", 1000, -9.46)])
def test_bridge_import_is_lossless(tmp_path, name, n_episodes, mean_return):
    folder = BRIDGE / name
    out = tmp_path / f"bridge_{name}.h5"
    import_dataset("pymarl-npy", folder, "bridge", out)
    data = read_dataset(out)
    assert data.spec.to_dict() | {"env_options": {}} == BRIDGE_SPEC.to_dict() | {"env_options": {}}
    arrays = data.arrays

    keys = ("obs", "state", "avail_actions", "actions", "reward", "terminated", "filled")
    src = {k: np.load(folder / f"{k}.npy") for k in keys}
    # pymarl fills L + 1 slots for an episode of L steps; every Bridge episode ends with terminated=1.
    src_lengths = src["filled"][..., 0].sum(1) - 1
    assert data.n_episodes == n_episodes
    assert np.array_equal(data.lengths(), src_lengths)
    for e, L in enumerate(src_lengths):
        assert np.array_equal(arrays["obs"][e, : L + 1], src["obs"][e, : L + 1])
        assert np.array_equal(arrays["state"][e, : L + 1], src["state"][e, : L + 1])
        assert np.array_equal(arrays["avail_actions"][e, : L + 1], src["avail_actions"][e, : L + 1])
        assert np.array_equal(arrays["actions"][e, :L], src["actions"][e, :L, :, 0])
        assert np.array_equal(arrays["reward"][e, :L], src["reward"][e, :L, 0])
        assert np.array_equal(arrays["terminated"][e, :L], src["terminated"][e, :L, 0])
        assert not arrays["obs"][e, L + 1 :].any() and not arrays["actions"][e, L:].any()
    assert data.returns().mean() == pytest.approx(mean_return, abs=0.01)
    assert data.attrs["return_mean"] == pytest.approx(mean_return, abs=0.01)
    assert data.attrs["quality"] == ("optimal" if name == "buffer_optimal" else "mixed")
    assert data.attrs["source"] == str(folder.resolve())
    assert json.loads(data.attrs["source_meta"])["episodes_in_buffer"] == n_episodes
    # The only nonzero padding in these files: the action pymarl records at the final slot L.
    dropped = data.attrs["padding_nonzero_dropped"]
    assert {k for k, v in dropped.items() if v} == {"actions", "actions_onehot"}
    assert dropped["actions_onehot"] == 2 * n_episodes
