"""samuel/config.py: the profiles, overrides and the JSON round trip (book: design §8)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from samuel import config


def _sections(cfg) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]


@pytest.mark.parametrize("profile", config.PROFILES)
def test_every_profile_loads_by_name(profile):
    cfg = config.load(profile)
    assert isinstance(cfg, config.Config) and cfg.profile == profile
    assert {"model", "diffusion", "data", "train"} <= set(_sections(cfg))
    assert cfg.model.latent_channels == 64 and len(cfg.model.channels) == 4
    assert cfg.data.chunk_frames % 8 == 0  # the U-Net halves T three times


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'papr': expected one of smoke, demo, paper"):
        config.load("papr")


def test_paper_profile_holds_the_papers_numbers():
    cfg = config.load("paper")
    m, d, data, t = cfg.model, cfg.diffusion, cfg.data, cfg.train
    assert m.channels == (64, 128, 256, 512) and (m.heads, m.head_dim, m.window) == (8, 64, 16)
    assert m.mix == "paper" and m.vocal_concat is False
    assert (d.timesteps, d.cosine_s, d.snr_clamp, d.snr_floor, d.cond_dropout) == (800, 0.008, 5.0, 0.0, 0.1)
    assert (data.codec, data.sample_rate, data.chunk_frames, data.max_song_seconds) == ("sao", 44100, 1024, 900.0)
    assert data.separator == "htdemucs" and data.val_fraction == 0.1
    assert (t.lr, t.batch_size) == (3.5e-4, 16)


def test_offline_profiles_need_no_download():
    for profile in ("smoke", "demo"):
        cfg = config.load(profile)
        assert cfg.data.codec == "offline" and cfg.data.corpus_songs > 0, profile


def test_profiles_are_frozen_and_loading_is_fresh():
    cfg = config.load("demo", train__lr=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 2.0  # type: ignore[misc]
    assert config.load("demo").train.lr != 1.0  # an override never leaks into the next load


def test_override_by_section_and_field_changes_that_field_only():
    base = config.load("demo").to_dict()
    cfg = config.load("demo", train__lr=1e-4, model__window=8)
    got = cfg.to_dict()
    assert cfg.train.lr == 1e-4 and cfg.model.window == 8
    got["train"]["lr"], got["model"]["window"] = base["train"]["lr"], base["model"]["window"]
    assert got == base


def test_override_by_unique_field_name():
    cfg = config.load("smoke", max_steps=7, cfg_scale=3.5)
    assert cfg.train.max_steps == 7 and cfg.diffusion.cfg_scale == 3.5
    assert config.load("smoke", seed=5).seed == 5


def test_string_values_from_the_command_line_are_coerced():
    cfg = config.load("demo", train__max_steps="100", lr="2e-4", bf16="false", vocal_concat="1",
                      window="8", seed="3")
    assert cfg.train.max_steps == 100 and type(cfg.train.max_steps) is int
    assert cfg.train.lr == 2e-4 and type(cfg.train.lr) is float
    assert cfg.train.bf16 is False and cfg.model.vocal_concat is True
    assert cfg.model.window == 8 and cfg.seed == 3
    assert config.load("demo", channels=[64, 64, 64, 64]).model.channels == (64, 64, 64, 64)


@pytest.mark.parametrize("key", ["no_such_field", "model__lr", "nosection__lr", "train__"])
def test_unknown_override_is_an_error_naming_it(key):
    with pytest.raises(ValueError, match=rf"override '{key}': expected one field of .*found 0"):
        config.load("demo", **{key: 1})


def test_ambiguous_bare_name_is_an_error_and_a_section_resolves_it():
    @dataclasses.dataclass(frozen=True)
    class Train2:  # a training section that also has a field called "window"
        lr: float = 1.0
        window: int = 99

    cfg = dataclasses.replace(config.load("smoke"), train=Train2())
    with pytest.raises(ValueError, match=r"override 'window': expected one field of .*found 2"):
        config.load(cfg, window=4)
    out = config.load(cfg, model__window=4)
    assert out.model.window == 4 and out.train.window == 99


def test_bare_names_of_the_real_sections_resolve_exactly_when_unique():
    cfg = config.load("paper")
    owners: dict = {}
    for s in _sections(cfg):
        for f in dataclasses.fields(getattr(cfg, s)):
            owners.setdefault(f.name, []).append(s)
    for name, where in owners.items():
        value = getattr(getattr(cfg, where[0]), name)
        if len(where) == 1:
            assert getattr(getattr(config.load("paper", **{name: value}), where[0]), name) == value
        else:
            with pytest.raises(ValueError, match="found"):
                config.load("paper", **{name: value})


@pytest.mark.parametrize("profile", config.PROFILES)
def test_from_dict_round_trips_through_json(profile):
    cfg = config.load(profile, seed=4, train__lr=1e-4, model__channels=(64, 64, 64, 128))
    again = config.from_dict(json.loads(cfg.to_json()))  # what a checkpoint stores and reads
    assert again == cfg
    assert again.model.channels == (64, 64, 64, 128) and isinstance(again.model.channels, tuple)
    assert json.loads(cfg.to_json()) == json.loads(json.dumps(cfg.to_dict()))


def test_from_dict_fills_missing_fields_and_ignores_unknown_ones():
    d = config.load("demo").to_dict()
    del d["train"]["lr"]  # written before the field existed
    d["model"]["from_the_future"] = 1  # written by a newer version
    cfg = config.from_dict(d)
    assert cfg.train.lr == config.TrainConfig().lr
    assert cfg.model == config.load("demo").model
