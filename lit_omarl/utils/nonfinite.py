"""Stop training on a NaN/inf loss, and never write a checkpoint that holds NaN/inf.

Two checks, both attached to every algorithm by ``OfflineMARLModule``:

* :func:`check_finite_metrics` runs on the metrics every training step hands
  to ``log_train`` (before they are logged and before Lightning's checkpoint
  callback runs for that step). A NaN in any metric, or an inf in a loss term
  (a metric whose name contains ``loss``), raises :class:`NonFiniteLossError`
  naming the terms and the training step. Other metrics may legitimately be
  infinite (e.g. a running maximum that starts at -inf).
* :class:`NonFiniteGuard` checks the checkpoint while it is being assembled
  (NaN/inf in weights or optimizer state, NaN in buffers) and raises
  :class:`NonFiniteStateError` naming the first bad tensor, so the checkpoint
  is not written and the previous ``last.ckpt`` stays intact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import torch


class NonFiniteLossError(FloatingPointError):
    """A training metric became NaN (or a loss term inf); ``terms`` maps ``train/<name>`` to its value."""

    def __init__(self, step: int, terms: Mapping[str, float], where: str = "") -> None:
        self.step = int(step)
        self.terms = dict(terms)
        listed = ", ".join(f"{name}={value}" for name, value in self.terms.items())
        origin = f" in {where}" if where else ""
        super().__init__(
            f"non-finite loss at training step {self.step}{origin}: {listed}. Training stopped before this state "
            f"was checkpointed; checkpoints of earlier steps (<= {self.step}) are kept. Typical causes: a too "
            "large learning rate, rewards or observations of huge magnitude, an unstable hyper-parameter."
        )

    def __reduce__(self):  # picklable (reproduction workers send errors back)
        return (_rebuild_loss_error, (self.step, self.terms, str(self)))


def _rebuild_loss_error(step: int, terms: dict[str, float], message: str) -> NonFiniteLossError:
    err = NonFiniteLossError.__new__(NonFiniteLossError)
    FloatingPointError.__init__(err, message)
    err.step, err.terms = step, terms
    return err


class NonFiniteStateError(FloatingPointError):
    """A tensor about to be checkpointed holds NaN/inf; the checkpoint is not written."""

    def __init__(self, step: int, key: str, n_bad: int, numel: int) -> None:
        self.step, self.key = int(step), key
        super().__init__(
            f"refusing to write a checkpoint at training step {step}: '{key}' holds {n_bad} NaN/inf value(s) "
            f"out of {numel}. The previous checkpoint is kept; training stopped."
        )

    def __reduce__(self):
        return (_rebuild_state_error, (self.step, self.key, str(self)))


def _rebuild_state_error(step: int, key: str, message: str) -> NonFiniteStateError:
    err = NonFiniteStateError.__new__(NonFiniteStateError)
    FloatingPointError.__init__(err, message)
    err.step, err.key = step, key
    return err


def _value(v: Any) -> float:
    return float(v.detach().float().reshape(-1)[0]) if isinstance(v, torch.Tensor) else float(v)


def check_finite_metrics(metrics: Mapping[str, Any], step: int, prefix: str = "train/") -> None:
    """Raise :class:`NonFiniteLossError` if a metric is NaN or a loss term (name containing 'loss') is ±inf.

    The common path is one fused sum of all metrics (NaN and inf propagate);
    only when it is not finite (or the metrics cannot be stacked) are the terms
    looked at one by one, so a finite sum that overflows never stops a run.
    """
    device = next((v.device for v in metrics.values() if isinstance(v, torch.Tensor)), None)
    try:
        with torch.no_grad():
            values = [v if isinstance(v, torch.Tensor) else torch.tensor(float(v), device=device)
                      for v in metrics.values()]
            total = float(torch.stack(values).sum()) if values else 0.0
    except (RuntimeError, TypeError, ValueError):  # non-scalar or mixed-device metrics: check one by one
        total = math.nan
    if math.isfinite(total):
        return
    bad = {}
    for name, v in metrics.items():
        value = _value(v)
        if math.isnan(value) or (math.isinf(value) and "loss" in name):
            bad[f"{prefix}{name}"] = value
    if bad:
        raise NonFiniteLossError(step, bad)


def _floating_tensors(obj: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield path, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _floating_tensors(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _floating_tensors(v, f"{path}[{i}]")


def first_non_finite(checkpoint: Mapping[str, Any], parameter_names: set[str] | None = None) -> tuple[str, int, int] | None:
    """(key, number of bad values, size) of the first bad tensor of a checkpoint, or None.

    Bad: NaN or inf in a parameter (``state_dict`` keys in ``parameter_names``;
    all of them when None) or in the optimizer state; NaN in a buffer (buffers
    may hold inf on purpose, e.g. a running maximum that starts at -inf).
    """
    for path, t in _floating_tensors(checkpoint.get("state_dict", {}), "state_dict"):
        name = path[len("state_dict."):]
        strict = parameter_names is None or name in parameter_names
        bad = ~torch.isfinite(t) if strict else torch.isnan(t)
        if bool(bad.any()):
            return path, int(bad.sum()), t.numel()
    for path, t in _floating_tensors(checkpoint.get("optimizer_states", []), "optimizer_states"):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            return path, int(bad.sum()), t.numel()
    return None


class NonFiniteGuard(L.Callback):
    """Refuse to write checkpoints holding NaN/inf weights or optimizer state (or NaN buffers)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        bad = first_non_finite(checkpoint, {name for name, _ in pl_module.named_parameters()})
        if bad is not None:
            key, n_bad, numel = bad
            raise NonFiniteStateError(trainer.global_step, key, n_bad, numel)
