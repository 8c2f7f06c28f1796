"""The fit metrics and their statistics: features, Fréchet distances, intervals, baselines.

Book: notebook 06 ("Fit to the vocal, against the baselines"); design §7.

Each fit metric is computed per clip on audio at :data:`samuel.audio.SAMPLE_RATE` (44.1 kHz)
whose features are taken from a mono mix at :data:`METRIC_SR` (22.05 kHz):

* ``chroma`` -- :func:`chroma_agreement`: harmony agreement with the true accompaniment.
* ``key`` -- :func:`key_agreement`: MIREX weighted key score against the song's key.
* ``beat`` -- :func:`beat_alignment`: beat salience ratio at the song's beats (1 = chance).
* ``frechet`` -- :func:`paired_frechet`: per clip, the Fréchet distance between the
  frame-feature distributions (:func:`frame_features`) of the generated and the true
  accompaniment of the same vocal.

Beside them the realism measure ``fad`` (:func:`fad_from_features`, set against set), the
95 % intervals (:func:`mean_ci`, :func:`interval`), their comparison (:func:`beats`,
:func:`overlap`) and the baselines' bookkeeping (:func:`derangement` for the shuffled vocal,
:func:`other_segment`, :func:`select_clips`).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from ..data.compose import PITCH_NAMES

METRIC_SR = SAMPLE_RATE // 2  # rate all features are computed at (44.1 kHz / 2, for speed)
N_FFT, HOP = 2048, 512  # feature STFT: 93 ms window, 23 ms hop
N_MELS = 32  # log-mel bands of the Fréchet feature
BEAT_TOLERANCE_S = 0.07  # ±70 ms: the usual beat-tracking tolerance (mir_eval's F-measure window)
CONDITIONS = ("conditioned", "shuffled", "null")  # the model, and its two baselines (design §7)
METRICS = ("chroma", "key", "beat", "frechet")  # the fit metrics, in table order
CLIP_METRICS = METRICS[:3]  # those of one clip alone (frechet needs the scale of all real clips)
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
BOOTSTRAP = 200  # resamples for the Fréchet distance interval
# Krumhansl & Kessler (1982) key profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


# --------------------------------------------------------------------------- features


def to_mono(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``[C, N]`` or ``[N]`` audio at ``sr`` -> float32 mono ``[N']`` at :data:`METRIC_SR`."""
    import soxr

    audio = np.asarray(audio, np.float32)
    mono = audio if audio.ndim == 1 else audio.mean(axis=0)
    if int(sr) != METRIC_SR:
        mono = soxr.resample(mono, int(sr), METRIC_SR, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono)


def chroma(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """12-bin chroma ``[12, F]`` (librosa ``chroma_stft``, tuning fixed at A440), hop 23 ms."""
    import librosa

    y = to_mono(audio, sr)
    return librosa.feature.chroma_stft(y=y, sr=METRIC_SR, n_fft=N_FFT, hop_length=HOP, tuning=0.0)


def onset_envelope(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
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


def chroma_agreement(gen: np.ndarray, ref: np.ndarray, sr: int = SAMPLE_RATE) -> float:
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


def estimate_key(audio: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[int, str, float]:
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


def key_agreement(gen: np.ndarray, key_tonic_pc: int, key_mode: str, sr: int = SAMPLE_RATE) -> float:
    """How well the clip's key matches the song's: ``mir_eval.key.weighted_score`` (MIREX) of
    the :func:`estimate_key` estimate against the true key.

    1 for the same key, 0.5 a fifth above, 0.3 the relative, 0.2 the parallel key, 0 otherwise.
    """
    import mir_eval

    tonic, mode, _ = estimate_key(gen, sr)
    return float(mir_eval.key.weighted_score(key_name(key_tonic_pc, key_mode), key_name(tonic, mode)))


def beat_alignment(gen: np.ndarray, beat_times: Sequence[float], sr: int = SAMPLE_RATE,
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


def frame_features(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The fixed, offline per-frame feature ``[F, 45]`` float64 (hop 23 ms): a 32-band log-mel
    spectrogram (dB; timbre and level), the 12-bin chroma (harmony) and the onset strength
    (rhythm). No learned weights: computable anywhere (no CLAP/VGGish package ships its
    weights for offline use). Blocks: :data:`FRAME_BLOCKS`.
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


def clip_features(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
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


def fad(gen_list: Sequence[np.ndarray], real_list: Sequence[np.ndarray], sr: int = SAMPLE_RATE,
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


def interval(values) -> dict:
    """:func:`mean_ci` as ``dict(mean, lo, hi, n)``, ``n`` the finite values (a results cell)."""
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


# --------------------------------------------------------------------------- baselines


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


# --------------------------------------------------------------------------- one clip


def clip_metrics(gen: np.ndarray, ref: np.ndarray, truth: Mapping, sr: int = SAMPLE_RATE) -> dict:
    """The per-clip fit metrics of one generated clip: ``dict(chroma, key, beat)``
    (:data:`CLIP_METRICS`).

    Args:
        gen, ref: ``[C, N]`` audio at ``sr`` Hz, the generated and the true accompaniment.
        truth: the clip's key and beats (:func:`samuel.evaluate.conditions.clip_truth`).
    """
    return {"chroma": chroma_agreement(gen, ref, sr),
            "key": key_agreement(gen, truth["tonic_pc"], truth["mode"], sr),
            "beat": beat_alignment(gen, truth["beat_times"], sr)}
