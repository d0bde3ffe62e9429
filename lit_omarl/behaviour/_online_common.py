"""What the online behaviour trainers (:mod:`lit_omarl.behaviour.qmix_online`,
:mod:`lit_omarl.behaviour.matd3_online`) share: the env / budget / seed part
of their configs, seeding, the test-and-checkpoint schedule, the training
curve, checkpoint files and the command-line basics."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


@dataclass
class OnlineConfigBase:
    """The first fields of every online config (their order is that of ``config.json``); subclasses
    redeclare ``env_id`` and ``num_envs`` with their own defaults (dataclasses keep the position)."""

    env_id: str = ""
    env_options: dict[str, Any] = field(default_factory=dict)
    env_steps: int = 2_000_000
    max_minutes: float = 0.0
    seed: int = 0
    num_envs: int = 1


def config_dict(config: Any) -> dict[str, Any]:
    """``asdict(config)`` with the milestone tuples as lists (JSON / weights_only friendly)."""
    d = asdict(config)
    d["milestones"], d["replay_milestones"] = list(d["milestones"]), list(d["replay_milestones"])
    return d


def seeded(seed: int) -> tuple[torch.Generator, int, int]:
    """Seed torch; the run's generator and the seeds of the training env and the test env."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    env_seed, test_seed = np.random.SeedSequence(seed).generate_state(2).tolist()
    return gen, env_seed, test_seed


def out_of_budget(config: Any, steps: int, start: float) -> bool:
    """``env_steps`` reached or ``max_minutes`` (> 0) of wall time since ``start`` passed."""
    over_time = config.max_minutes > 0 and time.perf_counter() - start > 60 * config.max_minutes
    return steps >= config.env_steps or over_time


class EvalSchedule:
    """Greedy tests every ``eval_every`` env steps (the first at step 0) and periodic checkpoints every
    ``checkpoint_every`` (<= 0: none; none at step 0); a checkpoint is always preceded by a test."""

    def __init__(self, eval_every: int, checkpoint_every: int) -> None:
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.next_eval = 0
        self.next_ckpt = checkpoint_every if checkpoint_every > 0 else math.inf

    def start_at(self, steps: int) -> None:
        """A run continued at ``steps``: test there first, then keep the checkpoint grid."""
        self.next_eval = steps
        if self.checkpoint_every > 0:
            self.next_ckpt = (steps // self.checkpoint_every + 1) * self.checkpoint_every

    def tick(self, steps: int, test: Callable[[], dict[str, Any]],
             checkpoint: Callable[[dict[str, Any]], Any]) -> dict[str, Any] | None:
        """Run what is due at ``steps``: ``test()`` (its meta is returned) then ``checkpoint(meta)``; None if nothing."""
        due_eval, due_ckpt = steps >= self.next_eval, steps >= self.next_ckpt
        if not (due_eval or due_ckpt):
            return None
        meta = test()
        while self.next_eval <= steps:
            self.next_eval += self.eval_every
        if due_ckpt:
            checkpoint(meta)
            while self.next_ckpt <= steps:
                self.next_ckpt += self.checkpoint_every
        return meta


def record_test(curve: list[dict[str, Any]], path: Path, point: dict[str, Any], verbose: bool) -> None:
    """Append a test point to ``curve`` and to the JSON-lines file ``path`` (printed too when ``verbose``)."""
    curve.append(point)
    with path.open("a") as f:
        f.write(json.dumps(point) + "\n")
    if verbose:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in point.items()}), flush=True)


def scalars(meta: dict[str, Any]) -> dict[str, Any]:
    """The plain numbers and strings of ``meta`` (what a weights_only checkpoint may hold)."""
    return {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))}


def write_checkpoint(path: Path, payload: dict[str, Any], meta: dict[str, Any]) -> Path:
    """``torch.save(payload)`` to ``path`` (atomically) and its JSON twin ``path.json`` with ``meta``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"checkpoint": path.name, **meta}, indent=2, sort_keys=True) + "\n")
    return path


def greedy_test(policy: Any, env: Any, episodes: int, seed: int) -> dict[str, float]:
    """Greedy win rate, return and length over ``episodes`` episodes (batches seeded seed, seed + 1, ...)."""
    from lit_omarl.eval.rollout import run_episodes

    outs = []
    for k in range(math.ceil(episodes / env.num_envs)):
        outs.append(run_episodes(policy, env, deterministic=True, seed=seed + k))
    ret = torch.cat([o["episode_return"] for o in outs])[:episodes]
    won = torch.cat([o.get("won", torch.zeros(env.num_envs)) for o in outs])[:episodes]
    length = torch.cat([o["episode_length"] for o in outs])[:episodes]
    return {"win_rate": float(won.mean()), "return": float(ret.mean()), "episode_length": float(length.mean())}


def load_continuation(path: Path, fmt: str, trainer: str, spec: dict[str, Any], config: Any,
                      size_keys: tuple[str, ...]) -> dict[str, Any]:
    """The checkpoint ``path`` a run continues (``--init-from``), checked against the new run: its format,
    env spec and network sizes (``size_keys`` of the two configs). Errors name the file and the mismatch."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"--init-from {path}: cannot read the checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ValueError(f"--init-from {path}: not a {trainer} checkpoint")
    have = ckpt["spec"]
    if have != spec:
        raise ValueError(f"--init-from {path}: trained on {have.get('env_id')!r} with another spec than this run's "
                         f"{spec.get('env_id')!r}")
    diff = {k: (ckpt["config"].get(k), getattr(config, k)) for k in size_keys if ckpt["config"].get(k) != getattr(config, k)}
    if diff:
        raise ValueError(f"--init-from {path}: network sizes differ (checkpoint, this run): {diff}")
    return ckpt


class MilestoneRecorder:
    """The greedy tests of a discrete online trainer (qmix_online, mappo_online) and what follows each:
    the curve (``curve``, ``<out>/curve.jsonl``, TensorBoard), a checkpoint ``winrate_<m>.pt`` the first
    time the test win rate reaches each of ``config.milestones``, a dump ``replay_winrate_<m>.h5`` of
    ``buffer`` (schema v1, quality ``medium_replay``) the first time it reaches each of
    ``config.replay_milestones``, and the ``stop_at_win_rate`` rule.

    ``save(path, meta)`` writes a checkpoint; ``source`` names the trainer in the dumps' attributes.
    """

    def __init__(self, out: Path, config: Any, spec: Any, buffer: Any, save: Callable[[Path, dict[str, Any]], Any],
                 source: str) -> None:
        self.out, self.config, self.spec, self.buffer, self.save, self.source = out, config, spec, buffer, save, source
        self.curve: list[dict[str, Any]] = []
        self.reached: set[float] = set()
        self.dumped: set[float] = set()
        #: replay milestones whose dump could not be written (e.g. a full disk): message per milestone;
        #: training goes on (the checkpoints are the run's main product) and the summary lists them
        self.dump_errors: dict[float, str] = {}
        self.stop_at = float(config.stop_at_win_rate)
        self.pending_dumps = {m for m in config.replay_milestones if m <= self.stop_at}

    def test(self, policy: Any, env: Any, seed: int, writer: Any, counters: dict[str, Any],
             extra: dict[str, Any] | None = None, verbose: bool = False) -> dict[str, Any]:
        """Test ``policy`` greedily (:func:`greedy_test`), record the point (``counters``: env_steps,
        episodes, updates, minutes) and its milestones; the checkpoint metadata (+ ``extra``)."""
        result = greedy_test(policy, env, self.config.eval_episodes, seed)
        point = {**counters, **result}
        record_test(self.curve, self.out / "curve.jsonl", point, verbose)
        for name in ("win_rate", "return", "episode_length"):
            writer.add_scalar(f"test/{name}", result[name], point["env_steps"])
        meta = {**point, "env_id": self.spec.env_id, "seed": self.config.seed,
                "eval_episodes": self.config.eval_episodes, **(extra or {})}
        self.after_test(result, meta, point["env_steps"])
        return meta

    @property
    def best_win_rate(self) -> float:
        return max((p["win_rate"] for p in self.curve), default=-1.0)

    def after_test(self, result: dict[str, float], meta: dict[str, Any], steps: int) -> None:
        from lit_omarl.data.schema import write_dataset

        for m in sorted(self.config.milestones):
            if result["win_rate"] >= m and m not in self.reached:
                self.reached.add(m)
                self.save(self.out / f"winrate_{m:.2f}.pt", {**meta, "kind": "milestone", "milestone": m})
        for m in sorted(self.config.replay_milestones):
            if result["win_rate"] < m or m in self.dumped or m in self.dump_errors or not len(self.buffer):
                continue  # (an empty buffer waits for the next test)
            attrs = {"spec": self.spec, "quality": "medium_replay", "source": "generated", "seed": self.config.seed,
                     "behaviour": f"{self.source} replay buffer until test win rate {m:.2f}",
                     "generator": f"lit_omarl {self.source}", "env_steps": steps, "win_rate": result["win_rate"],
                     "episodes_collected": self.buffer.added}
            path = self.out / f"replay_winrate_{m:.2f}.h5"
            try:
                write_dataset(path, self.buffer.to_arrays(), attrs, overwrite=True)
            except OSError as err:
                self.dump_errors[m] = f"{path}: {err}"
                print(f"warning: replay dump at win rate {m:.2f} not written ({path}: {err}); training goes on",
                      file=sys.stderr, flush=True)
            else:
                self.dumped.add(m)

    def should_stop(self, win_rate: float) -> bool:
        """The last test reached ``stop_at_win_rate`` (> 0) and every replay milestone up to it is dumped."""
        return self.stop_at > 0 and win_rate >= self.stop_at and self.pending_dumps <= self.dumped | set(self.dump_errors)


#: a file of this name in a run's folder asks the run to finish (see :class:`DiscreteRun`)
STOP_FILE = "STOP"


class DiscreteRun:
    """The frame the discrete online trainers (qmix_online, mappo_online) share around their own
    collect-and-update step: the output folder (never reused), seeding, the training and test envs,
    TensorBoard, ``config.json``, the counters (``steps``, ``episodes``, ``updates``; a continuation sets
    them with :meth:`continue_at`), the test / checkpoint schedule and stop rules (:meth:`keep_going`),
    and the final test, checkpoint and ``summary.json`` (:meth:`finish`).

    A file named ``STOP`` in the output folder (``touch RUN/STOP``) ends the run at its next iteration
    the way its budget would: final test, ``final.pt`` and ``summary.json`` (``"stopped_by_request"``).

    ``test_extra()`` adds trainer-specific fields to every test's checkpoint metadata.
    """

    def __init__(self, config: Any, out: str | Path, trainer: str, *, test_num_envs: int | None = None,
                 config_extra: dict[str, Any] | None = None, verbose: bool = False,
                 test_extra: Callable[[], dict[str, Any]] = dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from lit_omarl.envs import make

        out = Path(out)
        if (out / "config.json").exists():
            raise FileExistsError(f"{out}: already holds a {trainer} run; choose a new --out "
                                  "(to go on from one of its checkpoints: --init-from CKPT)")
        out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(max(1, int(config.threads)))
        self.gen, env_seed, self.test_seed = seeded(config.seed)
        self.env = make(config.env_id, num_envs=config.num_envs, seed=env_seed, **config.env_options)
        self.test_env = make(config.env_id, num_envs=test_num_envs or config.num_envs, seed=self.test_seed,
                             **config.env_options)
        self.spec = self.env.spec
        self.writer = SummaryWriter(str(out / "tb"))
        (out / "config.json").write_text(json.dumps({**asdict(config), **(config_extra or {})}, indent=2) + "\n")
        self.config, self.out, self.trainer, self.verbose, self.test_extra = config, out, trainer, verbose, test_extra
        self.steps = self.episodes = self.updates = 0
        self.minutes_before = 0.0
        self.schedule = EvalSchedule(config.eval_every, config.checkpoint_every)
        self.meta: dict[str, Any] = {}
        self.stopped_early = self.stopped_by_request = False

    def continue_at(self, steps: int, episodes: int, updates: int, minutes: float) -> None:
        """The counters of the checkpoint a continued run starts from (tests resume there)."""
        self.steps, self.episodes, self.updates, self.minutes_before = steps, episodes, updates, minutes
        self.schedule.start_at(steps)

    def begin(self, policy: Any, buffer: Any, save: Callable[[Path, dict[str, Any]], Any]) -> None:
        """Start the clock; ``save(path, meta)`` writes a checkpoint of the learner, ``buffer`` feeds the dumps."""
        self.policy, self.save = policy, save
        self.recorder = MilestoneRecorder(self.out, self.config, self.spec, buffer, save, self.trainer)
        self.start = time.perf_counter()

    @property
    def minutes(self) -> float:
        return self.minutes_before + (time.perf_counter() - self.start) / 60

    def test(self) -> dict[str, Any]:
        counters = {"env_steps": self.steps, "episodes": self.episodes, "updates": self.updates, "minutes": self.minutes}
        return self.recorder.test(self.policy, self.test_env, self.test_seed, self.writer, counters, self.test_extra(),
                                  self.verbose)

    def keep_going(self) -> bool:
        """Test / checkpoint when due; False once the stop-at-win-rate rule or the budget ends the run."""
        tested = self.schedule.tick(self.steps, self.test, lambda m: self.save(self.out / f"step_{self.steps}.pt",
                                                                               {**m, "kind": "periodic"}))
        if tested is not None:
            self.meta = tested
            if self.recorder.should_stop(self.recorder.curve[-1]["win_rate"]):
                self.stopped_early = True
                return False
        if (self.out / STOP_FILE).exists():
            self.stopped_by_request = True
            return False
        return not out_of_budget(self.config, self.steps, self.start)

    def finish(self, summary_extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A last test (unless one ran at this step), ``final.pt`` and ``summary.json``; the summary."""
        curve = self.recorder.curve
        if curve[-1]["env_steps"] != self.steps:
            self.meta = self.test()
        self.save(self.out / "final.pt", {**self.meta, "kind": "final"})
        self.writer.close()
        rec = self.recorder
        summary = {"env_id": self.spec.env_id, **(summary_extra or {}), "env_steps": self.steps,
                   "episodes": self.episodes, "updates": self.updates, "minutes": self.minutes,
                   "init_from": self.config.init_from, "final_win_rate": curve[-1]["win_rate"],
                   "best_win_rate": rec.best_win_rate, "milestones_reached": sorted(rec.reached),
                   "replay_dumps": [f"replay_winrate_{m:.2f}.h5" for m in sorted(rec.dumped)],
                   "replay_dump_errors": {f"{m:.2f}": e for m, e in sorted(rec.dump_errors.items())},
                   "stopped_at_win_rate": self.stopped_early, "stopped_by_request": self.stopped_by_request,
                   "curve": curve}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


# ------------------------------------------------------------------ command line
def floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def add_run_args(p: argparse.ArgumentParser, d: Any) -> None:
    """``--env-steps``, ``--out``, ``--seed``, ``--max-minutes`` (defaults from the config ``d``)."""
    p.add_argument("--env-steps", type=int, default=d.env_steps)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-minutes", type=float, default=d.max_minutes)


def run_and_print(train: Callable[..., dict[str, Any]], config: Any, out: str | Path) -> dict[str, Any]:
    """Train with test lines printed, then print the summary without its curve."""
    summary = train(config, out, verbose=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}))
    return summary
