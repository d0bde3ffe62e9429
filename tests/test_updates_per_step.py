"""Lightning fast paths: data.updates_per_step (K updates per training step) and the plain backward on one
device train exactly as Lightning's default path."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_omarl.algos import ALGORITHMS
from lit_omarl.data.datamodule import BatchGroup, OfflineDataModule
from lit_omarl.data.schema import example_arrays, write_dataset
from lit_omarl.eval.callback import EvaluationCallback
from lit_omarl.spec import EnvSpec

SPEC = EnvSpec(env_id="matrix/xor", n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)


@pytest.fixture
def dataset(tmp_path):
    return str(write_dataset(tmp_path / "xor.h5", example_arrays(SPEC, n_episodes=40, seed=0), {"spec": SPEC}))


class _Evals(EvaluationCallback):
    """Records the steps evaluations happen at, without running episodes."""

    def _run(self, pl_module, episodes, seed):
        return {"episode_return": 0.0, "episodes": float(episodes)}


def _fit(path, k, max_steps, name="cql_ma", every=None, callbacks=()):
    torch.manual_seed(0)
    model = ALGORITHMS[name](spec=SPEC.to_dict(), eval_every_steps=0, final_eval_episodes=0, agent="mlp",
                             use_last_action=False)
    dm = OfflineDataModule(path, batch_size=8, sampling="transition", seed=3, updates_per_step=k)
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=list(callbacks))
    trainer.fit(model, datamodule=dm)
    return model, trainer


def test_groups_of_updates_train_exactly_as_single_updates(dataset):
    one, t1 = _fit(dataset, 1, 10)
    four, t4 = _fit(dataset, 4, 10)  # 4 + 4 + 2: the last group stops at max_steps
    assert t1.global_step == t4.global_step == 10
    for (name, a), (_, b) in zip(one.state_dict().items(), four.state_dict().items()):
        assert torch.equal(a, b), name


def test_evaluations_fall_on_the_first_step_past_each_multiple(dataset):
    evals = _Evals(every_n_steps=4, final_episodes=0)
    _fit(dataset, 3, 12, callbacks=[evals])  # batch ends at 3, 6, 9, 12
    assert [h["step"] for h in evals.history] == [6, 9, 12]
    evals = _Evals(every_n_steps=4, final_episodes=0)
    _fit(dataset, 1, 12, callbacks=[evals])
    assert [h["step"] for h in evals.history] == [4, 8, 12]


def test_checkpoint_period_must_be_a_multiple_of_the_group(dataset, tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=0, save_last=True)
    model = ALGORITHMS["bc"](spec=SPEC.to_dict(), eval_every_steps=0, final_eval_episodes=0, agent="mlp",
                             use_last_action=False)
    dm = OfflineDataModule(dataset, batch_size=8, sampling="transition", updates_per_step=2)
    trainer = L.Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", callbacks=[ckpt])
    with pytest.raises(ValueError, match=r"every_n_train_steps \(5\) must be a multiple of data.updates_per_step \(2\)"):
        trainer.fit(model, datamodule=dm)
    with pytest.raises(ValueError, match="data.updates_per_step must be >= 1"):
        OfflineDataModule(dataset, updates_per_step=0)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, BatchGroup) and len(batch) == 2 and batch[0]["obs"].shape[0] == 8


def test_plain_backward_on_one_device_trains_as_lightning_backward(dataset):
    plain, _ = _fit(dataset, 1, 6, name="cfcql")
    assert plain._plain_backward  # one CPU device, 32-bit: loss.backward() directly
    cls = ALGORITHMS["cfcql"]
    ALGORITHMS["cfcql"] = type("CFCQLLightningBackward", (cls,), {"PLAIN_BACKWARD_ON_ONE_DEVICE": False})
    try:
        hooked, _ = _fit(dataset, 1, 6, name="cfcql")
    finally:
        ALGORITHMS["cfcql"] = cls
    assert not hooked._plain_backward
    for (name, a), (_, b) in zip(plain.state_dict().items(), hooked.state_dict().items()):
        assert torch.equal(a, b), name
