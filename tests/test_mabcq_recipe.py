"""MABCQ's per-agent dataset recipe (mabcq.md Sec. 4.1) on MPE simple_spread's shipped MATD3 policies."""

from pathlib import Path

import numpy as np
import pytest

from lit_omarl.behaviour._recipe_common import RecipeError
from lit_omarl.behaviour.mabcq_recipe import (agent_paths, mabcq_recipe, part_behaviours, part_counts, part_seed,
                                              prefix_reaching, write_cards)
from lit_omarl.cli import data_main
from lit_omarl.data.generate import generate_dataset
from lit_omarl.data.schema import read_dataset, write_dataset

ENV = "mpe/simple_spread"


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "replay.h5"
    generate_dataset(ENV, "uniform", 10, 5, out=path, batch_size=10)
    return path


def test_part_counts_follow_the_papers_shares():
    assert part_counts(1000) == {"early": 200, "own_medium": 350, "own_expert": 350, "all_expert": 100}
    assert part_counts(720) == {"early": 144, "own_medium": 252, "own_expert": 252, "all_expert": 72}
    assert sum(part_counts(37).values()) == 37
    with pytest.raises(RecipeError, match="too few"):
        part_counts(3)


def test_part_behaviours_give_agent_i_the_other_level():
    refs = {"medium": "M", "expert": "X"}
    b = part_behaviours(3, 1, refs, 0.1)
    assert b["own_medium"] == "noise:0.1:agents:policy:X|policy:M|policy:X"
    assert b["own_expert"] == "noise:0.1:agents:policy:M|policy:X|policy:M"
    assert b["all_expert"] == "noise:0.1:agents:policy:X|policy:X|policy:X"
    assert part_behaviours(2, 0, refs, 0.0)["own_medium"] == "agents:policy:M|policy:X"


def test_files_are_the_stated_mixture_and_deterministic(tmp_path, replay):
    out = tmp_path / "out"
    items = mabcq_recipe(ENV, out, episodes=20, seed=1, batch_size=8, replay=replay, log=None)
    assert [i.quality for i in items] == ["mabcq_agent0", "mabcq_agent1", "mabcq_agent2"]
    assert all(i.status == "generated" and i.episodes == 20 for i in items)
    early = read_dataset(replay).arrays
    counts = part_counts(20)
    for agent, path in enumerate(agent_paths(out, ENV)):
        data = read_dataset(path)
        assert int(data.attrs["agent"]) == agent
        # the early share: the replay's first episodes, unchanged
        np.testing.assert_array_equal(data.arrays["obs"][:counts["early"]], early["obs"][:counts["early"]])
        np.testing.assert_array_equal(data.arrays["actions"][:counts["early"]], early["actions"][:counts["early"]])
        # each generated part: exactly `lit-omarl data generate` of its behaviour and seed
        start = counts["early"]
        refs = {"medium": "mpe_simple_spread/medium", "expert": "mpe_simple_spread/expert"}
        for part, behaviour in part_behaviours(3, agent, refs, 0.1).items():
            arrays, _ = generate_dataset(ENV, behaviour, counts[part], part_seed(1, agent, part), batch_size=8)
            stop = start + counts[part]
            np.testing.assert_array_equal(data.arrays["actions"][start:stop], arrays["actions"])
            np.testing.assert_array_equal(data.arrays["reward"][start:stop], arrays["reward"])
            start = stop
    # the agents' files differ (agent i plays the other level than its teammates)
    a0, a1 = (read_dataset(p).arrays["actions"] for p in agent_paths(out, ENV)[:2])
    assert not np.array_equal(a0, a1)
    again = mabcq_recipe(ENV, out, episodes=20, seed=1, batch_size=8, replay=replay, log=None)
    assert all(i.status == "cached" for i in again)
    assert [i.sha256 for i in again] == [i.sha256 for i in items]
    cards = write_cards(out, tmp_path / "cards", log=None)
    assert len(cards) == 3 and "early 4, own_medium 7, own_expert 7, all_expert 2" in cards[0].read_text()


def test_never_overwrites_and_checks_the_replay_size(tmp_path, replay):
    out = tmp_path / "out"
    mabcq_recipe(ENV, out, episodes=10, seed=0, batch_size=8, replay=replay, log=None)
    with pytest.raises(RecipeError, match="mabcq_agent0.h5: exists but was made with other settings"):
        mabcq_recipe(ENV, out, episodes=10, seed=2, batch_size=8, replay=replay, log=None)
    items = mabcq_recipe(ENV, out, episodes=10, seed=2, batch_size=8, replay=replay, overwrite=True, log=None)
    assert all(i.status == "generated" for i in items)
    with pytest.raises(RecipeError, match=r"needs 12 episodes but .*replay.h5 holds 10; use --episodes <= 50"):
        mabcq_recipe(ENV, tmp_path / "o2", episodes=60, replay=replay, log=None)
    with pytest.raises(RecipeError, match="no such file"):
        mabcq_recipe(ENV, tmp_path / "o3", episodes=10, replay=tmp_path / "missing.h5", log=None)


def test_cli_prints_the_agent_paths(tmp_path, replay, capsys):
    out = tmp_path / "cli"
    assert data_main(["mabcq-recipe", "--env", ENV, "--out-dir", str(out), "--episodes", "10", "--batch-size", "8",
                      "--replay", str(replay)]) == 0
    text = capsys.readouterr().out
    assert "3 per-agent datasets" in text and "mpe_simple_spread_mabcq_agent2.h5" in text
    assert data_main(["mabcq-recipe", "--env", ENV, "--out-dir", str(out), "--episodes", "99", "--replay", str(replay)]) == 1
    assert "use --episodes <= 50" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ragged_replay(tmp_path_factory):
    """A replay whose episodes end early (lengths 25, 10, 25, 7, ...): the recipe must count transitions."""
    folder = tmp_path_factory.mktemp("ragged")
    generate_dataset(ENV, "uniform", 10, 6, out=folder / "full.h5", batch_size=10)
    data = read_dataset(folder / "full.h5")
    arrays = {k: v.copy() for k, v in data.arrays.items()}
    for e, length in ((1, 10), (3, 7), (6, 12)):
        arrays["filled"][e, length:] = 0
        arrays["terminated"][e, :] = 0
        arrays["terminated"][e, length - 1] = 1
    path = folder / "ragged.h5"
    write_dataset(path, arrays, {"spec": data.spec, "quality": "medium_replay", "source": "test"})
    return path


def test_prefix_reaching_is_the_shortest_prefix():
    lengths = np.array([25, 10, 25, 7])
    assert prefix_reaching(lengths, 1) == 1 and prefix_reaching(lengths, 25) == 1 and prefix_reaching(lengths, 26) == 2
    assert prefix_reaching(lengths, 67) == 4 and prefix_reaching(lengths, 68) == 4  # none reaches: all of them


def test_generate_min_transitions_cuts_the_stream_at_the_shortest_prefix():
    """Hopper falls under uniform actions: episodes of different lengths; the cut stream is the uncut one's prefix."""
    env = "mamujoco/Hopper-3x1"
    arrays, _ = generate_dataset(env, "uniform", 40, 3, batch_size=4, min_transitions=150)
    lengths = arrays["filled"].astype(bool).sum(1)
    assert len(set(lengths.tolist())) > 1  # the episodes vary in length
    assert lengths.sum() >= 150 and lengths[:-1].sum() < 150
    full, _ = generate_dataset(env, "uniform", 40, 3, batch_size=4)
    n = len(lengths)
    np.testing.assert_array_equal(arrays["actions"], full["actions"][:n])
    np.testing.assert_array_equal(arrays["filled"], full["filled"][:n])
    with pytest.raises(ValueError, match="hold only .* of the 100000 transitions"):
        generate_dataset(env, "uniform", 4, 3, batch_size=4, min_transitions=100_000)


def test_episodes_of_varying_length_share_transitions(tmp_path, ragged_replay):
    lengths = read_dataset(ragged_replay).lengths()
    total = int(lengths.sum())  # 25 * 7 + 10 + 7 + 12 = 204
    with pytest.raises(RecipeError, match="end early .* give --transitions"):
        mabcq_recipe(ENV, tmp_path / "o1", episodes=20, replay=ragged_replay, log=None)
    with pytest.raises(RecipeError, match=f"use --transitions <= {int(total / 0.2)}"):
        mabcq_recipe(ENV, tmp_path / "o2", transitions=5 * total + 10, replay=ragged_replay, log=None)
    items = mabcq_recipe(ENV, tmp_path / "out", transitions=300, seed=1, batch_size=4, replay=ragged_replay, log=None)
    counts = part_counts(300, "transitions")  # 60 / 105 / 105 / 30 transitions
    refs = {"medium": "mpe_simple_spread/medium", "expert": "mpe_simple_spread/expert"}
    for agent, path in enumerate(agent_paths(tmp_path / "out", ENV)):
        data = read_dataset(path)
        n_early = prefix_reaching(lengths, counts["early"])  # 25 + 10 + 25 = 60: three episodes
        assert n_early == 3
        np.testing.assert_array_equal(data.arrays["filled"][:n_early], read_dataset(ragged_replay).arrays["filled"][:3])
        start = n_early
        for part, behaviour in part_behaviours(3, agent, refs, 0.1).items():
            arrays, _ = generate_dataset(ENV, behaviour, counts[part], part_seed(1, agent, part), batch_size=4,
                                         min_transitions=counts[part])
            stop = start + len(arrays["filled"])
            assert len(arrays["filled"]) == -(-counts[part] // 25)  # 25-step episodes: ceil(share / 25)
            np.testing.assert_array_equal(data.arrays["actions"][start:stop], arrays["actions"])
            start = stop
        assert start == data.n_episodes
    assert items[0].extra["parts (transitions)"] == "early 60, own_medium 105, own_expert 105, all_expert 30"
    assert items[0].extra["parts (episodes, transitions held)"] == ("early 3 / 60, own_medium 5 / 125, own_expert 5 / 125, all_expert 2 / 50")
    assert (tmp_path / "out" / "recipe.json").exists()
    again = mabcq_recipe(ENV, tmp_path / "out", transitions=300, seed=1, batch_size=4, replay=ragged_replay, log=None)
    assert [i.status for i in again] == ["cached"] * 3
    with pytest.raises(RecipeError, match="made with other settings"):
        mabcq_recipe(ENV, tmp_path / "out", transitions=310, seed=1, batch_size=4, replay=ragged_replay, log=None)


def test_fixed_length_episodes_refuse_transitions(tmp_path, replay):
    with pytest.raises(RecipeError, match="runs to the limit .* give --episodes"):
        mabcq_recipe(ENV, tmp_path / "o", transitions=100, replay=replay, log=None)


def test_mabcq_fig2_cells_pass_per_agent_data_and_optional_budget_keys():
    """vae_lr / behaviour_pretrain_steps reach only the models that take them (DDPG has no VAE)."""
    import importlib.util

    from lit_omarl.repro.runner import expand_grid
    from lit_omarl.repro.train import cell_overrides, config_algorithm

    spec = importlib.util.spec_from_file_location(
        "mabcq_fig2", Path(__file__).resolve().parents[1] / "reproductions" / "mabcq_fig2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.build_table()
    runs = {r.label: r for r in expand_grid(table, "default")}
    assert "HalfCheetah-2x3" in table.tasks and len(runs) == 6 * 3 * len(table.tasks)
    assert len(module.build_table(all_tasks=True).tasks) == 4
    assert {r.task for r in expand_grid(table, "smoke")} == {"HalfCheetah-2x3"}
    budget = lambda r: {k: v for k, v in r.budget.items() if not k.startswith("recipe_")}  # noqa: E731
    ddpg = runs["HalfCheetah-2x3/mabcq/DDPG/seed0"]
    cli = cell_overrides(ddpg, f"{config_algorithm(ddpg)}/mamujoco/HalfCheetah-2x3.yaml", budget(ddpg))
    assert "model.init_args.vae_lr" not in cli and cli["trainer.max_steps"] == 5000
    ablation = runs["HalfCheetah-2x3/mabcq/MABCQ w/o lambda_tn/seed2"]
    cli = cell_overrides(ablation, f"{config_algorithm(ablation)}/mamujoco/HalfCheetah-2x3.yaml", budget(ablation))
    assert cli["model.init_args.vae_lr"] == 1e-3 and cli["model.init_args.use_lambda_tn"] is False
    assert config_algorithm(runs["HalfCheetah-2x3/mabcq/Behavior/seed1"]) == "mabcq_behavior"


def test_mabcq_fig2_recipe_folders_follow_the_size_keys(monkeypatch):
    import lit_omarl.behaviour.mabcq_recipe as mr
    from lit_omarl.repro.mabcq import recipe_dir

    # no size key: the folder of the recipe's command line (its size comes from the task's replay buffer)
    monkeypatch.setattr(mr, "default_dir", lambda env, seed: Path(f"/x/{env.split('/')[1]}_cli_s{seed}"))
    assert recipe_dir("HalfCheetah-2x3", {"recipe_episodes": 720}).name == "mamujoco_HalfCheetah-2x3_720ep_s0"
    assert recipe_dir("Hopper-3x1", {"recipe_transitions": 5000, "recipe_seed": 2}).name == "mamujoco_Hopper-3x1_5000tr_s2"
    assert recipe_dir("Ant-4x2", {}).name == "Ant-4x2_cli_s0"
    # a profile's budget is shared by every task: each size key applies to its kind of task only
    both = {"recipe_episodes": 720, "recipe_transitions": 9000}
    assert recipe_dir("HalfCheetah-2x3", both).name == "mamujoco_HalfCheetah-2x3_720ep_s0"
    assert recipe_dir("Walker2d-2x3", both).name == "mamujoco_Walker2d-2x3_9000tr_s0"
    assert recipe_dir("Hopper-3x1", {"recipe_episodes": 720}).name == "Hopper-3x1_cli_s0"
    assert recipe_dir("Ant-4x2", {"recipe_early": "uniform"}).name == "mamujoco_Ant-4x2_default_s0_early-uniform"
