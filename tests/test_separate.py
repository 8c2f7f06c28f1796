"""samuel.data.separate: Demucs loading (offline message) and segmented separation."""
import socket

import numpy as np
import pytest
import torch

from samuel.data.separate import SeparatorUnavailable, _blocks, load_separator, separate

SR = 44100
SOURCES = ["drums", "bass", "other", "vocals"]


class GainModel(torch.nn.Module):
    """A stand-in separator: source k is ``gains[k]`` times the mix, so the right answer is
    known exactly whatever the segmentation, block cross-fades or resampling."""

    def __init__(self, samplerate=SR, gains=(0.1, 0.2, 0.3, 0.4)):
        super().__init__()
        self.sources = SOURCES
        self.samplerate = samplerate
        self.audio_channels = 2
        self.segment = 2.0
        self.calls = 0
        self.register_buffer("gains", torch.tensor(gains)[:, None, None])

    def forward(self, mix):  # [B, C, T] -> [B, S, C, T]
        self.calls += 1
        return self.gains * mix[:, None]


def music(seconds, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([x, 0.8 * x]).astype(np.float32) + 0.01  # a DC offset exercises the normalisation


def test_blocks_cover_with_overlap():
    assert _blocks(10, 20, 2) == [(0, 10)]
    blocks = _blocks(100, 30, 5)
    assert blocks[0][0] == 0 and blocks[-1][1] == 100
    for (s0, e0), (s1, e1) in zip(blocks, blocks[1:]):
        assert e0 - s1 == 5 and e1 - s1 >= 5


def test_segments_and_blocks_are_exact_on_a_known_separator():
    model = GainModel()
    x = music(20.0)  # a long-ish song: 9 blocks of 3 s, each in 1-s Demucs segments
    out = separate(model, x, segment_seconds=1.0, block_seconds=3.0, keep_sources=True)
    assert model.calls > 30  # several blocks, each in several Demucs segments
    mu = float(x.mean())  # the DC offset goes back in equal shares
    np.testing.assert_allclose(out["vocals"], 0.4 * (x - mu) + mu / 4, atol=1e-5)
    np.testing.assert_allclose(out["accomp"], 0.6 * (x - mu) + 3 * mu / 4, atol=1e-5)
    np.testing.assert_allclose(out["sources"]["bass"], 0.2 * (x - mu) + mu / 4, atol=1e-5)
    np.testing.assert_allclose(out["vocals"] + out["accomp"], x, atol=1e-5)


def test_model_rate_differs_and_mono_input():
    model = GainModel(samplerate=22050)
    t = np.arange(2 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32)  # mono at 44.1 kHz
    out = separate(model, x, block_seconds=1.0)
    assert out["vocals"].shape == (2, x.shape[1]) and out["accomp"].shape == (2, x.shape[1])
    # the 220 Hz tone survives the 44.1k -> 22.05k -> 44.1k trip
    core = slice(2000, -2000)
    np.testing.assert_allclose(out["vocals"][0, core], 0.4 * x[0, core], atol=1e-3)
    np.testing.assert_allclose(out["vocals"][1, core], 0.4 * x[0, core], atol=1e-3)


def test_demucs_unittest_model_in_segments():
    torch.manual_seed(0)
    model = load_separator("demucs_unittest")  # built in: no download
    x = music(3.0)
    out = separate(model, x, segment_seconds=1.0, block_seconds=2.0, keep_sources=True)
    assert out["vocals"].shape == x.shape and out["accomp"].shape == x.shape
    assert out["vocals"].dtype == np.float32 and np.isfinite(out["accomp"]).all()
    total = sum(out["sources"].values())
    np.testing.assert_allclose(out["vocals"] + out["accomp"], total, atol=1e-5)
    np.testing.assert_array_equal(out["vocals"], out["sources"]["vocals"])


def test_silent_mix_does_not_divide_by_zero():
    out = separate(GainModel(), np.zeros((2, 4410), np.float32))
    assert np.all(out["vocals"] == 0) and np.all(out["accomp"] == 0)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and empty weight caches: whatever this machine has cached is not seen."""
    import huggingface_hub.constants as hf_constants

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.mark.parametrize("env", ["1", ""])
def test_htdemucs_offline_fails_in_one_sentence(offline, monkeypatch, env):
    """Without a network (the fixture refuses every connection at once) the missing weights are
    one sentence, with or without HF_HUB_OFFLINE. No wall-clock bound here: speed targets live
    in ``samuel bench``, not in unit tests."""
    monkeypatch.setenv("HF_HUB_OFFLINE", env)
    with pytest.raises(SeparatorUnavailable) as err:
        load_separator("htdemucs")
    message = str(err.value)
    assert message.startswith("Demucs model 'htdemucs' is not available offline")
    assert "--separator-repo" in message and "\n" not in message


def test_local_repo_without_the_weights(offline, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeparatorUnavailable, match=r"'htdemucs': expected its weights in .*empty"):
        load_separator("htdemucs", repo=tmp_path / "empty")
    with pytest.raises(SeparatorUnavailable, match=r"expected a folder of weights at .*missing, found none"):
        load_separator("htdemucs", repo=tmp_path / "missing")
