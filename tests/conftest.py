import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def tmp_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMUEL_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"
