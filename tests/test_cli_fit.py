"""`lit-omarl fit`: shipped configs parse, training logs to TensorBoard, evaluation runs, resume works."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_omarl.cli import CONFIG_DIR, build_cli, main
from lit_omarl.repro.train import fit_config

CONFIGS = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))


def test_there_are_shipped_configs():
    assert {"cfcql/xor/a.yaml", "bc/xor/b.yaml", "macql/xor/c.yaml", "cfcql/bridge/optimal.yaml"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_parses_and_builds(name):
    cli = build_cli(["--config", str(CONFIG_DIR / name)], run=False)  # run=False: no subcommand
    spec = cli.datamodule.spec
    assert cli.model.spec.to_dict() == spec  # linked from the data, never typed twice
    assert cli.trainer.max_steps > 0


def test_fit_logs_losses_and_evaluation_to_tensorboard(tmp_path):
    main(["fit", "--config", str(CONFIG_DIR / "cfcql/xor/b.yaml"), "--trainer.max_steps=20",
          "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=5",
          "--model.init_args.eval_every_steps=10", "--model.init_args.final_eval_episodes=50",
          "--model.init_args.behaviour_pretrain_steps=20"])
    run = tmp_path / "runs" / "lit_omarl" / "version_0"
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/td_loss", "train/cql_gap", "eval/episode_return", "final/episode_return", "perf/updates_per_sec"):
        assert tag in tags, (tag, sorted(tags))
    final = json.loads((run / "final_eval.json").read_text())
    assert final["final"]["episodes"] == 50 and final["final"]["step"] == 20
    assert [h["step"] for h in final["history"]] == [10, 20]
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_print_config_shows_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIG_DIR / "cfcql/xor/a.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("cql_alpha", "softmax_temp", "td_lambda", "batch_size", "behaviour: xor-a", "max_steps"):
        assert option in out


@pytest.mark.parametrize("bad, word", [
    ("--model.init_args.cql_alpah=3", "cql_alpah"),
    ("--model.init_args.cql_alpha=abc", "cql_alpha"),
    ("--data.sampling=steps", "sampling"),
])
def test_config_errors_fail_before_training_naming_the_option(bad, word, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIG_DIR / "cfcql/xor/a.yaml"), bad])
    assert exit_info.value.code != 0
    assert word in capsys.readouterr().err
    assert not Path("runs").exists()


def test_interrupted_fit_resumes_from_last_checkpoint(tmp_path):
    overrides = {"model.init_args.eval_every_steps": 0, "model.init_args.final_eval_episodes": 20}
    first = fit_config("bc/xor/b.yaml", seed=0, workdir=tmp_path / "w", overrides={**overrides, "trainer.max_steps": 15})
    assert first["step"] == 15
    again = fit_config("bc/xor/b.yaml", seed=0, workdir=tmp_path / "w", overrides={**overrides, "trainer.max_steps": 30})
    assert again["step"] == 30  # continued from step 15, not restarted


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """A failing save leaves the previous last.ckpt intact and no temporary file behind."""
    import torch

    from lit_omarl.utils.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "ck" / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
