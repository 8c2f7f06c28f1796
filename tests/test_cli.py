"""The `samuel` command line: wiring, overrides, clear errors and the benchmark's numbers."""
import json

import pytest

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
    from samuel import bench

    res = bench.bench_model(config.load("smoke"), threads=1, slice_steps=5)
    for key in ("parameters", "forward_ms_b1", "forward_ms_b16", "train_step_s", "train_peak_rss_gb",
                "cfg_step_ms", "ancestral_s", "fast_s", "fast_speedup"):
        assert res[key] > 0, key
    assert set(res["meets"]) == {"train_step_s", "train_peak_rss_gb", "cfg_step_ms", "fast_speedup"}
    text = bench.format_model(res)
    assert "speed-up" in text and "extrapolated" in text
