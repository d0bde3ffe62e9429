"""Shipping a qmix_online run's medium / expert policies (lit_omarl/behaviour/ship.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_omarl.behaviour.ship import (Candidate, ShipError, choose_metric, medium_target, pick_expert, pick_medium,
                                      read_candidates, read_chain)


def _cand(steps: int, win: float, ret: float) -> Candidate:
    return Candidate(Path(f"step_{steps}.pt"), {"env_steps": steps, "win_rate": win, "return": ret})


RUN = [_cand(0, 0.0, 0.1), _cand(100, 0.25, 0.9), _cand(200, 0.45, 1.2), _cand(300, 0.5, 1.3),
       _cand(400, 0.9, 1.8), _cand(500, 0.9, 1.7), _cand(600, 0.7, 1.6)]


def test_expert_is_the_best_test_and_ties_go_to_the_later_checkpoint():
    assert pick_expert(RUN, "win_rate").env_steps == 500
    assert pick_expert(RUN, "return").env_steps == 400


def test_medium_is_the_earlier_checkpoint_closest_to_half_the_expert():
    expert = pick_expert(RUN, "win_rate")
    target = medium_target(0.9, "win_rate", 0.5, random_score=0.0)
    assert target == pytest.approx(0.45)
    assert pick_medium(RUN, expert, "win_rate", target).env_steps == 200  # 0.45 exactly; 600 (0.7) is after the expert
    # returns: random + 0.5 (expert - random) = 0.1 + 0.5 * 1.7 = 0.95 -> 0.9 at 100 steps (|0.05| < |0.25|)
    target = medium_target(1.8, "return", 0.5, random_score=0.1)
    assert target == pytest.approx(0.95)
    assert pick_medium(RUN, pick_expert(RUN, "return"), "return", target).env_steps == 100
    # ties: the earlier checkpoint
    tie = [_cand(10, 0.25, 0), _cand(20, 0.75, 0), _cand(30, 1.0, 0)]
    assert pick_medium(tie, tie[-1], "win_rate", 0.5).env_steps == 10


def test_metric_falls_back_to_return_when_the_run_never_wins():
    assert choose_metric(RUN, 0.2) == "win_rate"
    assert choose_metric([_cand(0, 0.0, 0.1), _cand(1, 0.1, 0.5)], 0.2) == "return"


def test_medium_needs_an_earlier_checkpoint():
    with pytest.raises(ShipError, match="no checkpoint before the expert"):
        pick_medium(RUN[:1], RUN[0], "win_rate", 0.0)


def test_bad_metadata_names_the_file(tmp_path):
    (tmp_path / "step_1.pt").write_bytes(b"x")
    (tmp_path / "step_1.json").write_text('{"env_steps": 1}')
    with pytest.raises(ShipError, match="step_1.json"):
        read_candidates(tmp_path)
    with pytest.raises(ShipError, match="no checkpoints"):
        read_candidates(tmp_path / "missing")


def _fake_run(folder: Path, steps: list[int], win: dict[int, float], init_from: str = "") -> None:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"env_id": "smax/2s3z", "init_from": init_from}))
    for n in steps:
        (folder / f"step_{n}.pt").write_bytes(b"x")
        (folder / f"step_{n}.json").write_text(json.dumps({"env_steps": n, "win_rate": win[n], "return": win[n]}))
    (folder / "curve.jsonl").write_text("".join(json.dumps({"env_steps": n, "win_rate": win[n]}) + "\n" for n in steps))


def test_a_continued_run_is_read_with_its_ancestor_up_to_the_continuation_point(tmp_path):
    win = {0: 0.0, 100: 0.1, 200: 0.2, 300: 0.9, 400: 0.5, 500: 0.6}
    _fake_run(tmp_path / "a", [0, 100, 200, 300], win)  # step 300 comes after the point the child went on from
    _fake_run(tmp_path / "b", [200, 400, 500], win, init_from=str(tmp_path / "a" / "step_200.pt"))
    candidates, curve = read_chain(tmp_path / "b")
    assert [c.env_steps for c in candidates] == [0, 100, 200, 400, 500]
    assert [c.path.parent.name for c in candidates] == ["a", "a", "b", "b", "b"]  # the continuation point: b's test
    assert [p["env_steps"] for p in curve] == [0, 100, 200, 400, 500]
    assert pick_expert(candidates, "win_rate").env_steps == 500  # not a's 0.9 at step 300
    (tmp_path / "a" / "step_200.pt").unlink()
    with pytest.raises(ShipError, match="does not exist"):
        read_chain(tmp_path / "b")


def test_a_tiny_run_ships_loadable_policies_and_refuses_another_run(tmp_path, monkeypatch):
    pytest.importorskip("jaxmarl")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    torch.set_num_threads(1)
    from lit_omarl.behaviour import load_policy
    from lit_omarl.behaviour.qmix_online import QMIXOnlineConfig, train_qmix
    from lit_omarl.behaviour.ship import main

    cfg = QMIXOnlineConfig(env_id="smax/2s3z", env_steps=500, num_envs=4, batch_size=4, eval_every=100,
                           eval_episodes=4, checkpoint_every=100, milestones=(), replay_milestones=())
    train_qmix(cfg, tmp_path / "run")
    # an untrained net's tests are noise: give the checkpoints known test win rates 0, 0.2, 0.4, ... (final best)
    cands = read_candidates(tmp_path / "run")  # one per env-step count
    assert len(cands) >= 3
    for k, cand in enumerate(cands):  # win rates 0, 0.25, 0.5, ...
        cand.path.with_suffix(".json").write_text(json.dumps({**cand.meta, "win_rate": 0.25 * k}))
    half = 0.25 * (len(cands) - 1) / 2
    expected_medium = min(cands[:-1], key=lambda c: (abs(0.25 * cands.index(c) - half), c.env_steps)).path.name
    metas = [(c.meta, c.path) for c in cands]
    dest, png = tmp_path / "assets", tmp_path / "curve.png"
    args = ["--run", str(tmp_path / "run"), "--map", "2s3z", "--dest", str(dest), "--png", str(png), "--eval-episodes", "4"]
    assert main(args) == 0
    folder = dest / "smax_2s3z"
    for name in ("expert", "medium"):
        meta = json.loads((folder / f"{name}.json").read_text())
        assert meta["reeval_episodes"] == 4 and 0.0 <= meta["reeval_win_rate"] <= 1.0
        assert load_policy(folder / f"{name}.pt").spec.env_id == "smax/2s3z"
    expert, medium = (json.loads((folder / f"{n}.json").read_text()) for n in ("expert", "medium"))
    assert expert["checkpoint"] == metas[-1][1].name and medium["checkpoint"] == expected_medium
    assert png.stat().st_size > 0 and "expert.pt" in (folder / "README.md").read_text()
    assert main(args) == 0  # the same run again: allowed (identical train_config.json)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["seed"] = 99
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    assert main(args) == 1  # another run: refused without --overwrite
    assert json.loads((folder / "train_config.json").read_text())["seed"] == 0


def test_readme_flags_policies_chosen_by_return_as_not_expert_level():
    from lit_omarl.behaviour.ship import readme

    row = {"checkpoint": "step_5.pt", "env_steps": 5, "win_rate": 0.0, "return": 0.7, "reeval_win_rate": 0.0,
           "reeval_return": 0.66, "reeval_episodes": 128}
    args = ("5m_vs_6m", {"num_envs": 8, "threads": 1, "seed": 0}, {"env_steps": 10, "minutes": 1.0},
            {"expert": row, "medium": row})
    text = readme(*args, "return", 0.5, "cmd", min_win_rate=0.2, best_win_rate=0.09)
    assert "Not expert-level" in text and "best checkpoint 0.09" in text and "| expert.pt | step_5.pt | 5 |" in text
    assert "Not expert-level" not in readme(*args, "win_rate", 0.5, "cmd")


def test_a_mappo_run_ships_as_mappo(tmp_path, monkeypatch):
    pytest.importorskip("jaxmarl")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.chdir(tmp_path)  # the default PNG goes to results/ of the working directory
    torch.set_num_threads(1)
    from lit_omarl.behaviour import load_policy
    from lit_omarl.behaviour.mappo_online import MAPPOOnlineConfig, MAPPOPolicy, train_mappo
    from lit_omarl.behaviour.ship import ShipError, algorithm, main

    cfg = MAPPOOnlineConfig(env_id="smax/2s3z", env_steps=300, num_envs=4, epochs=1, eval_every=100,
                            eval_episodes=4, checkpoint_every=100, milestones=(), replay_milestones=())
    train_mappo(cfg, tmp_path / "run")
    dest = tmp_path / "assets"
    assert main(["--run", str(tmp_path / "run"), "--map", "2s3z", "--dest", str(dest), "--eval-episodes", "4"]) == 0
    assert isinstance(load_policy(dest / "smax_2s3z" / "expert.pt"), MAPPOPolicy)
    text = (dest / "smax_2s3z" / "README.md").read_text()
    assert text.startswith("# MAPPO behaviour policies") and "mappo_online.py" in text
    assert (tmp_path / "results" / "smax_2s3z_mappo_curve.png").stat().st_size > 0
    assert main(["--run", str(tmp_path / "run"), "--map", "2s3z", "--dest", str(dest), "--eval-episodes", "4",
                 "--expert-candidates", "2"]) == 0
    expert = json.loads((dest / "smax_2s3z" / "expert.json").read_text())
    assert expert["expert_candidates"] == 2 and len(expert["candidate_reevals"]) == 2
    assert expert["reeval_win_rate"] == expert["candidate_reevals"][expert["checkpoint"]]["win_rate"]
    assert "the best on re-evaluation" in (dest / "smax_2s3z" / "README.md").read_text()
    assert main(["--run", str(tmp_path / "run"), "--map", "2s3z", "--dest", str(dest), "--eval-episodes", "4",
                 "--expert-candidates", "0"]) == 1  # refused, not read as 1
    assert algorithm({}) == "qmix"
    with pytest.raises(ShipError, match="unknown 'algorithm'"):
        algorithm({"algorithm": "vdn"})


def test_expert_candidates_ship_the_best_re_evaluated_of_the_top_k():
    from lit_omarl.behaviour.ship import pick_expert_reevaluated

    fresh = {500: 0.50, 400: 0.62, 600: 0.62, 300: 0.99}  # 300 is not among the top 3 save-time tests
    seen = []

    def evaluate(c):
        seen.append(c.env_steps)
        return {"win_rate": fresh[c.env_steps], "return": 1.0}

    expert, results = pick_expert_reevaluated(RUN, "win_rate", 3, evaluate)
    assert sorted(seen) == [400, 500, 600]  # top 3 by save-time test (0.9, 0.9, 0.7)
    assert expert.env_steps == 600  # 0.62 ties with 400: the later one
    assert results[Path("step_400.pt")]["win_rate"] == 0.62
    one, _ = pick_expert_reevaluated(RUN, "win_rate", 1, evaluate)
    assert one.env_steps == pick_expert(RUN, "win_rate").env_steps == 500
    with pytest.raises(ShipError, match="expert-candidates"):
        pick_expert_reevaluated(RUN, "win_rate", 0, evaluate)
