"""The SMAX dataset recipe (lit_omarl.behaviour.recipe, ``lit-omarl data smax-recipe``) and qmix_online's early stop.

The SMAX part runs the recipe once on 4 episodes per dataset with batch 4
(the (2s3z, B = 4) compile is shared with tests/test_smax.py and cached on
disk by JAX).
"""

import importlib.util
import json

import h5py
import numpy as np
import pytest
import torch

from lit_omarl.behaviour import recipe as R
from lit_omarl.cli import main
from lit_omarl.data.schema import example_arrays, read_dataset, write_dataset

needs_smax = pytest.mark.skipif(importlib.util.find_spec("jaxmarl") is None or importlib.util.find_spec("jax") is None,
                                reason="jaxmarl (pip install lit-omarl[smax]) is not installed")
E, B = 4, 4


# ---------------------------------------------------------------- without SMAX
def test_behaviours_seeds_and_bands_of_the_recipe():
    specs = R.behaviours("2s3z")
    assert specs["medium"] == "policy:smax_2s3z/medium" and specs["expert"] == "policy:smax_2s3z/expert"
    pool = "mix:policy:smax_2s3z/expert|policy:smax_2s3z/medium|epsilon:0.5:policy:smax_2s3z/medium"
    assert specs["omac_good"] == f"band:2/3:1:{pool}"
    assert specs["omac_medium"] == f"band:1/3:2/3:{pool}"
    assert specs["omac_poor"] == f"band:0:1/3:{pool}"
    assert [R.generation_seed(q, 7) for q in ("medium", "expert", "omac_good", "omac_poor")] == [7001, 7002, 7003, 7003]


def test_missing_policies_and_bad_arguments_fail_clearly(tmp_path, capsys):
    with pytest.raises(R.RecipeError, match=r"lit_omarl/assets/behaviour/smax_3m/ lacks medium\.pt, expert\.pt"):
        R.smax_recipe("3m", tmp_path / "out", episodes=E)
    (tmp_path / "pol").mkdir()
    (tmp_path / "pol" / "medium.pt").write_bytes(b"")
    with pytest.raises(R.RecipeError, match=r"--policy-dir .*pol lacks expert\.pt"):
        R.smax_recipe("2s3z", tmp_path / "out", episodes=E, policy_dir=tmp_path / "pol")
    with pytest.raises(R.RecipeError, match="--only: unknown quality 'best'"):
        R.smax_recipe("2s3z", tmp_path / "out", qualities=["medium", "best"])
    with pytest.raises(R.RecipeError, match="--replay .*nothing.h5: no such file"):
        R.smax_recipe("2s3z", tmp_path / "out", qualities=["medium_replay"], replay=tmp_path / "nothing.h5")
    assert main(["data", "smax-recipe", "--map", "3m", "--out-dir", str(tmp_path / "o")]) == 1
    assert "smax_3m" in capsys.readouterr().err


def test_generate_command_takes_batch_size(tmp_path):
    out = tmp_path / "x.h5"
    assert main(["data", "generate", "--env", "matrix/xor", "--behaviour", "xor-b", "--episodes", "20", "--seed", "0",
                 "--batch-size", "7", "--out", str(out)]) == 0
    data = read_dataset(out)
    assert int(data.attrs["batch_size"]) == 7 and data.attrs["simulated_steps"] == 21  # 3 batches of 7 one-step episodes


def test_qmix_online_stops_once_the_replay_milestone_is_dumped(tmp_path, monkeypatch):
    from lit_omarl.behaviour import _online_common
    from lit_omarl.behaviour import qmix_online as Q

    scripted = iter([0.5, 0.0, 0.25, 0.31, 0.9, 0.9])  # test 0 runs before any episode: its dump has to wait

    def fake_test(policy, env, episodes, seed):
        return {"win_rate": next(scripted), "return": 0.0, "episode_length": 10.0}

    monkeypatch.setattr(_online_common, "greedy_test", fake_test)
    cfg = Q.QMIXOnlineConfig(env_id="mmdp", env_steps=10**6, num_envs=2, batch_size=2, eval_every=20, eval_episodes=2,
                             checkpoint_every=0, milestones=(0.3,), replay_milestones=(0.3,), stop_at_win_rate=0.3)
    summary = Q.train_qmix(cfg, tmp_path / "run")
    # tests at 0, 20, 40, 60 env steps (mmdp episodes last 10 steps, 2 run in parallel): 0.5 (empty buffer), 0.0, 0.25, 0.31
    assert [p["win_rate"] for p in summary["curve"]] == [0.5, 0.0, 0.25, 0.31]
    assert summary["stopped_at_win_rate"] and summary["env_steps"] == 60
    assert summary["replay_dumps"] == ["replay_winrate_0.30.h5"]
    replay = read_dataset(tmp_path / "run" / "replay_winrate_0.30.h5")
    assert replay.n_episodes == 6 and replay.attrs["env_steps"] == 60 and replay.attrs["win_rate"] == 0.31
    assert (tmp_path / "run" / "final.pt").exists() and (tmp_path / "run" / "winrate_0.30.pt").exists()


# ---------------------------------------------------------------- with SMAX
@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    pytest.importorskip("jax")
    if importlib.util.find_spec("jaxmarl") is None:
        pytest.skip("jaxmarl is not installed")
    from lit_omarl.envs.smax import smax_spec

    root = tmp_path_factory.mktemp("recipe")
    spec = smax_spec("2s3z")
    replay = write_dataset(root / "replay_winrate_0.34.h5", example_arrays(spec, 3, seed=2),
                           {"spec": spec, "quality": "medium_replay", "env_steps": 1234, "win_rate": 0.34375})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        items = R.smax_recipe("2s3z", root / "out", episodes=E, seed=0, batch_size=B, replay=replay, log=None)
    finally:
        torch.set_num_threads(before)
    return root, items


@needs_smax
def test_recipe_writes_every_quality_with_its_definition(recipe_run):
    root, items = recipe_run
    assert [i.quality for i in items] == list(R.QUALITIES) and all(i.status == "generated" for i in items)
    files = {q: R.dataset_path(root / "out", "2s3z", q) for q in R.QUALITIES}
    data = {q: read_dataset(p) for q, p in files.items()}
    for q, d in data.items():
        assert d.spec.env_id == "smax/2s3z" and d.attrs["quality"] == q
    for q in ("medium", "expert", "mixed", "omac_good", "omac_medium", "omac_poor"):
        assert data[q].n_episodes == E
    assert int(data["medium"].attrs["seed"]) == 1 and int(data["expert"].attrs["seed"]) == 2
    assert data["expert"].attrs["behaviour"] == "policy:smax_2s3z/expert"

    # mixed: medium 0, expert 0, medium 1, expert 1 (every array, exactly)
    for key in data["mixed"].arrays:
        med, exp, mix = (np.asarray(data[q].arrays[key]) for q in ("medium", "expert", "mixed"))
        np.testing.assert_array_equal(mix[0::2], med[:2], err_msg=key)
        np.testing.assert_array_equal(mix[1::2], exp[:2], err_msg=key)

    # OMAC bands: R_max = 2; poor [0, 2/3), medium [2/3, 4/3), good [4/3, 2] = won episodes
    ret = {q: data[q].returns() for q in ("omac_good", "omac_medium", "omac_poor")}
    assert (ret["omac_poor"] >= 0).all() and (ret["omac_poor"] < 2 / 3).all()
    assert (ret["omac_medium"] >= 2 / 3).all() and (ret["omac_medium"] < 4 / 3).all()
    assert (ret["omac_good"] >= 4 / 3).all() and data["omac_good"].arrays["won"].all()
    assert not data["omac_medium"].arrays["won"].any() and not data["omac_poor"].arrays["won"].any()
    assert all(int(data[q].attrs["seed"]) == 3 for q in ret)  # one pool stream for the three bands

    # medium_replay: the dump, copied with its provenance
    rep = data["medium_replay"]
    assert rep.n_episodes == 3 and rep.attrs["env_steps"] == 1234 and rep.attrs["replay_sha256"] == R.sha256_file(root / "replay_winrate_0.34.h5")
    src = read_dataset(root / "replay_winrate_0.34.h5")
    for key in src.arrays:
        np.testing.assert_array_equal(np.asarray(rep.arrays[key]), np.asarray(src.arrays[key]), err_msg=key)

    manifest = json.loads((root / "out" / "recipe.json").read_text())
    for q in R.QUALITIES:
        entry = manifest["datasets"][q]
        assert entry["sha256"] == R.sha256_file(files[q]) and entry["size_bytes"] == files[q].stat().st_size
    assert "--seed 1 --batch-size 4 --quality medium" in manifest["datasets"]["medium"]["command"]


@needs_smax
def test_recipe_is_cached_deterministic_and_never_overwrites(recipe_run, tmp_path):
    root, items = recipe_run
    out = root / "out"
    shas = {i.quality: i.sha256 for i in items}
    again = R.smax_recipe("2s3z", out, episodes=E, seed=0, batch_size=B, log=None)  # no --replay: the copy is kept
    assert all(i.status == "cached" for i in again) and {i.quality: i.sha256 for i in again} == shas
    # the same settings elsewhere give byte-identical files
    fresh = R.smax_recipe("2s3z", tmp_path / "fresh", episodes=E, seed=0, batch_size=B, qualities=["expert"], log=None)
    assert fresh[0].sha256 == shas["expert"]
    # other settings on an existing file: refused, naming the file and the difference
    with pytest.raises(R.RecipeError, match=r"smax_2s3z_expert\.h5: exists but was made with other settings \(seed: file has 2, recipe asks 1002"):
        R.smax_recipe("2s3z", out, episodes=E, seed=1, batch_size=B, qualities=["expert"], log=None)
    assert R.sha256_file(R.dataset_path(out, "2s3z", "expert")) == shas["expert"]


@needs_smax
def test_cards_carry_provenance_and_a_replay_of_another_map_is_refused(recipe_run, tmp_path):
    root, _ = recipe_run
    written = R.write_cards(root / "out", tmp_path / "cards", qualities=["expert", "mixed"], log=None)
    assert sorted(p.name for p in written) == ["smax_2s3z_expert.md", "smax_2s3z_mixed.md"]
    card = (tmp_path / "cards" / "smax_2s3z_expert.md").read_text()
    sha = R.sha256_file(R.dataset_path(root / "out", "2s3z", "expert"))
    assert f"| sha256 | {sha} |" in card and "## Return distribution" in card and "| win rate |" in card
    assert "`lit-omarl data generate --env smax/2s3z --behaviour policy:smax_2s3z/expert" in card

    from lit_omarl.envs.smax import smax_spec

    other = write_dataset(tmp_path / "r.h5", example_arrays(smax_spec("3m"), 2), {"spec": smax_spec("3m")})
    with pytest.raises(R.RecipeError, match=r"--replay .*r\.h5: a dump of 'smax/3m', not smax/2s3z"):
        R.smax_recipe("2s3z", tmp_path / "o2", qualities=["medium_replay"], replay=other, log=None)
