"""`lit-omarl data ...`: generate, validate (every defect rejected clearly), card, import errors."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from lit_omarl.cli import main
from lit_omarl.data.schema import example_arrays, write_dataset
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec(env_id="test/toy", n_agents=2, obs_dim=4, state_dim=3, n_actions=3, episode_limit=6)


def _valid(tmp_path, name="ok.h5"):
    return write_dataset(tmp_path / name, example_arrays(SPEC, n_episodes=6, seed=1), {"spec": SPEC})


def _replace(f, key, value):
    del f[key]
    f[key] = value


def _first_len(f):
    return int(np.asarray(f["filled"][0]).sum())


# (defect name, mutation of an open r+ file, words the message must contain)
DEFECTS = {
    "missing key": (lambda f: f.__delitem__("reward"), ["reward", "missing"]),
    "wrong dtype": (lambda f: _replace(f, "obs", np.asarray(f["obs"]).astype(np.float64)), ["obs", "dtype"]),
    "wrong rank": (lambda f: _replace(f, "reward", np.asarray(f["reward"])[..., None]), ["reward"]),
    "mismatched episode counts": (lambda f: _replace(f, "reward", np.asarray(f["reward"])[:-1]), ["reward", "episode"]),
    "mask with a hole": (lambda f: _replace(f, "filled", _holey(np.asarray(f["filled"]))), ["filled", "prefix"]),
    "non-finite reward": (lambda f: _replace(f, "reward", _nan_at_start(np.asarray(f["reward"]))), ["reward", "finite"]),
    "non-finite obs": (lambda f: _replace(f, "obs", _inf_obs(np.asarray(f["obs"]))), ["obs", "finite"]),
    "action outside avail": (lambda f: _unavailable(f), ["actions", "avail"]),
    "wrong format_version": (lambda f: f.attrs.__setitem__("format_version", 99), ["format_version"]),
}


def _holey(filled):
    filled = filled.copy()
    filled[0, :] = 0
    filled[0, 0] = 1
    filled[0, 2] = 1
    return filled


def _nan_at_start(reward):
    reward = reward.copy()
    reward[0, 0] = np.nan
    return reward


def _inf_obs(obs):
    obs = obs.copy()
    obs[1, 0, 0, 0] = np.inf
    return obs


def _unavailable(f):
    avail = np.asarray(f["avail_actions"]).copy()
    a = int(np.asarray(f["actions"])[0, 0, 0])
    avail[0, 0, 0, :] = 1
    avail[0, 0, 0, a] = 0
    _replace(f, "avail_actions", avail)


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_validate_rejects_each_defect_naming_file_key_and_problem(tmp_path, capsys, defect):
    path = _valid(tmp_path, "bad.h5")
    mutate, words = DEFECTS[defect]
    with h5py.File(path, "r+") as f:
        mutate(f)
    assert main(["data", "validate", str(path)]) != 0
    err = capsys.readouterr().err
    assert str(path) in err, err
    for word in words:
        assert word in err, (defect, err)


def test_validate_rejects_empty_and_truncated_and_non_hdf5(tmp_path, capsys):
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w"):
        pass
    truncated = _valid(tmp_path, "trunc.h5")
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    for path in (empty, truncated, text):
        assert main(["data", "validate", str(path)]) != 0
        assert str(path) in capsys.readouterr().err


def test_generate_validate_card_round_trip(tmp_path, capsys):
    out = tmp_path / "xor_b.h5"
    assert main(["data", "generate", "--env", "matrix/xor", "--behaviour", "xor-b", "--episodes", "60", "--seed", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "validate", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("OK") and "episodes=60" in line and "\n" not in line
    assert main(["data", "card", str(out)]) == 0
    card = capsys.readouterr().out
    assert "matrix/xor" in card and "60" in card
    # never silently overwritten
    assert main(["data", "generate", "--env", "matrix/xor", "--behaviour", "xor-a", "--episodes", "10", "--seed", "0", "--out", str(out)]) != 0
    assert "exist" in capsys.readouterr().err


def test_generate_with_custom_payoff_and_equal_line_n(tmp_path, capsys):
    out = tmp_path / "m.h5"
    assert main(["data", "generate", "--env", "matrix", "--payoff", "[[1,0,0],[0,2,0],[0,0,3]]", "--behaviour", "uniform",
                 "--episodes", "20", "--seed", "1", "--out", str(out)]) == 0
    out2 = tmp_path / "el.h5"
    assert main(["data", "generate", "--env", "equal_line", "--n", "4", "--behaviour", "expert",
                 "--episodes", "4", "--seed", "1", "--out", str(out2)]) == 0
    from lit_omarl.data.schema import read_dataset

    assert read_dataset(out).spec.n_actions == 3
    assert read_dataset(out2).spec.n_agents == 4


def test_bad_generate_arguments_fail_clearly(tmp_path, capsys):
    assert main(["data", "generate", "--env", "matrix/nope", "--behaviour", "uniform", "--episodes", "2", "--seed", "0", "--out", str(tmp_path / "x.h5")]) != 0
    assert "matrix/nope" in capsys.readouterr().err
    assert main(["data", "generate", "--env", "matrix/xor", "--behaviour", "probs:0.5", "--episodes", "2", "--seed", "0", "--out", str(tmp_path / "y.h5")]) != 0
    assert "probs" in capsys.readouterr().err


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "lit_omarl.cli", "data", "validate", "/nonexistent.h5"], capture_output=True, text=True)
    assert res.returncode != 0 and "/nonexistent.h5" in res.stderr


def test_policy_behaviour_errors_name_the_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "p.h5")
    assert main(["data", "generate", "--env", "matrix/xor", "--behaviour", "policy:/nonexistent.pt", "--episodes", "2", "--seed", "0", "--out", out]) != 0
    assert "/nonexistent.pt" in capsys.readouterr().err
    assert main(["data", "generate", "--env", "matrix/xor", "--behaviour", "policy:", "--episodes", "2", "--seed", "0", "--out", out]) != 0
    assert "policy:<checkpoint path>" in capsys.readouterr().err
