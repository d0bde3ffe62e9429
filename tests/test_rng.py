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


def test_modules_save_and_restore_their_sampling_streams():
    """OfflineMARLModule's checkpoint hooks carry every CheckpointedGenerator attribute (MACQL's here)."""
    from lit_omarl.algos import MACQL
    from lit_omarl.spec import EnvSpec

    spec = EnvSpec("test/d", 2, 4, 6, 3, episode_limit=5).to_dict()
    model = MACQL(spec=spec, seed=3)
    torch.rand(4, generator=model.sample_rng.get("cpu"))
    ckpt: dict = {"hyper_parameters": {"spec": spec}}
    model.on_save_checkpoint(ckpt)
    assert set(ckpt) == {"hyper_parameters", "macql_generator"}
    expected = torch.rand(6, generator=model.sample_rng.get("cpu"))
    resumed = MACQL(spec=spec, seed=3)
    resumed.on_load_checkpoint(ckpt)
    assert torch.equal(torch.rand(6, generator=resumed.sample_rng.get("cpu")), expected)
