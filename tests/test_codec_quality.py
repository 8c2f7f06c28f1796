"""Round-trip quality of the offline codec on a synthetic song made here (design §3)."""
from __future__ import annotations

import numpy as np
import pytest

from samuel import codecs
from samuel.codecs import quality

SR = 44100


def synth_song(seconds: float = 8.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A little song ``[2, N]``: I-vi-IV-V chords, a bass line, a melody and drum clicks."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    beat = 0.5  # 120 bpm
    chords = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]  # C Am F G
    melody = [72, 74, 76, 79, 77, 76, 74, 72]

    def tone(midi, start, dur, amp, harmonics=4):
        i0, i1 = int(start * sr), min(n, int((start + dur) * sr))
        if i0 >= n:
            return
        tt = t[i0:i1] - start
        f = 440.0 * 2 ** ((midi - 69) / 12)
        env = np.minimum(1.0, tt / 0.01) * np.exp(-tt * 1.5)
        wave = sum(np.sin(2 * np.pi * f * k * tt) / k for k in range(1, harmonics + 1))
        out[i0:i1] += amp * env * wave

    bar = 4 * beat
    for b in range(int(np.ceil(seconds / bar))):
        chord = chords[b % len(chords)]
        for m in chord:
            tone(m, b * bar, bar, 0.08)
        tone(chord[0] - 24, b * bar, 2 * beat, 0.25, harmonics=3)
        tone(chord[0] - 24 + 7, b * bar + 2 * beat, 2 * beat, 0.25, harmonics=3)
        for k in range(4):
            tone(melody[(4 * b + k) % len(melody)], b * bar + k * beat, beat, 0.1, harmonics=2)
    for k in range(int(seconds / beat * 2)):  # eighth-note hats, kick on the beat
        i0 = int(k * beat / 2 * sr)
        click = rng.standard_normal(min(800, n - i0)) * np.exp(-np.arange(min(800, n - i0)) / 150)
        out[i0:i0 + len(click)] += 0.15 * click
        if k % 2 == 0:
            tt = np.arange(min(4000, n - i0)) / sr
            out[i0:i0 + len(tt)] += 0.5 * np.sin(2 * np.pi * 60 * tt * np.exp(-tt * 8)) * np.exp(-tt * 20)
    out *= 0.9 / np.max(np.abs(out))
    return np.stack([out, out]).astype(np.float32)


class _NoiseCodec(codecs.Codec):
    """A broken codec: right shapes, noise out. The thresholds below must fail it."""

    name = "noise"

    def encode(self, audio, sr):
        return np.zeros((64, self.frames_for(np.shape(audio)[-1], sr)), np.float32)

    def decode(self, latents):
        rng = np.random.default_rng(0)
        return (0.1 * rng.standard_normal((2, latents.shape[1] * 2048))).astype(np.float32)


@pytest.fixture(scope="module")
def song():
    return synth_song(8.0)


def test_offline_round_trip_keeps_harmony_and_rhythm(song):
    # measured on this song: chroma r 0.845, onset r 0.980, spectral convergence 0.52,
    # LSD 5.7 dB; a noise codec: 0.05, 0.09, 1.01; the round trip shifted by a semitone: 0.31
    m = quality.round_trip_metrics(codecs.load("offline"), song, SR)
    print("\n" + quality.report(m))
    assert m["latent_shape"] == [64, int(np.ceil(song.shape[1] / 2048))]
    assert m["chroma_correlation"] > 0.7
    assert m["onset_correlation"] > 0.7
    assert m["spectral_convergence"] < 0.7
    assert m["log_spectral_distance_db"] < 8.0


def test_a_broken_codec_fails_the_thresholds(song):
    m = quality.round_trip_metrics(_NoiseCodec(), song, SR)
    assert m["chroma_correlation"] < 0.5 and m["onset_correlation"] < 0.5
    assert m["spectral_convergence"] > 0.9


def test_report_is_a_table(song):
    rows = [dict(codec="a", chroma_correlation=0.9), dict(codec="b", chroma_correlation=0.12345)]
    text = quality.report(rows)
    assert text.splitlines()[0].split() == ["codec", "chroma", "r"]
    assert "0.123" in text and len(text.splitlines()) == 4


def test_offline_encodes_30_seconds_fast():
    import time

    codec = codecs.load("offline")
    audio = synth_song(30.0)
    t0 = time.perf_counter()
    latents = codec.encode(audio, SR)
    t1 = time.perf_counter()
    codec.decode(latents)
    t2 = time.perf_counter()
    print(f"\noffline codec, 30 s of audio: encode {t1 - t0:.2f} s, decode {t2 - t1:.2f} s")
    assert latents.shape == (64, 646)
