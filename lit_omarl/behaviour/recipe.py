"""The papers' StarCraft dataset recipe on SMAX: ``lit-omarl data smax-recipe --map 2s3z``.

From the behaviour policies shipped for a map
(``lit_omarl/assets/behaviour/smax_<map>/{medium,expert}.pt``, trained by
:mod:`lit_omarl.behaviour.qmix_online`) it writes, into one directory, files
``smax_<map>_<quality>.h5`` (schema v1):

CFCQL (cfcql.md App. C.2; Table 3):

* ``medium`` / ``expert``: ``episodes`` episodes (5000 in the paper) of the
  partially / fully trained QMIX policy acting greedily
  (behaviours ``policy:smax_<map>/medium`` and ``policy:smax_<map>/expert``).
* ``mixed``: "the equal mixture of the Medium and Expert datasets". OUR
  CHOICE of how: the first ceil(E/2) episodes of the medium file and the first
  floor(E/2) episodes of the expert file, interleaved (medium 0, expert 0,
  medium 1, ...), so any prefix of the file (``max_episodes``) is still an
  equal mixture and no new episodes are simulated. CFCQL's published mixed
  files hold 2500 medium + 2500 expert episodes (REFERENCE.md); whether those
  were the first ones of their medium / expert files is not documented.
* ``medium_replay``: "the replay buffer during training until the policy
  reaches the medium performance": a copy of a ``replay_winrate_<w>.h5`` dump
  of a qmix_online run (``--replay PATH``; produce one with
  ``python -m lit_omarl.behaviour.qmix_online --map <map> ...
  --replay-milestones W --stop-at-win-rate W``, W = the medium policy's win
  rate). Its size is whatever the buffer held (CFCQL's 2s3z one has 1976).

OMAC (omac.md Sec. 6.1.1 and App. B):

* ``omac_good`` / ``omac_medium`` / ``omac_poor``. What App. B states: the
  data come from Meng et al.'s (MADT) SMAC datasets, "collected from the
  trained MAPPO agent", in three quality levels good / medium / poor, and
  OMAC trains on 1000 episodes randomly sampled from each. App. B does not
  define the levels numerically. OUR DEFINITION (return bands of one pool of
  episodes, as the issue asks): a pool behaviour of the map's trained policies
  at several strengths, ``mix:policy:<expert>|policy:<medium>|epsilon:0.5:policy:<medium>``
  (episode k follows part k mod 3; the epsilon-greedy medium policy stands in
  for the weaker, exploring stages of a training run), cut into three
  equal-width bands of the normalised return R / R_max (R_max =
  ``env.max_return``, 2 on SMAX): poor [0, 1/3), medium [1/3, 2/3), good
  [2/3, 1]. All three bands use the same generation seed, so they are
  disjoint parts of the same stream of pool episodes (``band:`` behaviours of
  :mod:`lit_omarl.data.generate`; rejection sampling). On SMAX a win always
  returns R_max (all enemy health + the win bonus) and a loss at most R_max / 2,
  so good = won episodes, medium = lost or timed-out episodes that removed at
  least 2/3 of the enemy health, poor = the rest. Each band holds ``episodes``
  episodes (sample 1000 with ``max_episodes`` / a random subset for OMAC's size).

Determinism and caching: each file is a function of (map, policies,
episodes, seed, batch_size). Generation seeds: medium ``1000 * seed + 1``,
expert ``1000 * seed + 2``, the OMAC pool ``1000 * seed + 3`` (distinct, so
medium and expert episodes do not share initial states). An existing file
made with the same settings is reused ("cached"); one made with other
settings is never overwritten (error naming the file and the difference)
unless ``overwrite``. ``recipe.json`` in the directory records, per file, the
equivalent ``lit-omarl data generate`` command, wall time, simulated env
steps, size and sha256; :func:`write_cards` turns it into dataset cards.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import h5py
import numpy as np

from lit_omarl.behaviour._recipe_common import MANIFEST  # noqa: F401  (re-exported)
from lit_omarl.behaviour._recipe_common import (RecipeError, RecipeItemBase, card_head, card_tail, check_batch_size,
                                                finish_common, level_refs, load_manifest, load_str, make_or_check,
                                                policies_sha256,
                                                recipe_cache_dir, recipe_command, replay_source, reuse, sha256_file,
                                                shell, wanted_qualities, write_cards_common, write_manifest)

CFCQL_QUALITIES = ("medium", "expert", "mixed", "medium_replay")
OMAC_BANDS = {"omac_good": ("2/3", "1"), "omac_medium": ("1/3", "2/3"), "omac_poor": ("0", "1/3")}
QUALITIES = CFCQL_QUALITIES + tuple(OMAC_BANDS)
SEED_OFFSETS = {"medium": 1, "expert": 2, "omac": 3}
OMAC_POOL = "mix:policy:{expert}|policy:{medium}|epsilon:0.5:policy:{medium}"


@dataclass
class RecipeItem(RecipeItemBase):
    """One dataset of the recipe: where it is and how it was made (quality, file, status, behaviour, seed,
    episodes, transitions: :class:`RecipeItemBase`)."""

    simulated_steps: int = 0
    seconds: float | None = None
    cpu_seconds: float | None = None  # CPU time of this process (compare this on a busy machine)
    steps_per_second: float | None = None
    load_average: str = ""
    command: str = ""
    size_bytes: int = 0
    sha256: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def dataset_path(out_dir: str | Path, map_name: str, quality: str) -> Path:
    return Path(out_dir) / f"smax_{map_name}_{quality}.h5"


def default_out_dir(map_name: str, episodes: int, seed: int) -> Path:
    """``<dataset cache>/smax_recipe/<map>_<episodes>ep_s<seed>`` ($LIT_OMARL_CACHE or ~/.cache/lit_omarl/datasets)."""
    return recipe_cache_dir("smax_recipe", map_name, episodes, seed)


def policy_folder(map_name: str, policy_dir: str | Path | None = None) -> tuple[Path, bool]:
    """(folder of a map's medium.pt / expert.pt, whether it is the shipped one)."""
    from lit_omarl.behaviour import ASSETS

    if policy_dir is None:
        return ASSETS / f"smax_{map_name}", True
    return Path(policy_dir).expanduser().resolve(), False


def policy_refs(map_name: str, policy_dir: str | Path | None = None) -> dict[str, str]:
    """The ``policy:`` references of the medium and expert policies of a map.

    Shipped ones are named ``smax_<map>/<level>`` (install-independent);
    ``policy_dir`` (a folder with medium.pt and expert.pt) gives absolute paths.
    """
    folder, shipped = policy_folder(map_name, policy_dir)
    missing = [f"{level}.pt" for level in ("medium", "expert") if not (folder / f"{level}.pt").is_file()]
    if missing:
        where = f"lit_omarl/assets/behaviour/smax_{map_name}/" if shipped else f"--policy-dir {folder}"
        raise RecipeError(f"smax-recipe --map {map_name}: {where} lacks {', '.join(missing)}; train the map's "
                          f"behaviour policies with `python -m lit_omarl.behaviour.qmix_online --map {map_name} ...` "
                          "and pass their folder with --policy-dir (it must hold medium.pt and expert.pt)")
    return level_refs(folder, shipped, f"smax_{map_name}")


def behaviours(map_name: str, policy_dir: str | Path | None = None, pool: str | None = None) -> dict[str, str]:
    """Behaviour specifications of the generated qualities (medium, expert, omac_*)."""
    refs = policy_refs(map_name, policy_dir)
    pool = pool or OMAC_POOL.format(**refs)
    out = {"medium": f"policy:{refs['medium']}", "expert": f"policy:{refs['expert']}"}
    for quality, (lo, hi) in OMAC_BANDS.items():
        out[quality] = f"band:{lo}:{hi}:{pool}"
    return out


def generation_seed(quality: str, seed: int) -> int:
    key = "omac" if quality.startswith("omac_") else quality
    return 1000 * int(seed) + SEED_OFFSETS[key]


def _finish(item: RecipeItem, path: Path, previous: dict[str, Any]) -> RecipeItem:
    """Fill size / sha256 / counts; a cached file keeps the timing of the run that made it."""
    a = finish_common(item, path, previous, ("seconds", "cpu_seconds", "steps_per_second", "load_average",
                                             "simulated_steps", "command", "note", "extra"))
    if not item.simulated_steps:
        item.simulated_steps = int(a.get("simulated_steps", item.transitions))
    if item.seconds and item.status == "generated":
        item.steps_per_second = item.simulated_steps / item.seconds
    return item


def smax_recipe(
    map_name: str,
    out_dir: str | Path | None = None,
    episodes: int = 5000,
    seed: int = 0,
    batch_size: int = 512,
    replay: str | Path | None = None,
    qualities: Iterable[str] | None = None,
    policy_dir: str | Path | None = None,
    pool: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
) -> list[RecipeItem]:
    """Write the recipe's datasets for ``smax/<map_name>`` into ``out_dir`` (module docstring).

    Args:
        map_name: SMAX map with shipped policies (or ``policy_dir``).
        out_dir: target folder (default :func:`default_out_dir`).
        episodes: episodes per generated dataset (and in ``mixed``).
        seed: recipe seed (generation seeds derive from it).
        batch_size: episodes simulated in parallel (part of the determinism key).
        replay: a ``replay_winrate_<w>.h5`` dump of a qmix_online run of this map (``medium_replay``).
        qualities: subset of :data:`QUALITIES` (default all; ``mixed`` also makes medium and expert).
        policy_dir: folder with medium.pt and expert.pt instead of the shipped ones.
        pool: OMAC pool behaviour instead of :data:`OMAC_POOL`.
        overwrite: replace files made with other settings.
        log: progress lines (None: silent).

    Returns:
        One :class:`RecipeItem` per quality handled, in order; also written to ``out_dir/recipe.json``.
    """
    from lit_omarl.data.generate import generate_dataset

    episodes, batch_size = int(episodes), int(batch_size)
    if episodes < 2:
        raise RecipeError(f"smax-recipe --episodes: must be >= 2 (mixed takes half from each part), got {episodes}")
    check_batch_size("smax-recipe", batch_size)
    wanted = wanted_qualities("smax-recipe", qualities, QUALITIES)
    generated = [q for q in wanted if q != "medium_replay"]
    specs = behaviours(map_name, policy_dir, pool) if generated else {}
    if "mixed" in wanted:
        wanted = list(dict.fromkeys(["medium", "expert"] + wanted))
    order = [q for q in QUALITIES if q in wanted]
    out = Path(out_dir).expanduser() if out_dir is not None else default_out_dir(map_name, episodes, seed)
    out.mkdir(parents=True, exist_ok=True)
    env_id = f"smax/{map_name}"
    previous = load_manifest(out).get("datasets", {})
    recipe_cmd = recipe_command(["lit-omarl", "data", "smax-recipe", "--map", map_name, "--out-dir", out, "--episodes",
                                 episodes, "--seed", seed, "--batch-size", batch_size], policy_dir, replay)
    items: list[RecipeItem] = []
    say = log or (lambda _msg: None)
    recipe_attr = f"smax-recipe map={map_name} episodes={episodes} seed={int(seed)} batch_size={batch_size}"
    extra = {"recipe": recipe_attr}
    if generated:  # every generated quality rolls out the policies: a re-shipped policy must not reuse old files
        extra["policies_sha256"] = policies_sha256(policy_folder(map_name, policy_dir)[0])

    for quality in order:
        path = dataset_path(out, map_name, quality)
        if quality == "medium_replay":
            items.append(_replay_item(path, map_name, replay, overwrite, previous, say))
            continue
        if quality == "mixed":
            done = {i.quality: i for i in items}
            items.append(_mixed_item(path, out, map_name, episodes, seed, specs, overwrite, previous, done, say))
            continue
        behaviour, gen_seed = specs[quality], generation_seed(quality, seed)
        b = batch_size if behaviour.startswith("band:") else min(batch_size, episodes)  # what generate_dataset records
        want = {"env": env_id, "behaviour": behaviour, "seed": gen_seed, "n_episodes": episodes, "batch_size": b,
                "policies_sha256": extra["policies_sha256"]}
        command = shell(["lit-omarl", "data", "generate", "--env", env_id, "--behaviour", behaviour, "--episodes", episodes,
                         "--seed", gen_seed, "--batch-size", batch_size, "--quality", quality, "--out", path])
        item = RecipeItem(quality, str(path), "cached", behaviour, gen_seed, command=command)
        make_or_check(item, path, want, overwrite,
                      lambda: generate_dataset(env_id, behaviour, episodes, gen_seed, out=path, batch_size=batch_size,
                                               overwrite=overwrite, quality=quality, extra_attrs=extra),
                      say, f"[{quality}] generating {episodes} episodes of {behaviour!r} (seed {gen_seed}, batch {batch_size}) ...",
                      recorded_only=("policies_sha256",))
        items.append(_finish(item, path, previous))
        _log_item(items[-1], say)

    header = {"map": map_name, "env": env_id, "recipe_seed": int(seed), "episodes": episodes, "batch_size": batch_size,
              "recipe_command": recipe_cmd}
    write_manifest(out, header, previous, items, QUALITIES)
    return items


def _reuse(item: RecipeItem, path: Path, want: dict[str, Any], previous: dict[str, Any],
           say: Callable[[str], None]) -> RecipeItem:
    """An existing ``path`` made with the settings ``want`` (else RecipeError): reuse it as is."""
    return reuse(item, path, want, previous, say, _finish, _log_item)


def _log_item(item: RecipeItem, say: Callable[[str], None]) -> None:
    timing = f", {item.seconds:.1f} s, {item.steps_per_second:.0f} env steps/s" if item.seconds and item.steps_per_second else ""
    say(f"[{item.quality}] {item.status}: {item.file} ({item.episodes} episodes, {item.transitions} steps{timing})")


def _mixed_item(path: Path, out: Path, map_name: str, episodes: int, seed: int, specs: dict[str, str], overwrite: bool,
                previous: dict[str, Any], done: dict[str, RecipeItem], say: Callable[[str], None]) -> RecipeItem:
    """Interleave the first ceil(E/2) medium and floor(E/2) expert episodes (module docstring)."""
    from lit_omarl.data.schema import write_dataset

    parts = {q: dataset_path(out, map_name, q) for q in ("medium", "expert")}
    n_medium, n_expert = (episodes + 1) // 2, episodes // 2
    behaviour = f"mix:{specs['medium']}|{specs['expert']}"
    sources = {q: {"file": p.name, "sha256": done[q].sha256 if q in done else sha256_file(p)} for q, p in parts.items()}
    want = {"env": f"smax/{map_name}", "behaviour": behaviour, "seed": int(seed), "n_episodes": episodes,
            "derived_from": json.dumps(sources, sort_keys=True)}
    item = RecipeItem("mixed", str(path), "cached", behaviour, int(seed),
                      command=f"interleave the first {n_medium} episodes of {parts['medium'].name} and the first "
                              f"{n_expert} of {parts['expert'].name} (medium, expert, medium, ...)")
    if path.exists() and not overwrite:
        return _reuse(item, path, want, previous, say)
    item.status, item.load_average = "generated", load_str()
    start = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(parts["medium"], "r") as fm, h5py.File(parts["expert"], "r") as fe:
        spec = fm.attrs["spec"]
        if fm.attrs["spec"] != fe.attrs["spec"]:
            raise RecipeError(f"{path}: {parts['medium'].name} and {parts['expert'].name} have different env specs")
        for key in fm.keys():
            if key not in fe:
                continue
            a, b = fm[key][:n_medium], fe[key][:n_expert]
            mixed = np.empty((n_medium + n_expert, *a.shape[1:]), dtype=a.dtype)
            mixed[0::2], mixed[1::2] = a, b
            arrays[key] = mixed
    attrs = {"spec": spec, "quality": "mixed", "behaviour": behaviour, "seed": int(seed), "source": "derived",
             "generator": "lit_omarl smax-recipe mixed", "derived_from": want["derived_from"],
             "mixture": f"episode 2k = {parts['medium'].name}[k], episode 2k+1 = {parts['expert'].name}[k]"}
    write_dataset(path, arrays, attrs, overwrite=overwrite)
    item.seconds = time.perf_counter() - start
    item.note = "no env steps simulated (episodes copied from the medium and expert files)"
    item = _finish(item, path, previous)
    item.steps_per_second = None
    _log_item(item, say)
    return item


def _replay_item(path: Path, map_name: str, replay: str | Path | None, overwrite: bool, previous: dict[str, Any],
                 say: Callable[[str], None]) -> RecipeItem:
    """Copy (validated) a qmix_online replay dump as ``medium_replay``."""
    from lit_omarl.data.schema import read_dataset, write_dataset

    if replay is None:
        if path.exists():
            return _finish(RecipeItem("medium_replay", str(path), "cached", note="kept (no --replay given)"), path, previous)
        say(f"[medium_replay] skipped: give --replay PATH (a replay_winrate_<w>.h5 of a qmix_online run of {map_name})")
        return RecipeItem("medium_replay", str(path), "skipped", note="no --replay given")
    src, digest = replay_source("smax-recipe", replay)
    want = {"env": f"smax/{map_name}", "replay_sha256": digest}
    item = RecipeItem("medium_replay", str(path), "cached", command=f"copy of {src} (sha256 {digest})")
    if path.exists() and not overwrite:
        return _reuse(item, path, want, previous, say)
    item.status, item.load_average = "generated", load_str()
    start = time.perf_counter()
    data = read_dataset(src)  # validates
    if data.spec.env_id != f"smax/{map_name}":
        raise RecipeError(f"smax-recipe --replay {src}: a dump of {data.spec.env_id!r}, not smax/{map_name}")
    from lit_omarl.envs.smax import smax_spec

    own = smax_spec(map_name)
    if (data.spec.obs_dim, data.spec.state_dim, data.spec.n_actions, data.spec.n_agents) != \
            (own.obs_dim, own.state_dim, own.n_actions, own.n_agents):
        raise RecipeError(f"smax-recipe --replay {src}: its sizes do not match smax/{map_name} "
                          f"(obs {data.spec.obs_dim} vs {own.obs_dim}, state {data.spec.state_dim} vs {own.state_dim})")
    attrs = {k: v for k, v in data.attrs.items() if k not in ("format_version", "json_attrs")}
    attrs.update(spec=data.spec, quality="medium_replay", source=f"qmix_online replay dump {src.name}",
                 replay_sha256=digest, replay_file=str(src))
    write_dataset(path, data.arrays, attrs, overwrite=overwrite)
    item.seconds = time.perf_counter() - start
    item.behaviour = str(data.attrs.get("behaviour", ""))
    item.extra = {k: data.attrs[k] for k in ("env_steps", "win_rate", "episodes_collected") if k in data.attrs}
    item.note = "copied; no env steps simulated here"
    item = _finish(item, path, previous)
    item.steps_per_second = None
    _log_item(item, say)
    return item


# ------------------------------------------------------------------ cards
def card_provenance(item: dict[str, Any], manifest: dict[str, Any]) -> list[tuple[str, str]]:
    rows = card_head(item, manifest, made_by=("mixed", "medium_replay"), quote_all=False)
    if item.get("simulated_steps") and item["quality"] not in ("mixed", "medium_replay"):
        rows.append(("env steps simulated", str(item["simulated_steps"])))
    if item.get("steps_per_second"):
        rows.append(("env steps / s", f"{item['steps_per_second']:.0f}"))
    return rows + card_tail(item)


def write_cards(out_dir: str | Path, cards_dir: str | Path, qualities: Iterable[str] | None = None,
                log: Callable[[str], None] | None = print) -> list[Path]:
    """A markdown card per dataset of ``out_dir/recipe.json`` into ``cards_dir/smax_<map>_<quality>.md``."""
    return write_cards_common(out_dir, cards_dir, qualities, log, "smax-recipe", card_provenance,
                              lambda manifest: f"smax_{manifest['map']}")


__all__ = ["OMAC_BANDS", "OMAC_POOL", "QUALITIES", "RecipeError", "RecipeItem", "behaviours", "dataset_path",
           "default_out_dir", "generation_seed", "policy_refs", "sha256_file", "smax_recipe", "write_cards"]
