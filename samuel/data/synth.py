"""The synthetic corpus on disk: the offline stand-in for POPDB (book: notebook 01, "An offline corpus").

:func:`render_corpus` composes (:mod:`samuel.data.compose`) and renders
(:mod:`samuel.data.render`) ``n`` seeded songs into ``synth_XXXX/{vocals,accomp,mix}.wav`` plus a
``truth.json`` sidecar, resumably. The composing and rendering names are re-exported here, so
``synth.compose`` / ``synth.render`` read as the two halves of one corpus.

``variety=True`` (the configuration's ``data.corpus_variety``) composes every song with the
varied tempo, lead, performance and production of :func:`samuel.data.compose.compose`; its
``truth.json`` records the drawn settings under ``"variety"`` (a plain corpus's has no such
key, and a folder rendered the other way is rendered again).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from samuel.io import atomic_path, read_json, write_json

from .compose import (GM_NAMES, PARTS, PITCH_NAMES, SR, Note, Song, chord_label, chord_pcs,  # noqa: F401
                      compose, song_seed, truth)
from .render import find_soundfont, fluidsynth_available, render, resolve_backend  # noqa: F401


# ----------------------------------------------------------------------------- corpus
STEMS = ("vocals", "accomp", "mix")


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.ascontiguousarray(audio.T), sr, subtype="FLOAT", format="WAV")


def _complete(folder: Path, s_seed: int, seconds: float, variety: bool) -> dict | None:
    """The song's ``truth.json`` when its folder is complete for this seed, length and variety."""
    truth_path = folder / "truth.json"
    if not (truth_path.is_file() and all((folder / f"{stem}.wav").is_file() for stem in STEMS)):
        return None
    info = read_json(truth_path)
    if (info.get("seed") != s_seed or abs(info.get("seconds", -1) - seconds) > 1e-9
            or ("variety" in info) != bool(variety)):
        return None
    return info


def _render_song(out_dir: Path, i: int, seconds: float, seed: int, backend: str,
                 variety: bool) -> dict:
    """Song ``i`` of the corpus: composed, rendered and written unless complete on disk.
    Depends on ``(seed, i)`` only, so songs can be rendered in any order and any process."""
    song_id = f"synth_{i:04d}"
    folder = Path(out_dir) / song_id
    paths = {stem: folder / f"{stem}.wav" for stem in STEMS}
    s_seed = song_seed(seed, i)
    info = _complete(folder, s_seed, seconds, variety)
    if info is None:
        song = compose(s_seed, seconds, variety=bool(variety))
        audio = render(song, SR, backend)
        for stem in STEMS:
            _write_wav(paths[stem], audio[stem], SR)
        info = truth(song, backend)
        info["song_id"] = song_id
        write_json(folder / "truth.json", info)
    return dict(song_id=song_id, dir=str(folder), truth=info,
                **{stem: str(p) for stem, p in paths.items()})


def _render_songs(out_dir: str, indices: list, seconds: float, seed: int, backend: str,
                  variety: bool) -> None:
    """A worker process's share of the corpus (see :func:`render_corpus`)."""
    for i in indices:
        _render_song(Path(out_dir), i, seconds, seed, backend, variety)


# Below this many songs to render, worker processes (a fresh interpreter each, about 2 s to
# start) cost more than they save.
_MIN_PARALLEL = 8


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def render_corpus(out_dir, n_songs: int, seconds: float, seed: int = 0, backend: str = "auto",
                  progress: bool = True, variety: bool = False,
                  workers: int | None = None) -> list:
    """Compose and render ``n_songs`` into ``out_dir/synth_XXXX/{vocals,accomp,mix}.wav + truth.json``.

    Resumable: ``truth.json`` is written last, so a folder holding it (and the three WAVs, for the
    same seed, length and variety) is complete and skipped. Song ``i`` uses :func:`song_seed`
    ``(seed, i)``. ``variety``: the varied corpus (module docstring).

    ``workers``: processes rendering songs side by side (default: the CPUs this process may use;
    1 renders in this process). Rendering is single-threaded, so on 2 cores two workers take
    about half the time; every song depends on its own seed only, so the audio is the same
    whatever the number (tested). The workers are fresh interpreters (``python -c``), not
    ``multiprocessing`` children: those would import the caller's main script again, or fork a
    process that holds torch's threads.

    Returns:
        One record per song: ``{"song_id", "dir", "vocals", "accomp", "mix", "truth"}``.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    backend = resolve_backend(backend)
    args = (float(seconds), int(seed), backend, bool(variety))
    todo = [i for i in range(n_songs)
            if _complete(out_dir / f"synth_{i:04d}", song_seed(seed, i), seconds, variety) is None]
    workers = _default_workers() if workers is None else int(workers)
    workers = max(1, min(workers, len(todo)))
    bar = tqdm(total=n_songs, initial=n_songs - len(todo), desc="synth corpus", disable=not progress)
    here = set(todo)  # the songs this process renders
    if workers > 1 and len(todo) >= _MIN_PARALLEL:
        _render_in_workers(out_dir, todo, args, workers, bar.update)
        here = set()
    records = []
    for i in range(n_songs):  # what the workers wrote is read back; anything left is rendered here
        records.append(_render_song(out_dir, i, *args))
        if i in here:
            bar.update(1)
    bar.close()
    return records


def _render_in_workers(out_dir: Path, todo: list, args: tuple, workers: int,
                       advance: Callable[[int], object]) -> None:
    """Render the songs ``todo`` in ``workers`` processes (songs ``todo[k::workers]`` each);
    ``advance(n)`` is called as ``n`` more songs are complete."""
    for i in todo:  # a stale sidecar would count as done in the progress below
        (out_dir / f"synth_{i:04d}" / "truth.json").unlink(missing_ok=True)
    code = ("import json, sys; from samuel.data.synth import _render_songs; "
            "_render_songs(*json.loads(sys.argv[1]))")
    shown = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # the workers import this package from where this process found it (installed or not)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(workers):
            payload = json.dumps([str(out_dir), todo[k::workers], *args])
            err = open(Path(tmp) / f"worker{k}.log", "w+")
            procs.append((subprocess.Popen([sys.executable, "-c", code, payload], env=env,
                                           stdout=subprocess.DEVNULL, stderr=err), err))
        try:
            while any(p.poll() is None for p, _ in procs):
                time.sleep(0.5)
                done = sum((out_dir / f"synth_{i:04d}" / "truth.json").is_file() for i in todo)
                if done > shown:
                    advance(done - shown)
                    shown = done
        finally:
            for p, _ in procs:
                if p.poll() is None:  # interrupted: no orphan keeps writing
                    p.kill()
                    p.wait()
            failed = []
            for p, err in procs:
                err.seek(0)
                if p.returncode:
                    failed.append(f"exit {p.returncode}: {err.read()[-800:].strip()}")
                err.close()
    if failed:
        raise RuntimeError(f"rendering the corpus into {out_dir}: {len(failed)} of {workers} "
                           f"workers failed; {failed[0]}")
    advance(len(todo) - shown)
