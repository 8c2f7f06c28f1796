"""The whole data stage as one resumable command: ``samuel data build`` (design §2, paper §III-C).

    songs --(render | download -> separate)--> stems --encode--> latents/<id>.{vocal,accomp}.npy
          --split by song, chunk--> popdb/{train,val,test}/latent_{vocal,accomp}.npy + chunks.json
          --train statistics--> popdb/stats.json;  provenance.json

Layout of ``out`` (default ``runs/<profile>/data``)::

    manifest.json           each song's state, paths, timings, failures (see manifest.py)
    songs/<id>/             offline corpus: vocals.wav, accomp.wav, mix.wav, truth.json
    audio/<id>.wav          downloaded songs (song-list source)
    stems/<id>/             separated vocals.wav, accomp.wav (song-list source)
    latents/<id>.vocal.npy  codec latents [64, T] per song and stem
    popdb/<split>/          the POPDB arrays of one split, and chunks.json
    popdb/stats.json        per-channel z-score statistics of the training split
    popdb/splits.json       which songs went where
    provenance.json         profile, codec, seed, package version, counts, seconds per stage

Every file is written atomically and the manifest after every song, so the command can be
killed at any moment and run again: finished songs are skipped, a song whose files have gone
missing or were damaged is redone from the last good stage, and the POPDB arrays are rebuilt
deterministically from the per-song latents. A song that fails is recorded with its stage and
reason and the run goes on; ``retry_failed=True`` tries failed songs again. A codec or
separator that cannot be loaded stops the run (no song is to blame). One build per folder at a
time (a lock file, released even when the process is killed).

The code reads in the order of the stages, one function each, over a shared :class:`_Build`
(config, folder, manifest, codec, progress, timings and the stage functions tests inject):
:func:`_list_songs` (song list or corpus), :func:`_resume`, :func:`_download_stage`,
:func:`_separate_stage`, :func:`_encode_stage`, :func:`_assemble` (split and chunk),
:func:`_write_popdb` (the POPDB folders and train statistics) and :func:`_record` (summary and
``provenance.json``).

Book: notebook 01, "Building the data of this profile"; design §2.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import __version__
from ..io import read_json, save_npy, write_json
from ..paths import run_dir
from . import store
from .manifest import STATES, Manifest

STEMS = ("vocal", "accomp")


def _rel(path: Path, root: Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _abs(path: str, root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def _progress(iterable: Sequence, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="song", disable=not enabled, leave=enabled)


# --------------------------------------------------------------------------- song sources


def read_songs(csv_path: str | os.PathLike) -> list[dict]:
    """Read a song list CSV into ``dict(song_id, title, artist, path, url, song)`` rows.

    Songs and their ids come from :func:`samuel.data.songlist.read_songlist`. Two optional
    columns are ours: ``path``, a local audio file taken as already downloaded (relative to the
    CSV's folder), and ``url``, a download URL instead of a search.
    """
    from .songlist import ARTIST_COLUMNS, TITLE_COLUMNS, Song, read_songlist

    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise FileNotFoundError(f"{csv_path}: song list not found")
    songs = read_songlist(csv_path)
    extra: dict[str, dict] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        for r in csv.DictReader(f):
            r = {(k or "").strip().lower(): (v or "").strip() for k, v in r.items()}
            title = next((r[c] for c in TITLE_COLUMNS if c in r), "")
            artist = next((r[c] for c in ARTIST_COLUMNS if c in r), "")
            if title:
                extra.setdefault(Song.make(title, artist).song_id, r)
    rows = []
    for song in songs:
        r = extra.get(song.song_id, {})
        path = r.get("path") or ""
        rows.append({"song_id": song.song_id, "title": song.title, "artist": song.artist,
                     "path": str(_abs(path, csv_path.parent)) if path else "",
                     "url": r.get("url") or None, "song": song})
    return rows


# --------------------------------------------------------------------------- the shared context


@dataclasses.dataclass(frozen=True)
class _Build:
    """What every stage of one build shares.

    Frozen: a stage reads it and never rebinds a field; the codec is set once, by
    :func:`_with_codec`, through :func:`dataclasses.replace`. What changes as the run goes on
    lives in two containers: ``manifest`` (each song's state, on disk after every change) and
    ``seconds`` (seconds per stage).

    Attributes:
        cfg: the :class:`samuel.config.Config` being built.
        out: the output folder.
        manifest: the folder's :class:`~samuel.data.manifest.Manifest`.
        progress: show tqdm bars.
        seconds: seconds per stage, in the order the stages ran.
        render_corpus: replaces :func:`samuel.data.synth.render_corpus`, or None.
        download: replaces :func:`samuel.data.download.download`, or None.
        separate: ``(audio [2, N], sr) -> dict(vocals, accomp)`` instead of Demucs, or None.
        separator_repo: a local folder of Demucs weights, or None.
        allow_file_urls: let ``file://`` URLs through to yt-dlp.
        on_song: called as ``on_song(stage, song_id)`` after each song of each stage, or None.
        codec: the codec object (given, or loaded by :func:`_with_codec`), or None.
        codec_info: ``name``, ``frames_per_second``, ``latent_channels`` of the codec the
            latents are made with (set by :func:`_with_codec`).
    """

    cfg: Any
    out: Path
    manifest: Manifest
    progress: bool = True
    seconds: dict = dataclasses.field(default_factory=dict)
    render_corpus: Callable | None = None
    download: Callable | None = None
    separate: Callable[[np.ndarray, int], dict] | None = None
    separator_repo: str | os.PathLike | None = None
    allow_file_urls: bool = False
    on_song: Callable[[str, str], None] | None = None
    codec: Any = None
    codec_info: dict | None = None

    def todo(self, ids: Sequence[str], state: str) -> list[str]:
        """The songs of ``ids`` (in order) that are in ``state`` now."""
        return [s for s in ids if self.manifest.state(s) == state]


@contextlib.contextmanager
def _timed(ctx: _Build, name: str):
    """Add the seconds spent in the ``with`` block to ``ctx.seconds[name]``."""
    start = time.perf_counter()
    yield
    ctx.seconds[name] = ctx.seconds.get(name, 0.0) + time.perf_counter() - start


def _run_stage(ctx: _Build, name: str, ids: Sequence[str], work: Callable[[str], None]) -> None:
    """Run ``work(song_id)`` for each song; a failure is recorded and the stage goes on."""
    start = time.perf_counter()
    done = failed = 0
    bar = _progress(ids, name, ctx.progress)
    for song_id in bar:
        try:
            work(song_id)
            done += 1
        except Exception as e:
            ctx.manifest.fail(song_id, name, f"{type(e).__name__}: {e}")
            failed += 1
        bar.set_postfix(done=done, failed=failed)
        if ctx.on_song is not None:
            ctx.on_song(name, song_id)
    bar.close()
    ctx.seconds[name] = time.perf_counter() - start


def _load_audio(path: Path, cfg) -> np.ndarray:
    from .. import audio

    return audio.load(path, sr=cfg.data.sample_rate, channels=2,
                      max_seconds=cfg.data.max_song_seconds)


def _save_audio(path: Path, samples: np.ndarray, sr: int) -> None:
    from .. import audio

    audio.save(path, samples, sr, subtype="FLOAT")  # stems may peak above 1: keep them


# --------------------------------------------------------------------------- build


def build(cfg, out_dir: str | os.PathLike | None = None, songlist: str | os.PathLike | None = None,
          progress: bool = True, codec=None, limit: int | None = None, *,
          render_corpus: Callable | None = None, download: Callable | None = None,
          separate: Callable[[np.ndarray, int], dict] | None = None,
          separator_repo: str | os.PathLike | None = None, allow_file_urls: bool = False,
          retry_failed: bool = False,
          on_song: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Build the training data of ``cfg`` (design §2): songs -> stems -> latents -> POPDB.

    Args:
        cfg: a :class:`samuel.config.Config` (uses ``cfg.data`` and ``cfg.seed``).
        out_dir: where everything goes; default ``runs/<profile>/data``.
        songlist: a song list CSV (title, artist; optional ``path`` / ``url`` columns). Without
            it, the offline corpus of ``cfg.data.corpus_songs`` synthetic songs is used.
        progress: show tqdm bars (done / failed counts in the postfix).
        codec: a codec object; default ``samuel.codecs.from_config(cfg)`` when needed (the
            codec of ``cfg.data.codec`` on ``cfg.device``, the SAO VAE from ``cfg.data.vae``).
        limit: process only the first ``limit`` songs.
        render_corpus: replaces :func:`samuel.data.synth.render_corpus` (tests).
        download: replaces :func:`samuel.data.download.download` (same signature).
        separate: ``(audio [2, N], sr) -> dict(vocals, accomp)``; replaces Demucs.
        separator_repo: a local folder of Demucs weights (offline machines).
        allow_file_urls: let ``file://`` URLs of the CSV's ``url`` column through to yt-dlp.
        retry_failed: try songs recorded as failed again.
        on_song: called as ``on_song(stage, song_id)`` after each song of each stage.

    Returns:
        A summary: ``counts`` per state, ``chunks`` per split, ``songs`` per split,
        ``seconds`` per stage, ``out`` folder. The same facts go to ``provenance.json``.
    """
    out = Path(out_dir) if out_dir is not None else run_dir(cfg.profile) / "data"
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        _remove_stray_temps(out)
        ctx = _Build(cfg=cfg, out=out, manifest=Manifest(out / "manifest.json"),
                     progress=progress, render_corpus=render_corpus, download=download,
                     separate=separate, separator_repo=separator_repo,
                     allow_file_urls=allow_file_urls, on_song=on_song, codec=codec)
        return _build(ctx, songlist, limit, retry_failed)


@contextlib.contextmanager
def _exclusive(out: Path):
    """One build per folder at a time; the lock dies with its process (even on SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / ".build.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"{out}: another data build is running in this folder") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_stray_temps(out: Path) -> None:
    """Delete the temp files of atomic writes that a killed run left behind."""
    for folder in (out, out / "latents", out / "stems", out / "audio", out / "popdb",
                   *(out / "popdb" / s for s in store.SPLITS)):
        for tmp in folder.glob(".*.tmp*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)


def _build(ctx: _Build, songlist, limit: int | None, retry_failed: bool) -> dict[str, Any]:
    """The stages in order; each skips what the manifest says is done."""
    start = time.perf_counter()
    source, ids, rows = _list_songs(ctx, songlist, limit)
    ids = _resume(ctx, source, ids, retry_failed)
    if source == "songlist":
        _download_stage(ctx, ids, rows)
        _separate_stage(ctx, ids)
    ctx = _with_codec(ctx, ids)
    _encode_stage(ctx, ids)
    assembled = _assemble(ctx, ids)
    ctx.seconds["total"] = time.perf_counter() - start
    return _record(ctx, source, songlist, ids, assembled)


# --------------------------------------------------------------------------- 1. songs


def _list_songs(ctx: _Build, songlist, limit: int | None) -> tuple[str, list[str], dict]:
    """The songs of this build, entered in the manifest: the offline corpus or a song list.

    Returns:
        ``(source, ids, rows)``: ``"corpus"`` or ``"songlist"``, the song ids in order, and
        the song list's rows by id (:func:`read_songs`; empty for the corpus).
    """
    cfg = ctx.cfg
    if songlist is None and cfg.data.corpus_songs > 0:
        n = cfg.data.corpus_songs if limit is None else min(cfg.data.corpus_songs, limit)
        with _timed(ctx, "render"):
            ids = _render_corpus(ctx, n)
        return "corpus", ids, {}
    if songlist is None:
        raise ValueError(f"profile {cfg.profile!r}: no song list given and "
                         "cfg.data.corpus_songs is 0; pass songlist=CSV")
    rows = {r["song_id"]: r for r in read_songs(songlist)[:limit]}
    for song_id, r in rows.items():
        if song_id not in ctx.manifest:
            ctx.manifest.set(song_id, "listed", source="songlist", title=r["title"],
                             artist=r["artist"])
    return "songlist", list(rows), rows


def _render_corpus(ctx: _Build, n_songs: int) -> list[str]:
    """Render the offline corpus (songs already complete on disk are skipped by the renderer);
    its stems are separate already, so its songs are 'separated' straight away."""
    render = ctx.render_corpus
    if render is None:
        from .synth import render_corpus as render
    # the keyword only when on: a custom renderer (tests) need not know it
    extra = {"variety": True} if ctx.cfg.data.corpus_variety else {}
    records = render(ctx.out / "songs", n_songs, float(ctx.cfg.data.corpus_song_seconds),
                     seed=ctx.cfg.seed, progress=ctx.progress, **extra)
    ids = []
    for r in records:
        song_id = r["song_id"]
        ids.append(song_id)
        if ctx.manifest.state(song_id) not in (None, "listed"):
            continue
        paths = {stem: _rel(Path(r[stem]), ctx.out) for stem in ("vocals", "accomp", "mix")
                 if r.get(stem)}
        if r.get("dir"):
            paths["truth"] = _rel(Path(r["dir"]) / "truth.json", ctx.out)
        ctx.manifest.set(song_id, "separated", source="corpus", paths=paths)
    return ids


def _resume(ctx: _Build, source: str, ids: list[str], retry_failed: bool) -> list[str]:
    """Step back the songs to redo: failed ones (with ``retry_failed``) and those whose files
    are gone or damaged. A corpus song that lost its stems is rendered again (deterministic,
    same seed). Returns the song ids."""
    if retry_failed:
        for song_id in ctx.todo(ids, "failed"):
            ctx.manifest.set(song_id, "listed")
    _check(ctx, ids)
    if source == "corpus" and ctx.todo(ids, "listed"):
        with _timed(ctx, "render"):
            ids = _render_corpus(ctx, len(ids))
    return ids


def _check(ctx: _Build, ids: Sequence[str]) -> None:
    """Step back any song whose recorded files are gone or damaged (so it is redone)."""
    for song_id in ids:
        record = ctx.manifest.get(song_id)
        state = record.get("state")
        paths = record.get("paths", {})
        if state == "encoded" and not _latents_ok(ctx.out, paths, record.get("frames")):
            state = "separated"
        if state == "separated" and not _files_ok(ctx.out, paths, "vocals", "accomp"):
            state = "downloaded" if record.get("source") != "corpus" else "listed"
        if state == "downloaded" and not _files_ok(ctx.out, paths, "audio"):
            state = "listed"
        if state != record.get("state"):
            ctx.manifest.set(song_id, state)


def _files_ok(out: Path, paths: dict, *keys: str) -> bool:
    """True if each of ``keys`` names a non-empty file in ``paths``."""
    return all(k in paths and _abs(paths[k], out).is_file()
               and _abs(paths[k], out).stat().st_size > 0 for k in keys)


def _latents_ok(out: Path, paths: dict, frames) -> bool:
    """True if both stems' latents load as float32 ``[C, frames]`` of one shape."""
    try:
        shapes = set()
        for stem in STEMS:
            a = np.load(_abs(paths[f"latent_{stem}"], out), mmap_mode="r")
            if a.ndim != 2 or a.dtype != np.float32:
                return False
            shapes.add(a.shape)
        return len(shapes) == 1 and shapes.pop()[1] == frames
    except Exception:
        return False


# --------------------------------------------------------------------------- 2. download


def _download_stage(ctx: _Build, ids: Sequence[str], rows: dict) -> None:
    """Fetch the audio of each listed song (song list only)."""
    _run_stage(ctx, "download", ctx.todo(ids, "listed"),
               functools.partial(_download_song, ctx, rows))


def _download_song(ctx: _Build, rows: dict, song_id: str) -> None:
    """One song: its CSV ``path`` if given (must exist), else yt-dlp (its ``url`` or a search)."""
    t = time.perf_counter()
    r = rows[song_id]
    if r["path"]:
        path = Path(r["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed audio file not found")
    else:
        fetch = ctx.download
        if fetch is None:
            from .download import download as fetch
        kwargs = {"allow_file_urls": True} if ctx.allow_file_urls else {}
        path = Path(fetch(r["song"], ctx.out / "audio", url=r["url"],
                          max_seconds=ctx.cfg.data.max_song_seconds, **kwargs))
    ctx.manifest.set(song_id, "downloaded", paths={"audio": _rel(path, ctx.out)},
                     seconds={"download": round(time.perf_counter() - t, 3)})


# --------------------------------------------------------------------------- 3. separate


def _separate_stage(ctx: _Build, ids: Sequence[str]) -> None:
    """Demucs on each downloaded song: accompaniment = drums + bass + other (design §2)."""
    todo = ctx.todo(ids, "downloaded")
    split_stems = ctx.separate
    if todo and split_stems is None:
        split_stems = _load_separator(ctx)
    _run_stage(ctx, "separate", todo, functools.partial(_separate_song, ctx, split_stems))


def _load_separator(ctx: _Build) -> Callable[[np.ndarray, int], dict]:
    """The Demucs model of ``cfg.data.separator`` as ``(mix [2, N], sr) -> dict(vocals,
    accomp)``. A separator that cannot load stops the run (no song is to blame)."""
    from . import separate as sep

    cfg = ctx.cfg
    if cfg.data.separator in ("", "none"):
        raise ValueError(f"profile {cfg.profile!r}: data.separator is "
                         f"{cfg.data.separator!r}; a song list needs a Demucs model "
                         "(override data__separator=htdemucs)")
    model = sep.load_separator(cfg.data.separator, repo=ctx.separator_repo, device=cfg.device)
    return functools.partial(sep.separate, model)


def _separate_song(ctx: _Build, split_stems: Callable, song_id: str) -> None:
    """One song: ``stems/<id>/vocals.wav`` and ``accomp.wav`` from its downloaded audio."""
    t = time.perf_counter()
    sr = ctx.cfg.data.sample_rate
    mix = _load_audio(_abs(ctx.manifest.get(song_id)["paths"]["audio"], ctx.out), ctx.cfg)
    stems = split_stems(mix, sr)
    folder = ctx.out / "stems" / song_id
    _save_audio(folder / "vocals.wav", np.asarray(stems["vocals"]), sr)
    _save_audio(folder / "accomp.wav", np.asarray(stems["accomp"]), sr)
    ctx.manifest.set(song_id, "separated", paths={
        "vocals": _rel(folder / "vocals.wav", ctx.out),
        "accomp": _rel(folder / "accomp.wav", ctx.out)},
        seconds={"separate": round(time.perf_counter() - t, 3)})


# --------------------------------------------------------------------------- 4. encode


def _with_codec(ctx: _Build, ids: Sequence[str]) -> _Build:
    """``ctx`` with the codec and its info (design §3). The codec is loaded only when a song is
    to be encoded or the codec may have changed; latents of another codec are made again."""
    codec, recorded = ctx.codec, ctx.manifest.meta.get("codec")
    if not (ctx.todo(ids, "separated") or codec is not None or recorded is None
            or recorded["name"] != ctx.cfg.data.codec):
        return dataclasses.replace(ctx, codec_info=recorded)
    if codec is None:
        from .. import codecs

        codec = codecs.from_config(ctx.cfg)
    info = {"name": getattr(codec, "name", ctx.cfg.data.codec),
            "frames_per_second": float(codec.frames_per_second),
            "latent_channels": int(codec.latent_channels)}
    if recorded is not None and recorded != info:
        for song_id in ctx.todo(ids, "encoded"):  # latents of another codec: encode again
            ctx.manifest.set(song_id, "separated")
    if recorded != info:
        ctx.manifest.set_meta(codec=info)
    return dataclasses.replace(ctx, codec=codec, codec_info=info)


def _encode_stage(ctx: _Build, ids: Sequence[str]) -> None:
    """Encode both stems of each separated song with ``ctx.codec``."""
    _run_stage(ctx, "encode", ctx.todo(ids, "separated"), functools.partial(_encode_song, ctx))


def _encode_song(ctx: _Build, song_id: str) -> None:
    """One song: ``latents/<id>.{vocal,accomp}.npy``, float32 ``[C, T]``, both cut to the
    shorter ``T``."""
    t = time.perf_counter()
    paths = ctx.manifest.get(song_id)["paths"]
    channels = ctx.codec_info["latent_channels"]
    latents = {}
    for stem, key in zip(STEMS, ("vocals", "accomp")):
        samples = _load_audio(_abs(paths[key], ctx.out), ctx.cfg)
        latents[stem] = np.asarray(ctx.codec.encode(samples, ctx.cfg.data.sample_rate), np.float32)
        if latents[stem].ndim != 2 or latents[stem].shape[0] != channels:
            raise ValueError(f"{paths[key]}: expected latents [{channels}, T], "
                             f"found {latents[stem].shape}")
    frames = min(a.shape[1] for a in latents.values())
    new_paths = {}
    for stem, lat in latents.items():
        path = ctx.out / "latents" / f"{song_id}.{stem}.npy"
        save_npy(path, np.ascontiguousarray(lat[:, :frames]))
        new_paths[f"latent_{stem}"] = _rel(path, ctx.out)
    ctx.manifest.set(song_id, "encoded", frames=int(frames), paths=new_paths,
                     seconds={"encode": round(time.perf_counter() - t, 3)})


# --------------------------------------------------------------------------- 5. chunk & split


def _assemble(ctx: _Build, ids: Sequence[str]) -> dict:
    """Split the encoded songs by song and chunk them into the POPDB folders, unless the
    folders already match these latents. Records ``stats`` and ``assemble`` seconds.

    Returns:
        ``chunks`` per split, ``splits`` (song ids per split), ``too_short`` (song ids).
    """
    start = time.perf_counter()
    chunk = ctx.cfg.data.chunk_frames
    frames = {s: ctx.manifest.get(s)["frames"] for s in ctx.todo(ids, "encoded")}
    too_short = sorted(s for s, f in frames.items() if store.n_chunks(f, chunk) == 0)
    usable = sorted(s for s in frames if s not in too_short)
    splits = store.split_songs(usable, ctx.cfg.data.val_fraction, ctx.cfg.data.test_fraction,
                               ctx.cfg.seed)
    key = {"splits": splits, "frames": {s: frames[s] for s in usable}, "chunk_frames": chunk,
           "codec": ctx.codec_info, "latents": {s: _latent_stamp(ctx, s) for s in usable}}
    chunks = {name: sum(store.n_chunks(frames[s], chunk) for s in songs)
              for name, songs in splits.items()}
    stats_seconds = 0.0
    if not _popdb_current(ctx.out / "popdb", key, chunks):
        stats_seconds = _write_popdb(ctx, key, chunks)
    ctx.seconds["stats"] = stats_seconds
    ctx.seconds["assemble"] = time.perf_counter() - start - stats_seconds
    return {"chunks": chunks, "splits": splits, "too_short": too_short}


# --------------------------------------------------------------------------- 6. store


def _write_popdb(ctx: _Build, key: dict, chunks: dict) -> float:
    """Write ``popdb/<split>/``, ``splits.json``, the train ``stats.json`` and, last,
    ``build.json`` (the key the folders now match). Returns the seconds the statistics took."""
    popdb = ctx.out / "popdb"
    (popdb / "build.json").unlink(missing_ok=True)
    load = functools.partial(_load_latents, ctx)
    for name, songs in key["splits"].items():
        store.write_split(popdb / name, [(s, key["frames"][s]) for s in songs], load,
                          ctx.cfg.data.chunk_frames,
                          channels=ctx.codec_info["latent_channels"],
                          frames_per_second=ctx.codec_info["frames_per_second"])
    write_json(popdb / "splits.json", key["splits"])
    t = time.perf_counter()
    if chunks["train"] > 0:
        stats = store.popdb_stats(popdb / "train")
        stats["split"] = "train"
        write_json(popdb / store.STATS_FILE, stats)
    else:
        (popdb / store.STATS_FILE).unlink(missing_ok=True)
    stats_seconds = time.perf_counter() - t
    write_json(popdb / "build.json", key)  # last: the POPDB matches this key
    return stats_seconds


def _load_latents(ctx: _Build, song_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A song's ``(vocal [C, T], accomp [C, T])`` latents."""
    paths = ctx.manifest.get(song_id)["paths"]
    return tuple(np.load(_abs(paths[f"latent_{stem}"], ctx.out)) for stem in STEMS)


def _latent_stamp(ctx: _Build, song_id: str) -> list:
    """``[[size, mtime_ns], ...]`` of a song's latent files, to tell when they changed."""
    paths = ctx.manifest.get(song_id)["paths"]
    stamp = []
    for stem in STEMS:
        st = _abs(paths[f"latent_{stem}"], ctx.out).stat()
        stamp.append([st.st_size, st.st_mtime_ns])
    return stamp


def _popdb_current(popdb: Path, key: dict, chunks: dict) -> bool:
    """True if the POPDB folders were built from exactly these latents and are intact."""
    try:
        if read_json(popdb / "build.json") != _jsonround(key):
            return False
        for name, n in chunks.items():
            vocals, _ = store.load_popdb(popdb / name, normalise=False)
            if vocals.shape[0] != n or store.read_chunks(popdb / name)["count"] != n:
                return False
        return (popdb / "splits.json").exists() and (chunks["train"] == 0
                                                     or (popdb / store.STATS_FILE).exists())
    except Exception:
        return False


def _jsonround(obj):
    import json

    return json.loads(json.dumps(obj))


def _record(ctx: _Build, source: str, songlist, ids: Sequence[str], assembled: dict) -> dict:
    """Write ``provenance.json`` and return the build's summary (see :func:`build`)."""
    seconds = {k: round(v, 3) for k, v in ctx.seconds.items()}
    selected = {s: ctx.manifest.get(s) for s in ids}
    failures = {s: {"stage": r.get("stage"), "reason": r.get("reason")}
                for s, r in selected.items() if r.get("state") == "failed"}
    summary = {
        "out": str(ctx.out),
        "source": source,
        "songs": len(ids),
        "counts": {st: sum(1 for r in selected.values() if r.get("state") == st)
                   for st in STATES},
        "chunks": assembled["chunks"],
        "split_songs": {k: len(v) for k, v in assembled["splits"].items()},
        "too_short": assembled["too_short"],
        "failures": failures,
        "seconds": seconds,
    }
    write_json(ctx.out / "provenance.json", {
        "profile": ctx.cfg.profile,
        "seed": ctx.cfg.seed,
        "package_version": __version__,
        "codec": ctx.codec_info,
        "data": ctx.cfg.to_dict()["data"],
        "source": source,
        "songlist": str(songlist) if songlist is not None else None,
        "songs": len(ids),
        "counts": summary["counts"],
        "chunks": summary["chunks"],
        "split_songs": summary["split_songs"],
        "failures": failures,
        "seconds": seconds,
    })
    return summary
