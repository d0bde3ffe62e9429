"""The contract every algorithm of ALGORITHMS must keep (docs/CONTRACTS.md).

A short fit on a tiny hand-built episode batch, parameters change, act()
returns available long actions, and a checkpoint round trip (weights_only)
gives the same deterministic actions. New algorithms are covered by being
added to ALGORITHMS: discrete ones (``supports_discrete``) on a tiny discrete
batch, continuous ones (``supports_continuous``) on a tiny continuous batch
with asymmetric action bounds, where act() must return float actions inside
the bounds.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lit_omarl.algos import ALGORITHMS, CFCQL, ConservativeQMIX
from lit_omarl.spec import EnvSpec

B, T, N, O, S, A = 4, 3, 2, 5, 6, 3
SPEC = EnvSpec(env_id="test/tiny", n_agents=N, obs_dim=O, state_dim=S, n_actions=A, episode_limit=T)
AGENT_TYPES = ("rnn", "mlp")
# Settings that keep each algorithm fast on a tiny batch (unknown names use their defaults).
FAST: dict[str, dict] = {
    "cfcql": {"behaviour_pretrain_steps": 4, "behaviour_patience": 0, "cql_alpha": 1.0},
    "macql": {"n_samples": 8, "cql_alpha": 1.0},
    "madtkd": {"teacher_pretrain_steps": 4},
}
COMMON = {"eval_every_steps": 0, "final_eval_episodes": 0, "agent_hidden_dim": 16}


def tiny_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """An episode batch in the CONTRACTS.md format: lengths 3, 2, 3, 1; padding zeroed."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([3, 2, 3, 1])
    steps = torch.arange(T)
    mask = (steps[None] < lengths[:, None]).float()  # [B, T]
    obs_valid = (torch.arange(T + 1)[None] <= lengths[:, None]).float()  # [B, T+1]
    avail = torch.rand(B, T + 1, N, A, generator=g) > 0.4
    avail[..., 0] = True
    avail &= obs_valid[:, :, None, None].bool()
    scores = torch.rand(B, T, N, A, generator=g).masked_fill(~avail[:, :T], -1.0)
    actions = scores.argmax(-1) * mask[:, :, None].long()
    terminated = torch.zeros(B, T)
    terminated[0, 2] = 1.0  # episode 0 terminates; episodes 1-3 are cut by the time limit
    return {
        "obs": torch.randn(B, T + 1, N, O, generator=g) * obs_valid[:, :, None, None],
        "state": torch.randn(B, T + 1, S, generator=g) * obs_valid[:, :, None],
        "actions": actions,
        "avail_actions": avail,
        "reward": torch.randn(B, T, generator=g) * mask,
        "terminated": terminated,
        "mask": mask,
    }


class Forever:
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


class TinyData(L.LightningDataModule):
    """The DataModule side of the contract: ``spec``, ``sampling``, ``sample()`` and batches forever."""

    def __init__(self, sampling: str = "episode", spec: EnvSpec = SPEC, batch: dict | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.sampling = sampling
        self.batch = tiny_batch() if batch is None else batch
        self.sample_calls = 0

    def sample(self) -> dict[str, torch.Tensor]:
        self.sample_calls += 1
        return self.batch

    def train_dataloader(self):
        return Forever(self.batch)


def make_trainer(max_steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def rollout_actions(model, obs, avail, deterministic=True):
    hidden, out = None, []
    for t in range(obs.shape[0]):
        actions, hidden = model.act(obs[t], avail[t], hidden, deterministic=deterministic)
        out.append(actions)
    return torch.stack(out)


DISCRETE = sorted(name for name, cls in ALGORITHMS.items() if cls.supports_discrete)
CASES = [(name, agent) for name in DISCRETE for agent in AGENT_TYPES]



def fit_three_updates(model, data):
    """Shared contract: manual optimisation, spec in hparams, 3 updates = 3 global steps that change
    every trainable parameter and keep them finite. Returns the trainer."""
    assert model.automatic_optimization is False
    assert isinstance(model.hparams["spec"], dict)
    trainable = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    trainer = make_trainer(max_steps=3)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 3  # only the main optimizer counts
    unchanged = [k for k, v in model.named_parameters() if k in trainable and torch.equal(v, trainable[k])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    for p in model.parameters():
        assert torch.isfinite(p).all()
    return trainer

@pytest.mark.parametrize(("name", "agent"), CASES)
def test_algorithm_contract(name, agent, tmp_path):
    torch.manual_seed(0)
    cls = ALGORITHMS[name]
    model = cls(spec=SPEC.to_dict(), agent=agent, **COMMON, **FAST.get(name, {}))
    data = TinyData()
    trainer = fit_three_updates(model, data)

    # act(): long [B, N] actions among the available ones, over a few steps with the hidden state.
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(4, 5, N, O, generator=g)  # [steps, B, N, O]
    avail = torch.rand(4, 5, N, A, generator=g) > 0.5
    avail[..., 2] = True
    for deterministic in (True, False):
        acts = rollout_actions(model, obs, avail, deterministic)
        assert acts.shape == (4, 5, N) and acts.dtype == torch.long
        assert avail.gather(-1, acts.unsqueeze(-1)).all()

    # Checkpoint round trip: same weights, same deterministic actions.
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = cls.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams["spec"] == SPEC.to_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert torch.equal(rollout_actions(model, obs, avail), rollout_actions(loaded, obs, avail))

    # Resuming does not pre-train a behaviour model again.
    resumed_data = TinyData()
    resumed = cls(spec=SPEC.to_dict(), agent=agent, **COMMON, **FAST.get(name, {}))
    make_trainer(max_steps=4).fit(resumed, datamodule=resumed_data, ckpt_path=path)
    assert resumed_data.sample_calls == 0
    if model.behaviour_pretrain_budget()[0] > 0:
        assert data.sample_calls > 0 and bool(resumed.behaviour_trained)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_missing_spec_is_a_clear_error(name):
    with pytest.raises(ValueError, match="model.spec is not set"):
        ALGORITHMS[name]()


@pytest.mark.parametrize("name", DISCRETE)
def test_capability_flags_fail_fast(name):
    cls = ALGORITHMS[name]
    if not cls.supports_continuous:
        continuous = EnvSpec("test/c", N, O, S, A, action_type="continuous", episode_limit=T)
        with pytest.raises(ValueError, match="does not support continuous"):
            cls(spec=continuous.to_dict(), **COMMON)
    model = cls(spec=SPEC.to_dict(), agent="rnn", **COMMON, **FAST.get(name, {}))
    with pytest.raises(ValueError, match="needs whole episodes"):
        make_trainer(max_steps=1).fit(model, datamodule=TinyData(sampling="transition"))


def test_cfcql_uniform_lambda_needs_no_behaviour_model():
    torch.manual_seed(0)
    model = CFCQL(spec=SPEC.to_dict(), lambda_mode="uniform", **COMMON)
    assert model.behaviour is None and model.behaviour_pretrain_budget() == (0, 0)
    data = TinyData()
    make_trainer(max_steps=2).fit(model, datamodule=data)
    assert data.sample_calls == 0


@pytest.mark.parametrize("name", [n for n, c in sorted(ALGORITHMS.items()) if issubclass(c, ConservativeQMIX)])
def test_target_networks_follow_the_interval(name):
    torch.manual_seed(0)
    kwargs = {**COMMON, **FAST.get(name, {}), "target_update_interval": 2}
    model = ALGORITHMS[name](spec=SPEC.to_dict(), **kwargs)
    make_trainer(max_steps=2).fit(model, datamodule=TinyData())
    for online, target in ((model.agent, model.target_agent), (model.mixer, model.target_mixer)):
        for key, value in online.state_dict().items():
            assert torch.equal(value, target.state_dict()[key])
    make_trainer(max_steps=3).fit(model, datamodule=TinyData())  # a fresh trainer: copy at step 2, update at 3
    assert not torch.equal(model.agent.fc1.weight, model.target_agent.fc1.weight)


# ---- continuous-action algorithms ---------------------------------------------------
AC, LOW, HIGH = 2, -2.0, 1.0  # asymmetric bounds: a squashing that assumes [-1, 1] fails the bounds check
C_SPEC = EnvSpec(env_id="test/tiny_continuous", n_agents=N, obs_dim=O, state_dim=S, n_actions=AC,
                 action_type="continuous", episode_limit=T, action_low=LOW, action_high=HIGH)
# Settings that keep each continuous algorithm fast and exercise its optional parts (VAE weights, policy samples).
C_FAST: dict[str, dict] = {
    "cfcql_c": {"critic_hidden_dim": 16, "softmax_temp": 1.0, "behaviour_pretrain_steps": 4, "vae_hidden_dim": 16,
                "vae_samples": 3, "cql_policy_samples": True, "cql_n_samples": 3},
    "macql_c": {"critic_hidden_dim": 16, "cql_policy_samples": True, "cql_n_samples": 3, "cf_policy": False},
    "omar_c": {"critic_hidden_dim": 16, "cql_n_samples": 3, "omar_search_mode": "cem", "omar_num_samples": 4,
               "omar_num_elites": 2, "omar_coe": 0.5},
    "icql_c": {"critic_hidden_dim": 16, "cql_n_samples": 3, "shared_actor": True, "shared_critic": True},
    "matd3_bc": {"critic_hidden_dim": 16, "cf_policy": True},
    "bc_c": {"vae_hidden_dim": 16},
    "mabcq": {"behaviour_pretrain_steps": 4, "n_candidates": 3, "perturb_source": "vae"},
    "bcq_c": {"behaviour_pretrain_steps": 4, "n_candidates": 3},
    "ddpg_c": {"critic_hidden_dim": 16},
    "iql_c": {"critic_hidden_dim": 16},
    "awac_c": {"critic_hidden_dim": 16, "n_action_samples": 2},
    "icq_c": {"critic_hidden_dim": 16, "n_baseline_samples": 2},
}
CONTINUOUS = sorted(name for name, cls in ALGORITHMS.items() if cls.supports_continuous)
C_CASES = [(name, agent) for name in CONTINUOUS for agent in getattr(ALGORITHMS[name], "agent_types", ("mlp",))]


def tiny_continuous_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """The CONTRACTS.md continuous batch: float actions in [LOW, HIGH], avail all True, lengths 3, 2, 3, 1."""
    batch = tiny_batch(seed)
    g = torch.Generator().manual_seed(seed + 1)
    batch["actions"] = (LOW + (HIGH - LOW) * torch.rand(B, T, N, AC, generator=g)) * batch["mask"][:, :, None, None]
    batch["avail_actions"] = torch.ones(B, T + 1, N, AC, dtype=torch.bool)
    return batch


def continuous_model(name: str, agent: str):
    # GRU agents also take the previous action vector as input (ContinuousAgentInputs)
    return ALGORITHMS[name](spec=C_SPEC.to_dict(), agent=agent, use_last_action=agent == "rnn", **COMMON,
                            **C_FAST.get(name, {}))


def continuous_data(sampling: str = "episode") -> TinyData:
    return TinyData(sampling, spec=C_SPEC, batch=tiny_continuous_batch())


@pytest.mark.parametrize(("name", "agent"), C_CASES)
def test_continuous_algorithm_contract(name, agent, tmp_path):
    torch.manual_seed(0)
    cls = ALGORITHMS[name]
    model = continuous_model(name, agent)
    data = continuous_data()
    trainer = fit_three_updates(model, data)

    # act(): float [B, N, A] actions inside the bounds, over a few steps with the hidden state.
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(4, 5, N, O, generator=g) * 3.0  # [steps, B, N, O]
    avail = torch.ones(4, 5, N, AC, dtype=torch.bool)
    for deterministic in (True, False):
        acts = rollout_actions(model, obs, avail, deterministic)
        assert acts.shape == (4, 5, N, AC) and acts.dtype == torch.float32
        assert torch.isfinite(acts).all() and (acts >= LOW).all() and (acts <= HIGH).all()
    first = rollout_actions(model, obs, avail)
    assert torch.equal(first, rollout_actions(model, obs, avail))  # deterministic means deterministic
    assert first.std() > 0  # not a constant policy

    # Checkpoint round trip: same weights, same deterministic actions.
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = cls.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams["spec"] == C_SPEC.to_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert torch.equal(first, rollout_actions(loaded, obs, avail))

    # Resuming does not pre-train a behaviour model again.
    resumed_data = continuous_data()
    resumed = continuous_model(name, agent)
    make_trainer(max_steps=4).fit(resumed, datamodule=resumed_data, ckpt_path=path)
    assert resumed_data.sample_calls == 0
    if model.behaviour_pretrain_budget()[0] > 0:
        assert data.sample_calls > 0 and bool(resumed.behaviour_trained)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_continuous_capability_flags_fail_fast(name):
    cls = ALGORITHMS[name]
    if not cls.supports_discrete:
        with pytest.raises(ValueError, match="does not support discrete"):
            cls(spec=SPEC.to_dict(), **COMMON)
    if "rnn" in getattr(cls, "agent_types", ()):
        model = continuous_model(name, "rnn")
        with pytest.raises(ValueError, match="needs whole episodes"):
            make_trainer(max_steps=1).fit(model, datamodule=continuous_data(sampling="transition"))
