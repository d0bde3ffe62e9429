"""MABCQ's decentralised datasets (mabcq.md Sec. 4.1): ``lit-omarl data mabcq-recipe --env mamujoco/HalfCheetah-2x3``.

The paper collects one dataset B_i per agent i (1M transitions each) from a
joint policy trained online (SAC there; MATD3 here: the task's shipped
behaviour policies, :mod:`lit_omarl.behaviour.continuous_recipe`), with an
intermediate and an expert policy stored along training. B_i is a mixture of

* 20 %: "split from the experiences generated ... at the early training".
  OUR CHOICE: the first episodes (collection order) of the task's
  ``medium_replay`` dataset, the replay buffer of the behaviour training up to
  the medium level (the same early episodes in every B_i);
* 35 %: agent i acts the intermediate (``medium``) policy, the others the expert;
* 35 %: agent i acts the expert, the others the intermediate policy;
* 10 %: every agent acts the expert;

"for the last three parts, we add a small noise": OUR CHOICE, the continuous
recipe's Gaussian noise of std 0.1 of the action half-range
(``noise:0.1:agents:policy:<medium>|policy:<expert>|...``, see the ``agents:``
behaviour of :mod:`lit_omarl.data.generate`).

Shares are shares of transitions (the paper's "20 % transitions"), counted
one of two ways:

* fixed-length tasks (every episode of the replay runs to the episode limit:
  HalfCheetah, MPE): in episodes. With E episodes per file (``--episodes``),
  early = round(0.2 E), the all-expert part round(0.1 E) and the two 35 %
  parts share the rest (the first takes an odd episode). E defaults to
  min(OMAR's 1M transitions, 5 x the replay's episodes) and a larger E is an
  error naming the limit (HalfCheetah-2x3: the buffer holds 144 episodes, so
  E <= 720, i.e. 720k transitions per B_i instead of the paper's 1M).
* tasks whose episodes end early (Hopper, Walker2d, Ant fall): in
  transitions. With T transitions per file (``--transitions``), the parts get
  round(0.2 T), round(0.1 T) and the rest split the same way; each part is the
  shortest prefix of its episodes (the replay's in collection order, or the
  generated stream: ``generate_dataset(min_transitions=...)``) holding at
  least its share, so a file holds T plus less than one episode per part. T
  defaults to min(1M, 5 x the replay's transitions); a larger T is an error.

Files ``<env dir>_mabcq_agent<i>.h5`` (schema v1, joint layout: agent i's
learner reads only its own slice; ``data.agent_paths`` of the DataModule
takes the N files). Generation seeds: ``1000 * seed + 10 * (i + 1) + part``
(part 1, 2, 3 = the 35 %, 35 %, 10 % parts). Deterministic given (env,
policies, replay file, episodes, seed, batch_size, noise); an existing file
made otherwise is never overwritten (error naming the file and the difference)
unless ``overwrite``. ``recipe.json`` records the composition, commands, wall
times and checksums; :func:`write_cards` writes the dataset cards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lit_omarl.behaviour._recipe_common import (RecipeError, card_head, card_tail, check_batch_size, finish_common,
                                                load_manifest, make_or_check, policies_sha256, recipe_cache_dir,
                                                sha256_file,
                                                write_cards_common, write_manifest)
from lit_omarl.behaviour.continuous_recipe import (DEFAULT_NOISE, RecipeItem, default_episodes, env_dir,
                                                   load_policies_meta, policy_folder, policy_refs)

SHARES = {"early": 0.20, "own_medium": 0.35, "own_expert": 0.35, "all_expert": 0.10}
PART_OFFSETS = {"own_medium": 1, "own_expert": 2, "all_expert": 3}


def agent_quality(agent: int) -> str:
    return f"mabcq_agent{agent}"


def dataset_path(out_dir: str | Path, env_id: str, agent: int) -> Path:
    return Path(out_dir) / f"{env_dir(env_id)}_{agent_quality(agent)}.h5"


def default_out_dir(env_id: str, episodes: int, seed: int) -> Path:
    """``<dataset cache>/mabcq_recipe/<env dir>_<episodes>ep_s<seed>``."""
    return recipe_cache_dir("mabcq_recipe", env_dir(env_id), episodes, seed)


def part_counts(episodes: int, unit: str = "episodes") -> dict[str, int]:
    """Episodes (or transitions, ``unit``) of each part of a file of ``episodes`` of them (module docstring)."""
    early, expert = round(SHARES["early"] * episodes), round(SHARES["all_expert"] * episodes)
    rest = episodes - early - expert  # the two 35 % parts (the first one takes an odd episode)
    counts = {"early": early, "own_medium": rest - rest // 2, "own_expert": rest // 2, "all_expert": expert}
    if min(counts.values()) < 1:
        raise RecipeError(f"mabcq-recipe --{unit}: {episodes} is too few for the four parts of the mixture {counts}; "
                          "use at least 10")
    return counts


def default_transitions_dir(env_id: str, transitions: int, seed: int) -> Path:
    """``<dataset cache>/mabcq_recipe/<env dir>_<T>tr_s<seed>`` (the transition-share form of :func:`default_out_dir`)."""
    return default_out_dir(env_id, 0, seed).with_name(f"{env_dir(env_id)}_{int(transitions)}tr_s{int(seed)}")


def varies_in_length(lengths: np.ndarray, episode_limit: int) -> bool:
    """True when some episode ended before the limit: then the shares count transitions (module docstring)."""
    return bool((lengths != int(episode_limit)).any())


def prefix_reaching(lengths: np.ndarray, steps: int) -> int:
    """Episodes of the shortest prefix of ``lengths`` holding at least ``steps`` steps (all if none does)."""
    reached = np.nonzero(np.cumsum(lengths) >= steps)[0]
    return int(reached[0]) + 1 if len(reached) else len(lengths)


def part_behaviours(n_agents: int, agent: int, refs: dict[str, str], noise: float) -> dict[str, str]:
    """``agents:`` behaviour specifications of agent ``agent``'s three generated parts."""
    def team(own: str, others: str) -> str:
        body = "agents:" + "|".join(f"policy:{refs[own if k == agent else others]}" for k in range(n_agents))
        return body if noise <= 0 else f"noise:{noise:g}:{body}"

    return {"own_medium": team("medium", "expert"), "own_expert": team("expert", "medium"),
            "all_expert": team("expert", "expert")}


def part_seed(seed: int, agent: int, part: str) -> int:
    return 1000 * int(seed) + 10 * (agent + 1) + PART_OFFSETS[part]


def _replay_file(env_id: str, replay: str | Path | None, say: Callable[[str], None]) -> Path:
    """The medium_replay dataset: ``replay``, or the continuous recipe's (made there if missing)."""
    if replay is not None:
        path = Path(replay).expanduser()
        if not path.is_file():
            raise RecipeError(f"mabcq-recipe --replay {path}: no such file")
        return path
    from lit_omarl.behaviour.continuous_recipe import continuous_recipe, dataset_path as crec_path
    from lit_omarl.behaviour.continuous_recipe import default_out_dir as crec_dir

    episodes = default_episodes(env_id)
    out = crec_dir(env_id, episodes, 0)
    path = crec_path(out, env_id, "medium_replay")
    if not path.exists():
        say(f"[early] no medium_replay dataset at {path}: making it with the continuous recipe (re-runs the behaviour "
            "training up to the medium level) ...")
        continuous_recipe(env_id, out, episodes=episodes, seed=0, qualities=["medium_replay"], log=say)
    return path


def recipe_size(env_id: str, episode_limit: int, lengths: np.ndarray, replay_path: Path, episodes: int | None,
                transitions: int | None) -> tuple[bool, str, int]:
    """(shares count transitions?, "transitions" or "episodes", the file size) for a replay of episode
    ``lengths``: the size asked for, checked against the replay, or the default (module docstring)."""
    by_steps = varies_in_length(lengths, episode_limit)
    if by_steps:
        if episodes is not None:
            raise RecipeError(f"mabcq-recipe --episodes: episodes of {env_id} end early ({replay_path}: "
                              f"{int(lengths.min())} to {int(lengths.max())} steps), so the shares count transitions; "
                              "give --transitions instead")
        n_replay, unit, asked, default = int(lengths.sum()), "transitions", transitions, 1_000_000
    else:
        if transitions is not None:
            raise RecipeError(f"mabcq-recipe --transitions: every episode of {replay_path} runs to the limit "
                              f"({episode_limit} steps), so the shares count episodes; give --episodes instead")
        n_replay, unit, asked, default = len(lengths), "episodes", episodes, default_episodes(env_id)
    limit = int(n_replay / SHARES["early"] + 1e-9)
    size = min(default, limit) if asked is None else int(asked)
    if size > limit:
        raise RecipeError(f"mabcq-recipe --{unit} {size}: the early-training share (20 %) needs "
                          f"{round(SHARES['early'] * size)} {unit} but {replay_path} holds {n_replay}; "
                          f"use --{unit} <= {limit}")
    return by_steps, unit, size


def size_dir(env_id: str, by_steps: bool, size: int, seed: int) -> Path:
    """The default folder of a recipe of ``size`` transitions (``by_steps``) or episodes."""
    return default_transitions_dir(env_id, size, seed) if by_steps else default_out_dir(env_id, size, seed)


def default_dir(env_id: str, seed: int = 0, log: Callable[[str], None] | None = print) -> Path:
    """The folder ``lit-omarl data mabcq-recipe --env ENV --seed SEED`` (no size, no --replay) writes: its default
    size follows from the task's medium_replay (made with the continuous recipe if missing)."""
    from lit_omarl.data.schema import read_dataset

    replay_path = _replay_file(env_id, None, log or (lambda _msg: None))
    data = read_dataset(replay_path)
    by_steps, _, size = recipe_size(env_id, data.spec.episode_limit, data.lengths(), replay_path, None, None)
    return size_dir(env_id, by_steps, size, seed)


def mabcq_recipe(
    env_id: str,
    out_dir: str | Path | None = None,
    episodes: int | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    noise: float = DEFAULT_NOISE,
    replay: str | Path | None = None,
    policy_dir: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
    transitions: int | None = None,
) -> list[RecipeItem]:
    """Write B_0 ... B_{N-1} of ``env_id`` into ``out_dir`` (module docstring); returns one item per agent.

    Args:
        env_id: a continuous env with shipped MATD3 policies (or ``policy_dir``).
        out_dir: target folder (default :func:`size_dir`: ``<env dir>_<E>ep_s<seed>`` or ``_<T>tr_s<seed>``).
        episodes: episodes per file of a fixed-length task (default: min(OMAR's 1M transitions, 5 x the
            replay's episodes)).
        transitions: transitions per file of a task whose episodes end early (default: min(1M, 5 x the
            replay's transitions)); each kind of task refuses the other's size (module docstring).
        seed: recipe seed (generation seeds derive from it).
        batch_size: episodes simulated in parallel (part of the determinism key).
        noise: Gaussian action noise of the generated parts (units of the half-range; 0: none).
        replay: the early-training episodes (a medium_replay dataset of the task); default: the continuous
            recipe's medium_replay file (made if missing).
        policy_dir: folder with medium.pt, expert.pt, policies.json instead of the shipped ones.
        overwrite: replace files made with other settings.
        log: progress lines (None: silent).
    """
    from lit_omarl.data.generate import generate_dataset
    from lit_omarl.data.schema import episode_lengths, read_dataset, write_dataset

    say = log or (lambda _msg: None)
    check_batch_size("mabcq-recipe", int(batch_size))
    if not (noise >= 0 and np.isfinite(noise)):
        raise RecipeError(f"mabcq-recipe --noise: must be a finite number >= 0, got {noise}")
    meta = load_policies_meta(env_id, policy_dir)
    refs = policy_refs(env_id, policy_dir)
    env_options = dict(meta.get("env_options", {}))
    replay_path = _replay_file(env_id, replay, say)
    early_data = read_dataset(replay_path)  # validated
    if early_data.spec.env_id != env_id:
        raise RecipeError(f"mabcq-recipe --replay {replay_path}: a dataset of {early_data.spec.env_id!r}, not {env_id}")
    spec = early_data.spec
    lengths = early_data.lengths()
    by_steps, unit, size = recipe_size(env_id, spec.episode_limit, lengths, replay_path, episodes, transitions)
    counts = part_counts(size, unit)
    n_early = prefix_reaching(lengths, counts["early"]) if by_steps else counts["early"]
    replay_digest = sha256_file(replay_path)
    policies_digest = policies_sha256(policy_folder(env_id, policy_dir)[0])
    out = Path(out_dir).expanduser() if out_dir is not None else size_dir(env_id, by_steps, size, seed)
    out.mkdir(parents=True, exist_ok=True)
    previous = load_manifest(out).get("datasets", {})
    recipe_attr = (f"mabcq-recipe env={env_id} {unit}={size} seed={int(seed)} batch_size={int(batch_size)} "
                   f"noise={noise:g} replay_sha256={replay_digest}")
    command = (f"lit-omarl data mabcq-recipe --env {env_id} --out-dir {out} --{unit} {size} --seed {int(seed)} "
               f"--batch-size {int(batch_size)} --noise {noise:g}" + (f" --replay {replay}" if replay is not None else "")
               + (f" --policy-dir {policy_dir}" if policy_dir is not None else ""))
    items: list[RecipeItem] = []
    for agent in range(spec.n_agents):
        path = dataset_path(out, env_id, agent)
        quality = agent_quality(agent)
        specs = part_behaviours(spec.n_agents, agent, refs, noise)
        want = {"env": env_id, "recipe": recipe_attr, "agent": agent, "policies_sha256": policies_digest}
        if not by_steps:
            want["n_episodes"] = size
        item = RecipeItem(quality, str(path), "cached", " + ".join(f"{k}: {v}" for k, v in specs.items()), int(seed))

        def make(agent: int = agent, path: Path = path, specs: dict[str, str] = specs) -> None:
            parts = [{k: v[:n_early] for k, v in early_data.arrays.items()}]
            for part, behaviour in specs.items():
                say(f"[{agent_quality(agent)}] {part}: {counts[part]} {unit} of {behaviour!r} "
                    f"(seed {part_seed(seed, agent, part)}) ...")
                arrays, _ = generate_dataset(env_id, behaviour, counts[part], part_seed(seed, agent, part),
                                             env_options=env_options, batch_size=batch_size,
                                             min_transitions=counts[part] if by_steps else None)
                parts.append(arrays)
            keys = [k for k in parts[1] if k != "behaviour_probs"]
            missing = [k for k in keys if k not in parts[0]]
            if missing:
                raise RecipeError(f"mabcq-recipe --replay {replay_path}: lacks {', '.join(missing)}")
            arrays = {k: np.concatenate([p[k] for p in parts], axis=0) for k in keys}
            composition = {"early": {"episodes": n_early, "transitions": int(lengths[:n_early].sum()),
                                     "source": str(replay_path), "sha256": replay_digest},
                           **{part: {"episodes": len(p["filled"]), "transitions": int(episode_lengths(p).sum()),
                                     "behaviour": b, "seed": part_seed(seed, agent, part)}
                              for (part, b), p in zip(specs.items(), parts[1:])}}
            attrs = {"spec": spec, "quality": quality, "behaviour": item.behaviour, "seed": int(seed),
                     "agent": agent, "recipe": recipe_attr, "composition": composition,
                     "policies_sha256": policies_digest,
                     "source": "lit_omarl mabcq-recipe (mabcq.md Sec. 4.1)"}
            write_dataset(path, arrays, attrs, overwrite=overwrite)

        make_or_check(item, path, want, overwrite, make, say, f"[{quality}] writing {path} ...",
                      recorded_only=("policies_sha256",))
        a = finish_common(item, path, previous, ("seconds", "cpu_seconds", "load_average", "command", "note", "extra"))
        item.return_mean = float(a["return_mean"])
        item.extra = {f"parts ({unit})": ", ".join(f"{k} {v}" for k, v in counts.items())}
        if by_steps:
            made = json.loads(a["composition"]) if isinstance(a.get("composition"), str) else a.get("composition", {})
            item.extra["parts (episodes, transitions held)"] = ", ".join(
                f"{k} {made[k].get('episodes')} / {made[k].get('transitions')}" for k in SHARES if k in made)
        item.note = (f"B_{agent} of MABCQ's per-agent recipe: agent {agent}'s learner reads its own slice "
                     "(data.agent_paths)")
        items.append(item)
        say(f"[{quality}] {item.status}: {path} ({item.episodes} episodes, return mean {item.return_mean:.3f}"
            + (f", {item.seconds:.1f} s" if item.seconds else "") + ")")
    header = {"env": env_id, "env_options": env_options, "recipe_seed": int(seed), unit: size, "share_unit": unit,
              "batch_size": int(batch_size), "noise": noise, "recipe_command": command, "shares": SHARES,
              "counts": counts, "replay": str(replay_path), "replay_sha256": replay_digest,
              "references": meta.get("references", {})}
    write_manifest(out, header, previous, items, tuple(agent_quality(i) for i in range(spec.n_agents)))
    return items


def agent_paths(out_dir: str | Path, env_id: str) -> list[str]:
    """The N files of a finished recipe folder, in agent order (for ``data.agent_paths``)."""
    manifest = load_manifest(Path(out_dir).expanduser())
    if not manifest.get("datasets"):
        raise RecipeError(f"{Path(out_dir) / 'recipe.json'}: no mabcq-recipe manifest (run `lit-omarl data mabcq-recipe` first)")
    return [manifest["datasets"][q]["file"] for q in sorted(manifest["datasets"], key=lambda q: int(q.removeprefix("mabcq_agent")))]


def card_provenance(item: dict[str, Any], manifest: dict[str, Any]) -> list[tuple[str, str]]:
    rows = card_head(item, manifest, made_by=(), quote_all=True)
    refs = manifest.get("references") or {}
    if refs.get("random") is not None and refs.get("expert") is not None and item.get("return_mean") is not None:
        score = 100 * (item["return_mean"] - refs["random"]) / (refs["expert"] - refs["random"])
        rows.append(("normalized mean return", f"{score:.1f} (random {refs['random']:.3f}, expert {refs['expert']:.3f})"))
    rows.append(("mixture", json.dumps(manifest.get("shares", {}))))
    return rows + card_tail(item)


def write_cards(out_dir: str | Path, cards_dir: str | Path, log: Callable[[str], None] | None = print) -> list[Path]:
    """A markdown card per agent's dataset into ``cards_dir/<env dir>_mabcq_agent<i>.md``."""
    return write_cards_common(out_dir, cards_dir, None, log, "mabcq-recipe", card_provenance,
                              lambda manifest: env_dir(manifest["env"]))


__all__ = ["SHARES", "agent_paths", "agent_quality", "dataset_path", "default_dir", "default_out_dir",
           "default_transitions_dir", "mabcq_recipe", "part_behaviours", "part_counts", "part_seed", "prefix_reaching",
           "recipe_size", "size_dir", "varies_in_length", "write_cards"]
