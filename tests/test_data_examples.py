"""The small bundled inputs in data/: they load with the package's own readers, and the example
vocal is what data/make_example_vocal.py renders (data/README.md says so)."""
from __future__ import annotations

import csv
import runpy

import numpy as np
import soundfile as sf

from samuel import audio, config, paths
from samuel.data import songlist, synth

SONGLIST = paths.DATA / "songlist_example.csv"
VOCAL = paths.DATA / "example_vocal.wav"
KAGGLE_COLUMNS = ["song_name", "song_popularity", "song_duration_ms", "acousticness",
                  "danceability", "energy", "instrumentalness", "key", "liveness", "loudness",
                  "audio_mode", "speechiness", "tempo", "time_signature", "audio_valence"]


def test_songlist_example_has_the_kaggle_header():
    with open(SONGLIST, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[:len(KAGGLE_COLUMNS)] == KAGGLE_COLUMNS, header
    assert header[len(KAGGLE_COLUMNS):] == ["artist_name"], header


def test_songlist_example_parses_with_titles_and_artists():
    songs = songlist.read_songlist(SONGLIST)
    assert len(songs) == 10
    assert all(s.title and s.artist for s in songs), songs
    assert len({s.song_id for s in songs}) == 10
    by_title = {s.title: s for s in songs}
    assert by_title["Seven Nation Army"].artist == "The White Stripes"
    assert by_title["Crazy in Love"].artist == "Beyoncé"  # UTF-8 read as such
    assert by_title["Hips Don't Lie"].query == "Hips Don't Lie Shakira"
    assert all("/" not in s.song_id and " " not in s.song_id for s in songs)


def test_example_vocal_is_small_mono_and_short():
    info = sf.info(str(VOCAL))
    assert (info.channels, info.samplerate, info.subtype) == (1, 22050, "PCM_16")
    assert 1.0 <= info.duration <= 10.0, info.duration
    assert VOCAL.stat().st_size < 500_000


def test_example_vocal_loads_with_samuel_audio():
    x = audio.load(VOCAL)  # what `samuel generate` reads it with
    assert x.shape == (2, 8 * 44100) and x.dtype == np.float32
    assert not audio.is_silent(x)
    assert -20.0 < audio.peak_db(x) < 0.0
    # a sung line, not noise: most 0.5 s segments carry sound
    seg = x[0, : x.shape[1] // 22050 * 22050].reshape(-1, 22050)
    rms_db = 20 * np.log10(np.sqrt((seg ** 2).mean(axis=1)) + 1e-12)
    assert (rms_db > -40).mean() >= 0.75, rms_db.round(1)


def test_example_vocal_is_what_the_script_renders():
    script = runpy.run_path(str(paths.DATA / "make_example_vocal.py"))
    rendered = script["render_example_vocal"]()  # [1, N] float at 22.05 kHz
    stored, sr = sf.read(str(VOCAL), dtype="int16", always_2d=True)
    assert sr == script["SAMPLE_RATE"] and rendered.shape == (1, stored.shape[0])
    expected = np.round(np.clip(rendered[0], -1, 1) * 32767).astype(np.int64)
    diff = np.abs(expected - stored[:, 0].astype(np.int64))
    assert diff.max() <= 2, (
        f"{VOCAL}: differs from data/make_example_vocal.py's output by up to {diff.max()} LSB; "
        "the synthesiser changed: run `.venv/bin/python data/make_example_vocal.py` and commit")


def test_example_vocal_seed_is_outside_every_profile_corpus():
    seed = runpy.run_path(str(paths.DATA / "make_example_vocal.py"))["SEED"]
    for profile in config.PROFILES:
        cfg = config.load(profile)
        corpus = {synth.song_seed(cfg.seed, i) for i in range(cfg.data.corpus_songs)}
        assert seed not in corpus, profile
