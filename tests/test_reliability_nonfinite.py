"""Issue 8.5: a NaN/inf loss stops training naming the term and the step; the last good checkpoint is kept."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_omarl.algos import BC
from lit_omarl.cli import CONFIG_DIR, main
from lit_omarl.data.datamodule import OfflineDataModule
from lit_omarl.data.schema import example_arrays, write_dataset
from lit_omarl.spec import EnvSpec
from lit_omarl.utils.checkpoint_io import AtomicCheckpointIO
from lit_omarl.utils.nonfinite import NonFiniteLossError, NonFiniteStateError, check_finite_metrics, first_non_finite

XOR = EnvSpec("matrix/xor", n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)


# ----------------------------------------------------------------------------- the check itself


def test_finite_metrics_pass_and_legitimate_infinities_are_allowed():
    check_finite_metrics({"loss": torch.tensor(1.5), "q_mean": torch.tensor(-3.0), "alpha": 0.1}, step=3)
    # a running maximum that starts at -inf, or a huge importance weight, is not a loss
    check_finite_metrics({"loss": torch.tensor(0.2), "best_return": torch.tensor(-math.inf),
                          "weight_max": torch.tensor(math.inf)}, step=0)


@pytest.mark.parametrize("metrics, named", [
    ({"loss": torch.tensor(math.nan), "td_loss": torch.tensor(math.nan), "cql_gap": torch.tensor(0.5)},
     {"train/loss": math.nan, "train/td_loss": math.nan}),
    ({"loss": torch.tensor(math.inf), "critic_loss": torch.tensor(math.inf), "q_mean": torch.tensor(2.0)},
     {"train/loss": math.inf, "train/critic_loss": math.inf}),
    ({"policy_loss": torch.tensor(-math.inf), "ess": 4.0}, {"train/policy_loss": -math.inf}),
    ({"loss": torch.tensor(1.0), "kl_mean": torch.tensor(math.nan)}, {"train/kl_mean": math.nan}),  # NaN anywhere
    ({"loss": 1.0, "nll": float("nan")}, {"train/nll": math.nan}),  # plain floats too
])
def test_non_finite_loss_terms_are_named_with_the_step(metrics, named):
    with pytest.raises(NonFiniteLossError) as info:
        check_finite_metrics(metrics, step=41)
    err = info.value
    assert err.step == 41
    assert set(err.terms) == set(named)
    for name, value in named.items():
        assert (math.isnan(value) and math.isnan(err.terms[name])) or err.terms[name] == value
        assert name in str(err)
    assert "at training step 41" in str(err)
    again = pickle.loads(pickle.dumps(err))  # reproduction workers send errors across processes
    assert str(again) == str(err) and again.step == 41


def test_checkpoint_scan_names_the_first_bad_tensor():
    ckpt = {"state_dict": {"w": torch.ones(3), "best": torch.tensor(-math.inf), "b": torch.tensor([0.0, math.nan])},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}}]}
    assert first_non_finite(ckpt, {"w", "b"}) == ("state_dict.b", 1, 2)  # -inf buffer 'best' is allowed
    ckpt["state_dict"]["b"] = torch.zeros(2)
    assert first_non_finite(ckpt, {"w", "b"}) is None
    ckpt["optimizer_states"][0]["state"][0]["exp_avg"] = torch.tensor([math.inf, 1.0])
    assert first_non_finite(ckpt, {"w", "b"}) == ("optimizer_states[0].state.0.exp_avg", 1, 2)
    ckpt["optimizer_states"][0]["state"][0]["exp_avg"] = torch.zeros(2)
    ckpt["state_dict"]["best"] = torch.tensor(math.nan)  # NaN in a buffer is never legitimate
    assert first_non_finite(ckpt, {"w", "b"}) == ("state_dict.best", 1, 1)


# ----------------------------------------------------------------------------- in training


class PoisonedBC(BC):
    """BC whose loss becomes NaN at ``nan_at`` (a real NaN update), or whose weight is set to NaN
    after update ``poison_weight_at`` while every loss stays finite."""

    def __init__(self, *args, nan_at: int = -1, poison_weight_at: int = -1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nan_at, self.poison_weight_at = nan_at, poison_weight_at

    def policy_nll(self, net, batch):
        nll = super().policy_nll(net, batch)
        return nll * math.nan if self.trainer.global_step == self.nan_at else nll

    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)
        if self.trainer.global_step == self.poison_weight_at:
            with torch.no_grad():
                self.policy.net[0].weight[0, 0] = math.nan


def _trainer(tmp_path: Path, steps: int = 12) -> tuple[L.Trainer, OfflineDataModule]:
    data = write_dataset(tmp_path / "xor.h5", example_arrays(XOR, 40, seed=0), {"spec": XOR})
    dm = OfflineDataModule(path=str(data), batch_size=8, sampling="transition")
    ckpt_dir = tmp_path / "ckpt"
    trainer = L.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        plugins=[AtomicCheckpointIO()], default_root_dir=tmp_path,
                        callbacks=[ModelCheckpoint(ckpt_dir, every_n_train_steps=2, save_last=True, save_top_k=0)])
    return trainer, dm


def _model(**kwargs) -> PoisonedBC:
    return PoisonedBC(spec=XOR.to_dict(), agent="mlp", use_last_action=False, agent_hidden_dim=8,
                      eval_every_steps=0, final_eval_episodes=10, **kwargs)


def test_nan_loss_stops_training_naming_term_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _model(nan_at=7)
    trainer, dm = _trainer(tmp_path)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(model, datamodule=dm)
    message = str(info.value)
    assert "non-finite loss at training step 7: train/loss=nan, train/nll=nan" in message
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 6  # the checkpoint of the last good state, not overwritten
    assert first_non_finite(saved) is None
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary file left
    # the bad update had been applied in memory (Adam with NaN gradients): it was never written
    assert not torch.isfinite(model.policy.net[0].weight).all()


def test_nan_weights_with_finite_losses_are_never_checkpointed(tmp_path):
    model = _model(poison_weight_at=6)  # update 6 leaves a NaN weight; its checkpoint (step 6) is refused
    trainer, dm = _trainer(tmp_path)
    with pytest.raises(NonFiniteStateError) as info:
        trainer.fit(model, datamodule=dm)
    assert str(info.value).startswith("refusing to write a checkpoint at training step 6: "
                                      "'state_dict.policy.net.0.weight' holds 1 NaN/inf value(s) out of 24")
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4 and first_non_finite(saved) is None
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.ckpt"]


def test_huge_rewards_stop_lit_omarl_fit_at_step_0_naming_the_td_loss(tmp_path, capsys):
    """Finite but huge rewards (3e38) make CFCQL's TD loss overflow: the run stops at once, nothing is saved."""
    arrays = example_arrays(XOR, 40, seed=0)
    arrays["reward"][:] = 3e38
    data = write_dataset(tmp_path / "huge.h5", arrays, {"spec": XOR})
    argv = ["fit", "--config", str(CONFIG_DIR / "cfcql/xor/b.yaml"), "--data.env=null", "--data.behaviour=null",
            f"--data.path={data}", "--trainer.max_steps=5", "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.enable_progress_bar=false",
            "--model.init_args.agent_hidden_dim=8", "--model.init_args.behaviour_pretrain_steps=2",
            "--model.init_args.eval_every_steps=0", "--model.init_args.final_eval_episodes=10",
            "--checkpoint.every_n_train_steps=1"]
    with pytest.raises(NonFiniteLossError) as info:
        main(argv)
    assert info.value.step == 0 and "train/td_loss" in info.value.terms and "train/loss" in info.value.terms
    assert not list(tmp_path.rglob("*.ckpt"))
