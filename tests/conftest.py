import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _threads_as_they_were():
    """Each test starts at the suite's thread count: float sums round differently with another
    count, and a test that changed it once left every later test running on one thread."""
    torch.set_num_threads(2)
    yield


@pytest.fixture
def tmp_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMUEL_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"
