"""ICQ Fig. 4 on SMAX (reproductions/icq_fig4.py): the three-level mixture dataset, offline QMIX's
SMAX config, and a ``run_fn`` that keeps the periodic test evaluations as learning curves.

The dataset (``icq_mix``). icq.md Sec. 6.1 / App. E: 3000 trajectories per map from DOP training runs,
behaviour policies divided into three levels by their average episode return (Table 3, SMAC returns
rescaled to max 20: good 15-20, medium 10-15, poor 0-10), data of the three levels mixed evenly.
Ours: the SMAX recipe's OMAC return bands (:mod:`lit_omarl.behaviour.recipe`, ``omac_good`` /
``omac_medium`` / ``omac_poor``: thirds of the normalised return R / R_max of one pool of episodes of
the map's shipped QMIX behaviour policies at several strengths), generated with
``recipe_episodes`` = E episodes per band, and the mixture = all E episodes of each band interleaved
good 0, medium 0, poor 0, good 1, ... (3E episodes; E = 1000 gives ICQ's 3000; every prefix of 3k
episodes is still an equal mixture). It is written once per (map, E, recipe seed) to
``<dataset cache>/icq_mix/<map>_<E>ep_s<seed>/smax_<map>_icq_mix.h5``, with the sha256 of its three
band files in its ``derived_from`` attribute; an existing file made from other band files is an error
(delete it), never overwritten.

Why not ICQ's own thresholds: on SMAX a win returns exactly R_max and a loss at most R_max / 2, so
ICQ's medium level (0.5 to 0.75 R_max) holds no episode; the equal thirds split the losses instead
(good = won episodes, medium = losses that removed >= 2/3 of the enemy health, poor = the rest).
ICQ's levels classify behaviour POLICIES by their mean return; ours classify EPISODES.

Offline QMIX. lit_omarl ships no ``configs/qmix/smax`` config; :data:`QMIX_SMAX` (the agent of the
other SMAX configs, monotonic QMIX mixer, icq.md Table 4's shared values where they apply) is written
into the run folder as ``qmix_smax.yaml`` and trained like a shipped config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import yaml

from lit_omarl.repro.smax import shipped_maps
from lit_omarl.repro.train import config_algorithm, fit_recipe_cell

BANDS = ("omac_good", "omac_medium", "omac_poor")
MIX_QUALITY = "icq_mix"

#: Offline QMIX on SMAX: GRU agent as configs/*/smax/2s3z_expert.yaml; lr 5e-4, grad clip 20, mixer
#: embedding 32, TD(lambda 0.8) as icq.md Table 4 (shared / lambda); hard target copy every 25 updates
#: as the other SMAX configs (icq.md: 600, counted per time step by the official code).
QMIX_SMAX: dict[str, Any] = {
    "seed_everything": 0,
    "trainer": {"max_steps": 5000},
    "model": {
        "class_path": "lit_omarl.algos.QMIX",
        "init_args": {
            "agent": "rnn", "agent_hidden_dim": 64, "use_agent_id": True, "use_last_action": True,
            "gamma": 0.99, "lr": 0.0005, "grad_clip_norm": 20.0, "td_lambda": 0.8, "target_update_interval": 25,
            "mixer": "qmix", "mixer_embed_dim": 32,
            "eval_every_steps": 1000, "eval_episodes": 32, "final_eval_episodes": 128,
        },
    },
    "data": {"env": None, "behaviour": None, "sampling": "episode", "batch_size": 32},
}


def band_dir(map_name: str, budget: dict[str, Any]) -> Path:
    from lit_omarl.behaviour.recipe import default_out_dir

    return default_out_dir(map_name, int(budget.get("recipe_episodes", 1000)), int(budget.get("recipe_seed", 0)))


def mix_path(map_name: str, budget: dict[str, Any]) -> Path:
    """The mixture file of a map at the budget's ``recipe_episodes`` (per band) and ``recipe_seed``."""
    from lit_omarl.behaviour._recipe_common import recipe_cache_dir

    folder = recipe_cache_dir("icq_mix", map_name, int(budget.get("recipe_episodes", 1000)),
                              int(budget.get("recipe_seed", 0)))
    return folder / f"smax_{map_name}_{MIX_QUALITY}.h5"


def build_mix(map_name: str, band_files: dict[str, Path], shas: dict[str, str], out: Path) -> Path:
    """Interleave every episode of the three band files (good, medium, poor, good, ...) into ``out``."""
    import h5py
    import numpy as np

    from lit_omarl.data.schema import write_dataset

    derived = json.dumps({b: {"file": band_files[b].name, "sha256": shas[b]} for b in BANDS}, sort_keys=True)
    if out.exists():
        with h5py.File(out, "r") as f:
            old = f.attrs.get("derived_from")
        old = old.decode() if isinstance(old, bytes) else old
        if old != derived:
            raise RuntimeError(f"{out} was made from other band files ({old}); delete it to rebuild it from {derived}")
        print(f"[{MIX_QUALITY}] cached: {out}")
        return out
    handles = [h5py.File(band_files[b], "r") for b in BANDS]
    try:
        specs = {h.attrs["spec"] for h in handles}
        if len(specs) != 1:
            raise RuntimeError(f"{map_name}: the band files have different env specs")
        counts = [int(h["actions"].shape[0]) for h in handles]
        n = min(counts)
        keys = [k for k in handles[0].keys() if all(k in h for h in handles)]
        arrays: dict[str, np.ndarray] = {}
        for key in keys:
            parts = [h[key][:n] for h in handles]
            mixed = np.empty((3 * n, *parts[0].shape[1:]), dtype=parts[0].dtype)
            for i, part in enumerate(parts):
                mixed[i::3] = part
            arrays[key] = mixed
        spec = handles[0].attrs["spec"]
    finally:
        for h in handles:
            h.close()
    attrs = {"spec": spec, "quality": MIX_QUALITY, "source": "derived", "generator": "lit_omarl.repro.icq build_mix",
             "behaviour": "mix:" + "|".join(f"file:{band_files[b].name}" for b in BANDS),
             "derived_from": derived,
             "mixture": f"episode 3k + i = band i ({', '.join(BANDS)})[k], k < {n} (equal thirds; ICQ Fig. 4 data)"}
    write_dataset(out, arrays, attrs)
    print(f"[{MIX_QUALITY}] written: {out} ({3 * n} episodes, {n} per band)")
    return out


def prepare_icq_mix(runs: Sequence[Any], runs_dir: Path) -> None:  # noqa: ARG001  (prepare_fn of a TableSpec)
    """Generate the three OMAC bands of every map the pending runs need, then their mixture."""
    from lit_omarl.behaviour.recipe import dataset_path, smax_recipe

    needed = sorted({(r.task, int(r.budget.get("recipe_episodes", 1000)), int(r.budget.get("recipe_seed", 0)))
                     for r in runs})
    for map_name, episodes, seed in needed:
        if map_name not in shipped_maps():
            print(f"SMAX {map_name}: no shipped behaviour policies; its runs will fail (train them with "
                  f"`python -m lit_omarl.behaviour.qmix_online --map {map_name}` and ship them to lit_omarl/assets)")
            continue
        budget = {"recipe_episodes": episodes, "recipe_seed": seed}
        items = smax_recipe(map_name, episodes=episodes, seed=seed, qualities=list(BANDS))
        shas = {item.quality: item.sha256 for item in items}
        files = {b: dataset_path(band_dir(map_name, budget), map_name, b) for b in BANDS}
        build_mix(map_name, files, shas, mix_path(map_name, budget))


def qmix_config(workdir: Path) -> str:
    path = Path(workdir) / "qmix_smax.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# offline QMIX on SMAX (lit_omarl.repro.icq.QMIX_SMAX); data from --data.path\n"
                    + yaml.safe_dump(QMIX_SMAX, sort_keys=False))
    return str(path)


def eval_curves(logdir: Path, final: dict[str, float], max_steps: int) -> dict[str, float]:
    """``win_rate_step_<k>`` / ``return_step_<k>`` of every periodic test evaluation (``final_eval.json``);
    the final evaluation (more episodes) is the point at ``max_steps``."""
    from lit_omarl.repro.curves import eval_history

    points = {int(h["step"]): h for h in eval_history(logdir)}
    points[max_steps] = {"step": max_steps, **final}
    out: dict[str, float] = {}
    for step, h in sorted(points.items()):
        if not 0 < step <= max_steps:
            continue
        if "win_rate" in h:
            out[f"win_rate_step_{step}"] = float(h["win_rate"])
        out[f"return_step_{step}"] = float(h["episode_return"])
    return out


def run_icq_cell(run: Any, workdir: Path) -> dict[str, float]:
    """``run_fn``: the column's SMAX config (QMIX: :data:`QMIX_SMAX`) on the map's ``icq_mix`` file,
    then the periodic test evaluations as curve scores (:func:`eval_curves`)."""
    algorithm = config_algorithm(run)
    config = qmix_config(workdir) if algorithm == "qmix" else f"{algorithm}/smax/2s3z_expert.yaml"
    scores = fit_recipe_cell(run, workdir, mix_path(run.task, dict(run.budget)), config)
    max_steps = int(run.budget.get("max_steps", 0))
    if max_steps > 0:
        scores.update(eval_curves(Path(workdir) / "tb" / "version_0", scores, max_steps))
    return scores
