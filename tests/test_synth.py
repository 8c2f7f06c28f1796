"""Tests for the synthetic corpus: composing (samuel.data.compose), rendering
(samuel.data.render) and the corpus on disk (samuel.data.synth)."""
import json
import os
import warnings

import numpy as np
import pytest

from samuel.data import compose, render, synth

_OMP_BEFORE = os.environ.get("OMP_NUM_THREADS")

SECONDS = 6.0
SR = compose.SR

# Krumhansl–Kessler key profiles
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def builtin_audio():
    song = compose.compose(3, SECONDS)
    return song, render.render(song, backend="builtin")


def test_compose_is_deterministic_and_seeds_differ():
    a, b, c = compose.compose(5, SECONDS), compose.compose(5, SECONDS), compose.compose(6, SECONDS)
    assert a == b
    assert compose.truth(a) == compose.truth(b)
    assert a.notes != c.notes


def test_builtin_render_deterministic_lengths_sum_no_clipping(builtin_audio):
    song, audio = builtin_audio
    again = render.render(compose.compose(3, SECONDS), backend="builtin")
    n = round(SECONDS * SR)
    for stem in ("vocals", "accomp", "mix"):
        assert audio[stem].shape == (2, n)
        assert audio[stem].dtype == np.float32
        assert np.array_equal(audio[stem], again[stem])
        assert np.abs(audio[stem]).max() < 0.99
        assert np.abs(audio[stem]).max() > 0.05
    assert np.array_equal(audio["vocals"] + audio["accomp"], audio["mix"])
    other = render.render(compose.compose(4, SECONDS), backend="builtin")
    assert not np.array_equal(other["mix"], audio["mix"])


def test_odd_length_is_exact():
    audio = render.render(compose.compose(1, 4.37), backend="builtin")
    assert audio["mix"].shape == (2, round(4.37 * SR))


def test_fluidsynth_backend_or_recorded_fallback(record_property):
    if not render.fluidsynth_available():
        assert render.resolve_backend("auto") == "builtin"
        record_property("fluidsynth", "unavailable: auto fell back to builtin")
        warnings.warn("fluidsynth backend not available: tested the builtin fallback only")
        return
    record_property("fluidsynth", render.find_soundfont())
    assert render.resolve_backend("auto") == "fluidsynth"
    song = compose.compose(8, SECONDS)
    a, b = render.render(song, backend="fluidsynth"), render.render(song, backend="fluidsynth")
    n = round(SECONDS * SR)
    for stem in ("vocals", "accomp", "mix"):
        assert a[stem].shape == (2, n) and a[stem].dtype == np.float32
        assert np.array_equal(a[stem], b[stem])
        assert 0.05 < np.abs(a[stem]).max() < 0.99
    assert np.array_equal(a["vocals"] + a["accomp"], a["mix"])
    # stereo, not a duplicated mono signal
    assert not np.allclose(a["accomp"][0], a["accomp"][1])


def test_truth_is_consistent():
    for seed in range(10):
        song = compose.compose(seed, SECONDS)
        info = compose.truth(song, "builtin")
        json.dumps(info)
        beats = np.array(info["beat_times"])
        assert np.allclose(np.diff(beats), 60.0 / info["tempo_bpm"])
        assert beats[0] == 0 and beats[-1] < SECONDS
        assert info["downbeat_times"] == info["beat_times"][:: info["beats_per_bar"]]
        chords = info["chords"]
        assert chords[0]["start"] == 0 and chords[-1]["end"] == pytest.approx(SECONDS)
        for prev, nxt in zip(chords, chords[1:]):
            assert prev["end"] == pytest.approx(nxt["start"])
        # the melody: chord tones on strong beats, onsets on the 16th grid
        melody = info["melody"]
        assert melody
        strong = [t for i, t in enumerate(beats) if i % info["beats_per_bar"] in ({0, 2} if info["beats_per_bar"] == 4 else {0})]
        hits = total = 0
        for t in strong:
            sounding = [m for m in melody if m[1] <= t + 1e-6 < m[2]]
            if not sounding:
                continue
            chord = next(c for c in chords if c["start"] <= t < c["end"])
            total += 1
            hits += sounding[0][0] % 12 in compose.chord_pcs(chord["root_pc"], chord["quality"])
        assert total > 0 and hits / total >= 0.7
        sixteenth = 60.0 / info["tempo_bpm"] / 4
        for m in melody:
            assert abs(m[1] / sixteenth - round(m[1] / sixteenth)) < 1e-3
        scale = compose.MAJOR_SCALE if info["mode"] == "major" else compose.MINOR_SCALE
        in_scale = np.mean([(m[0] - info["tonic_pc"]) % 12 in scale for m in melody])
        assert in_scale >= 0.9


def test_variety_across_seeds():
    songs = [compose.compose(compose.song_seed(0, i), 8.0) for i in range(20)]
    assert len({s.key_name for s in songs}) >= 6
    tempi = [s.tempo_bpm for s in songs]
    assert max(tempi) - min(tempi) >= 30
    assert len({s.style for s in songs}) >= 3
    assert len({s.instruments["harmony"] for s in songs}) >= 4


def _key_rank(chroma_mean, tonic_pc, mode):
    scores = {}
    for pc in range(12):
        for name, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
            scores[(pc, name)] = np.corrcoef(chroma_mean, np.roll(profile, pc))[0, 1]
    ranked = sorted(scores, key=scores.get, reverse=True)
    return ranked.index((tonic_pc, mode))


def test_key_is_recoverable_from_the_vocal_alone():
    librosa = pytest.importorskip("librosa")
    ranks = []
    for i in range(8):
        song = compose.compose(compose.song_seed(1, i), 8.0)
        vocals = render.render(song, backend="builtin")["vocals"].mean(axis=0)
        chroma = librosa.feature.chroma_stft(y=vocals, sr=SR, n_fft=8192, hop_length=4096, tuning=0.0)
        ranks.append(_key_rank(chroma.mean(axis=1), song.tonic_pc, song.mode))
    # the true key beats at least 19 of the 23 others for most songs (the relative key and the
    # keys a fifth away share most pitch classes with it, so they may come close)
    ranks = np.array(ranks)
    assert np.mean(ranks <= 4) >= 0.75 and np.median(ranks) <= 2, ranks


def test_render_corpus_writes_and_resumes(tmp_path):
    sf = pytest.importorskip("soundfile")
    records = synth.render_corpus(tmp_path, 2, 3.0, seed=1, backend="builtin", progress=False)
    assert [r["song_id"] for r in records] == ["synth_0000", "synth_0001"]
    for r in records:
        mix, sr = sf.read(r["mix"], dtype="float32", always_2d=True)
        vocals, _ = sf.read(r["vocals"], dtype="float32", always_2d=True)
        accomp, _ = sf.read(r["accomp"], dtype="float32", always_2d=True)
        assert sr == SR and mix.shape == (round(3.0 * SR), 2)
        assert np.array_equal(vocals + accomp, mix)
        info = json.loads((tmp_path / r["song_id"] / "truth.json").read_text())
        assert info["seed"] == compose.song_seed(1, int(r["song_id"][-4:])) and info["backend"] == "builtin"
    stamp = (tmp_path / "synth_0000" / "mix.wav").stat().st_mtime_ns
    (tmp_path / "synth_0001" / "truth.json").unlink()  # an interrupted song
    again = synth.render_corpus(tmp_path, 2, 3.0, seed=1, backend="builtin", progress=False)
    assert (tmp_path / "synth_0000" / "mix.wav").stat().st_mtime_ns == stamp
    assert (tmp_path / "synth_0001" / "truth.json").is_file()
    assert [r["truth"] for r in again] == [r["truth"] for r in records]
    assert not list(tmp_path.rglob("*.tmp*"))


# ----------------------------------------------------------------------------- corpus variety
def test_variety_is_off_by_default_and_keeps_the_main_draws():
    plain, varied = compose.compose(11, SECONDS), compose.compose(11, SECONDS, variety=True)
    assert plain.variety == {} and "variety" not in compose.truth(plain)
    assert (varied.tonic_pc, varied.mode, varied.style) == (plain.tonic_pc, plain.mode, plain.style)
    assert varied.variety and varied.variety["lead"] == varied.instruments["vocals"]
    assert compose.compose(11, SECONDS, variety=True) == varied
    assert np.all(render.lead_bend(plain, 100.0) == 0)


def test_variety_spans_tempo_keys_and_leads():
    songs = [compose.compose(compose.song_seed(2, i), 4.0, variety=True) for i in range(60)]
    tempi = np.array([s.tempo_bpm for s in songs])
    assert tempi.min() >= 60 and tempi.max() <= 200 and tempi.max() - tempi.min() > 100
    assert len({s.key_name for s in songs}) >= 15
    leads = {s.instruments["vocals"] for s in songs}
    assert len(leads & set(compose.LEAD_VOICES)) >= 2 and len(leads & set(compose.LEAD_MELODIC)) >= 4
    assert len({s.variety["timbre"] for s in songs}) >= 4
    assert any(s.variety["bleed_db"] is not None for s in songs) and any(s.variety["drive"] > 0 for s in songs)


def test_lead_bend_keeps_every_note_nearest_its_pitch():
    for i in range(10):
        song = compose.compose(compose.song_seed(3, i), 8.0, variety=True)
        rate = 200.0
        bend = render.lead_bend(song, rate)
        for note in song.part("vocals"):
            # past the glide, the sung pitch (the mean over the note) stays within a third of a
            # semitone of the written one, and its vibrato within a semitone
            i0 = int((note.start + song.variety["glide_s"] + 0.01) * rate)
            i1 = int(note.end * rate)
            if i1 > i0 + 40:
                assert abs(bend[i0:i1].mean()) < 0.33 and np.abs(bend[i0:i1]).max() < 1.0, (i, note)


def _check_corpus(records, seconds):
    sf = pytest.importorskip("soundfile")
    for r in records:
        stems = {k: sf.read(r[k], dtype="float32", always_2d=True) for k in ("vocals", "accomp", "mix")}
        for audio, sr in stems.values():
            assert sr == SR and audio.shape == (round(seconds * SR), 2)
            assert np.all(np.isfinite(audio)) and 0.05 < np.abs(audio).max() < 0.99
        assert np.array_equal(stems["vocals"][0] + stems["accomp"][0], stems["mix"][0])
        info = r["truth"]
        song = compose.compose(info["seed"], seconds, variety="variety" in info)
        assert info["key"] == song.key_name and info["tempo_bpm"] == song.tempo_bpm
        beats = np.array(info["beat_times"])
        assert np.allclose(np.diff(beats), 60.0 / info["tempo_bpm"]) and beats[0] == 0
        sixteenth = 60.0 / info["tempo_bpm"] / 4
        onsets = [n.start for n in song.notes if n.part in ("drums", "vocals")]
        assert all(abs(t / sixteenth - round(t / sixteenth)) < 1e-3 for t in onsets)


def test_smoke_corpus_with_variety_differs_and_keeps_exact_truth(tmp_path):
    from samuel import config

    cfg = config.load("smoke", data__corpus_variety="true", train__latent_augment="0.5")
    assert cfg.data.corpus_variety is True and cfg.train.latent_augment == 0.5
    assert config.load("smoke").data.corpus_variety is False
    n, seconds = cfg.data.corpus_songs, cfg.data.corpus_song_seconds
    plain = synth.render_corpus(tmp_path / "plain", n, seconds, seed=cfg.seed, backend="builtin",
                                progress=False)
    varied = synth.render_corpus(tmp_path / "varied", n, seconds, seed=cfg.seed, backend="builtin",
                                 progress=False, variety=cfg.data.corpus_variety)
    _check_corpus(plain, seconds)
    _check_corpus(varied, seconds)
    assert all("variety" in r["truth"] and "variety" not in p["truth"] for r, p in zip(varied, plain))
    assert [r["truth"]["key"] for r in varied] == [p["truth"]["key"] for p in plain]
    assert len({r["truth"]["tempo_bpm"] for r in varied} - {p["truth"]["tempo_bpm"] for p in plain}) >= n // 2
    sf = pytest.importorskip("soundfile")
    for r, p in zip(varied, plain):
        assert not np.array_equal(sf.read(r["vocals"])[0], sf.read(p["vocals"])[0])
    # a folder rendered without variety is rendered again when asked for it, and the other way
    again = synth.render_corpus(tmp_path / "plain", 1, seconds, seed=cfg.seed, backend="builtin",
                                progress=False, variety=True)
    assert again[0]["truth"] == varied[0]["truth"]


def test_varied_fluidsynth_render_is_deterministic():
    if not render.fluidsynth_available():
        warnings.warn("fluidsynth backend not available: varied rendering tested with the builtin only")
        pytest.skip("fluidsynth not available")
    song = compose.compose(compose.song_seed(0, 1), SECONDS, variety=True)
    a, b = render.render(song, backend="fluidsynth"), render.render(song, backend="fluidsynth")
    plain = render.render(compose.compose(compose.song_seed(0, 1), SECONDS), backend="fluidsynth")
    assert np.array_equal(a["vocals"], b["vocals"]) and np.array_equal(a["mix"], b["mix"])
    assert np.array_equal(a["vocals"] + a["accomp"], a["mix"])
    assert 0.05 < np.abs(a["mix"]).max() < 0.99 and not np.array_equal(a["vocals"], plain["vocals"])


def test_key_is_recoverable_from_the_varied_vocal():
    librosa = pytest.importorskip("librosa")
    ranks = []
    for i in range(8):
        song = compose.compose(compose.song_seed(1, i), 8.0, variety=True)
        vocals = render.render(song, backend="builtin")["vocals"].mean(axis=0)
        chroma = librosa.feature.chroma_stft(y=vocals, sr=SR, n_fft=8192, hop_length=4096, tuning=0.0)
        ranks.append(_key_rank(chroma.mean(axis=1), song.tonic_pc, song.mode))
    ranks = np.array(ranks)
    assert np.mean(ranks <= 4) >= 0.75 and np.median(ranks) <= 2, ranks


def test_render_corpus_in_worker_processes_writes_the_same_audio(tmp_path):
    sf = pytest.importorskip("soundfile")
    n = synth._MIN_PARALLEL  # the smallest corpus that uses the pool
    one = synth.render_corpus(tmp_path / "one", n, 1.0, seed=3, backend="builtin", progress=False,
                              workers=1)
    two = synth.render_corpus(tmp_path / "two", n, 1.0, seed=3, backend="builtin", progress=False,
                              workers=2)
    assert [r["song_id"] for r in two] == [f"synth_{i:04d}" for i in range(n)]
    assert [r["truth"] for r in two] == [r["truth"] for r in one]
    for a, b in zip(one, two):
        for stem in synth.STEMS:
            # the samples, not the bytes: libsndfile's PEAK chunk holds the time of writing
            assert np.array_equal(sf.read(a[stem])[0], sf.read(b[stem])[0]), (a["song_id"], stem)
    assert os.environ.get("OMP_NUM_THREADS") == _OMP_BEFORE  # the workers' setting is not left here


def test_render_corpus_names_a_failed_worker(tmp_path, monkeypatch):
    pytest.importorskip("soundfile")
    # a backend the workers cannot resolve: each one fails, and the error says where and why
    monkeypatch.setattr(synth, "resolve_backend", lambda b: "no-such-backend")
    with pytest.raises(RuntimeError, match=r"rendering the corpus into .*workers failed"):
        synth.render_corpus(tmp_path, synth._MIN_PARALLEL, 1.0, seed=3, progress=False, workers=2)
