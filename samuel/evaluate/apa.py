"""Accompaniment Prompt Adherence (APA): does each accompaniment belong with its own vocal?

Grachten & Nistal (2025) measure adherence on the joint distribution of (prompt, accompaniment)
pairs. With ``R`` the true (vocal, accompaniment) pairs, ``R'`` the same pairs re-paired at
random (each vocal with another clip's accompaniment, seeded) and ``C`` the (vocal, candidate)
pairs, and ``FD`` the Fréchet distance between the pairs' joint embeddings::

    APA = 1/2 + (FD(C, R') - FD(C, R)) / (2 FD(R, R')),   clipped to [0, 1]

1 when the candidates pair with their vocals as the true accompaniments do (``C = R``), 0 when
they pair as badly as a random re-pairing (``C = R'``), about 1/2 for another random re-pairing
(as close to ``R`` as to ``R'``). Unlike the set-level Fréchet distance
(:func:`~samuel.evaluate.metrics.fad_from_features`) it sees the pairing: the shuffled baseline,
realistic but made for another vocal, scores low.

The joint embedding of a pair is the concatenation of the offline per-clip features
(:func:`~samuel.evaluate.metrics.clip_features`, 90 numbers: log-mel, chroma and onset, mean
and std) of the vocal and of the accompaniment, each half scaled by the true pairs' spread
(the scaling of :func:`~samuel.evaluate.metrics.fad_from_features`). :func:`clap_embedder`
offers a learned embedding instead where a local CLAP checkpoint and ``transformers`` exist.

:func:`apa` scores one candidate set, :func:`apa_conditions` several against the same ``R`` and
``R'``, :func:`apa_of_scores` the synthetic evaluation's clips
(:func:`samuel.evaluate.conditions.score_conditions`), and the real-recordings evaluation
(:mod:`samuel.evaluate.real`) calls :func:`apa_conditions` with its excerpts.

Book: "What differs from the paper, and why" ("Real recordings and accompaniment prompt
adherence"); notebook 06.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from .metrics import (CONDITIONS, _standardiser, clip_features, clip_features_from_frames,
                      derangement, frechet_distance)

CLAP_ENV = "SAMUEL_CLAP"  # a local CLAP checkpoint folder (transformers' ClapModel layout)
CLAP_SR = 48000  # the rate CLAP's feature extractor expects


def _as_sets(vocal, true_accomp, candidates: Mapping[str, np.ndarray]):
    """Check shapes: ``[N, Dv]``, ``[N, Da]``, each candidate ``[N, Da]``; float64 copies."""
    v = np.asarray(vocal, np.float64)
    a = np.asarray(true_accomp, np.float64)
    if v.ndim != 2 or a.ndim != 2:
        raise ValueError(f"apa: expected vocal features [N, Dv] and accompaniment features "
                         f"[N, Da], found {v.shape} and {a.shape}")
    if len(v) != len(a):
        raise ValueError(f"apa: expected one vocal per true accompaniment, found {len(v)} vocals "
                         f"and {len(a)} accompaniments")
    if len(v) < 2:
        raise ValueError(f"apa: expected at least 2 pairs (a re-pairing needs two), found {len(v)}")
    out = {}
    for name, c in candidates.items():
        c = np.asarray(c, np.float64)
        if c.shape != a.shape:
            raise ValueError(f"apa: candidate {name!r}: expected accompaniment features of the "
                             f"true accompaniments' shape {a.shape}, found {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError(f"apa: candidate {name!r}: expected finite features, found NaN or inf")
        out[name] = c
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(a))):
        raise ValueError("apa: expected finite vocal and accompaniment features, found NaN or inf")
    return v, a, out


def repairing(n: int, groups: Sequence | None = None, seed: int = 0) -> np.ndarray:
    """``perm`` such that pair ``i`` of ``R'`` is (vocal ``i``, accompaniment ``perm[i]``): a
    seeded random permutation that never gives a clip its own accompaniment, nor one of its own
    group (song) when ``groups`` are given and hold at least two. Drawn by rejection (up to
    1,000 tries), else :func:`~samuel.evaluate.metrics.derangement`'s deterministic cycle."""
    groups = list(range(n)) if groups is None or len(set(groups)) < 2 else list(groups)
    if len(groups) != n:
        raise ValueError(f"apa: expected one group per pair ({n}), found {len(groups)}")
    g = np.asarray([str(x) for x in groups])
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        perm = rng.permutation(n)
        if not np.any(g[perm] == g):
            return perm
    return derangement(list(g), seed=seed)


def apa_conditions(vocal, true_accomp, candidates: Mapping[str, np.ndarray],
                   groups: Sequence | None = None, seed: int = 0) -> dict:
    """APA of each candidate set against the same true and re-paired pairs.

    Args:
        vocal: the vocals' features ``[N, Dv]`` (e.g. :func:`clip_features`).
        true_accomp: the true accompaniments' features ``[N, Da]`` (row ``i`` is vocal ``i``'s).
        candidates: name -> candidate accompaniments' features ``[N, Da]`` (row ``i`` made
            for vocal ``i``).
        groups: the pairs' songs, so that ``R'`` never pairs a vocal with its own song; None:
            any other pair.
        seed: the re-pairing's seed. An evaluation passes another seed than that of its
            shuffled baseline, so that ``R'`` is not that baseline's pairing.

    Returns:
        name -> ``dict(apa, raw, fd_c_r, fd_c_rr, fd_r_rr, n)``: ``apa`` clipped to [0, 1],
        ``raw`` before clipping, the three Fréchet distances (``rr``: the re-paired set ``R'``).

    Raises:
        ValueError: shapes that do not fit, fewer than two pairs, non-finite features.
    """
    v, a, cands = _as_sets(vocal, true_accomp, candidates)
    perm = repairing(len(v), groups, seed)
    zv, za = _standardiser(v), _standardiser(a)  # each half scaled by the true pairs' spread
    r = np.concatenate([zv(v), za(a)], axis=1)
    rr = np.concatenate([zv(v), za(a[perm])], axis=1)
    fd_r_rr = frechet_distance(r, rr)
    out = {}
    for name, c in cands.items():
        joint = np.concatenate([zv(v), za(c)], axis=1)
        fd_c_r, fd_c_rr = frechet_distance(joint, r), frechet_distance(joint, rr)
        raw = 0.5 + (fd_c_rr - fd_c_r) / (2 * fd_r_rr) if fd_r_rr > 1e-12 else float("nan")
        out[name] = {"apa": float(np.clip(raw, 0.0, 1.0)) if np.isfinite(raw) else float("nan"),
                     "raw": float(raw), "fd_c_r": fd_c_r, "fd_c_rr": fd_c_rr, "fd_r_rr": fd_r_rr,
                     "n": int(len(v))}
    return out


def apa(vocal, true_accomp, candidate, groups: Sequence | None = None, seed: int = 0) -> dict:
    """:func:`apa_conditions` of one candidate set ``[N, Da]``: ``dict(apa, raw, fd_c_r, ...)``."""
    return apa_conditions(vocal, true_accomp, {"candidate": candidate}, groups, seed)["candidate"]


# --------------------------------------------------------------------------- the evaluations


def apa_of_scores(ctx, scores, seed: int | None = None) -> dict:
    """APA of the synthetic evaluation's three conditions (``results["apa"]``).

    The vocal features come from the decoded vocal latents of each clip (what the model was
    given), the accompaniments' from the frame features :func:`score_conditions` already took
    (``scores.frames_of``); the re-pairing never stays inside a song.

    Args:
        ctx: the run (:func:`samuel.evaluate.context.prepare`).
        scores: its :class:`~samuel.evaluate.conditions.Scores`.
        seed: the re-pairing's seed (default ``ctx.seed + 1``: not the shuffled baseline's
            pairing, :func:`~samuel.evaluate.metrics.derangement` with ``ctx.seed``).
    """
    vocal = np.stack([clip_features(ctx.decode(ctx.vocals[i], "vocal"), ctx.sr)
                      for i in range(ctx.n)])
    feats = {c: np.stack([clip_features_from_frames(f) for f in scores.frames_of[c]])
             for c in (*CONDITIONS, "real")}
    out = apa_conditions(vocal, feats.pop("real"), feats, groups=ctx.song_ids,
                         seed=ctx.seed + 1 if seed is None else seed)
    return {**out, "embedding": "clip_features of vocal and accompaniment (offline, 2 x 90)"}


# --------------------------------------------------------------------------- CLAP


def clap_embedder(checkpoint: str | os.PathLike | None = None,
                  device: str = "cpu") -> tuple[Callable | None, str]:
    """A CLAP audio embedding ``audio [C, N] at sr -> [D]``, or None with the reason.

    ``checkpoint`` (else ``$SAMUEL_CLAP``): a local folder in transformers' ``ClapModel``
    layout. Nothing is downloaded. Without a folder, or without ``transformers``, the APA uses
    the offline features alone and the reason says why in one line.

    Returns:
        ``(embed or None, note)``.
    """
    folder = checkpoint or os.environ.get(CLAP_ENV) or None
    if not folder:
        return None, (f"CLAP: not used (no local CLAP checkpoint: pass one or set {CLAP_ENV}); "
                      "APA on the offline features")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: expected a CLAP checkpoint folder (config.json and "
                                "weights), found no folder")
    try:
        import torch
        from transformers import ClapModel, ClapProcessor
    except ImportError:
        return None, (f"CLAP: not used ({folder} given, but the transformers package is not "
                      "installed); APA on the offline features")
    model = ClapModel.from_pretrained(folder, local_files_only=True).to(device).eval()
    processor = ClapProcessor.from_pretrained(folder, local_files_only=True)

    def embed(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
        from ..audio import resample

        x = np.asarray(audio, np.float32)
        mono = resample(x if x.ndim == 1 else x.mean(axis=0), int(sr), CLAP_SR)
        inputs = processor(audios=mono, sampling_rate=CLAP_SR, return_tensors="pt")
        with torch.no_grad():
            e = model.get_audio_features(**{k: v.to(device) for k, v in inputs.items()})
        return e[0].float().cpu().numpy().astype(np.float64)

    return embed, f"CLAP: {folder}"
