"""OMAR / CFCQL's continuous dataset recipe: ``lit-omarl data continuous-recipe --env mpe/simple_spread``.

From the MATD3 behaviour policies shipped for a task
(``lit_omarl/assets/behaviour/<env dir>/{medium,expert}.pt`` + ``policies.json``,
trained by :mod:`lit_omarl.behaviour.matd3_online`; ``<env dir>`` = the env id
with ``/`` -> ``_``, e.g. ``mpe_simple_spread``) it writes, into one directory,
files ``<env dir>_<quality>.h5`` (schema v1). OMAR (Pan et al. 2022, Sec. 5.1;
CFCQL uses its datasets, cfcql.md App. C.1):

* ``random``: "rolling out a randomly initialized policy". OUR CHOICE: uniform
  random actions in the action bounds (behaviour ``uniform``; the "random"
  reference return of :mod:`lit_omarl.envs.reference_returns` is the same policy).
* ``expert``: episodes of the fully trained MATD3 policy (``final.pt`` of the
  run), ``medium``: of a partially trained one. OMAR adds noise "to increase
  diversity"; OUR CHOICE: Gaussian noise of std ``noise`` (0.1 of the action
  half-range, clipped to the bounds) on the deterministic actors
  (``noise:0.1:policy:<env dir>/expert``).
* Medium level, OUR DEFINITION (OMAR: "a partially-pretrained policy with a
  medium performance level", not defined numerically): with R_random and
  R_expert the reference returns (uniform random actions; the final policy,
  greedy, 1000 episodes each), the medium policy is the FIRST checkpoint of the
  training run whose greedy test return (``eval_episodes`` episodes, 64 by
  default) reaches R_random + 0.5 (R_expert - R_random), i.e. a normalized
  score of 50 at its test. :func:`ship_policies` chooses it and records the
  threshold and its returns in ``policies.json``.
* ``medium_replay``: "all samples in the replay buffer during training until
  the policy reached the medium level": the replay buffer of the training run
  at that same test. Made by a deterministic re-run of the shipped training
  config and seed (``train_config.json``) that stops at the first test reaching
  the medium threshold and dumps its buffer (completed episodes, collection
  order); the re-run's policy at that point is compared with the shipped
  ``medium.pt`` (``medium_policy_match`` in the manifest). Or a dump given
  with ``--replay`` (``replay_return_<q>.h5`` of a ``matd3_online`` run).

Sizes: OMAR's random / medium / expert datasets hold 1M transitions (40,000
MPE episodes of 25 steps; 1000 MaMuJoCo episodes of 1000 steps); the default
``episodes`` is that; medium_replay holds whatever the buffer held.

Determinism and caching (as :mod:`lit_omarl.behaviour.recipe`): each file is a
function of (env, policies, episodes, seed, batch_size, noise). Generation
seeds: random ``1000 * seed + 1``, medium ``+ 2``, expert ``+ 3``. An existing
file made with the same settings is reused ("cached"); a file made otherwise
(or not a dataset at all) is never overwritten (error naming the file and the
difference) unless ``overwrite``. medium / expert files record the sha256 of
the policy folder's medium.pt and expert.pt (``policies_sha256``), so re-shipped
policies are an error there, never a silent reuse (files written before that
attribute existed are accepted). ``recipe.json`` in the directory records,
per file, the equivalent ``lit-omarl data generate`` command, wall time, env
steps, size and sha256; :func:`write_cards` turns it into dataset cards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from lit_omarl.behaviour._recipe_common import MANIFEST  # noqa: F401  (re-exported)
from lit_omarl.behaviour._recipe_common import (RecipeError, RecipeItemBase, card_head, card_tail, check_batch_size,
                                                finish_common, level_refs, load_manifest, load_str, make_or_check,
                                                policies_sha256,
                                                recipe_cache_dir, recipe_command, replay_source, reuse, sha256_file,
                                                shell, wanted_qualities, write_cards_common, write_manifest)

QUALITIES = ("random", "medium_replay", "medium", "expert")
SEED_OFFSETS = {"random": 1, "medium": 2, "expert": 3}
DEFAULT_NOISE = 0.1
MEDIUM_FRACTION = 0.5
OMAR_TRANSITIONS = 1_000_000
POLICIES = "policies.json"
REFERENCE_EPISODES, REFERENCE_SEED, REFERENCE_BATCH = 1000, 12345, 250
#: re-evaluation of expert candidates (ship --expert-candidates): other episodes than the references', so the
#: shipped expert's reference return is not the maximum it was picked by
CANDIDATE_EPISODES, CANDIDATE_SEED = 100, 54321


@dataclass
class RecipeItem(RecipeItemBase):
    """One dataset of the recipe: where it is and how it was made (quality, file, status, behaviour, seed,
    episodes, transitions: :class:`RecipeItemBase`)."""

    return_mean: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    load_average: str = ""
    command: str = ""
    size_bytes: int = 0
    sha256: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ names and shipped policies
def env_dir(env_id: str) -> str:
    """``mpe/simple_spread`` -> ``mpe_simple_spread`` (folder of shipped policies, file prefix)."""
    return env_id.replace("/", "_")


def dataset_path(out_dir: str | Path, env_id: str, quality: str) -> Path:
    return Path(out_dir) / f"{env_dir(env_id)}_{quality}.h5"


def default_out_dir(env_id: str, episodes: int, seed: int) -> Path:
    """``<dataset cache>/continuous_recipe/<env dir>_<episodes>ep_s<seed>``."""
    return recipe_cache_dir("continuous_recipe", env_dir(env_id), episodes, seed)


def default_episodes(env_id: str) -> int:
    """OMAR's size: 1M transitions of full-length episodes."""
    from lit_omarl.envs import make

    return max(1, OMAR_TRANSITIONS // make(env_id, num_envs=1).spec.episode_limit)


def policy_folder(env_id: str, policy_dir: str | Path | None = None) -> tuple[Path, bool]:
    from lit_omarl.behaviour import ASSETS

    if policy_dir is None:
        return ASSETS / env_dir(env_id), True
    return Path(policy_dir).expanduser().resolve(), False


def load_policies_meta(env_id: str, policy_dir: str | Path | None = None) -> dict[str, Any]:
    """``policies.json`` of the task's policy folder (RecipeError naming what is missing)."""
    folder, shipped = policy_folder(env_id, policy_dir)
    where = f"lit_omarl/assets/behaviour/{env_dir(env_id)}/" if shipped else f"--policy-dir {folder}"
    missing = [name for name in ("medium.pt", "expert.pt", POLICIES) if not (folder / name).is_file()]
    if missing:
        raise RecipeError(f"continuous-recipe --env {env_id}: {where} lacks {', '.join(missing)}; train the task's "
                          f"behaviour policies with `python -m lit_omarl.behaviour.matd3_online --env {env_id} --out RUN ...`, "
                          f"then `python -m lit_omarl.behaviour.continuous_recipe ship --run RUN --dest DIR` and pass DIR "
                          "with --policy-dir")
    try:
        meta = json.loads((folder / POLICIES).read_text())
    except json.JSONDecodeError as err:
        raise RecipeError(f"{folder / POLICIES}: not valid JSON ({err})") from None
    if meta.get("env_id") != env_id:
        raise RecipeError(f"{folder / POLICIES}: key 'env_id': policies of {meta.get('env_id')!r}, not {env_id!r}")
    return meta


def policy_refs(env_id: str, policy_dir: str | Path | None = None) -> dict[str, str]:
    folder, shipped = policy_folder(env_id, policy_dir)
    load_policies_meta(env_id, policy_dir)
    return level_refs(folder, shipped, env_dir(env_id))


def behaviours(env_id: str, policy_dir: str | Path | None = None, noise: float = DEFAULT_NOISE,
               qualities: Iterable[str] = ("random", "medium", "expert")) -> dict[str, str]:
    """Behaviour specifications of the generated qualities."""
    out = {"random": "uniform"} if "random" in qualities else {}
    if any(q in qualities for q in ("medium", "expert")):
        refs = policy_refs(env_id, policy_dir)
        for level in ("medium", "expert"):
            out[level] = f"policy:{refs[level]}" if noise <= 0 else f"noise:{noise:g}:policy:{refs[level]}"
    return out


def generation_seed(quality: str, seed: int) -> int:
    return 1000 * int(seed) + SEED_OFFSETS[quality]


# ------------------------------------------------------------------ file helpers
def _finish(item: RecipeItem, path: Path, previous: dict[str, Any]) -> RecipeItem:
    a = finish_common(item, path, previous, ("seconds", "cpu_seconds", "load_average", "command", "note", "extra"))
    item.return_mean = float(a["return_mean"])
    return item


def _log_item(item: RecipeItem, say: Callable[[str], None]) -> None:
    timing = f", {item.seconds:.1f} s" if item.seconds else ""
    say(f"[{item.quality}] {item.status}: {item.file} ({item.episodes} episodes, {item.transitions} steps, "
        f"return mean {item.return_mean:.3f}{timing})")


# ------------------------------------------------------------------ the recipe
def continuous_recipe(
    env_id: str,
    out_dir: str | Path | None = None,
    episodes: int | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    qualities: Iterable[str] | None = None,
    policy_dir: str | Path | None = None,
    noise: float = DEFAULT_NOISE,
    replay: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
) -> list[RecipeItem]:
    """Write the recipe's datasets for ``env_id`` into ``out_dir`` (module docstring).

    Args:
        env_id: a continuous env with shipped policies (or ``policy_dir``).
        out_dir: target folder (default :func:`default_out_dir`).
        episodes: episodes per generated dataset (default: OMAR's 1M transitions).
        seed: recipe seed (generation seeds derive from it).
        batch_size: episodes simulated in parallel (part of the determinism key).
        qualities: subset of :data:`QUALITIES` (default all).
        policy_dir: folder with medium.pt, expert.pt, policies.json (and train_config.json) instead of the shipped ones.
        noise: Gaussian action noise of the medium / expert behaviours (units of the half-range; 0: none).
        replay: a ``replay_return_<q>.h5`` dump to copy as medium_replay instead of re-running the training.
        overwrite: replace files made with other settings.
        log: progress lines (None: silent).
    """
    from lit_omarl.data.generate import generate_dataset

    episodes = default_episodes(env_id) if episodes is None else int(episodes)
    batch_size = int(batch_size)
    if episodes < 1:
        raise RecipeError(f"continuous-recipe --episodes: must be >= 1, got {episodes}")
    check_batch_size("continuous-recipe", batch_size)
    if not (noise >= 0 and np.isfinite(noise)):
        raise RecipeError(f"continuous-recipe --noise: must be a finite number >= 0, got {noise}")
    wanted = wanted_qualities("continuous-recipe", qualities, QUALITIES)
    needs_policies = any(q in wanted for q in ("medium", "expert")) or ("medium_replay" in wanted and replay is None)
    meta = load_policies_meta(env_id, policy_dir) if needs_policies else {}
    env_options = dict(meta.get("env_options", {})) if meta else {}
    specs = behaviours(env_id, policy_dir, noise, wanted)
    out = Path(out_dir).expanduser() if out_dir is not None else default_out_dir(env_id, episodes, seed)
    out.mkdir(parents=True, exist_ok=True)
    previous = load_manifest(out).get("datasets", {})
    recipe_cmd = recipe_command(["lit-omarl", "data", "continuous-recipe", "--env", env_id, "--out-dir", out, "--episodes",
                                 episodes, "--seed", seed, "--batch-size", batch_size, "--noise", f"{noise:g}"],
                                policy_dir, replay)
    say = log or (lambda _msg: None)
    recipe_attr = f"continuous-recipe env={env_id} episodes={episodes} seed={int(seed)} batch_size={batch_size} noise={noise:g}"
    # medium / expert record the policies they roll out: a re-shipped policy must not reuse their files
    policies_digest = policies_sha256(policy_folder(env_id, policy_dir)[0]) if "medium" in specs or "expert" in specs else ""
    items: list[RecipeItem] = []
    for quality in [q for q in QUALITIES if q in wanted]:
        path = dataset_path(out, env_id, quality)
        if quality == "medium_replay":
            items.append(_replay_item(path, env_id, replay, policy_dir, meta, overwrite, previous, say, out))
            continue
        behaviour, gen_seed = specs[quality], generation_seed(quality, seed)
        b = min(batch_size, episodes)
        want = {"env": env_id, "behaviour": behaviour, "seed": gen_seed, "n_episodes": episodes, "batch_size": b}
        extra = {"recipe": recipe_attr}
        if quality in ("medium", "expert"):
            want["policies_sha256"] = extra["policies_sha256"] = policies_digest
        opts = [x for k, v in env_options.items() for x in ("--option", f"{k}={json.dumps(v)}")]
        command = shell(["lit-omarl", "data", "generate", "--env", env_id, "--behaviour", behaviour, "--episodes", episodes,
                         "--seed", gen_seed, "--batch-size", batch_size, "--quality", quality, *opts, "--out", path])
        item = RecipeItem(quality, str(path), "cached", behaviour, gen_seed, command=command)
        make_or_check(item, path, want, overwrite,
                      lambda: generate_dataset(env_id, behaviour, episodes, gen_seed, out=path, env_options=env_options,
                                               batch_size=batch_size, overwrite=overwrite, quality=quality,
                                               extra_attrs=extra),
                      say, f"[{quality}] generating {episodes} episodes of {behaviour!r} (seed {gen_seed}, batch {b}) ...",
                      recorded_only=("policies_sha256",))
        items.append(_finish(item, path, previous))
        _log_item(items[-1], say)

    header = {"env": env_id, "env_options": env_options, "recipe_seed": int(seed), "episodes": episodes,
              "batch_size": batch_size, "noise": noise, "recipe_command": recipe_cmd,
              "medium_definition": meta.get("medium", {}).get("definition", "") if meta else "",
              "references": meta.get("references", {}) if meta else {}}
    write_manifest(out, header, previous, items, QUALITIES)
    return items


def _replay_item(path: Path, env_id: str, replay: str | Path | None, policy_dir: str | Path | None, meta: dict[str, Any],
                 overwrite: bool, previous: dict[str, Any], say: Callable[[str], None], out: Path) -> RecipeItem:
    """medium_replay: a copy of a given dump, or of the dump of a deterministic re-run of the training (module docstring)."""
    from lit_omarl.data.schema import read_dataset, write_dataset

    if replay is not None:
        src, digest = replay_source("continuous-recipe", replay)
        want = {"env": env_id, "replay_sha256": digest}
        item = RecipeItem("medium_replay", str(path), "cached", command=f"copy of {src} (sha256 {digest})")
        rerun_info: dict[str, Any] = {}
    else:
        folder, _ = policy_folder(env_id, policy_dir)
        config_path = folder / "train_config.json"
        if not config_path.is_file():
            raise RecipeError(f"continuous-recipe: {config_path} is missing (needed to re-run the training for "
                              "medium_replay); give a replay dump with --replay")
        threshold = float(meta["medium"]["threshold"])
        digest = sha256_file(config_path)
        want = {"env": env_id, "train_config_sha256": digest, "stop_at_return": threshold}
        item = RecipeItem("medium_replay", str(path), "cached",
                          command=f"python -m lit_omarl.behaviour.matd3_online with {config_path.name} (sha256 {digest[:12]}...) "
                                  f"--replay-milestones {threshold:g} --stop-at-return {threshold:g}")
        rerun_info = {"config_path": config_path, "threshold": threshold, "folder": folder}
    if path.exists() and not overwrite:
        return reuse(item, path, want, previous, say, _finish, _log_item)
    item.status, item.load_average = "generated", load_str()
    start, cpu = time.perf_counter(), time.process_time()
    if replay is not None:
        src = Path(replay).expanduser()
        item.note = "copied; no env steps simulated here"
    else:
        src, extra = _rerun_to_medium(env_id, rerun_info, out, say)
        item.extra = extra
        item.note = (f"replay buffer of a re-run of the training up to its first test with return >= {rerun_info['threshold']:g}; "
                     f"re-run policy identical to the shipped medium.pt: {extra['medium_policy_match']}")
    data = read_dataset(src)  # validates
    if data.spec.env_id != env_id:
        raise RecipeError(f"continuous-recipe --replay {src}: a dump of {data.spec.env_id!r}, not {env_id}")
    attrs = {k: v for k, v in data.attrs.items() if k not in ("format_version", "json_attrs", "n_episodes", "n_transitions",
                                                              "return_mean", "return_std", "return_min", "return_max")}
    attrs.update(spec=data.spec, quality="medium_replay", source=f"matd3_online replay dump {src.name}", **want)
    write_dataset(path, data.arrays, attrs, overwrite=overwrite)
    item.seconds, item.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    item.behaviour = str(data.attrs.get("behaviour", ""))
    for key in ("env_steps", "test_return", "episodes_collected", "updates"):
        if key in data.attrs:
            item.extra[key] = data.attrs[key] if not isinstance(data.attrs[key], np.generic) else data.attrs[key].item()
    item = _finish(item, path, previous)
    _log_item(item, say)
    return item


def _rerun_to_medium(env_id: str, info: dict[str, Any], out: Path, say: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    from lit_omarl.behaviour.matd3_online import MATD3OnlineConfig, _tag, train_matd3

    raw = json.loads(Path(info["config_path"]).read_text())
    fields = {k: v for k, v in raw.items() if k in MATD3OnlineConfig.__dataclass_fields__}
    fields["milestones"] = ()
    fields["replay_milestones"] = (info["threshold"],)
    fields["stop_at_return"] = info["threshold"]
    fields["max_minutes"] = 0.0
    config = MATD3OnlineConfig(**fields)
    if config.env_id != env_id:
        raise RecipeError(f"{info['config_path']}: key 'env_id': a config of {config.env_id!r}, not {env_id!r}")
    run = out / "medium_replay_run"
    if run.exists():
        shutil.rmtree(run)
    say(f"[medium_replay] re-running the training (seed {config.seed}) until a test return >= {info['threshold']:g} ...")
    summary = train_matd3(config, run)
    dump = run / f"replay_return_{_tag(info['threshold'])}.h5"
    if not summary["stopped_at_return"] or not dump.exists():
        raise RecipeError(f"continuous-recipe: the re-run did not reach the medium return {info['threshold']:g} within "
                          f"{config.env_steps} env steps (best {summary['best_return']:.3f}); was the config changed?")
    match = _same_actor(run / "final.pt", Path(info["folder"]) / "medium.pt")  # final.pt = the policy at the stop
    extra = {"rerun_env_steps": summary["env_steps"], "rerun_test_return": summary["final_return"],
             "medium_policy_match": match}
    return dump, extra


def _same_actor(a: Path, b: Path) -> bool:
    sa = torch.load(a, map_location="cpu", weights_only=True)["actor"]
    sb = torch.load(b, map_location="cpu", weights_only=True)["actor"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ cards
def card_provenance(item: dict[str, Any], manifest: dict[str, Any]) -> list[tuple[str, str]]:
    rows = card_head(item, manifest, made_by=("medium_replay",), quote_all=True)
    refs = manifest.get("references") or {}
    if refs.get("random") is not None and refs.get("expert") is not None and item.get("return_mean") is not None:
        score = 100 * (item["return_mean"] - refs["random"]) / (refs["expert"] - refs["random"])
        rows.append(("normalized mean return", f"{score:.1f} (random {refs['random']:.3f}, expert {refs['expert']:.3f}; "
                                               "lit_omarl/envs/reference_returns.py)"))
    if item["quality"] in ("medium", "medium_replay") and manifest.get("medium_definition"):
        rows.append(("medium level", manifest["medium_definition"]))
    return rows + card_tail(item)


def write_cards(out_dir: str | Path, cards_dir: str | Path, qualities: Iterable[str] | None = None,
                log: Callable[[str], None] | None = print) -> list[Path]:
    """A markdown card per dataset of ``out_dir/recipe.json`` into ``cards_dir/<env dir>_<quality>.md``."""
    return write_cards_common(out_dir, cards_dir, qualities, log, "continuous-recipe", card_provenance,
                              lambda manifest: env_dir(manifest["env"]))


# ------------------------------------------------------------------ references and shipping the policies
def measure_references(env_id: str, env_options: dict[str, Any] | None, expert: str | Path,
                       episodes: int = REFERENCE_EPISODES, seed: int = REFERENCE_SEED) -> dict[str, Any]:
    """Mean returns of uniform random actions and of the greedy ``expert`` actors (1000 episodes each by default)."""
    from lit_omarl.behaviour.matd3_online import load_actor

    start = time.perf_counter()
    spec, mask = None, None
    g = torch.Generator().manual_seed(seed)

    def uniform(obs: torch.Tensor) -> torch.Tensor:
        u = torch.rand(obs.shape[0], spec.n_agents, spec.n_actions, generator=g)
        return (spec.action_low + (spec.action_high - spec.action_low) * u) * mask

    env = _reference_env(env_id, env_options, episodes)
    spec, mask = env.spec, env.action_mask.float()
    rnd = _returns(uniform, env, episodes, seed)
    exp = _returns(_greedy(load_actor(expert)), env, episodes, seed)
    return {"random": rnd[0], "random_std": rnd[1], "expert": exp[0], "expert_std": exp[1], "episodes": episodes,
            "seed": seed, "batch": env.num_envs, "seconds": round(time.perf_counter() - start, 1),
            "load_average": load_str()}


def _reference_env(env_id: str, env_options: dict[str, Any] | None, episodes: int) -> Any:
    from lit_omarl.envs import make

    return make(env_id, num_envs=min(REFERENCE_BATCH, episodes), seed=0, **(env_options or {}))


def _greedy(policy: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda obs: policy.act(obs)[0]


def _returns(act: Callable[[torch.Tensor], torch.Tensor], env: Any, episodes: int, seed: int) -> tuple[float, float]:
    from lit_omarl.behaviour.matd3_online import episode_returns

    ret, _ = episode_returns(act, env, episodes, seed)
    return float(ret.mean()), float(ret.std(unbiased=False))


def choose_medium(curve: list[dict[str, Any]], random_return: float, expert_return: float,
                  fraction: float = MEDIUM_FRACTION) -> tuple[dict[str, Any] | None, float]:
    """The first test point after training started (env_steps > 0) whose return reaches
    random + fraction (expert - random); returns (point or None, threshold)."""
    threshold = random_return + fraction * (expert_return - random_return)
    for point in curve:
        if point["env_steps"] > 0 and point["return"] >= threshold:
            return point, threshold
    return None, threshold


def best_checkpoints(run: Path, curve: list[dict[str, Any]], k: int) -> list[tuple[str, dict[str, Any]]]:
    """The ``k`` checkpoints of ``run`` with the best save-time tests, best first: ``final.pt`` for the last test
    point, ``step_<n>.pt`` for the others (points without a checkpoint file are skipped)."""
    last = curve[-1]["env_steps"]
    named = []
    for point in curve:
        if point["env_steps"] <= 0:
            continue
        name = "final.pt" if point["env_steps"] == last else f"step_{point['env_steps']}.pt"
        if (run / name).is_file():
            named.append((name, point))
    named.sort(key=lambda item: -item[1]["return"])
    return named[:k]


def pick_expert(run: Path, curve: list[dict[str, Any]], k: int, env_id: str, env_options: dict[str, Any],
                episodes: int, say: Callable[[str], None]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The expert checkpoint: ``final.pt`` when ``k`` = 1; else the best of the ``k`` best save-time checkpoints
    re-evaluated greedily on ``episodes`` fresh episodes (a single save-time test overstates a noisy run's best
    point). Returns (checkpoint name, its curve point, the candidates' records)."""
    from lit_omarl.behaviour.matd3_online import load_actor

    if k < 1:
        raise RecipeError(f"ship --expert-candidates: must be >= 1, got {k}")
    if k == 1:
        return "final.pt", curve[-1], []
    env = _reference_env(env_id, env_options, episodes)
    records = []
    for name, point in best_checkpoints(run, curve, k):
        mean, std = _returns(_greedy(load_actor(run / name)), env, episodes, CANDIDATE_SEED)
        records.append({"checkpoint": name, "env_steps": point["env_steps"], "test_return_at_save": point["return"],
                        "reevaluated_return": mean, "reevaluated_std": std, "episodes": episodes})
        say(f"expert candidate {name}: save-time test {point['return']:.3f}, re-evaluated {mean:.3f} ± {std:.3f}")
    best = max(records, key=lambda r: r["reevaluated_return"])
    return best["checkpoint"], next(p for p in curve if p["env_steps"] == best["env_steps"]), records


def ship_policies(run: str | Path, dest: str | Path | None = None, png: str | Path | None = None,
                  command: str = "", episodes: int = REFERENCE_EPISODES,
                  log: Callable[[str], None] | None = print, expert_candidates: int = 1,
                  candidate_episodes: int = CANDIDATE_EPISODES) -> dict[str, Any]:
    """Choose the expert and medium checkpoints of a finished ``matd3_online`` run, measure the references and
    write ``dest/{expert,medium}.pt`` (actors only), ``policies.json``, ``train_config.json``, ``curve.jsonl``
    (and the curve PNG when ``png`` is given). ``dest`` defaults to the shipped folder of the run's env.

    Expert: ``final.pt`` (``expert_candidates`` = 1), or the best of the ``expert_candidates`` best save-time
    checkpoints re-evaluated on ``candidate_episodes`` episodes (:func:`pick_expert`). Medium: the first
    checkpoint whose test reaches random + 0.5 (expert - random), the expert's reference return."""
    from lit_omarl.behaviour import ASSETS
    from lit_omarl.behaviour.matd3_online import export_actor, plot_curve, read_curve

    run = Path(run)
    say = log or (lambda _msg: None)
    for name in ("final.pt", "curve.jsonl", "config.json"):
        if not (run / name).is_file():
            raise RecipeError(f"ship --run {run}: {name} is missing (not a finished matd3_online run)")
    config = json.loads((run / "config.json").read_text())
    if config.get("init_from"):
        raise RecipeError(f"ship --run {run}: a continued run (--init-from {config['init_from']}); ship takes runs "
                          "trained from scratch in one folder (the medium level and the medium_replay re-run need the "
                          "whole curve and a config that starts from scratch)")
    env_id, env_options = config["env_id"], config.get("env_options", {})
    dest = Path(dest) if dest is not None else ASSETS / env_dir(env_id)
    curve = read_curve(run / "curve.jsonl")
    expert_name, expert_point, candidates = pick_expert(run, curve, int(expert_candidates), env_id, env_options,
                                                        int(candidate_episodes), say)
    say(f"measuring references of {env_id} ({episodes} episodes each; expert {expert_name}) ...")
    refs = measure_references(env_id, env_options, run / expert_name, episodes)
    point, threshold = choose_medium(curve, refs["random"], refs["expert"])
    if point is None:
        raise RecipeError(f"ship --run {run}: no test reached the medium threshold {threshold:.3f}")
    medium_src = run / f"step_{point['env_steps']}.pt"
    if not medium_src.is_file():
        raise RecipeError(f"ship --run {run}: {medium_src.name} is missing (checkpoint_every must equal eval_every)")
    from lit_omarl.behaviour.matd3_online import load_actor

    med_mean, med_std = _returns(_greedy(load_actor(medium_src)), _reference_env(env_id, env_options, episodes), episodes,
                                 REFERENCE_SEED)
    dest.mkdir(parents=True, exist_ok=True)
    export_actor(run / expert_name, dest / "expert.pt", {"level": "expert"})
    export_actor(medium_src, dest / "medium.pt", {"level": "medium"})
    shutil.copyfile(run / "curve.jsonl", dest / "curve.jsonl")
    train_config = {k: v for k, v in config.items() if k != "spec"}
    (dest / "train_config.json").write_text(json.dumps(train_config, indent=2) + "\n")
    final = json.loads((run / "final.json").read_text())
    span = refs["expert"] - refs["random"]
    meta = {
        "env_id": env_id, "env_options": env_options, "seed": config["seed"], "training_command": command,
        "training": {"env_steps": final["env_steps"], "updates": final["updates"], "minutes": round(final["minutes"], 2)},
        "references": refs,
        "expert": {"checkpoint": expert_name, "env_steps": expert_point["env_steps"],
                   "test_return_at_save": expert_point["return"],
                   "reference_return": refs["expert"], "reference_return_std": refs["expert_std"],
                   "definition": ("the final actors" if not candidates else
                                  f"best of the {len(candidates)} best save-time checkpoints re-evaluated on "
                                  f"{candidate_episodes} greedy episodes (seed {CANDIDATE_SEED})"),
                   **({"candidates": candidates} if candidates else {})},
        "medium": {"checkpoint": medium_src.name, "env_steps": point["env_steps"], "test_return_at_save": point["return"],
                   "threshold": threshold, "fraction": MEDIUM_FRACTION,
                   "reference_return": med_mean, "reference_return_std": med_std,
                   "normalized": 100 * (med_mean - refs["random"]) / span,
                   "definition": (f"first checkpoint whose greedy test return ({config['eval_episodes']} episodes) reaches "
                                  f"random + {MEDIUM_FRACTION:g} (expert - random) = {threshold:.3f}")},
    }
    (dest / POLICIES).write_text(json.dumps(meta, indent=2) + "\n")
    if png is not None:
        plot_curve(run / "curve.jsonl", png, title=f"MATD3 on {env_id} (seed {config['seed']})",
                   references={"random": refs["random"], f"expert ({expert_name}, {episodes} ep.)": refs["expert"],
                               "medium threshold": threshold},
                   marks={"medium": point["env_steps"], **({"expert": expert_point["env_steps"]} if candidates else {})})
    say(json.dumps({"expert": refs["expert"], "random": refs["random"], "medium": med_mean,
                    "threshold": threshold, "medium_step": point["env_steps"]}))
    return meta


# ------------------------------------------------------------------ command line (shipping / references)
def main(argv: list[str] | None = None) -> int:
    """``ship --run RUN [--dest DIR] [--png PATH]`` and ``references --env ENV --expert REF``."""
    import sys

    p = argparse.ArgumentParser(prog="python -m lit_omarl.behaviour.continuous_recipe")
    sub = p.add_subparsers(dest="cmd", required=True)
    ship = sub.add_parser("ship", help="choose medium / expert of a matd3_online run and write them as behaviour policies")
    ship.add_argument("--run", required=True)
    ship.add_argument("--dest", help="target folder (default: lit_omarl/assets/behaviour/<env dir>)")
    ship.add_argument("--png", help="also plot the training curve there")
    ship.add_argument("--command", default="", help="the training command, recorded in policies.json")
    ship.add_argument("--episodes", type=int, default=REFERENCE_EPISODES, help="episodes of each reference return (1000)")
    ship.add_argument("--expert-candidates", type=int, default=1,
                      help="re-evaluate the K best save-time checkpoints and ship the best as expert (default 1: final.pt)")
    ship.add_argument("--candidate-episodes", type=int, default=CANDIDATE_EPISODES,
                      help=f"greedy episodes of each candidate's re-evaluation (default {CANDIDATE_EPISODES})")
    ref = sub.add_parser("references", help="measure the random / expert reference returns of a task")
    ref.add_argument("--env", required=True)
    ref.add_argument("--expert", help="expert checkpoint (default: the shipped <env dir>/expert)")
    ref.add_argument("--option", action="append", default=[], help="env option KEY=VALUE (JSON values)")
    a = p.parse_args(argv)
    try:
        if a.cmd == "ship":
            ship_policies(a.run, a.dest, a.png, a.command, a.episodes, expert_candidates=a.expert_candidates,
                          candidate_episodes=a.candidate_episodes)
        else:
            options = {}
            for pair in a.option:
                key, _, value = pair.partition("=")
                try:
                    options[key] = json.loads(value)
                except json.JSONDecodeError:
                    options[key] = value
            print(json.dumps(measure_references(a.env, options, a.expert or f"{env_dir(a.env)}/expert")))
    except (RecipeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = ["DEFAULT_NOISE", "QUALITIES", "RecipeError", "RecipeItem", "behaviours", "choose_medium", "continuous_recipe",
           "dataset_path", "default_episodes", "default_out_dir", "best_checkpoints", "env_dir", "generation_seed",
           "measure_references", "pick_expert", "policy_refs", "ship_policies", "write_cards"]


if __name__ == "__main__":
    raise SystemExit(main())
