"""Codec interface, the offline codec and the SAO VAE loaders (design §3)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from samuel import codecs
from samuel.codecs import CodecUnavailable

SR = 44100
# a tiny Oobleck with the SAO strides (2048 samples per frame) but 8 channels and 4 latents
TINY = dict(encoder_hidden_size=8, decoder_channels=8, decoder_input_channels=4,
            channel_multiples=[1, 2, 2, 2, 2])


def _noise(seconds, sr=SR, channels=2, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal((channels, int(seconds * sr)))).astype(np.float32)


def test_unknown_codec_lists_the_known_ones():
    with pytest.raises(ValueError, match="'sao', 'offline'"):
        codecs.load("mp3")


# ---------------------------------------------------------------- offline codec
def test_offline_shapes_and_frame_exact_lengths():
    codec = codecs.load("offline")
    assert codec.latent_channels == 64 and codec.samples_per_frame == 2048
    assert codec.frames_per_second == pytest.approx(21.533, abs=1e-3)
    x = _noise(3.0)
    z = codec.encode(x, SR)
    assert z.dtype == np.float32 and z.shape == (64, int(np.ceil(x.shape[1] / 2048)))
    assert np.isfinite(z).all() and -3 < z.min() and z.max() < 3
    y = codec.decode(z)
    assert y.dtype == np.float32 and y.shape == (2, z.shape[1] * 2048)
    assert np.abs(y).max() <= 0.99 + 1e-6
    # exactly 1024 frames of audio -> 1024 frames; mono and other rates give the same count
    assert codec.encode(np.zeros(1024 * 2048, np.float32), SR).shape == (64, 1024)
    assert codec.encode(x[0], SR).shape == z.shape
    assert codec.encode(_noise(3.0, sr=16000), 16000).shape == z.shape
    assert codec.encode(_noise(3.0, sr=48000), 48000).shape == z.shape


def test_offline_is_deterministic_and_time_aligned():
    codec = codecs.load("offline")
    x = np.zeros((2, 4 * SR), np.float32)
    at = 2 * SR + 700
    x[:, at: at + 2048] = 0.5 * np.sin(np.arange(2048) * 2 * np.pi * 440 / SR)  # a burst at ~2 s
    z = codec.encode(x, SR)
    np.testing.assert_array_equal(z, codec.encode(x, SR))
    y = codec.decode(z)
    np.testing.assert_array_equal(y, codec.decode(z))
    band = int(np.argmax(z.max(axis=1)))
    assert band == 69 - 33  # A4 lands in its semitone channel
    assert abs(int(np.argmax(z[band])) - (at + 1024) // 2048) <= 1  # in the right frame
    energy = np.convolve(y[0] ** 2, np.ones(2048), "same")
    assert abs(int(np.argmax(energy)) - (at + 1024)) < 2048  # decoded where it was


def test_offline_rejects_bad_input():
    codec = codecs.load("offline")
    with pytest.raises(ValueError, match="expected shape \\[64"):
        codec.decode(np.zeros((32, 10), np.float32))
    with pytest.raises(ValueError, match="0 samples"):
        codec.encode(np.zeros((2, 0), np.float32), SR)


# ---------------------------------------------------------------- SAO key mapping
def test_sat_key_names_match_the_stable_audio_tools_layout():
    from samuel.codecs.sao import diffusers_to_sat_key, sat_to_diffusers_key

    pairs = {  # written from stable-audio-tools' OobleckEncoder/Decoder (5 blocks)
        "encoder.layers.0.weight_v": "encoder.conv1.weight_v",
        "encoder.layers.1.layers.0.layers.1.weight_g": "encoder.block.0.res_unit1.conv1.weight_g",
        "encoder.layers.2.layers.2.layers.2.alpha": "encoder.block.1.res_unit3.snake2.alpha",
        "encoder.layers.5.layers.3.beta": "encoder.block.4.snake1.beta",
        "encoder.layers.5.layers.4.bias": "encoder.block.4.conv1.bias",
        "encoder.layers.6.alpha": "encoder.snake1.alpha",
        "encoder.layers.7.weight_v": "encoder.conv2.weight_v",
        "decoder.layers.0.bias": "decoder.conv1.bias",
        "decoder.layers.1.layers.0.alpha": "decoder.block.0.snake1.alpha",
        "decoder.layers.1.layers.1.weight_v": "decoder.block.0.conv_t1.weight_v",
        "decoder.layers.3.layers.4.layers.3.bias": "decoder.block.2.res_unit3.conv2.bias",
        "decoder.layers.6.beta": "decoder.snake1.beta",
        "decoder.layers.7.weight_g": "decoder.conv2.weight_g",
    }
    for sat, dif in pairs.items():
        assert sat_to_diffusers_key(sat) == dif
        assert diffusers_to_sat_key(dif) == sat
    assert sat_to_diffusers_key("bottleneck.something") is None


def test_sat_state_dict_conversion_covers_every_tensor():
    import torch
    from diffusers import AutoencoderOobleck

    from samuel.codecs.sao import diffusers_to_sat_state_dict, sat_to_diffusers_state_dict

    state = AutoencoderOobleck(**TINY).state_dict()
    sat = diffusers_to_sat_state_dict(state)
    assert all(k.startswith("pretransform.model.") for k in sat)
    assert sat["pretransform.model.encoder.layers.6.alpha"].shape == (8 * 2,)  # SnakeBeta: [C]
    sat["model.model.transformer.layers.0.weight"] = torch.zeros(3)  # the diffusion model: dropped
    back = sat_to_diffusers_state_dict(sat)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    # weight norm stored as parametrizations, or folded into a plain weight
    key = "pretransform.model.encoder.layers.0"
    param = {f"{key}.parametrizations.weight.original0": sat[f"{key}.weight_g"],
             f"{key}.parametrizations.weight.original1": sat[f"{key}.weight_v"]}
    conv = sat_to_diffusers_state_dict(param)
    assert torch.equal(conv["encoder.conv1.weight_g"], state["encoder.conv1.weight_g"])
    v = state["encoder.conv1.weight_v"]
    w = state["encoder.conv1.weight_g"] * v / v.reshape(v.shape[0], -1).norm(dim=1)[:, None, None]
    folded = sat_to_diffusers_state_dict({f"{key}.weight": w})
    w2 = folded["encoder.conv1.weight_g"] * folded["encoder.conv1.weight_v"] / w.reshape(w.shape[0], -1).norm(dim=1)[:, None, None]
    assert torch.allclose(w2, w, atol=1e-6)


# ---------------------------------------------------------------- SAO loaders
@pytest.fixture(scope="module")
def tiny_vae():
    import torch
    from diffusers import AutoencoderOobleck

    torch.manual_seed(1)
    vae = AutoencoderOobleck(**TINY).eval()
    with torch.no_grad():  # Snake alphas/betas start at 0: randomise them so the mapping matters
        for name, p in vae.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.normal_(0, 0.3)
    return vae


def _reference(vae, audio):
    import torch

    with torch.no_grad():
        z = vae.encode(torch.from_numpy(audio)[None]).latent_dist.mode()
        y = vae.decode(z).sample
    return z[0].numpy(), y[0].numpy()


def _sat_model_config(cfg):
    enc = dict(in_channels=2, channels=cfg["encoder_hidden_size"], c_mults=cfg["channel_multiples"],
               strides=cfg["downsampling_ratios"], latent_dim=cfg["encoder_hidden_size"], use_snake=True)
    dec = dict(out_channels=2, channels=cfg["decoder_channels"], c_mults=cfg["channel_multiples"],
               strides=cfg["downsampling_ratios"], latent_dim=cfg["decoder_input_channels"], use_snake=True,
               final_tanh=False)
    return {"model_type": "diffusion_cond", "sample_rate": 44100, "sample_size": 2097152,
            "model": {"pretransform": {"type": "autoencoder", "iterate_batch": True, "config": {
                "encoder": {"type": "oobleck", "requires_grad": False, "config": enc},
                "decoder": {"type": "oobleck", "config": dec}, "bottleneck": {"type": "vae"},
                "latent_dim": cfg["decoder_input_channels"], "downsampling_ratio": 2048, "io_channels": 2}}}}


def test_loads_diffusers_and_stable_audio_tools_layouts(tiny_vae, tmp_path):
    from safetensors.torch import save_file

    from samuel.codecs.sao import diffusers_to_sat_state_dict

    audio = _noise(0.2)[:, : 4 * 2048]
    z_ref, y_ref = _reference(tiny_vae, audio)
    tiny_vae.save_pretrained(tmp_path / "diffusers" / "vae")
    sat_dir = tmp_path / "sat"
    sat_dir.mkdir()
    (sat_dir / "model_config.json").write_text(json.dumps(_sat_model_config(dict(tiny_vae.config))))
    state = {k: v.contiguous() for k, v in diffusers_to_sat_state_dict(tiny_vae.state_dict()).items()}
    save_file(state, str(sat_dir / "model.safetensors"))
    for path in (tmp_path / "diffusers", tmp_path / "diffusers" / "vae", sat_dir):
        codec = codecs.load("sao", path=path, chunk_seconds=None)
        assert codec.latent_channels == 4 and codec.samples_per_frame == 2048
        z = codec.encode(audio, SR)
        np.testing.assert_allclose(z, z_ref, rtol=0, atol=1e-6)
        y = codec.decode(z)
        assert y.shape == (2, z.shape[1] * 2048)
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-6)


def test_sao_chunked_equals_unchunked():
    # strides 2^5: 32 samples per frame keeps this fast on a CPU; the receptive field is
    # about 40 frames each way, so 64 frames of context make chunking exact up to rounding.
    cfg = dict(TINY, downsampling_ratios=[2, 2, 2, 2, 2])
    whole = codecs.load("sao", config_overrides=cfg, chunk_seconds=None)
    chunked = codecs.load("sao", config_overrides=cfg, chunk_seconds=100 * 32 / SR,
                          overlap_seconds=64 * 32 / SR)
    assert whole.samples_per_frame == 32 and chunked._chunk_frames() == (100, 64)
    audio = _noise(0.2)[:, : 8820 - 5]  # 276 frames, not a whole number: padded
    z = whole.encode(audio, SR)
    assert z.shape == (4, int(np.ceil(audio.shape[1] / 32)))
    np.testing.assert_allclose(chunked.encode(audio, SR), z, rtol=0, atol=1e-5 * np.abs(z).max())
    y = whole.decode(z)
    np.testing.assert_allclose(chunked.decode(z), y, rtol=0, atol=1e-5 * np.abs(y).max())


def test_sao_unavailable_offline_gives_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"), raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(CodecUnavailable, match="pass --vae PATH"):
        codecs.load("sao")
    with pytest.raises(CodecUnavailable, match="found nothing there"):
        codecs.load("sao", path=tmp_path / "missing")


def test_offline_griffin_lim_matches_librosa_fast_griffin_lim():
    """The frame-wise float32 fast Griffin-Lim is librosa's (centred STFT, periodic Hann,
    momentum 0.99, zero-phase start) up to float32 rounding, which momentum amplifies a little."""
    import librosa

    from samuel.codecs.offline import HOP, N_FFT, griffin_lim

    y = _noise(3.0, sr=22050, channels=1)[0] + np.sin(2 * np.pi * 440 * np.arange(3 * 22050) / 22050) * 0.3
    mag = np.abs(librosa.stft(y.astype(np.float32), n_fft=N_FFT, hop_length=HOP)).astype(np.float32)
    codec = codecs.load("offline")
    for iters in (0, 1, 8):
        ref = librosa.griffinlim(mag, n_iter=iters, hop_length=HOP, win_length=N_FFT, n_fft=N_FFT,
                                 window="hann", center=True, init=None)
        out = griffin_lim(mag, iters, codec._window)
        assert out.shape == ref.shape and out.dtype == np.float32
        assert np.max(np.abs(out - ref)) < 1e-3 * np.max(np.abs(ref))
    with pytest.raises(ValueError, match="hop dividing it"):
        griffin_lim(mag, 1, codec._window, hop=1000)


def test_offline_decode_is_deterministic():
    codec = codecs.load("offline", griffin_lim_iters=4)
    lat = codec.encode(_noise(1.0), SR)
    assert np.array_equal(codec.decode(lat), codec.decode(lat))

