"""What a checkpoint needs beyond Lightning's defaults for a resumed run to equal an uninterrupted one.

Lightning saves the model, optimizers, loops and the DataModule's ``state_dict``.
Two things are missing for a bit-exact resume on CPU:

* **Global RNG states.** Some algorithms draw from torch's global generator
  while training (InSPO's random agent orders, AlberDICE's permutations) and
  stochastic policies sample their evaluation actions from it. Without its
  state a resumed run draws other numbers than the uninterrupted one.
* **The sampler position.** Lightning pre-fetches one batch ahead of the
  update it runs (to detect the end of an un-sized iterable), so when a
  checkpoint is written after update ``k`` the DataModule's generator has
  already drawn batch ``k + 1``. Restoring that state skips one batch.

:class:`ExactResume` (attached by ``OfflineMARLModule.configure_callbacks``)
stores the torch CPU (and CUDA) RNG states in its callback state and rewinds
the saved sampler state to just before the pre-fetched batches. Restored RNG
states are applied at ``on_train_start``, after everything Lightning does
between loading a checkpoint and the first update. A checkpoint written at the
end of training (``last.ckpt`` when ``max_steps`` is reached) holds the RNG
state of the last update, not the one after the final evaluation, so a run
continued with a larger ``max_steps`` equals one that ran longer from the start.
When a run resumes from such a checkpoint Lightning skips its training loop;
the RNG state is then applied at ``on_fit_end``, before
``OfflineMARLModule.on_fit_end`` runs the final evaluation.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

# sampler states kept (one per batch drawn); must exceed Lightning's pre-fetch depth (1)
_HISTORY = 8


class ExactResume(L.Callback):
    """Checkpoint the global RNG states and the exact sampler position of ``trainer.datamodule``."""

    def __init__(self) -> None:
        self._pending_rng: dict[str, Any] | None = None
        self._end_state: dict[str, Any] | None = None
        self._states: deque[tuple[int, torch.Tensor]] = deque(maxlen=_HISTORY)  # (batch id, state before drawing it)
        self._wrapped: Any = None

    # ---- global RNG ----------------------------------------------------------
    @staticmethod
    def _rng_state() -> dict[str, Any]:
        state: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def state_dict(self) -> dict[str, Any]:
        # At the end of training the final evaluation (and anything else in on_train_end) has drawn from the
        # RNG before Lightning writes last.ckpt; a run continued from it must see the state of the last update.
        return dict(self._end_state) if self._end_state is not None else self._rng_state()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_state = self._rng_state()  # runs before the evaluation callback's on_train_end

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_rng = dict(state_dict)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_state = None
        self._apply_pending_rng()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # resumed from a checkpoint written at max_steps: Lightning skips the training loop (and
        # on_train_start); OfflineMARLModule.on_fit_end then runs the final evaluation with this state
        self._apply_pending_rng()

    def _apply_pending_rng(self) -> None:
        state, self._pending_rng = self._pending_rng, None
        if not state:
            return
        if "torch_cpu" in state:
            torch.set_rng_state(state["torch_cpu"])
        if "torch_cuda" in state and torch.cuda.is_available():
            states = state["torch_cuda"]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)

    # ---- sampler position ----------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = getattr(trainer, "datamodule", None)
        generator = getattr(dm, "generator", None)
        sample = getattr(dm, "sample", None)
        if not isinstance(generator, torch.Generator) or sample is None:
            return
        sample = getattr(sample, "_exact_resume_original", sample)  # left wrapped by a fit that raised
        states = self._states

        def recording_sample(*args: Any, **kwargs: Any) -> Any:
            before = dm.generator.get_state()
            batch = sample(*args, **kwargs)
            states.append((id(batch), before))
            return batch

        recording_sample._exact_resume_original = sample  # type: ignore[attr-defined]
        dm.sample = recording_sample  # instance attribute: the batch iterator calls dm.sample()
        self._wrapped = (dm, sample)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._wrapped is not None:
            dm, _ = self._wrapped
            dm.__dict__.pop("sample", None)
            self._wrapped = None
        self._states.clear()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        dm = getattr(trainer, "datamodule", None)
        key = type(dm).__qualname__ if dm is not None else None
        saved = checkpoint.get(key) if key else None
        if not isinstance(saved, dict) or "generator_state" not in saved:
            return
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        ahead = list(getattr(fetcher, "batches", None) or [])
        if not ahead:
            return
        wanted = {id(item[0] if isinstance(item, tuple) else item) for item in ahead}
        # newest record per batch id (an id may be recycled from a freed older batch)
        latest = {batch_id: i for i, (batch_id, _) in enumerate(self._states)}
        found = [latest[i] for i in wanted if i in latest]
        if len(found) == len(wanted):
            saved["generator_state"] = self._states[min(found)][1]  # state before the first pre-fetched batch
            return
        rank_zero_warn(
            "ExactResume: a pre-fetched batch was not drawn through datamodule.sample(); the checkpoint keeps the "
            "sampler state after it, so a resumed run skips that batch"
        )
