"""Scoring the three conditions: the model and its two baselines, on the same clips and noise.

Book: notebook 06 ("Fit to the vocal, against the baselines", "AudioBox-Aesthetics"); design §7.

For each batch of test clips, the model generates from the same seeded noise three times:
``conditioned`` (the clip's own vocal), ``shuffled`` (the vocal of a clip of another song,
:func:`~samuel.evaluate.metrics.derangement`) and ``null`` (no vocal). Every generated clip and
the true accompaniment are decoded and measured (:func:`score_conditions`); :func:`fit_summary`
turns the per-clip values into intervals and says whether the model beats both baselines.
A clip's key and beats come from its song's ``truth.json``, or are estimated from the true
accompaniment when there is none (:func:`clip_truth`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import aesthetics
from ..audio import SAMPLE_RATE
from ..io import read_json
from .context import Context, sync
from .metrics import (CLIP_METRICS, CONDITIONS, HIGHER_IS_BETTER, HOP, METRIC_SR, METRICS,
                      beat_alignment, beats, clip_features_from_frames, clip_metrics,
                      estimate_key, fad_from_features, frame_features, frame_standardiser,
                      interval, key_agreement, key_name, other_segment, paired_frechet,
                      real_vs_real, to_mono)

AUDIOBOX_AXES = aesthetics.AXES  # production quality/complexity, content enjoyment/usefulness


# --------------------------------------------------------------------------- ground truth


def clip_truth(truth: Mapping | None, offset_seconds: float, seconds: float,
               ref_audio: np.ndarray | None = None, sr: int = SAMPLE_RATE) -> dict:
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


def truth_note(truth_sources: Mapping[str, int], data_info: Mapping) -> str:
    """One sentence on where the clips' key and beats came from (``results["data"]["truth"]``)."""
    estimated = sum(v for k, v in truth_sources.items() if k != "truth.json")
    total = sum(truth_sources.values())
    if not estimated:
        return f"key and beats of all {total} clips from the songs' truth.json"
    if data_info.get("layout") == "published POPDB index":
        why = "the published POPDB has no song audio and no truth.json"
    elif not data_info.get("has_audio"):
        why = "no songs/ folder with truth.json beside the POPDB"
    else:
        why = "some songs have no truth.json"
    return (f"key and beats of {estimated} of {total} clips estimated from the decoded true "
            f"accompaniment ({why}); the key and beat metrics then measure agreement with "
            "those estimates")


def song_truths(songs_dir: Path | None) -> Callable[[str], dict | None]:
    """A cached lookup ``song_id -> truth.json`` contents (None where the song has none)."""
    cache: dict[str, dict | None] = {}

    def truth_of(song_id: str) -> dict | None:
        if song_id not in cache:
            path = songs_dir / song_id / "truth.json" if songs_dir is not None else None
            cache[song_id] = read_json(path) if path is not None and path.exists() else None
        return cache[song_id]

    return truth_of


# --------------------------------------------------------------------------- scoring


@dataclass
class Scores:
    """What :func:`score_conditions` gathers, clip by clip (lists are ``[N]``, in clip order).

    Attributes:
        per_clip: condition (and ``"real"``) -> metric -> values (``results["per_clip"]``).
        frames_of: condition (and ``"real"``) -> :func:`frame_features` ``[F, 45]`` per clip.
        aesthetics: condition (and ``"real"``) -> AudioBox scores per clip (empty without a model).
        clips: one ``results["clips"]`` entry per clip.
        examples: ``(clip, row, offset_s, generated [2, N], true [2, N])`` of the first
            conditioned clips of distinct songs, to listen to.
        truth_sources: where the clips' key and beats came from -> count.
        refs: clip -> ``(true accompaniment [2, N], truth)`` of the clips the sampler
            comparison scores again.
        gen_seconds: time spent sampling (three conditions).
        decode_seconds: time spent decoding the true accompaniments.
    """

    per_clip: dict = field(default_factory=lambda: {
        **{c: {m: [] for m in CLIP_METRICS} for c in CONDITIONS}, "real": {"key": [], "beat": []}})
    frames_of: dict = field(default_factory=lambda: {c: [] for c in (*CONDITIONS, "real")})
    aesthetics: dict = field(default_factory=lambda: {c: [] for c in (*CONDITIONS, "real")})
    clips: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    truth_sources: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)
    gen_seconds: float = 0.0
    decode_seconds: float = 0.0


def score_conditions(ctx: Context, predictor=None, batch_size: int = 8, keep_refs: int = 0,
                     n_examples: int = 2, progress: bool = True) -> Scores:
    """Generate the three conditions batch by batch, decode and measure every clip.

    Batch ``b`` uses the noise seed ``ctx.seed + b`` for all three conditions, so they differ
    only in the vocal they are given.

    Args:
        ctx: the run (:func:`samuel.evaluate.context.prepare`).
        predictor: an AudioBox-Aesthetics model (:func:`load_audiobox`), or None.
        batch_size: clips generated at once.
        keep_refs: keep the decoded true accompaniment of the first ``keep_refs`` clips
            (for :func:`samuel.evaluate.samplers.compare_fast_and_ancestral`).
        n_examples: conditioned clips of distinct songs kept to listen to.
        progress: show a tqdm bar.
    """
    from tqdm.auto import tqdm

    scores, truth_of = Scores(), song_truths(ctx.songs_dir)
    batches = [list(range(s, min(s + batch_size, ctx.n))) for s in range(0, ctx.n, batch_size)]
    for b, idx in enumerate(tqdm(batches, desc="evaluate", disable=not progress)):
        t0 = time.perf_counter()
        shape = ctx.vocals[idx].shape
        given = {"conditioned": ctx.vocals[idx], "shuffled": ctx.vocals[ctx.perm[idx]], "null": None}
        out = {c: ctx.sample(shape, v, ctx.seed + b) for c, v in given.items()}
        sync(ctx.device)
        scores.gen_seconds += time.perf_counter() - t0
        for j, i in enumerate(idx):
            _score_clip(ctx, scores, i, {c: out[c][j] for c in CONDITIONS}, truth_of, predictor,
                        keep_refs, n_examples)
    return scores


def _score_clip(ctx: Context, scores: Scores, i: int, latents: Mapping[str, np.ndarray],
                truth_of, predictor, keep_refs: int, n_examples: int) -> None:
    """Decode and measure clip ``i``: its true accompaniment, then each condition's
    ``latents[c]`` ``[C, T]``; appends to ``scores``."""
    sr = ctx.sr
    row = ctx.rows[i]
    offset_s = float(row["offset_frame"]) / ctx.fps
    t1 = time.perf_counter()
    ref = ctx.decode(ctx.accomp[i])
    scores.decode_seconds += time.perf_counter() - t1
    truth = clip_truth(truth_of(row["song_id"]), offset_s, ctx.clip_seconds, ref, sr)
    scores.truth_sources[truth["source"]] = scores.truth_sources.get(truth["source"], 0) + 1
    if i < keep_refs:
        scores.refs[i] = (ref, truth)
    real = scores.per_clip["real"]
    real["key"].append(key_agreement(ref, truth["tonic_pc"], truth["mode"], sr))
    real["beat"].append(beat_alignment(ref, truth["beat_times"], sr))
    scores.frames_of["real"].append(frame_features(ref, sr))
    if predictor is not None:
        scores.aesthetics["real"] += audiobox_score(predictor, [ref], sr)
    for c in CONDITIONS:
        gen = ctx.decode(latents[c])
        for m, v in clip_metrics(gen, ref, truth, sr).items():
            scores.per_clip[c][m].append(v)
        scores.frames_of[c].append(frame_features(gen, sr))
        if predictor is not None:
            scores.aesthetics[c] += audiobox_score(predictor, [gen], sr)
        if (c == "conditioned" and len(scores.examples) < n_examples
                and row["song_id"] not in {e[1]["song_id"] for e in scores.examples}):
            scores.examples.append((i, row, offset_s, gen, ref))
    scores.clips.append({"row": int(ctx.picked[i]), "song_id": row["song_id"],
                         "offset_seconds": round(offset_s, 4),
                         "shuffled_vocal_from": ctx.song_ids[ctx.perm[i]],
                         "key": key_name(truth["tonic_pc"], truth["mode"]),
                         "beats_in_clip": len(truth["beat_times"])})


def fit_summary(ctx: Context, scores: Scores) -> tuple[dict, dict]:
    """The fit table and its verdict from the per-clip values.

    Adds the paired Fréchet distance to ``scores.per_clip`` (the real reference: another
    segment of the same song, of the right style, key and tempo but not this segment's
    accompaniment), then takes intervals over clips, and the set-level Fréchet distance
    (realism, not fit) beside real vs real.

    Returns:
        ``(fit, beats_baselines)``: condition (and ``"real"``) -> metric -> ``dict(mean, lo,
        hi, n)``; metric -> True when the conditioned interval lies strictly on the better
        side of both baselines' intervals.
    """
    per_clip, frames_of = scores.per_clip, scores.frames_of
    z = frame_standardiser(frames_of["real"])
    real = frames_of["real"]
    for c in CONDITIONS:
        per_clip[c]["frechet"] = [paired_frechet(g, r, z) for g, r in zip(frames_of[c], real)]
    per_clip["real"]["frechet"] = [
        paired_frechet(real[other], real[i], z) if other is not None else float("nan")
        for i, other in enumerate(other_segment(ctx.song_ids))]
    fit = {c: {m: interval(per_clip[c][m]) for m in METRICS} for c in CONDITIONS}
    fit["real"] = {m: interval(per_clip["real"][m]) for m in ("key", "beat", "frechet")}
    real_feats = np.stack([clip_features_from_frames(f) for f in real])
    for k, c in enumerate(CONDITIONS):
        gen_feats = np.stack([clip_features_from_frames(f) for f in frames_of[c]])
        fit[c]["fad"] = fad_from_features(gen_feats, real_feats, seed=ctx.seed + k)
    fit["real"]["fad"] = real_vs_real(real_feats, ctx.song_ids, seed=ctx.seed)
    beats_baselines = {
        m: all(beats(fit["conditioned"][m], fit[base][m], HIGHER_IS_BETTER[m])
               for base in ("shuffled", "null"))
        for m in METRICS}
    return fit, beats_baselines


# --------------------------------------------------------------------------- AudioBox


def load_audiobox(checkpoint: str | None = None, device: str | None = "cpu"):
    """The AudioBox-Aesthetics model (paper §VI-A, Table I), or None with the reason.

    A thin wrapper of :func:`samuel.aesthetics.load`: ``checkpoint`` (a hub-layout folder or
    the package's ``checkpoint.pt``), else ``$SAMUEL_AUDIOBOX_CKPT``, else the hub
    (``facebook/audiobox-aesthetics``, or its local cache). A path that was given but cannot
    be read raises; a missing package or an unreachable hub gives None and the reason.

    Returns:
        ``(model or None, info)``; ``info`` is ``{"available": False, "reason": ...}`` when
        it cannot be had.
    """
    ckpt = checkpoint or os.environ.get(aesthetics.ENV_VAR) or None
    try:
        model = aesthetics.load(ckpt, device=device)
    except aesthetics.AestheticsUnavailable as e:
        return None, {"available": False, "reason": str(e)}
    return model, {"available": True, "checkpoint": str(ckpt) if ckpt else aesthetics.HUB_REPO}


def audiobox_score(predictor, clips: Sequence[np.ndarray], sr: int = SAMPLE_RATE) -> list[dict]:
    """PQ / PC / CE / CU (1-10) of each clip ``[C, N]`` (:func:`samuel.aesthetics.score`)."""
    return aesthetics.score(predictor, clips, sr)


def audiobox_table(scores: Mapping[str, Sequence[Mapping]], info: dict) -> list[dict]:
    """Intervals of each axis per condition, into ``info``, and paper Table I's rows beside ours.

    Args:
        scores: condition (and ``"real"``) -> per-clip AudioBox scores (:func:`audiobox_score`).
        info: ``results["audiobox"]``; gains ``info[condition][axis] = dict(mean, lo, hi, n)``.

    Returns:
        The rows of :func:`samuel.aesthetics.table_i` (``results["table_i"]``).
    """
    for name, clip_scores in scores.items():
        info[name] = {k: interval([s[k] for s in clip_scores]) for k in AUDIOBOX_AXES}
    return aesthetics.table_i({name: info[name] for name in scores})
