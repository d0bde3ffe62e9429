"""Fixed per-task reference returns for normalized scores.

normalized = 100 * (return - random) / (expert - random)  (D4RL convention, as
cfcql.md / OMAR report). References are constants stored here, never the
min/max of whichever algorithms happen to be in a table. Matrix games use the
exact expected return of the uniform joint policy as "random" and the best
joint action as "expert"; tasks with trained behaviour policies use the returns
measured from them (:mod:`lit_omarl.envs.reference_returns`, checked against
the env options, e.g. the MPE prey).
"""

from __future__ import annotations

import itertools

# env id -> (random return, expert return)
REFERENCE_RETURNS: dict[str, tuple[float, float]] = {}


def _matrix_references(payoff: list[list[float]]) -> tuple[float, float]:
    values = [payoff[i][j] for i, j in itertools.product(range(len(payoff)), repeat=2)]
    return sum(values) / len(values), max(values)


def reference_returns(env_id: str, env_options: dict | None = None) -> tuple[float, float] | None:
    if env_id in REFERENCE_RETURNS:
        return REFERENCE_RETURNS[env_id]
    if env_id.startswith("matrix"):
        from lit_omarl.envs import make

        payoff = make(env_id, num_envs=1, **(env_options or {})).payoff.tolist()
        return _matrix_references(payoff)
    # references measured from lit_omarl's behaviour policies (MPE, ...), valid only for their env options
    from lit_omarl.envs.reference_returns import reference_returns as measured

    return measured(env_id, env_options)


def normalized_score(env_id: str, env_options: dict | None, episode_return: float) -> float | None:
    refs = reference_returns(env_id, env_options)
    if refs is None or refs[1] == refs[0]:
        return None
    random, expert = refs
    return 100.0 * (episode_return - random) / (expert - random)
