"""A seeded torch.Generator whose state travels in Lightning checkpoints."""

from __future__ import annotations

from typing import Any

import torch


class CheckpointedGenerator:
    """A ``torch.Generator`` seeded with ``seed``, created on the device of first use.

    ``save(checkpoint)`` stores its state under ``key`` in a Lightning checkpoint
    dict and ``load(checkpoint)`` restores it (applied lazily, on the first
    ``get`` on a device of the saved type), so a resumed run draws the same
    numbers as an uninterrupted one.
    """

    def __init__(self, seed: int, key: str) -> None:
        self.seed, self.key = int(seed), key
        self._generator: torch.Generator | None = None
        self._saved: dict[str, Any] | None = None

    def get(self, device: torch.device | str) -> torch.Generator:
        device = torch.device(device)
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
            if self._saved is not None and self._saved["device_type"] == device.type:
                self._generator.set_state(self._saved["state"])
        return self._generator

    def save(self, checkpoint: dict[str, Any]) -> None:
        if self._generator is not None:
            checkpoint[self.key] = {"device_type": self._generator.device.type, "state": self._generator.get_state()}

    def load(self, checkpoint: dict[str, Any]) -> None:
        self._saved = checkpoint.get(self.key)
        self._generator = None
