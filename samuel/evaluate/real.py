"""Real recordings: the model on recorded songs it never saw (Frets on Fire multitracks).

The synthetic test songs come from the same composer as the training songs; these do not.
The Debian package ``fretsonfire-songs-muldjord`` (four metal songs by Muldjord, CC BY-SA 3.0)
holds, per song, a recorded lead-guitar stem (``guitar.ogg``), the real backing band
(``song.ogg``) and a MIDI file whose tempo map gives the beats (``notes.mid``). The lead stands
for the vocal, the backing is the truth. Nothing of them is trained on: they are a validation
set of another kind of music.

Per song, :data:`PER_SONG` non-overlapping excerpts of about :data:`EXCERPT_SECONDS` are drawn
(seeded) from those where the lead plays (:func:`pick_excerpts`); each excerpt is a whole number
of the model's windows (``data.chunk_frames``), sampled independently like the synthetic clips
and joined. The excerpt's key is estimated from its backing (:func:`~.metrics.estimate_key`),
its beats come from the tempo map (:func:`beat_times`). The model generates with the profile's
fast sampler in the three conditions of the synthetic evaluation (:data:`~.metrics.CONDITIONS`,
same noise), and a fourth, ``other_song``, is chance: the real backing of an excerpt of another
song (the one whose lead the shuffled condition gets), what a perfect model would return for
the shuffled lead. All are scored with the synthetic evaluation's fit metrics against the
decoded true backing (:func:`~.conditions.fit_summary`), plus:

* ``keys``: how many distinct keys the outputs are in (the backings: one per song, or more);
* ``roughness``: mean absolute frame-to-frame change of the z-scored frame features
  (:func:`roughness`) and of the normalised latents (:func:`latent_roughness`), generated
  against real; the target is no more than :data:`ROUGHNESS_TARGET` times real. Beside them,
  the same measure of the training corpus's own accompaniment (its validation songs, decoded
  by the same codec, :func:`corpus_roughness`) says how much of the generated roughness the
  model learnt from its training songs, and each block of the frame features (mel, chroma,
  onset; :func:`roughness_blocks`) where it lies;
* ``apa``: the accompaniment prompt adherence (:mod:`.apa`).

A song whose stems or tempo map cannot be read, or which is shorter than one excerpt, is
skipped with a one-line warning and listed in ``results["skipped"]``; at least two songs must
give excerpts.

``samuel evaluate --real [--profile demo] [--checkpoint DIR] [--json]`` runs
:func:`evaluate_real` and prints :func:`format_real` (the table :func:`real_table`, then the
verdicts); without the songs it prints one line (:func:`unavailable_reason`). Notebook 06
shows :func:`table_rows` and plays :func:`real_examples`; :func:`real_table` is the same table
as HTML in a notebook.

Book: "What differs from the paper, and why" ("Real recordings and accompaniment prompt
adherence"); notebook 06.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from ..io import read_json, to_jsonable, write_json
from .metrics import (CLIP_METRICS, CONDITIONS, FRAME_BLOCKS, HIGHER_IS_BETTER, METRICS,
                      beat_alignment, beats, clip_features, clip_features_from_frames,
                      clip_metrics, derangement, estimate_key, frame_features,
                      frame_standardiser, interval, key_agreement, key_name, paired_frechet)
from .report import EMPTY, Table
from .report import num_or_na as _num
from .report import interval as interval_text

log = logging.getLogger(__name__)

PACKAGE = "fretsonfire-songs-muldjord"  # the Debian package of the songs
FOF_ENV = "SAMUEL_FOF"  # a folder of song folders, instead of the package's
FOF_FOLDERS = (  # where the package puts them (Debian, then a local install)
    "/usr/share/games/fretsonfire/data/songs/muldjord",
    "/usr/share/games/fretsonfire/data/songs",
    "/usr/local/share/games/fretsonfire/data/songs",
)
LEAD, BACKING, TEMPO_MAP = "guitar.ogg", "song.ogg", "notes.mid"
EXCERPT_SECONDS = 30.0  # per excerpt (rounded to whole model windows: 29.7 s on demo)
PER_SONG = 3  # excerpts per song
ACTIVE_DB = -45.0  # a 0.5 s block of the lead is playing when its RMS is above this (dBFS)
ACTIVE_FRACTION = 0.75  # an excerpt is kept when at least this share of its blocks play
BLOCK_SECONDS = 0.5
OTHER = "other_song"  # chance: another song's real backing, aligned by excerpt
REAL_CONDITIONS = (*CONDITIONS, OTHER)
ROUGHNESS_TARGET = 1.5  # generated no rougher than 1.5 x real
CORPUS_SECONDS = 285.0  # audio of the training corpus's validation chunks decoded for its roughness
BLOCK_NAMES = ("mel", "chroma", "onset")  # the blocks of metrics.FRAME_BLOCKS
assert len(BLOCK_NAMES) == len(FRAME_BLOCKS)
DEFAULT_TEMPO = 500000  # µs per beat before a MIDI file's first tempo event (120 BPM)


# --------------------------------------------------------------------------- the songs


def unavailable_reason() -> str:
    """The one sentence printed when no songs are found."""
    return (f"real recordings: not found (install the Debian package {PACKAGE}, e.g. "
            f"`apt-get install {PACKAGE}`, or set {FOF_ENV} to a folder of song folders holding "
            f"{LEAD}, {BACKING} and {TEMPO_MAP}); nothing evaluated")


def song_dirs(folder: str | os.PathLike) -> list[Path]:
    """The song folders under ``folder`` (itself, or up to two levels down) that hold the
    lead, the backing and the tempo map, sorted by name."""
    folder = Path(folder)
    found = set()
    for pattern in (TEMPO_MAP, f"*/{TEMPO_MAP}", f"*/*/{TEMPO_MAP}"):
        for mid in folder.glob(pattern):
            if (mid.parent / LEAD).is_file() and (mid.parent / BACKING).is_file():
                found.add(mid.parent)
    return sorted(found, key=lambda p: (p.name, str(p)))


def find_songs(folder: str | os.PathLike | None = None) -> list[Path]:
    """The song folders: under ``folder``, else ``$SAMUEL_FOF``, else the first of
    :data:`FOF_FOLDERS` that holds any; ``[]`` when none does.

    Raises:
        FileNotFoundError: ``folder`` (or ``$SAMUEL_FOF``) was given but holds no songs.
    """
    given = folder if folder is not None else (os.environ.get(FOF_ENV) or None)
    if given is not None:
        songs = song_dirs(given)
        if not songs:
            raise FileNotFoundError(f"{given}: expected song folders holding {LEAD}, {BACKING} "
                                    f"and {TEMPO_MAP}, found none")
        return songs
    for candidate in FOF_FOLDERS:
        if Path(candidate).is_dir() and (songs := song_dirs(candidate)):
            return songs
    return []


def tempo_map(path: str | os.PathLike) -> tuple[int, list[tuple[int, int]], int]:
    """``(ticks_per_beat, [(tick, µs per beat), ...], last_tick)`` of a MIDI file, the tempo
    changes of all tracks merged, in order; at one tick the last change wins, and before the
    first one the tempo is :data:`DEFAULT_TEMPO` (the MIDI default, 120 BPM).

    Raises:
        ValueError: not a readable MIDI file, or one timed in SMPTE frames.
    """
    import mido

    try:
        mid = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise ValueError(f"{path}: expected a MIDI file, found unreadable data ({e})") from None
    tpb = int(mid.ticks_per_beat)
    if tpb <= 0:
        raise ValueError(f"{path}: expected a MIDI file timed in ticks per beat, found {tpb}")
    changes: list[tuple[int, int]] = []
    tick = 0
    for msg in mido.merge_tracks(mid.tracks):
        tick += int(msg.time)
        if msg.type == "set_tempo":
            if changes and changes[-1][0] == tick:
                changes[-1] = (tick, int(msg.tempo))
            else:
                changes.append((tick, int(msg.tempo)))
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, DEFAULT_TEMPO))
    return tpb, changes, tick


def beat_times(path: str | os.PathLike, until: float | None = None) -> np.ndarray:
    """The beats of a MIDI file's tempo map, in seconds from its start: one at every multiple
    of the resolution (ticks per beat), each tick converted through the tempo in force.

    Args:
        path: the MIDI file.
        until: beats before this time (seconds), continuing the last tempo past the file's
            end; None: up to the file's last event.
    """
    tpb, changes, last_tick = tempo_map(path)
    starts = [0.0]  # seconds at each change
    for (t0, tempo), (t1, _) in zip(changes, changes[1:]):
        starts.append(starts[-1] + (t1 - t0) * tempo / (1e6 * tpb))
    out = []
    for j, ((t0, tempo), s0) in enumerate(zip(changes, starts)):
        t1 = changes[j + 1][0] if j + 1 < len(changes) else None
        k = -(-t0 // tpb)  # the first beat at or after this change
        while True:
            tick = k * tpb
            if t1 is not None and tick >= t1:
                break
            s = s0 + (tick - t0) * tempo / (1e6 * tpb)
            if until is not None and s >= until:
                return np.asarray(out, np.float64)
            if until is None and t1 is None and tick > last_tick:
                break
            out.append(s)
            k += 1
    return np.asarray(out, np.float64)


def lead_active(lead: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """The share of :data:`BLOCK_SECONDS` blocks of ``lead [C, N]`` whose RMS is above
    :data:`ACTIVE_DB` dBFS."""
    block = max(1, int(round(BLOCK_SECONDS * sr)))
    n = lead.shape[-1] // block
    if n == 0:
        return 0.0
    x = np.asarray(lead, np.float64).reshape(-1, lead.shape[-1])[:, : n * block]
    rms = np.sqrt((x.reshape(x.shape[0], n, block) ** 2).mean(axis=(0, 2)))
    return float(np.mean(rms > 10.0 ** (ACTIVE_DB / 20.0)))


def pick_excerpts(lead: np.ndarray, samples: int, count: int, seed, sr: int = SAMPLE_RATE) -> list[int]:
    """Start samples of up to ``count`` non-overlapping excerpts of ``samples`` samples, drawn
    (seeded by ``seed``, an int or a sequence of ints) from the consecutive slots of the song
    where the lead plays (:func:`lead_active` at least :data:`ACTIVE_FRACTION`); sorted."""
    slots = [k * samples for k in range(lead.shape[-1] // samples)]
    ok = [s for s in slots if lead_active(lead[:, s:s + samples], sr) >= ACTIVE_FRACTION]
    if not ok:
        return []
    rng = np.random.default_rng(seed)
    return sorted(int(s) for s in rng.choice(ok, size=min(count, len(ok)), replace=False))


# --------------------------------------------------------------------------- roughness


def roughness(frames: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of frame features ``[F, D]`` z-scored with ``mean``
    and ``std`` ``[D]`` (those of the real frames, :func:`feature_scale`), over frames and
    dimensions; NaN for fewer than two frames."""
    z = (np.asarray(frames, np.float64) - mean) / std
    return float(np.abs(np.diff(z, axis=0)).mean()) if len(z) > 1 else float("nan")


def roughness_blocks(frames: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict:
    """:func:`roughness` of each block of the frame features (:data:`BLOCK_NAMES`: the log-mel
    bands, the chroma, the onset strength); the whole is their mean weighted by their widths."""
    z = (np.asarray(frames, np.float64) - mean) / std
    if len(z) < 2:
        return {name: float("nan") for name in BLOCK_NAMES}
    d = np.abs(np.diff(z, axis=0))
    return {name: float(d[:, lo:hi].mean()) for name, (lo, hi) in zip(BLOCK_NAMES, FRAME_BLOCKS)}


def _corpus_split(path: Path) -> tuple[Path, str | None] | None:
    """The POPDB folder under a data folder (itself or its ``popdb/``) that holds a validation
    split, and the codec its latents were made with where recorded, or None. Never prepares
    an index (:func:`samuel.data.popdb.resolve` would, on a published folder)."""
    from ..data import store

    for folder in (path, path / "popdb"):
        if store.read_index(folder) is not None:
            return folder, "sao"  # an index of the published POPDB: SAO VAE latents
        if (folder / "val").is_dir():
            codec = None
            for prov in (folder / "provenance.json", folder.parent / "provenance.json"):
                if prov.is_file():
                    codec = (read_json(prov).get("codec") or {}).get("name")
                    break
            return folder, codec
    return None


def corpus_roughness(data_dir: str | os.PathLike, codec, mean: np.ndarray, std: np.ndarray,
                     seconds: float = CORPUS_SECONDS, progress: bool = False) -> dict | None:
    """The roughness of a training corpus's own accompaniment: chunks of its validation split
    (about ``seconds`` of audio in all, at least two chunks, evenly spaced over its rows),
    decoded by ``codec`` and scored like the real backings (z-scored with their ``mean`` and
    ``std``). On ``demo`` that is 48 chunks of 5.94 s; on ``paper``, 7 of 47.55 s.

    Returns ``{"clips", "features" (an interval), "blocks" (:func:`roughness_blocks`, means),
    "source", "codec"}``, or None with the reason logged: no validation split under
    ``data_dir`` (itself or its ``popdb/``), latents recorded as made with another codec than
    ``codec``, or any failure to read or decode them (the evaluation goes on without it).
    """
    from tqdm.auto import tqdm

    from ..data import store

    def skip(why: str) -> None:
        log.warning("real recordings: no corpus roughness from %s (%s)", data_dir, " ".join(why.split()))

    try:
        found = _corpus_split(Path(data_dir))
        if found is None:
            return skip("no validation split of a POPDB there")
        folder, made_with = found
        if made_with is not None and made_with != codec.name:
            return skip(f"its latents are {made_with!r} latents, the evaluation's codec is {codec.name!r}")
        _, accomp = store.open_split(folder, "val", normalise=False)
        n = len(accomp)
        if n == 0:
            return skip("its validation split holds no chunks")
        chunk_s = accomp.shape[-1] / float(codec.frames_per_second)
        count = min(n, max(2, int(round(float(seconds) / chunk_s))))
        rows = sorted({int(r) for r in np.linspace(0, n - 1, count)})
        sr = int(codec.sample_rate)
        frames = [frame_features(codec.decode(np.asarray(accomp[r], np.float32)), sr)
                  for r in tqdm(rows, desc="decode corpus", disable=not progress)]
    except Exception as e:  # noqa: BLE001 - a reference beside the results: never lose the run
        return skip(f"{type(e).__name__}: {e}")
    return {"clips": len(rows), "features": interval([roughness(f, mean, std) for f in frames]),
            "blocks": _block_means(frames, mean, std),
            "source": f"{folder}: validation accompaniment", "codec": made_with or "not recorded"}


def feature_scale(real_frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the pooled real frame features, each std floored at a
    tenth of the RMS std of its block of :data:`~.metrics.FRAME_BLOCKS`, so that a band
    (nearly) constant in the real audio cannot blow the z-scores up."""
    pooled = np.concatenate([np.asarray(f, np.float64) for f in real_frames])
    mean, std = pooled.mean(0), pooled.std(0)
    floor = np.empty_like(std)
    for lo, hi in FRAME_BLOCKS:
        floor[lo:hi] = max(0.1 * float(np.sqrt(np.mean(std[lo:hi] ** 2))), 1e-9)
    return mean, np.maximum(std, floor)


def roughness_summary(frames_of: Mapping, conditions: Sequence[str] = CONDITIONS,
                      scale: tuple | None = None) -> dict:
    """Roughness of each condition's clips against the true accompaniment's (``frames_of["real"]``),
    all z-scored by the true frames (``scale``, default :func:`feature_scale` of them), as both
    evaluations report it: ``{"features": condition (and "real") -> interval, "ratio": condition
    -> mean / real's, "blocks": condition (and "real") -> :func:`roughness_blocks` means}``."""
    mean, std = scale if scale is not None else feature_scale(frames_of["real"])
    who = (*conditions, "real")
    per = {c: [roughness(f, mean, std) for f in frames_of[c]] for c in who}
    features = {c: interval(v) for c, v in per.items()}
    base = features["real"]["mean"]
    return {"features": features,
            "ratio": {c: features[c]["mean"] / base if base else float("nan") for c in conditions},
            "blocks": {c: _block_means(frames_of[c], mean, std) for c in who}}


def _block_means(frames: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray) -> dict:
    """:func:`roughness_blocks` averaged over clips (NaN clips left out)."""
    per = [roughness_blocks(f, mean, std) for f in frames]
    return {b: float(np.nanmean([x[b] for x in per])) if per else float("nan") for b in BLOCK_NAMES}


def latent_roughness(latents: np.ndarray, window: int | None = None) -> float:
    """Mean absolute frame-to-frame change of normalised latents ``[C, T]`` (z-scores by the
    training statistics), leaving out the steps across the seams between independently
    sampled windows of ``window`` frames."""
    d = np.abs(np.diff(np.asarray(latents, np.float64), axis=1))  # [C, T-1]
    if window:
        keep = (np.arange(1, d.shape[1] + 1) % int(window)) != 0
        d = d[:, keep]
    return float(d.mean()) if d.size else float("nan")


# --------------------------------------------------------------------------- the run
# evaluate_real runs these stages in order over one _Run: _prepare (model, codec, statistics,
# window sizes), _cut (the excerpts, :func:`_excerpts`), _encode, _generate, _score (the three
# conditions), _chance (other_song), _extras (keys, roughness, APA), _results (written).


@dataclass
class _Run:
    """What the stages of :func:`evaluate_real` share: the settings, then each stage's output."""

    cfg: Any  # the model's configuration (the checkpoint's own when loaded)
    songs: list  # the song folders found
    model: Any
    codec: Any
    stats: Mapping
    device: Any
    checkpoint: dict  # results["checkpoint"]
    sr: int
    fps: float
    spf: int  # samples per latent frame
    window: int  # frames per sampled window
    n_win: int  # windows per excerpt
    frames: int  # frames per excerpt
    samples: int  # samples per excerpt
    steps: int
    schedule: Any
    per_song: int
    seed: int
    batch_size: int
    n_examples: int
    progress: bool
    t_start: float
    seconds: dict = field(default_factory=dict)  # stage -> seconds
    # _cut
    excerpts: list = field(default_factory=list)
    songs_info: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    song_ids: list = field(default_factory=list)
    perm: Any = None  # excerpt -> the excerpt whose lead "shuffled" gets
    # _encode: normalised latents [E, C, frames], and the raw backing latents
    lead_lat: Any = None
    back_raw: list = field(default_factory=list)
    back_lat: Any = None
    # _generate: condition -> normalised latents [E, C, frames]
    gen_lat: dict = field(default_factory=dict)
    # _score
    scores: Any = None
    refs: list = field(default_factory=list)  # the decoded true backings
    real_frames: list = field(default_factory=list)
    keys: dict = field(default_factory=dict)  # condition -> key name per excerpt
    examples: list = field(default_factory=list)  # conditioned audio of the example excerpts
    fit: dict = field(default_factory=dict)
    beats_baselines: dict = field(default_factory=dict)
    # _chance
    per_clip: dict = field(default_factory=dict)
    real_feats: Any = None
    beats_other: dict = field(default_factory=dict)
    # _extras
    truth_keys: list = field(default_factory=list)
    key_info: dict = field(default_factory=dict)
    rough_info: dict = field(default_factory=dict)
    corpus: Any = None  # the training corpus's data folder (its roughness), or None
    apa_info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.excerpts)


def _load_song(folder: Path, samples: int, sr: int):
    """``(lead, backing, beats, tempo changes)`` of one song cut to its shorter stem.

    Raises:
        ValueError: a stem or the tempo map cannot be read, or the song is shorter than one
            excerpt of ``samples`` samples (the message names the file, expected and found).
    """
    from .. import audio as audio_mod

    lead = audio_mod.load(folder / LEAD, sr)
    backing = audio_mod.load(folder / BACKING, sr)
    n = min(lead.shape[1], backing.shape[1])
    if n < samples:
        short = LEAD if lead.shape[1] <= backing.shape[1] else BACKING
        raise ValueError(f"{folder / short}: expected at least {samples / sr:.2f} s (one "
                         f"excerpt), found {n / sr:.2f} s")
    song_beats = beat_times(folder / TEMPO_MAP, until=n / sr)
    _, changes, _ = tempo_map(folder / TEMPO_MAP)
    return lead[:, :n], backing[:, :n], song_beats, changes


def _excerpts(songs: Sequence[Path], samples: int, per_song: int, seed: int, sr: int,
              progress: bool) -> tuple[list[dict], list[dict], list[dict]]:
    """Load each song and cut its excerpts: ``(excerpts, songs_info, skipped)``.

    A song that cannot be read, or is shorter than one excerpt, is skipped with a one-line
    warning and listed in ``skipped`` (``{"song", "folder", "reason"}``); the others draw the
    same excerpts as without it (song ``k`` of ``songs`` is seeded by ``[seed, k]``).
    """
    from tqdm.auto import tqdm

    excerpts, info, skipped = [], [], []
    for k, folder in enumerate(tqdm(songs, desc="real songs", disable=not progress)):
        try:
            lead, backing, song_beats, changes = _load_song(folder, samples, sr)
        except (ValueError, OSError) as e:
            reason = " ".join(str(e).split())
            log.warning("real recordings: skipped %s (%s)", folder.name, reason)
            skipped.append({"song": folder.name, "folder": str(folder), "reason": reason})
            continue
        n = lead.shape[1]
        starts = pick_excerpts(lead, samples, per_song, [seed, k], sr)
        info.append({"song": folder.name, "folder": str(folder), "seconds": round(n / sr, 3),
                     "tempo_bpm": sorted({round(6e7 / t, 2) for _, t in changes}),
                     "excerpt_offsets_s": [round(s / sr, 3) for s in starts]})
        for s in starts:
            off = s / sr
            back = backing[:, s:s + samples]
            tonic, mode, _ = estimate_key(back, sr)
            excerpts.append({
                "song": folder.name, "offset_s": off, "lead": lead[:, s:s + samples],
                "backing": back,
                "truth": {"tonic_pc": int(tonic), "mode": mode,
                          "beat_times": [float(b - off) for b in song_beats
                                         if 0.0 <= b - off < samples / sr],
                          "source": f"key estimated from {BACKING}, beats from {TEMPO_MAP}"}})
    return excerpts, info, skipped


def evaluate_real(cfg, checkpoint=None, folder=None, seconds: float | None = None,
                  per_song: int | None = None, seed: int = 0, steps: int | None = None,
                  batch_size: int = 8, codec=None, device: str | None = None,
                  stats: Mapping | None = None, out_dir=None, n_examples: int = 2,
                  progress: bool = True, corpus="auto") -> dict:
    """Evaluate a model on the real recordings and write ``results.json`` and examples.

    A song that cannot be read or is shorter than one excerpt is skipped with a warning and
    listed in ``results["skipped"]``.

    Args:
        cfg: the configuration (a checkpoint's own replaces it when loaded).
        checkpoint: a checkpoint folder, a loaded checkpoint, a ``torch.nn.Module`` (then
            ``stats`` is needed), or None for ``runs/<profile>/checkpoint``.
        folder: the songs (default ``$SAMUEL_FOF``, then :data:`FOF_FOLDERS`).
        seconds: excerpt length, rounded to whole windows of ``data.chunk_frames`` (at least one;
            default ``cfg.eval.real_seconds``).
        per_song: excerpts per song, fewer where the lead plays less (default
            ``cfg.eval.real_per_song``).
        seed: excerpt choice, noise (batch ``k`` of windows: ``seed + k``, for all conditions)
            and the pairings of the shuffled and chance conditions.
        steps: fast-sampler steps (default ``cfg.diffusion.fast_steps``).
        batch_size: windows sampled at once.
        codec: a codec object or name (default the configuration's).
        device: where the model and codec run (default ``cfg.device``).
        stats: the latents' normalisation statistics (default the checkpoint's).
        out_dir: where results go (default ``runs/<profile>/evaluation/real``).
        n_examples: excerpts of distinct songs written to ``examples/`` to listen to.
        corpus: the training corpus's data folder, whose validation accompaniment is scored for
            roughness beside the real backings (:func:`corpus_roughness`); ``"auto"``:
            ``runs/<profile>/data`` where it exists; None: not scored.

    Returns:
        The results written to ``results.json`` (:func:`format_real` is their text,
        :func:`real_table` and :func:`table_rows` their table); without the songs
        ``{"available": False, "reason": ...}`` and nothing written.

    Raises:
        ValueError: a model without statistics, or excerpts of fewer than two songs.
    """
    songs = find_songs(folder)
    if not songs:
        return {"available": False, "reason": unavailable_reason()}
    ev = getattr(cfg, "eval", None)
    seconds = float(seconds if seconds is not None else getattr(ev, "real_seconds", EXCERPT_SECONDS))
    per_song = int(per_song if per_song is not None else getattr(ev, "real_per_song", PER_SONG))
    run = _prepare(cfg, songs, checkpoint, seconds, per_song, seed, steps, batch_size, codec,
                   device, stats, n_examples, progress)
    if corpus == "auto":
        from ..paths import run_dir

        corpus = run_dir(run.cfg.profile) / "data"
        corpus = corpus if corpus.is_dir() else None
    run.corpus = corpus
    for stage in (_cut, _encode, _generate, _score, _chance, _extras):
        stage(run)
    return _results(run, out_dir)


def _prepare(cfg, songs, checkpoint, seconds, per_song, seed, steps, batch_size, codec, device,
             stats, n_examples, progress) -> _Run:
    """The model, codec, statistics and window sizes (:func:`evaluate_real`'s arguments)."""
    from .. import codecs as codecs_mod
    from ..checkpoint import resolve as resolve_checkpoint
    from ..devices import resolve as resolve_device
    from ..diffusion import Schedule

    t_start = time.perf_counter()
    device = resolve_device(device or cfg.device)
    asked = cfg
    loaded = resolve_checkpoint(checkpoint, device=device, profile=cfg.profile, cfg=cfg)
    model, cfg = loaded.model, loaded.cfg
    folder_ck = getattr(loaded, "folder", None)
    ck_info = {**(getattr(loaded, "info", None) or {}),
               **({"folder": str(folder_ck)} if folder_ck else {})}
    stats = stats or loaded.stats or None
    if not stats:
        raise ValueError("evaluate_real: the model comes without normalisation statistics: "
                         "pass a checkpoint folder, or stats= (a stats.json's contents)")
    if codec is None or isinstance(codec, str):
        codec = codecs_mod.from_config(cfg, name=codec, vae=asked.data.vae, device=device,
                                       half=asked.data.vae_half)
    fps = float(codec.frames_per_second)
    window = int(cfg.data.chunk_frames)
    n_win = max(1, int(round(seconds * fps / window)))
    frames = n_win * window
    spf = int(codec.samples_per_frame)
    return _Run(cfg=cfg, songs=list(songs), model=model, codec=codec, stats=stats, device=device,
                checkpoint=ck_info, sr=int(codec.sample_rate), fps=fps, spf=spf, window=window,
                n_win=n_win, frames=frames, samples=frames * spf,
                steps=int(steps or cfg.diffusion.fast_steps), schedule=Schedule.from_config(cfg),
                per_song=per_song, seed=seed, batch_size=batch_size, n_examples=n_examples,
                progress=progress, t_start=t_start)


def _cut(run: _Run) -> None:
    """The excerpts (:func:`_excerpts`) and the pairing of the shuffled and chance conditions.

    Raises:
        ValueError: excerpts of fewer than two songs.
    """
    run.excerpts, run.songs_info, run.skipped = _excerpts(run.songs, run.samples, run.per_song,
                                                          run.seed, run.sr, run.progress)
    run.song_ids = [e["song"] for e in run.excerpts]
    if len(set(run.song_ids)) < 2:
        skipped = "".join(f"; skipped {s['song']}: {s['reason']}" for s in run.skipped)
        raise ValueError(f"evaluate_real: expected excerpts of at least two songs, found "
                         f"{len(set(run.song_ids))} in {len(run.excerpts)} excerpt(s) "
                         f"({', '.join(str(s) for s in run.songs)}){skipped}")
    run.perm = derangement(run.song_ids, seed=run.seed)


def _encode(run: _Run) -> None:
    """The leads and the backings as latents, normalised by the training statistics."""
    from tqdm.auto import tqdm

    from ..data import store

    codec, sr, frames, stats = run.codec, run.sr, run.frames, run.stats
    t0 = time.perf_counter()
    run.lead_lat = np.stack([store.normalise(codec.encode(e["lead"], sr)[:, :frames], stats, "vocal")
                             for e in tqdm(run.excerpts, desc="encode leads", disable=not run.progress)])
    run.back_raw = [codec.encode(e["backing"], sr)[:, :frames]
                    for e in tqdm(run.excerpts, desc="encode backings", disable=not run.progress)]
    run.back_lat = np.stack([store.normalise(b, stats, "accomp") for b in run.back_raw])
    run.seconds["encode"] = time.perf_counter() - t0


def _generate(run: _Run) -> None:
    """The three conditions' latents, each excerpt's windows sampled independently (batch ``b``
    of windows with noise seed ``seed + b``, the same for every condition)."""
    import torch
    from tqdm.auto import tqdm

    from .context import sample_latents, sync

    C, n_win, window, frames = run.lead_lat.shape[1], run.n_win, run.window, run.frames

    def windows(x):  # [E, C, n_win * window] -> [E * n_win, C, window]; excerpt e, window w -> row e * n_win + w
        return np.ascontiguousarray(
            x.reshape(len(x), C, n_win, window).transpose(0, 2, 1, 3).reshape(-1, C, window))

    def joined(x):  # the inverse
        return x.reshape(-1, n_win, C, window).transpose(0, 2, 1, 3).reshape(-1, C, frames)

    given = {"conditioned": windows(run.lead_lat), "shuffled": windows(run.lead_lat[run.perm]),
             "null": None}
    rows = run.n * n_win
    out = {c: np.empty((rows, C, window), np.float32) for c in CONDITIONS}
    batches = [list(range(s, min(s + run.batch_size, rows))) for s in range(0, rows, run.batch_size)]
    t0 = time.perf_counter()
    with torch.no_grad():
        for b, idx in enumerate(tqdm(batches, desc="generate", disable=not run.progress)):
            for c in CONDITIONS:
                v = None if given[c] is None else given[c][idx]
                out[c][idx] = sample_latents(run.model, run.schedule, (len(idx), C, window), v,
                                             run.cfg, "fast", run.steps, run.seed + b, run.device)
    sync(run.device)
    run.seconds["generate"] = time.perf_counter() - t0
    run.gen_lat = {c: joined(out[c]) for c in CONDITIONS}


def _score(run: _Run) -> None:
    """Decode the true backings and the three conditions' outputs and score them: the fit
    metrics (:func:`~.conditions.fit_summary`), the frame features, the keys, the examples."""
    from tqdm.auto import tqdm

    from ..data import store
    from .conditions import Scores, fit_summary

    codec, sr, n = run.codec, run.sr, run.n
    scores = run.scores = Scores()
    t0 = time.perf_counter()
    run.refs = refs = [codec.decode(b) for b in tqdm(run.back_raw, desc="decode backings",
                                                      disable=not run.progress)]
    run.real_frames = [frame_features(r, sr) for r in refs]
    run.keys = {c: [] for c in REAL_CONDITIONS}
    for e in tqdm(range(n), desc="score", disable=not run.progress):
        ref, truth = refs[e], run.excerpts[e]["truth"]
        real = scores.per_clip["real"]
        real["key"].append(key_agreement(ref, truth["tonic_pc"], truth["mode"], sr))
        real["beat"].append(beat_alignment(ref, truth["beat_times"], sr))
        scores.frames_of["real"].append(run.real_frames[e])
        for c in CONDITIONS:
            gen = codec.decode(store.denormalise(run.gen_lat[c][e], run.stats, "accomp"))
            if c == "conditioned":  # kept for the examples only
                run.examples.append(gen if e < run.n_examples * run.per_song else None)
            for k, v in clip_metrics(gen, ref, truth, sr).items():
                scores.per_clip[c][k].append(v)
            scores.frames_of[c].append(frame_features(gen, sr))
            run.keys[c].append(key_name(*estimate_key(gen, sr)[:2]))
        run.keys[OTHER].append(key_name(*estimate_key(refs[run.perm[e]], sr)[:2]))
    run.seconds["decode_and_score"] = time.perf_counter() - t0
    run.fit, run.beats_baselines = fit_summary(
        SimpleNamespace(song_ids=run.song_ids, seed=run.seed), scores)


def _chance(run: _Run) -> None:
    """``other_song``: another song's real backing (that of the excerpt whose lead
    "shuffled" gets) scored like the outputs, and whether the conditioned model beats it."""
    refs, real_frames, perm, fit = run.refs, run.real_frames, run.perm, run.fit
    other = {k: [] for k in CLIP_METRICS}
    for e in range(run.n):
        for k, v in clip_metrics(refs[perm[e]], refs[e], run.excerpts[e]["truth"], run.sr).items():
            other[k].append(v)
    z = frame_standardiser(real_frames)
    other["frechet"] = [paired_frechet(real_frames[perm[e]], real_frames[e], z) for e in range(run.n)]
    fit[OTHER] = {k: interval(other[k]) for k in METRICS}
    run.real_feats = np.stack([clip_features_from_frames(f) for f in real_frames])  # (no fad: real)
    run.beats_other = {k: beats(fit["conditioned"][k], fit[OTHER][k], HIGHER_IS_BETTER[k])
                       for k in METRICS}
    run.per_clip = {**run.scores.per_clip, OTHER: other}


def _extras(run: _Run) -> None:
    """The distinct keys, the roughness against real, and the APA."""
    from .apa import apa_conditions

    frames_of = run.scores.frames_of
    run.truth_keys = [key_name(e["truth"]["tonic_pc"], e["truth"]["mode"]) for e in run.excerpts]
    run.key_info = {c: {"distinct": len(set(run.keys[c])), "keys": run.keys[c]} for c in REAL_CONDITIONS}
    run.key_info["real"] = {"distinct": len(set(run.truth_keys)), "keys": run.truth_keys}
    mean, std = feature_scale(run.real_frames)
    features = roughness_summary(frames_of, scale=(mean, std))  # frames_of["real"]: the backings
    lat_rough = {c: [latent_roughness(x, run.window) for x in run.gen_lat[c]] for c in CONDITIONS}
    lat_rough["real"] = [latent_roughness(x, run.window) for x in run.back_lat]
    info = {"features": features["features"],
            "latents": {c: interval(v) for c, v in lat_rough.items()},
            "target": ROUGHNESS_TARGET}
    for kind in ("features", "latents"):
        base = info[kind]["real"]["mean"]
        ratio = {c: info[kind][c]["mean"] / base if base else float("nan") for c in CONDITIONS}
        info[f"{kind}_ratio"] = ratio
        info[f"{kind}_within_target"] = {c: bool(r <= ROUGHNESS_TARGET) for c, r in ratio.items()}
    info["blocks"] = {c: features["blocks"][c] for c in ("conditioned", "real")}
    corpus = (corpus_roughness(run.corpus, run.codec, mean, std, progress=run.progress)
              if run.corpus is not None else None)
    if corpus is not None:
        base = info["features"]["real"]["mean"]
        corpus["ratio"] = corpus["features"]["mean"] / base if base else float("nan")
        info["corpus"] = corpus
    run.rough_info = info
    vocal_feats = np.stack([clip_features(e["lead"], run.sr) for e in run.excerpts])
    cand = {c: np.stack([clip_features_from_frames(f) for f in frames_of[c]]) for c in CONDITIONS}
    cand[OTHER] = run.real_feats[run.perm]
    # R' re-paired with another seed than the shuffled baseline's pairing (apa_conditions)
    run.apa_info = {**apa_conditions(vocal_feats, run.real_feats, cand, groups=run.song_ids,
                                     seed=run.seed + 1),
                    "embedding": "clip_features of lead and accompaniment (offline, 2 x 90)"}


def _results(run: _Run, out_dir) -> dict:
    """The results, written to ``<out_dir>/results.json`` with the examples beside them."""
    from .context import fast_name

    cfg, perm, song_ids = run.cfg, run.perm, run.song_ids
    results = {
        "available": True, "profile": cfg.profile, "device": str(run.device), "seed": int(run.seed),
        "codec": run.codec.name, "source": str(run.songs[0].parent), "package": PACKAGE,
        "songs": run.songs_info, "skipped": run.skipped, "n_excerpts": run.n,
        "n_songs": len(set(song_ids)), "excerpt_seconds": run.frames / run.fps,
        "windows_per_excerpt": run.n_win, "window_seconds": run.window / run.fps,
        "sampler": {"name": fast_name(cfg), "steps": run.steps,
                    "cfg_scale": float(cfg.diffusion.cfg_scale)},
        "checkpoint": run.checkpoint, "conditions": list(REAL_CONDITIONS),
        "fit": run.fit, "beats_baselines": run.beats_baselines,
        "beats_baselines_all": all(run.beats_baselines.values()),
        "beats_other_song": run.beats_other, "keys": run.key_info, "roughness": run.rough_info,
        "apa": run.apa_info, "per_clip": run.per_clip,
        "excerpts": [{"song": e["song"], "offset_seconds": round(e["offset_s"], 3),
                      "key": run.truth_keys[i], "beats": len(e["truth"]["beat_times"]),
                      "lead_active": round(lead_active(e["lead"], run.sr), 3),
                      "shuffled_lead_from": song_ids[perm[i]]} for i, e in enumerate(run.excerpts)],
        "truth": f"key estimated from each excerpt's real backing ({BACKING}, before the codec), "
                 f"beats from the song's tempo map ({TEMPO_MAP}); scored against the decoded "
                 "backing, as the synthetic evaluation scores against the decoded accompaniment",
        "seconds": dict(run.seconds),
    }
    if out_dir is None:
        from ..paths import run_dir

        out_dir = run_dir(cfg.profile) / "evaluation" / "real"
    out_dir = Path(out_dir)
    results["seconds"]["total"] = time.perf_counter() - run.t_start
    results = to_jsonable(results)
    write_json(out_dir / "results.json", results)
    _write_examples(out_dir / "examples", run.excerpts, run.examples, run.n_examples, run.sr)
    return results


def _write_examples(folder: Path, excerpts: list, generated: list, n_examples: int,
                    sr: int) -> None:
    """``examples.json`` and, per example excerpt (the first of each of ``n_examples`` songs),
    the lead, the generated accompaniment, the real backing and the lead with each."""
    from .. import audio as audio_mod

    listing, seen = [], set()
    for e, ex in enumerate(excerpts):
        if len(listing) >= n_examples or ex["song"] in seen or generated[e] is None:
            continue
        seen.add(ex["song"])
        stem = f"{len(listing)}_{ex['song']}"
        gen = generated[e]
        parts = {"lead (stands for the vocal)": ("lead", ex["lead"]),
                 "generated accompaniment": ("generated", gen),
                 "real backing": ("backing", ex["backing"]),
                 "lead + generated": ("mix_generated", _mix(ex["lead"], gen)),
                 "lead + real backing": ("mix_backing", _mix(ex["lead"], ex["backing"]))}
        files = {}
        for label, (name, x) in parts.items():
            audio_mod.save(folder / f"{stem}_{name}.wav", x, sr)
            files[label] = f"{stem}_{name}.wav"
        listing.append({"title": f"{ex['song']} from {ex['offset_s']:.1f} s", "files": files})
    if listing:
        write_json(folder / "examples.json", listing)


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = min(a.shape[1], b.shape[1])
    mix = a[:, :n] + b[:, :n]
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    return mix * (0.99 / peak) if peak > 0.99 else mix


def real_examples(out_dir: str | os.PathLike) -> list[tuple[str, dict]]:
    """The written examples as ``[(title, {label: audio [2, N]}), ...]`` (for players:
    ``show.show_players(parts, seconds=...)``); ``[]`` when there are none."""
    from .. import audio as audio_mod

    listing_path = Path(out_dir) / "examples" / "examples.json"
    if not listing_path.exists():
        return []
    return [(item["title"], {label: audio_mod.load(listing_path.parent / name)
                             for label, name in item["files"].items()})
            for item in read_json(listing_path)]


# --------------------------------------------------------------------------- text


def _cell(v: Mapping | None) -> str:
    """``mean [lo, hi]`` of a results entry (:func:`samuel.evaluate.report.interval`, the
    book's tables' format), a NaN read as absent."""
    def finite(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    return interval_text(v and {k: finite(v.get(k)) for k in ("mean", "lo", "hi")})


def table_rows(results: Mapping) -> list[dict]:
    """The table as rows ``{"metric": ..., <condition>: "mean [lo, hi]", ...}`` (conditions
    :data:`REAL_CONDITIONS` and ``real``; — where a condition has no value): the fit
    metrics, ``fad``, the two roughness measures, the distinct keys, the APA and its distance
    to the true pairs in units of the re-paired set's (an APA near 1/2 far from both is
    unrealistic, not half adherent) (e.g. ``pandas.DataFrame(table_rows(results))``, or
    :func:`real_table`). ``[]`` when the songs were not available."""
    if not results.get("available"):
        return []
    cols = (*REAL_CONDITIONS, "real")
    fit, rough, apa = results["fit"], results["roughness"], results["apa"]
    rows = []
    for m in (*METRICS, "fad"):
        rows.append({"metric": m, **{c: _cell(fit.get(c, {}).get(m)) for c in cols}})
    for kind in ("features", "latents"):
        rows.append({"metric": f"roughness ({kind})",
                     **{c: _cell(rough[kind].get(c)) for c in cols}})
    rows.append({"metric": "distinct keys",
                 **{c: f"{results['keys'][c]['distinct']} of {len(results['keys'][c]['keys'])}"
                    for c in cols}})
    rows.append({"metric": "APA", **{c: (f"{apa[c]['apa']:.3f}"
                                         if c in apa and apa[c]["apa"] is not None
                                         else ("1 (by definition)" if c == "real" else EMPTY))
                                     for c in cols}})
    rows.append({"metric": "APA: FD(C,R)/FD(R,R')",
                 **{c: (f"{apa[c]['fd_c_r'] / apa[c]['fd_r_rr']:.2f}"
                        if c in apa and apa[c].get("fd_r_rr") else
                        ("0 (by definition)" if c == "real" else EMPTY)) for c in cols}})
    return rows


def _roughness_notes(rough: Mapping) -> list:
    """The table's notes on roughness: the training corpus's own, and where it lies by block."""
    def blocks(d):  # in BLOCK_NAMES' order (results.json sorts its keys); NaN is null there
        return ", ".join(f"{b} {_num(d[b], 3)}" for b in BLOCK_NAMES if b in d)

    notes = []
    corpus = rough.get("corpus")
    if corpus:
        notes.append(f"roughness (features) of the training corpus's own accompaniment "
                     f"({corpus['clips']} validation clips, decoded by the same codec): "
                     f"{_cell(corpus['features'])}, {_num(corpus['ratio'])}x real")
    if rough.get("blocks"):
        who = [f"{c} {blocks(rough['blocks'][c])}" for c in ("conditioned", "real") if c in rough["blocks"]]
        who += [f"training corpus {blocks(corpus['blocks'])}"] if corpus else []
        notes.append("roughness (features) by block: " + "; ".join(who))
    return notes


def real_table(results: Mapping) -> Table:
    """The real-recordings table (:func:`table_rows`) as a :class:`~.report.Table`: HTML in a
    notebook, aligned text when printed (:func:`format_real`); the caption says what was
    measured on what, the notes what the columns mean and which songs were skipped."""
    if not results.get("available"):
        return Table(["real recordings"], [[str(results.get("reason") or unavailable_reason())]])
    s, cols = results["sampler"], (*REAL_CONDITIONS, "real")
    caption = (f"Real recordings ({results['package']}): {results['n_excerpts']} excerpts of "
               f"{results['n_songs']} songs, {results['excerpt_seconds']:.1f} s each "
               f"({results['windows_per_excerpt']} windows of {results['window_seconds']:.2f} s); "
               f"profile {results['profile']!r}, sampler {s['name']} ({s['steps']} steps, cfg "
               f"{s['cfg_scale']:g}); mean [95 % interval] over excerpts")
    notes = ["(other_song: the real backing of another song's excerpt, the one whose lead "
             "'shuffled' gets; real: the decoded true backing, its frechet to another excerpt "
             "of the same song)",
             f"ground truth: {results['truth']}",
             *_roughness_notes(results["roughness"]),
             *(f"skipped {k['song']}: {k['reason']}" for k in results.get("skipped", ()))]
    return Table(["metric", *cols], [[r["metric"], *(r[c] for c in cols)]
                                     for r in table_rows(results)],
                 caption=caption, notes=notes)


def format_real(results: Mapping) -> str:
    """The text ``samuel evaluate --real`` prints: the table (:func:`real_table`), then the
    verdicts; one line when the songs were not available."""
    if not results.get("available"):
        return str(results.get("reason") or unavailable_reason())
    lines = [str(real_table(results)), ""]
    for m in METRICS:
        lines.append(f"conditioned beats shuffled and null on {m}: {results['beats_baselines'][m]}; "
                     f"beats another song's backing: {results['beats_other_song'][m]}")
    rough = results["roughness"]
    for kind in ("features", "latents"):
        ratios = ", ".join(f"{c} {_num(rough[f'{kind}_ratio'][c])}x" for c in CONDITIONS)
        lines.append(f"roughness ({kind}) against real: {ratios}; conditioned within "
                     f"{rough['target']:g}x: {rough[f'{kind}_within_target']['conditioned']}")
    corpus = rough.get("corpus")
    if corpus:
        ratio, gen = corpus.get("ratio"), rough["features_ratio"].get("conditioned")
        excess = gen / ratio if ratio and gen is not None else None
        lines.append(f"roughness (features) of the training corpus's own accompaniment: "
                     f"{_num(ratio)}x real (the generated's excess over it: {_num(excess)}x)")
    k = results["keys"]
    lines.append(f"distinct keys: conditioned {k['conditioned']['distinct']}, real backings "
                 f"{k['real']['distinct']} (of {len(k['real']['keys'])} excerpts)")
    return "\n".join(lines)
