"""Evaluation: fit to the vocal against two baselines, samplers, efficiency (SPEC §7, paper §VI).

Book: notebook 06 (results). ``samuel evaluate --profile demo [--json]`` runs :func:`evaluate`.

Fit metrics (ours; the paper has none), each computed per clip on audio at 44.1 kHz whose
features are taken from a mono mix at 22.05 kHz:

* ``chroma`` -- :func:`chroma_agreement`: harmony agreement with the true accompaniment.
* ``key`` -- :func:`key_agreement`: MIREX weighted key score of the clip's estimated key
  against the song's key.
* ``beat`` -- :func:`beat_alignment`: beat salience ratio of the onset envelope at the song's
  beats (1 = chance).
* ``frechet`` -- :func:`paired_frechet`: per clip, the Fréchet distance between the frame-feature
  distributions (:func:`frame_features`: log-mel, chroma, onset) of the generated and of the true
  accompaniment of the same vocal. The real reference is another segment of the same song.

Beside them, a realism measure that is not a fit metric: ``fad`` -- :func:`fad`, the set-level
Fréchet distance between all generated and all real clips on :func:`clip_features` (bootstrap
interval), with real vs real as reference. It cannot see which vocal a clip was made for (see
:func:`paired_frechet`), so the shuffled baseline is not expected to lose on it.

Each is reported as mean with a 95 % interval over clips (:func:`mean_ci`) for three
conditions of the same model, from the same initial noise: ``conditioned`` (the clip's own
vocal), ``shuffled`` (a vocal from a clip of another test song, :func:`derangement`) and
``null`` (no vocal). ``beats_baselines[metric]`` is True when the conditioned interval lies
strictly on the better side of both baselines' intervals.
"""
from __future__ import annotations

import csv
import io as _io
import math
import os
import resource
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .io import atomic_path, read_json, write_json

METRIC_SR = 22050  # rate all features are computed at (44.1 kHz / 2, for speed)
N_FFT, HOP = 2048, 512  # feature STFT: 93 ms window, 23 ms hop
N_MELS = 32  # log-mel bands of the Fréchet feature
BEAT_TOLERANCE_S = 0.07  # ±70 ms: the usual beat-tracking tolerance (mir_eval's F-measure window)
CONDITIONS = ("conditioned", "shuffled", "null")  # the model, and the two baselines (SPEC §7)
METRICS = ("chroma", "key", "beat", "frechet")  # the fit metrics, in table order
HIGHER_IS_BETTER = {"chroma": True, "key": True, "beat": True, "frechet": False, "fad": False}
METRIC_NAMES = {
    "chroma": "chroma agreement with the true accompaniment (mean per-frame Pearson r)",
    "key": "key agreement with the song's key (MIREX weighted score, 0-1)",
    "beat": "beat salience ratio: onset strength at the song's beats / overall (1 = chance)",
    "frechet": "paired Fréchet distance: per clip, frame features of the generated vs the true "
               "accompaniment (lower is better)",
}
REALISM = {"fad": "set-level Fréchet distance to the real accompaniments on clip_features "
                  "(realism, blind to which vocal a clip was made for; lower is better)"}
SAO_VAE_PARAMETERS = 156_112_514  # the Stable Audio Open VAE (AutoencoderOobleck defaults)
PAPER_CLIP_FRAMES = 1024  # one paper clip: 1024 frames = 47.55 s (paper §III-C)
BOOTSTRAP = 200  # resamples for the Fréchet distance interval
PITCH_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
# Krumhansl & Kessler (1982) key profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


# --------------------------------------------------------------------------- features


def to_mono(audio: np.ndarray, sr: int = 44100) -> np.ndarray:
    """``[C, N]`` or ``[N]`` audio at ``sr`` -> float32 mono ``[N']`` at :data:`METRIC_SR`."""
    import soxr

    audio = np.asarray(audio, np.float32)
    mono = audio if audio.ndim == 1 else audio.mean(axis=0)
    if int(sr) != METRIC_SR:
        mono = soxr.resample(mono, int(sr), METRIC_SR, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono)


def chroma(audio: np.ndarray, sr: int = 44100) -> np.ndarray:
    """12-bin chroma ``[12, F]`` (librosa ``chroma_stft``, tuning fixed at A440), hop 23 ms."""
    import librosa

    y = to_mono(audio, sr)
    return librosa.feature.chroma_stft(y=y, sr=METRIC_SR, n_fft=N_FFT, hop_length=HOP, tuning=0.0)


def onset_envelope(audio: np.ndarray, sr: int = 44100) -> np.ndarray:
    """librosa's onset strength (spectral flux of a log-mel spectrogram) ``[F]``, hop 23 ms."""
    import librosa

    y = to_mono(audio, sr)
    return librosa.onset.onset_strength(y=y, sr=METRIC_SR, hop_length=HOP)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each column pair of ``[D, F]`` arrays; NaN where either column is constant."""
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (a * b).sum(axis=0) / np.maximum(den, 1e-12), np.nan)


def chroma_agreement(gen: np.ndarray, ref: np.ndarray, sr: int = 44100) -> float:
    """Harmony agreement: the mean per-frame Pearson correlation of the two chromagrams.

    Pearson (the cosine of mean-removed vectors), not the plain cosine: two non-negative chroma
    vectors have a cosine of ~0.7 even for noise, while unrelated chromagrams correlate near 0.
    Frames where either chroma is flat (silence) are left out; 1 is the same harmony frame by
    frame, 0 is no relation, negative is opposed (e.g. a tritone away).

    Args:
        gen, ref: ``[C, N]`` or ``[N]`` audio at ``sr`` Hz (generated and true accompaniment).
    """
    a, b = chroma(gen, sr), chroma(ref, sr)
    n = min(a.shape[1], b.shape[1])
    r = _pearson_rows(a[:, :n], b[:, :n])
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else 0.0


def key_name(tonic_pc: int, mode: str) -> str:
    """``(0, "major") -> "C major"`` (the spelling mir_eval reads)."""
    return f"{PITCH_NAMES[int(tonic_pc) % 12]} {mode}"


def estimate_key(audio: np.ndarray, sr: int = 44100) -> tuple[int, str, float]:
    """Krumhansl-Schmuckler key estimate: the best of the 24 rotated Krumhansl-Kessler profiles
    by Pearson correlation with the clip's mean chroma.

    Returns:
        ``(tonic_pc, mode, r)``; ``(0, "major", 0.0)`` for a silent clip.
    """
    mean = chroma(audio, sr).mean(axis=1)
    if np.ptp(mean) < 1e-9:
        return 0, "major", 0.0
    best = (0, "major", -2.0)
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(mean, np.roll(profile, tonic))[0, 1])
            if r > best[2]:
                best = (tonic, mode, r)
    return best


def key_agreement(gen: np.ndarray, key_tonic_pc: int, key_mode: str, sr: int = 44100) -> float:
    """How well the clip's key matches the song's: ``mir_eval.key.weighted_score`` (MIREX) of
    the :func:`estimate_key` estimate against the true key.

    1 for the same key, 0.5 a fifth above, 0.3 the relative, 0.2 the parallel key, 0 otherwise.
    """
    import mir_eval

    tonic, mode, _ = estimate_key(gen, sr)
    return float(mir_eval.key.weighted_score(key_name(key_tonic_pc, key_mode), key_name(tonic, mode)))


def beat_alignment(gen: np.ndarray, beat_times: Sequence[float], sr: int = 44100,
                   tolerance: float = BEAT_TOLERANCE_S) -> float:
    """Beat salience ratio: how much of the clip's onset strength falls on the song's beats.

    The onset envelope is max-pooled over ±``tolerance`` (70 ms), then the mean of the pooled
    envelope at the true beat times is divided by its mean over all frames. The same pooling on
    both sides makes chance 1.0 (onsets unrelated to the beats); > 1 means onsets on the beats,
    < 1 onsets between them. Chosen over a beat tracker's F-measure because a ~6 s clip holds
    only ~12 beats, too few for a tracker to lock on; the ratio is continuous and uses every
    frame. Beats outside the clip are ignored.

    Args:
        gen: ``[C, N]`` or ``[N]`` audio at ``sr`` Hz.
        beat_times: the song's beats in seconds, relative to the clip's start.

    Returns:
        The ratio; NaN when no beat falls inside the clip; 0.0 for a clip without onsets.
    """
    from scipy.ndimage import maximum_filter1d

    env = onset_envelope(gen, sr)
    frames = np.round(np.asarray(beat_times, float) * METRIC_SR / HOP).astype(int)
    frames = frames[(frames >= 0) & (frames < len(env))]
    if frames.size == 0:
        return float("nan")
    width = 2 * int(round(tolerance * METRIC_SR / HOP)) + 1
    pooled = maximum_filter1d(env, size=width, mode="nearest")
    overall = float(pooled.mean())
    if overall <= 1e-12:
        return 0.0
    return float(pooled[frames].mean() / overall)


def frame_features(audio: np.ndarray, sr: int = 44100) -> np.ndarray:
    """The fixed, offline per-frame feature ``[F, 45]`` float64 (hop 23 ms): a 32-band log-mel
    spectrogram (dB; timbre and level), the 12-bin chroma (harmony) and the onset strength
    (rhythm). No learned weights: computable anywhere (no CLAP/VGGish package ships its
    weights offline; TOOLING.md). Blocks: :data:`FRAME_BLOCKS`.
    """
    import librosa

    y = to_mono(audio, sr)
    mel = librosa.feature.melspectrogram(y=y, sr=METRIC_SR, n_fft=N_FFT, hop_length=HOP,
                                         n_mels=N_MELS)
    logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    ch = librosa.feature.chroma_stft(S=np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2,
                                     sr=METRIC_SR, tuning=0.0)
    env = librosa.onset.onset_strength(S=logmel, sr=METRIC_SR)
    n = min(logmel.shape[1], ch.shape[1], env.shape[0])
    return np.concatenate([logmel[:, :n], ch[:, :n], env[None, :n]]).T.astype(np.float64)


FRAME_BLOCKS = ((0, N_MELS), (N_MELS, N_MELS + 12), (N_MELS + 12, N_MELS + 13))
# frame_features' parts: log-mel, chroma, onset strength


def clip_features_from_frames(frames: np.ndarray) -> np.ndarray:
    """:func:`clip_features` from :func:`frame_features` (computes the frame features once)."""
    f = np.asarray(frames, np.float64)
    mel, ch, env = (f[:, lo:hi] for lo, hi in FRAME_BLOCKS)
    parts = [mel.mean(0), mel.std(0), ch.mean(0), ch.std(0), [env.mean(), env.std()]]
    return np.concatenate([np.asarray(p, np.float64) for p in parts])


def clip_features(audio: np.ndarray, sr: int = 44100) -> np.ndarray:
    """The fixed clip-level feature of the set-level Fréchet distance (:func:`fad`): ``[90]``,
    mean and std over time of each part of :func:`frame_features` (log-mel, chroma, onset)."""
    return clip_features_from_frames(frame_features(audio, sr))


# --------------------------------------------------------------------------- statistics


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` and ``[M, D]``:

    ``|μ_a − μ_b|² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}``

    (the FID/FAD formula; covariances with ``ddof=1``). With ``A``, ``B`` the centred features,
    ``Σ_a = AᵀA/(N−1)`` and ``Σ_b = BᵀB/(M−1)``, the last trace equals the sum of the singular
    values of ``A Bᵀ`` over ``sqrt((N−1)(M−1))``: exact, real, and cheap when there are fewer
    clips than dimensions (no matrix square root of a singular covariance). For 1-D features it
    is ``(μ_a − μ_b)² + (σ_a − σ_b)²``.
    """
    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"frechet_distance: expected two non-empty [N, D] sets of one width, "
                         f"found {a.shape} and {b.shape}")
    mu = a.mean(0) - b.mean(0)
    ca, cb = a - a.mean(0), b - b.mean(0)
    na, nb = max(len(a) - 1, 1), max(len(b) - 1, 1)
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt(na * nb)
    value = mu @ mu + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2 * cross
    return float(max(value, 0.0))


FEATURE_BLOCKS = ((0, N_MELS), (N_MELS, 2 * N_MELS), (2 * N_MELS, 2 * N_MELS + 12),
                  (2 * N_MELS + 12, 2 * N_MELS + 24), (2 * N_MELS + 24, 2 * N_MELS + 26))
# clip_features' parts: log-mel mean, log-mel std, chroma mean, chroma std, onset mean/std


def _standardiser(real: np.ndarray, blocks: Sequence | None = None, per_block: bool = False):
    """Centre on the real set's mean and divide each block of ``blocks`` (default
    :data:`FEATURE_BLOCKS`; the whole vector for other widths) by the RMS over its dimensions of
    the real set's std.

    One scale per block, not per dimension: a dimension that barely varies among real clips (a
    silent band) cannot blow up the distance. With ``per_block`` the scale is also multiplied by
    sqrt(block width), so that each block's total variance is 1 and a block of 32 dimensions
    weighs as much as one of 1.
    """
    mean, std = real.mean(0), real.std(0)
    if blocks is None:
        blocks = FEATURE_BLOCKS if real.shape[1] == FEATURE_BLOCKS[-1][1] else ((0, real.shape[1]),)
    scale = np.ones_like(std)
    for lo, hi in blocks:
        rms = float(np.sqrt(np.mean(std[lo:hi] ** 2)))
        scale[lo:hi] = (rms if rms > 1e-9 else 1.0) * (math.sqrt(hi - lo) if per_block else 1.0)
    return lambda x: (np.asarray(x, np.float64) - mean) / scale


def fad_from_features(gen: np.ndarray, real: np.ndarray, level: float = 0.95,
                      bootstrap: int = BOOTSTRAP, seed: int = 0,
                      reference: np.ndarray | None = None) -> dict:
    """:func:`frechet_distance` of ``gen`` to ``real`` features, both scaled by the real set
    (:func:`_standardiser`: dB and chroma weigh alike), with a paired bootstrap
    interval over clips (rows resampled together when the sets are paired, i.e. equally long).

    ``reference`` (default ``real``) is the set whose mean and std standardise both.

    Returns:
        ``dict(mean, lo, hi, n)``: ``mean`` is the distance on the full sets.
    """
    gen, real = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    z = _standardiser(real if reference is None else np.asarray(reference, np.float64))
    g, r = z(gen), z(real)
    value = frechet_distance(g, r)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap if min(len(g), len(r)) > 1 else 0):
        ig = rng.integers(0, len(g), len(g))
        ir = ig if len(g) == len(r) else rng.integers(0, len(r), len(r))
        draws.append(frechet_distance(g[ig], r[ir]))
    if draws:
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    else:
        lo = hi = float("nan")
    return {"mean": value, "lo": float(lo), "hi": float(hi), "n": int(len(g))}


def fad(gen_list: Sequence[np.ndarray], real_list: Sequence[np.ndarray], sr: int = 44100,
        **kw) -> dict:
    """Fréchet distance between generated and real clips (audio lists) on :func:`clip_features`;
    see :func:`fad_from_features`."""
    gen = np.stack([clip_features(x, sr) for x in gen_list])
    real = np.stack([clip_features(x, sr) for x in real_list])
    return fad_from_features(gen, real, **kw)


def real_vs_real(real: np.ndarray, groups: Sequence | None = None, **kw) -> dict:
    """The reference distance: one half of the real clips against the other.

    ``groups`` (e.g. song ids) keeps a song's clips in one half; halves alternate over the
    groups in order. Each half has about N/2 clips, so this is a little higher than a
    real-vs-real distance at N clips would be.
    """
    real = np.asarray(real, np.float64)
    groups = list(range(len(real))) if groups is None else list(groups)
    order = list(dict.fromkeys(groups))
    half = {g: i % 2 for i, g in enumerate(order)}
    mask = np.array([half[g] == 0 for g in groups])
    if mask.all() or not mask.any():
        mask = np.arange(len(real)) % 2 == 0
    return fad_from_features(real[mask], real[~mask], reference=real, **kw) | {"n": int(len(real))}


def frame_standardiser(real_frames: Sequence[np.ndarray]):
    """The scale of the paired Fréchet distance: centre on the mean of all real frames and divide
    each block of :data:`FRAME_BLOCKS` by the RMS over its dimensions of their std, so that
    timbre (32 log-mel bands), harmony (12 chroma bins) and rhythm (1 onset strength) weigh
    alike: each block's total variance over the real frames is 1 (see :func:`_standardiser`)."""
    pooled = np.concatenate([np.asarray(f, np.float64) for f in real_frames])
    return _standardiser(pooled, FRAME_BLOCKS, per_block=True)


def paired_frechet(gen_frames: np.ndarray, real_frames: np.ndarray, standardise=None) -> float:
    """The fit Fréchet distance of one clip: :func:`frechet_distance` between the distributions
    of the frame features (:func:`frame_features`) of a generated clip and of the true
    accompaniment of the same vocal, both scaled by ``standardise`` (:func:`frame_standardiser`).

    Why paired: a set-level distance (:func:`fad`) compares the set of generated clips with the
    set of real ones and does not know which vocal each clip was made for; given the vocal of
    another song, a perfect model would return that song's true accompaniment, the set of
    outputs would be the set of real clips, and the set-level distance would be 0, the best
    possible. It measures realism, not fit. Paired, each clip is compared with the
    accompaniment of its own vocal: another song's accompaniment in another key, tempo or
    groove is far, the true one is 0.
    """
    z = standardise or (lambda x: np.asarray(x, np.float64))
    return frechet_distance(z(gen_frames), z(real_frames))


def mean_ci(values: Sequence[float], level: float = 0.95, method: str = "t",
            seed: int = 0) -> tuple[float, float, float]:
    """Mean and its ``level`` interval over clips: ``(mean, lo, hi)``.

    ``method="t"``: Student's t interval ``mean ± t_{n-1} s / sqrt(n)``; ``"bootstrap"``: the
    percentile interval of 2,000 seeded resample means. NaNs are dropped; with fewer than two
    values the bounds are NaN (no interval).
    """
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    if method == "t":
        from scipy import stats

        half = float(stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
        return mean, mean - half, mean + half
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        means = x[rng.integers(0, x.size, (2000, x.size))].mean(axis=1)
        lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        return mean, float(lo), float(hi)
    raise ValueError(f"mean_ci: unknown method {method!r}: expected 't' or 'bootstrap'")


def _ci(values) -> dict:
    mean, lo, hi = mean_ci(values)
    return {"mean": mean, "lo": lo, "hi": hi, "n": int(np.isfinite(np.asarray(values, float)).sum())}


def beats(better: Mapping, worse: Mapping, higher_is_better: bool = True) -> bool:
    """True when interval ``better`` lies strictly on the better side of interval ``worse``."""
    vals = [better.get("lo"), better.get("hi"), worse.get("lo"), worse.get("hi")]
    if any(v is None or not np.isfinite(v) for v in vals):
        return False
    return better["lo"] > worse["hi"] if higher_is_better else better["hi"] < worse["lo"]


def overlap(a: Mapping, b: Mapping) -> bool:
    """True when two intervals ``dict(lo, hi)`` overlap (False if either is undefined)."""
    vals = [a.get("lo"), a.get("hi"), b.get("lo"), b.get("hi")]
    if any(v is None or not np.isfinite(v) for v in vals):
        return False
    return a["lo"] <= b["hi"] and b["lo"] <= a["hi"]


def derangement(song_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """For clip ``i``, a clip ``perm[i]`` of a *different* song, deterministically (seeded).

    Clips are grouped by song (groups and clips in a seeded random order) and each is sent
    ``m`` places on round the cycle, ``m`` the largest group: a permutation that never stays
    inside a song whenever no song holds more than half the clips. Otherwise (a song holds most
    clips) each clip takes the next clip of another song round the cycle, not a permutation.

    Raises:
        ValueError: fewer than two distinct songs.
    """
    ids = list(song_ids)
    n = len(ids)
    songs = list(dict.fromkeys(ids))
    if len(songs) < 2:
        raise ValueError(f"derangement: a shuffled-vocal baseline needs clips of at least two "
                         f"songs, found {len(songs)} song(s) in {n} clip(s)")
    rng = np.random.default_rng(seed)
    song_rank = {s: r for r, s in enumerate(rng.permutation(len(songs)))}
    song_of = {s: i for i, s in enumerate(songs)}
    tiebreak = rng.permutation(n)
    order = sorted(range(n), key=lambda i: (song_rank[song_of[ids[i]]], tiebreak[i]))
    m = max(ids.count(s) for s in songs)
    perm = np.empty(n, dtype=int)
    if 2 * m <= n:
        for k, i in enumerate(order):
            perm[i] = order[(k + m) % n]
    else:
        for k, i in enumerate(order):
            step = 1
            while ids[order[(k + step) % n]] == ids[i]:
                step += 1
            perm[i] = order[(k + step) % n]
    return perm


def other_segment(song_ids: Sequence[str]) -> list:
    """For clip ``i``, the index of the next clip of the same song (cyclically), or None."""
    by_song: dict = {}
    for i, sid in enumerate(song_ids):
        by_song.setdefault(sid, []).append(i)
    out = []
    for i, sid in enumerate(song_ids):
        group = by_song[sid]
        out.append(group[(group.index(i) + 1) % len(group)] if len(group) > 1 else None)
    return out


def select_clips(song_ids: Sequence[str], max_clips: int | None) -> list[int]:
    """Rows to evaluate: all, or ``max_clips`` taken round-robin over songs (first chunk of each
    song, then second, ...) so that a small budget still spans many songs."""
    ids = list(song_ids)
    if max_clips is None or max_clips >= len(ids):
        return list(range(len(ids)))
    seen: dict[str, int] = {}
    rank = []
    for i, s in enumerate(ids):
        rank.append((seen.get(s, 0), i))
        seen[s] = seen.get(s, 0) + 1
    return sorted(i for _, i in sorted(rank)[:max_clips])


# --------------------------------------------------------------------------- ground truth


def clip_truth(truth: Mapping | None, offset_seconds: float, seconds: float,
               ref_audio: np.ndarray | None = None, sr: int = 44100) -> dict:
    """Key and clip-relative beats of one clip.

    From the song's ``truth.json`` when there is one (beats shifted by the clip's offset, only
    those inside ``[0, seconds)`` kept); otherwise estimated from the true accompaniment ``ref_audio``
    (key by :func:`estimate_key`, beats by ``librosa.beat.beat_track``).
    """
    if truth is not None and "tonic_pc" in truth and "beat_times" in truth:
        beats_ = [b - offset_seconds for b in truth["beat_times"]
                  if 0.0 <= b - offset_seconds < seconds]
        return {"tonic_pc": int(truth["tonic_pc"]), "mode": str(truth["mode"]),
                "beat_times": beats_, "source": "truth.json"}
    if ref_audio is None:
        raise ValueError("clip_truth: no truth.json and no reference audio to estimate from")
    import librosa

    tonic, mode, _ = estimate_key(ref_audio, sr)
    _, frames = librosa.beat.beat_track(y=to_mono(ref_audio, sr), sr=METRIC_SR, hop_length=HOP)
    return {"tonic_pc": tonic, "mode": mode,
            "beat_times": [float(f) * HOP / METRIC_SR for f in frames],
            "source": "estimated from the true accompaniment"}


def clip_metrics(gen: np.ndarray, ref: np.ndarray, truth: Mapping, sr: int = 44100) -> dict:
    """The per-clip fit metrics of one generated clip: ``dict(chroma, key, beat)``."""
    return {"chroma": chroma_agreement(gen, ref, sr),
            "key": key_agreement(gen, truth["tonic_pc"], truth["mode"], sr),
            "beat": beat_alignment(gen, truth["beat_times"], sr)}


# --------------------------------------------------------------------------- the run


def _resolve_model(cfg, checkpoint, device):
    """``(model, cfg, stats or None, info)`` from a module, a Loaded, a folder or the default."""
    import torch

    if isinstance(checkpoint, torch.nn.Module):
        return checkpoint.to(device).eval(), cfg, None, {"source": "module"}
    if checkpoint is not None and hasattr(checkpoint, "model") and hasattr(checkpoint, "cfg"):
        loaded = checkpoint
    else:
        from .checkpoint import load_checkpoint
        from .paths import run_dir

        folder = Path(checkpoint) if checkpoint is not None else run_dir(cfg.profile) / "checkpoint"
        loaded = load_checkpoint(folder, device=device)
    info = dict(getattr(loaded, "info", {}) or {})
    if getattr(loaded, "folder", None) is not None:
        info["folder"] = str(loaded.folder)
    return loaded.model.to(device).eval(), loaded.cfg, (loaded.stats or None), info


def _codec_parameters(codec) -> int:
    if codec.name == "offline":
        return 0
    vae = getattr(codec, "vae", None)
    if vae is not None and hasattr(vae, "parameters"):
        from .model import count_parameters

        return int(count_parameters(vae))
    return SAO_VAE_PARAMETERS


def _sample(model, schedule, shape, vocals, cfg, sampler, steps, seed, device) -> np.ndarray:
    """Accompaniment latents ``[B, C, T]`` (normalised) from noise seeded by ``seed``;
    ``vocals`` ``[B, C, T]`` or None (the null condition)."""
    import torch

    from . import diffusion

    v = None if vocals is None else torch.as_tensor(np.asarray(vocals), dtype=torch.float32).to(device)
    g = torch.Generator().manual_seed(int(seed))
    kw = dict(vocals=v, cfg_scale=cfg.diffusion.cfg_scale, generator=g, device=device)
    if sampler == "ancestral":
        x = diffusion.sample_ancestral(model, schedule, tuple(shape), **kw)
    elif sampler == "fast":
        x = diffusion.sample_fast(model, schedule, tuple(shape), steps=steps,
                                  method=cfg.diffusion.fast_sampler,
                                  eta=cfg.diffusion.ddim_eta, **kw)
    else:
        raise ValueError(f"unknown sampler {sampler!r}: expected 'fast' or 'ancestral'")
    return x.float().cpu().numpy()


def fast_name(cfg) -> str:
    """The fast sampler's name as reported: ``dpmsolver++``, ``ddim`` or ``ddim-eta1``."""
    name, eta = cfg.diffusion.fast_sampler, cfg.diffusion.ddim_eta
    return f"{name}-eta{eta:g}" if eta > 0 else name


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def evaluate(cfg, checkpoint=None, data_dir=None, out_dir=None, max_clips: int | None = None,
             steps: int | None = None, sampler: str = "fast", compare_samplers: bool = True,
             progress: bool = True, seed: int = 0, batch_size: int = 8, sampler_clips: int = 16,
             n_examples: int = 2, codec=None, device: str | None = None,
             audiobox_checkpoint: str | None = None, split: str = "test") -> dict:
    """Evaluate a model on the test split (songs never trained on) and write the results.

    ``split="val"`` evaluates on the validation songs instead: that is where settings such
    as the guidance scale are chosen, so that the test split stays unseen.

    Args:
        cfg: the configuration (a checkpoint's own configuration replaces it when loaded).
        checkpoint: a checkpoint folder, a loaded checkpoint, a ``torch.nn.Module`` (uses
            ``cfg`` and the data's ``stats.json``), or None for ``runs/<profile>/checkpoint``.
        data_dir: the data folder holding ``popdb/test`` and ``songs/`` (default
            ``runs/<profile>/data``).
        out_dir: where results go (default ``runs/<profile>/evaluation``).
        max_clips: evaluate at most this many test clips (round-robin over songs).
        steps: fast-sampler steps (default ``cfg.diffusion.fast_steps``).
        sampler: "fast" (``cfg.diffusion.fast_sampler``) or "ancestral" (the paper's, all
            ``cfg.diffusion.timesteps`` steps) for the fit metrics.
        compare_samplers: also run the paper's ancestral sampler beside the fast one on
            ``sampler_clips`` clips (the first ones: one per test song, round-robin). 16, not
            fewer: a t-interval over 4 clips (3 degrees of freedom) swings with the clips drawn.
            On the demo test songs 4 clips once gave beat salience 1.89 [1.77, 2.02] (fast)
            against 1.69 [1.61, 1.76] (ancestral), while 16 validation clips gave 1.35
            [1.26, 1.45] against 1.30 [1.19, 1.42]. The 800-step sampler costs ~4 s a clip on
            2 CPU cores.
        seed: the noise seed; batch ``k`` uses ``seed + k`` for all three conditions.
        codec: a codec object or name (default ``cfg.data.codec``).
        audiobox_checkpoint: AudioBox-Aesthetics checkpoint (default ``$SAMUEL_AUDIOBOX_CKPT``,
            then the hub).

    Returns:
        The results dict written to ``results.json`` (see :func:`format_table`).
    """
    import torch
    from tqdm.auto import tqdm

    from . import codecs as codecs_mod
    from .data import store
    from .diffusion import Schedule
    from .model import count_parameters
    from .paths import run_dir

    t_start = time.perf_counter()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg, ck_stats, ck_info = _resolve_model(cfg, checkpoint, device)
    data_dir = Path(data_dir) if data_dir is not None else run_dir(cfg.profile) / "data"
    test_dir = data_dir / "popdb" / split if (data_dir / "popdb" / split).is_dir() else data_dir / split
    if not test_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: expected a {split} split at popdb/{split}, found none "
                                "(run `samuel data build` first)")
    out_dir = Path(out_dir) if out_dir is not None else run_dir(cfg.profile) / "evaluation"
    stats = ck_stats or store.find_stats(test_dir)
    if stats is None:
        raise FileNotFoundError(f"{test_dir}: no normalisation statistics (stats.json) beside the "
                                "split nor in the checkpoint")
    vocals_all, accomp_all = store.load_popdb(test_dir, normalise=True, stats=stats)
    chunks = store.read_chunks(test_dir)
    rows_info = chunks["rows"]
    song_ids_all = [r["song_id"] for r in rows_info]
    picked = select_clips(song_ids_all, max_clips)
    if not picked:
        raise ValueError(f"{test_dir}: the test split holds no clips")
    song_ids = [song_ids_all[i] for i in picked]
    perm = derangement(song_ids, seed=seed)
    codec = codecs_mod.load(codec or cfg.data.codec) if codec is None or isinstance(codec, str) else codec
    fps = float(chunks.get("frames_per_second") or codec.frames_per_second)
    sr = int(codec.sample_rate)
    schedule = Schedule.from_config(cfg)
    steps = int(steps or cfg.diffusion.fast_steps)
    vocals = np.asarray(vocals_all[picked], np.float32)  # [N, C, T]
    accomp = np.asarray(accomp_all[picked], np.float32)
    n, _, frames = vocals.shape
    clip_seconds = frames / fps

    predictor, audiobox_info = load_audiobox(audiobox_checkpoint)
    aesthetics = {c: [] for c in (*CONDITIONS, "real")}  # per-clip AudioBox scores
    truths_cache: dict[str, dict | None] = {}

    def song_truth(song_id):
        if song_id not in truths_cache:
            path = data_dir / "songs" / song_id / "truth.json"
            truths_cache[song_id] = read_json(path) if path.exists() else None
        return truths_cache[song_id]

    # ---- generate, decode, measure, batch by batch
    per_clip = {c: {m: [] for m in ("chroma", "key", "beat")} for c in CONDITIONS}
    per_clip["real"] = {"key": [], "beat": []}
    frames_of = {c: [] for c in (*CONDITIONS, "real")}  # per clip: frame_features [F, 45]
    clips, examples, truth_sources = [], [], {}
    refs: dict[int, tuple] = {}  # decoded true accompaniment and truth of the sampler clips
    gen_seconds = 0.0
    decode_seconds = 0.0
    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    for b, idx in enumerate(tqdm(batches, desc="evaluate", disable=not progress)):
        t0 = time.perf_counter()
        shape = vocals[idx].shape
        out = {c: _sample(model, schedule, shape, v, cfg, sampler, steps, seed + b, device)
               for c, v in (("conditioned", vocals[idx]), ("shuffled", vocals[perm[idx]]),
                            ("null", None))}
        _sync(device)
        gen_seconds += time.perf_counter() - t0
        for j, i in enumerate(idx):
            row = rows_info[picked[i]]
            offset_s = float(row["offset_frame"]) / fps
            t1 = time.perf_counter()
            ref = codec.decode(store.denormalise(accomp[i], stats, "accomp"))
            decode_seconds += time.perf_counter() - t1
            truth = clip_truth(song_truth(row["song_id"]), offset_s, clip_seconds, ref, sr)
            truth_sources[truth["source"]] = truth_sources.get(truth["source"], 0) + 1
            if compare_samplers and i < sampler_clips:
                refs[i] = (ref, truth)
            per_clip["real"]["key"].append(key_agreement(ref, truth["tonic_pc"], truth["mode"], sr))
            per_clip["real"]["beat"].append(beat_alignment(ref, truth["beat_times"], sr))
            frames_of["real"].append(frame_features(ref, sr))
            if predictor is not None:
                aesthetics["real"] += audiobox_score(predictor, [ref], sr)
            for c in CONDITIONS:
                gen = codec.decode(store.denormalise(out[c][j], stats, "accomp"))
                for m, v in clip_metrics(gen, ref, truth, sr).items():
                    per_clip[c][m].append(v)
                frames_of[c].append(frame_features(gen, sr))
                if predictor is not None:
                    aesthetics[c] += audiobox_score(predictor, [gen], sr)
                if (c == "conditioned" and len(examples) < n_examples
                        and row["song_id"] not in {e[1]["song_id"] for e in examples}):
                    examples.append((i, row, offset_s, gen, ref))
            clips.append({"row": int(picked[i]), "song_id": row["song_id"],
                          "offset_seconds": round(offset_s, 4),
                          "shuffled_vocal_from": song_ids[perm[i]],
                          "key": key_name(truth["tonic_pc"], truth["mode"]),
                          "beats_in_clip": len(truth["beat_times"])})

    # the fit Fréchet distance, paired per clip; the real reference is another segment of the
    # same song (right style, key and tempo, but not this segment's accompaniment)
    z = frame_standardiser(frames_of["real"])
    for c in CONDITIONS:
        per_clip[c]["frechet"] = [paired_frechet(g, r, z) for g, r in zip(frames_of[c], frames_of["real"])]
    per_clip["real"]["frechet"] = [
        paired_frechet(frames_of["real"][other], frames_of["real"][i], z) if other is not None
        else float("nan") for i, other in enumerate(other_segment(song_ids))]
    fit = {c: {m: _ci(per_clip[c][m]) for m in METRICS} for c in CONDITIONS}
    fit["real"] = {m: _ci(per_clip["real"][m]) for m in ("key", "beat", "frechet")}
    # realism (not fit): the set-level Fréchet distance, beside real vs real
    real_feats = np.stack([clip_features_from_frames(f) for f in frames_of["real"]])
    for k, c in enumerate(CONDITIONS):
        fit[c]["fad"] = fad_from_features(np.stack([clip_features_from_frames(f) for f in frames_of[c]]),
                                          real_feats, seed=seed + k)
    fit["real"]["fad"] = real_vs_real(real_feats, song_ids, seed=seed)
    beats_baselines = {
        m: all(beats(fit["conditioned"][m], fit[base][m], HIGHER_IS_BETTER[m])
               for base in ("shuffled", "null"))
        for m in METRICS}

    # ---- the paper's sampler vs the fast one, on the same clips and noise
    samplers = {"skipped": True}
    if compare_samplers:
        k = min(sampler_clips, n)
        idx = list(range(k))
        v_k = vocals[:k]
        sampler_fit, sampler_time, lat = {}, {}, {}
        # Timed warm, and interleaved: the fast sampler's ~1 s is otherwise dominated by
        # one-time costs of the first call at this batch shape (allocations, kernel selection),
        # which the 800-step sampler amortises, and a shared CPU's speed drifts by ~20 % over
        # the minute the ancestral run takes. So: one untimed fast run, 3 timed, the ancestral
        # run, 3 more timed; the fast time is the median of its 6. Every fast run has the same
        # seed, so the untimed one's output is the one scored.
        def timed(name):
            t0 = time.perf_counter()
            out = _sample(model, schedule, v_k.shape, v_k, cfg, name, steps, seed, device)
            _sync(device)
            return out, (time.perf_counter() - t0) / k

        lat["fast"] = timed("fast")[0]
        fast_times = [timed("fast")[1] for _ in range(3)]
        lat["ancestral"], sampler_time["ancestral"] = timed("ancestral")
        fast_times += [timed("fast")[1] for _ in range(3)]
        sampler_time["fast"] = float(np.median(fast_times))
        for name in ("fast", "ancestral"):
            vals = {m: [] for m in ("chroma", "key", "beat")}
            for j, i in enumerate(idx):
                ref, truth = refs[i]
                gen = codec.decode(store.denormalise(lat[name][j], stats, "accomp"))
                for m, v in clip_metrics(gen, ref, truth, sr).items():
                    vals[m].append(v)
            sampler_fit[name] = {m: _ci(v) for m, v in vals.items()}
        overlaps = {m: overlap(sampler_fit["fast"][m], sampler_fit["ancestral"][m])
                    for m in ("chroma", "key", "beat")}
        ratio = sampler_time["ancestral"] / max(sampler_time["fast"], 1e-12)
        samplers = {
            "clips": k,
            "fast": {"name": fast_name(cfg), "steps": steps,
                     "seconds_per_clip": sampler_time["fast"], "fit": sampler_fit["fast"]},
            "ancestral": {"name": "ancestral (DDPM, paper)", "steps": int(schedule.timesteps),
                          "seconds_per_clip": sampler_time["ancestral"], "fit": sampler_fit["ancestral"]},
            "overlap": overlaps, "equal_fit": all(overlaps.values()),
            "speed_ratio": ratio, "at_least_40x_faster": bool(ratio >= 40.0),
        }

    # ---- efficiency (paper Table II)
    scale = PAPER_CLIP_FRAMES / frames
    t0 = time.perf_counter()
    _sample(model, schedule, vocals[:1].shape, vocals[:1], cfg, "fast", steps, seed, device)
    _sync(device)
    fast_one = time.perf_counter() - t0
    decode_one = decode_seconds / n
    efficiency = {
        "device": (torch.cuda.get_device_name(0) if str(device).startswith("cuda") else
                   f"cpu ({torch.get_num_threads()} threads)"),
        "parameters": int(count_parameters(model)),
        "codec": codec.name,
        "codec_parameters": _codec_parameters(codec),
        "clip_frames_measured": int(frames),
        "clip_seconds_measured": clip_seconds,
        "scaled_to_frames": PAPER_CLIP_FRAMES,
        "scaling": f"measured on {frames}-frame clips and scaled linearly by {scale:g} to "
                   f"{PAPER_CLIP_FRAMES} frames (47.55 s)",
        "fast_seconds_per_47s_clip": fast_one * scale,
        "decode_seconds_per_47s_clip": decode_one * scale,
        "fast_total_seconds_per_47s_clip": (fast_one + decode_one) * scale,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    efficiency["parameters_with_codec"] = efficiency["parameters"] + efficiency["codec_parameters"]
    if compare_samplers:
        efficiency["ancestral_seconds_per_47s_clip"] = samplers["ancestral"]["seconds_per_clip"] * scale
    if str(device).startswith("cuda"):
        efficiency["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20

    results = {
        "profile": cfg.profile, "split": split, "device": str(device), "seed": int(seed),
        "codec": codec.name, "n_clips": int(n), "n_songs": len(set(song_ids)),
        "clip_seconds": clip_seconds,
        "sampler": {"name": sampler if sampler == "ancestral" else fast_name(cfg),
                    "steps": int(schedule.timesteps) if sampler == "ancestral" else steps,
                    "cfg_scale": float(cfg.diffusion.cfg_scale)},
        "checkpoint": ck_info,
        "conditions": list(CONDITIONS),
        "metrics": {m: {"description": METRIC_NAMES[m], "higher_is_better": HIGHER_IS_BETTER[m]}
                    for m in METRICS},
        "realism": {m: {"description": d, "higher_is_better": HIGHER_IS_BETTER[m]}
                    for m, d in REALISM.items()},
        "fit": fit,
        "beats_baselines": beats_baselines,
        "beats_baselines_all": all(beats_baselines.values()),
        "per_clip": per_clip,
        "clips": clips,
        "truth_sources": truth_sources,
        "samplers": samplers,
        "efficiency": efficiency,
        "audiobox": audiobox_info,
        "seconds": {"generate": gen_seconds, "decode_reference": decode_seconds},
    }
    if predictor is not None:
        for name, scores in aesthetics.items():
            audiobox_info[name] = {k: _ci([s[k] for s in scores]) for k in AUDIOBOX_AXES}
    results["seconds"]["total"] = time.perf_counter() - t_start
    results = _clean(results)
    write_outputs(results, out_dir)
    _write_examples(out_dir / "examples", examples, vocals, stats, codec, data_dir, store, sr, clip_seconds)
    return results


# --------------------------------------------------------------------------- AudioBox


AUDIOBOX_AXES = ("PQ", "PC", "CE", "CU")  # production quality/complexity, content enjoyment/usefulness


def load_audiobox(checkpoint: str | None = None):
    """The Meta AudioBox-Aesthetics predictor (paper §VI), or None with the reason.

    Loads from ``checkpoint``, else ``$SAMUEL_AUDIOBOX_CKPT``, else the hub
    (``facebook/audiobox-aesthetics``; refused offline). The package is imported only here.

    Returns:
        ``(predictor or None, info)``; ``info`` is ``{"available": False, "reason": ...}`` when
        it cannot be had.
    """
    try:
        from audiobox_aesthetics.infer import initialize_predictor
    except Exception as e:  # not installed (or broken)
        return None, {"available": False,
                      "reason": f"the audiobox_aesthetics package is not installed ({type(e).__name__}); "
                                "install audiobox-aesthetics and set SAMUEL_AUDIOBOX_CKPT to its checkpoint"}
    ckpt = checkpoint or os.environ.get("SAMUEL_AUDIOBOX_CKPT")
    try:
        predictor = initialize_predictor(ckpt) if ckpt else initialize_predictor()
    except Exception as e:
        where = ckpt or "the hub (facebook/audiobox-aesthetics)"
        return None, {"available": False, "reason": f"could not load the AudioBox checkpoint from "
                                                    f"{where}: {type(e).__name__}: {str(e)[:160]}"}
    return predictor, {"available": True, "checkpoint": ckpt or "hub"}


def audiobox_score(predictor, clips: Sequence[np.ndarray], sr: int = 44100) -> list[dict]:
    """PQ / PC / CE / CU (1-10) of each clip ``[C, N]``; audio passed as tensors (its path
    loader needs torchaudio)."""
    import torch

    batch = [{"path": torch.as_tensor(np.asarray(c, np.float32)), "sample_rate": int(sr)} for c in clips]
    return [{k: float(s[k]) for k in AUDIOBOX_AXES} for s in predictor.forward(batch)]


# --------------------------------------------------------------------------- output


def _clean(obj):
    """JSON-ready: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def write_outputs(results: Mapping, out_dir: str | os.PathLike) -> None:
    """``results.json``, ``fit.csv``, ``samplers.csv``, ``efficiency.csv``, ``fit.png`` and
    ``samplers.png`` in ``out_dir`` (each written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    rows = []
    for cond, metrics in results["fit"].items():
        for m, v in metrics.items():
            rows.append([cond, m, v["mean"], v["lo"], v["hi"], v["n"]])
    _write_csv(out_dir / "fit.csv", ["condition", "metric", "mean", "lo", "hi", "n"], rows)
    s = results["samplers"]
    rows = []
    if not s.get("skipped"):
        for name in ("fast", "ancestral"):
            for m, v in s[name]["fit"].items():
                rows.append([name, s[name]["steps"], m, v["mean"], v["lo"], v["hi"],
                             s[name]["seconds_per_clip"]])
    _write_csv(out_dir / "samplers.csv",
               ["sampler", "steps", "metric", "mean", "lo", "hi", "seconds_per_clip"], rows)
    _write_csv(out_dir / "efficiency.csv", ["quantity", "value"],
               [[k, v] for k, v in results["efficiency"].items()])
    _plot_fit(results, out_dir / "fit.png")
    _plot_samplers(results, out_dir / "samplers.png")


def _bar(ax, labels, entries, colors):
    means = [np.nan if e["mean"] is None else e["mean"] for e in entries]
    err = [[0 if (e["lo"] is None or e["mean"] is None) else e["mean"] - e["lo"] for e in entries],
           [0 if (e["hi"] is None or e["mean"] is None) else e["hi"] - e["mean"] for e in entries]]
    ax.bar(range(len(labels)), means, yerr=err, capsize=4, color=colors)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_fit(results: Mapping, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in (*METRICS, *REALISM) if m in results["fit"]["conditioned"]]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.6))
    colors = {"conditioned": "tab:blue", "shuffled": "tab:orange", "null": "tab:gray", "real": "tab:green"}
    real_label = {"fad": "real vs\nreal", "frechet": "real, other\nsegment"}
    for ax, m in zip(axes, shown):
        conds = [c for c in (*CONDITIONS, "real") if m in results["fit"].get(c, {})]
        labels = [real_label.get(m, c) if c == "real" else c for c in conds]
        _bar(ax, labels, [results["fit"][c][m] for c in conds], [colors[c] for c in conds])
        arrow = "higher is better" if HIGHER_IS_BETTER[m] else "lower is better"
        kind = "realism, not fit" if m in REALISM else arrow
        ax.set_title(f"{m} ({kind})", fontsize=9)
        ax.set_ylabel({"chroma": "Pearson r", "key": "MIREX score", "beat": "salience ratio",
                       "frechet": "paired Fréchet distance", "fad": "set Fréchet distance"}[m])
    fig.suptitle(f"Fit to the vocal, mean and 95 % interval over {results['n_clips']} test clips")
    fig.tight_layout()
    _save_fig(fig, path)


def _plot_samplers(results: Mapping, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["samplers"]
    fig, axes = plt.subplots(1, 4, figsize=(12.8, 3.4))
    if s.get("skipped"):
        for ax in axes:
            ax.axis("off")
        axes[0].text(0, 0.5, "sampler comparison skipped")
    else:
        names = ["fast", "ancestral"]
        labels = [f"{s[k]['name'].split(' ')[0]}\n{s[k]['steps']} steps" for k in names]
        for ax, m in zip(axes, ("chroma", "key", "beat")):
            _bar(ax, labels, [s[k]["fit"][m] for k in names], ["tab:blue", "tab:purple"])
            ax.set_title(m, fontsize=9)
        axes[3].bar(labels, [s[k]["seconds_per_clip"] for k in names], color=["tab:blue", "tab:purple"])
        axes[3].set_yscale("log")
        axes[3].set_ylabel("seconds per clip")
        axes[3].set_title(f"speed ratio {s['speed_ratio']:.0f}x", fontsize=9)
    fig.tight_layout()
    _save_fig(fig, path)


def _write_examples(folder: Path, examples, vocals, stats, codec, data_dir: Path, store, sr: int,
                    clip_seconds: float) -> None:
    """``examples/<k>_{vocal,generated,true_accomp,mix}.wav`` for the first few clips."""
    from . import audio as audio_mod

    for k, (i, row, offset_s, gen, ref) in enumerate(examples):
        wav = data_dir / "songs" / row["song_id"] / "vocals.wav"
        vocal = None
        if wav.exists():
            try:
                import soundfile as sf

                start = int(round(offset_s * sr))
                data, file_sr = sf.read(str(wav), start=start, frames=int(round(clip_seconds * sr)),
                                        dtype="float32", always_2d=True)
                if file_sr == sr and len(data):
                    vocal = audio_mod.to_channels(data.T, 2)
            except Exception:
                vocal = None
        if vocal is None:
            vocal = codec.decode(store.denormalise(vocals[i], stats, "vocal"))
        n = min(vocal.shape[1], gen.shape[1])
        mix = vocal[:, :n] + gen[:, :n]
        peak = float(np.max(np.abs(mix))) if mix.size else 0.0
        if peak > 0.99:
            mix = mix * (0.99 / peak)
        stem = f"{k}_{row['song_id']}"
        for name, x in (("vocal", vocal), ("generated", gen), ("true_accomp", ref), ("mix", mix)):
            audio_mod.save(folder / f"{stem}_{name}.wav", x, sr)


def _num(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.4g}"


def _fmt(v: Mapping) -> str:
    if v.get("mean") is None:
        return "n/a"
    if v.get("lo") is None:
        return _num(v["mean"])
    return f"{_num(v['mean'])} [{_num(v['lo'])}, {_num(v['hi'])}]"


def format_table(results: Mapping) -> str:
    """A readable text report of :func:`evaluate`'s results (what ``samuel evaluate`` prints)."""
    lines = [f"Evaluation of profile {results['profile']!r} on {results['n_clips']} test clips "
             f"of {results['n_songs']} songs ({results['clip_seconds']:.1f} s each), sampler "
             f"{results['sampler']['name']} ({results['sampler']['steps']} steps, "
             f"cfg {results['sampler']['cfg_scale']:g}), mean [95 % interval]", ""]
    conds = [*CONDITIONS, "real"]
    width = 29
    lines.append("metric".ljust(8) + "".join(c.ljust(width) for c in conds))
    for m in (*METRICS, *REALISM):
        if m not in results["fit"]["conditioned"]:
            continue
        cells = [(_fmt(results["fit"][c][m]) if m in results["fit"].get(c, {}) else "-").ljust(width)
                 for c in conds]
        lines.append(m.ljust(8) + "".join(cells))
    lines.append("(real: the true accompaniment; its frechet is to another segment of the same song;")
    lines.append(" fad is realism, not fit: set against set, blind to the pairing; real: half vs half)")
    lines.append("")
    for m in METRICS:
        lines.append(f"conditioned beats shuffled and null on {m}: {results['beats_baselines'][m]}")
    s = results["samplers"]
    lines.append("")
    if s.get("skipped"):
        lines.append("sampler comparison: skipped")
    else:
        lines.append(f"samplers on {s['clips']} clips: fast {s['fast']['name']} ({s['fast']['steps']} steps) "
                     f"{s['fast']['seconds_per_clip']:.3f} s/clip, ancestral ({s['ancestral']['steps']} steps) "
                     f"{s['ancestral']['seconds_per_clip']:.3f} s/clip, ratio {s['speed_ratio']:.1f}x")
        for m, ok in s["overlap"].items():
            lines.append(f"  {m}: fast {_fmt(s['fast']['fit'][m])}  ancestral "
                         f"{_fmt(s['ancestral']['fit'][m])}  overlap: {ok}")
        lines.append(f"fast sampler fits as well as the paper's: {s['equal_fit']}")
        lines.append(f"fast sampler at least 40x faster: {s['at_least_40x_faster']}")
    e = results["efficiency"]
    lines += ["", "Efficiency (paper Table II)",
              f"  device                      {e['device']}",
              f"  parameters (model)          {e['parameters']:,}",
              f"  parameters (with codec)     {e['parameters_with_codec']:,}  ({e['codec']} codec: "
              f"{e['codec_parameters']:,})",
              f"  seconds per 47.55 s clip    {e['fast_total_seconds_per_47s_clip']:.2f} "
              f"(fast sampler {e['fast_seconds_per_47s_clip']:.2f} + decode "
              f"{e['decode_seconds_per_47s_clip']:.2f})"]
    if "ancestral_seconds_per_47s_clip" in e:
        lines.append(f"  ancestral, per 47.55 s clip {e['ancestral_seconds_per_47s_clip']:.2f} (generation only)")
    lines.append(f"  peak memory                 {e['peak_rss_mib']:.0f} MiB RSS"
                 + (f", {e['peak_cuda_mib']:.0f} MiB CUDA" if "peak_cuda_mib" in e else ""))
    lines.append(f"  ({e['scaling']})")
    a = results["audiobox"]
    lines.append("")
    if not a.get("available"):
        lines.append(f"AudioBox-Aesthetics: not available: {a.get('reason')}")
    else:
        for name, axes in a.items():
            if isinstance(axes, Mapping):
                lines.append(f"AudioBox-Aesthetics {name}: " + ", ".join(
                    f"{k} {_fmt(v)}" for k, v in axes.items()))
    return "\n".join(lines)
