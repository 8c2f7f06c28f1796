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

from pathlib import Path

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


def render_corpus(out_dir, n_songs: int, seconds: float, seed: int = 0, backend: str = "auto",
                  progress: bool = True, variety: bool = False) -> list:
    """Compose and render ``n_songs`` into ``out_dir/synth_XXXX/{vocals,accomp,mix}.wav + truth.json``.

    Resumable: ``truth.json`` is written last, so a folder holding it (and the three WAVs, for the
    same seed, length and variety) is complete and skipped. Song ``i`` uses :func:`song_seed`
    ``(seed, i)``. ``variety``: the varied corpus (module docstring).

    Returns:
        One record per song: ``{"song_id", "dir", "vocals", "accomp", "mix", "truth"}``.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    backend = resolve_backend(backend)
    records = []
    for i in tqdm(range(n_songs), desc="synth corpus", disable=not progress):
        song_id = f"synth_{i:04d}"
        folder = out_dir / song_id
        paths = {stem: folder / f"{stem}.wav" for stem in STEMS}
        truth_path = folder / "truth.json"
        s_seed = song_seed(seed, i)
        info = None
        if truth_path.is_file() and all(p.is_file() for p in paths.values()):
            info = read_json(truth_path)
            if (info.get("seed") != s_seed or abs(info.get("seconds", -1) - seconds) > 1e-9
                    or ("variety" in info) != bool(variety)):
                info = None
        if info is None:
            song = compose(s_seed, seconds, variety=bool(variety))
            audio = render(song, SR, backend)
            for stem in STEMS:
                _write_wav(paths[stem], audio[stem], SR)
            info = truth(song, backend)
            info["song_id"] = song_id
            write_json(truth_path, info)
        records.append(dict(song_id=song_id, dir=str(folder), truth=info,
                            **{stem: str(p) for stem, p in paths.items()}))
    return records
