"""ICQ's two-state MMDP (lit_omarl/envs/icq_mmdp.py): transitions and rewards computed by hand."""

import pytest
import torch

from lit_omarl.envs import env_options, list_envs, make
from lit_omarl.envs.icq_mmdp import TAU_1, TAU_2

T1 = [1.0, 0.0]  # one-hot of tau_1 (index 0)
T2 = [0.0, 1.0]  # one-hot of tau_2 (index 1)


def _step(env, joint):
    return env.step(torch.tensor(joint, dtype=torch.long))


def test_registered_with_options():
    assert "icq_mmdp" in list_envs()
    assert env_options("icq_mmdp") == {"n_agents": 4, "episode_limit": 100, "n": None}
    env = make("icq_mmdp", n=3)
    s = env.spec
    assert (s.n_agents, s.obs_dim, s.state_dim, s.n_actions, s.episode_limit) == (3, 2, 2, 2, 100)
    assert s.env_options == {"n_agents": 3, "episode_limit": 100}
    assert make("icq_mmdp", **s.env_options).spec == s  # env_options rebuild the same task
    with pytest.raises(ValueError, match="n_agents"):
        make("icq_mmdp", n_agents=0)
    with pytest.raises(ValueError, match="conflicting"):
        make("icq_mmdp", n=2, n_agents=3)


def test_two_agents_transitions_and_rewards():
    # n = 2: tau_2 -> tau_1 iff a_1 + a_2 <= 1; reward 1 iff (0, 0), in either state
    env = make("icq_mmdp", num_envs=4, n_agents=2)
    ts = env.reset()
    assert ts.obs.tolist() == [[T2, T2]] * 4 and ts.state.tolist() == [T2] * 4
    ts = _step(env, [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert ts.reward.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert ts.state.tolist() == [T1, T1, T1, T2]  # sum 0, 1, 1 move; sum 2 > 1 stays
    assert ts.obs[:, 0].tolist() == ts.state.tolist() and ts.obs[:, 1].tolist() == ts.state.tolist()
    ts = _step(env, [[1, 1], [0, 0], [1, 1], [0, 1]])  # tau_1 is absorbing; env 3 leaves tau_2 now
    assert ts.reward.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert ts.state.tolist() == [T1, T1, T1, T1]
    assert not ts.terminated.any() and not ts.truncated.any()


def test_four_agents_threshold_is_half_of_n():
    # n = 4: sum <= 2 moves (a tie moves), sum 3 or 4 stays; reward only for (0, 0, 0, 0)
    env = make("icq_mmdp", num_envs=5, n_agents=4)
    env.reset()
    ts = _step(env, [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    assert ts.reward.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert ts.state.argmax(-1).tolist() == [TAU_1, TAU_1, TAU_1, TAU_2, TAU_2]
    ts = _step(env, [[0, 0, 0, 0]] * 5)  # the optimal joint action pays 1 in tau_2 too, and moves
    assert ts.reward.tolist() == [1.0] * 5
    assert ts.state.argmax(-1).tolist() == [TAU_1] * 5


def test_one_agent_moves_only_with_action_zero():
    env = make("icq_mmdp", num_envs=2, n_agents=1)
    env.reset()
    ts = _step(env, [[1], [0]])  # 1 <= 0.5 is false
    assert ts.state.argmax(-1).tolist() == [TAU_2, TAU_1]
    assert ts.reward.tolist() == [0.0, 1.0]


def test_time_limit_truncates_and_optimal_return():
    env = make("icq_mmdp", num_envs=2, n_agents=3, episode_limit=5)
    ts = env.reset()
    expert, gen, ret, steps = env.expert(), torch.Generator(), torch.zeros(2), 0
    expert.begin(ts, gen)
    while env.active.any():
        ts = env.step(expert.act(ts, gen))
        ret += ts.reward
        steps += 1
    assert steps == 5 and ret.tolist() == [5.0, 5.0] == [env.max_return] * 2
    assert ts.truncated.all() and not ts.terminated.any()


def test_generated_dataset_matches_the_rules():
    # the data path every reproduction uses: epsilon-greedy around the optimal policy
    from lit_omarl.data.generate import generate_dataset

    arrays, attrs = generate_dataset("icq_mmdp", "epsilon:0.6:expert", episodes=4, seed=0,
                                     env_options={"n_agents": 3, "episode_limit": 10})
    a, s, r = arrays["actions"], arrays["state"], arrays["reward"]
    assert a.shape == (4, 10, 3) and s.shape == (4, 11, 2) and arrays["filled"].all() and not arrays["terminated"].any()
    assert (r == (a == 0).all(-1)).all()
    in_t2 = s[:, :-1, 1] == 1
    moves = in_t2 & (2 * a.sum(-1) <= 3)
    expected_next_t2 = in_t2 & ~moves
    assert ((s[:, 1:, 1] == 1) == expected_next_t2).all()
    assert (s[:, 0, 1] == 1).all()


# ---------------------------------------------------------------- reproduction helpers (reproductions/icq_fig1.py)
def _fig1():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "reproductions" / "icq_fig1.py"
    spec = importlib.util.spec_from_file_location("icq_fig1_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_values_match_the_generated_datasets():
    # the configs' datasets (epsilon:0.6:expert, 32 episodes, generate_seed 0) have exactly these mean rewards
    import yaml

    from lit_omarl.data.generate import generate_dataset
    from lit_omarl.repro.train import config_path

    fig1 = _fig1()
    for n in fig1.N_AGENTS:
        data = yaml.safe_load(config_path(f"bcq/icq_mmdp/n{n}.yaml").read_text())["data"]
        assert data == yaml.safe_load(config_path(f"icq/icq_mmdp/n{n}.yaml").read_text())["data"]
        assert data["behaviour"] == f"epsilon:{fig1.EPSILON}:expert" and data["env_options"] == {"n_agents": n}
        arrays, _ = generate_dataset(data["env"], data["behaviour"], episodes=data["episodes"], seed=data["generate_seed"],
                                     env_options=data["env_options"])
        assert float(arrays["reward"].astype("float64").mean()) == pytest.approx(fig1.DATA_MEAN_REWARD[n], abs=1e-9)
        assert (arrays["reward"].sum(1) > 0).all()  # every episode is "valuable" (holds a reward)
    # by hand: V_beta = 0.7^n / (1 - 0.99); n = 2: 0.49 * 100 = 49, Q_beta = 0.4925 + 0.99 * 49 = 49.0025
    assert fig1.behaviour_value(2) == pytest.approx(49.0)
    assert fig1.q_behaviour_data(2) == pytest.approx(49.0025)
    assert fig1.q_optimal_data(2) == pytest.approx(99.4925)
    # additive fit of 1[a_1 = a_2 = 0] at its maximum: 0.49 + 2 * 0.3 * 0.7 = 0.91; 0.4925 + 99 * 0.91
    assert fig1.bcq_fixed_point(2) == pytest.approx(90.5825)
    assert fig1.bcq_fixed_point(1) == pytest.approx(fig1.q_optimal_data(1))  # one agent: no decomposition error
    assert TABLE_OVERRIDE_Q_TRUE(fig1, 2) == pytest.approx(49.0025)


def TABLE_OVERRIDE_Q_TRUE(fig1, n):  # noqa: N802
    return fig1.TABLE.overrides_for(("icq_mmdp", f"n{n}", "BCQ"))["q_true"]


def test_mc_behaviour_value_agrees_with_the_formula():
    fig1 = _fig1()
    # 64 rollouts of 1000 steps; the per-episode discounted return has std about 5 for n = 1
    assert fig1.mc_behaviour_value(1) == pytest.approx(fig1.behaviour_value(1), rel=0.03)


def _write_csv(path, rows):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["dataset", "algorithm", "seed", "q_final", "q_peak", "q0_final", "v_policy_mc"])
        w.writeheader()
        w.writerows(rows)


def test_claim_section_verdicts(tmp_path):
    fig1 = _fig1()
    path = tmp_path / "r.csv"
    # n = 1: Q_beta 70.01, Q_opt 99.71; n = 2: Q_beta 49.00, Q_opt 99.49 (1.1 x = 109.44)
    _write_csv(path, [
        {"dataset": "n1", "algorithm": "BCQ", "seed": 0, "q_final": 80.0, "q_peak": 81.0, "q0_final": 80, "v_policy_mc": 100},
        {"dataset": "n1", "algorithm": "ICQ", "seed": 0, "q_final": 70.0, "q_peak": 71.0, "q0_final": 70, "v_policy_mc": 100},
        {"dataset": "n2", "algorithm": "BCQ", "seed": 0, "q_final": 120.0, "q_peak": 300.0, "q0_final": 99, "v_policy_mc": 100},
        {"dataset": "n2", "algorithm": "ICQ", "seed": 0, "q_final": 45.0, "q_peak": 50.0, "q0_final": 50, "v_policy_mc": 100},
    ])
    text = fig1.claim_section(path)
    assert "at n = 2 (of 2 finished n)" in text  # 120 > 109.44; 80 < 109.68
    assert "grows with every added agent: yes (n=1: 1.14, n=2: 2.45)" in text  # 80 / 70.01, 120 / 49.0025
    assert "ICQ accurate (relative error to Q_beta <= 0.2): at n = 1, 2" in text  # 0.0001, 0.082
    assert "is reproduced" in text
    _write_csv(path, [
        {"dataset": "n1", "algorithm": "BCQ", "seed": 0, "q_final": 90.0, "q_peak": 91.0, "q0_final": 80, "v_policy_mc": 100},
        {"dataset": "n2", "algorithm": "BCQ", "seed": 0, "q_final": 60.0, "q_peak": 60.0, "q0_final": 60, "v_policy_mc": 100},
        {"dataset": "n2", "algorithm": "ICQ", "seed": 0, "q_final": 30.0, "q_peak": 30.0, "q0_final": 30, "v_policy_mc": 100},
    ])
    text = fig1.claim_section(path)
    assert "BCQ diverges (final estimate > 1.1 x Q_opt, above what any policy earns): at no n" in text
    assert "ICQ accurate (relative error to Q_beta <= 0.2): at no n (of 1 finished n)" in text  # |30 - 49| / 49 = 0.39
    assert "is NOT reproduced" in text


# ---------------------------------------------------------------- curves.py: probes and Monte-Carlo values
class _Stub(torch.nn.Module):
    """A 'model' with the ICQ layout: critic(inputs) -> [B, N, A] and a mixer; or a fixed policy."""

    device = torch.device("cpu")

    def __init__(self, n, gamma=0.5, action=0):
        super().__init__()
        from lit_omarl.spec import EnvSpec

        self.spec = EnvSpec(env_id="icq_mmdp", n_agents=n, obs_dim=2, state_dim=2, n_actions=2, episode_limit=100,
                            env_options={"n_agents": n, "episode_limit": 100})
        self.hparams = type("H", (), {"gamma": gamma})()
        self.action = action
        self.critic = lambda inputs: torch.stack([inputs[..., 1] * 10 + 1, inputs[..., 1] * 10 + 2], -1)  # [B, N, 2]
        self.mixer = lambda qs, state: qs.sum(-1) + state[..., 1]  # sum of agents + 1 in tau_2

    def act(self, obs, avail, hidden=None, deterministic=True):
        return torch.full(obs.shape[:2], self.action, dtype=torch.long), hidden


def test_joint_q_probe_plumbing():
    from lit_omarl.repro.curves import JointQProbe

    probe = JointQProbe({"zero": {"obs": [[0, 1], [0, 1]], "state": [0, 1], "actions": [0, 0]},
                         "mixed": {"obs": [[1, 0], [1, 0]], "state": [1, 0], "actions": [0, 1]},
                         "greedy": {"obs": [[0, 1], [0, 1]], "state": [0, 1], "actions": "greedy"}}, every_n_steps=5)
    # critic input [state(2), obs(2), id(2)]: feature 1 = state tau_2 -> Q_i = (11, 12) in tau_2, (1, 2) in tau_1
    # zero: 11 + 11 + 1 = 23; mixed in tau_1: 1 + 2 + 0 = 3; greedy (the stub plays 0): 23
    assert probe.probe(_Stub(2)) == {"zero": 23.0, "mixed": 3.0, "greedy": 23.0}
    with pytest.raises(ValueError, match="misses"):
        JointQProbe({"bad": {"obs": [[0, 1]]}})


def test_policy_value_mc_is_the_discounted_return():
    from lit_omarl.repro.curves import policy_value_mc

    # optimal policy, gamma 0.5, 3 steps: 1 + 0.5 + 0.25
    assert policy_value_mc(_Stub(2, gamma=0.5, action=0), horizon=3) == pytest.approx(1.75)
    assert policy_value_mc(_Stub(2, gamma=0.5, action=1), horizon=3) == 0.0
