"""The `samuel` command line: wiring, overrides, clear errors and the benchmark's numbers."""
import json

import pytest
import torch

from samuel import cli, config


def test_overrides_reach_the_config():
    args = cli.parser().parse_args(["train", "--profile", "smoke", "--set", "train__max_steps=7",
                                    "--set", "mix=reversed"])
    cfg = cli._cfg(args)
    assert cfg.train.max_steps == 7 and cfg.model.mix == "reversed" and cfg.profile == "smoke"


def test_unknown_override_is_a_clear_error():
    with pytest.raises(ValueError, match="override 'nonsense'"):
        config.load("smoke", nonsense=1)


def test_config_round_trips_through_json():
    cfg = config.load("paper", lr=1e-4, seed=3)
    assert config.from_dict(json.loads(cfg.to_json())) == cfg


def test_missing_checkpoint_gives_one_sentence(tmp_path, capsys):
    rc = cli.main(["evaluate", "--profile", "smoke", "--checkpoint", str(tmp_path / "nope"),
                   "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "nope" in err


def test_bench_model_prints_every_number(capsys):
    """A printout: every number is there and a finite number (what they are is the machine's;
    no wall time is asserted), and the parameter count is the model's."""
    import math

    from samuel import bench, model

    cfg = config.load("smoke")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = bench.bench_model(cfg, threads=1, slice_steps=5)
        assert torch.get_num_threads() == 2  # the caller's thread count is given back
    finally:
        torch.set_num_threads(before)
    assert res["parameters"] == sum(p.numel() for p in model.build(cfg).parameters())
    for key in ("forward_ms_b1", "forward_ms_b16", "train_step_s", "train_peak_rss_gb",
                "cfg_step_ms", "ancestral_s", "fast_s", "fast_speedup", "train_step_gflop",
                "matmul_gflops", "train_step_floor_s", "forward_b1_gflop", "forward_b1_floor_ms"):
        assert isinstance(res[key], (int, float)) and math.isfinite(res[key]), key
    assert set(res["meets"]) == {"train_step_s", "train_peak_rss_gb", "cfg_step_ms", "fast_speedup"}
    text = bench.format_model(res)
    assert "speed-up" in text and "extrapolated" in text
    # the floors: the counted work over this CPU's matrix-product rate
    assert res["train_step_floor_s"] == pytest.approx(res["train_step_gflop"] / res["matmul_gflops"], rel=1e-3, abs=1e-4)  # rounded to 4 places
    assert f"no step takes under {res['train_step_floor_s']:.2f} s here" in text
    assert f"none takes under {res['forward_b1_floor_ms']:.0f} ms here" in text


def test_generate_is_a_thin_wrapper(monkeypatch, capsys):
    """``samuel generate`` parses in the CLI and hands everything to generate.generate."""
    from samuel import generate

    seen = {}
    result = {"out": "a.wav", "mix": "m.wav", "seconds": 3.0, "windows": 2, "steps": 4,
              "cfg_scale": 1.5, "timings": {"encode_s": 0.1, "sample_s": 0.2, "decode_s": 0.3},
              "seam": {"boundary_flux": 1.25, "within_flux": 1.5}}

    def fake(vocals, out, **kw):
        seen.update(vocals=vocals, out=out, **kw)
        return result

    monkeypatch.setattr(generate, "generate", fake)
    assert cli.main(["generate", "v.wav", "-o", "a.wav", "--mix", "m.wav", "--steps", "4",
                     "--cfg", "1.5", "--seed", "2", "--overlap", "6", "--no-progress",
                     "--device", "cpu", "--vae", "/v"]) == 0
    assert seen == dict(vocals="v.wav", out="a.wav", mix_path="m.wav", checkpoint=None, steps=4,
                        cfg_scale=1.5, seed=2, codec=None, progress=False, overlap_frames=6,
                        device="cpu", vae="/v")
    out = capsys.readouterr().out.splitlines()
    assert out == ["a.wav: 3.0 s, 2 window(s), 4 steps, cfg 1.5; encode 0.1 s, sample 0.2 s, "
                   "decode 0.3 s", "m.wav: vocal + accompaniment",
                   "seams: boundary flux 1.25 vs within-window 1.50"]
    assert cli.main(["generate", "v.wav", "-o", "a.wav", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result
    assert not hasattr(generate, "main") and not hasattr(generate, "add_arguments")
