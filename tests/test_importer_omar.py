"""The ``omar-npy`` importer (OMAR's flat per-agent transition folders, REFERENCE.md).

Sources are written here in OMAR's layout, ``<env>/<quality>/seed_<k>_data/
{obs,acs,rews,next_obs,dones}_<i>.npy`` (+ ``states_<i>``, ``next_states_<i>``),
as continuous streams of episodes; the expected schema-v1 arrays are built
step by step with loops, independently of the vectorised importer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lit_omarl.data.importers import IMPORTERS, import_dataset, import_omar_npy
from lit_omarl.data.schema import DatasetError, read_dataset
from lit_omarl.spec import EnvSpec


def write_omar(folder: Path, episodes, obs_dims, act_dims, *, state_dim=None, seed=0, low=-1.0, high=1.0):
    """Write an OMAR folder holding ``episodes`` [(length, done_at_end)] back to back; return the source arrays."""
    rng = np.random.default_rng(seed)
    k = len(obs_dims)
    src = {f"{f}_{i}": [] for i in range(k) for f in ("obs", "acs", "rews", "next_obs", "dones")}
    if state_dim:
        src.update({f"{f}_{i}": [] for i in range(k) for f in ("states", "next_states")})
    for length, done in episodes:
        seq = [rng.standard_normal(d) for d in obs_dims]
        state = rng.standard_normal(state_dim) if state_dim else None
        for t in range(length):
            nxt = [rng.standard_normal(d) for d in obs_dims]
            nstate = rng.standard_normal(state_dim) if state_dim else None
            for i in range(k):
                src[f"obs_{i}"].append(seq[i])
                src[f"next_obs_{i}"].append(nxt[i])
                src[f"acs_{i}"].append(rng.uniform(low, high, act_dims[i]))
                src[f"rews_{i}"].append(rng.standard_normal())
                src[f"dones_{i}"].append(float(done and t == length - 1))
                if state_dim:
                    src[f"states_{i}"].append(state)
                    src[f"next_states_{i}"].append(nstate)
            seq, state = nxt, nstate
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, rows in src.items():
        out[key] = np.array(rows, dtype=np.float32)
        np.save(folder / f"{key}.npy", out[key])
    return out


def expected(src, episodes, n, T, O, A, *, state_from=None, team="mean"):
    """Schema-v1 arrays of ``episodes`` written step by step."""
    E = len(episodes)
    k = sum(1 for key in src if key.startswith("obs_"))
    S = src["states_0"].shape[1] if state_from == "states" else sum(src[f"obs_{i}"].shape[1] for i in range(k))
    exp = {
        "obs": np.zeros((E, T + 1, n, O), np.float32), "state": np.zeros((E, T + 1, S), np.float32),
        "actions": np.zeros((E, T, n, A), np.float32), "reward": np.zeros((E, T), np.float32),
        "terminated": np.zeros((E, T), np.uint8), "filled": np.zeros((E, T), np.uint8),
        "agent_reward": np.zeros((E, T, n), np.float32),
    }
    m = 0
    for e, (length, done) in enumerate(episodes):
        for t in range(length):
            exp["filled"][e, t] = 1
            for i in range(n):
                o = src[f"obs_{i}"][m]
                exp["obs"][e, t, i, : len(o)] = o
                a = src[f"acs_{i}"][m]
                exp["actions"][e, t, i, : len(a)] = a
                exp["agent_reward"][e, t, i] = src[f"rews_{i}"][m]
            rews = [src[f"rews_{i}"][m] for i in range(n)]
            exp["reward"][e, t] = np.mean(rews) if team == "mean" else rews[0]
            if state_from == "states":
                exp["state"][e, t] = src["states_0"][m]
            else:
                exp["state"][e, t] = np.concatenate([src[f"obs_{i}"][m] for i in range(k)])
            if t == length - 1:  # slot L: the observation after the last step
                for i in range(n):
                    o = src[f"next_obs_{i}"][m]
                    exp["obs"][e, length, i, : len(o)] = o
                if state_from == "states":
                    exp["state"][e, length] = src["next_states_0"][m]
                else:
                    exp["state"][e, length] = np.concatenate([src[f"next_obs_{i}"][m] for i in range(k)])
                exp["terminated"][e, t] = int(done)
            m += 1
    return exp


TAG_EPISODES = [(25, False), (25, False), (25, False), (7, False)]  # the stream stops mid-episode


def test_mpe_tag_round_trip_with_prey_files(tmp_path):
    """3 predators (obs 16, action 2) + the prey (obs 14); env and quality from the path; state = all 4 obs."""
    folder = tmp_path / "simple_tag" / "medium-replay" / "seed_0_data"
    src = write_omar(folder, TAG_EPISODES, (16, 16, 16, 14), (2, 2, 2, 2))
    out = tmp_path / "tag.h5"
    arrays, attrs = import_omar_npy(folder, out=out)
    exp = expected(src, TAG_EPISODES, 3, 25, 16, 2)
    data = read_dataset(out)
    for key, value in exp.items():
        np.testing.assert_allclose(arrays[key], value, rtol=0, atol=0, err_msg=key)
        np.testing.assert_array_equal(data.arrays[key], value, err_msg=key)
    spec = data.spec
    assert (spec.env_id, spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions) == ("mpe/simple_tag", 3, 16, 62, 2)
    assert spec.action_type == "continuous" and spec.episode_limit == 25
    assert data.attrs["quality"] == "medium_replay" and data.attrs["env_check"] == "ok"
    assert data.attrs["non_learning_agents"] == [3] and data.attrs["partial_last_episode"]
    assert data.attrs["n_source_transitions"] == 82 and data.attrs["generator"].endswith("import omar-npy")
    assert data.lengths().tolist() == [25, 25, 25, 7] and not data.arrays["terminated"].any()


def test_states_dones_padding_and_given_spec(tmp_path):
    """HalfCheetah-like: state files, unequal agent sizes (padded), dones end episodes (terminated)."""
    episodes = [(6, False), (3, True), (6, True), (2, False)]
    folder = tmp_path / "data"
    src = write_omar(folder, episodes, (5, 4), (3, 2), state_dim=7)
    spec = EnvSpec("toy/cont", n_agents=2, obs_dim=5, state_dim=7, n_actions=3, action_type="continuous", episode_limit=6)
    arrays, attrs = import_omar_npy(folder, spec, quality="expert")
    exp = expected(src, episodes, 2, 6, 5, 3, state_from="states")
    for key, value in exp.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
    assert [v.tolist() for v in arrays["terminated"].nonzero()] == [[1, 2], [2, 5]]
    assert attrs["n_terminated_at_limit"] == 1 and attrs["quality"] == "expert"
    assert (arrays["obs"][:, :, 1, 4] == 0).all() and (arrays["actions"][..., 1, 2] == 0).all()  # padding
    cleared, _ = import_omar_npy(folder, spec, clear_terminated_at_limit=True)
    assert [v.tolist() for v in cleared["terminated"].nonzero()] == [[1], [2]]
    team_first, _ = import_omar_npy(folder, spec, team_reward="first")
    np.testing.assert_array_equal(team_first["reward"], expected(src, episodes, 2, 6, 5, 3, state_from="states", team="first")["reward"])


def test_episode_split_by_continuity(tmp_path):
    spec = EnvSpec("toy/cont", n_agents=1, obs_dim=3, state_dim=3, n_actions=1, action_type="continuous", episode_limit=5)
    # an episode that ends early without dones (a discontinuity) is refused unless allowed
    folder = tmp_path / "short"
    write_omar(folder, [(5, False), (2, False), (5, False)], (3,), (1,))
    with pytest.raises(DatasetError, match=r"next_obs_0\.npy: key 'next_obs_0': 1 episode\(s\) end before episode_limit=5 without dones") as err:
        import_omar_npy(folder, spec)
    assert err.value.key == "next_obs_0"
    arrays, attrs = import_omar_npy(folder, spec, allow_short_episodes=True)
    assert arrays["filled"].sum(1).tolist() == [5, 2, 5] and attrs["n_short_episodes"] == 1
    # a stream that stays continuous past the limit belongs to another env / limit
    folder = tmp_path / "long"
    write_omar(folder, [(8, False), (5, False)], (3,), (1,))
    with pytest.raises(DatasetError, match="stays continuous past episode_limit=5 at transition 4"):
        import_omar_npy(folder, spec)
    arrays, attrs = import_omar_npy(folder, spec, split="fixed")  # the 13 transitions cut every 5, continuity ignored
    assert arrays["filled"].sum(1).tolist() == [5, 5, 3] and attrs["split"] == "fixed" and attrs["partial_last_episode"]


def test_layout_errors_name_file_and_key(tmp_path):
    spec = EnvSpec("toy/cont", n_agents=2, obs_dim=3, state_dim=6, n_actions=2, action_type="continuous", episode_limit=4)
    good = tmp_path / "good"
    write_omar(good, [(4, False), (4, False)], (3, 3), (2, 2))

    def broken(name, edit):
        folder = tmp_path / name
        write_omar(folder, [(4, False), (4, False)], (3, 3), (2, 2))
        edit(folder)
        return folder

    cases = [
        (broken("no_acs", lambda f: (f / "acs_1.npy").unlink()), "acs_1", "required file is missing"),
        (broken("rank", lambda f: np.save(f / "obs_0.npy", np.zeros(8, np.float32))), "obs_0", r"expected shape \[M, dim\], got \(8,\)"),
        (broken("count", lambda f: np.save(f / "rews_1.npy", np.zeros(7, np.float32))), "rews_1", "holds 7 transitions but obs_0.npy holds 8"),
        (broken("next", lambda f: np.save(f / "next_obs_1.npy", np.zeros((8, 4), np.float32))), "next_obs_1", r"differs from obs_1\.npy"),
        (broken("nan", lambda f: np.save(f / "rews_0.npy", np.full(8, np.nan, np.float32))), "rews_0", "non-finite value nan at transition 0"),
        (broken("gap", lambda f: np.save(f / "obs_3.npy", np.zeros((8, 3), np.float32))), "obs_2", r"files of agent\(s\) >= 2 exist"),
        (broken("bounds", lambda f: np.save(f / "acs_0.npy", np.full((8, 2), 1.5, np.float32))), "acs_0",
         r"action 1\.5 at transition 0, entry 0 is outside \[-1\.0, 1\.0\] \(16 entries; pass clip_actions=True"),
        (tmp_path / "empty", "obs_0", "required file is missing: an OMAR dataset folder"),
    ]
    (tmp_path / "empty").mkdir()
    for folder, key, message in cases:
        with pytest.raises(DatasetError, match=message) as err:
            import_omar_npy(folder, spec)
        assert err.value.key == key and err.value.path == str((folder / f"{key}.npy").resolve()), (folder, err.value)
    arrays, attrs = import_omar_npy(tmp_path / "bounds", spec, clip_actions=True)
    assert attrs["n_actions_clipped"] == 16 and arrays["actions"][..., 0, :].max() == 1.0
    with pytest.raises(DatasetError, match="source folder does not exist"):
        import_omar_npy(tmp_path / "nope", spec)
    with pytest.raises(ValueError, match="cannot derive the env from the path"):
        import_omar_npy(good)
    import_omar_npy(good, spec)  # the untouched folder imports


def test_dimensions_checked_against_the_registered_env(tmp_path):
    folder = tmp_path / "simple_spread" / "expert" / "seed_1_data"
    write_omar(folder, [(25, False)], (15, 18, 18), (2, 2, 2))
    with pytest.raises(DatasetError, match="agent 0 observes 15 features but 'mpe/simple_spread' gives it 18") as err:
        import_omar_npy(folder)
    assert err.value.key == "obs_0"
    folder = tmp_path / "simple_spread" / "expert" / "seed_2_data"
    write_omar(folder, [(25, False)], (18, 18, 18), (5, 5, 5))  # mpe2-format actions into the default "xy" env
    with pytest.raises(DatasetError, match="agent 0 has 5 action entries but 'mpe/simple_spread' gives it 2"):
        import_omar_npy(folder)
    arrays, attrs = import_omar_npy(folder, "mpe/simple_spread", env_options={"action_mode": "mpe2"}, clip_actions=True)
    assert attrs["spec"].env_options["action_mode"] == "mpe2" and arrays["actions"].shape == (1, 25, 3, 5)


def test_registered_format_and_import_dataset(tmp_path):
    assert "omar-npy" in IMPORTERS
    folder = tmp_path / "simple_spread" / "random" / "seed_0_data"
    write_omar(folder, [(25, False), (25, False)], (18, 18, 18), (2, 2, 2))
    out = import_dataset("omar-npy", folder, None, tmp_path / "spread_random.h5")
    data = read_dataset(out)
    assert data.spec.env_id == "mpe/simple_spread" and data.attrs["quality"] == "random" and data.n_episodes == 2
    with pytest.raises(FileExistsError):
        import_dataset("omar-npy", folder, None, out)


def test_halfcheetah_layout_against_mamujoco(tmp_path):
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium_robotics")
    folder = tmp_path / "HalfCheetah-v2" / "medium" / "seed_0_data"
    src = write_omar(folder, [(5, False), (3, False)], (11, 11), (3, 3), state_dim=17)
    arrays, attrs = import_omar_npy(folder, env_options={"episode_limit": 5}, allow_short_episodes=True)
    spec = attrs["spec"]
    assert spec.env_id == "mamujoco/HalfCheetah-2x3" and spec.env_options["agent_obsk"] == 0 and attrs["env_check"] == "ok"
    np.testing.assert_array_equal(arrays["state"], expected(src, [(5, False), (3, False)], 2, 5, 11, 3, state_from="states")["state"])
