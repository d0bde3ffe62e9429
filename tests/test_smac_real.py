"""The real-SMAC adapter (lit_omarl.envs.smac_real) against a fake with the StarCraft2Env API."""

import sys

import numpy as np
import pytest
import torch

from lit_omarl.envs import make, register
from lit_omarl.envs.smac_real import SMACEnv, SMACUnavailableError, make_smac

N, O, S, A, LIMIT = 3, 4, 5, 6, 5


class FakeSC2:
    """Mimics smac.env.StarCraft2Env. A game's script is chosen by its seed:
    seed % 3 == 0: wins at step 2; 1: loses (terminated, no win) at step 3;
    2: runs to the time limit, where SMAC reports terminated + info["episode_limit"].
    obs[i] = [seed, step, i, 1]; state = [seed, step, 0, 0, 0]; agent i may use actions 0..i+1."""

    instances: list["FakeSC2"] = []

    def __init__(self, map_name="3m", seed=0, **kwargs):
        self.map_name, self.seed, self.kwargs = map_name, seed, kwargs
        self.t, self.steps_taken, self.resets, self.closed, self.done = 0, [], 0, False, False
        FakeSC2.instances.append(self)

    def get_env_info(self):
        return {"n_agents": N, "obs_shape": O, "state_shape": S, "n_actions": A, "episode_limit": LIMIT}

    def reset(self):
        self.t, self.done = 0, False
        self.resets += 1
        return self.get_obs(), self.get_state()

    def get_obs(self):
        return [np.array([self.seed, self.t, i, 1], dtype=np.float64) for i in range(N)]

    def get_state(self):
        return np.array([self.seed, self.t, 0, 0, 0], dtype=np.float64)

    def get_avail_actions(self):
        return [[1 if a <= i + 1 else 0 for a in range(A)] for i in range(N)]

    def step(self, actions):
        assert not self.done, "stepped a finished game"
        assert isinstance(actions, list) and all(type(a) is int for a in actions)
        self.steps_taken.append(actions)
        self.t += 1
        kind = self.seed % 3
        if kind == 0 and self.t == 2:
            self.done = True
            return 1.5, True, {"battle_won": True}
        if kind == 1 and self.t == 3:
            self.done = True
            return 0.25, True, {"battle_won": False}
        if self.t >= LIMIT:
            self.done = True
            return 0.1, True, {"battle_won": False, "episode_limit": True}
        return 0.1, False, {}

    def close(self):
        self.closed = True


@pytest.fixture(autouse=True)
def _fresh():
    FakeSC2.instances = []


def test_shapes_dtypes_avail_and_spec():
    env = make_smac("smac/3m", num_envs=3, seed=0, env_cls=FakeSC2, env_kwargs={"difficulty": "7"})
    s = env.spec
    assert (s.env_id, s.n_agents, s.obs_dim, s.state_dim, s.n_actions, s.episode_limit) == ("smac/3m", N, O, S, A, LIMIT)
    assert s.discrete and s.env_options == {"episode_limit": LIMIT, "env_kwargs": {"difficulty": "7"}}
    assert [g.seed for g in FakeSC2.instances] == [0, 1, 2] and FakeSC2.instances[0].kwargs == {"difficulty": "7"}
    ts = env.reset()
    assert ts.obs.shape == (3, N, O) and ts.obs.dtype == torch.float32
    assert ts.state.shape == (3, S) and ts.state.dtype == torch.float32
    assert ts.avail.shape == (3, N, A) and ts.avail.dtype == torch.bool
    assert ts.obs[2, 1].tolist() == [2.0, 0.0, 1.0, 1.0]  # game seed 2, step 0, agent 1
    assert ts.state[1].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert ts.avail[0].sum(-1).tolist() == [2, 3, 4]  # agent i: actions 0..i+1
    assert ts.info["won"].tolist() == [False] * 3


def test_win_loss_time_limit_and_no_auto_reset():
    env = make_smac("sc2/3m", num_envs=3, seed=0, env_cls=FakeSC2)  # games: win at 2, loss at 3, time limit at 5
    assert env.spec.env_id == "sc2/3m"
    ts = env.reset()
    actions = torch.tensor([[0, 1, 2]] * 3)
    log = []
    while env.active.any():
        ts = env.step(actions)
        log.append((ts.reward.tolist(), ts.terminated.tolist(), ts.truncated.tolist(), ts.info["won"].tolist(),
                    ts.obs[:, 0, 1].tolist()))
    assert len(log) == LIMIT
    reward, terminated, truncated, won, step = log[1]  # t = 2: game 0 wins
    assert reward == pytest.approx([1.5, 0.1, 0.1]) and terminated == [True, False, False] and won == [True, False, False]
    assert step == [2.0, 2.0, 2.0] and truncated == [False] * 3
    reward, terminated, truncated, won, step = log[2]  # t = 3: game 1 loses; finished game 0 pays 0 and stays won
    assert reward == pytest.approx([0.0, 0.25, 0.1]) and terminated == [False, True, False] and won == [True, False, False]
    # SMAC's "terminated" at the time limit becomes truncated, not terminated
    assert log[4][1] == [False, False, False] and log[4][2] == [False, False, True]
    assert log[4][3] == [True, False, False]
    # frozen observations of finished games; finished games are never stepped (no auto-reset)
    assert log[4][4] == [2.0, 3.0, 5.0]
    assert [len(g.steps_taken) for g in FakeSC2.instances] == [2, 3, 5]
    assert [g.resets for g in FakeSC2.instances] == [1, 1, 1]
    assert FakeSC2.instances[2].steps_taken[0] == [0, 1, 2]
    env.reset()
    assert [g.resets for g in FakeSC2.instances] == [2, 2, 2] and env.active.all()
    env.close()
    assert all(g.closed for g in FakeSC2.instances)


def test_lower_episode_limit_truncates_and_bad_options_fail():
    env = make_smac("smac/3m", num_envs=3, seed=0, env_cls=FakeSC2, episode_limit=2)
    env.reset()
    ts = env.step(torch.zeros(3, N, dtype=torch.long))
    ts = env.step(torch.zeros(3, N, dtype=torch.long))
    assert ts.terminated.tolist() == [True, False, False] and ts.truncated.tolist() == [False, True, True]
    assert not env.active.any()
    with pytest.raises(ValueError, match=r"episode_limit must be in \[1, 5\]"):
        make_smac("smac/3m", env_cls=FakeSC2, episode_limit=9)
    with pytest.raises(ValueError, match="unavailable action"):
        env.reset()
        env.step(torch.tensor([[0, 0, 5]] * 3))  # agent 2 may use 0..3 only
    with pytest.raises(ValueError, match="env_kwargs must not contain 'seed'"):
        make_smac("smac/3m", env_cls=FakeSC2, env_kwargs={"seed": 3})
    with pytest.raises(ValueError, match="expected an id 'smac/<map>'"):
        make_smac("smax/3m", env_cls=FakeSC2)


def test_missing_smac_is_a_clear_import_error_and_registry_is_lazy(monkeypatch):
    monkeypatch.setitem(sys.modules, "smac", None)  # "import smac" now fails like an absent package
    monkeypatch.setitem(sys.modules, "smac.env", None)
    with pytest.raises(SMACUnavailableError, match="needs the smac package and StarCraft II.*smax/<map>"):
        make_smac("smac/3m")
    import lit_omarl.envs as envs

    monkeypatch.setattr(envs, "_FACTORIES", dict(envs._FACTORIES))  # the registration ends with the test
    monkeypatch.setattr(envs, "_IDS", dict(envs._IDS))
    register("smac", "lit_omarl.envs.smac_real:make_smac", ids=["smac/*"], overwrite=True)
    env = make("smac/3m", num_envs=2, seed=4, env_cls=FakeSC2)
    assert isinstance(env, SMACEnv) and env.num_envs == 2 and [g.seed for g in FakeSC2.instances] == [4, 5]


def test_smac_is_not_imported_by_the_package():
    import lit_omarl.envs  # noqa: F401  (this module imported smac_real at collection)

    assert "lit_omarl.envs.smac_real" in sys.modules and sys.modules.get("smac") is None
