"""Round-trip quality of a codec: encode, decode, compare (design §3: "its round-trip quality
is measured and shown in the book").

Metrics, each computed on mono mixes at 22.05 kHz over the common length:

* ``spectral_convergence``: ``||S - S'||_F / ||S||_F`` on linear STFT magnitudes
  (0 is perfect, 1 is "as far as silence"; phase-free, so Griffin-Lim is not penalised
  for phase it cannot know).
* ``log_spectral_distance_db``: per frame, the RMS over bins of the dB difference (floor
  -80 dB re the peak), averaged over frames.
* ``chroma_correlation``: mean over frames with energy of the Pearson correlation between
  the 12-bin chroma vectors (librosa ``chroma_stft``): harmony and melody. Pearson, not
  cosine: the cosine of two non-negative vectors is high even for noise (~0.7).
* ``onset_correlation``: Pearson correlation of the onset-strength envelopes: rhythm.
* ``encode_seconds``, ``decode_seconds``, ``audio_seconds``, ``realtime_factor``
  (audio seconds per second of encode + decode).

Book: notebook 02, "Round-trip metrics"; design §3.
"""
from __future__ import annotations

import time

import numpy as np
import soxr

from .base import Codec, as_channels_first

METRIC_SR = 22050  # rate all metrics are computed at
N_FFT, HOP = 2048, 512  # metric STFT: 93 ms window, 23 ms hop
DB_FLOOR = -80.0  # dB floor for the log-spectral distance (relative to the reference peak)


def round_trip_metrics(codec: Codec, audio: np.ndarray, sr: int) -> dict:
    """Encode and decode ``audio`` (``[2, N]`` or ``[N]`` at ``sr`` Hz) and measure the damage.

    Returns:
        dict of floats (see the module docstring) plus ``codec`` (its name) and
        ``latent_shape``.
    """
    audio = as_channels_first(audio)
    t0 = time.perf_counter()
    latents = codec.encode(audio, sr)
    t1 = time.perf_counter()
    decoded = codec.decode(latents)
    t2 = time.perf_counter()
    metrics = compare(audio, sr, decoded, codec.sample_rate)
    seconds = audio.shape[1] / sr
    metrics.update(codec=codec.name, latent_shape=list(latents.shape), audio_seconds=seconds,
                   encode_seconds=t1 - t0, decode_seconds=t2 - t1,
                   realtime_factor=seconds / max(t2 - t0, 1e-9))
    return metrics


def compare(reference: np.ndarray, ref_sr: int, estimate: np.ndarray, est_sr: int) -> dict:
    """Spectral, harmonic and rhythmic agreement of ``estimate`` with ``reference``."""
    import librosa

    ref = _mono(reference, ref_sr)
    est = _mono(estimate, est_sr)
    n = min(len(ref), len(est))
    ref, est = ref[:n], est[:n]
    s_ref = np.abs(librosa.stft(ref, n_fft=N_FFT, hop_length=HOP))
    s_est = np.abs(librosa.stft(est, n_fft=N_FFT, hop_length=HOP))
    sc = float(np.linalg.norm(s_ref - s_est) / max(np.linalg.norm(s_ref), 1e-12))
    floor = max(float(s_ref.max()), 1e-12) * 10.0 ** (DB_FLOOR / 20.0)
    diff_db = 20.0 * (np.log10(np.maximum(s_ref, floor)) - np.log10(np.maximum(s_est, floor)))
    lsd = float(np.mean(np.sqrt(np.mean(diff_db ** 2, axis=0))))

    c_ref = librosa.feature.chroma_stft(S=s_ref ** 2, sr=METRIC_SR, n_fft=N_FFT, norm=None)
    c_est = librosa.feature.chroma_stft(S=s_est ** 2, sr=METRIC_SR, n_fft=N_FFT, norm=None)
    energy = c_ref.sum(axis=0)
    voiced = energy > 1e-3 * max(float(energy.max()), 1e-12)
    a = c_ref - c_ref.mean(axis=0, keepdims=True)
    b = c_est - c_est.mean(axis=0, keepdims=True)
    r = (a * b).sum(axis=0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-12)
    chroma = float(r[voiced].mean()) if voiced.any() else 0.0

    o_ref = librosa.onset.onset_strength(S=librosa.amplitude_to_db(s_ref, ref=np.max), sr=METRIC_SR)
    o_est = librosa.onset.onset_strength(S=librosa.amplitude_to_db(s_est, ref=np.max), sr=METRIC_SR)
    onset = _pearson(o_ref, o_est)
    return dict(spectral_convergence=sc, log_spectral_distance_db=lsd,
                chroma_correlation=chroma, onset_correlation=onset)


def report(metrics: dict | list[dict]) -> str:
    """A small fixed-width table of one or several metric dicts (one row per dict)."""
    rows = [metrics] if isinstance(metrics, dict) else list(metrics)
    cols = [("codec", "codec", "{}"), ("spectral_convergence", "spec.conv", "{:.3f}"),
            ("log_spectral_distance_db", "LSD dB", "{:.2f}"), ("chroma_correlation", "chroma r", "{:.3f}"),
            ("onset_correlation", "onset r", "{:.3f}"), ("audio_seconds", "audio s", "{:.1f}"),
            ("encode_seconds", "enc s", "{:.2f}"), ("decode_seconds", "dec s", "{:.2f}")]
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        cells.append([fmt.format(r[k]) if k in r else "-" for k, _, fmt in cols])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _mono(audio: np.ndarray, sr: int) -> np.ndarray:
    mono = as_channels_first(audio).mean(axis=0)
    if sr != METRIC_SR:
        mono = soxr.resample(mono, sr, METRIC_SR, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0
