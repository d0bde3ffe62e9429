"""What every lit_omarl algorithm shares, and the QMIX learner of CFCQL / MACQL.

:class:`OfflineMARLModule` is the LightningModule contract of docs/CONTRACTS.md:
dataset dimensions arrive as ``spec`` (linked by LightningCLI from the
DataModule), optimisation is manual, ``act()`` is the decentralised execution
API used by evaluation and dataset generation, ``configure_callbacks()``
attaches the evaluation callback and the reliability callbacks (exact resume,
NaN/inf guard; docs/RELIABILITY.md), capability flags and the evaluation
environment are checked before training, and an optional behaviour model is
pre-trained in ``on_train_start``.

:class:`ConservativeQMIX` is a QMIX learner (shared-parameter agent network +
mixer, target networks, double-Q TD(lambda) targets) whose conservative
regulariser is left to subclasses (:mod:`cfcql`, :mod:`macql`).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F

from lit_omarl.data.datamodule import BatchGroup
from lit_omarl.algos.losses import (
    NEG_INF,
    bc_nll,
    conservative_td_loss,
    ensure_some_available,
    masked_mean,
    td_lambda_targets,
)
from lit_omarl.nets.agents import AgentInputs, make_agent
from lit_omarl.nets.mixers import make_mixer
from lit_omarl.spec import EnvSpec
from lit_omarl.utils.nonfinite import check_finite_metrics
from lit_omarl.utils.rng import CheckpointedGenerator

log = logging.getLogger(__name__)

AgentType = Literal["rnn", "mlp"]
Batch = dict[str, torch.Tensor]


# name -> class of every algorithm; filled by @register_algorithm when lit_omarl.algos is imported
ALGORITHMS: dict[str, type["OfflineMARLModule"]] = {}


def register_algorithm(name: str):
    """Class decorator: make an algorithm known by ``name`` (contract test, CLI, reproductions)."""

    def decorate(cls: type) -> type:
        if name in ALGORITHMS and ALGORITHMS[name] is not cls:
            raise ValueError(f"algorithm name {name!r} registered twice ({ALGORITHMS[name].__name__}, {cls.__name__})")
        ALGORITHMS[name] = cls
        return cls

    return decorate


class OfflineMARLModule(L.LightningModule):
    """Base class of offline cooperative MARL algorithms.

    Subclasses build their networks in ``__init__`` (after ``super().__init__``),
    implement ``configure_optimizers``, ``training_step`` and ``_policy_step``,
    and may override ``_select_actions`` (default: greedy over available actions).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec`` by
            LightningCLI; stored in checkpoints as a plain dict).
        gamma: discount factor.
        agent: per-agent network: "rnn" (fc-GRU-fc, needs whole episodes) or
            "mlp" (3-layer MLP).
        agent_hidden_dim: hidden size of the agent network; None = 64 for
            "rnn", 256 for "mlp".
        use_agent_id: append the agent id one-hot to each agent's input.
        use_last_action: append the previous action one-hot (pymarl
            convention; needs episode sampling).
        eval_every_steps: evaluate every this many gradient steps; <= 0
            disables evaluation (no callback).
        eval_episodes: episodes of each periodic evaluation.
        final_eval_episodes: episodes of the evaluation at the end of training.
        eval_deterministic: evaluate the greedy policy (True) or sample it
            (False); None = the algorithm's default.
        seed: seed of the algorithm's own random streams and of evaluation.
    """

    # Attributes that only ever hold plain values, set on every update: Lightning sets
    # ``_current_fx_name`` around each hook call (~30 times per update) and ``log_train`` keeps a
    # few counters. ``nn.Module.__setattr__`` checks every value against parameters, buffers and
    # submodules on every call; these skip it.
    _PLAIN_ATTRS = frozenset({"_current_fx_name", "_batch_step", "_perf_dt", "_perf_last"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in OfflineMARLModule._PLAIN_ATTRS:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every ``training_step`` also takes a :class:`~lit_omarl.data.datamodule.BatchGroup`
        (``data.updates_per_step`` > 1): one update per batch of the group, stopping at ``max_steps``."""
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("training_step")
        if step is None or getattr(step, "_takes_groups", False):
            return

        @functools.wraps(step)
        def training_step(self: OfflineMARLModule, batch: Any, batch_idx: int) -> Any:
            if not isinstance(batch, BatchGroup):
                return step(self, self.transform_batch(batch), batch_idx)
            max_steps = self.trainer.max_steps if self._trainer is not None else -1
            for one in batch:
                if max_steps is not None and 0 <= max_steps <= self.trainer.global_step:
                    break
                step(self, self.transform_batch(one), batch_idx)
            return None

        training_step._takes_groups = True  # type: ignore[attr-defined]
        cls.training_step = training_step  # type: ignore[method-assign]

    supports_discrete: bool = True
    supports_continuous: bool = False
    #: True for decentralised learners that train each agent on its own inputs only: they may be fitted on
    #: per-agent datasets (``data.agent_paths``, reward / terminated [B, L, N]); the data module refuses others.
    accepts_agent_datasets: bool = False
    default_eval_deterministic: bool = True

    def __init__(
        self,
        spec: dict | None = None,
        gamma: float = 0.99,
        agent: AgentType = "rnn",
        agent_hidden_dim: int | None = None,
        use_agent_id: bool = True,
        use_last_action: bool = True,
        eval_every_steps: int = 1000,
        eval_episodes: int = 32,
        final_eval_episodes: int = 128,
        eval_deterministic: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if spec is None:
            raise ValueError(
                f"model.spec is not set: {type(self).__name__} needs the dataset's EnvSpec. "
                "With lit-omarl fit it is linked from data.spec; in Python pass spec=datamodule.spec.to_dict()."
            )
        self.spec = EnvSpec.from_dict(spec)
        self.save_hyperparameters()  # collects the arguments of the whole __init__ chain
        self.hparams["spec"] = self.spec.to_dict()  # a dict, never an object, in checkpoints
        if hasattr(self, "_hparams_initial"):
            self._hparams_initial["spec"] = self.spec.to_dict()
        self._check_action_type(self.spec)
        if agent not in ("rnn", "mlp"):
            raise ValueError(f"agent must be 'rnn' or 'mlp', got {agent!r}")
        self.automatic_optimization = False
        self.agent_inputs = AgentInputs(
            self.spec.obs_dim, self.spec.n_agents, self.spec.n_actions, use_agent_id, use_last_action
        )
        # Set once the behaviour model is trained, saved in checkpoints so a resumed run skips pre-training.
        self.register_buffer("behaviour_trained", torch.zeros((), dtype=torch.bool))
        self._perf_last: float | None = None
        self._batch_step = 0
        self._train_loop_started = False
        self._perf_dt: float | None = None
        # sequence_inputs of the current batch, per include_last_obs (see sequence_inputs)
        self._inputs_cache: dict[bool, tuple] = {}

    # ---- capabilities ------------------------------------------------------
    @property
    def requires_episodes(self) -> bool:
        """True when training needs whole episodes (recurrent agent or last-action inputs)."""
        return self.hparams.agent == "rnn" or self.hparams.use_last_action

    @property
    def eval_deterministic(self) -> bool:
        value = self.hparams.eval_deterministic
        return self.default_eval_deterministic if value is None else bool(value)

    def _check_action_type(self, spec: EnvSpec) -> None:
        ok = self.supports_discrete if spec.discrete else self.supports_continuous
        if not ok:
            raise ValueError(
                f"{type(self).__name__} does not support {spec.action_type} actions "
                f"(task {spec.env_id!r}); choose an algorithm with supports_{spec.action_type} = True"
            )

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._check_eval_env()
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        data_spec = getattr(dm, "spec", None)
        if data_spec is not None:
            data_spec = EnvSpec.from_dict(data_spec)
            self._check_action_type(data_spec)
            keys = ("n_agents", "obs_dim", "state_dim", "n_actions", "action_type")
            diff = {k: (getattr(self.spec, k), getattr(data_spec, k)) for k in keys}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            if diff:
                raise ValueError(f"model.spec does not match the datamodule's spec (model, data): {diff}")
        if getattr(dm, "sampling", "episode") == "transition" and self.requires_episodes:
            raise ValueError(
                f"{type(self).__name__} with agent={self.hparams.agent!r}, "
                f"use_last_action={self.hparams.use_last_action} needs whole episodes: "
                "use data.sampling='episode' (or agent='mlp' and use_last_action=False)"
            )

    def _check_eval_env(self) -> None:
        """Fail before training, not at the first evaluation, when the data's env cannot be evaluated."""
        if self.hparams.eval_every_steps <= 0 and self.hparams.final_eval_episodes <= 0:
            return
        from lit_omarl.envs import make

        spec = self.spec
        hint = "(or train without evaluation: model.init_args.eval_every_steps=0 and final_eval_episodes=0)"
        try:
            env_spec = make(spec.env_id, num_envs=1, seed=0, **(spec.env_options or {})).spec
        except (ValueError, TypeError) as err:
            raise ValueError(f"evaluation needs the dataset's environment {spec.env_id!r}, which cannot be built: {err} {hint}") from None
        keys = ("n_agents", "obs_dim", "state_dim", "n_actions", "action_type")
        diff = [f"{k}: dataset {getattr(spec, k)}, environment {getattr(env_spec, k)}" for k in keys
                if getattr(spec, k) != getattr(env_spec, k)]
        if diff:
            raise ValueError(f"the dataset's spec does not match its environment {spec.env_id!r} used for evaluation "
                             f"({'; '.join(diff)}) {hint}")

    def _checkpointed_rngs(self) -> list[CheckpointedGenerator]:
        return [v for v in vars(self).values() if isinstance(v, CheckpointedGenerator)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Saves the state of every CheckpointedGenerator attribute (sampling streams of MACQL, OMAR, AWAC...)."""
        for rng in self._checkpointed_rngs():
            rng.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restores the CheckpointedGenerator attributes; refuses, naming the checkpoint, to resume a
        model trained on data of other dimensions."""
        for rng in self._checkpointed_rngs():
            rng.load(checkpoint)
        saved = (checkpoint.get("hyper_parameters") or {}).get("spec")
        if not saved:
            return
        saved = EnvSpec.from_dict(saved)
        keys = ("n_agents", "obs_dim", "state_dim", "n_actions", "action_type")
        diff = [f"{k}: checkpoint {getattr(saved, k)}, data {getattr(self.spec, k)}" for k in keys
                if getattr(saved, k) != getattr(self.spec, k)]
        if diff:
            where = getattr(self._trainer, "ckpt_path", None) if self._trainer is not None else None
            raise ValueError(f"{where or 'checkpoint'}: trained on data of other dimensions than this run's "
                             f"({'; '.join(diff)}); resume on the dataset it was trained on, or start a new run")

    # ---- evaluation ----------------------------------------------------------
    def configure_callbacks(self) -> list[L.Callback]:
        from lit_omarl.utils.nonfinite import NonFiniteGuard
        from lit_omarl.utils.resume import ExactResume

        # ExactResume first: it restores the global RNG before the evaluation callback's hooks run
        guards: list[L.Callback] = [ExactResume(), NonFiniteGuard()]
        if self.hparams.eval_every_steps <= 0 and self.hparams.final_eval_episodes <= 0:
            return guards  # no periodic and no final evaluation
        from lit_omarl.eval.callback import EvaluationCallback

        return guards + [
            EvaluationCallback(
                every_n_steps=self.hparams.eval_every_steps,
                episodes=self.hparams.eval_episodes,
                final_episodes=self.hparams.final_eval_episodes,
                deterministic=self.eval_deterministic,
                seed=self.hparams.seed,
            )
        ]

    # ---- decentralised execution ---------------------------------------------
    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        """One step of the acting network: inputs [B, N, in] -> (Qs or logits [B, N, A], h)."""
        raise NotImplementedError

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Greedy over available actions (Q-learners act greedily, epsilon 0)."""
        return out.masked_fill(~avail, -math.inf).argmax(-1)

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        avail: torch.Tensor,
        hidden: Any = None,
        deterministic: bool = True,
    ) -> tuple[torch.Tensor, Any]:
        """Decentralised actions of all agents.

        Args:
            obs: [B, N, O] observations.
            avail: [B, N, A] bool available actions.
            hidden: opaque state returned by the previous call; None at the
                start of an episode (holds the GRU state and the last action).
            deterministic: greedy (True) or sampled (False, for stochastic policies).

        Returns:
            actions long [B, N] on obs's device, and the new hidden state.
        """
        out_device = obs.device if isinstance(obs, torch.Tensor) else torch.device("cpu")
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        avail = ensure_some_available(torch.as_tensor(avail, device=self.device).bool())
        if hidden is None:
            hidden = {"h": None, "last_action": obs.new_zeros(*obs.shape[:2], self.spec.n_actions)}
        out, h = self._policy_step(self.agent_inputs.build(obs, hidden["last_action"]), hidden["h"])
        actions = self._select_actions(out, avail, deterministic)
        new_hidden = {"h": h, "last_action": F.one_hot(actions, self.spec.n_actions).float()}
        return actions.to(out_device), new_hidden

    # ---- training helpers ----------------------------------------------------
    def sequence_inputs(self, batch: Batch, include_last_obs: bool) -> torch.Tensor:
        """Agent inputs [B, L(+1), N, in] of an episode batch (with or without the obs after the last step).

        Computed once per batch: repeated calls (online, target and behaviour
        networks of one update) return the same tensor. The cache is keyed by
        the identity and in-place version of ``obs``, ``actions`` and the
        returned tensor, and cleared at the end of every training batch.
        """
        obs, actions = batch["obs"], batch["actions"]
        key = (obs, obs._version, actions, actions._version)
        hit = self._inputs_cache.get(include_last_obs)
        if hit is not None and _same_key(hit[0], key) and hit[1]._version == hit[2]:
            return hit[1]
        full = self._inputs_cache.get(True)
        if not include_last_obs and full is not None and _same_key(full[0], key) and full[1]._version == full[2]:
            inputs = full[1][:, :-1].contiguous()  # step t's input depends on obs[t] and actions[t-1] only
        else:
            inputs = self.agent_inputs.sequence(obs if include_last_obs else obs[:, :-1], actions)
        self._inputs_cache[include_last_obs] = (key, inputs, inputs._version)
        return inputs

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_step = self.trainer.global_step  # the step named by a non-finite-loss error

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._inputs_cache.clear()  # do not keep the last batch alive while the next one is sampled

    def make_agent_net(self, output_dim: int) -> torch.nn.Module:
        return make_agent(self.hparams.agent, self.agent_inputs.dim, output_dim, self.hparams.agent_hidden_dim)

    def policy_nll(self, net: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Masked-softmax NLL of the dataset actions under ``net``'s logits (behaviour cloning)."""
        logits, _ = net.forward_seq(self.sequence_inputs(batch, include_last_obs=False))
        avail = ensure_some_available(batch["avail_actions"][:, :-1])
        return bc_nll(logits, batch["actions"], avail, batch["mask"])

    def main_optimizer(self) -> Any:
        """The Lightning-wrapped main optimizer (the first one of ``configure_optimizers``)."""
        opts = self.optimizers()
        return opts[0] if isinstance(opts, list) else opts

    def raw_optimizer(self, index: int) -> torch.optim.Optimizer:
        """A secondary optimizer, unwrapped: stepping it does not count as a global step."""
        return self.optimizers()[index].optimizer

    def optimise(self, optimizer: Any, loss: torch.Tensor, clip_norm: float) -> None:
        """zero_grad -> backward -> clip -> step through Lightning (counts as a global step)."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        if clip_norm > 0:
            if self._plain_backward:  # what Lightning's 32-bit precision plugin does, without its checks
                params = [p for group in optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            else:
                self.clip_gradients(optimizer, gradient_clip_val=clip_norm, gradient_clip_algorithm="norm")
        optimizer.step()

    #: ``manual_backward`` on one device in 32-bit precision calls ``loss.backward()`` directly (all that
    #: Lightning's strategy and precision plugin do there, minus their hook dispatch on every call,
    #: a visible share of a small continuous update). Lightning's ``on_before_backward`` /
    #: ``on_after_backward`` hooks are then not called; set False on a subclass to keep them.
    PLAIN_BACKWARD_ON_ONE_DEVICE: bool = True
    _plain_backward: bool = False

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if self._plain_backward:
            loss.backward(*args, **kwargs)
        else:
            super().manual_backward(loss, *args, **kwargs)

    def _backward_can_be_plain(self) -> bool:
        from lightning.pytorch.plugins.precision import Precision
        from lightning.pytorch.strategies import SingleDeviceStrategy

        strategy = getattr(self._trainer, "strategy", None)
        return (self.PLAIN_BACKWARD_ON_ONE_DEVICE and type(strategy) is SingleDeviceStrategy
                and type(strategy.precision_plugin) is Precision)

    def step_optimizer(self, index: int, loss: torch.Tensor, params: Any, clip_norm: float, *, count: bool = False) -> None:
        """zero_grad -> backward -> clip ``params`` -> step of optimizer ``index``.

        Only ``count=True`` steps through Lightning's wrapper (one global step);
        otherwise the raw optimizer steps (a secondary update: actors, critics of
        sequential methods, behaviour models).
        """
        wrapped = self.optimizers()[index]
        wrapped.optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        (wrapped if count else wrapped.optimizer).step()

    def log_train(self, metrics: dict[str, torch.Tensor | float]) -> None:
        """Logs ``train/<name>`` and ``perf/updates_per_sec`` (moving average of the update rate).

        ``self.log`` costs about half a millisecond per scalar, more than a
        whole update of a small model, so the values are handed to Lightning
        only on the steps its loggers write (every ``trainer.log_every_n_steps``);
        what the loggers receive is unchanged. The rate is tracked every step.

        Every step the metrics are checked first: a NaN metric or an inf loss
        term raises :class:`~lit_omarl.utils.nonfinite.NonFiniteLossError`
        (naming the terms and the step) before Lightning can checkpoint the state.
        """
        check_finite_metrics(metrics, self._batch_step)  # NaN/inf loss: stop before this state is checkpointed
        now = time.perf_counter()
        rate = None
        if self._perf_last is not None:
            dt = now - self._perf_last
            self._perf_dt = dt if self._perf_dt is None else 0.95 * self._perf_dt + 0.05 * dt
            rate = 1.0 / max(self._perf_dt, 1e-9)
        self._perf_last = now
        if not self._logs_this_step():
            return
        for name, value in metrics.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False)
        if rate is not None:
            self.log("perf/updates_per_sec", rate, on_step=True, on_epoch=False)

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes step metrics after this training step (True when unknown)."""
        trainer = self._trainer
        if trainer is None or getattr(trainer, "fast_dev_run", False):
            return True
        should = getattr(getattr(trainer, "_logger_connector", None), "should_update_logs", None)
        return True if should is None else bool(should)

    # ---- behaviour model pre-training ----------------------------------------
    def transform_batch(self, batch: Batch) -> Batch:
        """Applied to every batch before an update (training steps and behaviour pre-training): identity here;
        continuous modules standardise their inputs with it (``normalize_inputs``)."""
        return batch

    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        """(max updates, patience) of behaviour pre-training; (0, 0) = no behaviour model."""
        return 0, 0

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        """One update of the behaviour model on ``batch``; returns the (detached) loss."""
        raise NotImplementedError

    def on_fit_start(self) -> None:
        self._train_loop_started = False
        self._plain_backward = self._backward_can_be_plain()
        k = int(getattr(getattr(self.trainer, "datamodule", None), "updates_per_step", 1) or 1)
        for callback in self.trainer.checkpoint_callbacks if k > 1 else ():
            every = int(getattr(callback, "_every_n_train_steps", 0) or 0)
            if every % k:  # Lightning checkpoints only at batch ends whose global step is a multiple
                raise ValueError(f"checkpoint.every_n_train_steps ({every}) must be a multiple of "
                                 f"data.updates_per_step ({k}): checkpoints are written between groups of updates")

    def on_fit_end(self) -> None:
        """Run the final evaluation of a run resumed from a checkpoint written at ``max_steps``.

        Lightning skips its whole training loop (with ``on_train_start`` and
        ``on_train_end``) when the restored step already reaches ``max_steps``;
        a run killed during its final evaluation would otherwise never get one.
        """
        trainer = self.trainer
        if self._train_loop_started or trainer.max_steps is None or trainer.max_steps < 0:
            return
        if trainer.global_step < trainer.max_steps:
            return
        from lit_omarl.eval.callback import EvaluationCallback

        for callback in trainer.callbacks:
            if isinstance(callback, EvaluationCallback) and callback.final_metrics is None:
                callback.on_train_end(trainer, self)

    def on_train_start(self) -> None:
        self._train_loop_started = True
        max_steps, patience = self.behaviour_pretrain_budget()
        if max_steps <= 0 or bool(self.behaviour_trained):
            return
        sample = getattr(getattr(self.trainer, "datamodule", None), "sample", None)
        if sample is None:
            raise RuntimeError(
                f"{type(self).__name__} pre-trains a behaviour model from trainer.datamodule.sample(); "
                "fit with a DataModule that provides sample() -> batch dict"
            )
        best, since_best, step, loss = math.inf, 0, 0, torch.tensor(math.nan)
        for step in range(1, max_steps + 1):
            loss = self.behaviour_update(self.transform_batch(sample()))
            if self.logger is not None and step % 100 == 0:
                self.logger.log_metrics({"behaviour/nll": float(loss)}, step=step)
            if patience > 0:  # official rule: stop after `patience` updates without a new minimum
                value = float(loss)
                best, since_best = (value, 0) if value < best else (best, since_best + 1)
                if since_best > patience:
                    break
        self.behaviour_trained.fill_(True)
        log.info("behaviour model pre-trained for %d updates, final NLL %.4f", step, float(loss))
        if self.logger is not None:
            self.logger.log_metrics({"behaviour/final_nll": float(loss), "behaviour/updates": step}, step=step)


class ConservativeQMIX(OfflineMARLModule):
    """QMIX learner with a conservative (CQL-style) regulariser left to subclasses.

    Per-agent Qs Q_i(tau_i, .) from a shared agent network, Q_tot = f_s(Q_1..Q_N)
    by the mixer, and the loss

        alpha * E[gap(s, a)] + E[0.5 * (Q_tot(s, a_data) - G_t)^2]

    with G_t the TD(lambda) return of the target networks evaluated at the
    online network's greedy available action (double Q). Subclasses implement
    ``conservative_gap`` (e.g. logsumexp over candidate joint actions minus
    Q_tot(s, a_data)). Target networks are hard copies every
    ``target_update_interval`` gradient steps.

    Args:
        lr: Adam learning rate of agent network and mixer.
        grad_clip_norm: gradient-norm clipping (<= 0 disables).
        td_lambda: lambda of the TD(lambda) targets (0 = one-step).
        target_update_interval: gradient steps between hard target copies.
        mixer: "qmix" (monotonic hypernetwork mixer), "linear" or "vdn".
        mixer_embed_dim: QMIX mixing embedding size.
        hypernet_embed_dim: hidden size of the mixer's hypernetworks.
        cql_alpha: weight alpha of the conservative regulariser.
        **kwargs: arguments of :class:`OfflineMARLModule` (spec, gamma, agent, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        lr: float = 1e-3,
        grad_clip_norm: float = 10.0,
        td_lambda: float = 0.6,
        target_update_interval: int = 25,
        mixer: Literal["qmix", "linear", "vdn"] = "qmix",
        mixer_embed_dim: int = 32,
        hypernet_embed_dim: int = 64,
        cql_alpha: float = 50.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        self.agent = self.make_agent_net(s.n_actions)
        self.mixer = make_mixer(mixer, s.n_agents, s.state_dim, mixer_embed_dim, hypernet_embed_dim)
        self.target_agent = copy.deepcopy(self.agent).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)

    def conservative_gap(
        self, q_all: torch.Tensor, batch: Batch, avail: torch.Tensor, q_taken_tot: torch.Tensor, mixer_params: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-step regulariser [B, L] (to be minimised) and extra metrics to log.

        Args:
            q_all: [B, L, N, A] online per-agent Qs (with gradient).
            batch: the training batch.
            avail: [B, L, N, A] bool available actions.
            q_taken_tot: [B, L] Q_tot of the dataset actions (with gradient).
            mixer_params: ``self.mixer.hyper(state[:, :-1])``.
        """
        raise NotImplementedError

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.agent.parameters()) + list(self.mixer.parameters())
        return torch.optim.Adam(params, lr=self.hparams.lr)

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.agent.step(inputs, h)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions, state = batch["mask"], batch["actions"], batch["state"]
        avail = ensure_some_available(batch["avail_actions"])  # [B, L+1, N, A]
        inputs = self.sequence_inputs(batch, include_last_obs=True)
        q_all, _ = self.agent.forward_seq(inputs)  # [B, L+1, N, A]

        with torch.no_grad():  # double-Q TD(lambda) targets
            target_q_all, _ = self.target_agent.forward_seq(inputs)
            greedy = q_all.detach().masked_fill(~avail, -math.inf).argmax(-1, keepdim=True)
            target_tot = self.target_mixer(target_q_all.gather(-1, greedy).squeeze(-1), state)  # [B, L+1]
            targets = td_lambda_targets(batch["reward"], batch["terminated"], mask, target_tot, hp.gamma, hp.td_lambda)

        q_all = q_all[:, :-1]
        mixer_params = self.mixer.hyper(state[:, :-1])  # computed once, reused by the regulariser
        q_taken_tot = self.mixer.mix(q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1), mixer_params)
        td_error = q_taken_tot - targets
        gap, extra = self.conservative_gap(q_all, batch, avail[:, :-1], q_taken_tot, mixer_params)
        loss, cql, td = conservative_td_loss(gap, td_error, mask, hp.cql_alpha)

        self.optimise(self.main_optimizer(), loss, hp.grad_clip_norm)
        if self.trainer.global_step % hp.target_update_interval == 0:
            self.target_agent.load_state_dict(self.agent.state_dict())
            self.target_mixer.load_state_dict(self.mixer.state_dict())

        with torch.no_grad():
            metrics = {
                "loss": loss.detach(),
                "td_loss": td.detach(),
                "cql_gap": cql.detach(),
                "q_taken_mean": masked_mean(q_taken_tot.detach(), mask),
                "target_mean": masked_mean(targets, mask),
                "td_error_abs": masked_mean(td_error.detach().abs(), mask),
            }
        self.log_train({**metrics, **extra})


def _same_key(a: tuple, b: tuple) -> bool:
    """(obs, obs version, actions, actions version) keys: same tensor objects, not modified in place."""
    return a[0] is b[0] and a[1] == b[1] and a[2] is b[2] and a[3] == b[3]


def behaviour_probs(net: torch.nn.Module, inputs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """beta_i(. | tau_i) [B, T, N, A] of a policy network (softmax over available actions, 0 elsewhere)."""
    logits, _ = net.forward_seq(inputs)
    return torch.softmax(logits.masked_fill(~avail, NEG_INF), dim=-1) * avail  # = exp(masked_log_softmax)
