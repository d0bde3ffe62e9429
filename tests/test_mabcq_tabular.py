"""MABCQ's matrix-game tables (mabcq.md Tables 2-4) against hand-computed values."""

import numpy as np
import pytest

from lit_omarl.repro import RunSpec
from lit_omarl.repro.mabcq_tabular import (
    VARIANTS,
    TabularError,
    agent_tables,
    greedy_joint,
    outcome_counts,
    run_cell,
    run_joint,
    transition_model,
    value_deviation,
)

PAYOFF = np.array([[1.0, 5.0], [6.0, 1.0]])
# counts proportional to the behaviour: agent 1 [0.8, 0.2] x agent 2 [0.4, 0.6], 100 episodes
EXACT = np.array([[32, 48], [8, 12]])


def test_outcome_counts_reads_actions_and_rewards():
    actions = np.array([[0, 1], [0, 1], [1, 0], [0, 0]])
    counts, reward = outcome_counts(actions, np.array([5.0, 5.0, 6.0, 1.0]), 2)
    assert counts.tolist() == [[1, 2], [1, 0]]
    assert reward[0, 1] == 5.0 and reward[1, 0] == 6.0 and reward[0, 0] == 1.0 and np.isnan(reward[1, 1])


def test_outcome_counts_rejects_bad_input():
    with pytest.raises(TabularError, match=r"\[E, 2\]"):
        outcome_counts(np.zeros((3, 3), dtype=int), np.zeros(3), 2)
    with pytest.raises(TabularError, match="different rewards"):
        outcome_counts(np.array([[0, 0], [0, 0]]), np.array([1.0, 2.0]), 2)
    with pytest.raises(TabularError, match=r"\[0, 2\)"):
        outcome_counts(np.array([[0, 2]]), np.array([1.0]), 2)


def test_value_deviation_formula():
    # E = 0.5 * 1 + 0.5 * 3 = 2 -> 1 + (1 - 2) / 2 = 0.5, 1 + (3 - 2) / 2 = 1.5; unseen states get 0
    assert value_deviation(np.array([0.5, 0.5, 0.0]), np.array([1.0, 3.0, 9.0])).tolist() == [0.5, 1.5, 0.0]
    with pytest.raises(TabularError, match="undefined"):
        value_deviation(np.array([0.5, 0.5]), np.array([1.0, -1.0]))


def test_table2_dataset_probabilities():
    probs, returns = agent_tables(EXACT, PAYOFF, 0, vd=False, tn=False)
    assert np.allclose(probs, [[0.4, 0.6], [0.4, 0.6]])
    assert np.allclose(returns, [0.4 * 1 + 0.6 * 5, 0.4 * 6 + 0.6 * 1])  # 3.4, 3.0 as the paper
    _, returns2 = agent_tables(EXACT, PAYOFF, 1, vd=False, tn=False)
    assert np.allclose(returns2, [0.8 * 1 + 0.2 * 6, 0.8 * 5 + 0.2 * 1])  # 2.0, 4.2
    assert greedy_joint(EXACT, PAYOFF, False, False) == (0, 1)  # (a1, a2) = 5


def test_table3_value_deviation():
    probs, returns = agent_tables(EXACT, PAYOFF, 0, vd=True, tn=False)
    # P ∝ P_B * V: a1 -> (0.4 * 1, 0.6 * 5) / 3.4, a2 -> (0.4 * 6, 0.6 * 1) / 3.0
    assert np.allclose(probs, [[0.4 / 3.4, 3.0 / 3.4], [0.8, 0.2]])
    assert np.allclose(returns, [15.4 / 3.4, 5.0])  # 4.53 (paper 4.52 from rounded probabilities), 5.0
    _, returns2 = agent_tables(EXACT, PAYOFF, 1, vd=True, tn=False)
    assert np.allclose(returns2, [(0.8 + 0.2 * 36) / 2.0, (0.8 * 25 + 0.2) / 4.2])  # 4.0, 4.81
    assert greedy_joint(EXACT, PAYOFF, True, False) == (1, 1)  # (a2, a2) = 1, the paper's text


def test_table4_transition_normalisation_and_value_deviation():
    probs, returns = agent_tables(EXACT, PAYOFF, 0, vd=True, tn=True)
    assert np.allclose(probs, [[1 / 6, 5 / 6], [6 / 7, 1 / 7]])  # 0.17 / 0.83, 0.86 / 0.14
    assert np.allclose(returns, [26 / 6, 37 / 7])  # 4.33, 5.29
    _, returns2 = agent_tables(EXACT, PAYOFF, 1, vd=True, tn=True)
    assert np.allclose(returns2, [37 / 7, 26 / 6])
    assert greedy_joint(EXACT, PAYOFF, True, True) == (1, 0)  # the optimum (a2, a1) = 6


def test_transition_normalisation_alone():
    _, returns = agent_tables(EXACT, PAYOFF, 0, vd=False, tn=True)
    assert np.allclose(returns, [3.0, 3.5])
    assert greedy_joint(EXACT, PAYOFF, False, True) == (1, 0)


def test_unseen_action_is_nan_and_never_greedy():
    counts = np.array([[10, 0], [0, 0]])
    assert np.isnan(transition_model(counts[1], PAYOFF[1], vd=True, tn=True)).all()
    assert greedy_joint(counts, PAYOFF, True, True) == (0, 0)


def _run(task, dataset, algorithm, table="mabcq_matrix"):
    return RunSpec(table, task, dataset, algorithm, seed=0, profile="smoke", budget={"episodes": 200})


def test_run_fns_on_a_generated_dataset(tmp_path):
    tn_vd = list(VARIANTS)[2]
    scores = run_cell(_run(tn_vd, "agent 1", "a2"), tmp_path / "a")
    assert (tmp_path / "a" / "dataset.h5").exists()
    # tn+vd does not depend on how often each outcome occurs, only on which occur: exactly 37 / 7
    assert scores["expected_return"] == pytest.approx(37 / 7)
    assert scores["p_other_a1"] == pytest.approx(6 / 7) and scores["greedy_joint_payoff"] == 6.0
    assert 0 < scores["n_samples"] < 200
    joint = run_joint(_run("matrix/mabcq", "mabcq", tn_vd, "mabcq_matrix_joint"), tmp_path / "b")
    assert joint == {"joint_payoff": 6.0, "agent1_action": 1.0, "agent2_action": 0.0, "optimal": 1.0}
    with pytest.raises(TabularError, match="unknown transition model"):
        run_cell(_run("nope", "agent 1", "a1"), tmp_path / "c")
