"""MATD3 trained online on a batched continuous env: the behaviour policies of the MPE / MaMuJoCo datasets.

OMAR (Pan et al. 2022, Sec. 5.1) builds its MPE datasets from MATD3 runs:
*random* = a random policy, *medium* / *expert* = episodes of a partially /
fully trained MATD3 policy, *medium_replay* = the replay buffer until the
policy reaches the medium level; CFCQL (cfcql.md App. C.1) uses those
datasets. This module trains that MATD3 online on ``mpe/<task>`` or
``mamujoco/<Robot>-<conf>`` (any continuous env of :mod:`lit_omarl.envs`) and
writes what the recipe (:mod:`lit_omarl.behaviour.continuous_recipe`) needs:

* checkpoints ``<out>/step_<n>.pt`` every ``checkpoint_every`` env steps,
  ``final.pt``, and ``return_<q>.pt`` the first time the greedy test return
  reaches each of ``milestones``; each a plain dict of tensors and numbers
  (``torch.load(path, weights_only=True)``) with a JSON twin ``<name>.json``
  (test return at save time, env steps, updates);
* ``replay_return_<q>.h5``: the replay buffer (schema v1, quality
  ``medium_replay``, completed episodes in collection order) the first time
  the test return reaches q of ``replay_milestones``;
* ``curve.jsonl`` (one line per greedy test) and TensorBoard scalars under
  ``<out>/tb`` against env steps (test return, training return, losses, speed).

Learner (MATD3 = TD3 of Fujimoto et al. 2018 with MADDPG's centralised
critics, Lowe et al. 2017):

* actors: one deterministic MLP per agent (no sharing; 2 hidden ReLU layers,
  :class:`lit_omarl.nets.continuous.PerAgentMLP`) on the agent's local
  observation, tanh-squashed into the env's ``[action_low, action_high]``;
  padded action entries (MPE world leader) are zeroed;
* critics: twin centralised Q_k(x, a^1..a^N)
  (:class:`lit_omarl.nets.continuous.CentralCritic`) on x = the global state
  (``critic_input="state"``, default) or the concatenated observations of
  the learning agents (``"obs"``) and the joint action;
* targets (target policy smoothing, clipped double Q)::

      a'_i = clamp(mubar_i(o'_i) + clip(sigma eps, -c, c) * h, low, high),  eps ~ N(0, 1)
      y    = r + gamma (1 - terminated) min_k Qbar_k(x', a')

  with h = (high - low) / 2 (noise in units of the action half-range),
  sigma = ``target_noise`` (0.2), c = ``target_noise_clip`` (0.5);
  time-limit ends bootstrap (only true terminations stop it);
* critic loss sum_k mean (Q_k(x, a) - y)^2, every update;
* delayed actor updates (every ``policy_delay`` = 2 critic updates), MADDPG's
  per-agent improvement with the other agents' replayed actions::

      L_pi = - sum_i mean Q_1(x, a^1, .., mu_i(o_i), .., a^N) + reg * mean(u^2)

  (u = pre-tanh actor outputs, reg = ``actor_reg`` 1e-3 as MADDPG's code);
  Polyak target updates (tau) after each actor update; gradient-norm
  clipping (``grad_clip_norm``, 0.5 as MADDPG / OMAR).
* exploration: uniform random actions for the first ``start_steps`` env
  steps, then Gaussian noise ``explore_noise`` (units of the half-range).

Collection: ``num_envs`` episodes run in lockstep in one batched env (no
auto-reset: a new batch starts when all are done); after every vector step
``updates_per_step`` x (transitions collected) gradient updates follow
(fractional credits carry over). The replay buffer stores whole episodes
(schema-v1 layout) in a ring of ``buffer_size`` transitions; batches are
single transitions drawn uniformly over the stored steps (including the
running episodes).

Greedy tests: every ``eval_every`` env steps, ``eval_episodes`` episodes of
the deterministic actors in a separate env whose k-th batch is seeded
``test_seed + k`` (same episodes at every test).

Determinism: a run is a function of (config, seed) on one thread: networks,
noise, batches and env streams are all seeded from ``seed``.

Command::

    python -m lit_omarl.behaviour.matd3_online --env mpe/simple_spread --env-steps 2000000 --out runs/matd3_spread --seed 0

A medium_replay run stops as soon as its dump exists:
``--replay-milestones R --stop-at-return R`` (R = the medium level).

Continuing a run (``--init-from RUN/step_<k>.pt --out NEW``, e.g. a MaMuJoCo
training longer than one sitting): actors and critics from the checkpoint
(the target networks start as their copies), the env-step / episode / update
counters and the wall-clock minutes go on from it, tests and the checkpoint
grid resume there. Not in checkpoints, so they restart: the replay buffer (the
continued run first collects ``start_steps`` transitions with the loaded actors
and exploration noise, then updates), the Adam moments and the random streams
(a continued run is deterministic given its checkpoint and seed, but is not the
uninterrupted run). Exported actor files (no critic) cannot be continued.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from lit_omarl.behaviour._online_common import (EvalSchedule, OnlineConfigBase, add_run_args, config_dict, floats,
                                                load_continuation, out_of_budget, record_test, run_and_print, scalars,
                                                seeded, write_checkpoint)
from lit_omarl.nets.continuous import CentralCritic, PerAgentMLP
from lit_omarl.spec import EnvSpec

CHECKPOINT_FORMAT = "lit_omarl.matd3_online/1"
ACTOR_OUT_INIT = 3e-3


# ------------------------------------------------------------------ config
@dataclass
class MATD3OnlineConfig(OnlineConfigBase):
    """Hyper-parameters of an online MATD3 run (module docstring).

    Args:
        env_id, env_options: the env (``lit_omarl.envs.make``); must have continuous actions.
        env_steps: stop after this many env steps (transitions, summed over the parallel episodes).
        max_minutes: also stop after this wall-clock time (<= 0: no limit).
        seed: seed of networks, exploration, batches, the env and the tests.
        num_envs: episodes run in parallel.
        gamma, tau: discount and Polyak rate (MADDPG's MPE values 0.95, 0.01; MuJoCo: 0.99, 0.005).
        actor_lr, critic_lr: Adam learning rates.
        batch_size: transitions per update.
        buffer_size: transitions kept (FIFO over whole episodes).
        start_steps: env steps of uniform random actions before the actors act.
        updates_per_step: gradient updates per collected transition.
        explore_noise: std of the Gaussian exploration noise (units of the action half-range).
        target_noise, target_noise_clip: target policy smoothing (TD3: 0.2, 0.5).
        policy_delay: critic updates per actor (and target) update.
        actor_reg: weight of mean(pre-tanh output^2) in the actor loss (MADDPG 1e-3).
        grad_clip_norm: gradient-norm clipping of actors and critics (<= 0: none).
        actor_hidden_dim, critic_hidden_dim: widths (64 for MPE as OMAR; 256 for MaMuJoCo).
        critic_input: "state" (global state) or "obs" (the learners' observations concatenated).
        eval_every, eval_episodes: greedy tests.
        checkpoint_every: env steps between periodic checkpoints (<= 0: none).
        milestones: test returns that trigger ``return_<q>.pt`` the first time they are reached.
        replay_milestones: test returns that trigger a dump of the replay buffer.
        stop_at_return: stop after the first test whose return reaches this value, once the replay
            milestones up to it are dumped (None: never).
        threads: torch intra-op threads.
        init_from: continue from this checkpoint of an earlier run (module docstring; "" = a new run).
    """

    env_id: str = "mpe/simple_spread"  # (env_options, env_steps, max_minutes, seed: OnlineConfigBase)
    num_envs: int = 32
    gamma: float = 0.95
    tau: float = 0.01
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    batch_size: int = 1024
    buffer_size: int = 1_000_000
    start_steps: int = 25_000
    updates_per_step: float = 1 / 32
    explore_noise: float = 0.1
    target_noise: float = 0.2
    target_noise_clip: float = 0.5
    policy_delay: int = 2
    actor_reg: float = 1e-3
    grad_clip_norm: float = 0.5
    actor_hidden_dim: int = 64
    critic_hidden_dim: int = 64
    critic_input: str = "state"
    eval_every: int = 25_000
    eval_episodes: int = 64
    checkpoint_every: int = 25_000
    milestones: tuple[float, ...] = ()
    replay_milestones: tuple[float, ...] = ()
    stop_at_return: float | None = None
    threads: int = 1
    init_from: str = ""

    def check(self) -> None:
        """ValueError naming the option for impossible settings."""
        positive = {"env_steps": self.env_steps, "num_envs": self.num_envs, "batch_size": self.batch_size,
                    "buffer_size": self.buffer_size, "policy_delay": self.policy_delay, "eval_episodes": self.eval_episodes,
                    "eval_every": self.eval_every, "actor_hidden_dim": self.actor_hidden_dim,
                    "critic_hidden_dim": self.critic_hidden_dim, "threads": self.threads}
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"matd3_online: option {name} must be >= 1, got {value!r}")
        for name in ("actor_lr", "critic_lr", "updates_per_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"matd3_online: option {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("explore_noise", "target_noise", "target_noise_clip", "actor_reg", "start_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"matd3_online: option {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.tau <= 1 or not 0 <= self.gamma <= 1:
            raise ValueError(f"matd3_online: options tau in (0, 1] and gamma in [0, 1] required, got tau={self.tau}, gamma={self.gamma}")
        if self.critic_input not in ("state", "obs"):
            raise ValueError(f"matd3_online: option critic_input must be 'state' or 'obs', got {self.critic_input!r}")


# ------------------------------------------------------------------ pure pieces (tested by hand)
def squash(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """low + (tanh(u) + 1) (high - low) / 2 (= tanh(u) on [-1, 1])."""
    return low + (torch.tanh(u) + 1.0) * (0.5 * (high - low))


def smoothed_target_actions(mu_next: torch.Tensor, eps: torch.Tensor, sigma: float, clip: float, low: float,
                            high: float, action_mask: torch.Tensor | None = None) -> torch.Tensor:
    """TD3's target policy smoothing: clamp(mu' + clip(sigma eps, -c, c) (high - low) / 2, low, high), padding zeroed."""
    half = 0.5 * (high - low)
    out = (mu_next + (sigma * eps).clamp(-clip, clip) * half).clamp(low, high)
    return out if action_mask is None else out * action_mask.to(out.dtype)


def td3_targets(reward: torch.Tensor, terminated: torch.Tensor, q_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminated) min_k q_next[k]; q_next [K, B], reward / terminated [B]."""
    return reward + gamma * (1.0 - terminated.to(reward.dtype)) * q_next.min(0).values


def replace_own_action(actions: torch.Tensor, policy_actions: torch.Tensor) -> torch.Tensor:
    """[N, B, N, A]: row i is the replayed joint action with agent i's entry replaced by its policy action."""
    n = actions.shape[-2]
    own = torch.eye(n, dtype=torch.bool, device=actions.device)[:, None, :, None]  # [N(i), 1, N(k), 1]
    return torch.where(own, policy_actions.unsqueeze(0), actions.unsqueeze(0))


# ------------------------------------------------------------------ policy
class MATD3Policy(nn.Module):
    """Decentralised deterministic actors (one MLP per agent) in the env's action bounds.

    ``act(obs, avail, hidden=None, deterministic=True)`` follows the contract of
    :mod:`lit_omarl.eval.rollout`; ``deterministic=False`` adds Gaussian noise
    of std ``self.noise`` (units of the action half-range), clipped to the bounds.
    """

    def __init__(self, spec: EnvSpec | dict, hidden_dim: int = 64, noise: float = 0.0,
                 action_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.spec = EnvSpec.from_dict(spec) if isinstance(spec, dict) else spec
        if self.spec.discrete:
            raise ValueError(f"MATD3 needs continuous actions; {self.spec.env_id!r} is discrete")
        s = self.spec
        self.hidden_dim = int(hidden_dim)
        self.actor = PerAgentMLP(s.n_agents, s.obs_dim, s.n_actions, self.hidden_dim)
        with torch.no_grad():
            self.actor.mlp.layers[-1].weight.uniform_(-ACTOR_OUT_INIT, ACTOR_OUT_INIT)
            self.actor.mlp.layers[-1].bias.uniform_(-ACTOR_OUT_INIT, ACTOR_OUT_INIT)
        mask = torch.ones(s.n_agents, s.n_actions, dtype=torch.bool) if action_mask is None else action_mask.bool()
        self.register_buffer("action_mask", mask.clone(), persistent=False)
        self.noise = float(noise)

    @property
    def low(self) -> float:
        return float(self.spec.action_low)

    @property
    def high(self) -> float:
        return float(self.spec.action_high)

    def pre_tanh(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.forward_seq(obs.float())[0]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions in bounds with padding zeroed, pre-tanh outputs) for obs [..., N, O]."""
        u = self.pre_tanh(obs)
        return squash(u, self.low, self.high) * self.action_mask.to(u.dtype), u

    @torch.no_grad()
    def noisy(self, obs: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
        a, _ = self(obs)
        if sigma > 0:
            eps = torch.randn(a.shape, generator=generator)
            a = (a + sigma * 0.5 * (self.high - self.low) * eps).clamp(self.low, self.high) * self.action_mask
        return a

    @torch.no_grad()
    def act(self, obs: torch.Tensor, avail: torch.Tensor | None = None, hidden: Any = None,
            deterministic: bool = True) -> tuple[torch.Tensor, None]:
        return self.noisy(torch.as_tensor(obs), 0.0 if deterministic else self.noise), None

    @classmethod
    def load(cls, path: str | Path, noise: float = 0.0) -> "MATD3Policy":
        """The actors of a checkpoint written by :func:`save_checkpoint` (or :func:`export_actor`)."""
        path = Path(path)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure means "not our file"
            raise ValueError(f"{path}: not a readable matd3_online checkpoint ({type(err).__name__}: {err})") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ValueError(f"{path}: key 'format': expected {CHECKPOINT_FORMAT!r}, got {got!r}")
        for key in ("spec", "config", "actor"):
            if key not in ckpt:
                raise ValueError(f"{path}: key {key!r} is missing from the matd3_online checkpoint")
        mask = ckpt.get("action_mask")
        policy = cls(ckpt["spec"], int(ckpt["config"]["actor_hidden_dim"]), noise, mask)
        try:
            policy.actor.load_state_dict(ckpt["actor"])
        except RuntimeError as err:
            raise ValueError(f"{path}: key 'actor' does not fit the declared architecture: {err}") from None
        return policy.eval()


# ------------------------------------------------------------------ learner
Batch = dict[str, torch.Tensor]


class MATD3Learner(nn.Module):
    """Actors, twin centralised critics, their targets and optimizers; ``update(batch)`` is one gradient step.

    ``batch``: obs / next_obs [B, N, O], state / next_state [B, S], actions [B, N, A],
    reward / terminated [B].
    """

    def __init__(self, spec: EnvSpec, config: MATD3OnlineConfig, action_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.policy = MATD3Policy(spec, config.actor_hidden_dim, config.explore_noise, action_mask)
        s = self.policy.spec
        x_dim = s.state_dim if config.critic_input == "state" else s.n_agents * s.obs_dim
        self.critic = CentralCritic(x_dim, s.n_agents, s.n_actions, config.critic_hidden_dim, n_critics=2)
        self.target_policy = MATD3Policy(spec, config.actor_hidden_dim, 0.0, action_mask).requires_grad_(False)
        self.target_critic = CentralCritic(x_dim, s.n_agents, s.n_actions, config.critic_hidden_dim, 2).requires_grad_(False)
        self.target_policy.load_state_dict(self.policy.state_dict())
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.policy.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.critic_updates = 0

    def critic_x(self, batch: Batch, nxt: bool = False) -> torch.Tensor:
        if self.config.critic_input == "state":
            return batch["next_state" if nxt else "state"]
        return batch["next_obs" if nxt else "obs"].flatten(-2)

    @torch.no_grad()
    def targets(self, batch: Batch, eps: torch.Tensor) -> torch.Tensor:
        """TD targets y [B] with the smoothing draws ``eps`` [B, N, A] (standard normal)."""
        cfg, pol = self.config, self.target_policy
        mu_next, _ = pol(batch["next_obs"])
        a_next = smoothed_target_actions(mu_next, eps, cfg.target_noise, cfg.target_noise_clip, pol.low, pol.high,
                                         pol.action_mask)
        q_next = self.target_critic(self.critic_x(batch, True), a_next)  # [2, B]
        return td3_targets(batch["reward"], batch["terminated"], q_next, cfg.gamma)

    def _step(self, loss: torch.Tensor, module: nn.Module, opt: torch.optim.Optimizer) -> torch.Tensor:
        opt.zero_grad()
        loss.backward()
        clip = self.config.grad_clip_norm
        norm = nn.utils.clip_grad_norm_(module.parameters(), clip if clip > 0 else math.inf)
        opt.step()
        return norm

    def update(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        eps = torch.randn(batch["actions"].shape, generator=generator)
        y = self.targets(batch, eps)
        q = self.critic(self.critic_x(batch), batch["actions"])  # [2, B]
        critic_loss = (q - y).pow(2).mean(-1).sum()
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q[0].detach().mean(), "target_mean": y.mean(),
                   "critic_grad_norm": self._step(critic_loss, self.critic, self.critic_opt)}
        self.critic_updates += 1
        if self.critic_updates % cfg.policy_delay == 0:
            pi, u = self.policy(batch["obs"])
            joint = replace_own_action(batch["actions"], pi)  # [N, B, N, A]
            x = self.critic_x(batch).unsqueeze(0).expand(joint.shape[0], *self.critic_x(batch).shape)
            q_pi = self.critic(x, joint, members=1)[0]  # [N, B]
            actor_loss = -q_pi.mean(-1).sum() + cfg.actor_reg * u.pow(2).mean()
            self.critic.requires_grad_(False)
            metrics["actor_grad_norm"] = self._step(actor_loss, self.policy, self.actor_opt)
            self.critic.requires_grad_(True)
            metrics["actor_loss"] = actor_loss.detach()
            with torch.no_grad():
                for tgt, src in ((self.target_policy, self.policy), (self.target_critic, self.critic)):
                    for p_t, p in zip(tgt.parameters(), src.parameters()):
                        p_t.lerp_(p, cfg.tau)
        return metrics


# ------------------------------------------------------------------ replay buffer
class EpisodeReplay:
    """Ring buffer of whole episodes in the schema-v1 layout; samples single transitions uniformly.

    ``capacity`` transitions = ceil(capacity / T) episode slots of T = episode_limit steps.
    A batch of B parallel episodes gets B slots at its reset (:meth:`start`);
    :meth:`record` writes one step; stored steps (also of running episodes) can be sampled.
    """

    def __init__(self, capacity: int, spec: EnvSpec) -> None:
        self.spec = spec
        t, n, s = spec.episode_limit, spec.n_agents, spec
        self.slots = max(1, math.ceil(int(capacity) / t))
        self.obs = torch.zeros(self.slots, t + 1, n, s.obs_dim)
        self.state = torch.zeros(self.slots, t + 1, s.state_dim)
        self.actions = torch.zeros(self.slots, t, n, s.n_actions)
        self.reward = torch.zeros(self.slots, t)
        self.terminated = torch.zeros(self.slots, t)
        self.length = torch.zeros(self.slots, dtype=torch.long)  # stored steps per slot
        self.complete = torch.zeros(self.slots, dtype=torch.bool)
        self.order = torch.full((self.slots,), -1, dtype=torch.long)  # global episode index of each slot
        self.next_slot = 0
        self.episodes_started = 0
        self.current = torch.zeros(0, dtype=torch.long)

    def start(self, obs: torch.Tensor, state: torch.Tensor) -> None:
        b = obs.shape[0]
        if b > self.slots:
            raise ValueError(f"replay buffer of {self.slots} episodes cannot hold {b} parallel episodes; raise buffer_size")
        idx = (self.next_slot + torch.arange(b)) % self.slots
        self.next_slot = int((self.next_slot + b) % self.slots)
        for key in ("obs", "state", "actions", "reward", "terminated"):
            getattr(self, key)[idx] = 0.0
        self.length[idx] = 0
        self.complete[idx] = False
        self.order[idx] = self.episodes_started + torch.arange(b)
        self.episodes_started += b
        self.obs[idx, 0], self.state[idx, 0] = obs, state
        self.current = idx

    def record(self, t: int, actions: torch.Tensor, ts: Any, active: torch.Tensor, done: torch.Tensor) -> None:
        """Step ``t`` of the running batch: actions [B, N, A], the TimeStep after it, which were active before it."""
        idx = self.current[active]
        self.actions[idx, t] = actions[active]
        self.reward[idx, t] = ts.reward[active]
        self.terminated[idx, t] = ts.terminated[active].float()
        self.obs[idx, t + 1] = ts.obs[active]
        self.state[idx, t + 1] = ts.state[active]
        self.length[idx] = t + 1
        self.complete[self.current[done & active]] = True

    def __len__(self) -> int:
        return int(self.length.sum())

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        cum = torch.cumsum(self.length, 0)
        u = torch.randint(0, int(cum[-1]), (n,), generator=generator)
        ep = torch.searchsorted(cum, u, right=True)
        t = u - (cum[ep] - self.length[ep])
        return {"obs": self.obs[ep, t], "next_obs": self.obs[ep, t + 1], "state": self.state[ep, t],
                "next_state": self.state[ep, t + 1], "actions": self.actions[ep, t], "reward": self.reward[ep, t],
                "terminated": self.terminated[ep, t]}

    def completed_episodes(self) -> int:
        return int(self.complete.sum())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The completed episodes, oldest first, as schema-v1 arrays."""
        idx = self.complete.nonzero().flatten()
        idx = idx[torch.argsort(self.order[idx])]
        t = self.spec.episode_limit
        filled = torch.arange(t)[None, :] < self.length[idx][:, None]
        return {"obs": self.obs[idx].numpy(), "state": self.state[idx].numpy(), "actions": self.actions[idx].numpy(),
                "reward": self.reward[idx].numpy(), "terminated": self.terminated[idx].numpy().astype(np.uint8),
                "filled": filled.numpy().astype(np.uint8)}


# ------------------------------------------------------------------ checkpoints
_config_dict = config_dict


def save_checkpoint(path: Path, learner: MATD3Learner, meta: dict[str, Any], *, critic: bool = True) -> Path:
    """``path`` (tensors + numbers, loadable with weights_only=True) and ``path.json`` (meta)."""
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "spec": learner.policy.spec.to_dict(),
                               "config": config_dict(learner.config), "actor": learner.policy.actor.state_dict(),
                               "action_mask": learner.policy.action_mask.clone(), **scalars(meta)}
    if critic:
        payload["critic"] = learner.critic.state_dict()
    return write_checkpoint(path, payload, meta)


def export_actor(src: str | Path, dst: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Copy of checkpoint ``src`` without the critic (a small behaviour-policy file) at ``dst`` (+ ``dst.json``)."""
    src, dst = Path(src), Path(dst)
    MATD3Policy.load(src)  # validates
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt.pop("critic", None)
    info = {**json.loads(src.with_suffix(".json").read_text())} if src.with_suffix(".json").exists() else {}
    info.update(meta or {})
    info["exported_from"] = src.name
    for k, v in info.items():
        if isinstance(v, (int, float, str, bool)) and k not in ("format", "spec", "config", "actor", "action_mask"):
            ckpt[k] = v
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(dst)
    info["checkpoint"] = dst.name
    dst.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return dst


def load_actor(path: str | Path, noise: float = 0.0) -> MATD3Policy:
    """The actors of a checkpoint file or of a shipped policy name such as ``mpe_simple_spread/expert``."""
    from lit_omarl.behaviour import resolve_policy

    return MATD3Policy.load(resolve_policy(path), noise)


def actor_behaviour(text: str, spec: EnvSpec) -> Any:
    """``policy:<path or shipped name>`` in a continuous env: a generation behaviour of the deterministic actors.

    (The hook of :func:`lit_omarl.data.generate.parse_behaviour`; Gaussian noise comes from ``noise:S:policy:...``.)
    """
    from lit_omarl.data.generate import Behaviour, BehaviourError

    head, sep, ref = text.strip().partition(":")
    if head != "policy" or not sep or not ref.strip():
        raise BehaviourError(text, "expected policy:<checkpoint path or shipped name>")
    ref = ref.strip()
    try:
        policy = load_actor(ref)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise BehaviourError(text, f"cannot load matd3_online checkpoint {ref!r}: {err}") from None
    own = policy.spec
    keys = ("env_id", "n_agents", "obs_dim", "state_dim", "n_actions", "action_low", "action_high")
    diff = {k: (getattr(own, k), getattr(spec, k)) for k in keys if getattr(own, k) != getattr(spec, k)}
    if diff:
        raise BehaviourError(text, f"checkpoint of {own.env_id!r} does not fit env {spec.env_id!r} (checkpoint, env): {diff}")

    class ActorBehaviour(Behaviour):
        def bind(self, env):
            mask = getattr(env, "action_mask", None)
            if mask is not None:
                policy.action_mask = mask.bool().clone()

        @torch.no_grad()
        def act(self, ts, generator):
            return policy.act(ts.obs, None, None, deterministic=True)[0], None

    behaviour = ActorBehaviour(text, spec)
    behaviour.policy = policy
    return behaviour


@torch.no_grad()
def episode_returns(act: Callable[[torch.Tensor], torch.Tensor], env: Any, episodes: int, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns and lengths [episodes] of ``act(obs) -> actions`` in ``env``; batch k of ``env.num_envs``
    episodes is reset with seed ``seed + k`` (the same episodes for every policy)."""
    rets, lens = [], []
    for k in range(math.ceil(episodes / env.num_envs)):
        ts = env.reset(seed=seed + k)
        ret, length = torch.zeros(env.num_envs), torch.zeros(env.num_envs)
        while bool(env.active.any()):
            active = env.active.clone()
            ts = env.step(act(ts.obs))
            ret += ts.reward * active
            length += active.float()
        rets.append(ret)
        lens.append(length)
    return torch.cat(rets)[:episodes], torch.cat(lens)[:episodes]


def test_policy(policy: MATD3Policy, env: Any, episodes: int, seed: int) -> dict[str, float]:
    """Greedy mean return over ``episodes`` episodes (batches seeded seed, seed + 1, ...)."""
    ret, length = episode_returns(lambda obs: policy.act(obs)[0], env, episodes, seed)
    return {"return": float(ret.mean()), "return_std": float(ret.std(unbiased=False)), "episode_length": float(length.mean())}


def _tag(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------ training
def train_matd3(config: MATD3OnlineConfig, out: str | Path, *, log_every: int = 50, verbose: bool = False,
                make_env: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
    """Train MATD3 online (module docstring); returns a summary (also written to ``out/summary.json``).

    ``make_env(num_envs, seed)`` replaces ``lit_omarl.envs.make(config.env_id, ...)`` (e.g. the prey's view
    of an MPE task); ``log_every``: vector steps between TensorBoard training scalars; ``verbose``: print tests.
    """
    from torch.utils.tensorboard import SummaryWriter

    from lit_omarl.data.schema import write_dataset
    from lit_omarl.envs import make

    config.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(int(config.threads))
    gen, env_seed, test_seed = seeded(config.seed)
    if make_env is None:
        def make_env(num_envs: int, seed: int) -> Any:
            return make(config.env_id, num_envs=num_envs, seed=seed, **config.env_options)
    env = make_env(config.num_envs, env_seed)
    test_env = make_env(min(config.eval_episodes, 256), test_seed)
    spec = env.spec
    if spec.discrete:
        raise ValueError(f"matd3_online: env {spec.env_id!r} has discrete actions; use qmix_online")
    mask = getattr(env, "action_mask", None)
    learner = MATD3Learner(spec, config, mask)
    buffer = EpisodeReplay(config.buffer_size, spec)
    steps = updates = episodes = vector_steps = 0
    minutes_before, warmup = 0.0, 0
    schedule = EvalSchedule(config.eval_every, config.checkpoint_every)  # (no checkpoint at step 0: untrained)
    if config.init_from:
        ckpt = load_continuation(Path(config.init_from), CHECKPOINT_FORMAT, "matd3_online", spec.to_dict(), config,
                                 ("actor_hidden_dim", "critic_hidden_dim", "critic_input"))
        if "critic" not in ckpt:
            raise ValueError(f"--init-from {config.init_from}: an exported actor without its critic; continue from a "
                             "run's step_<k>.pt, return_<r>.pt or final.pt")
        learner.policy.actor.load_state_dict(ckpt["actor"])
        learner.critic.load_state_dict(ckpt["critic"])
        learner.target_policy.load_state_dict(learner.policy.state_dict())
        learner.target_critic.load_state_dict(learner.critic.state_dict())
        steps, episodes, updates = int(ckpt["env_steps"]), int(ckpt["episodes"]), int(ckpt["updates"])
        minutes_before, warmup = float(ckpt.get("minutes", 0.0)), int(config.start_steps)
        schedule.start_at(steps)
    writer = SummaryWriter(str(out / "tb"))
    (out / "config.json").write_text(json.dumps({**config_dict(config), "spec": spec.to_dict()}, indent=2) + "\n")
    curve_path = out / "curve.jsonl"
    if curve_path.exists():
        curve_path.unlink()  # a rerun in the same folder starts a new curve

    reached: set[float] = set()
    dumped: set[float] = set()
    credit = 0.0
    start = time.perf_counter()
    metrics: dict[str, torch.Tensor] = {}
    curve: list[dict[str, Any]] = []
    train_returns: list[float] = []
    low, high = spec.action_low, spec.action_high
    mask_f = learner.policy.action_mask.float()
    stop_at = config.stop_at_return
    pending = {m for m in config.replay_milestones if stop_at is not None and m <= stop_at}
    stopped_early = False
    first_step = steps

    def minutes() -> float:
        return minutes_before + (time.perf_counter() - start) / 60

    def test_and_save() -> dict[str, Any]:
        result = test_policy(learner.policy, test_env, config.eval_episodes, test_seed)
        point = {"env_steps": steps, "episodes": episodes, "updates": updates, "minutes": minutes(), **result}
        record_test(curve, curve_path, point, verbose)
        for name in ("return", "return_std"):
            writer.add_scalar(f"test/{name}", result[name], steps)
        meta = {**point, "env_id": spec.env_id, "seed": config.seed, "eval_episodes": config.eval_episodes}
        for m in sorted(config.milestones):
            if result["return"] >= m and m not in reached:
                reached.add(m)
                save_checkpoint(out / f"return_{_tag(m)}.pt", learner, {**meta, "kind": "milestone", "milestone": m})
        for m in sorted(config.replay_milestones):
            if result["return"] >= m and m not in dumped and buffer.completed_episodes():
                dumped.add(m)
                attrs = {"spec": spec, "quality": "medium_replay", "source": "generated", "seed": config.seed,
                         "behaviour": f"matd3_online replay buffer until test return {_tag(m)}",
                         "generator": "lit_omarl matd3_online", "env_steps": steps, "test_return": result["return"],
                         "episodes_collected": episodes, "updates": updates}
                write_dataset(out / f"replay_return_{_tag(m)}.h5", buffer.to_arrays(), attrs, overwrite=True)
        return meta

    ts = None
    t_in_episode = 0
    try:
        while True:
            tested = schedule.tick(steps, test_and_save, lambda m: save_checkpoint(out / f"step_{steps}.pt", learner,
                                                                                   {**m, "kind": "periodic"}))
            if tested is not None:
                meta = tested
                if stop_at is not None and curve[-1]["return"] >= stop_at and pending <= dumped:
                    stopped_early = True
                    break
            if out_of_budget(config, steps, start):
                break

            if ts is None or not bool(env.active.any()):
                ts = env.reset()
                buffer.start(ts.obs, ts.state)
                t_in_episode = 0
                ep_return = torch.zeros(env.num_envs)
            if steps < config.start_steps and not config.init_from:
                u = torch.rand(env.num_envs, spec.n_agents, spec.n_actions, generator=gen)
                actions = (low + (high - low) * u) * mask_f
            else:
                actions = learner.policy.noisy(ts.obs, config.explore_noise, gen)
            active = env.active.clone()
            ts = env.step(actions)
            done = ts.terminated | ts.truncated
            buffer.record(t_in_episode, actions.clamp(low, high) * mask_f, ts, active, done)
            ep_return += ts.reward * active
            t_in_episode += 1
            n_new = int(active.sum())
            steps += n_new
            vector_steps += 1
            if not bool(env.active.any()):
                episodes += env.num_envs
                train_returns += ep_return.tolist()

            if len(buffer) >= config.batch_size and steps - first_step >= warmup:  # (warmup: continued runs)
                credit += config.updates_per_step * n_new
                while credit >= 1.0:
                    metrics = learner.update(buffer.sample(config.batch_size, gen), gen)
                    credit -= 1.0
                    updates += 1

            if vector_steps % log_every == 0:
                elapsed = time.perf_counter() - start
                if train_returns:
                    writer.add_scalar("train/return", float(np.mean(train_returns)), steps)
                    train_returns = []
                writer.add_scalar("perf/env_steps_per_sec", steps / max(elapsed, 1e-9), steps)
                writer.add_scalar("perf/updates", updates, steps)
                for name, value in metrics.items():
                    writer.add_scalar(f"train/{name}", float(value), steps)

        if curve[-1]["env_steps"] != steps:
            meta = test_and_save()
        save_checkpoint(out / "final.pt", learner, {**meta, "kind": "final"})
    finally:
        writer.close()
        torch.set_num_threads(threads_before)
    best = max(curve, key=lambda p: p["return"])
    summary = {"env_id": spec.env_id, "env_options": spec.env_options, "seed": config.seed, "env_steps": steps,
               "episodes": episodes, "updates": updates, "minutes": minutes(), "init_from": config.init_from,
               "final_return": curve[-1]["return"], "best_return": best["return"], "best_env_steps": best["env_steps"],
               "milestones_reached": sorted(reached),
               "replay_dumps": [f"replay_return_{_tag(m)}.h5" for m in sorted(dumped)],
               "stopped_at_return": stopped_early, "curve": curve}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------ curve plot
def read_curve(path: str | Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_curve(curve: str | Path, png: str | Path, title: str | None = None,
               references: dict[str, float] | None = None, marks: dict[str, int] | None = None) -> Path:
    """PNG of test return (mean +- std over the test episodes) vs env steps; optional horizontal reference
    lines (e.g. {"random": -26}) and vertical marks at env steps (e.g. {"medium": 150000})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = read_curve(curve)
    x = np.array([p["env_steps"] for p in points], dtype=float)
    y = np.array([p["return"] for p in points])
    s = np.array([p.get("return_std", 0.0) for p in points])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(x, y, label="greedy test return")
    ax.fill_between(x, y - s, y + s, alpha=0.2)
    for k, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{k + 1}", label=f"{name} ({value:.2f})")
    for k, (name, at) in enumerate((marks or {}).items()):
        ax.axvline(at, ls=":", lw=1, color=f"C{k + 4}", label=f"{name} checkpoint ({at} steps)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or Path(curve).parent.name)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


# ------------------------------------------------------------------ command line
_floats = floats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    d = MATD3OnlineConfig()
    p = argparse.ArgumentParser(prog="python -m lit_omarl.behaviour.matd3_online", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default=d.env_id, help="continuous env id, e.g. mpe/simple_spread, mamujoco/HalfCheetah-2x3")
    p.add_argument("--option", action="append", default=[], help="env option KEY=VALUE (JSON values), e.g. prey_policy=pretrained")
    add_run_args(p, d)
    for name in ("num_envs", "batch_size", "buffer_size", "start_steps", "policy_delay", "actor_hidden_dim",
                 "critic_hidden_dim", "eval_every", "eval_episodes", "checkpoint_every", "threads"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("gamma", "tau", "actor_lr", "critic_lr", "updates_per_step", "explore_noise", "target_noise",
                 "target_noise_clip", "actor_reg", "grad_clip_norm"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--critic-input", choices=("state", "obs"), default=d.critic_input)
    p.add_argument("--milestones", type=_floats, default=d.milestones, help="comma-separated test returns")
    p.add_argument("--replay-milestones", type=_floats, default=d.replay_milestones)
    p.add_argument("--stop-at-return", type=float, default=None,
                   help="stop after the first test reaching this greedy return (once the replay milestones up to it are dumped)")
    p.add_argument("--init-from", default="", help="continue from this checkpoint of an earlier run (RUN/step_<k>.pt, "
                                                   "final.pt): weights and counters; buffer and optimiser restart")
    a = p.parse_args(argv)
    options: dict[str, Any] = {}
    for pair in a.option:
        if "=" not in pair:
            p.error(f"--option expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    fields = {k: getattr(a, k) for k in ("num_envs", "batch_size", "buffer_size", "start_steps", "policy_delay",
                                         "actor_hidden_dim", "critic_hidden_dim", "eval_every", "eval_episodes",
                                         "checkpoint_every", "threads", "gamma", "tau", "actor_lr", "critic_lr",
                                         "updates_per_step", "explore_noise", "target_noise", "target_noise_clip",
                                         "actor_reg", "grad_clip_norm", "critic_input", "milestones", "replay_milestones")}
    config = MATD3OnlineConfig(env_id=a.env, env_options=options, env_steps=a.env_steps, max_minutes=a.max_minutes,
                               seed=a.seed, stop_at_return=a.stop_at_return,
                               init_from=str(Path(a.init_from).resolve()) if a.init_from else "", **fields)
    try:
        config.check()
    except ValueError as err:
        p.error(str(err))
    return run_and_print(train_matd3, config, a.out)


if __name__ == "__main__":
    main()
