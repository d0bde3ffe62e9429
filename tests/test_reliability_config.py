"""Issue 8.6 (safe loading) and 8.7 (config errors fail before training, naming the option)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_omarl.cli import CONFIG_DIR, main

PACKAGE = Path(__file__).resolve().parents[1] / "lit_omarl"
ASSETS = PACKAGE / "assets"


# ----------------------------------------------------------------------------- 8.6 safe loading


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield owner, name, node


def _keyword(node: ast.Call, key: str):
    for kw in node.keywords:
        if kw.arg == key:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return "<missing>"


def test_package_never_unpickles_or_evaluates_untrusted_input():
    """Every torch.load passes weights_only=True, every np.load allow_pickle=False (or omits it: the default is
    False), and nothing calls pickle/marshal loads, yaml.load, eval or exec."""
    problems, torch_loads = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if not any(word in text for word in ("load(", "loads(", "eval(", "exec(")):
            continue  # nothing to look at (keeps the scan cheap)
        tree = ast.parse(text, str(path))
        for owner, name, node in _calls(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            if owner == "torch" and name == "load":
                torch_loads += 1
                if _keyword(node, "weights_only") is not True:
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif owner in ("np", "numpy") and name == "load" and _keyword(node, "allow_pickle") not in (False, "<missing>"):
                problems.append(f"{where}: np.load with allow_pickle")
            elif owner in ("pickle", "marshal", "dill", "cloudpickle") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            elif owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
                problems.append(f"{where}: yaml.{name}")
            elif owner == "" and name in ("eval", "exec"):
                problems.append(f"{where}: {name}()")
    assert problems == []
    assert torch_loads >= 1  # the scan sees the shipped behaviour-policy loader


@pytest.mark.parametrize("path", sorted(ASSETS.rglob("*.pt")), ids=lambda p: p.name)
def test_shipped_weights_load_with_weights_only(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(ckpt, dict)
    from lit_omarl.behaviour import mappo_online, matd3_online, qmix_online
    from lit_omarl.envs import mpe

    loaders = {qmix_online.CHECKPOINT_FORMAT: qmix_online.QMIXPolicy.load,  # SMAX behaviour policies
               mappo_online.CHECKPOINT_FORMAT: mappo_online.MAPPOPolicy.load,  # SMAX (the hard maps)
               matd3_online.CHECKPOINT_FORMAT: matd3_online.load_actor,    # MPE behaviour policies
               mpe.PREY_FORMAT: mpe.MLPPreyPolicy.load}                    # the fixed MPE prey
    assert ckpt.get("format") in loaders, f"{path}: unknown checkpoint format {ckpt.get('format')!r}"
    model = loaders[ckpt["format"]](path)  # each loader itself uses weights_only=True
    params = model.parameters() if hasattr(model, "parameters") else model.net.parameters()
    assert sum(p.numel() for p in params) > 0


class _Marker:
    """Unpickling this creates a file: proof that a checkpoint's pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_resuming_from_a_malicious_checkpoint_is_refused_without_running_it(tmp_path):
    from lit_omarl.algos import BC
    from lit_omarl.data.datamodule import OfflineDataModule
    from lit_omarl.data.schema import example_arrays, write_dataset
    from lit_omarl.spec import EnvSpec
    from lit_omarl.utils.checkpoint_io import AtomicCheckpointIO

    spec = EnvSpec("matrix/xor", n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)
    data = write_dataset(tmp_path / "xor.h5", example_arrays(spec, 20), {"spec": spec})
    evil = tmp_path / "evil.ckpt"
    marker = tmp_path / "executed"
    torch.save({"state_dict": {}, "payload": _Marker(str(marker))}, evil)
    model = BC(spec=spec.to_dict(), agent="mlp", use_last_action=False, agent_hidden_dim=8, eval_every_steps=0,
               final_eval_episodes=0)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        plugins=[AtomicCheckpointIO()])
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        trainer.fit(model, datamodule=OfflineDataModule(path=str(data), batch_size=4, sampling="transition"),
                    ckpt_path=evil)
    assert not marker.exists() and trainer.global_step == 0


# ----------------------------------------------------------------------------- 8.7 config errors


def _yaml(tmp_path: Path, base: str, **changes: str) -> Path:
    """A copy of a shipped config with text replacements (old -> new)."""
    text = (CONFIG_DIR / base).read_text()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


XOR_B = "cfcql/xor/b.yaml"
CASES = {
    # name: (extra argv or YAML change, words the error must contain)
    "yaml unknown model option": ({"    cql_alpha: 1.0": "    cql_alhpa: 1.0"}, ["cql_alhpa"]),
    "yaml wrong type": ({"  batch_size: 64": "  batch_size: many"}, ["batch_size", "many"]),
    "yaml value outside a choice": ({"    agent: mlp ": "    agent: cnn "}, ["agent", "cnn"]),
    "yaml unknown section": ({"trainer:\n": "trainr:\n"}, ["trainr"]),
    "yaml class_path typo": ({"lit_omarl.algos.CFCQL": "lit_omarl.algos.CFCQLL"}, ["CFCQLL"]),
    "yaml syntax error": ({"  max_steps: 3000": "  max_steps: [3000"}, ["line 5, column 14", "expected ',' or ']'"]),
    "cli wrong trainer type": (["--trainer.max_steps=abc"], ["max_steps", "abc"]),
    "cli missing config file": (["--config=/nonexistent/cfg.yaml"], ["/nonexistent/cfg.yaml"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_error_fails_before_training_naming_the_option(name, tmp_path, capsys):
    change, words = CASES[name]
    if isinstance(change, dict):
        argv = ["fit", "--config", str(_yaml(tmp_path, XOR_B, **change))]
    else:
        argv = ["fit", "--config", str(CONFIG_DIR / XOR_B), *change]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (name, word, err[-2000:])
    assert not (tmp_path / "runs").exists() and not list(tmp_path.rglob("*.ckpt"))  # nothing trained or written


def test_value_rejected_by_a_constructor_fails_before_training_naming_it(tmp_path, capsys):
    """Values that parse but are invalid (checked in __init__) stop the CLI before any training."""
    with pytest.raises((ValueError, SystemExit)) as info:
        main(["fit", "--config", str(CONFIG_DIR / XOR_B), "--data.batch_size=0"])
    text = str(info.value) + capsys.readouterr().err
    assert "data.batch_size must be >= 1, got 0" in text
    assert not (tmp_path / "runs").exists() and not list(tmp_path.rglob("*.ckpt"))


def test_yaml_syntax_error_names_the_file(tmp_path, capsys):
    """jsonargparse would report '<unicode string>'; the CLI checks --config files first and names them."""
    bad = _yaml(tmp_path, XOR_B, **{"  max_steps: 3000": "  max_steps: [3000"})
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(bad)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid YAML" in err and "line" in err
    assert not (tmp_path / "runs").exists()


def test_console_fit_on_a_corrupt_dataset_exits_1_without_traceback(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an HDF5 file")
    res = subprocess.run(
        [sys.executable, "-m", "lit_omarl.cli", "fit", "--config", str(CONFIG_DIR / XOR_B),
         f"--data.path={bad}", "--data.env=null", "--data.behaviour=null"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert f"error: {bad}: key '<file>': not a readable HDF5 file" in res.stderr
