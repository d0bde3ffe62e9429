"""QMIX trained online on a batched env: the behaviour policies of the SMAX datasets.

CFCQL (cfcql.md App. C.2) builds its StarCraft datasets from QMIX runs:
*medium* / *expert* = episodes of a partially / fully trained QMIX policy,
*medium_replay* = the replay buffer of the run up to the point the policy
reaches medium performance, *mixed* = medium + expert in equal parts. This
module trains that QMIX (Rashid et al. 2018) online on ``smax/<map>`` (any
env of :mod:`lit_omarl.envs` with discrete actions) and writes what those
datasets need:

* checkpoints ``<out>/winrate_<w>.pt`` the first time the greedy test win
  rate reaches each milestone w, ``step_<n>.pt`` every ``checkpoint_every``
  env steps and ``final.pt``; each a plain dict of tensors and numbers
  (``torch.load(path, weights_only=True)`` loads it) with a JSON twin
  ``<name>.json`` recording the test win rate the checkpoint reached;
* ``replay_winrate_<w>.h5``: the replay buffer (schema v1, quality
  ``medium_replay``) when the test win rate first reaches w of
  ``replay_milestones``;
* TensorBoard scalars under ``<out>/tb`` against env steps (train and test
  win rate and return, epsilon, TD loss, speed), and ``<out>/curve.jsonl``
  with one line per test.

Learner (pymarl's QMIX recipe): a GRU agent shared by all agents with agent
id and last action inputs (:class:`lit_omarl.nets.RNNAgent`,
:class:`lit_omarl.nets.AgentInputs`), the monotonic hypernetwork mixer
(:class:`lit_omarl.nets.QMixer`), epsilon-greedy over available actions with
epsilon annealed linearly from 1.0 to 0.05 over 50k env steps, an episode
replay buffer of 5000 episodes, batches of 32 episodes, double-Q targets
``G_t`` (TD(lambda) by :func:`lit_omarl.algos.losses.td_lambda_targets`;
lambda 0 = one-step), loss mean((Q_tot - G)^2) over valid steps, gradient
clipping at 10, hard target copies every 200 episodes, lr 5e-4.

Deviations from pymarl's ``qmix.yaml`` (each switchable):
* ``optimizer="adam"`` and ``td_lambda=0.6`` by default (pymarl2's tuned
  QMIX, which learns faster); pymarl1 is ``--optimizer rmsprop --td-lambda 0``.
* B episodes run in parallel (no auto-reset: a batch ends when its longest
  episode does); ``updates_per_episode`` (1, as pymarl's episode runner)
  updates follow each batch.
* The test win rate is measured on ``eval_episodes`` greedy episodes with
  fixed seeds every ``eval_every`` env steps (pymarl: 32 every 10k).
* ``--init-from CKPT`` continues an earlier run in a new folder (its
  ``config.json`` records the checkpoint; ``lit_omarl.behaviour.ship`` follows
  the chain): the weights and counters continue, the replay buffer, Adam's
  moments and the RNG streams start afresh, so a continued run is not the
  run an uninterrupted one would have been.

Command::

    python -m lit_omarl.behaviour.qmix_online --map 2s3z --env-steps 2000000 --out runs/qmix_2s3z --seed 0

A ``medium_replay`` run stops as soon as its dump exists: ``--replay-milestones W
--stop-at-win-rate W`` (W = the medium policy's win rate; docs/SMAX.md).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lit_omarl.algos.losses import ensure_some_available, masked_mean, td_lambda_targets
from lit_omarl.behaviour._online_common import (DiscreteRun, OnlineConfigBase, add_run_args, config_dict, floats,
                                                load_continuation, run_and_print, scalars, write_checkpoint)
from lit_omarl.data.generate import Behaviour, rollout
from lit_omarl.nets import AgentInputs, QMixer, RNNAgent
from lit_omarl.spec import EnvSpec

CHECKPOINT_FORMAT = "lit_omarl.qmix_online/1"
Batch = dict[str, torch.Tensor]


# ------------------------------------------------------------------ config
@dataclass
class QMIXOnlineConfig(OnlineConfigBase):
    """Hyper-parameters of an online QMIX run (defaults: pymarl's QMIX, see module docstring).

    Args:
        env_id: env to train on, e.g. ``smax/2s3z``.
        env_options: options of ``lit_omarl.envs.make``.
        env_steps: stop after this many env steps (summed over the parallel episodes).
        max_minutes: also stop after this wall-clock time (<= 0: no limit).
        seed: seed of the networks, exploration, the env and the tests.
        num_envs: episodes run in parallel.
        gamma: discount factor.
        lr: learning rate.
        optimizer: "adam" or "rmsprop" (alpha 0.99, eps 1e-5 as pymarl).
        td_lambda: lambda of the TD(lambda) targets (0 = one-step targets).
        double_q: greedy action of the targets from the online network.
        batch_size: episodes per update.
        buffer_size: episodes kept in the replay buffer (FIFO).
        updates_per_episode: updates per collected episode (after each batch).
        target_update_episodes: collected episodes between hard target copies.
        epsilon_start, epsilon_finish, epsilon_anneal_steps: linear epsilon schedule over env steps.
        grad_clip_norm: gradient-norm clipping.
        agent_hidden_dim, mixer_embed_dim, hypernet_embed_dim: network sizes.
        eval_every: env steps between greedy tests.
        eval_episodes: episodes per test.
        checkpoint_every: env steps between periodic checkpoints (<= 0: none).
        milestones: test win rates that trigger a checkpoint the first time they are reached.
        replay_milestones: test win rates that trigger a dump of the replay buffer.
        stop_at_win_rate: stop after the first test whose greedy win rate reaches this value,
            once every replay milestone up to it has been dumped (<= 0: never; e.g. the same
            value as ``replay_milestones`` ends a ``medium_replay`` run as soon as its dump exists).
        threads: torch intra-op threads.
        init_from: continue from this checkpoint of an earlier run (its agent and mixer, its env-step,
            episode and update counts, hence the epsilon schedule and the curve's x axis); the replay
            buffer and the optimizer state start empty. "" = a fresh run.
    """

    env_id: str = "smax/2s3z"  # (env_options, env_steps, max_minutes, seed: OnlineConfigBase)
    num_envs: int = 8
    gamma: float = 0.99
    lr: float = 5e-4
    optimizer: Literal["adam", "rmsprop"] = "adam"
    td_lambda: float = 0.6
    double_q: bool = True
    batch_size: int = 32
    buffer_size: int = 5000
    updates_per_episode: float = 1.0
    target_update_episodes: int = 200
    epsilon_start: float = 1.0
    epsilon_finish: float = 0.05
    epsilon_anneal_steps: int = 50_000
    grad_clip_norm: float = 10.0
    agent_hidden_dim: int = 64
    mixer_embed_dim: int = 32
    hypernet_embed_dim: int = 64
    eval_every: int = 10_000
    eval_episodes: int = 32
    checkpoint_every: int = 250_000
    milestones: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    replay_milestones: tuple[float, ...] = (0.3, 0.5)
    stop_at_win_rate: float = 0.0
    threads: int = 1
    init_from: str = ""

    def epsilon(self, env_steps: int) -> float:
        frac = min(1.0, env_steps / max(1, self.epsilon_anneal_steps))
        return self.epsilon_start + frac * (self.epsilon_finish - self.epsilon_start)


# ------------------------------------------------------------------ policy
class QMIXPolicy(nn.Module):
    """The decentralised part of QMIX: a shared GRU agent and greedy action selection.

    ``act(obs, avail, hidden=None, deterministic=True)`` follows the contract
    of :mod:`lit_omarl.eval.rollout`: greedy over available actions, or
    epsilon-greedy with ``self.epsilon`` when ``deterministic`` is False.
    """

    def __init__(self, spec: EnvSpec | dict, hidden_dim: int = 64, epsilon: float = 0.0) -> None:
        super().__init__()
        self.spec = EnvSpec.from_dict(spec)
        if not self.spec.discrete:
            raise ValueError(f"QMIX needs discrete actions; {self.spec.env_id!r} is continuous")
        self.inputs = AgentInputs(self.spec.obs_dim, self.spec.n_agents, self.spec.n_actions)
        self.agent = RNNAgent(self.inputs.dim, self.spec.n_actions, hidden_dim)
        self.epsilon = float(epsilon)

    def q_step(self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Qs [B, N, A] with unavailable actions at -inf, available mask and the GRU state."""
        obs = torch.as_tensor(obs, dtype=torch.float32)
        avail = ensure_some_available(torch.as_tensor(avail).bool())
        if hidden is None:
            hidden = {"h": None, "last_action": obs.new_zeros(*obs.shape[:2], self.spec.n_actions)}
        q, h = self.agent.step(self.inputs.build(obs, hidden["last_action"]), hidden["h"])
        return q.masked_fill(~avail, -math.inf), avail, {"h": h}

    @torch.no_grad()
    def act_epsilon(self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any, epsilon: float,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Epsilon-greedy: each agent takes a uniform available action with probability epsilon."""
        q, avail, hidden = self.q_step(obs, avail, hidden)
        actions = q.argmax(-1)
        if epsilon > 0:
            explore = torch.rand(actions.shape, generator=generator) < epsilon
            uniform = torch.multinomial(avail.reshape(-1, avail.shape[-1]).float(), 1, generator=generator)
            actions = torch.where(explore, uniform.reshape(actions.shape), actions)
        hidden["last_action"] = F.one_hot(actions, self.spec.n_actions).float()
        return actions, hidden

    def act(self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any = None,
            deterministic: bool = True) -> tuple[torch.Tensor, dict]:
        return self.act_epsilon(obs, avail, hidden, 0.0 if deterministic else self.epsilon)

    @classmethod
    def load(cls, path: str | Path, epsilon: float = 0.0) -> "QMIXPolicy":
        """The policy of a checkpoint written by :func:`save_checkpoint`."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a qmix_online checkpoint (format {ckpt.get('format')!r})")
        policy = cls(ckpt["spec"], int(ckpt["config"]["agent_hidden_dim"]), epsilon)
        policy.agent.load_state_dict(ckpt["agent"])
        return policy.eval()


# ------------------------------------------------------------------ learner
class QMIXLearner(nn.Module):
    """QMIX agent + mixer, their targets and the optimizer; ``update(batch)`` is one gradient step.

    ``batch`` has the keys of docs/CONTRACTS.md's episode batches: obs [B, L+1, N, O],
    state [B, L+1, S], actions [B, L, N], avail_actions bool [B, L+1, N, A],
    reward / terminated / mask [B, L].
    """

    def __init__(self, spec: EnvSpec | dict, config: QMIXOnlineConfig) -> None:
        super().__init__()
        self.config = config
        self.policy = QMIXPolicy(spec, config.agent_hidden_dim)
        s = self.policy.spec
        self.mixer = QMixer(s.n_agents, s.state_dim, config.mixer_embed_dim, config.hypernet_embed_dim)
        self.target_agent = RNNAgent(self.policy.inputs.dim, s.n_actions, config.agent_hidden_dim).requires_grad_(False)
        self.target_mixer = QMixer(s.n_agents, s.state_dim, config.mixer_embed_dim,
                                   config.hypernet_embed_dim).requires_grad_(False)
        self.update_targets()
        params = list(self.policy.parameters()) + list(self.mixer.parameters())
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr)
        elif config.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(params, lr=config.lr, alpha=0.99, eps=1e-5)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {config.optimizer!r}")

    def update_targets(self) -> None:
        self.target_agent.load_state_dict(self.policy.agent.state_dict())
        self.target_mixer.load_state_dict(self.mixer.state_dict())

    def td_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, mask = self.config, batch["mask"]
        avail = ensure_some_available(batch["avail_actions"].bool())
        inputs = self.policy.inputs.sequence(batch["obs"], batch["actions"])  # [B, L+1, N, in]
        q_all, _ = self.policy.agent.forward_seq(inputs)
        with torch.no_grad():
            target_q, _ = self.target_agent.forward_seq(inputs)
            chooser = q_all.detach() if cfg.double_q else target_q
            greedy = chooser.masked_fill(~avail, -math.inf).argmax(-1, keepdim=True)
            target_tot = self.target_mixer(target_q.gather(-1, greedy).squeeze(-1), batch["state"])  # [B, L+1]
            targets = td_lambda_targets(batch["reward"], batch["terminated"], mask, target_tot, cfg.gamma, cfg.td_lambda)
        chosen = q_all[:, :-1].gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
        q_tot = self.mixer(chosen, batch["state"][:, :-1])
        td = q_tot - targets
        loss = masked_mean(td.pow(2), mask)
        return loss, {"td_loss": loss.detach(), "q_tot_mean": masked_mean(q_tot.detach(), mask),
                      "target_mean": masked_mean(targets, mask)}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss, metrics = self.td_loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        metrics["grad_norm"] = nn.utils.clip_grad_norm_(
            list(self.policy.parameters()) + list(self.mixer.parameters()), self.config.grad_clip_norm)
        self.optimizer.step()
        return metrics


# ------------------------------------------------------------------ replay buffer
class EpisodeBuffer:
    """FIFO buffer of whole episodes, each stored trimmed to its length (memory ~ steps, not T)."""

    KEYS = ("obs", "state", "avail_actions", "actions", "reward", "terminated")

    def __init__(self, capacity: int, spec: EnvSpec) -> None:
        self.capacity, self.spec = int(capacity), spec
        self.episodes: list[dict[str, torch.Tensor]] = []
        self.next = 0  # slot overwritten next once full
        self.added = 0

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, batch: Batch) -> None:
        """Episodes of a padded rollout batch (``lit_omarl.data.generate`` layout)."""
        lengths = batch["filled"].sum(1).tolist()
        for b, n in enumerate(lengths):
            ep = {k: batch[k][b, : n + 1 if k in ("obs", "state", "avail_actions") else n].clone() for k in self.KEYS}
            ep["won"] = batch["won"][b].clone() if "won" in batch else torch.tensor(False)
            if len(self.episodes) < self.capacity:
                self.episodes.append(ep)
            else:
                self.episodes[self.next] = ep
                self.next = (self.next + 1) % self.capacity
            self.added += 1

    def _ordered(self) -> list[dict[str, torch.Tensor]]:
        return self.episodes[self.next:] + self.episodes[: self.next]  # oldest first

    def _stack(self, episodes: list[dict[str, torch.Tensor]], steps: int) -> Batch:
        n, s = len(episodes), self.spec
        out = {
            "obs": torch.zeros(n, steps + 1, s.n_agents, s.obs_dim),
            "state": torch.zeros(n, steps + 1, s.state_dim),
            "avail_actions": torch.zeros(n, steps + 1, s.n_agents, s.n_actions, dtype=torch.bool),
            "actions": torch.zeros(n, steps, s.n_agents, dtype=torch.long),
            "reward": torch.zeros(n, steps),
            "terminated": torch.zeros(n, steps),
            "mask": torch.zeros(n, steps),
        }
        for i, ep in enumerate(episodes):
            length = ep["reward"].shape[0]
            for k in self.KEYS:
                out[k][i, : ep[k].shape[0]] = ep[k]
            out["mask"][i, :length] = 1.0
        return out

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(0, len(self.episodes), (n,), generator=generator).tolist()
        episodes = [self.episodes[i] for i in idx]
        return self._stack(episodes, max(ep["reward"].shape[0] for ep in episodes))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """All stored episodes, oldest first, as schema-v1 arrays padded to ``spec.episode_limit``."""
        episodes = self._ordered()
        b = self._stack(episodes, self.spec.episode_limit)
        return {
            "obs": b["obs"].numpy(), "state": b["state"].numpy(), "actions": b["actions"].numpy(),
            "avail_actions": b["avail_actions"].numpy().astype(np.uint8), "reward": b["reward"].numpy(),
            "terminated": b["terminated"].numpy().astype(np.uint8), "filled": b["mask"].numpy().astype(np.uint8),
            "won": np.array([bool(ep["won"]) for ep in episodes], dtype=np.uint8),
        }


class _Explorer(Behaviour):
    """Epsilon-greedy QMIX as a generation behaviour (drives ``generate.rollout``)."""

    def __init__(self, policy: QMIXPolicy) -> None:
        super().__init__("qmix epsilon-greedy", policy.spec)
        self.policy, self.epsilon, self.hidden = policy, 1.0, None

    def begin(self, ts, episode_index, generator) -> None:
        self.hidden = None

    def act(self, ts, generator):
        actions, self.hidden = self.policy.act_epsilon(ts.obs, ts.avail, self.hidden, self.epsilon, generator)
        return actions, None


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, learner: QMIXLearner, meta: dict[str, Any]) -> Path:
    """``path`` (tensors + numbers, loadable with weights_only=True) and ``path.json`` (meta)."""
    payload = {"format": CHECKPOINT_FORMAT, "spec": learner.policy.spec.to_dict(), "config": config_dict(learner.config),
               "agent": learner.policy.agent.state_dict(), "mixer": learner.mixer.state_dict(), **scalars(meta)}
    return write_checkpoint(path, payload, meta)


def _continue_from(learner: QMIXLearner, path: Path) -> tuple[int, int, int, float]:
    """Load a checkpoint's agent and mixer into ``learner`` (targets copied); its env steps, episodes,
    updates and minutes. Errors name the file and what does not match the run's config."""
    ckpt = load_continuation(path, CHECKPOINT_FORMAT, "qmix_online", learner.policy.spec.to_dict(), learner.config,
                             ("agent_hidden_dim", "mixer_embed_dim", "hypernet_embed_dim"))
    learner.policy.agent.load_state_dict(ckpt["agent"])
    learner.mixer.load_state_dict(ckpt["mixer"])
    learner.update_targets()
    return int(ckpt["env_steps"]), int(ckpt["episodes"]), int(ckpt["updates"]), float(ckpt.get("minutes", 0.0))


# ------------------------------------------------------------------ training
def train_qmix(config: QMIXOnlineConfig, out: str | Path, *, log_every: int = 10, verbose: bool = False) -> dict[str, Any]:
    """Train QMIX online (module docstring); returns a summary (also written to ``out/summary.json``).

    ``log_every``: rollouts between TensorBoard training scalars; ``verbose``: print each test as a JSON line.
    """
    run = DiscreteRun(config, out, "qmix_online", verbose=verbose,
                      test_extra=lambda: {"epsilon": config.epsilon(run.steps)})  # same compiled core for tests
    env, writer, gen = run.env, run.writer, run.gen
    learner = QMIXLearner(run.spec, config)
    explorer = _Explorer(learner.policy)
    buffer = EpisodeBuffer(config.buffer_size, run.spec)
    last_target = 0
    if config.init_from:
        run.continue_at(*_continue_from(learner, Path(config.init_from)))
        last_target = run.episodes
    run.begin(learner.policy, buffer, lambda path, meta: save_checkpoint(path, learner, meta))
    update_credit, rollouts = 0.0, 0
    recent: dict[str, list[float]] = {"won": [], "return": []}
    metrics: dict[str, torch.Tensor] = {}
    while run.keep_going():
        explorer.epsilon = config.epsilon(run.steps)
        with torch.no_grad():
            batch = rollout(env, explorer, torch.arange(run.episodes, run.episodes + env.num_envs), gen)
        buffer.add(batch)
        run.steps += int(batch["filled"].sum())
        run.episodes += env.num_envs
        rollouts += 1
        won = batch.get("won", torch.zeros(env.num_envs, dtype=torch.bool)).float()
        recent["won"] += won.tolist()
        recent["return"] += batch["reward"].sum(1).tolist()

        if len(buffer) >= config.batch_size:
            update_credit += config.updates_per_episode * env.num_envs
            while update_credit >= 1.0:
                metrics = learner.update(buffer.sample(config.batch_size, gen))
                update_credit -= 1.0
                run.updates += 1
            if run.episodes - last_target >= config.target_update_episodes:
                learner.update_targets()
                last_target = run.episodes

        if rollouts % log_every == 0:
            steps = run.steps
            writer.add_scalar("train/win_rate", float(np.mean(recent["won"])), steps)
            writer.add_scalar("train/return", float(np.mean(recent["return"])), steps)
            writer.add_scalar("train/epsilon", explorer.epsilon, steps)
            writer.add_scalar("perf/env_steps_per_sec", steps / max(time.perf_counter() - run.start, 1e-9), steps)
            for name, value in metrics.items():
                writer.add_scalar(f"train/{name}", float(value), steps)
            recent = {"won": [], "return": []}
    return run.finish()


# ------------------------------------------------------------------ command line
_floats = floats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    d = QMIXOnlineConfig()
    p = argparse.ArgumentParser(prog="python -m lit_omarl.behaviour.qmix_online", description=__doc__.split("\n\n")[0])
    p.add_argument("--map", default="2s3z", help="SMAX map (env smax/<map>); or --env for any env id")
    p.add_argument("--env", default=None, help="env id (overrides --map)")
    add_run_args(p, d)
    p.add_argument("--num-envs", type=int, default=d.num_envs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--optimizer", choices=("adam", "rmsprop"), default=d.optimizer)
    p.add_argument("--td-lambda", type=float, default=d.td_lambda)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--buffer-size", type=int, default=d.buffer_size)
    p.add_argument("--updates-per-episode", type=float, default=d.updates_per_episode)
    p.add_argument("--target-update-episodes", type=int, default=d.target_update_episodes)
    p.add_argument("--epsilon-anneal-steps", type=int, default=d.epsilon_anneal_steps)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--milestones", type=_floats, default=d.milestones, help="comma-separated test win rates")
    p.add_argument("--replay-milestones", type=_floats, default=d.replay_milestones)
    p.add_argument("--stop-at-win-rate", type=float, default=d.stop_at_win_rate,
                   help="stop after the first test reaching this greedy win rate (once the replay milestones up to it "
                        "are dumped); <= 0: run to --env-steps / --max-minutes")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--init-from", default=d.init_from,
                   help="continue from this checkpoint of an earlier run (weights and counters; fresh replay buffer)")
    a = p.parse_args(argv)
    config = QMIXOnlineConfig(
        env_id=a.env or f"smax/{a.map}", env_steps=a.env_steps, max_minutes=a.max_minutes, seed=a.seed,
        num_envs=a.num_envs, lr=a.lr, optimizer=a.optimizer, td_lambda=a.td_lambda, batch_size=a.batch_size,
        buffer_size=a.buffer_size, updates_per_episode=a.updates_per_episode,
        target_update_episodes=a.target_update_episodes, epsilon_anneal_steps=a.epsilon_anneal_steps,
        eval_every=a.eval_every, eval_episodes=a.eval_episodes, checkpoint_every=a.checkpoint_every,
        milestones=a.milestones, replay_milestones=a.replay_milestones, stop_at_win_rate=a.stop_at_win_rate,
        threads=a.threads, init_from=str(Path(a.init_from).resolve()) if a.init_from else "")
    return run_and_print(train_qmix, config, a.out)


if __name__ == "__main__":
    main()
