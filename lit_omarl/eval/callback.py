"""The seeded evaluation callback every algorithm returns from ``configure_callbacks()``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics.aggregation import MeanMetric

from lit_omarl.data.datamodule import BatchGroup
from lit_omarl.eval.rollout import evaluate
from lit_omarl.utils.atomic import atomic_write_text
from lit_omarl.spec import EnvSpec


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON next to ``path`` and rename it into place (never half-written)."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True))


class EvaluationCallback(L.Callback):
    """Roll out ``pl_module.act`` in a batch of environments every ``every_n_steps``
    gradient updates and once more at the end of training.

    Logs ``eval/episode_return``, ``eval/win_rate`` (tasks with wins),
    ``eval/normalized_score`` (tasks with reference returns) and
    ``eval/episode_length``; the final evaluation (``final_episodes`` episodes)
    is logged under ``final/`` and written to ``<log_dir>/final_eval.json``.
    Evaluation k uses seed ``seed + 1000 * k``, so runs are reproducible.

    Args:
        every_n_steps: evaluate every this many gradient updates (<= 0: only at the end).
        episodes: episodes per periodic evaluation (32 in the papers).
        final_episodes: episodes of the final evaluation (0: none).
        deterministic: greedy actions (True) or sampled from the policy.
        seed: base seed of the evaluation environments.
    """

    def __init__(self, every_n_steps: int = 1000, episodes: int = 32, final_episodes: int = 128,
                 deterministic: bool = True, seed: int = 12345) -> None:
        self.every_n_steps = every_n_steps
        self.episodes = episodes
        self.final_episodes = final_episodes
        self.deterministic = deterministic
        self.seed = seed
        self.history: list[dict[str, float]] = []
        self.final_metrics: dict[str, float] | None = None
        self._last_eval_step = -1

    def _run(self, pl_module: L.LightningModule, episodes: int, seed: int) -> dict[str, float]:
        spec = EnvSpec.from_dict(pl_module.hparams["spec"])
        was_training = pl_module.training
        pl_module.eval()
        try:
            metrics = evaluate(pl_module, spec.env_id, spec.env_options, episodes=episodes, seed=seed,
                               deterministic=self.deterministic, device=pl_module.device)
        finally:
            pl_module.train(was_training)
        # aggregate across devices (a no-op on one process)
        mean = MeanMetric().to(pl_module.device)
        mean.update(torch.tensor(metrics["episode_return"], device=pl_module.device), weight=episodes)
        metrics["episode_return"] = float(mean.compute())
        return metrics

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        # due when this training step passed a multiple of every_n_steps (a step may hold several
        # updates: data.updates_per_step)
        if self.every_n_steps <= 0 or step == 0 or step == self._last_eval_step:
            return
        before = max(step - (len(batch) if isinstance(batch, BatchGroup) else 1), self._last_eval_step)
        if step // self.every_n_steps <= before // self.every_n_steps:
            return
        self._last_eval_step = step
        metrics = self._run(pl_module, self.episodes, self.seed + 1000 * len(self.history))
        self.history.append({"step": step, **metrics})
        pl_module.log_dict({f"eval/{k}": v for k, v in metrics.items() if k != "episodes"}, on_step=True, on_epoch=False, batch_size=1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.final_episodes <= 0:
            return
        metrics = self._run(pl_module, self.final_episodes, self.seed - 1)
        metrics["step"] = trainer.global_step
        self.final_metrics = metrics
        for logger in trainer.loggers:
            logger.log_metrics({f"final/{k}": v for k, v in metrics.items() if k != "step"}, step=trainer.global_step)
        if trainer.is_global_zero and trainer.log_dir is not None:
            write_json_atomic(Path(trainer.log_dir) / "final_eval.json", {"final": metrics, "history": self.history})

    def state_dict(self) -> dict[str, Any]:
        return {"history": json.dumps(self.history), "last_eval_step": self._last_eval_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = json.loads(state_dict.get("history", "[]"))
        self._last_eval_step = int(state_dict.get("last_eval_step", -1))
