"""What the dataset recipes (:mod:`lit_omarl.behaviour.recipe` for SMAX,
:mod:`lit_omarl.behaviour.continuous_recipe` for MPE / MaMuJoCo) share: the
never-overwrite check of existing files, ``recipe.json`` bookkeeping,
commands as shell text, timing of generated files and the dataset cards.

Each recipe keeps its own :class:`RecipeItem` dataclass (their fields and
their order in ``recipe.json`` differ); the helpers here only touch the
fields both have. ``prog`` arguments are the recipe's command name
(``smax-recipe``, ``continuous-recipe``), used in error messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import h5py
import numpy as np

from lit_omarl.utils.digest import sha256_file  # noqa: F401  (re-exported: recipes import it from here)

MANIFEST = "recipe.json"
LEVELS = ("medium", "expert")


class RecipeError(ValueError):
    """A recipe that cannot run as asked (missing policies, a clashing file, a bad replay dump)."""


@dataclass
class RecipeItemBase:
    """The first fields of each recipe's ``RecipeItem`` (what the dataset is; their order is that of
    ``recipe.json``); each recipe appends its own counts, timing and provenance fields."""

    quality: str
    file: str
    status: str  # generated | cached | skipped
    behaviour: str = ""
    seed: int | None = None
    episodes: int = 0
    transitions: int = 0


# ------------------------------------------------------------------ names
def recipe_cache_dir(kind: str, prefix: str, episodes: int, seed: int) -> Path:
    """``<dataset cache>/<kind>/<prefix>_<episodes>ep_s<seed>`` ($LIT_OMARL_CACHE or ~/.cache/lit_omarl/datasets)."""
    from lit_omarl.data.datamodule import default_cache_dir

    return default_cache_dir() / kind / f"{prefix}_{int(episodes)}ep_s{int(seed)}"


def level_refs(folder: Path, shipped: bool, shipped_name: str) -> dict[str, str]:
    """``policy:`` references of medium / expert: ``<shipped_name>/<level>`` or absolute paths in ``folder``."""
    if shipped:
        return {level: f"{shipped_name}/{level}" for level in LEVELS}
    return {level: str(folder / f"{level}.pt") for level in LEVELS}


# ------------------------------------------------------------------ arguments
def check_batch_size(prog: str, batch_size: int) -> None:
    if batch_size < 1:
        raise RecipeError(f"{prog} --batch-size: must be >= 1, got {batch_size}")


def wanted_qualities(prog: str, qualities: Iterable[str] | None, known: tuple[str, ...]) -> list[str]:
    """The asked qualities in the asked order, without repeats (RecipeError naming unknown ones)."""
    wanted = list(known) if qualities is None else list(dict.fromkeys(qualities))
    unknown = [q for q in wanted if q not in known]
    if unknown:
        raise RecipeError(f"{prog} --only: unknown quality {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return wanted


def recipe_command(args: list[Any], policy_dir: str | Path | None, replay: str | Path | None) -> str:
    """The recipe's own command line, with ``--policy-dir`` / ``--replay`` when given."""
    if policy_dir is not None:
        args = args + ["--policy-dir", policy_dir]
    if replay is not None:
        args = args + ["--replay", replay]
    return shell(args)


def replay_source(prog: str, replay: str | Path) -> tuple[Path, str]:
    """The ``--replay`` file and its sha256 (RecipeError if it is missing)."""
    src = Path(replay).expanduser()
    if not src.is_file():
        raise RecipeError(f"{prog} --replay {src}: no such file")
    return src, sha256_file(src)


# ------------------------------------------------------------------ files
def policies_sha256(folder: Path, names: Iterable[str] = ("medium.pt", "expert.pt")) -> str:
    """One digest of a policy folder's checkpoints (what a generated dataset's behaviour depends on)."""
    h = hashlib.sha256()
    for name in names:
        h.update(f"{name}:{sha256_file(Path(folder) / name)};".encode())
    return h.hexdigest()


def read_attrs(path: Path) -> dict[str, Any]:
    """The file attributes of an HDF5 dataset, bytes decoded and numpy scalars as Python numbers."""
    with h5py.File(path, "r") as f:
        out = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in out.items()}


def check_existing(path: Path, want: dict[str, Any], recorded_only: Iterable[str] = ()) -> None:
    """RecipeError unless the file at ``path`` is a dataset made with the settings ``want``; keys in
    ``recorded_only`` are compared only when the file records them (settings older files did not store)."""
    try:
        have = read_attrs(path)
    except OSError as err:
        raise RecipeError(f"{path}: exists but is not a readable dataset ({err}); it is not overwritten "
                          "(remove it, choose another --out-dir, or pass --overwrite)") from None
    optional = set(recorded_only)
    diff = {k: (have.get(k), v) for k, v in want.items()
            if str(have.get(k)) != str(v) and not (k in optional and k not in have)}
    if diff:
        detail = "; ".join(f"{k}: file has {a!r}, recipe asks {b!r}" for k, (a, b) in diff.items())
        raise RecipeError(f"{path}: exists but was made with other settings ({detail}); it is not overwritten "
                          "(choose another --out-dir or pass --overwrite)")


def shell(args: Iterable[Any]) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def load_str() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def load_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def write_manifest(out: Path, header: dict[str, Any], previous: dict[str, Any], items: Iterable[Any],
                   qualities: tuple[str, ...]) -> None:
    """``out/recipe.json``: ``header`` and the datasets (earlier entries kept, this run's replacing them)."""
    by_quality = {**previous, **{i.quality: asdict(i) for i in items}}
    manifest = {**header, "datasets": {q: by_quality[q] for q in qualities if q in by_quality}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def finish_common(item: Any, path: Path, previous: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """Fill size / sha256 / counts of ``item`` and return the file's attributes; a cached file keeps the
    ``keep`` fields (timing ...) of the run that made it (from ``previous``, the manifest's datasets)."""
    item.size_bytes = path.stat().st_size
    old = previous.get(item.quality, {})
    if item.status == "cached" and old.get("size_bytes") == item.size_bytes and old.get("sha256"):
        item.sha256 = old["sha256"]
        for key in keep:
            if getattr(item, key) in (None, "", 0, {}) and old.get(key) not in (None, ""):
                setattr(item, key, old[key])
    else:
        item.sha256 = sha256_file(path)
    a = read_attrs(path)
    item.episodes, item.transitions = int(a["n_episodes"]), int(a["n_transitions"])
    return a


def make_or_check(item: Any, path: Path, want: dict[str, Any], overwrite: bool, make: Callable[[], None],
                  say: Callable[[str], None] | None = None, message: str = "", recorded_only: Iterable[str] = ()) -> None:
    """An existing ``path`` (and not ``overwrite``) must have been made with ``want`` (item stays "cached";
    ``recorded_only``: :func:`check_existing`); else ``make()`` writes it: item becomes "generated" with load
    average, wall and CPU time."""
    if path.exists() and not overwrite:
        check_existing(path, want, recorded_only)
        return
    item.status, item.load_average = "generated", load_str()
    if say is not None:
        say(message)
    start, cpu = time.perf_counter(), time.process_time()
    make()
    item.seconds, item.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu


def reuse(item: Any, path: Path, want: dict[str, Any], previous: dict[str, Any], say: Callable[[str], None],
          finish: Callable[[Any, Path, dict[str, Any]], Any], log_item: Callable[[Any, Callable[[str], None]], None]) -> Any:
    """An existing ``path`` made with the settings ``want`` (else RecipeError): reuse it as is."""
    check_existing(path, want)
    item = finish(item, path, previous)
    log_item(item, say)
    return item


# ------------------------------------------------------------------ cards
def card_head(item: dict[str, Any], manifest: dict[str, Any], made_by: tuple[str, ...], quote_all: bool
              ) -> list[tuple[str, str]]:
    """File, size, sha256, commands and times of a card (``made_by``: qualities not made by ``data generate``)."""
    rows = [("file", Path(item["file"]).name), ("size", f"{item['size_bytes'] / 1e6:.1f} MB ({item['size_bytes']} bytes)"),
            ("sha256", item["sha256"]), ("recipe command", f"`{manifest['recipe_command']}`")]
    if item.get("command"):
        quoted = quote_all or item["command"].startswith("lit-omarl")
        rows.append(("made by" if item["quality"] in made_by else "generate command (same arrays)",
                     f"`{item['command']}`" if quoted else item["command"]))
    if item.get("seconds") is not None:
        rows.append(("wall time", f"{item['seconds']:.1f} s (load average at start: {item.get('load_average') or 'n/a'})"))
    if item.get("cpu_seconds") is not None:
        rows.append(("CPU time", f"{item['cpu_seconds']:.1f} s"))
    return rows


def card_tail(item: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``extra`` entries and the note of a card."""
    rows = [(key, str(value)) for key, value in (item.get("extra") or {}).items()]
    if item.get("note"):
        rows.append(("note", item["note"]))
    return rows


def write_cards_common(out_dir: str | Path, cards_dir: str | Path, qualities: Iterable[str] | None,
                       log: Callable[[str], None] | None, prog: str,
                       provenance: Callable[[dict[str, Any], dict[str, Any]], list[tuple[str, str]]],
                       prefix: Callable[[dict[str, Any]], str]) -> list[Path]:
    """A markdown card per dataset of ``out_dir/recipe.json`` into ``cards_dir/<prefix(manifest)>_<quality>.md``."""
    from lit_omarl.data.card import render_card
    from lit_omarl.data.schema import read_dataset

    out_dir, cards_dir = Path(out_dir).expanduser(), Path(cards_dir).expanduser()
    manifest = load_manifest(out_dir)
    if not manifest:
        raise RecipeError(f"{out_dir / MANIFEST}: no recipe manifest (run `lit-omarl data {prog}` first)")
    cards_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for quality, item in manifest["datasets"].items():
        if (qualities is not None and quality not in qualities) or item["status"] == "skipped":
            continue
        card = render_card(read_dataset(item["file"]), provenance(item, manifest))
        target = cards_dir / f"{prefix(manifest)}_{quality}.md"
        target.write_text(card)
        written.append(target)
        if log:
            log(f"wrote {target}")
    return written
