"""The continuous dataset recipe (lit_omarl.behaviour.continuous_recipe) on a tiny MATD3 run of mpe/simple_spread."""

import json
from pathlib import Path

import h5py
import pytest
import torch

import lit_omarl.behaviour.continuous_recipe as cr
from lit_omarl.behaviour.matd3_online import MATD3OnlineConfig, train_matd3
from lit_omarl.data.schema import read_dataset

ENV = "mpe/simple_spread"


def test_choose_medium_by_hand():
    curve = [{"env_steps": 0, "return": -5.0}, {"env_steps": 10, "return": -30.0}, {"env_steps": 20, "return": -19.0},
             {"env_steps": 30, "return": -17.0}, {"env_steps": 40, "return": -10.0}]
    # random -26, expert -10: threshold -26 + 0.5 * 16 = -18; step 0 is skipped (untrained); first >= -18 is step 30
    point, threshold = cr.choose_medium(curve, -26.0, -10.0)
    assert threshold == -18.0 and point["env_steps"] == 30
    assert cr.choose_medium(curve, -26.0, 20.0)[0] is None  # threshold -3 never reached


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A tiny MATD3 run shipped with fixed references (random -1000, expert 0 -> medium threshold -500)."""
    root = tmp_path_factory.mktemp("recipe")
    cfg = MATD3OnlineConfig(env_id=ENV, env_steps=300, num_envs=4, batch_size=32, start_steps=100, updates_per_step=0.25,
                            eval_every=100, eval_episodes=4, checkpoint_every=100, buffer_size=2000)
    train_matd3(cfg, root / "run")
    fake = {"random": -1000.0, "random_std": 0.0, "expert": 0.0, "expert_std": 0.0, "episodes": 4, "seed": 0}
    mp = pytest.MonkeyPatch()
    mp.setattr(cr, "measure_references", lambda *a, **k: dict(fake))
    try:
        meta = cr.ship_policies(root / "run", root / "policies", command="tiny", episodes=4, log=None)
    finally:
        mp.undo()
    return root, meta


def test_ship_policies_writes_small_actor_files_and_metadata(shipped):
    root, meta = shipped
    pol = root / "policies"
    assert meta["medium"]["threshold"] == -500.0 and meta["medium"]["checkpoint"] == "step_100.pt"
    assert json.loads((pol / "policies.json").read_text())["env_id"] == ENV
    for name in ("expert.pt", "medium.pt", "train_config.json", "curve.jsonl"):
        assert (pol / name).is_file()


def test_ship_expert_candidates_reevaluates_the_best_checkpoints(shipped, tmp_path, monkeypatch):
    root, _ = shipped
    curve = [json.loads(line) for line in (root / "run" / "curve.jsonl").read_text().splitlines()]
    ranked = cr.best_checkpoints(root / "run", curve, 3)
    assert [p["return"] for _, p in ranked] == sorted((p["return"] for p in curve if p["env_steps"] > 0), reverse=True)
    assert {n for n, _ in ranked} <= {"step_100.pt", "step_200.pt", "final.pt"}  # step 300 = the final test
    seen = []
    fake = {"random": -1000.0, "random_std": 0.0, "expert": 0.0, "expert_std": 0.0, "episodes": 4, "seed": 0}
    monkeypatch.setattr(cr, "measure_references", lambda env, opts, expert, eps: seen.append(Path(expert).name) or dict(fake))
    meta = cr.ship_policies(root / "run", tmp_path / "pol", episodes=4, expert_candidates=3, candidate_episodes=4, log=None)
    cands = meta["expert"]["candidates"]
    assert [c["checkpoint"] for c in cands] == [n for n, _ in ranked]
    best = max(cands, key=lambda c: c["reevaluated_return"])
    assert meta["expert"]["checkpoint"] == best["checkpoint"] == seen[0]  # the references are measured on the pick
    shipped_actor = torch.load(tmp_path / "pol" / "expert.pt", weights_only=True)["actor"]
    picked = torch.load(root / "run" / best["checkpoint"], weights_only=True)["actor"]
    assert all(torch.equal(shipped_actor[k], picked[k]) for k in picked)
    with pytest.raises(cr.RecipeError, match="--expert-candidates: must be >= 1"):
        cr.ship_policies(root / "run", tmp_path / "p0", episodes=4, expert_candidates=0, log=None)


def test_ship_refuses_a_continued_run(shipped, tmp_path):
    root, _ = shipped
    cfg = MATD3OnlineConfig(env_id=ENV, env_steps=200, num_envs=4, batch_size=32, start_steps=50, updates_per_step=0.25,
                            eval_every=100, eval_episodes=4, checkpoint_every=100, buffer_size=2000,
                            init_from=str(root / "run" / "step_100.pt"))
    train_matd3(cfg, tmp_path / "more")
    with pytest.raises(cr.RecipeError, match="a continued run"):
        cr.ship_policies(tmp_path / "more", tmp_path / "policies", episodes=4, log=None)


def run_recipe(shipped, out, **kw):
    root, _ = shipped
    return cr.continuous_recipe(ENV, out, episodes=kw.pop("episodes", 6), seed=kw.pop("seed", 0), batch_size=6,
                                policy_dir=root / "policies", log=None, **kw)


def test_recipe_writes_four_datasets_deterministically_and_caches(shipped, tmp_path):
    items = run_recipe(shipped, tmp_path / "a")
    assert [i.quality for i in items] == ["random", "medium_replay", "medium", "expert"]
    assert all(i.status == "generated" for i in items)
    files = {i.quality: read_dataset(i.file) for i in items}
    for q in ("random", "medium", "expert"):
        assert files[q].n_episodes == 6 and files[q].attrs["quality"] == q
    assert files["random"].attrs["behaviour"] == "uniform"
    assert files["expert"].attrs["behaviour"].startswith("noise:0.1:policy:") and files["expert"].attrs["seed"] == 3
    rep = files["medium_replay"]  # the buffer of the re-run at its step-100 test: 4 completed episodes
    assert rep.n_episodes == 4 and rep.attrs["stop_at_return"] == -500.0
    assert items[1].extra["medium_policy_match"] is True
    again = run_recipe(shipped, tmp_path / "b")
    assert [i.sha256 for i in again] == [i.sha256 for i in items]  # deterministic: identical files
    cached = run_recipe(shipped, tmp_path / "a")
    assert all(i.status == "cached" for i in cached) and [i.sha256 for i in cached] == [i.sha256 for i in items]
    other_seed = run_recipe(shipped, tmp_path / "c", seed=1, qualities=["expert"])
    assert other_seed[0].sha256 != items[3].sha256
    manifest = json.loads((tmp_path / "a" / "recipe.json").read_text())
    assert set(manifest["datasets"]) == set(cr.QUALITIES) and "--seed 3" in manifest["datasets"]["expert"]["command"]


def test_recipe_never_overwrites_a_foreign_or_different_file(shipped, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    foreign = cr.dataset_path(out, ENV, "random")
    foreign.write_text("my notes")
    with pytest.raises(cr.RecipeError, match="mpe_simple_spread_random.h5: exists but is not a readable dataset"):
        run_recipe(shipped, out, qualities=["random"])
    assert foreign.read_text() == "my notes"
    foreign.unlink()
    run_recipe(shipped, out, qualities=["random"])
    with pytest.raises(cr.RecipeError, match=r"n_episodes: file has 6, recipe asks 7"):
        run_recipe(shipped, out, qualities=["random"], episodes=7)
    with pytest.raises(cr.RecipeError, match="--only: unknown quality 'mixed'"):
        run_recipe(shipped, out, qualities=["mixed"])
    with pytest.raises(cr.RecipeError, match="lacks medium.pt, expert.pt, policies.json"):
        cr.continuous_recipe(ENV, out, episodes=2, policy_dir=tmp_path / "nothing", log=None)


def test_reshipped_policies_are_not_reused(shipped, tmp_path):
    """medium / expert files record the policies' digest: other policies in the folder are an error, not a silent reuse;
    a file made before the digest was recorded is still accepted."""
    import shutil

    import h5py

    root, _ = shipped
    policies = tmp_path / "policies"
    shutil.copytree(root / "policies", policies)
    out = tmp_path / "e"
    kw = dict(episodes=6, seed=0, batch_size=6, policy_dir=policies, log=None, qualities=["random", "expert"])
    items = cr.continuous_recipe(ENV, out, **kw)
    expert = cr.dataset_path(out, ENV, "expert")
    assert len(read_dataset(expert).attrs["policies_sha256"]) == 64 and "policies_sha256" not in read_dataset(
        cr.dataset_path(out, ENV, "random")).attrs
    shutil.copyfile(policies / "medium.pt", policies / "expert.pt")  # "re-ship" another expert
    with pytest.raises(cr.RecipeError, match="mpe_simple_spread_expert.h5: exists but was made with other settings "
                                             r"\(policies_sha256: file has"):
        cr.continuous_recipe(ENV, out, **kw)
    with h5py.File(expert, "r+") as f:  # as written before the digest was recorded
        del f.attrs["policies_sha256"]
    again = cr.continuous_recipe(ENV, out, **kw)
    assert [i.status for i in again] == ["cached", "cached"] and again[0].sha256 == items[0].sha256


def test_cards_and_cli(shipped, tmp_path, capsys):
    from lit_omarl.cli import main

    root, _ = shipped
    out, cards = tmp_path / "e", tmp_path / "cards"
    code = main(["data", "continuous-recipe", "--env", ENV, "--out-dir", str(out), "--episodes", "5", "--batch-size", "5",
                 "--only", "random,expert", "--policy-dir", str(root / "policies"), "--cards-dir", str(cards)])
    assert code == 0
    names = sorted(p.name for p in cards.glob("*.md"))
    assert names == ["mpe_simple_spread_expert.md", "mpe_simple_spread_random.md"]
    card = (cards / "mpe_simple_spread_expert.md").read_text()
    assert "## Return distribution" in card and "normalized mean return" in card and "| episodes | 5 |" in card
    with h5py.File(out / "mpe_simple_spread_random.h5", "r") as f:
        assert int(f.attrs["n_episodes"]) == 5
    assert main(["data", "continuous-recipe", "--env", ENV, "--out-dir", str(out), "--only", "nope"]) == 1
    assert "unknown quality 'nope'" in capsys.readouterr().err


def test_reference_returns_apply_only_to_their_options():
    from lit_omarl.envs import make
    from lit_omarl.envs.reference_returns import REFERENCE_RETURNS, normalized_score, reference_returns

    rnd, exp = REFERENCE_RETURNS[ENV]
    assert rnd < exp
    assert reference_returns(ENV, make(ENV).spec.env_options) == (rnd, exp)  # default options recorded in specs
    assert reference_returns(ENV, {"local_ratio": 0.2}) is None and reference_returns("mpe/unknown") is None
    tag = make("mpe/simple_tag", prey_policy="pretrained").spec.env_options
    assert reference_returns("mpe/simple_tag", tag) == REFERENCE_RETURNS["mpe/simple_tag"]
    assert reference_returns("mpe/simple_tag", make("mpe/simple_tag").spec.env_options) is None  # other prey
    assert normalized_score(ENV, None, exp) == pytest.approx(100.0)
    assert normalized_score(ENV, None, (rnd + exp) / 2) == pytest.approx(50.0)
    # MaMuJoCo: the family's default options (recorded in specs) are neutral, others are not
    cheetah = "mamujoco/HalfCheetah-2x3"
    rnd, exp = REFERENCE_RETURNS[cheetah]
    assert reference_returns(cheetah, {"agent_obsk": 1, "episode_limit": 1000, "out_of_bounds": "clip"}) == (rnd, exp)
    assert reference_returns(cheetah, {"agent_obsk": 0}) is None
    assert normalized_score(cheetah, {}, exp) == pytest.approx(100.0)


def test_stored_references_are_the_shipped_policies_measurements():
    """The reference returns kept in code are the ones measured when the policies were shipped."""
    from lit_omarl.behaviour import ASSETS
    from lit_omarl.envs.reference_returns import REFERENCES

    assert {"mpe/simple_spread", "mpe/simple_tag", "mpe/simple_world_comm", "mamujoco/HalfCheetah-2x3"} <= set(REFERENCES)
    for env_id, ref in REFERENCES.items():
        shipped = json.loads((ASSETS / env_id.replace("/", "_") / "policies.json").read_text())
        assert shipped["env_id"] == env_id and shipped["env_options"] == ref["env_options"], env_id
        assert (shipped["references"]["random"], shipped["references"]["expert"]) == (ref["random"], ref["expert"]), env_id
