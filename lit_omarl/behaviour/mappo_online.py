"""MAPPO trained online on a batched discrete env: behaviour policies for the SMAX maps QMIX does not learn here.

OMAC (omac.md App. B) builds its StarCraft datasets from MAPPO agents; CFCQL
from QMIX runs (:mod:`lit_omarl.behaviour.qmix_online`). On the two hard
SMAX maps (5m_vs_6m, 3s5z_vs_3s6z) our QMIX stays far below expert level
within the env steps a CPU affords (docs/SMAX.md), so this module trains the
on-policy alternative with the same outputs, which the rest of the SMAX
pipeline (``lit_omarl.behaviour.ship``, ``lit-omarl data smax-recipe``,
``policy:`` behaviours) reads unchanged:

* ``winrate_<w>.pt`` the first time the greedy test win rate reaches each
  milestone w, ``step_<n>.pt`` every ``checkpoint_every`` env steps and
  ``final.pt``, each with a JSON twin recording its test; loadable with
  :func:`lit_omarl.behaviour.load_policy` (greedy: the most probable
  available action);
* ``replay_winrate_<w>.h5``: the last ``buffer_size`` training episodes
  (schema v1, quality ``medium_replay``) when the test win rate first
  reaches w of ``replay_milestones``; on-policy training keeps no replay
  buffer, so this FIFO of the episodes it trained on stands in for CFCQL's
  "replay buffer until the medium level";
* TensorBoard scalars under ``<out>/tb`` and ``<out>/curve.jsonl``.

Learner (MAPPO, Yu et al. 2022, with the choices of its SMAC experiments):
a GRU actor shared by all agents (:class:`lit_omarl.nets.RNNAgent` on
observation + agent id + last action, :class:`lit_omarl.nets.AgentInputs`),
softmax over the available actions; a centralised critic V(s) (an MLP on the
global state; one value per step since the team reward is shared); each
iteration collects ``num_envs`` whole episodes with the stochastic policy,
computes GAE(gamma, lambda) advantages (zero after ``terminated``; an
episode cut by the step limit bootstraps from V of its last state),
normalises them over the batch, and runs ``epochs`` passes of
``minibatches`` minibatches of whole episodes of the clipped surrogate
    L_pi = -E[min(r A, clip(r, 1 - c, 1 + c) A)] - beta_H E[H(pi)],
    r = pi(a|tau) / pi_old(a|tau),
and the clipped value loss on targets standardised by running statistics of
the returns (MAPPO's value normalisation); Adam, gradient clipping.

Command::

    python -m lit_omarl.behaviour.mappo_online --map 5m_vs_6m --env-steps 10000000 --out runs/mappo_5m_vs_6m --seed 0

``--init-from RUN/final.pt --out NEW`` continues a run in a new folder (as qmix_online:
``lit_omarl.behaviour.ship`` reads the chain), so a long run can span sessions.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lit_omarl.algos.losses import ensure_some_available, masked_mean
from lit_omarl.behaviour._online_common import (DiscreteRun, OnlineConfigBase, add_run_args, config_dict, floats,
                                                load_continuation, run_and_print, scalars, write_checkpoint)
from lit_omarl.data.generate import Behaviour, rollout
from lit_omarl.nets import AgentInputs, RNNAgent
from lit_omarl.spec import EnvSpec

Batch = dict[str, torch.Tensor]
CHECKPOINT_FORMAT = "lit_omarl.mappo_online/1"
#: logit of an unavailable action (finite, so that 0 * logit stays 0 in the entropy)
UNAVAILABLE = -1e9


@dataclass
class MAPPOOnlineConfig(OnlineConfigBase):
    """Hyper-parameters of an online MAPPO run (defaults: MAPPO's SMAC settings where they apply).

    Args:
        env_id, env_options, env_steps, max_minutes, seed: as every online trainer.
        num_envs: episodes collected per iteration (run in parallel).
        gamma, gae_lambda: discount and GAE lambda.
        lr, critic_lr: Adam learning rates of the actor and the critic.
        epochs: passes over each iteration's episodes.
        minibatches: minibatches (of whole episodes) per pass.
        clip: PPO ratio clip c (also the value clip, on the normalised scale).
        entropy_coef: weight beta_H of the entropy bonus.
        grad_clip_norm: gradient-norm clipping of actor and critic.
        anneal_lr: decay both learning rates linearly to 0 at ``env_steps`` (PPO's schedule; the
            learning rate of an iteration is lr * (1 - env steps so far / env_steps); a continuation
            follows the same schedule from its checkpoint's env-step count).
        agent_hidden_dim, critic_hidden_dim: network sizes.
        value_norm: standardise value targets with running statistics.
        eval_every, eval_episodes, checkpoint_every, milestones, replay_milestones,
        stop_at_win_rate: tests, checkpoints and replay dumps as in qmix_online.
        buffer_size: training episodes kept (FIFO) for the replay dumps.
        threads: torch intra-op threads.
        init_from: continue from this checkpoint of an earlier run (actor, critic, value normalisation, env-step,
            episode and iteration counts); Adam's moments, the episode FIFO and the RNG streams start afresh.
            "" = a fresh run.
    """

    env_id: str = "smax/2s3z"
    num_envs: int = 64
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = 5e-4
    critic_lr: float = 5e-4
    epochs: int = 5
    minibatches: int = 1
    clip: float = 0.2
    entropy_coef: float = 0.01
    grad_clip_norm: float = 10.0
    anneal_lr: bool = False
    agent_hidden_dim: int = 64
    critic_hidden_dim: int = 128
    value_norm: bool = True
    eval_every: int = 20_000
    eval_episodes: int = 32
    checkpoint_every: int = 250_000
    milestones: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    replay_milestones: tuple[float, ...] = (0.3, 0.5)
    stop_at_win_rate: float = 0.0
    buffer_size: int = 5000
    threads: int = 1
    init_from: str = ""


# ------------------------------------------------------------------ policy
class MAPPOPolicy(nn.Module):
    """The decentralised actor: a shared GRU agent and a softmax over the available actions.

    ``act(obs, avail, hidden=None, deterministic=True)`` follows the contract of
    :mod:`lit_omarl.eval.rollout`: the most probable available action, or a sample.
    """

    def __init__(self, spec: EnvSpec | dict, hidden_dim: int = 64) -> None:
        super().__init__()
        self.spec = EnvSpec.from_dict(spec)
        if not self.spec.discrete:
            raise ValueError(f"mappo_online needs discrete actions; {self.spec.env_id!r} is continuous")
        self.inputs = AgentInputs(self.spec.obs_dim, self.spec.n_agents, self.spec.n_actions)
        self.agent = RNNAgent(self.inputs.dim, self.spec.n_actions, hidden_dim)

    def logits_step(self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, dict]:
        """Logits [B, N, A] of one step (unavailable actions at :data:`UNAVAILABLE`) and the GRU state."""
        obs = torch.as_tensor(obs, dtype=torch.float32)
        avail = ensure_some_available(torch.as_tensor(avail).bool())
        if hidden is None:
            hidden = {"h": None, "last_action": obs.new_zeros(*obs.shape[:2], self.spec.n_actions)}
        logits, h = self.agent.step(self.inputs.build(obs, hidden["last_action"]), hidden["h"])
        return logits.masked_fill(~avail, UNAVAILABLE), {"h": h}

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any, deterministic: bool,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        logits, hidden = self.logits_step(obs, avail, hidden)
        if deterministic:
            actions = logits.argmax(-1)
        else:
            probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
            actions = torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])
        hidden["last_action"] = F.one_hot(actions, self.spec.n_actions).float()
        return actions, hidden

    def act(self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any = None,
            deterministic: bool = True) -> tuple[torch.Tensor, dict]:
        return self.sample(obs, avail, hidden, deterministic)

    def log_probs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of the batch's actions [B, L, N] and the policy entropies [B, L, N]."""
        steps = batch["actions"].shape[1]
        inputs = self.inputs.sequence(batch["obs"][:, :steps], batch["actions"])
        logits, _ = self.agent.forward_seq(inputs)
        avail = ensure_some_available(batch["avail_actions"][:, :steps].bool())
        logp_all = torch.log_softmax(logits.masked_fill(~avail, UNAVAILABLE), -1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp_all.gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1), entropy

    @classmethod
    def load(cls, path: str | Path) -> "MAPPOPolicy":
        """The actor of a checkpoint written by :func:`save_checkpoint`."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a mappo_online checkpoint (format {ckpt.get('format')!r})")
        policy = cls(ckpt["spec"], int(ckpt["config"]["agent_hidden_dim"]))
        policy.agent.load_state_dict(ckpt["agent"])
        return policy.eval()


# ------------------------------------------------------------------ learner
class ValueNorm(nn.Module):
    """Running mean / variance of value targets (exponential, debiased), MAPPO's value normalisation."""

    def __init__(self, beta: float = 0.999, enabled: bool = True) -> None:
        super().__init__()
        self.beta, self.enabled = beta, enabled
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("mean_sq", torch.zeros(()))
        self.register_buffer("debias", torch.zeros(()))

    def update(self, x: torch.Tensor) -> None:
        if not self.enabled or x.numel() == 0:
            return
        b = self.beta
        self.mean.mul_(b).add_((1 - b) * x.mean())
        self.mean_sq.mul_(b).add_((1 - b) * x.pow(2).mean())
        self.debias.mul_(b).add_(1 - b)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.enabled or float(self.debias) == 0.0:
            return torch.zeros(()), torch.ones(())
        mean = self.mean / self.debias
        var = (self.mean_sq / self.debias - mean.pow(2)).clamp_min(1e-4)
        return mean, var.sqrt()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return x * std + mean


def gae(reward: torch.Tensor, terminated: torch.Tensor, mask: torch.Tensor, values: torch.Tensor,
        gamma: float, lam: float) -> torch.Tensor:
    """GAE advantages [B, L] of padded episodes (0 outside them).

    ``reward``, ``terminated`` [B, L]; ``mask`` [B, L + 1]: 1 on the valid steps, at
    least one 0 column at the end; ``values`` [B, L + 1]: V(s_0..s_L), where an
    episode of length l has V of its state after the last step at index l.
    ``terminated`` zeroes the bootstrap; an episode cut by the step limit
    (not terminated) bootstraps from V of the state after its last step.
    """
    steps = reward.shape[1]
    adv = torch.zeros_like(reward)
    running = torch.zeros_like(reward[:, 0])
    for t in reversed(range(steps)):
        not_done = 1.0 - terminated[:, t]
        delta = reward[:, t] + gamma * not_done * values[:, t + 1] - values[:, t]
        running = delta + gamma * lam * not_done * mask[:, t + 1] * running
        adv[:, t] = running * mask[:, t]
    return adv


class MAPPOLearner(nn.Module):
    """Actor, critic, value normalisation and their optimizers; ``update(batch)`` is one PPO iteration."""

    def __init__(self, spec: EnvSpec | dict, config: MAPPOOnlineConfig) -> None:
        super().__init__()
        self.config = config
        self.policy = MAPPOPolicy(spec, config.agent_hidden_dim)
        s, h = self.policy.spec, config.critic_hidden_dim
        self.critic = nn.Sequential(nn.Linear(s.state_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
        self.value_norm = ValueNorm(enabled=config.value_norm)
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)

    def set_lr_fraction(self, fraction: float) -> None:
        """Set the learning rates to ``fraction`` (clipped to [0, 1]) of the configured ones."""
        fraction = min(max(fraction, 0.0), 1.0)
        for optimizer, base in ((self.actor_optimizer, self.config.lr), (self.critic_optimizer, self.config.critic_lr)):
            for group in optimizer.param_groups:
                group["lr"] = base * fraction

    def values(self, state: torch.Tensor) -> torch.Tensor:
        """Normalised-scale values [B, T] of states [B, T, S]."""
        return self.critic(state).squeeze(-1)

    def update(self, batch: Batch, generator: torch.Generator) -> dict[str, float]:
        """One iteration on a batch of whole episodes (keys of :func:`trim`)."""
        cfg, mask = self.config, batch["mask"]
        with torch.no_grad():
            old_logp, _ = self.policy.log_probs(batch)
            old_v = self.values(batch["state"])  # [B, L + 1], normalised scale
            adv = gae(batch["reward"], batch["terminated"], batch["mask_padded"], self.value_norm.denormalize(old_v),
                      cfg.gamma, cfg.gae_lambda)
            returns = adv + self.value_norm.denormalize(old_v[:, :-1])
            self.value_norm.update(returns[mask.bool()])
            target = self.value_norm.normalize(returns)
            valid = adv[mask.bool()]
            adv = (adv - valid.mean()) / (valid.std() + 1e-8) if valid.numel() > 1 else adv
        n_eps = mask.shape[0]
        agent_mask = mask.unsqueeze(-1).expand_as(old_logp)
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [], "clip_frac": []}
        for _ in range(cfg.epochs):
            order = torch.randperm(n_eps, generator=generator)
            for idx in order.chunk(max(1, min(cfg.minibatches, n_eps))):
                mb = {k: v[idx] for k, v in batch.items()}
                logp, entropy = self.policy.log_probs(mb)
                ratio = (logp - old_logp[idx]).exp()
                a = adv[idx].unsqueeze(-1)
                surrogate = torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a)
                m = agent_mask[idx]
                ent = masked_mean(entropy, m)
                policy_loss = -masked_mean(surrogate, m) - cfg.entropy_coef * ent
                self.actor_optimizer.zero_grad()
                policy_loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip_norm)
                self.actor_optimizer.step()

                v = self.values(mb["state"][:, :-1])
                v_old = old_v[idx, :-1]
                v_clipped = v_old + (v - v_old).clamp(-cfg.clip, cfg.clip)
                t = target[idx]
                value_loss = masked_mean(torch.max((v - t).pow(2), (v_clipped - t).pow(2)), mask[idx])
                self.critic_optimizer.zero_grad()
                value_loss.backward()
                nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip_norm)
                self.critic_optimizer.step()
                with torch.no_grad():
                    stats["policy_loss"].append(float(policy_loss))
                    stats["value_loss"].append(float(value_loss))
                    stats["entropy"].append(float(ent))
                    stats["clip_frac"].append(float(masked_mean(((ratio - 1).abs() > cfg.clip).float(), m)))
        return {k: float(np.mean(v)) for k, v in stats.items()}


def trim(batch: Batch) -> Batch:
    """A ``generate.rollout`` batch cut to its longest episode L, with float ``mask`` [B, L] of the
    valid steps and ``mask_padded`` [B, L + 1] (the same with a zero column appended, for :func:`gae`)."""
    steps = int(batch["filled"].sum(1).max())
    mask = batch["filled"][:, :steps].float()
    return {
        "obs": batch["obs"][:, : steps + 1], "state": batch["state"][:, : steps + 1],
        "avail_actions": batch["avail_actions"][:, : steps + 1], "actions": batch["actions"][:, :steps],
        "reward": batch["reward"][:, :steps], "terminated": batch["terminated"][:, :steps].float(),
        "mask": mask, "mask_padded": torch.cat([mask, mask.new_zeros(mask.shape[0], 1)], 1),
    }


class _Sampler(Behaviour):
    """The stochastic policy as a generation behaviour (drives ``generate.rollout``)."""

    def __init__(self, policy: MAPPOPolicy) -> None:
        super().__init__("mappo stochastic", policy.spec)
        self.policy, self.hidden = policy, None

    def begin(self, ts, episode_index, generator) -> None:
        self.hidden = None

    def act(self, ts, generator):
        actions, self.hidden = self.policy.sample(ts.obs, ts.avail, self.hidden, False, generator)
        return actions, None


def save_checkpoint(path: Path, learner: MAPPOLearner, meta: dict[str, Any]) -> Path:
    """``path`` (tensors + numbers, loadable with weights_only=True) and ``path.json`` (meta)."""
    payload = {"format": CHECKPOINT_FORMAT, "spec": learner.policy.spec.to_dict(), "config": config_dict(learner.config),
               "agent": learner.policy.agent.state_dict(), "critic": learner.critic.state_dict(),
               "value_norm": learner.value_norm.state_dict(), **scalars(meta)}
    return write_checkpoint(path, payload, meta)


# ------------------------------------------------------------------ training
def train_mappo(config: MAPPOOnlineConfig, out: str | Path, *, verbose: bool = False) -> dict[str, Any]:
    """Train MAPPO online (module docstring); returns a summary (also written to ``out/summary.json``)."""
    from lit_omarl.behaviour.qmix_online import EpisodeBuffer

    run = DiscreteRun(config, out, "mappo_online", test_num_envs=min(config.num_envs, config.eval_episodes),
                      config_extra={"algorithm": "mappo"}, verbose=verbose)
    env, writer = run.env, run.writer
    learner = MAPPOLearner(run.spec, config)
    sampler = _Sampler(learner.policy)
    buffer = EpisodeBuffer(config.buffer_size, run.spec)
    if config.init_from:
        ckpt = load_continuation(Path(config.init_from), CHECKPOINT_FORMAT, "mappo_online", run.spec.to_dict(), config,
                                 ("agent_hidden_dim", "critic_hidden_dim"))
        learner.policy.agent.load_state_dict(ckpt["agent"])
        learner.critic.load_state_dict(ckpt["critic"])
        learner.value_norm.load_state_dict(ckpt["value_norm"])
        run.continue_at(int(ckpt["env_steps"]), int(ckpt["episodes"]), int(ckpt["updates"]),
                        float(ckpt.get("minutes", 0.0)))
    run.begin(learner.policy, buffer, lambda path, meta: save_checkpoint(path, learner, meta))
    while run.keep_going():
        with torch.no_grad():
            raw = rollout(env, sampler, torch.arange(run.episodes, run.episodes + env.num_envs), run.gen)
        buffer.add(raw)
        run.steps += int(raw["filled"].sum())
        run.episodes += env.num_envs
        if config.anneal_lr:
            learner.set_lr_fraction(1.0 - run.steps / config.env_steps)
        stats = learner.update(trim(raw), run.gen)
        run.updates += 1
        steps = run.steps
        writer.add_scalar("train/return", float(raw["reward"].sum(1).mean()), steps)
        if "won" in raw:
            writer.add_scalar("train/win_rate", float(raw["won"].float().mean()), steps)
        for name, value in stats.items():
            writer.add_scalar(f"train/{name}", value, steps)
        writer.add_scalar("train/lr", learner.actor_optimizer.param_groups[0]["lr"], steps)
        writer.add_scalar("perf/env_steps_per_sec", steps / max(time.perf_counter() - run.start, 1e-9), steps)
    return run.finish({"algorithm": "mappo"})


# ------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> dict[str, Any]:
    d = MAPPOOnlineConfig()
    p = argparse.ArgumentParser(prog="python -m lit_omarl.behaviour.mappo_online", description=__doc__.split("\n\n")[0])
    p.add_argument("--map", default="2s3z", help="SMAX map (env smax/<map>); or --env for any env id")
    p.add_argument("--env", default=None, help="env id (overrides --map)")
    add_run_args(p, d)
    for name in ("num_envs", "epochs", "minibatches", "agent_hidden_dim", "critic_hidden_dim", "eval_every",
                 "eval_episodes", "checkpoint_every", "buffer_size", "threads"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("gamma", "gae_lambda", "lr", "critic_lr", "clip", "entropy_coef", "grad_clip_norm", "stop_at_win_rate"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--no-value-norm", action="store_true", help="train the critic on raw returns")
    p.add_argument("--anneal-lr", action="store_true", help="decay the learning rates linearly to 0 at --env-steps")
    p.add_argument("--milestones", type=floats, default=d.milestones, help="comma-separated test win rates")
    p.add_argument("--replay-milestones", type=floats, default=d.replay_milestones)
    p.add_argument("--init-from", default="", help="continue from this checkpoint of an earlier run (weights, value "
                   "normalisation and counters; fresh optimizer state and episode FIFO)")
    a = p.parse_args(argv)
    fields = {k: getattr(a, k) for k in ("env_steps", "max_minutes", "seed", "num_envs", "epochs", "minibatches",
                                         "agent_hidden_dim", "critic_hidden_dim", "eval_every", "eval_episodes",
                                         "checkpoint_every", "buffer_size", "threads", "gamma", "gae_lambda", "lr",
                                         "critic_lr", "clip", "entropy_coef", "grad_clip_norm", "stop_at_win_rate",
                                         "milestones", "replay_milestones")}
    config = MAPPOOnlineConfig(env_id=a.env or f"smax/{a.map}", value_norm=not a.no_value_norm, anneal_lr=a.anneal_lr,
                               init_from=str(Path(a.init_from).resolve()) if a.init_from else "", **fields)
    return run_and_print(train_mappo, config, a.out)


if __name__ == "__main__":
    main()
