"""The files a reproduction run read, by content: a run is stale when one of them changed.

A run's id (:attr:`lit_omarl.repro.table.RunSpec.run_id`) hashes its cell,
seed, budget and overrides, but a cell trains a shipped config file
(``configs/<algorithm>/<task>/<dataset>.yaml``) whose content the id does not
see. :func:`record_config` (called by :func:`lit_omarl.repro.train.fit_config`
before training) writes the SHA-256 of every config a run trains into
``<workdir>/inputs.json``; the runner copies it into the run's
``result.json``. A stored result, or an interrupted run's checkpoints, whose
recorded config no longer has that content (edited or deleted) is not reused:
:func:`changed_configs` names it and the runner moves the folder to
``<runs-dir>/_stale/`` before training the run again. Results written before
this file existed record no inputs and are accepted as they are.

Light on purpose (no torch / lightning import): the runner's driver uses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from lit_omarl.utils.atomic import atomic_write_text
from lit_omarl.utils.digest import sha256_file

INPUTS_FILE = "inputs.json"
#: The shipped LightningCLI configs (``lit-omarl configs`` lists them).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def config_path(name: str) -> Path:
    """A shipped config by relative name (``cfcql/xor/a.yaml``) or a path."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = CONFIG_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"config {name!r} not found (shipped configs: `lit-omarl configs`)")
    return path


def read_inputs(folder: Path) -> dict[str, dict[str, str]]:
    """The inputs recorded in ``folder/inputs.json`` ({} when there is none)."""
    try:
        payload = json.loads((Path(folder) / INPUTS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{Path(folder) / INPUTS_FILE}: unreadable ({exc}); move the run folder away") from exc
    configs = payload.get("configs") if isinstance(payload, dict) else None
    if not isinstance(configs, dict) or not all(isinstance(v, str) for v in configs.values()):
        raise ValueError(f"{Path(folder) / INPUTS_FILE}: expected {{'configs': {{name: sha256}}}}, got {payload!r}")
    return {"configs": dict(configs)}


def record_config(workdir: Path, name: str) -> str:
    """Add config ``name``'s digest to ``workdir/inputs.json`` (atomic); return the digest."""
    digest = sha256_file(config_path(name))
    inputs = read_inputs(workdir) or {"configs": {}}
    inputs["configs"][str(name)] = digest
    atomic_write_text(Path(workdir) / INPUTS_FILE, json.dumps(inputs, indent=2, sort_keys=True) + "\n")
    return digest


def changed_configs(inputs: Mapping[str, Mapping[str, str]] | None) -> list[str]:
    """The recorded configs whose file is gone or has another content now (sorted names)."""
    changed = []
    for name, digest in sorted(((inputs or {}).get("configs") or {}).items()):
        try:
            current = sha256_file(config_path(name))
        except FileNotFoundError:
            current = None
        if current != digest:
            changed.append(name)
    return changed
