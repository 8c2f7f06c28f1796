"""The whole data stage as one resumable command: ``samuel data build`` (SPEC §2, paper §III-C).

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
"""
from __future__ import annotations

import contextlib
import csv
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


def _render_corpus(out: Path, cfg, manifest: Manifest, render: Callable | None, n_songs: int,
                   progress: bool) -> list[str]:
    """Render the offline corpus (songs already complete on disk are skipped by the renderer);
    its stems are separate already, so its songs are 'separated' straight away."""
    if render is None:
        from .synth import render_corpus as render
    records = render(out / "songs", n_songs, float(cfg.data.corpus_song_seconds), seed=cfg.seed,
                     progress=progress)
    ids = []
    for r in records:
        song_id = r["song_id"]
        ids.append(song_id)
        if manifest.state(song_id) not in (None, "listed"):
            continue
        paths = {stem: _rel(Path(r[stem]), out) for stem in ("vocals", "accomp", "mix")
                 if r.get(stem)}
        if r.get("dir"):
            paths["truth"] = _rel(Path(r["dir"]) / "truth.json", out)
        manifest.set(song_id, "separated", source="corpus", paths=paths)
    return ids


# --------------------------------------------------------------------------- stages


def _check(manifest: Manifest, out: Path, ids: Sequence[str]) -> None:
    """Step back any song whose recorded files are gone or damaged (so it is redone)."""
    for song_id in ids:
        record = manifest.get(song_id)
        state = record.get("state")
        paths = record.get("paths", {})

        def ok(*keys):
            return all(k in paths and _abs(paths[k], out).is_file()
                       and _abs(paths[k], out).stat().st_size > 0 for k in keys)

        if state == "encoded" and not _latents_ok(out, paths, record.get("frames")):
            state = "separated"
        if state == "separated" and not ok("vocals", "accomp"):
            state = "downloaded" if record.get("source") != "corpus" else "listed"
        if state == "downloaded" and not ok("audio"):
            state = "listed"
        if state != record.get("state"):
            manifest.set(song_id, state)


def _latents_ok(out: Path, paths: dict, frames) -> bool:
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


def _run_stage(name: str, ids: Sequence[str], work: Callable[[str], None], manifest: Manifest,
               progress: bool, on_song: Callable | None) -> float:
    """Run ``work(song_id)`` for each song; a failure is recorded and the stage goes on."""
    start = time.perf_counter()
    done = failed = 0
    bar = _progress(ids, name, progress)
    for song_id in bar:
        try:
            work(song_id)
            done += 1
        except Exception as e:
            manifest.fail(song_id, name, f"{type(e).__name__}: {e}")
            failed += 1
        bar.set_postfix(done=done, failed=failed)
        if on_song is not None:
            on_song(name, song_id)
    bar.close()
    return time.perf_counter() - start


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
    """Build the training data of ``cfg`` (SPEC §2): songs -> stems -> latents -> POPDB.

    Args:
        cfg: a :class:`samuel.config.Config` (uses ``cfg.data`` and ``cfg.seed``).
        out_dir: where everything goes; default ``runs/<profile>/data``.
        songlist: a song list CSV (title, artist; optional ``path`` / ``url`` columns). Without
            it, the offline corpus of ``cfg.data.corpus_songs`` synthetic songs is used.
        progress: show tqdm bars (done / failed counts in the postfix).
        codec: a codec object; default ``samuel.codecs.load(cfg.data.codec)`` when needed.
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
        return _build(cfg, out, songlist, progress, codec, limit, render_corpus, download,
                      separate, separator_repo, allow_file_urls, retry_failed, on_song)


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


def _build(cfg, out: Path, songlist, progress, codec, limit, render_corpus, download, separate,
           separator_repo, allow_file_urls, retry_failed, on_song) -> dict[str, Any]:
    t_start = time.perf_counter()
    manifest = Manifest(out / "manifest.json")
    seconds: dict[str, float] = {}

    # Songs: the offline corpus or a song list.
    if songlist is None and cfg.data.corpus_songs > 0:
        source = "corpus"
        t = time.perf_counter()
        n = cfg.data.corpus_songs if limit is None else min(cfg.data.corpus_songs, limit)
        ids = _render_corpus(out, cfg, manifest, render_corpus, n, progress)
        rows = {}
        seconds["render"] = time.perf_counter() - t
    elif songlist is not None:
        source = "songlist"
        rows = {r["song_id"]: r for r in read_songs(songlist)[:limit]}
        ids = list(rows)
        for song_id, r in rows.items():
            if song_id not in manifest:
                manifest.set(song_id, "listed", source="songlist", title=r["title"],
                             artist=r["artist"])
    else:
        raise ValueError(f"profile {cfg.profile!r}: no song list given and "
                         "cfg.data.corpus_songs is 0; pass songlist=CSV")

    if retry_failed:
        for song_id in ids:
            if manifest.state(song_id) == "failed":
                manifest.set(song_id, "listed")
    _check(manifest, out, ids)
    if source == "corpus" and any(manifest.state(s) == "listed" for s in ids):
        # A corpus song lost its stems: the renderer redoes it (deterministic, same seed).
        t = time.perf_counter()
        ids = _render_corpus(out, cfg, manifest, render_corpus, len(ids), progress)
        seconds["render"] = seconds.get("render", 0.0) + time.perf_counter() - t

    # Download (song list only).
    if source == "songlist":
        def do_download(song_id: str) -> None:
            t = time.perf_counter()
            r = rows[song_id]
            if r["path"]:
                path = Path(r["path"])
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: listed audio file not found")
            else:
                fetch = download
                if fetch is None:
                    from .download import download as fetch
                kwargs = {"allow_file_urls": True} if allow_file_urls else {}
                path = Path(fetch(r["song"], out / "audio", url=r["url"],
                                  max_seconds=cfg.data.max_song_seconds, **kwargs))
            manifest.set(song_id, "downloaded", paths={"audio": _rel(path, out)},
                         seconds={"download": round(time.perf_counter() - t, 3)})

        todo = [s for s in ids if manifest.state(s) == "listed"]
        seconds["download"] = _run_stage("download", todo, do_download, manifest, progress, on_song)

        # Separate: Demucs, accompaniment = drums + bass + other (SPEC §2).
        todo = [s for s in ids if manifest.state(s) == "downloaded"]
        split_stems = separate
        if todo and split_stems is None:
            # A separator that cannot load stops the run (no song is to blame).
            from . import separate as sep

            if cfg.data.separator in ("", "none"):
                raise ValueError(f"profile {cfg.profile!r}: data.separator is "
                                 f"{cfg.data.separator!r}; a song list needs a Demucs model "
                                 "(override data__separator=htdemucs)")
            model = sep.load_separator(cfg.data.separator, repo=separator_repo)

            def split_stems(mix, sr):
                return sep.separate(model, mix, sr)

        def do_separate(song_id: str) -> None:
            t = time.perf_counter()
            record = manifest.get(song_id)
            mix = _load_audio(_abs(record["paths"]["audio"], out), cfg)
            stems = split_stems(mix, cfg.data.sample_rate)
            folder = out / "stems" / song_id
            _save_audio(folder / "vocals.wav", np.asarray(stems["vocals"]), cfg.data.sample_rate)
            _save_audio(folder / "accomp.wav", np.asarray(stems["accomp"]), cfg.data.sample_rate)
            manifest.set(song_id, "separated", paths={
                "vocals": _rel(folder / "vocals.wav", out),
                "accomp": _rel(folder / "accomp.wav", out)},
                seconds={"separate": round(time.perf_counter() - t, 3)})

        seconds["separate"] = _run_stage("separate", todo, do_separate, manifest, progress,
                                         on_song)

    # Encode both stems with the codec (SPEC §3).
    todo = [s for s in ids if manifest.state(s) == "separated"]
    codec_info = manifest.meta.get("codec")
    if todo or codec is not None or codec_info is None or codec_info["name"] != cfg.data.codec:
        if codec is None:
            from .. import codecs

            codec = codecs.load(cfg.data.codec)
        info = {"name": getattr(codec, "name", cfg.data.codec),
                "frames_per_second": float(codec.frames_per_second),
                "latent_channels": int(codec.latent_channels)}
        if codec_info is not None and codec_info != info:
            # Latents of another codec: encode everything again.
            for song_id in ids:
                if manifest.state(song_id) == "encoded":
                    manifest.set(song_id, "separated")
            todo = [s for s in ids if manifest.state(s) == "separated"]
        if codec_info != info:
            manifest.set_meta(codec=info)
        codec_info = info

    def do_encode(song_id: str) -> None:
        t = time.perf_counter()
        paths = manifest.get(song_id)["paths"]
        latents = {}
        for stem, key in zip(STEMS, ("vocals", "accomp")):
            samples = _load_audio(_abs(paths[key], out), cfg)
            latents[stem] = np.asarray(codec.encode(samples, cfg.data.sample_rate), np.float32)
            if latents[stem].ndim != 2 or latents[stem].shape[0] != codec_info["latent_channels"]:
                raise ValueError(f"{paths[key]}: expected latents [{codec_info['latent_channels']}"
                                 f", T], found {latents[stem].shape}")
        frames = min(a.shape[1] for a in latents.values())
        new_paths = {}
        for stem, lat in latents.items():
            path = out / "latents" / f"{song_id}.{stem}.npy"
            save_npy(path, np.ascontiguousarray(lat[:, :frames]))
            new_paths[f"latent_{stem}"] = _rel(path, out)
        manifest.set(song_id, "encoded", frames=int(frames), paths=new_paths,
                     seconds={"encode": round(time.perf_counter() - t, 3)})

    seconds["encode"] = _run_stage("encode", todo, do_encode, manifest, progress, on_song)

    # Split by song, chunk, write POPDB, statistics on train.
    t = time.perf_counter()
    assembled = _assemble(out, cfg, manifest, ids, codec_info)
    seconds["stats"] = assembled.pop("stats_seconds")
    seconds["assemble"] = time.perf_counter() - t - seconds["stats"]
    seconds["total"] = time.perf_counter() - t_start
    seconds = {k: round(v, 3) for k, v in seconds.items()}

    selected = {s: manifest.get(s) for s in ids}
    failures = {s: {"stage": r.get("stage"), "reason": r.get("reason")}
                for s, r in selected.items() if r.get("state") == "failed"}
    summary = {
        "out": str(out),
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
    write_json(out / "provenance.json", {
        "profile": cfg.profile,
        "seed": cfg.seed,
        "package_version": __version__,
        "codec": codec_info,
        "data": cfg.to_dict()["data"],
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


def _assemble(out: Path, cfg, manifest: Manifest, ids: Sequence[str], codec_info: dict) -> dict:
    """Split the encoded songs by song, chunk them into POPDB folders, compute train stats."""
    chunk = cfg.data.chunk_frames
    frames = {s: manifest.get(s)["frames"] for s in ids if manifest.state(s) == "encoded"}
    too_short = sorted(s for s, f in frames.items() if store.n_chunks(f, chunk) == 0)
    usable = sorted(s for s in frames if s not in too_short)
    splits = store.split_songs(usable, cfg.data.val_fraction, cfg.data.test_fraction, cfg.seed)
    popdb = out / "popdb"
    key = {"splits": splits, "frames": {s: frames[s] for s in usable}, "chunk_frames": chunk,
           "codec": codec_info, "latents": {s: _latent_stamp(out, manifest, s) for s in usable}}
    chunks = {name: sum(store.n_chunks(frames[s], chunk) for s in songs)
              for name, songs in splits.items()}
    stats_time = 0.0
    if not _popdb_current(popdb, key, chunks):
        (popdb / "build.json").unlink(missing_ok=True)

        def load(song_id: str):
            paths = manifest.get(song_id)["paths"]
            return tuple(np.load(_abs(paths[f"latent_{stem}"], out)) for stem in STEMS)

        for name, songs in splits.items():
            store.write_split(popdb / name, [(s, frames[s]) for s in songs], load, chunk,
                              channels=codec_info["latent_channels"],
                              frames_per_second=codec_info["frames_per_second"])
        write_json(popdb / "splits.json", splits)
        t = time.perf_counter()
        if chunks["train"] > 0:
            stats = store.popdb_stats(popdb / "train")
            stats["split"] = "train"
            write_json(popdb / store.STATS_FILE, stats)
        else:
            (popdb / store.STATS_FILE).unlink(missing_ok=True)
        stats_time = time.perf_counter() - t
        write_json(popdb / "build.json", key)  # last: the POPDB matches this key
    return {"chunks": chunks, "splits": splits, "too_short": too_short,
            "stats_seconds": stats_time}


def _latent_stamp(out: Path, manifest: Manifest, song_id: str) -> list:
    paths = manifest.get(song_id)["paths"]
    stamp = []
    for stem in STEMS:
        st = _abs(paths[f"latent_{stem}"], out).stat()
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
