"""SMAX behind the batched protocol: sizes, avail, win / termination / truncation, freezing, determinism.

One compiled (map, B) pair (smax/2s3z, B = 4) serves every test; it is shared
with tests/test_qmix_online.py and cached on disk by JAX across runs.
"""

import importlib.util
import subprocess
import sys

import pytest
import torch

pytest.importorskip("jax")
if importlib.util.find_spec("jaxmarl") is None:  # (importing jaxmarl itself costs ~12 s; the env avoids it)
    pytest.skip("jaxmarl is not installed (pip install lit-omarl[smax])", allow_module_level=True)

from lit_omarl.data.generate import generate_dataset  # noqa: E402
from lit_omarl.envs import list_envs, make  # noqa: E402
from lit_omarl.envs.smax import smax_spec  # noqa: E402

B = 4
SIZES = {  # REFERENCE.md: agents, obs, state, actions
    "2s3z": (5, 127, 120, 10),
    "3s_vs_5z": (3, 101, 96, 10),
    "5m_vs_6m": (5, 140, 132, 11),
    "6h_vs_8z": (6, 179, 168, 13),
    "3s5z_vs_3s6z": (8, 218, 204, 14),
}


@pytest.fixture(scope="module")
def env():
    return make("smax/2s3z", num_envs=B, seed=0)



def _uniform(ts, g):
    avail = ts.avail.float()
    return torch.multinomial(avail.reshape(-1, avail.shape[-1]), 1, generator=g).reshape(avail.shape[:2])


def _focus_fire(ts):
    """Attack the last enemy in range (a zealot), else move right (action 1, towards the enemy), else stop."""
    attack = ts.avail[..., 5:]
    last = 5 + attack.shape[-1] - 1 - attack.flip(-1).float().argmax(-1)
    move = torch.where(ts.avail[..., 1], 1, 4)
    return torch.where(attack.any(-1), last, move)


def _run(env, policy, seed):
    """Play B episodes to the end; per env: length, return, final-step reward, terminated, truncated, won."""
    ts = env.reset(seed=seed)
    n = env.num_envs
    out = {"length": torch.zeros(n, dtype=torch.long), "return": torch.zeros(n), "last_reward": torch.zeros(n),
           "terminated": torch.zeros(n, dtype=torch.bool), "truncated": torch.zeros(n, dtype=torch.bool),
           "won": torch.zeros(n, dtype=torch.bool)}
    while env.active.any():
        active = env.active.clone()
        ts = env.step(policy(ts))
        out["length"] += active.long()
        out["return"] += ts.reward
        out["last_reward"] = torch.where(active, ts.reward, out["last_reward"])
        assert not (ts.terminated & ts.truncated).any()
        assert not ((ts.terminated | ts.truncated) & ~active).any()  # an episode ends once
        out["terminated"] |= ts.terminated
        out["truncated"] |= ts.truncated
        assert not (ts.info["won"] & ~ts.terminated & ~out["won"]).any()  # a win appears with termination
        out["won"] |= ts.info["won"]
    return out


def test_sizes_registry_and_lazy_import():
    for name, (n, o, s, a) in SIZES.items():
        spec = smax_spec(name)  # builds no JAX function
        assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions) == (n, o, s, a), name
        assert spec.env_id == f"smax/{name}" and spec.episode_limit == 100 and spec.discrete
        assert f"smax/{name}" in list_envs()
    with pytest.raises(ValueError, match="known maps.*2s3z"):
        make("smax/corridor")
    with pytest.raises(ValueError, match="smax/<map>"):
        make("smax")
    with pytest.raises(TypeError, match="colour"):
        make("smax/2s3z", colour="red")
    code = "import sys, lit_omarl, lit_omarl.envs, lit_omarl.behaviour; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_random_policy_runs_to_the_end_with_avail_and_freezing(env):
    g = torch.Generator().manual_seed(0)
    ts = env.reset(seed=1)
    assert ts.obs.shape == (B, 5, 127) and ts.state.shape == (B, 120) and ts.avail.shape == (B, 5, 10)
    assert ts.obs.dtype == torch.float32 and ts.avail.dtype == torch.bool and ts.info["won"].shape == (B,)
    assert ts.avail[..., 4].all() and not ts.avail[..., 5:].any()  # stop always; nobody in range at the start
    with pytest.raises(ValueError, match="unavailable action"):
        env.step(torch.full((B, 5), 5))
    ts = env.reset(seed=1)
    frozen = {}
    while env.active.any():
        active = env.active.clone()
        ts = env.step(_uniform(ts, g))
        assert ts.state.min() >= 0 and ts.state.max() <= 1  # the scaled world_state
        dead = ts.obs.abs().sum(-1) == 0  # a dead unit sees nothing and may only stop
        assert not (ts.avail[..., :4] & dead[..., None]).any() and not (ts.avail[..., 5:] & dead[..., None]).any()
        for b in range(B):
            if b in frozen:
                assert torch.equal(ts.obs[b], frozen[b][0]) and torch.equal(ts.state[b], frozen[b][1])
                assert torch.equal(ts.avail[b], frozen[b][2]) and ts.reward[b] == 0 and not ts.done[b]
            elif active[b] and ts.done[b]:
                frozen[b] = (ts.obs[b].clone(), ts.state[b].clone(), ts.avail[b].clone())
    assert len(frozen) == B and (env.t >= 1).all() and (env.t <= 100).all()


def test_win_loss_and_truncation(env):
    results = [_run(env, _focus_fire, seed) for seed in range(4)]
    r = {k: torch.cat([x[k] for x in results]) for k in results[0]}
    assert r["won"].any() and (~r["won"]).any()
    assert (r["terminated"] ^ r["truncated"]).all()  # every episode ended exactly one way
    # SMAX's log wrapper: won <=> team reward of the last step >= 1 (the win bonus)
    assert torch.equal(r["won"], r["terminated"] & (r["last_reward"] >= 1.0))
    assert (r["return"] <= env.max_return + 1e-4).all() and (r["return"] >= 0).all()
    assert (r["length"][r["truncated"]] == 100).all() and (r["length"][r["terminated"]] <= 100).all()

    short = make("smax/2s3z", num_envs=B, seed=0, episode_limit=10)  # same compiled step: the limit lives in Python
    assert short.compile_seconds == 0.0 and short.spec.env_options["episode_limit"] == 10
    out = _run(short, _focus_fire, 0)
    assert out["truncated"].all() and not out["terminated"].any() and (out["length"] == 10).all()


def test_deterministic_given_seed(env):
    def trace(e, seed):
        g = torch.Generator().manual_seed(7)
        ts = e.reset(seed=seed)
        obs = [ts.obs]
        for _ in range(15):
            ts = e.step(_uniform(ts, g))
            obs.append(ts.obs)
        return torch.stack(obs)

    first = trace(env, 3)
    assert torch.equal(first, trace(env, 3))
    other = make("smax/2s3z", num_envs=B, seed=0)
    assert torch.equal(first, trace(other, 3))
    assert not torch.equal(first[0], trace(env, 4)[0])
    a, b = make("smax/2s3z", num_envs=B, seed=11), make("smax/2s3z", num_envs=B, seed=11)
    assert torch.equal(a.reset().obs, b.reset().obs)


def test_uniform_generation_gives_a_valid_dataset():
    arrays, attrs = generate_dataset("smax/2s3z", "uniform", episodes=B, seed=0, batch_size=B)
    assert arrays["obs"].shape == (B, 101, 5, 127) and arrays["won"].shape == (B,)
    assert attrs["spec"].env_options == {"attack_mode": "closest", "enemy_shoots": True, "episode_limit": 100,
                                         "raw_state": False}
    filled = arrays["filled"].astype(bool)
    assert filled[:, 0].all() and arrays["avail_actions"][:, :-1][filled].any(-1).all()
