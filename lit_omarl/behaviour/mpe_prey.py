"""Training the fixed prey of MPE predator-prey (simple_tag) and world (simple_world_comm).

OMAR / CFCQL (REFERENCE.md) evaluate their predators against a fixed,
pretrained DDPG prey that ships with OMAR's datasets; we do not have it. This
module trains our own prey with :mod:`lit_omarl.behaviour.matd3_online` (TD3
with a centralised critic; one learning agent per prey) in the prey's view of
the task (:class:`PreyView`): the prey are the learning agents, the predators
follow a fixed policy:

* ``"chase"`` (default): scripted pursuit. Each predator runs towards the
  nearest prey it sees (its observation's relative prey position), with a
  per-episode random lead (aims at prey position + k * prey velocity, k
  uniform in [0, 0.5]: some predators intercept, some follow) and per-step
  Gaussian noise (std 0.3) on the direction; in world the leader says nothing.
* ``"random"``: uniform actions;
* a ``matd3_online`` checkpoint of the predators (path or shipped name).

:func:`export_prey` converts a trained actor (agent 0's network) into the
``lit_omarl-prey-v1`` weights file of :class:`lit_omarl.envs.mpe.MLPPreyPolicy`;
the shipped one lives in ``lit_omarl/assets/behaviour/mpe_prey/<task>.pt``
and is selected with ``make("mpe/simple_tag", prey_policy="pretrained")``.

Command (the shipped prey; README in the assets folder)::

    python -m lit_omarl.behaviour.mpe_prey --task simple_tag --env-steps 1000000 --out runs/prey_tag --seed 0 \\
        --export lit_omarl/assets/behaviour/mpe_prey/simple_tag.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from lit_omarl.envs.base import BatchedEnv, TimeStep
from lit_omarl.spec import EnvSpec

# where each predator's relative prey positions are in its observation: (start, number of prey)
PREDATOR_PREY_REL = {"simple_tag": (12, 1), "simple_world_comm": (20, 2)}
# where the prey velocities are (tag: prey vel after the positions; world: the good agents' velocities)
PREDATOR_PREY_VEL = {"simple_tag": 14, "simple_world_comm": 24}


class _ExternalPrey:
    """A prey policy whose actions are set from outside before each step (used by :class:`PreyView`)."""

    name = "external"
    action_mode = "xy"

    def __init__(self) -> None:
        self.next_actions: torch.Tensor | None = None

    def begin(self, task: Any, num_envs: int, generator: torch.Generator) -> None:
        pass

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        assert self.next_actions is not None
        return self.next_actions


class ChasePredators:
    """Scripted pursuit for the predators (module docstring); ``act(obs [B, N, O]) -> [B, N, A]``."""

    def __init__(self, task: str, n_predators: int, n_actions: int, noise: float = 0.3, max_lead: float = 0.5) -> None:
        self.task, self.n, self.a = task, n_predators, n_actions
        self.noise, self.max_lead = float(noise), float(max_lead)
        self.lead = torch.zeros(0)

    def begin(self, num_envs: int, generator: torch.Generator) -> None:
        self.lead = torch.rand(num_envs, self.n, 1, generator=generator) * self.max_lead

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        start, m = PREDATOR_PREY_REL[self.task]
        rel = obs[..., start:start + 2 * m].reshape(*obs.shape[:-1], m, 2)
        vel_at = PREDATOR_PREY_VEL[self.task]
        vel = obs[..., vel_at:vel_at + 2 * m].reshape(*obs.shape[:-1], m, 2)
        d = rel.norm(dim=-1)
        d = torch.where(d > 0, d, torch.full_like(d, float("inf")))  # (0, 0) = hidden in a forest
        k = d.argmin(-1, keepdim=True)
        target = rel.gather(-2, k[..., None].expand(*k.shape, 2)).squeeze(-2)
        target_vel = vel.gather(-2, k[..., None].expand(*k.shape, 2)).squeeze(-2)
        seen = torch.isfinite(d.min(-1).values)[..., None]
        direction = target + self.lead * target_vel
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        direction = direction + self.noise * torch.randn(direction.shape, generator=generator)
        direction = torch.where(seen, direction, 0.5 * torch.randn(direction.shape, generator=generator))
        out = torch.zeros(*obs.shape[:-1], self.a)
        out[..., :2] = direction.clamp(-1, 1)
        return out


class _RandomPredators:
    def __init__(self, n_actions_mask: torch.Tensor) -> None:
        self.mask = n_actions_mask.float()

    def begin(self, num_envs: int, generator: torch.Generator) -> None:
        pass

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return (torch.rand(*obs.shape[:-1], self.mask.shape[-1], generator=generator) * 2 - 1) * self.mask


class _PolicyPredators:
    def __init__(self, ref: str) -> None:
        from lit_omarl.behaviour.matd3_online import load_actor

        self.policy = load_actor(ref)

    def begin(self, num_envs: int, generator: torch.Generator) -> None:
        pass

    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.policy.act(obs)[0]


class PreyView(BatchedEnv):
    """``mpe/<task>`` seen by its prey: the prey are the agents, the predators follow ``predators``.

    obs [B, M, O_prey] (the prey observations), state = the task's state,
    actions [B, M, 2] ("xy" in [-1, 1]), team reward = mean of the prey's
    mpe2 rewards (tag: -10 per contact and a border penalty).
    """

    def __init__(self, task: str = "simple_tag", num_envs: int = 1, seed: int = 0, predators: str = "chase") -> None:
        from lit_omarl.envs.mpe import PREY_TASKS, MPEEnv

        if task not in PREDATOR_PREY_REL:
            raise ValueError(f"mpe_prey: task must be one of {', '.join(PREDATOR_PREY_REL)}, got {task!r}")
        self.external = _ExternalPrey()
        self.inner = MPEEnv(task, num_envs, seed, prey_policy=self.external)
        sc = self.inner.scenario
        self.task, self.prey_task = task, PREY_TASKS[task]
        self.preys = list(sc.preys)
        if predators == "chase":
            self.predators: Any = ChasePredators(task, len(sc.learners), self.inner.spec.n_actions)
        elif predators == "random":
            self.predators = _RandomPredators(self.inner.action_mask)
        else:
            self.predators = _PolicyPredators(predators)
        m = len(self.preys)
        spec = EnvSpec(env_id=f"mpe_prey/{task}", n_agents=m, obs_dim=self.prey_task.obs_dim,
                       state_dim=self.inner.spec.state_dim, n_actions=2, action_type="continuous",
                       episode_limit=self.inner.spec.episode_limit, env_options={"predators": predators},
                       action_low=-1.0, action_high=1.0)
        super().__init__(spec, num_envs, seed)
        self.generator = self.inner.generator  # one stream for the world and the predators' noise
        self.action_mask = torch.ones(m, 2, dtype=torch.bool)
        self._pred_obs: torch.Tensor | None = None

    def _view(self, ts: TimeStep) -> TimeStep:
        self._pred_obs = ts.obs
        prey_obs = self.inner._prey_obs.float()
        reward = self.inner.all_rewards[:, self.preys].mean(-1)
        return TimeStep(obs=prey_obs, state=ts.state, avail=torch.ones(self.num_envs, len(self.preys), 2, dtype=torch.bool),
                        reward=reward, terminated=torch.zeros(self.num_envs, dtype=torch.bool),
                        truncated=torch.zeros(self.num_envs, dtype=torch.bool))

    def _reset(self) -> TimeStep:
        ts = self.inner.reset()
        self.predators.begin(self.num_envs, self.generator)
        return self._view(ts)

    def _step(self, actions: torch.Tensor) -> TimeStep:
        self.external.next_actions = actions.detach().float().clamp(-1, 1)
        pred = self.predators.act(self._pred_obs, self.generator)
        return self._view(self.inner.step(pred))


def export_prey(checkpoint: str | Path, task: str, dst: str | Path, agent: int = 0, meta: dict | None = None) -> Path:
    """Agent ``agent``'s actor of a ``matd3_online`` checkpoint trained in :class:`PreyView` as a
    ``lit_omarl-prey-v1`` file (an :class:`~lit_omarl.envs.mpe.MLPPreyPolicy`, "xy" actions)."""
    from lit_omarl.behaviour.matd3_online import MATD3Policy
    from lit_omarl.envs.mpe import PREY_TASKS, MLPPreyPolicy

    policy = MATD3Policy.load(checkpoint)
    if policy.spec.env_id != f"mpe_prey/{task}":
        raise ValueError(f"{checkpoint}: a checkpoint of {policy.spec.env_id!r}, not of the prey of {task} (mpe_prey/{task})")
    layers = policy.actor.mlp.layers
    prey = MLPPreyPolicy(task, PREY_TASKS[task].obs_dim, 2, [layers[0].weight.shape[-1], layers[1].weight.shape[-1]], "xy")
    linear = [m for m in prey.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, ens in zip(linear, layers):
            lin.weight.copy_(ens.weight[agent].T)
            lin.bias.copy_(ens.bias[agent])
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return prey.save(dst, meta=dict(meta or {}))


def predator_returns(task: str, prey: str, predators: str, episodes: int = 1000, seed: int = 12345,
                     batch: int = 250) -> dict[str, float]:
    """Mean (std) team return of the ``predators`` ("chase", "random" or a checkpoint) against ``prey`` (any
    ``prey_policy`` value) in ``mpe/<task>``, over ``episodes`` episodes (batch k seeded seed + k)."""
    from lit_omarl.behaviour.matd3_online import episode_returns
    from lit_omarl.envs import make

    env = make(f"mpe/{task}", num_envs=min(batch, episodes), seed=0, prey_policy=prey)
    g = torch.Generator().manual_seed(seed)
    if predators == "chase":
        pol: Any = ChasePredators(task, env.spec.n_agents, env.spec.n_actions)
    elif predators == "random":
        pol = _RandomPredators(env.action_mask)
    else:
        pol = _PolicyPredators(predators)
    pol.begin(env.num_envs, g)  # chase: one draw of per-predator leads for all batches
    ret, _ = episode_returns(lambda obs: pol.act(obs, g), env, episodes, seed)
    return {"return": float(ret.mean()), "std": float(ret.std(unbiased=False)), "episodes": episodes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from lit_omarl.behaviour.matd3_online import MATD3OnlineConfig, train_matd3

    p = argparse.ArgumentParser(prog="python -m lit_omarl.behaviour.mpe_prey", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="simple_tag", choices=sorted(PREDATOR_PREY_REL))
    p.add_argument("--predators", default="chase", help="chase, random, or a matd3_online checkpoint of the predators")
    p.add_argument("--env-steps", type=int, default=1_000_000)
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=25_000)
    p.add_argument("--export", help="write the final prey (lit_omarl-prey-v1) there")
    a = p.parse_args(argv)
    config = MATD3OnlineConfig(env_id=f"mpe_prey/{a.task}", env_options={"predators": a.predators}, env_steps=a.env_steps,
                               max_minutes=a.max_minutes, seed=a.seed, num_envs=a.num_envs, eval_every=a.eval_every,
                               checkpoint_every=a.eval_every)

    def make_env(num_envs: int, seed: int) -> PreyView:
        return PreyView(a.task, num_envs, seed, a.predators)

    summary = train_matd3(config, a.out, verbose=True, make_env=make_env)
    if a.export:
        meta = {"trained_by": "python -m lit_omarl.behaviour.mpe_prey " + " ".join(argv if argv is not None else sys.argv[1:]),
                "task": a.task, "predators": a.predators, "seed": a.seed, "env_steps": summary["env_steps"],
                "final_test_return": summary["final_return"]}
        export_prey(Path(a.out) / "final.pt", a.task, a.export, meta=meta)
        print(f"wrote {a.export}")
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}))
    return summary


if __name__ == "__main__":
    main()
