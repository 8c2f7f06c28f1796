"""The ``device`` and VAE settings: resolution, configuration, codecs, CLI flags, ``bench gpu``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samuel import bench, cli, codecs, config, devices
from samuel.codecs import CodecUnavailable

SR = 44100
# a tiny Oobleck: 8 samples per frame, 4 latent channels (a few thousand parameters)
TINY = dict(encoder_hidden_size=8, downsampling_ratios=[2, 4], channel_multiples=[1, 2],
            decoder_channels=8, decoder_input_channels=4)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def tiny_vae_dir(tmp_path):
    """A diffusers ``vae/`` folder of a tiny random Oobleck."""
    from diffusers import AutoencoderOobleck

    torch.manual_seed(0)
    AutoencoderOobleck(**TINY).save_pretrained(tmp_path / "tiny" / "vae")
    return tmp_path / "tiny" / "vae"


# ---------------------------------------------------------------- resolve
def test_resolve_auto_cpu_and_bad_names(no_cuda, monkeypatch):
    assert devices.resolve("auto") == "cpu"
    assert devices.resolve("") == "cpu"
    assert devices.resolve("CPU") == "cpu"
    with pytest.raises(ValueError, match="expected a CUDA GPU, found none"):
        devices.resolve("cuda")
    with pytest.raises(ValueError, match="expected one of auto, cpu, cuda, cuda:N or mps, found 'gpu'"):
        devices.resolve("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert devices.resolve("auto") == "cuda"
    assert devices.resolve("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match="expected a GPU index below 1, found 3"):
        devices.resolve("cuda:3")


# ---------------------------------------------------------------- configuration
def test_config_fields_overrides_and_errors():
    cfg = config.load("paper")
    assert cfg.device == "auto" and cfg.data.vae == "" and cfg.data.vae_half is False
    cfg = config.load("paper", device="cuda", data__vae="/models/sao", data__vae_half="true")
    assert (cfg.device, cfg.data.vae, cfg.data.vae_half) == ("cuda", "/models/sao", True)
    assert config.load("demo", vae="/v").data.vae == "/v"  # unique field name
    with pytest.raises(ValueError, match="found 'gpu'"):
        config.load("demo", device="gpu")


def test_old_checkpoint_config_without_the_new_fields(tmp_path):
    from samuel.checkpoint import load_checkpoint, save_checkpoint
    from samuel.model import build

    cfg = config.load("smoke", device="cpu", data__vae="/models/sao")
    assert config.from_dict(json.loads(cfg.to_json())) == cfg
    old = cfg.to_dict()
    del old["device"], old["data"]["vae"], old["data"]["vae_half"]
    back = config.from_dict(old)
    assert back.device == "auto" and back.data.vae == "" and back.data.vae_half is False
    assert back.model == cfg.model and back.train == cfg.train
    # a checkpoint folder whose JSON predates the fields loads
    save_checkpoint(tmp_path / "ck", build(cfg), cfg, stats={})
    meta_path = tmp_path / "ck" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["device"], meta["config"]["data"]["vae"], meta["config"]["data"]["vae_half"]
    meta_path.write_text(json.dumps(meta))
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.cfg.device == "auto" and loaded.cfg.data.vae == ""


# ---------------------------------------------------------------- codecs.from_config
def test_from_config_uses_the_vae_folder_env_and_device(tiny_vae_dir, monkeypatch, no_cuda):
    monkeypatch.delenv(codecs.VAE_ENV, raising=False)
    cfg = config.load("paper", data__vae=str(tiny_vae_dir))
    codec = codecs.from_config(cfg)
    assert codec.name == "sao" and codec.latent_channels == 4 and codec.samples_per_frame == 8
    assert str(codec.device) == "cpu" and codec.decode_dtype == torch.float32
    # the environment variable when the configuration names no folder
    monkeypatch.setenv(codecs.VAE_ENV, str(tiny_vae_dir))
    assert codecs.vae_path(config.load("paper")) == str(tiny_vae_dir)
    assert codecs.from_config(config.load("paper")).latent_channels == 4
    # precedence: argument > configuration > environment; an explicit "" skips the configuration
    assert codecs.vae_path(cfg, vae="/a") == "/a"
    assert codecs.vae_path(config.load("paper", vae="/b")) == "/b"
    assert codecs.vae_path(config.load("paper", vae="/b"), vae="") == str(tiny_vae_dir)
    monkeypatch.delenv(codecs.VAE_ENV)
    assert codecs.vae_path(config.load("paper")) is None
    # the offline codec ignores all of it
    assert codecs.from_config(config.load("demo", device="cpu")).name == "offline"


def test_from_config_passes_device_and_half_decode(monkeypatch):
    seen = {}
    monkeypatch.setattr(codecs, "load", lambda name, **kw: seen.update(name=name, **kw) or "codec")
    monkeypatch.setattr(devices, "resolve", lambda d: {"auto": "cuda"}.get(d, d))
    cfg = config.load("paper", data__vae="/models/sao", data__vae_half=True)
    codecs.from_config(cfg)
    assert seen == {"name": "sao", "path": "/models/sao", "device": "cuda", "decode_dtype": "float16"}
    seen.clear()
    codecs.from_config(cfg, device="cpu")  # half decoding is for CUDA only
    assert seen == {"name": "sao", "path": "/models/sao", "device": "cpu"}
    seen.clear()
    codecs.from_config(cfg, name="offline")
    assert seen == {"name": "offline"}


def test_missing_vae_names_every_way_to_give_it(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.delenv(codecs.VAE_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"), raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(CodecUnavailable) as err:
        codecs.from_config(config.load("paper", device="cpu"))
    message = str(err.value)
    for way in ("--vae PATH", "SAMUEL_VAE=PATH", "data__vae=PATH", "stabilityai/stable-audio-open-1.0"):
        assert way in message
    with pytest.raises(CodecUnavailable, match="missing: expected a folder, found nothing there"):
        codecs.from_config(config.load("paper", device="cpu", vae=str(tmp_path / "missing")))


# ---------------------------------------------------------------- half-precision decoding
def test_half_decode_difference_on_a_tiny_random_oobleck():
    from samuel.codecs.sao import SAOCodec, half_decode_difference

    codec = SAOCodec(config_overrides=TINY, chunk_seconds=None)
    audio = (0.1 * np.random.default_rng(0).standard_normal((2, 4096))).astype(np.float32)
    z = codec.encode(audio, SR)
    diffs = {dt: half_decode_difference(codec, z, dt) for dt in ("float16", "bfloat16")}
    print({dt: {k: d[k] for k in ("max_abs", "snr_db")} for dt, d in diffs.items()})
    assert codec.decode_dtype == torch.float32  # left as found
    for d in diffs.values():
        assert d["finite"] and 0 < d["max_abs"] < 0.05 and d["rms_error"] > 0
    # float16 keeps 10 mantissa bits, bfloat16 7: float16 must be the closer of the two
    assert diffs["float16"]["snr_db"] > 40
    assert diffs["float16"]["snr_db"] > diffs["bfloat16"]["snr_db"] + 6


# ---------------------------------------------------------------- Demucs
def test_demucs_runs_on_the_resolved_device(no_cuda, monkeypatch):
    pytest.importorskip("demucs")
    import demucs.apply

    from samuel.data import separate as sep

    model = sep.load_separator("demucs_unittest", device="auto")
    assert sep.model_device(model) == torch.device("cpu")
    with pytest.raises(ValueError, match="expected a CUDA GPU"):
        sep.load_separator("demucs_unittest", device="cuda")
    seen = []
    real = demucs.apply.apply_model
    monkeypatch.setattr(demucs.apply, "apply_model",
                        lambda *a, **kw: seen.append(kw["device"]) or real(*a, **kw))
    out = sep.separate(model, np.zeros((2, 4410), np.float32), 44100)
    # the first call is ours (apply_model calls itself once per segment)
    assert seen and seen[0] == torch.device("cpu") and out["vocals"].shape == (2, 4410)


# ---------------------------------------------------------------- CLI flags
@pytest.mark.parametrize("argv", [
    ["data", "build"], ["train"], ["evaluate"], ["book", "run"],
])
def test_device_and_vae_flags_reach_the_config(argv):
    args = cli.parser().parse_args(argv + ["--device", "cpu", "--vae", "/models/sao"])
    assert (args.device, args.vae) == ("cpu", "/models/sao")
    assert cli._device_overrides(args) == {"device": "cpu", "data__vae": "/models/sao"}
    cfg = cli._cfg(args)
    assert cfg.device == "cpu" and cfg.data.vae == "/models/sao"
    plain = cli.parser().parse_args(argv)
    assert cli._device_overrides(plain) == {} and cli._cfg(plain).device == "auto"


def test_commands_hand_the_flags_on(monkeypatch, tmp_path, capsys):
    import samuel.book
    import samuel.generate
    import samuel.train

    seen = {}
    monkeypatch.setattr(samuel.train, "train", lambda cfg, **kw: seen.update(train=cfg) or {})
    assert cli.main(["train", "--profile", "smoke", "--device", "cpu", "--vae", "/v"]) == 0
    assert seen["train"].device == "cpu" and seen["train"].data.vae == "/v"
    monkeypatch.setattr(samuel.book, "run", lambda profile, **kw: seen.update(book=kw) or {})
    assert cli.main(["book", "run", "--profile", "smoke", "--device", "cpu", "--vae", "/v"]) == 0
    kw = seen["book"]  # as keywords of book.run, or as the notebooks' OVERRIDES
    assert (kw.get("device"), kw.get("vae")) == ("cpu", "/v") or \
        {"device": "cpu", "data__vae": "/v"}.items() <= (kw.get("overrides") or {}).items()
    monkeypatch.setattr(samuel.generate, "generate", lambda *a, **kw: seen.update(generate=kw) or {})
    args = cli.parser().parse_args(["generate", "v.wav", "-o", str(tmp_path / "a.wav"), "--device", "cpu",
                                    "--vae", "/v", "--json"])
    cli.cmd_generate(args)
    assert seen["generate"]["device"] == "cpu" and seen["generate"]["vae"] == "/v"
    assert cli.parser().parse_args(["generate", "v.wav", "-o", "a.wav"]).device == "auto"
    assert cli.parser().parse_args(["bench", "model", "--device", "cuda"]).device == "cuda"


# ---------------------------------------------------------------- bench gpu
def test_bench_gpu_without_a_gpu_says_so_in_one_line(no_cuda, capsys):
    assert cli.main(["bench", "gpu"]) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and out.startswith("samuel bench gpu: no CUDA GPU here")
    assert cli.main(["bench", "gpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["gpu"] is None and "no CUDA GPU" in res["reason"]
    assert bench.bench_gpu(device="auto") == res  # "auto" on a CPU-only machine: the same answer


def test_bench_gpu_code_path_at_tiny_size_on_cpu():
    cfg = config.load("smoke", diffusion__fast_steps=2)
    res = bench.bench_gpu(cfg, device="cpu", batch_size=2, frames=16, warmup=1, steps=1,
                          ancestral_steps=2, vae_seconds=0.2, vae_config=TINY)
    print(bench.format_gpu(res))
    t, s, v = res["train"], res["sample"], res["vae"]
    assert res["device"] == "cpu" and t["batch_size"] == 2 and t["frames"] == 16 and t["bf16"]
    assert t["train_steps_per_s"] > 0 and t["train_step_s"] == pytest.approx(1 / t["train_steps_per_s"])
    assert s["ancestral_steps_run"] == 2 and s["ancestral_steps"] == 800 and s["fast_s"] > 0
    assert s["fast_speedup"] == pytest.approx(s["ancestral_s"] / s["fast_s"])  # the printed ratio
    assert v["latent_frames"] == int(np.ceil(0.2 * SR / 8)) and v["encode_s"] > 0 and v["decode_s"] > 0
    assert v["half"]["dtype"] in ("float16", "bfloat16") and v["half"]["finite"]
    assert 0 < v["half"]["max_abs"] < 0.05
    text = bench.format_gpu(res)
    assert "steps/s" in text and "800-step sampler" in text and "vs float32" in text
    json.dumps(res)  # --json works on it
