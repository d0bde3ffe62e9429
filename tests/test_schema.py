"""Dataset schema v1: round trips, every validation rule, file-level errors, atomic writes."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lit_omarl.data import DatasetError, EpisodeData, read_dataset, validate_arrays, write_dataset
from lit_omarl.data.schema import FORMAT_VERSION, example_arrays
from lit_omarl.spec import EnvSpec

DISCRETE = EnvSpec("test/discrete", n_agents=2, obs_dim=3, state_dim=4, n_actions=5, episode_limit=6)
CONTINUOUS = EnvSpec(
    "test/continuous", n_agents=2, obs_dim=3, state_dim=4, n_actions=2, action_type="continuous",
    episode_limit=6, action_low=-0.5, action_high=2.0,
)
FILE = "some/dir/data.h5"


def assert_identical(a: np.ndarray, b: np.ndarray) -> None:
    """Same dtype, shape and bytes (bit-exact, so -0.0 and NaN payloads count)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def defect(arrays: dict, spec: EnvSpec, key: str, *words: str) -> DatasetError:
    """Validate ``arrays`` expecting a DatasetError naming FILE, ``key`` and every word."""
    with pytest.raises(DatasetError) as info:
        validate_arrays(arrays, spec, FILE)
    err = info.value
    message = str(err)
    assert message.startswith(f"{FILE}: key '{key}': "), message
    assert err.path == FILE and err.key == key
    for word in words:
        assert word in message, (word, message)
    return err


@pytest.fixture
def disc() -> dict:
    return example_arrays(DISCRETE, 7, seed=1, optional=True)


@pytest.fixture
def cont() -> dict:
    return example_arrays(CONTINUOUS, 7, seed=2, optional=True)


# ----------------------------------------------------------------------------- examples and round trips


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS])
def test_example_arrays_are_valid_and_mixed(spec):
    arrays = example_arrays(spec, 9, seed=3, optional=True)
    validate_arrays(arrays, spec)
    data = EpisodeData(arrays, {"spec": spec.to_json()})
    terminated = arrays["terminated"].any(axis=1)
    assert terminated.any() and not terminated.all()
    assert (data.lengths()[~terminated] == spec.episode_limit).all()
    assert data.spec == spec and data.n_episodes == 9


def test_example_arrays_given_lengths():
    arrays = example_arrays(DISCRETE, 4, lengths=[1, 6, 6, 3])
    data = EpisodeData(arrays, {"spec": DISCRETE.to_dict()})
    assert data.lengths().tolist() == [1, 6, 6, 3]
    assert arrays["terminated"].any(axis=1).tolist() == [True, True, False, True]  # full length: odd terminate
    with pytest.raises(ValueError):
        example_arrays(DISCRETE, 2, lengths=[0, 7])


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS])
def test_round_trip_is_bit_exact(tmp_path, spec):
    arrays = example_arrays(spec, 5, seed=4, optional=True)
    arrays["extra_key"] = np.arange(10, dtype=np.int16)
    attrs = {
        "spec": spec, "quality": "medium", "seed": 7, "behaviour": "uniform random",
        "temperature": 0.5, "levels": [1, 2], "options": {"a": 1}, "nothing": None,
        "flag": True, "weights": np.arange(3.0),
    }
    out = write_dataset(tmp_path / "d.h5", arrays, attrs)
    assert out == tmp_path / "d.h5"
    data = read_dataset(out)
    assert set(data.arrays) == set(arrays)
    for key in arrays:
        assert_identical(data.arrays[key], arrays[key])
    assert data.spec == spec
    assert data.path == str(out)
    a = data.attrs
    assert a["format_version"] == FORMAT_VERSION
    assert (a["env"], a["n_agents"], a["episode_limit"]) == (spec.env_id, spec.n_agents, spec.episode_limit)
    assert (a["quality"], a["seed"], a["behaviour"], a["temperature"]) == ("medium", 7, "uniform random", 0.5)
    assert (a["levels"], a["options"], a["nothing"]) == ([1, 2], {"a": 1}, None)
    assert a["flag"] is True
    np.testing.assert_array_equal(a["weights"], np.arange(3.0))
    returns = data.returns()
    assert a["return_mean"] == pytest.approx(returns.mean())
    assert a["return_std"] == pytest.approx(returns.std())
    assert (a["return_min"], a["return_max"]) == (pytest.approx(returns.min()), pytest.approx(returns.max()))
    assert a["n_episodes"] == 5 and a["n_transitions"] == int(data.lengths().sum())


def test_attrs_of_a_read_file_can_be_written_again(tmp_path, disc):
    write_dataset(tmp_path / "a.h5", disc, {"spec": DISCRETE, "quality": "expert"})
    first = read_dataset(tmp_path / "a.h5")
    write_dataset(tmp_path / "b.h5", first.arrays, first.attrs)
    second = read_dataset(tmp_path / "b.h5")
    assert second.attrs == first.attrs


def test_bool_masks_are_accepted_and_written_as_uint8(tmp_path, disc):
    for key in ("avail_actions", "terminated", "filled", "won"):
        disc[key] = disc[key].astype(bool)
    validate_arrays(disc, DISCRETE)
    write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE.to_dict()})
    data = read_dataset(tmp_path / "d.h5")
    for key in ("avail_actions", "terminated", "filled", "won"):
        assert data.arrays[key].dtype == np.uint8
        np.testing.assert_array_equal(data.arrays[key], disc[key])


def test_lengths_and_returns():
    arrays = example_arrays(DISCRETE, 3, lengths=[2, 6, 1])
    arrays["reward"][:] = 0
    arrays["reward"][0, :2] = [1.5, 2.0]
    arrays["reward"][1, :] = 1.0
    arrays["reward"][2, 0] = -3.0
    data = EpisodeData(arrays, {"spec": DISCRETE.to_json()})
    assert data.lengths().tolist() == [2, 6, 1]
    assert data.returns().tolist() == [3.5, 6.0, -3.0]
    assert "n_episodes=3" in repr(data)


@st.composite
def datasets(draw):
    discrete = draw(st.booleans())
    spec = EnvSpec(
        "prop/test", n_agents=draw(st.integers(1, 3)), obs_dim=draw(st.integers(1, 4)),
        state_dim=draw(st.integers(1, 4)), n_actions=draw(st.integers(1, 4)),
        action_type="discrete" if discrete else "continuous", episode_limit=draw(st.integers(1, 5)),
        action_low=-1.0, action_high=draw(st.sampled_from([0.25, 1.0, 3.0])),
    )
    E = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, spec.episode_limit), min_size=E, max_size=E))
    arrays = example_arrays(spec, E, seed=draw(st.integers(0, 2**16)), lengths=lengths, optional=draw(st.booleans()))
    finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
    arrays["obs"] = draw(hnp.arrays(np.float32, arrays["obs"].shape, elements=finite32))
    arrays["reward"] = draw(hnp.arrays(np.float32, arrays["reward"].shape, elements=finite32))
    return spec, arrays


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_round_trip_property(case):
    spec, arrays = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.h5"
        write_dataset(path, arrays, {"spec": spec})
        data = read_dataset(path)
        assert data.spec == spec
        assert set(data.arrays) == set(arrays)
        for key in arrays:
            assert_identical(data.arrays[key], arrays[key])
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["p.h5"]


# ----------------------------------------------------------------------------- one test per validation rule


@pytest.mark.parametrize("key", ["obs", "state", "actions", "avail_actions", "reward", "terminated", "filled"])
def test_missing_required_key(disc, key):
    del disc[key]
    defect(disc, DISCRETE, key, "missing")


def test_avail_actions_not_required_for_continuous(cont):
    cont.pop("avail_actions", None)
    validate_arrays(cont, CONTINUOUS, FILE)
    del cont["state"]
    defect(cont, CONTINUOUS, "state", "missing")


def test_unknown_keys_are_allowed(disc):
    disc["my_feature"] = np.zeros(3)
    validate_arrays(disc, DISCRETE, FILE)


@pytest.mark.parametrize(
    "key, dtype",
    [("obs", np.float64), ("state", np.float16), ("actions", np.int32), ("reward", np.float64),
     ("filled", np.int64), ("terminated", np.float32), ("avail_actions", np.int8), ("agent_reward", np.float64),
     ("won", np.int32), ("behaviour_probs", np.float64)],
)
def test_wrong_dtype(disc, key, dtype):
    disc[key] = disc[key].astype(dtype)
    defect(disc, DISCRETE, key, "dtype", np.dtype(dtype).name)


def test_continuous_actions_must_be_float32(cont):
    cont["actions"] = cont["actions"].astype(np.int64)
    defect(cont, CONTINUOUS, "actions", "dtype", "float32")


def test_not_an_array(disc):
    disc["reward"] = disc["reward"].tolist()
    defect(disc, DISCRETE, "reward", "numpy array")


@pytest.mark.parametrize("key", ["obs", "reward", "filled", "actions"])
def test_wrong_rank(disc, key):
    disc[key] = disc[key][..., None]
    defect(disc, DISCRETE, key, "rank")


def test_continuous_actions_rank(cont):
    cont["actions"] = cont["actions"][..., 0]
    defect(cont, CONTINUOUS, "actions", "rank")


@pytest.mark.parametrize(
    "key, axis, spec_word",
    [("obs", 3, "obs_dim"), ("obs", 2, "n_agents"), ("obs", 1, "episode_limit+1"), ("state", 2, "state_dim"),
     ("avail_actions", 3, "n_actions"), ("reward", 1, "episode_limit"), ("actions", 2, "n_agents"),
     ("behaviour_probs", 3, "n_actions"), ("agent_reward", 2, "n_agents")],
)
def test_shape_disagrees_with_spec(disc, key, axis, spec_word):
    disc[key] = np.concatenate([disc[key], disc[key].take([0], axis=axis)], axis=axis)
    defect(disc, DISCRETE, key, "shape", spec_word)


@pytest.mark.parametrize("key", ["state", "actions", "filled", "won", "agent_reward"])
def test_episode_counts_differ(disc, key):
    disc[key] = disc[key][:-1]
    defect(disc, DISCRETE, key, "episodes", "6 episodes", "7")


def test_empty_dataset():
    arrays = {k: v[:0] for k, v in example_arrays(DISCRETE, 2).items()}
    defect(arrays, DISCRETE, "obs", "0 episodes")


def test_mask_values_must_be_binary(disc):
    disc["avail_actions"][0, 0, 0, 0] = 2
    defect(disc, DISCRETE, "avail_actions", "0 or 1")


def test_filled_must_be_a_prefix():
    arrays = example_arrays(DISCRETE, 3, lengths=[6, 4, 2])
    arrays["filled"][1, 2] = 0  # steps 0,1 filled, 2 not, 3 filled
    err = defect(arrays, DISCRETE, "filled", "prefix", "episode 1")
    assert "step 3" in err.problem


def test_filled_must_not_start_unfilled():
    arrays = example_arrays(DISCRETE, 3, lengths=[6, 4, 2])
    arrays["filled"][2, 0] = 0
    defect(arrays, DISCRETE, "filled", "prefix", "episode 2")


def test_episode_without_filled_step():
    arrays = example_arrays(DISCRETE, 3, lengths=[6, 4, 2])
    arrays["filled"][1] = 0
    arrays["terminated"][1] = 0
    defect(arrays, DISCRETE, "filled", "no filled step", "episode 1")


def test_terminated_before_last_filled_step():
    arrays = example_arrays(DISCRETE, 2, lengths=[5, 3])
    arrays["terminated"][0] = 0
    arrays["terminated"][0, 2] = 1
    defect(arrays, DISCRETE, "terminated", "last filled step", "episode 0, step 2")


def test_terminated_more_than_once():
    arrays = example_arrays(DISCRETE, 2, lengths=[5, 3])
    arrays["terminated"][1, [0, 2]] = 1
    defect(arrays, DISCRETE, "terminated", "last filled step", "episode 1, step 0")


def test_terminated_on_padding():
    arrays = example_arrays(DISCRETE, 2, lengths=[5, 3])
    arrays["terminated"][1] = 0
    arrays["terminated"][1, 4] = 1
    defect(arrays, DISCRETE, "terminated", "last filled step", "episode 1, step 4")


@pytest.mark.parametrize("key", ["obs", "state", "reward", "agent_reward", "behaviour_probs"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(disc, key, bad):
    index = (3,) + (1,) * (disc[key].ndim - 1)
    disc[key][index] = bad
    err = defect(disc, DISCRETE, key, "finite")
    assert str(index) in err.problem


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_continuous_actions(cont, bad):
    cont["actions"][2, 0, 1, 1] = bad
    defect(cont, CONTINUOUS, "actions", "finite")


@pytest.mark.parametrize("value", [-1, 5, 99])
def test_discrete_action_out_of_range(value):
    arrays = example_arrays(DISCRETE, 3, lengths=[6, 6, 2])
    arrays["actions"][1, 4, 1] = value
    defect(arrays, DISCRETE, "actions", "outside [0, 5)", f"action {value}", "episode 1, step 4, agent 1")


def test_discrete_action_out_of_range_on_padding():
    arrays = example_arrays(DISCRETE, 3, lengths=[6, 6, 2])
    arrays["actions"][2, 5, 0] = -1
    defect(arrays, DISCRETE, "actions", "outside [0, 5)", "episode 2, step 5")


def test_discrete_action_not_available():
    arrays = example_arrays(DISCRETE, 3, lengths=[6, 6, 2])
    a = arrays["actions"][0, 3, 1]
    arrays["avail_actions"][0, 3, 1, a] = 0
    arrays["avail_actions"][0, 3, 1, (a + 1) % 5] = 1
    defect(arrays, DISCRETE, "actions", "avail", "episode 0, step 3, agent 1")


def test_unavailable_action_on_padding_is_allowed():
    arrays = example_arrays(DISCRETE, 2, lengths=[6, 2])
    assert arrays["avail_actions"][1, 4].sum() == 0 and arrays["actions"][1, 4].sum() == 0
    validate_arrays(arrays, DISCRETE, FILE)


@pytest.mark.parametrize("value", [-0.75, 2.5])
def test_continuous_action_out_of_bounds(cont, value):
    t = 0
    cont["actions"][4, t, 1, 0] = value
    defect(cont, CONTINUOUS, "actions", "bounds", "action_low", "episode 4, step 0, agent 1, dim 0")


def test_continuous_bounds_only_on_filled_steps():
    spec = EnvSpec("c", 1, 1, 1, 1, action_type="continuous", episode_limit=3, action_low=0.5, action_high=1.0)
    arrays = example_arrays(spec, 2, lengths=[3, 1])  # padding actions are 0.0 < action_low
    validate_arrays(arrays, spec, FILE)


def test_spec_may_be_a_dict_or_json(disc):
    validate_arrays(disc, DISCRETE.to_dict(), FILE)
    validate_arrays(disc, DISCRETE.to_json(), FILE)
    with pytest.raises(DatasetError, match="key 'spec'"):
        validate_arrays(disc, "{not json", FILE)


def test_dataset_error_is_a_picklable_value_error():
    err = DatasetError("f.h5", "obs", "is wrong")
    assert isinstance(err, ValueError)
    assert str(err) == "f.h5: key 'obs': is wrong"
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.key, again.problem, str(again)) == ("f.h5", "obs", "is wrong", str(err))


# ----------------------------------------------------------------------------- files


def file_error(path: Path, key: str, *words: str) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        read_dataset(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key '{key}': "), message
    for word in words:
        assert word in message, (word, message)
    return info.value


def test_validation_on_read_names_the_file(tmp_path, disc):
    path = write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE})
    with h5py.File(path, "r+") as f:
        f["state"][2, 1, 0] = np.nan
    file_error(path, "state", "finite")
    data = read_dataset(path, validate=False)  # the raw data is still reachable
    assert np.isnan(data.arrays["state"][2, 1, 0])


def test_missing_file(tmp_path):
    file_error(tmp_path / "nope.h5", "<file>", "does not exist")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.touch()
    file_error(path, "<file>", "empty")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("obs,state\n1,2\n")
    file_error(path, "<file>", "HDF5")


def test_directory(tmp_path):
    file_error(tmp_path, "<file>", "regular file")


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.9, 0.999])
def test_truncated_file(tmp_path, disc, keep):
    path = write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE})
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DatasetError) as info:
        read_dataset(path)
    assert str(info.value).startswith(f"{path}: key '")
    assert "truncated" in str(info.value)


@pytest.mark.parametrize("version", [None, 2, "1"])
def test_wrong_or_missing_format_version(tmp_path, disc, version):
    path = write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE})
    with h5py.File(path, "r+") as f:
        if version is None:
            del f.attrs["format_version"]
        else:
            f.attrs["format_version"] = version
    file_error(path, "format_version", "format_version", "1")


@pytest.mark.parametrize("spec_text", [None, "{broken", '{"env_id": "x"}'])
def test_missing_or_bad_spec(tmp_path, disc, spec_text):
    path = write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE})
    with h5py.File(path, "r+") as f:
        if spec_text is None:
            del f.attrs["spec"]
        else:
            f.attrs["spec"] = spec_text
    file_error(path, "spec", "spec")


def test_attribute_disagreeing_with_spec(tmp_path, disc):
    path = write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE})
    with h5py.File(path, "r+") as f:
        f.attrs["n_agents"] = 3
    file_error(path, "n_agents", "spec says 2")


def test_refuses_to_overwrite(tmp_path, disc):
    path = write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE, "quality": "first"})
    with pytest.raises(FileExistsError, match="d.h5"):
        write_dataset(path, disc, {"spec": DISCRETE, "quality": "second"})
    assert read_dataset(path).attrs["quality"] == "first"
    write_dataset(path, disc, {"spec": DISCRETE, "quality": "second"}, overwrite=True)
    assert read_dataset(path).attrs["quality"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]


def test_write_is_atomic(tmp_path, disc):
    write_dataset(tmp_path / "sub" / "ok.h5", disc, {"spec": DISCRETE})
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["ok.h5"]
    disc["reward"][0, 0] = np.nan
    with pytest.raises(DatasetError, match="finite"):
        write_dataset(tmp_path / "sub" / "bad.h5", disc, {"spec": DISCRETE})
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["ok.h5"]


def test_failed_hdf5_write_leaves_nothing(tmp_path, disc):
    disc["unstorable"] = np.array([object()], dtype=object)
    with pytest.raises(TypeError):
        write_dataset(tmp_path / "d.h5", disc, {"spec": DISCRETE})
    assert list(tmp_path.iterdir()) == []


def test_write_requires_spec(tmp_path, disc):
    with pytest.raises(ValueError, match="spec"):
        write_dataset(tmp_path / "d.h5", disc, {"quality": "x"})
    assert list(tmp_path.iterdir()) == []
