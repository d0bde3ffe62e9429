"""The ``lit-omarl`` command.

* ``lit-omarl fit|validate|test --config FILE`` : LightningCLI (``--print_config`` shows every option).
* ``lit-omarl data import|generate|smax-recipe|continuous-recipe|mabcq-recipe|validate|card ...`` : dataset tools.
* ``lit-omarl configs`` : list the shipped YAML configs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lit_omarl.repro.inputs import CONFIG_DIR


# --------------------------------------------------------------------------- fit
def _lightning_cli_class():
    from lightning.pytorch.cli import LightningCLI

    class LitOmarlCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001
            # dimensions come from the dataset, never typed twice in a config
            parser.link_arguments("data.spec", "model.init_args.spec", apply_on="instantiate")
            # checkpoints every K updates plus last.ckpt, so interrupted runs resume
            from lightning.pytorch.callbacks import ModelCheckpoint

            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.every_n_train_steps": 1000, "checkpoint.save_last": True, "checkpoint.save_top_k": 0})

    return LitOmarlCLI


TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": 10_000,
    "accelerator": "auto",
    "devices": 1,
    "log_every_n_steps": 50,
    "enable_model_summary": False,
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "runs", "name": "lit_omarl"}},
    "plugins": {"class_path": "lit_omarl.utils.checkpoint_io.AtomicCheckpointIO"},
}


def build_cli(args: list[str] | None = None, run: bool = True):
    """Build (and by default run) the LightningCLI; used by ``lit-omarl`` and the reproductions."""
    import lit_omarl.algos  # noqa: F401  (registers the algorithms as subclasses)
    from lit_omarl.algos.base import OfflineMARLModule
    from lit_omarl.data.datamodule import OfflineDataModule

    import warnings

    # We save checkpoints after the update on purpose (they resume training exactly).
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    cls = _lightning_cli_class()
    return cls(
        OfflineMARLModule,
        OfflineDataModule,
        subclass_mode_model=True,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


# -------------------------------------------------------------------------- data
def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _env_options(ns: argparse.Namespace) -> dict[str, Any]:
    options = _parse_options(ns.option or [])
    if getattr(ns, "payoff", None) is not None:
        try:
            options["payoff"] = json.loads(ns.payoff)
        except json.JSONDecodeError as err:
            raise ValueError(f"--payoff must be a JSON matrix such as '[[1,0],[0,1]]': {err}") from None
    if getattr(ns, "n", None) is not None:
        options["n"] = ns.n
    return options


def _data_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lit-omarl data", description="Dataset tools (schema v1 HDF5).")
    sub = p.add_subparsers(dest="cmd", required=True)

    imp = sub.add_parser("import", help="convert a published dataset into a lit_omarl HDF5 file")
    from lit_omarl.data.importers import IMPORTERS

    imp.add_argument("--format", required=True, choices=sorted(IMPORTERS))
    imp.add_argument("--env", default=None, help="env id the data belongs to, e.g. bridge (pymarl-npy); "
                     "derived from the source when omitted for cfcql-h5 (sc2/<map>) and omar-npy (from its folder)")
    imp.add_argument("src", help="source folder (pymarl-npy, omar-npy) or file (cfcql-h5)")
    imp.add_argument("--out", required=True)
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    imp.add_argument("--option", action="append", help="env option KEY=VALUE (JSON values)")

    gen = sub.add_parser("generate", help="generate a dataset by rolling out a behaviour in an env")
    gen.add_argument("--env", required=True, help="env id, e.g. matrix/xor, matrix, mmdp, equal_line, bridge")
    gen.add_argument("--behaviour", required=True, help="behaviour spec, e.g. xor-b, uniform, expert, probs:0.8,0.2")
    gen.add_argument("--episodes", type=int, required=True)
    gen.add_argument("--seed", type=int, required=True)
    gen.add_argument("--out", required=True)
    gen.add_argument("--payoff", help="payoff matrix for env 'matrix' as JSON, e.g. '[[0,1],[1,-2]]'")
    gen.add_argument("--n", type=int, help="number of agents (equal_line, mmdp)")
    gen.add_argument("--option", action="append", help="other env option KEY=VALUE (JSON values)")
    gen.add_argument("--quality", help="quality label stored in the file (default: the behaviour)")
    gen.add_argument("--batch-size", type=int, default=1024,
                     help="episodes simulated in parallel (default 1024; part of the determinism key)")
    gen.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    rec = sub.add_parser("smax-recipe", help="the papers' SMAX datasets of a map (CFCQL medium/expert/mixed/"
                                             "medium_replay, OMAC good/medium/poor) from its shipped policies")
    rec.add_argument("--map", required=True, help="SMAX map with policies in lit_omarl/assets/behaviour/smax_<map>/")
    rec.add_argument("--out-dir", help="folder of the files (default: <dataset cache>/smax_recipe/<map>_<E>ep_s<seed>)")
    rec.add_argument("--episodes", type=int, default=5000, help="episodes per dataset (default 5000)")
    rec.add_argument("--seed", type=int, default=0, help="recipe seed (default 0)")
    rec.add_argument("--batch-size", type=int, default=512, help="episodes simulated in parallel (default 512)")
    rec.add_argument("--replay", help="replay_winrate_<w>.h5 dump of a qmix_online run (becomes medium_replay)")
    rec.add_argument("--only", help="comma-separated subset of: medium,expert,mixed,medium_replay,omac_good,omac_medium,omac_poor")
    rec.add_argument("--policy-dir", help="folder with medium.pt and expert.pt instead of the shipped policies")
    rec.add_argument("--cards-dir", help="also write a markdown card per dataset there (smax_<map>_<quality>.md)")
    rec.add_argument("--overwrite", action="store_true", help="replace files made with other settings")

    crec = sub.add_parser("continuous-recipe", help="OMAR / CFCQL's continuous datasets of a task (random, medium_replay, "
                                                   "medium, expert) from its shipped MATD3 policies")
    crec.add_argument("--env", required=True, help="continuous env with policies in lit_omarl/assets/behaviour/<env dir>/, "
                                                   "e.g. mpe/simple_spread")
    crec.add_argument("--out-dir", help="folder of the files (default: <dataset cache>/continuous_recipe/<env dir>_<E>ep_s<seed>)")
    crec.add_argument("--episodes", type=int, help="episodes per generated dataset (default: OMAR's 1M transitions)")
    crec.add_argument("--seed", type=int, default=0, help="recipe seed (default 0)")
    crec.add_argument("--batch-size", type=int, default=1000, help="episodes simulated in parallel (default 1000)")
    crec.add_argument("--only", help="comma-separated subset of: random,medium_replay,medium,expert")
    crec.add_argument("--noise", type=float, default=0.1,
                      help="Gaussian action noise of the medium / expert behaviours, units of the action half-range (default 0.1)")
    crec.add_argument("--policy-dir", help="folder with medium.pt, expert.pt, policies.json, train_config.json")
    crec.add_argument("--replay", help="replay_return_<q>.h5 dump of a matd3_online run (medium_replay) instead of a re-run")
    crec.add_argument("--cards-dir", help="also write a markdown card per dataset there (<env dir>_<quality>.md)")
    crec.add_argument("--overwrite", action="store_true", help="replace files made with other settings")

    mrec = sub.add_parser("mabcq-recipe", help="MABCQ's per-agent datasets B_i of a continuous task (mabcq.md Sec. 4.1: "
                                               "early training, own medium / own expert against the other level, expert)")
    mrec.add_argument("--env", required=True, help="continuous env with MATD3 policies in lit_omarl/assets/behaviour/<env dir>/")
    mrec.add_argument("--out-dir", help="folder of the files (default: <dataset cache>/mabcq_recipe/<env dir>_<E>ep_s<seed>, "
                                        "or _<T>tr_s<seed> for --transitions)")
    mrec.add_argument("--episodes", type=int, help="episodes per agent's file of a fixed-length task such as HalfCheetah "
                                                   "(default: min(1M transitions, 5 x the replay's episodes))")
    mrec.add_argument("--transitions", type=int, help="transitions per agent's file of a task whose episodes end early "
                                                      "(Hopper, Walker2d, Ant; default: min(1M, 5 x the replay's transitions))")
    mrec.add_argument("--seed", type=int, default=0, help="recipe seed (default 0)")
    mrec.add_argument("--batch-size", type=int, default=1000, help="episodes simulated in parallel (default 1000)")
    mrec.add_argument("--noise", type=float, default=0.1, help="Gaussian action noise of the generated parts (default 0.1)")
    mrec.add_argument("--replay", help="the early-training episodes: a medium_replay dataset of the task (default: the "
                                       "continuous recipe's, made if missing)")
    mrec.add_argument("--policy-dir", help="folder with medium.pt, expert.pt, policies.json")
    mrec.add_argument("--cards-dir", help="also write a markdown card per agent's dataset there")
    mrec.add_argument("--overwrite", action="store_true", help="replace files made with other settings")

    val = sub.add_parser("validate", help="check a dataset file; exit 0 and a one-line summary, or 1 and the defect")
    val.add_argument("file")

    card = sub.add_parser("card", help="print a markdown dataset card")
    card.add_argument("file")
    return p


def data_main(argv: list[str]) -> int:
    ns = _data_parser().parse_args(argv)
    from lit_omarl.data.schema import DatasetError

    try:
        if ns.cmd == "import":
            from lit_omarl.data.importers import import_dataset

            out = import_dataset(ns.format, ns.src, ns.env, ns.out, overwrite=ns.overwrite, env_options=_parse_options(ns.option or []))
            print(f"wrote {out}")
        elif ns.cmd == "generate":
            from lit_omarl.data.generate import generate_dataset

            Path(ns.out).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            generate_dataset(env_id=ns.env, behaviour=ns.behaviour, episodes=ns.episodes, seed=ns.seed, out=ns.out,
                             env_options=_env_options(ns), overwrite=ns.overwrite, quality=ns.quality,
                             batch_size=ns.batch_size)
            print(f"wrote {ns.out}")
        elif ns.cmd == "smax-recipe":
            from lit_omarl.behaviour.recipe import default_out_dir, smax_recipe, write_cards

            only = [q.strip() for q in ns.only.split(",") if q.strip()] if ns.only else None
            out_dir = ns.out_dir or default_out_dir(ns.map, ns.episodes, ns.seed)
            items = smax_recipe(ns.map, out_dir, episodes=ns.episodes, seed=ns.seed, batch_size=ns.batch_size,
                                replay=ns.replay, qualities=only, policy_dir=ns.policy_dir, overwrite=ns.overwrite)
            if ns.cards_dir:
                write_cards(out_dir, ns.cards_dir, qualities=[i.quality for i in items])
            print(f"recipe done: {out_dir} ({sum(i.status != 'skipped' for i in items)} datasets)")
        elif ns.cmd == "continuous-recipe":
            from lit_omarl.behaviour.continuous_recipe import (continuous_recipe, default_episodes, default_out_dir,
                                                               write_cards)

            only = [q.strip() for q in ns.only.split(",") if q.strip()] if ns.only else None
            episodes = ns.episodes if ns.episodes is not None else default_episodes(ns.env)
            out_dir = ns.out_dir or default_out_dir(ns.env, episodes, ns.seed)
            items = continuous_recipe(ns.env, out_dir, episodes=episodes, seed=ns.seed, batch_size=ns.batch_size,
                                      qualities=only, policy_dir=ns.policy_dir, noise=ns.noise, replay=ns.replay,
                                      overwrite=ns.overwrite)
            if ns.cards_dir:
                write_cards(out_dir, ns.cards_dir, qualities=[i.quality for i in items])
            print(f"recipe done: {out_dir} ({sum(i.status != 'skipped' for i in items)} datasets)")
        elif ns.cmd == "mabcq-recipe":
            from lit_omarl.behaviour.mabcq_recipe import mabcq_recipe, write_cards as mabcq_cards

            items = mabcq_recipe(ns.env, ns.out_dir, episodes=ns.episodes, seed=ns.seed, batch_size=ns.batch_size,
                                 noise=ns.noise, replay=ns.replay, policy_dir=ns.policy_dir, overwrite=ns.overwrite,
                                 transitions=ns.transitions)
            out_dir = Path(items[0].file).parent
            if ns.cards_dir:
                mabcq_cards(out_dir, ns.cards_dir)
            print(f"recipe done: {out_dir} ({len(items)} per-agent datasets; data.agent_paths: "
                  f"{json.dumps([i.file for i in items])})")
        elif ns.cmd == "validate":
            from lit_omarl.data.schema import read_dataset

            data = read_dataset(ns.file)
            ret = data.returns()
            print(f"OK {ns.file}: env={data.spec.env_id} episodes={data.n_episodes} transitions={int(data.lengths().sum())} "
                  f"return mean={ret.mean():.4g} std={ret.std():.4g}")
        elif ns.cmd == "card":
            from lit_omarl.data.card import render_card
            from lit_omarl.data.schema import read_dataset

            print(render_card(read_dataset(ns.file)))
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


# -------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "data":
        return data_main(argv[1:])
    if argv and argv[0] == "configs":
        for path in sorted(CONFIG_DIR.rglob("*.yaml")):
            print(path.relative_to(CONFIG_DIR))
        return 0
    bad_yaml = _config_yaml_error(argv)
    if bad_yaml:  # like jsonargparse's own config errors: usage error, exit code 2
        print(f"error: {bad_yaml}", file=sys.stderr)
        raise SystemExit(2)
    from lit_omarl.data.schema import DatasetError
    from lit_omarl.utils.nonfinite import NonFiniteLossError, NonFiniteStateError

    try:
        build_cli(None if from_console else argv)  # LightningCLI reads sys.argv itself when run as a command
    except (DatasetError, NonFiniteLossError, NonFiniteStateError) as err:
        if not from_console:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _config_yaml_error(argv: list[str]) -> str | None:
    """A YAML syntax error in a ``--config FILE`` named with its file (jsonargparse would not name it)."""
    import yaml

    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else arg[len("--config="):] if arg.startswith("--config=") else None
        if path is None or not Path(path).is_file():
            continue
        try:
            yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            return f"{path}: not valid YAML ({' '.join(str(err).split())})"
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
