"""Markdown dataset cards rendered from an :class:`~lit_omarl.data.schema.EpisodeData`.

The output depends only on the data (no timestamps), so cards can be committed
next to results and diffed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lit_omarl.data.schema import EpisodeData

DESCRIPTION_ATTRS = ("quality", "behaviour", "source", "seed", "generator")
# Count distinct joint actions only when N * A is at most this.
MAX_JOINT_CELLS = 64


def _num(x: float) -> str:
    return f"{float(x):.4f}"


def _frac(x: float) -> str:
    return f"{float(x):.3f}"


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _summary(data: EpisodeData) -> list[list[str]]:
    returns, lengths = data.returns(), data.lengths()
    E = data.n_episodes
    n_term = int(data.arrays["terminated"].astype(bool).any(axis=1).sum())
    rows = [
        ["episodes", str(E)],
        ["transitions", str(int(lengths.sum()))],
        ["return mean", _num(returns.mean())],
        ["return std", _num(returns.std())],
        ["return min", _num(returns.min())],
        ["return max", _num(returns.max())],
        ["return median", _num(np.median(returns))],
        ["episode length mean", _num(lengths.mean())],
        ["episode length min", str(int(lengths.min()))],
        ["episode length max", str(int(lengths.max()))],
        ["terminated fraction", f"{_frac(n_term / E)} ({n_term} episodes)"],
        ["time-limit fraction", f"{_frac((E - n_term) / E)} ({E - n_term} episodes)"],
    ]
    if "won" in data.arrays:
        n_won = int(data.arrays["won"].astype(bool).sum())
        rows.append(["win rate", f"{_frac(n_won / E)} ({n_won} episodes)"])
    return rows


def _discrete_actions(data: EpisodeData) -> list[str]:
    spec = data.spec
    N, A = spec.n_agents, spec.n_actions
    filled = data.arrays["filled"].astype(bool)
    taken = data.arrays["actions"][filled]  # [M, N]
    counts = np.stack([np.bincount(taken[:, i], minlength=A) for i in range(N)])  # [N, A]
    share = counts / max(1, taken.shape[0])
    lines = ["Fraction of filled steps on which each agent took each action:", ""]
    lines += _table(["agent"] + [f"a{a}" for a in range(A)], [[str(i)] + [_frac(x) for x in share[i]] for i in range(N)])
    if N * A <= MAX_JOINT_CELLS:
        distinct = len(np.unique(taken, axis=0)) if taken.size else 0
        lines += ["", f"Distinct joint actions seen: {distinct} of {A ** N}."]
    return lines


def _continuous_actions(data: EpisodeData) -> list[str]:
    spec = data.spec
    filled = data.arrays["filled"].astype(bool)
    taken = data.arrays["actions"][filled].astype(np.float64)  # [M, N, A]
    mean, std = taken.mean(axis=0), taken.std(axis=0)
    lines = ["Mean ± std of each action dimension over filled steps:", ""]
    header = ["agent"] + [f"d{d}" for d in range(spec.n_actions)]
    rows = [[str(i)] + [f"{_num(mean[i, d])} ± {_num(std[i, d])}" for d in range(spec.n_actions)] for i in range(spec.n_agents)]
    return lines + _table(header, rows)


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
HISTOGRAM_BINS = 10


def _return_distribution(data: EpisodeData) -> list[str]:
    """Quantiles (numpy's linear interpolation) and a histogram of episode returns in
    HISTOGRAM_BINS equal bins over [min, max] (the last bin includes max)."""
    returns = data.returns().astype(np.float64)
    lines = _table([f"p{round(q * 100)}" for q in QUANTILES], [[_num(v) for v in np.quantile(returns, QUANTILES)]])
    lo, hi = float(returns.min()), float(returns.max())
    if _num(hi) == _num(lo):  # one value at the printed precision (e.g. float32 sums of a constant return)
        spread = "" if hi == lo else f" (spread {hi - lo:.1e})"
        rows = [[f"[{_num(lo)}, {_num(hi)}]{spread}", str(len(returns)), _frac(1.0)]]
    else:
        counts, edges = np.histogram(returns, bins=HISTOGRAM_BINS, range=(lo, hi))
        rows = [[f"[{_num(edges[i])}, {_num(edges[i + 1])}{']' if i == len(counts) - 1 else ')'}", str(int(c)),
                 _frac(c / len(returns))] for i, c in enumerate(counts)]
    return lines + ["", *_table(["return", "episodes", "fraction"], rows)]


def render_card(data: EpisodeData, provenance: list[tuple[str, str]] | dict[str, str] | None = None) -> str:
    """A markdown card describing a dataset: provenance, return/length statistics,
    the return distribution, action coverage and the task's dimensions.
    Deterministic for given data.

    ``provenance``: extra (name, value) rows shown in a "Provenance" section in the
    given order, e.g. the generation command, wall time, file size and sha256
    (facts the data itself does not hold).
    """
    spec = data.spec
    name = Path(data.path).name
    lines = [f"# Dataset `{name}` — `{spec.env_id}`", ""]
    lines += _table(
        ["attribute", "value"],
        [[key, _cell(data.attrs[key]) if key in data.attrs else "n/a"] for key in DESCRIPTION_ATTRS],
    )
    if provenance:
        rows = list(provenance.items()) if isinstance(provenance, dict) else list(provenance)
        lines += ["", "## Provenance", ""]
        lines += _table(["item", "value"], [[_cell(k), _cell(v)] for k, v in rows])
    lines += ["", "## Statistics", ""]
    lines += _table(["statistic", "value"], _summary(data))
    lines += ["", "## Return distribution", ""]
    lines += _return_distribution(data)
    lines += ["", "## Actions", ""]
    lines += _discrete_actions(data) if spec.discrete else _continuous_actions(data)
    lines += ["", "## Spec", ""]
    spec_rows = [
        ["env_id", spec.env_id],
        ["n_agents", str(spec.n_agents)],
        ["obs_dim", str(spec.obs_dim)],
        ["state_dim", str(spec.state_dim)],
        ["n_actions", str(spec.n_actions)],
        ["action_type", spec.action_type],
        ["episode_limit", str(spec.episode_limit)],
    ]
    if not spec.discrete:
        spec_rows.append(["action bounds", f"[{spec.action_low:g}, {spec.action_high:g}]"])
    if spec.env_options:
        spec_rows.append(["env_options", _cell(spec.env_options)])
    lines += _table(["field", "value"], spec_rows)
    return "\n".join(lines) + "\n"
