"""Test-wide settings: no GUI backends, no stray files, small thread pools."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mpl-"))
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# tiny networks: one thread is faster than two (and much faster on a loaded machine)
torch.set_num_threads(1)

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def bridge_dir() -> Path:
    """The real AlberDICE Bridge datasets (third-party, read-only); skip when absent."""
    path = SHARED_DATASETS / "alberdice_bridge"
    if not (path / "buffer_optimal" / "obs.npy").exists():
        pytest.skip(f"real Bridge datasets not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test starts on one torch thread (small GRU updates run 10-40x slower on 2 threads of a
    busy machine) and leaves the count as it found it, whatever it set."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Generated datasets of a test go to its own temporary cache."""
    monkeypatch.setenv("LIT_OMARL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
