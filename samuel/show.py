"""What the notebooks of the book display: paths, the configuration, the data, players.

Each function returns a string to print (or shows players in the notebook), and reads the run
through :mod:`samuel.runs`; nothing here computes a result.

Book: every notebook's setup cell; notebook 01 (the data, heard); notebook 06 ("Listen").
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import paths
from .audio import SAMPLE_RATE
from .runs import WHERE_FIELDS, RunPaths, data_kind, truths

# tqdm.auto asks for ipywidgets in a kernel; the book shows no progress widgets, so the warning
# is noise. Every notebook imports this module in its setup cell, before any progress bar.
warnings.filterwarnings("ignore", message="IProgress not found")


shown = paths.shown  # notebooks call show.shown


def config_lines(cfg, sections: Sequence[str] = ("model", "diffusion", "data", "train")) -> str:
    """The configuration as one ``section: field=value, ...`` line per section (notebook setup).

    A last ``runs on:`` line names the device and the SAO VAE's weights when either matters
    (a device other than ``auto``, or the ``sao`` codec); the offline profiles print none.
    """
    d = cfg.to_dict()
    lines = [f"profile: {cfg.profile}, seed: {cfg.seed}"]
    for section in sections:
        skip = WHERE_FIELDS.get(section, ())
        lines.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in d[section].items()
                                                if k not in skip))
    where = []
    device = getattr(cfg, "device", "auto")
    if device != "auto" or cfg.data.codec == "sao":
        where.append(f"device={device}")
    if cfg.data.codec == "sao":
        from .codecs import vae_path
        from .codecs.sao import HUB_REPO

        vae = vae_path(cfg)
        where.append(f"vae={shown(vae) if vae else 'the hub (' + HUB_REPO + ')'}")
        if getattr(cfg.data, "vae_half", False):
            where.append("vae_half=True")
    if where:
        lines.append("runs on: " + ", ".join(where))
    return "\n".join(lines)


def show_progress(cfg) -> bool:
    """Progress bars for the long stages (download, training, evaluation): on for the
    ``paper`` profile, whose stages take minutes to hours on Colab; off for the offline
    profiles, whose committed notebooks stay free of them."""
    return cfg.profile == "paper"


def players_html(audios: dict, sr: int = SAMPLE_RATE, seconds: float = 6.0, title: str = "") -> str:
    """One HTML block: a labelled audio player per entry of ``audios`` (``{label: [C, N]}``),
    ``seconds`` long, one row each, under ``title`` when given (one example, one block)."""
    import html

    from .audio import player

    rows = "".join(f"<tr><td style='padding-right:1em'><b>{html.escape(label)}</b></td>"
                   f"<td>{player(audio, sr, seconds=seconds)._repr_html_()}</td></tr>"
                   for label, audio in audios.items())
    head = f"<p><b>{html.escape(title)}</b></p>" if title else ""
    return f"<div class='samuel-players'>{head}<table>{rows}</table></div>"


def show_players(audios: dict, sr: int = SAMPLE_RATE, seconds: float = 6.0, title: str = "") -> None:
    """Show :func:`players_html`: the players of one example, labelled and grouped."""
    from IPython.display import HTML, display

    display(HTML(players_html(audios, sr, seconds, title)))


# The parts of an evaluation example (samuel.evaluate.report.write_examples) and their labels.
EXAMPLE_PARTS = (("vocal", "vocal"), ("generated accompaniment", "generated"),
                 ("true accompaniment", "true_accomp"), ("mix: vocal + generated", "mix"))


def example_audio(folder: str | os.PathLike, limit: int = 2) -> list[tuple[str, dict]]:
    """``[(title, {label: [2, N]})]``: the first ``limit`` evaluation examples in ``folder``
    (``<k>_<song>_{vocal,generated,true_accomp,mix}.wav``), each with its four parts."""
    from . import audio

    folder = Path(folder)
    out = []
    for k, vocal in enumerate(sorted(folder.glob("*_vocal.wav"))[:limit]):
        stem = vocal.name[: -len("_vocal.wav")]
        song = stem.split("_", 1)[1] if "_" in stem else stem
        out.append((f"example {k + 1}: test song {song}",
                    {label: audio.load(folder / f"{stem}_{part}.wav") for label, part in EXAMPLE_PARTS}))
    return out


def example_players(folder: str | os.PathLike, limit: int = 2, seconds: float = 8.0) -> None:
    """Notebook 06, "Listen": the players of each example, grouped and labelled."""
    examples = example_audio(folder, limit)
    if not examples:
        print(f"no examples in {shown(folder)}")
    for title, audios in examples:
        show_players(audios, seconds=seconds, title=title)


def split_of(splits: dict) -> dict:
    """``{song: split}`` from ``{split: [songs]}``."""
    return {s: name for name, ids in splits.items() for s in ids}


def corpus_lines(songs: Sequence[dict]) -> str:
    """Styles, modes, tonics and tempi of the offline corpus's songs (their ``truth.json``);
    empty for data without a musical truth."""
    import collections

    if not songs:
        return ""
    tempi = sorted(t["tempo_bpm"] for t in songs)
    return "\n".join([
        f"styles: {dict(sorted(collections.Counter(t['style'] for t in songs).items()))}",
        f"modes: {dict(sorted(collections.Counter(t['mode'] for t in songs).items()))}",
        f"tonics: {len({t['tonic_pc'] for t in songs})} of 12",
        f"tempo: {tempi[0]:.0f}-{tempi[-1]:.0f} BPM, median {tempi[len(tempi) // 2]:.0f}"])


# ----------------------------------------------------------------------------- the run's data
def describe_data(summary: dict) -> str:
    """One line: what notebook 01 built, from what, in how long."""
    total = summary["seconds"]["total"]
    if summary["source"] == "published POPDB":
        return (f"{summary['counts']['rows']:,} rows of the published POPDB in {summary['songs']} "
                f"blocks, indexed in {total:.1f} s")
    source = {"songlist": "song list"}.get(summary["source"], summary["source"])
    return f"{summary['songs']} songs from the {source} in {total:.1f} s"


def data_summary_lines(summary: dict) -> str:
    """States, failures, songs and chunks per split (for POPDB: rows, blocks and chunks)."""
    failures = summary["failures"] or "none"
    if summary["source"] == "published POPDB":
        return "\n".join([f"rows: {summary['counts']['rows']} latent pairs (no songs, no audio)",
                          f"failures: {failures}",
                          f"blocks per split: {summary['split_songs']}",
                          f"chunks per split: {summary['chunks']}"])
    return "\n".join([f"songs per state: {summary['counts']}", f"failures: {failures}",
                      f"songs per split: {summary['split_songs']}",
                      f"chunks per split: {summary['chunks']}"])


def describe_truth(truth: Optional[dict], kind: str = "corpus") -> str:
    """A song's key, tempo, metre, chords and instruments, or why it has no truth."""
    if truth is None:
        return ("no musical truth: POPDB as published holds latents only" if kind == "popdb"
                else "no musical truth: a downloaded song")
    return "\n".join([
        f"{truth['song_id']}: {truth['style']}, {truth['key']}, {truth['tempo_bpm']:.0f} BPM, "
        f"{truth['beats_per_bar']}/4, {truth['seconds']:.0f} s",
        "chords: " + " ".join(c["label"] for c in truth["chords"][:8]) + " ...",
        f"instruments: { {part: i['name'] for part, i in truth['instruments'].items()} }"])


def song_table(run: RunPaths, split_of: dict, limit: int = 10) -> str:
    """The first ``limit`` songs with their split: style, key and tempo for the offline
    corpus, title and state for a song list, rows for the blocks of the published POPDB."""
    kind = data_kind(run)
    if kind == "corpus":
        songs = truths(run)
        lines = [f"{'song':<11} {'style':<7} {'key':<9} {'BPM':>4}  split"]
        lines += [f"{t['song_id']:<11} {t['style']:<7} {t['key']:<9} {t['tempo_bpm']:>4.0f}  "
                  f"{split_of.get(t['song_id'], '-')}" for t in songs[:limit]]
        return "\n".join(lines + [f"... {len(songs)} songs with a musical truth (the offline corpus)"])
    if kind == "songlist":
        from .data.manifest import Manifest

        manifest = Manifest(run.data / "manifest.json")
        ids = sorted(manifest.songs())
        lines = [f"{'song':<40} {'state':<9} split"]
        lines += [f"{s[:40]:<40} {manifest.state(s) or '-':<9} {split_of.get(s, '-')}"
                  for s in ids[:limit]]
        return "\n".join(lines + [f"... {len(ids)} songs from the song list (downloaded: no "
                                  "musical truth)"])
    from .data import store

    counts = {}
    for split in store.SPLITS:
        for r in store.split_info(run.popdb, split)["rows"]:
            counts[r["song_id"]] = counts.get(r["song_id"], 0) + 1
    ids = sorted(counts)
    lines = [f"{'block':<12} {'rows':>5}  split"]
    lines += [f"{b:<12} {counts[b]:>5}  {split_of.get(b, '-')}" for b in ids[:limit]]
    return "\n".join(lines + [f"... {len(ids)} blocks of consecutive rows (the published POPDB "
                              "has no song ids)"])


def _excerpt(path: Path, seconds: Optional[float], sr: int = SAMPLE_RATE) -> np.ndarray:
    """``[2, N]`` float32 at ``sr``: the first ``seconds`` of an audio file (all when None),
    read without decoding the rest where the file is already at ``sr``."""
    import soundfile as sf

    from . import audio

    n = None if seconds is None else int(round(seconds * sr))
    try:
        info = sf.info(str(path))
    except Exception:
        info = None
    if n is not None and info is not None and info.samplerate == sr and info.frames > n:
        data, _ = sf.read(str(path), frames=n, dtype="float32", always_2d=True)
        x = np.nan_to_num(np.ascontiguousarray(data.T), nan=0.0, posinf=1.0, neginf=-1.0)
        return audio.to_channels(x, 2)
    x = audio.load(path, sr=sr, channels=2)
    return x if n is None else x[:, :n]


def listen(run: RunPaths, song_id: str, seconds: Optional[float] = None, codec=None,
           sr: int = SAMPLE_RATE) -> dict:
    """``{"vocals", "accomp", "mix"}``, each ``[2, N]`` float32: the first ``seconds`` of a song.

    The offline corpus and a song list read their stems (a song list's mix is its download).
    The published POPDB holds no audio: the first row of the block is decoded with ``codec``
    (the SAO VAE), only as many frames as ``seconds`` needs, and the mix is their sum.
    """
    kind = data_kind(run)
    if kind == "corpus":
        folder = run.data / "songs" / song_id
        return {name: _excerpt(folder / f"{name}.wav", seconds, sr)
                for name in ("vocals", "accomp", "mix") if (folder / f"{name}.wav").exists()}
    if kind == "songlist":
        from .data.manifest import Manifest

        folder = run.data / "stems" / song_id
        out = {name: _excerpt(folder / f"{name}.wav", seconds, sr) for name in ("vocals", "accomp")}
        download = Manifest(run.data / "manifest.json").get(song_id).get("paths", {}).get("audio")
        if download:
            path = Path(download) if Path(download).is_absolute() else run.data / download
            out["mix"] = _excerpt(path, seconds, sr)
        return out
    from .data import store

    if codec is None:
        raise ValueError("listen: the published POPDB holds no audio; expected a codec to decode "
                         "its latents, found none")
    for split in store.SPLITS:
        rows = store.split_info(run.popdb, split)["rows"]
        hits = [i for i, r in enumerate(rows) if r["song_id"] == song_id]
        if hits:
            break
    else:
        raise ValueError(f"{run.popdb}: expected rows of block {song_id!r}, found none")
    vocal, accomp = store.open_split(run.popdb, split, normalise=False)
    frames = vocal.shape[-1] if seconds is None else min(
        vocal.shape[-1], int(np.ceil(seconds * codec.frames_per_second)))
    out = {"vocals": codec.decode(np.asarray(vocal[hits[0]][:, :frames], np.float32)),
           "accomp": codec.decode(np.asarray(accomp[hits[0]][:, :frames], np.float32))}
    n = min(x.shape[1] for x in out.values())
    if seconds is not None:
        n = min(n, int(round(seconds * sr)))
    out = {k: v[:, :n] for k, v in out.items()}
    out["mix"] = out["vocals"] + out["accomp"]
    return out
