"""Checkpoints written atomically: a killed run never leaves a half-written ``last.ckpt``."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_omarl.utils.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the target folder, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        with atomic_path(path) as (fd, _):
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Always ``weights_only=True``: a checkpoint never runs pickled code, whatever
        ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` or a caller asks."""
        if weights_only is False:
            raise ValueError(f"{path}: lit_omarl loads checkpoints with weights_only=True only")
        if map_location is None:
            return super().load_checkpoint(path, weights_only=True)
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
