"""Random padded episode batches (docs/CONTRACTS.md episode format) shared by the update tests."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


def random_episode_batch(lengths: list[int], terminated_at: tuple[int, int], always_avail: int, *, t: int, n: int,
                         a: int, o: int, s: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Episodes of the given ``lengths`` padded to ``t`` steps; episode ``terminated_at[0]`` terminates at step
    ``terminated_at[1]``, the others are cut by the time limit; action ``always_avail`` is always available."""
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    lengths_t = torch.tensor(lengths)
    mask = (torch.arange(t)[None] < lengths_t[:, None]).float()
    seen = (torch.arange(t + 1)[None] <= lengths_t[:, None]).float()
    avail = (torch.rand(b, t + 1, n, a, generator=g) > 0.4) & seen[:, :, None, None].bool()
    avail[..., always_avail] |= seen[:, :, None].bool()
    actions = torch.rand(b, t, n, a, generator=g).masked_fill(~avail[:, :t], -1.0).argmax(-1) * mask[..., None].long()
    terminated = torch.zeros(b, t)
    terminated[terminated_at] = 1.0
    return {
        "obs": torch.randn(b, t + 1, n, o, generator=g) * seen[..., None, None],
        "state": torch.randn(b, t + 1, s, generator=g) * seen[..., None],
        "actions": actions,
        "avail_actions": avail,
        "reward": torch.randn(b, t, generator=g) * mask,
        "terminated": terminated,
        "mask": mask,
    }


def one_training_step(model, data: dict[str, torch.Tensor]) -> dict:
    """Run the module's own training_step once on ``data`` (benchmarks' bare loop); the metrics it logged
    plus ``"grads"``, its pre-clipping gradients by parameter name."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from common import BareLoop

    class OneBatch:
        def sample(self):
            return data

    loop = BareLoop(model, OneBatch())
    seen: dict = {}
    model.log_train = lambda metrics: seen.update(metrics)
    backward = model.manual_backward

    def record(loss, *args, **kwargs):
        backward(loss, *args, **kwargs)
        seen["grads"] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    model.manual_backward = record
    loop.step()
    return seen


class FixedBatchData(L.LightningDataModule):
    """A data module that hands the same ``batch`` to every update (``sample()`` and an endless loader)."""

    def __init__(self, spec: Any, batch: dict, sampling: str = "episode") -> None:
        super().__init__()
        self.spec, self.sampling, self.batch = spec, sampling, batch

    def sample(self) -> dict:
        return self.batch

    def train_dataloader(self):
        batch = self.batch

        class Forever:
            def __iter__(self):
                while True:
                    yield batch

        return Forever()

