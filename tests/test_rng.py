"""CheckpointedGenerator: a resumed generator draws what the uninterrupted one draws."""

import torch

from lit_omarl.utils.rng import CheckpointedGenerator


def test_checkpointed_generator_resumes_its_stream():
    rng = CheckpointedGenerator(seed=7, key="k")
    ckpt: dict = {}
    rng.save(ckpt)
    assert ckpt == {}  # nothing drawn yet: nothing to save
    first = torch.rand(3, generator=rng.get("cpu"))
    assert torch.equal(first, torch.rand(3, generator=torch.Generator().manual_seed(7)))
    rng.save(ckpt)
    expected = torch.rand(5, generator=rng.get("cpu"))

    resumed = CheckpointedGenerator(seed=7, key="k")
    resumed.load(ckpt)
    assert torch.equal(torch.rand(5, generator=resumed.get("cpu")), expected)
    fresh = CheckpointedGenerator(seed=7, key="k")
    fresh.load({})  # an old checkpoint without the key: start from the seed
    assert torch.equal(torch.rand(3, generator=fresh.get("cpu")), first)
