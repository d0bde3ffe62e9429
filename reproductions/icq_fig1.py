"""ICQ Fig. 2(b) / Fig. 7 (icq.md Sec. 3.2, App. C.2): Q estimates of BCQ-MA and ICQ-MA vs number of agents.

    python reproductions/icq_fig1.py                  # default profile (1 seed, about 1 h on one shared core)
    python reproductions/icq_fig1.py --profile smoke  # under a minute (2 runs)
    python reproductions/icq_fig1.py --profile paper

ICQ's two-state MMDP (lit_omarl/envs/icq_mmdp.py) with n = 1..5 agents; 32 episodes of 100 steps
per n from the same per-agent behaviour (epsilon-greedy around the optimal policy, P(a_i = 1) = 0.3).
The paper's claim: BCQ's joint Q estimate diverges as the number of agents grows while ICQ's stays
accurate.

Outputs:
* ``results/icq_fig1.md`` / ``.csv``: relative error |Q - Q_true| / Q_true of the final estimate of the
  dataset's joint actions (``train/q_taken_mean``, mean of the last 10% of training) against their true
  value under the behaviour (exact, and checked by Monte-Carlo rollouts); then a section
  "The paper's claim" with the estimates, both references and the verdict per n.
  The CSV also holds the curves on a 20-point grid (``q_step_*``: dataset mean; ``q0_step_*``:
  Q_tot(tau_2, all actions 0), the initial state), ``q_peak``, ``v_policy_mc`` (Monte-Carlo value of
  the final greedy policy) and the final greedy return.
* ``results/icq_fig1.png``: the curves, drawn from the CSV.
"""

import csv
import math
import sys
from pathlib import Path

from lit_omarl.repro import PaperNumbers, Profile, TableSpec, main
from lit_omarl.repro.curves import curves_from_csv, plot_panels
from lit_omarl.repro.render import output_stem
from lit_omarl.repro.table import build_parser
from lit_omarl.utils.atomic import atomic_write_text

ALGORITHMS = ("BCQ", "ICQ")
N_AGENTS = (1, 2, 3, 4, 5)
DATASETS = tuple(f"n{n}" for n in N_AGENTS)
GAMMA = 0.99
EPSILON = 0.6  # behaviour epsilon:0.6:expert (configs */icq_mmdp/n*.yaml)
P_ZERO = 1 - EPSILON / 2  # probability that one agent takes the optimal action 0
MC_HORIZON = 1000  # steps of a Monte-Carlo rollout: gamma^1000 / (1 - gamma) < 0.005
# Mean reward of each generated dataset (32 episodes x 100 steps, generate_seed 0), i.e. the fraction of
# steps where every agent took action 0. Exact values of the files the configs generate; checked by
# tests/test_icq_mmdp.py::test_reference_values_match_the_generated_datasets.
DATA_MEAN_REWARD = {1: 0.709375, 2: 0.4925, 3: 0.348125, 4: 0.259375, 5: 0.175625}


def behaviour_value(n: int) -> float:
    """V^beta of the epsilon-greedy behaviour, the same in both states (reward and behaviour ignore
    the state): sum_t gamma^t P(all n agents take 0) = P_ZERO^n / (1 - gamma)."""
    return P_ZERO**n / (1 - GAMMA)


def q_behaviour_data(n: int) -> float:
    """True value of the dataset's joint actions under the behaviour: mean over the data of r + gamma V^beta."""
    return DATA_MEAN_REWARD[n] + GAMMA * behaviour_value(n)


def q_optimal_data(n: int) -> float:
    """Their value under the optimal continuation (every agent takes 0 forever: V* = 1 / (1 - gamma) = 100):
    mean of r + gamma V*, the largest true value any policy can give them."""
    return DATA_MEAN_REWARD[n] + GAMMA / (1 - GAMMA)


def bcq_fixed_point(n: int) -> float:
    """Approximate fixed point of BCQ's estimate of the dataset's joint actions (both actions pass its
    per-agent filter, so it maximises over every joint action).

    Its Q_tot is additive in the agents' actions in each state, so it fits the reward 1[all actions 0]
    by its least-squares additive projection; under the behaviour (independent agents, P(0) = 0.7) that
    projection is 0.7^n + sum_i (1[a_i = 0] - 0.7) * 0.7^(n-1), whose maximum (all 0) is
    f = 0.7^n + n * 0.3 * 0.7^(n-1) (1 for n = 1, 0.53 for n = 5). The max over joint actions then
    bootstraps V = f + gamma V = f / (1 - gamma), and the mean over the data is mean(r) + gamma V
    (the projection keeps the mean). Approximate: the data's empirical action frequencies are not
    exactly 0.7 and tau_2 (a few dozen samples) is ignored.
    """
    top = P_ZERO**n + n * (1 - P_ZERO) * P_ZERO ** (n - 1)
    return DATA_MEAN_REWARD[n] + GAMMA * top / (1 - GAMMA)


def _probes(n: int) -> dict:
    """Q_tot at the initial state tau_2 (one-hot [0, 1] for every agent and the state) for all actions 0."""
    return {"q0": {"obs": [[0.0, 1.0]] * n, "state": [0.0, 1.0], "actions": [0] * n}}


SMOKE = {"max_steps": 30, "eval_every_steps": 0, "final_eval_episodes": 1, "behaviour_pretrain_steps": 0,
         "probe_every_steps": 5, "mc_horizon": 200}
TABLE = TableSpec(
    name="icq_fig1",
    title="ICQ Fig. 2(b) / Fig. 7: two-state MMDP, relative error of the final Q estimate of the dataset's joint actions",
    metric="q_rel_error",
    higher_is_better=False,
    tasks=("icq_mmdp",),
    datasets=DATASETS,
    algorithms=ALGORITHMS,
    profiles=(
        Profile("smoke", seeds=(0,), budget=SMOKE, cells=("icq_mmdp/n4/*",),
                description="pipeline check: 30 updates, n = 4 only, 1 seed"),
        Profile("default", seeds=(0,), budget={"max_steps": 4000, "eval_every_steps": 1000, "final_eval_episodes": 4,
                                               "probe_every_steps": 20, "mc_horizon": MC_HORIZON},
                description="4000 updates per run, 1 seed (about 1 h on one shared CPU core)"),
        Profile("paper", seeds=(0, 1, 2, 3, 4), budget={"max_steps": 40_000, "eval_every_steps": 2000,
                                                         "final_eval_episodes": 4, "probe_every_steps": 100,
                                                         "mc_horizon": MC_HORIZON},
                num_gpus=0.25,
                description="40k updates (the official ICQ-MA's ~40k iterations; Fig. 2's x axis is not given), 5 seeds"),
    ),
    paper=PaperNumbers(source="icq.md Fig. 2(b) / Fig. 7 (curves, no numbers given)"),
    run_fn="lit_omarl.repro.curves:run_cell_with_curves",
    overrides={("icq_mmdp", f"n{n}", "*"): {"q_true": round(q_behaviour_data(n), 6), "q_probes": _probes(n)}
               for n in N_AGENTS},
    decimals=2,
    deviations=(
        "Environment (lit_omarl/envs/icq_mmdp.py, every choice in its docstring): reward 1 on every step where all "
        "agents take action 0, in either state (the literal 'reward 1 when following the optimal policy'); tau_2 -> "
        "tau_1 iff sum_i a_i <= n/2, tau_1 absorbing; 100-step episodes ended by the time limit (truncated, so the "
        "learners bootstrap through it and estimate infinite-horizon values); observation = state = one-hot of the "
        "state. Fig. 2(a) itself is not in the text we have.",
        "Data: the paper uses 32 trajectories generated by QMIX with the number of valuable (r = 1) trajectories "
        "equal across n; the files and QMIX's exploration are not published. Ours: 32 episodes per n of an "
        "epsilon-greedy behaviour around the optimal policy (QMIX's greedy policy on this task), epsilon 0.6, i.e. "
        "every agent independently takes action 1 with probability 0.3 (behaviour epsilon:0.6:expert, generate_seed "
        "0). The per-agent behaviour is the same for every n, so each agent's actions are in-distribution for BCQ's "
        "per-agent filter (0.3 / 0.7 = 0.43 >= threshold 0.3) while the joint actions thin out as n grows (icq.md "
        "App. B.3's argument); every episode holds rewards (32/32 valuable trajectories for every n), but the "
        "reward rate falls as 0.7^n (mean reward 0.71, 0.49, 0.35, 0.26, 0.18 for n = 1..5).",
        "True value: the value of the dataset's joint actions under the behaviour, Q_beta = mean(r) + 0.99 * 100 * "
        "0.7^n = 70.01, 49.00, 34.31, 24.03, 16.81 for n = 1..5 (exact; the header line below gives a Monte-Carlo "
        "check). The paper says its true values are 'similar for different agent numbers' and averages them into one "
        "line; with our data they are not, so each n has its own. Q_opt = mean(r) + 99 (99.2 to 99.7) is the value "
        "under the optimal continuation, the most any policy can give these joint actions: an estimate above it is "
        "an over-estimate under every reading. ICQ's critic (SARSA on dataset actions re-weighted by softmax(Q / "
        "1000), nearly uniform here) targets Q_beta; BCQ's maximises over allowed actions, so its target lies "
        "between Q_beta and Q_opt when it is accurate.",
        "Algorithms: lit_omarl's BCQ-MA and ICQ-MA with linear value decomposition (k_i(s) >= 0 summing to 1, plus "
        "b(s) for BCQ), feed-forward agents on (state one-hot, agent id), whole-episode batches of 8 of the 32 "
        "episodes (official 32), target copy every 25 updates for both (ICQ's official 600 counts per-time-step "
        "updates on SMAC), ICQ's official RMSprop rates and temperatures (critic 1000, actor 0.1), TD(0.8) for ICQ and "
        "one-step targets for BCQ (icq.md Eq. 57), BCQ threshold 0.3 (icq.md zeta).",
        "Budget: Fig. 2(b)'s training length is not stated; default profile 4000 updates and ONE seed per run "
        "(what fits in about an hour on one core of this shared 2-core machine), so no spread across seeds; with "
        "targets copied every 25 updates, 4000 updates are 160 Bellman backups, 80% of the way from 0 to a fixed "
        "point (1 - 0.99^160) for a one-step learner (BCQ); ICQ's TD(0.8) targets propagate faster.",
        "Seeds: a run's seed sets the network initialisation, the batch order and the evaluation episodes; the "
        "dataset of each n (generate_seed 0) is the same for every run.",
        "Agreement, ICQ: as in the paper, ICQ's estimate stays on the true value for every n: final estimates 71.3, "
        "50.1, 34.8, 26.5, 18.0 against Q_beta 70.0, 49.0, 34.3, 24.0, 16.8 for n = 1..5 (relative error 0.02, 0.02, "
        "0.02, 0.10, 0.07), flat from about 2000 updates on.",
        "Partial agreement, BCQ: its estimate is above the true value by more with every added agent (q / Q_beta = "
        "1.11, 1.45, 1.76, 2.21, 2.55), the ordering of Fig. 2(b); but it does NOT diverge. Its estimates (77.4, 70.9, "
        "60.5, 53.0, 42.9 after 4000 updates, still rising) approach a finite fixed point that FALLS with n and stays "
        "below Q_opt (99.2 to 99.7) and below the true value of its own greedy policy (100 by Monte-Carlo: the "
        "policy is optimal for every n, as is ICQ's). By the criterion of the section below (final estimate above "
        "1.1 x Q_opt) BCQ diverges at no n, so the paper's claim as a whole is not reproduced.",
        "Why BCQ stays bounded here: both actions pass its per-agent filter, so it maximises over every joint "
        "action, but its Q_tot is additive in the agents' actions: it fits the reward 1[all 0] by its additive "
        "projection, whose maximum 0.7^n + n 0.3 0.7^(n-1) is 1 for n = 1 and 0.53 for n = 5, and bootstraps that "
        "maximum: fixed points 99.7, 90.6, 78.0, 64.8, 52.5 for the dataset mean (column 'BCQ fixed point'). The "
        "measured estimates are 78% to 82% of them after 160 target copies, where one-step fitted value iteration "
        "from 0 predicts 80%. Every joint action's value is a sum of per-agent values trained on every (state, own "
        "action) pair, so nothing is extrapolated beyond that fit and nothing feeds on itself. What we did not try: "
        "a monotonic (QMIX) mixer, recurrent agents whose never-trained inputs feed the bootstrap (what made QMIX "
        "explode in results/cfcql_fig1.md), a behaviour whose per-agent actions are rarer (BCQ then filters them "
        "out), longer training or more seeds.",
        "The runs were made by one invocation of the command above (49.6 min elapsed, 10 runs one after another, "
        "load average 5 to 7.5 on the shared 2-core machine); the page was rendered again by the same command after "
        "this text was written (finished runs are skipped). 'Q_beta (MC)' in the section below comes from 64 "
        "behaviour rollouts of 1000 steps per n (seed 1) and agrees with the formula within 0.6.",
    ),
)


def mc_behaviour_value(n: int, episodes: int = 64, horizon: int = MC_HORIZON) -> float:
    """Monte-Carlo V^beta(tau_2): mean discounted return of ``episodes`` rollouts of the behaviour for ``horizon`` steps."""
    import numpy as np

    from lit_omarl.data.generate import generate_dataset

    arrays, _ = generate_dataset("icq_mmdp", f"epsilon:{EPSILON}:expert", episodes=episodes, seed=1,
                                 env_options={"n_agents": n, "episode_limit": horizon})
    discount = GAMMA ** np.arange(horizon)
    return float((arrays["reward"] * discount).sum(1).mean())


def _rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def claim_section(csv_path: Path, mc_values: dict[int, float] | None = None) -> str:
    """Markdown: per n, both algorithms' final / peak estimates against the true values, and the verdict.

    Criteria: BCQ 'diverges' at n when its final dataset estimate is above Q_opt by more than 10% (above
    what any policy can earn); 'with more agents' when its over-estimate q_final / Q_beta grows with n.
    ICQ is 'accurate' at n when |q_final - Q_beta| / Q_beta <= 0.2.
    """
    cells: dict[tuple[str, int], dict[str, list[float]]] = {}
    for row in _rows(csv_path):
        n = int(row["dataset"][1:])
        entry = cells.setdefault((row["algorithm"], n), {})
        for key in ("q_final", "q_peak", "q_rel_error", "q0_final", "v_policy_mc", "episode_return"):
            if row.get(key) not in ("", None):
                entry.setdefault(key, []).append(float(row[key]))
    ns = sorted({n for _, n in cells})
    lines = [
        "## The paper's claim (icq.md Fig. 2(b) / Fig. 7)",
        "",
        "Means over the finished seeds. q: final estimate of the dataset's joint actions (mean of the last 10% of "
        "training; peak in brackets); Q_beta / Q_opt: their true value under the behaviour / under the optimal "
        "continuation; q0: final Q_tot(tau_2, all actions 0), true value 1 + 99 * 0.7^n under the behaviour, 100 "
        "under the optimal policy; BCQ fixed point: where BCQ's estimate converges by our derivation (additive "
        "fit of the reward, then the max over joint actions; `bcq_fixed_point` in the script); "
        "V_pi: Monte-Carlo value of the final greedy policy from tau_2 "
        f"({MC_HORIZON}-step rollout; 100 = optimal)."
        + ("" if not mc_values else " Q_beta (MC): the same true value with V^beta from 64 Monte-Carlo rollouts of "
           "the behaviour instead of the formula."),
        "",
        "| n | Q_beta | Q_beta (MC) | Q_opt | BCQ q [peak] | BCQ fixed point | ICQ q [peak] | BCQ q / Q_beta | "
        "ICQ rel. error | BCQ q0 | ICQ q0 | BCQ V_pi | ICQ V_pi |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    diverges, accurate, ratios = {}, {}, {}
    for n in ns:
        bcq, icq = cells.get(("BCQ", n), {}), cells.get(("ICQ", n), {})
        qb, qo = q_behaviour_data(n), q_optimal_data(n)
        mc = None if not mc_values or n not in mc_values else DATA_MEAN_REWARD[n] + GAMMA * mc_values[n]
        b_q, i_q = _mean(bcq.get("q_final", [])), _mean(icq.get("q_final", []))
        if b_q is not None:
            ratios[n] = b_q / qb
            diverges[n] = b_q > 1.1 * qo
        i_err = None if i_q is None else abs(i_q - qb) / qb
        if i_err is not None:
            accurate[n] = i_err <= 0.2
        lines.append(
            f"| {n} | {qb:.2f} | {_fmt(mc, 2)} | {qo:.2f} | {_fmt(b_q)} [{_fmt(_mean(bcq.get('q_peak', [])))}] | "
            f"{bcq_fixed_point(n):.1f} | {_fmt(i_q)} [{_fmt(_mean(icq.get('q_peak', [])))}] | {_fmt(ratios.get(n), 2)} | {_fmt(i_err, 2)} | "
            f"{_fmt(_mean(bcq.get('q0_final', [])))} | {_fmt(_mean(icq.get('q0_final', [])))} | "
            f"{_fmt(_mean(bcq.get('v_policy_mc', [])))} | {_fmt(_mean(icq.get('v_policy_mc', [])))} |"
        )
    growing = len(ratios) >= 2 and all(ratios[a] < ratios[b] for a, b in zip(sorted(ratios), sorted(ratios)[1:]))
    div_ns = [n for n, d in sorted(diverges.items()) if d]
    acc_ns = [n for n, a in sorted(accurate.items()) if a]
    holds = bool(div_ns) and growing and len(acc_ns) == len(accurate) > 0
    lines += [
        "",
        f"- BCQ diverges (final estimate > 1.1 x Q_opt, above what any policy earns): "
        f"{'at n = ' + ', '.join(map(str, div_ns)) if div_ns else 'at no n'} (of {len(diverges)} finished n).",
        f"- BCQ's over-estimate q / Q_beta grows with every added agent: {'yes' if growing else 'no'} "
        f"({', '.join(f'n={n}: {r:.2f}' for n, r in sorted(ratios.items())) or 'n/a'}).",
        f"- ICQ accurate (relative error to Q_beta <= 0.2): "
        f"{'at n = ' + ', '.join(map(str, acc_ns)) if acc_ns else 'at no n'} (of {len(accurate)} finished n).",
        f"- The paper's claim (BCQ diverges as n grows, ICQ stays accurate) "
        f"{'is reproduced' if holds else 'is NOT reproduced'} by these runs.",
        "",
    ]
    return "\n".join(lines)


def _exploded(curves: dict) -> bool:
    """Log y axis when some estimate leaves [0, 1000] (a diverging curve would flatten the others)."""
    values = [v for by_step in curves.values() for vs in by_step.values() for v in vs]
    return bool(values) and min(values) > 0 and max(values) > 1000


def plot(results_dir: Path, profile: str) -> Path | None:
    """results/icq_fig1[_<profile>].png from the CSV: Q of the dataset's joint actions and Q_tot(tau_2, 0) per n."""
    stem = output_stem(TABLE, profile)
    csv_path = results_dir / f"{stem}.csv"
    if not csv_path.exists():
        return None
    panels = []
    q, q0 = curves_from_csv(csv_path, "q"), curves_from_csv(csv_path, "q0")
    for algorithm in ALGORITHMS:
        curves, styles = {}, {}
        for (dataset, algo), by_step in sorted(q.items()):
            if algo != algorithm or not by_step:
                continue
            n = int(dataset[1:])
            curves[f"n={n}"] = by_step
            styles[f"n={n}"] = f"C{n - 1}-"
            last = max(by_step)
            curves[f"Q_beta n={n}"] = {min(by_step): [q_behaviour_data(n)], last: [q_behaviour_data(n)]}
            styles[f"Q_beta n={n}"] = f"C{n - 1}:"
        panels.append({"curves": curves, "styles": styles, "ylabel": "Q_tot of the dataset's joint actions",
                       "hline": (100.0, "Q_opt (any n)"), "log": _exploded(curves),
                       "title": f"{algorithm}-MA: estimate (solid) vs true value (dotted)"})
    curves, styles = {}, {}
    for (dataset, algo), by_step in sorted(q0.items()):
        label = f"{algo} n={dataset[1:]}"
        curves[label] = by_step
        styles[label] = f"C{int(dataset[1:]) - 1}" + ("-" if algo == "BCQ" else "--")
    panels.append({"curves": curves, "styles": styles, "ylabel": "Q_tot(tau_2, all actions 0)",
                   "hline": (100.0, "optimal policy's value"), "log": _exploded(curves),
                   "title": "initial state (BCQ solid, ICQ dashed)"})
    return plot_panels(panels, results_dir / f"{stem}.png",
                       title="ICQ Fig. 2(b) / Fig. 7 on lit_omarl's two-state MMDP (mean over seeds, band = min-max)")


if __name__ == "__main__":
    code = main(TABLE)
    args = build_parser(TABLE).parse_args(sys.argv[1:])
    out = Path(args.out) if args.out is not None else Path.cwd() / "results"
    stem = output_stem(TABLE, args.profile)
    md, csv_path = out / f"{stem}.md", out / f"{stem}.csv"
    if md.exists() and csv_path.exists() and _rows(csv_path):
        ns = sorted({int(r["dataset"][1:]) for r in _rows(csv_path)})
        mc = {n: mc_behaviour_value(n) for n in ns} if args.profile != "smoke" else None
        atomic_write_text(md, md.read_text() + "\n" + claim_section(csv_path, mc))
        plot(out, args.profile)
    raise SystemExit(code)
