"""MABCQ's matrix-game tables (mabcq.md Tables 1-4), computed from a generated dataset.

mabcq.md Sec. 3.1 and App. B: two agents play the one-step game of Table 1
(payoff [[1, 5], [6, 1]]) from datasets collected by independent behaviour
policies [0.8, 0.2] (agent 1) and [0.4, 0.6] (agent 2). Each agent i only sees
its own tuples (s, a_i, r, s'), so from its point of view the next state s'
is random: its *visible* transition probability is

    P_B_i(s' | s, a_i) = num(s, a_i, s') / sum_s'' num(s, a_i, s'')       (mabcq.md Sec. 3.1)

and the expected return of a_i is sum_s' P(s' | s, a_i) R(s'). Tables 2-4
report these probabilities and returns under three transition models:

* ``dataset`` (Table 2): P_B_i itself;
* ``vd`` (Table 3): value deviation, P_B_i * lambda_vd / c with
  lambda_vd(s') = 1 + (V(s') - E_{s''~P_B_i} V(s'')) / |E_{s''~P_B_i} V(s'')|;
* ``tn+vd`` (Table 4): transition normalisation and value deviation,
  P_B_i * lambda_tn * lambda_vd / c with lambda_tn = 1 / P_B_i (uniform over
  the next states seen after (s, a_i));
* ``tn``: transition normalisation alone (not in the paper; shows which of
  the two weights fixes the game).

c always renormalises over the next states seen after (s, a_i).

Choices the paper leaves open, fixed here:

* The next state s' of the one-step game is the joint outcome, identified by
  the joint action (a_1, a_2); its value V(s') is the reward received on
  reaching it (the game ends there). lambda_vd only depends on ratios of
  values (when E V > 0 it equals V(s') / E V), so any positive scaling of V,
  e.g. an absorbing state paying R(s') forever, gives the same tables.
* Every quantity is counted in the dataset: rewards are the dataset's rewards
  of each joint outcome (the payoff matrix itself is never read), and a next
  state never seen after (s, a_i) has probability 0.
* One application of the weights (the fixed point of the one-step game: the
  values of terminal next states do not change during learning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# display name of each transition model -> (value deviation, transition normalisation)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "dataset (Table 2)": (False, False),
    "vd (Table 3)": (True, False),
    "tn+vd (Table 4)": (True, True),
    "tn (not in paper)": (False, True),
}
AGENTS = ("agent 1", "agent 2")
ACTIONS = ("a1", "a2")


class TabularError(ValueError):
    """The dataset or an option does not allow the computation (message names the problem)."""


def outcome_counts(actions: np.ndarray, rewards: np.ndarray, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and rewards of the joint outcomes of a two-agent one-step dataset.

    Args:
        actions: [E, 2] int joint actions (agent 1, agent 2).
        rewards: [E] team rewards.
        n_actions: K, actions per agent.

    Returns:
        counts [K, K] (num(a_1, a_2)) and reward [K, K] (the reward of each
        outcome, NaN where it never occurs).

    Raises:
        TabularError: on bad shapes, out-of-range actions, or one outcome with
            two different rewards (the game must be deterministic).
    """
    actions = np.asarray(actions)
    rewards = np.asarray(rewards, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != 2:
        raise TabularError(f"actions must be [E, 2] joint actions of two agents, got shape {actions.shape}")
    if rewards.shape != (actions.shape[0],):
        raise TabularError(f"rewards must be [E] = [{actions.shape[0]}], got shape {rewards.shape}")
    if actions.size == 0:
        raise TabularError("the dataset has no episodes")
    if actions.min() < 0 or actions.max() >= n_actions:
        raise TabularError(f"actions must lie in [0, {n_actions}), got [{actions.min()}, {actions.max()}]")
    counts = np.zeros((n_actions, n_actions), dtype=np.int64)
    np.add.at(counts, (actions[:, 0], actions[:, 1]), 1)
    reward = np.full((n_actions, n_actions), np.nan)
    for a1 in range(n_actions):
        for a2 in range(n_actions):
            seen = rewards[(actions[:, 0] == a1) & (actions[:, 1] == a2)]
            if seen.size:
                if not np.allclose(seen, seen[0]):
                    raise TabularError(f"outcome ({a1}, {a2}) has different rewards in the dataset: {np.unique(seen)}")
                reward[a1, a2] = seen[0]
    return counts, reward


def agent_view(counts: np.ndarray, reward: np.ndarray, agent: int) -> tuple[np.ndarray, np.ndarray]:
    """Agent ``agent``'s own counts and rewards, indexed [own action, other agent's action]."""
    if agent not in (0, 1):
        raise TabularError(f"agent must be 0 or 1, got {agent}")
    return (counts, reward) if agent == 0 else (counts.T, reward.T)


def value_deviation(probs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """lambda_vd(s') = 1 + (V(s') - E_p V) / |E_p V| over the next states with p > 0 (mabcq.md Sec. 3.2.1).

    Raises:
        TabularError: when E_p V = 0 (the weight is undefined).
    """
    seen = probs > 0
    expected = float(np.sum(probs[seen] * values[seen]))
    if expected == 0:
        raise TabularError("value deviation is undefined: the expected next-state value is 0")
    weights = np.zeros_like(probs, dtype=np.float64)
    weights[seen] = 1.0 + (values[seen] - expected) / abs(expected)
    return weights


def transition_model(counts_row: np.ndarray, reward_row: np.ndarray, vd: bool, tn: bool) -> np.ndarray:
    """P-hat(s' | s, a_i) over the other agent's actions for one own action (row of ``agent_view``).

    Returns the probabilities (sum 1), or all NaN when the action never occurs in the dataset.

    Raises:
        TabularError: when the weights leave no positive mass (e.g. value
            deviation with negative values; the paper assumes positive rewards).
    """
    total = counts_row.sum()
    if total == 0:
        return np.full(counts_row.shape, np.nan)
    p = counts_row / total
    weights = np.where(p > 0, 1.0 / np.where(p > 0, p, 1.0), 0.0) if tn else np.ones_like(p)
    if vd:
        weights = weights * value_deviation(p, np.nan_to_num(reward_row))
    mass = p * weights
    if np.any(mass < 0) or mass.sum() <= 0:
        raise TabularError(f"the weights give a non-positive transition mass {mass} (rewards must be positive)")
    return mass / mass.sum()


def agent_tables(counts: np.ndarray, reward: np.ndarray, agent: int, vd: bool, tn: bool) -> tuple[np.ndarray, np.ndarray]:
    """(P-hat [K own, K other], expected return [K own]) of one agent under one transition model."""
    own_counts, own_reward = agent_view(counts, reward, agent)
    probs = np.stack([transition_model(own_counts[a], own_reward[a], vd, tn) for a in range(own_counts.shape[0])])
    returns = np.where(np.isnan(probs).all(-1), np.nan, np.nansum(probs * np.nan_to_num(own_reward), axis=-1))
    return probs, returns


def greedy_joint(counts: np.ndarray, reward: np.ndarray, vd: bool, tn: bool) -> tuple[int, int]:
    """Each agent's argmax of its expected returns (first action on ties; never-seen actions excluded)."""
    joint = []
    for agent in (0, 1):
        _, returns = agent_tables(counts, reward, agent, vd, tn)
        if np.isnan(returns).all():
            raise TabularError(f"agent {agent + 1} has no action in the dataset")
        joint.append(int(np.nanargmax(returns)))
    return joint[0], joint[1]


def dataset_outcomes(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(actions [E, 2], rewards [E], K) of a one-step two-agent dataset file."""
    from lit_omarl.data.schema import read_dataset

    data = read_dataset(path)
    spec = data.spec
    if spec.n_agents != 2 or spec.episode_limit != 1 or not spec.discrete:
        raise TabularError(f"{path}: needs a one-step two-agent discrete game, got {spec.env_id} with "
                           f"{spec.n_agents} agents, episode_limit {spec.episode_limit}, {spec.action_type} actions")
    return data.arrays["actions"][:, 0, :], data.arrays["reward"][:, 0], spec.n_actions


def _dataset(run: Any, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Generate (or reuse) the run's dataset in its workdir; return counts and rewards."""
    from lit_omarl.data.generate import generate_dataset

    budget = dict(run.budget)
    episodes = int(budget.get("episodes", 1000))
    env, behaviour = budget.get("env", "matrix/mabcq"), budget.get("behaviour", "mabcq")
    path = Path(workdir) / "dataset.h5"
    if not path.exists():
        generate_dataset(env, behaviour, episodes, int(run.seed), out=path)
    actions, rewards, k = dataset_outcomes(path)
    return outcome_counts(actions, rewards, k)


def _variant(name: str) -> tuple[bool, bool]:
    if name not in VARIANTS:
        raise TabularError(f"unknown transition model {name!r} (known: {list(VARIANTS)})")
    return VARIANTS[name]


def run_cell(run: Any, workdir: Path) -> dict[str, float]:
    """``run_fn`` of ``mabcq_matrix``: task = transition model, dataset = agent, algorithm = own action.

    Scores: ``expected_return`` of the action, the probabilities ``p_other_a1`` /
    ``p_other_a2`` of the other agent's actions (the next states), ``n_samples``
    (times the action occurs in the dataset) and ``greedy_joint_payoff``.
    """
    vd, tn = _variant(run.task)
    if run.dataset not in AGENTS or run.algorithm not in ACTIONS:
        raise TabularError(f"unknown cell {run.dataset}/{run.algorithm} (agents {AGENTS}, actions {ACTIONS})")
    counts, reward = _dataset(run, workdir)
    agent, action = AGENTS.index(run.dataset), ACTIONS.index(run.algorithm)
    probs, returns = agent_tables(counts, reward, agent, vd, tn)
    joint = greedy_joint(counts, reward, vd, tn)
    if np.isnan(reward[joint]):
        raise TabularError(f"the greedy joint action {joint} never occurs in the dataset: its payoff is unknown")
    scores = {
        "expected_return": float(returns[action]),
        "n_samples": float(agent_view(counts, reward, agent)[0][action].sum()),
        "greedy_joint_payoff": float(reward[joint]),
    }
    scores.update({f"p_other_{name}": float(probs[action, j]) for j, name in enumerate(ACTIONS)})
    return scores


def run_joint(run: Any, workdir: Path) -> dict[str, float]:
    """``run_fn`` of ``mabcq_matrix_joint``: algorithm = transition model; the payoff of the joint greedy action."""
    vd, tn = _variant(run.algorithm)
    counts, reward = _dataset(run, workdir)
    a1, a2 = greedy_joint(counts, reward, vd, tn)
    if np.isnan(reward[a1, a2]):
        raise TabularError(f"the greedy joint action ({a1}, {a2}) never occurs in the dataset: its payoff is unknown")
    return {"joint_payoff": float(reward[a1, a2]), "agent1_action": float(a1), "agent2_action": float(a2),
            "optimal": float(reward[a1, a2] == np.nanmax(reward))}
