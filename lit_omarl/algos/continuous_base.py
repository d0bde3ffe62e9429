"""What the continuous-action learners share (not registered themselves).

:class:`ContinuousModule` adapts the :class:`OfflineMARLModule` contract to
continuous actions: ``act()`` returns float actions [B, N, A] inside
``[spec.action_low, spec.action_high]`` (``avail`` is ignored: every action
is available), the previous action fed to the agent network is the previous
action vector, and padded action dims (agents with fewer dims,
``agent_action_dims``) are held at 0 everywhere.

:class:`ContinuousActorCritic` adds the deterministic per-agent actors
(tanh-squashed to the bounds) and their soft-updated targets used by
CFCQL-C, MACQL-C, OMAR-C / ICQL-C and MATD3+BC; subclasses build their
critics and write ``training_step``.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from lit_omarl.algos.base import AgentType, Batch, OfflineMARLModule
from lit_omarl.nets.continuous import ContinuousAgentInputs, clip_grad_norm_per_agent, make_actor, squash


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into ``module``'s parameters (an actor loss backpropagates through the critic)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class ContinuousModule(OfflineMARLModule):
    """Base of the continuous-action algorithms: float actions, bounds, padded dims, act().

    Args:
        spec: the dataset's EnvSpec as a dict (``action_type="continuous"``).
        agent_action_dims: real action size of each agent when some agents
            have fewer dims than ``spec.n_actions`` (their tail is padding, 0
            in the data and ignored by the env; MPE world's speaking leader);
            None = every agent uses all ``spec.n_actions`` dims.
        exploration_noise: std of the Gaussian noise (in units of half the
            action range) added by ``act(deterministic=False)`` (the code's
            ``gaussian_noise_std`` 0.1).
        normalize_inputs: standardise observations (per agent and feature) and
            the state (per feature) with the dataset's mean and std + 1e-3 over
            its valid steps (TD3+BC's state normalisation), in every training
            batch and in ``act()``. The statistics are computed from
            ``trainer.datamodule.input_statistics()`` at the start of every fit
            and kept in the checkpoint (buffers ``obs_shift`` / ``obs_scale`` /
            ``state_shift`` / ``state_scale``). OUR CHOICE for the MaMuJoCo
            configs, whose observations have features of std 0.1 to 10.
        **kwargs: arguments of :class:`OfflineMARLModule`.
    """

    supports_discrete = False
    supports_continuous = True
    # agent networks this algorithm accepts (read by the contract test)
    agent_types: tuple[str, ...] = ("mlp", "rnn")

    def __init__(
        self,
        spec: dict | None = None,
        agent_action_dims: list[int] | None = None,
        exploration_noise: float = 0.1,
        normalize_inputs: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        if self.hparams.agent not in self.agent_types:
            raise ValueError(f"{type(self).__name__} supports agent in {list(self.agent_types)}, got {self.hparams.agent!r}")
        if not s.action_high > s.action_low:
            raise ValueError(f"spec.action_high ({s.action_high}) must exceed spec.action_low ({s.action_low})")
        if exploration_noise < 0:
            raise ValueError(f"exploration_noise must be >= 0, got {exploration_noise}")
        self.agent_inputs = ContinuousAgentInputs(
            s.obs_dim, s.n_agents, s.n_actions, self.hparams.use_agent_id, self.hparams.use_last_action
        )
        dims = [s.n_actions] * s.n_agents if agent_action_dims is None else [int(d) for d in agent_action_dims]
        if len(dims) != s.n_agents or not all(1 <= d <= s.n_actions for d in dims):
            raise ValueError(f"agent_action_dims must list {s.n_agents} sizes in [1, {s.n_actions}], got {agent_action_dims!r}")
        self.register_buffer("action_mask", (torch.arange(s.n_actions)[None] < torch.tensor(dims)[:, None]).float(), persistent=False)
        self.low, self.high = float(s.action_low), float(s.action_high)
        self.half_range = 0.5 * (self.high - self.low)
        if normalize_inputs:  # only then: checkpoints of unnormalised models keep their keys
            self.register_buffer("obs_shift", torch.zeros(s.n_agents, s.obs_dim))
            self.register_buffer("obs_scale", torch.ones(s.n_agents, s.obs_dim))
            self.register_buffer("state_shift", torch.zeros(s.state_dim))
            self.register_buffer("state_scale", torch.ones(s.state_dim))

    # ---- input normalisation ---------------------------------------------------
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if not self.hparams.normalize_inputs:
            return
        stats = getattr(getattr(self.trainer, "datamodule", None), "input_statistics", None)
        if stats is None:
            raise RuntimeError(f"{type(self).__name__}(normalize_inputs=True) takes its statistics from "
                               "trainer.datamodule.input_statistics(); fit with lit_omarl's OfflineDataModule")
        values = stats()
        for name, key in (("obs_shift", "obs_mean"), ("obs_scale", "obs_std"), ("state_shift", "state_mean"),
                          ("state_scale", "state_std")):
            getattr(self, name).copy_(values[key].to(getattr(self, name)))

    def transform_batch(self, batch: Batch) -> Batch:
        if not self.hparams.normalize_inputs:
            return batch
        return {**batch, "obs": (batch["obs"] - self.obs_shift) / self.obs_scale,
                "state": (batch["state"] - self.state_shift) / self.state_scale}

    # ---- actions ---------------------------------------------------------------
    def squash(self, u: torch.Tensor) -> torch.Tensor:
        """Pre-tanh outputs [..., N, A] -> actions in [low, high], padded dims 0."""
        return squash(u, self.low, self.high) * self.action_mask

    def normalized(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions mapped to [-1, 1] (identity for bounds [-1, 1])."""
        return (actions - 0.5 * (self.low + self.high)) / self.half_range

    def _continuous_actions(self, inputs: torch.Tensor, h: Any, deterministic: bool) -> tuple[torch.Tensor, Any]:
        """inputs [B, N, in] -> (actions [B, N, A] in bounds, new hidden state of the acting network)."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: torch.Tensor, avail: torch.Tensor | None = None, hidden: Any = None,
            deterministic: bool = True) -> tuple[torch.Tensor, Any]:
        """Decentralised continuous actions: obs [B, N, O] -> (float [B, N, A] within the bounds, hidden).

        ``avail`` is ignored (continuous actions are all available).
        ``deterministic`` = the policy's own action (the papers' evaluation);
        False adds the algorithm's exploration noise.
        """
        out_device = obs.device if isinstance(obs, torch.Tensor) else torch.device("cpu")
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self.hparams.normalize_inputs:
            obs = (obs - self.obs_shift) / self.obs_scale
        if hidden is None:
            hidden = {"h": None, "last_action": obs.new_zeros(*obs.shape[:2], self.spec.n_actions)}
        actions, h = self._continuous_actions(self.agent_inputs.build(obs, hidden["last_action"]), hidden["h"], deterministic)
        return actions.to(out_device), {"h": h, "last_action": actions}


class ContinuousActorCritic(ContinuousModule):
    """Deterministic per-agent actors pi_i(tau_i) -> tanh-squashed actions, with soft-updated targets.

    The actor is one 3-layer ReLU MLP (or GRU agent) per agent, as the OMAR /
    CFCQL-C code (``shared_actor=True``: one network, agent id in the inputs);
    its last layer starts in [-3e-3, 3e-3]. Subclasses create ``self.critic``
    and ``self.target_critic`` and return the critic optimizer first from
    ``configure_optimizers`` (it counts the global steps); the actor's is
    stepped raw.

    Args:
        spec: the dataset's EnvSpec as a dict.
        actor_lr: Adam learning rate of the actors.
        critic_lr: Adam learning rate of the critics.
        tau: soft target update rate.
        grad_clip_norm: gradient-norm clip of each agent's actor (and of the
            critics), <= 0 disables (code: 0.5).
        shared_actor: one actor network for all agents.
        critic_hidden_dim: hidden units of the critics (code: 64 MPE, 256 MaMuJoCo).
        n_critics: critics per ensemble (2 = TD3's twin critics).
        agent, agent_hidden_dim, use_agent_id, use_last_action, gamma: see
            :class:`OfflineMARLModule` (here MLP actors, hidden 64, no last
            action, gamma 0.95 by default: the OMAR / CFCQL code's MPE setting).
        **kwargs: arguments of :class:`ContinuousModule` / :class:`OfflineMARLModule`.
    """

    def __init__(
        self,
        spec: dict | None = None,
        actor_lr: float = 1e-3,
        critic_lr: float = 1e-3,
        tau: float = 0.01,
        grad_clip_norm: float = 0.5,
        shared_actor: bool = False,
        critic_hidden_dim: int = 64,
        n_critics: int = 2,
        agent: AgentType = "mlp",
        agent_hidden_dim: int | None = 64,
        use_last_action: bool = False,
        gamma: float = 0.95,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, agent=agent, agent_hidden_dim=agent_hidden_dim, use_last_action=use_last_action,
                         gamma=gamma, **kwargs)
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if n_critics < 1:
            raise ValueError(f"n_critics must be >= 1, got {n_critics}")
        s = self.spec
        self.actor = make_actor(agent, shared_actor, s.n_agents, self.agent_inputs.dim, s.n_actions, agent_hidden_dim)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        return [
            torch.optim.Adam(self.critic.parameters(), lr=hp.critic_lr),  # main: counts global steps
            torch.optim.Adam(self.actor.parameters(), lr=hp.actor_lr),
        ]

    def _continuous_actions(self, inputs: torch.Tensor, h: Any, deterministic: bool) -> tuple[torch.Tensor, Any]:
        u, h = self.actor.step(inputs, h)
        actions = self.squash(u)
        if not deterministic and self.hparams.exploration_noise > 0:
            noise = torch.randn_like(actions) * (self.hparams.exploration_noise * self.half_range)
            actions = (actions + noise).clamp(self.low, self.high) * self.action_mask
        return actions, h

    # ---- training helpers ----------------------------------------------------
    def policy_outputs(self, net: torch.nn.Module, batch: Batch, include_last_obs: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions [B, T, N, A] in bounds, normalised actions in [-1, 1]) of an actor over the batch's steps."""
        u, _ = net.forward_seq(self.sequence_inputs(batch, include_last_obs=include_last_obs))
        actions = self.squash(u)
        return actions, self.normalized(actions)

    def step_critic(self, loss: torch.Tensor, per_agent_clip_net: torch.nn.Module | None = None) -> None:
        """Critic update through Lightning's wrapper (one global step), with the critic's gradient clip."""
        opt = self.main_optimizer()
        clip = self.hparams.grad_clip_norm
        if per_agent_clip_net is None:
            self.optimise(opt, loss, clip)
            return
        opt.zero_grad()
        self.manual_backward(loss)
        if clip > 0:
            clip_grad_norm_per_agent(per_agent_clip_net, self.spec.n_agents, clip)
        opt.step()

    def step_actor(self, loss: torch.Tensor) -> None:
        """Actor update on the raw secondary optimizer (no global step), each agent's gradient clipped separately.

        Compute ``loss`` inside ``with frozen(self.critic):`` so no gradient is spent on the critic."""
        opt = self.raw_optimizer(1)
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip_norm > 0:
            clip_grad_norm_per_agent(self.actor, self.spec.n_agents, self.hparams.grad_clip_norm)
        opt.step()
