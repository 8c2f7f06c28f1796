"""The book: execute the notebooks in order with papermill, then build the HTML (Jupyter Book 1.x).

    samuel book run --profile demo          # or: make book
    samuel book run --profile paper --songlist CSV | --popdb DIR [--vae DIR] [--device D] [--set K=V]
    python -c "import samuel.book as b; b.run('smoke', html=False)"

Where things go:

* Each notebook is executed, with ``PROFILE`` / ``SEED`` / ``RUN_DIR`` / ``OVERRIDES`` /
  ``SONGLIST`` / ``POPDB`` injected into its ``parameters`` cell (:func:`parameters`), from
  ``notebooks/`` into ``<run>/book/notebooks/`` (``<run>`` is ``runs/<profile>`` or ``run_dir``);
  the kernel runs in ``notebooks/``.
* The data of a run comes from the offline corpus, a song list (``SONGLIST``) or the published
  POPDB (``POPDB``); the helpers under "the run's data" let every notebook read the three alike
  (book: "Reproduce it"; rehearsed by ``tests/test_rehearsal.py``).
* The book reads ``notebooks/`` directly (``_toc.yml``). With the ``demo`` profile and the default
  run folder, the executed notebooks are copied back over ``notebooks/`` (the committed notebooks
  carry the demo outputs), ``book/results.md`` is rewritten from the run's results, and the HTML
  is built at the repository root: ``_build/html/index.html``.
* Any other profile (or run folder) leaves ``notebooks/`` alone: a copy of the book (``_config.yml``,
  ``_toc.yml``, ``book/``, the executed notebooks) is assembled in ``<run>/book/site/`` and built
  there: ``<run>/book/site/_build/html/index.html``.

A failing cell stops the run with one message naming the notebook, the cell and the error
(:class:`NotebookFailed`); the executed notebook, error included, is kept for inspection.

Each notebook's last cell calls :func:`record`, which prints its key results rounded (what nbval
compares) and saves them to ``<run>/results/<notebook>.json``.

Book: "Reproduce it" (running the whole book).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from . import paths
from .audio import SAMPLE_RATE
from .io import read_json, to_jsonable, write_json

# tqdm.auto asks for ipywidgets in a kernel; the book shows no progress widgets, so the warning is noise
warnings.filterwarnings("ignore", message="IProgress not found")

NOTEBOOKS = (
    "01_data_collection.ipynb",
    "02_vae_encoding.ipynb",
    "03_model.ipynb",
    "04_training.ipynb",
    "05_sigma_vs_timestep.ipynb",
    "06_evaluation.ipynb",
)
NOTEBOOK_DIR = paths.ROOT / "notebooks"
BOOK_FILES = ("_config.yml", "_toc.yml", "book")
# The public repository the Colab cells install from and the badges open. Replace OWNER when the
# repository is published; everything Colab-related reads these two constants.
REPO = "OWNER/samuel"
BRANCH = "main"
KERNEL = "python3"


class NotebookFailed(RuntimeError):
    """A notebook of the book failed; the message names the notebook, the cell and the error."""


# ----------------------------------------------------------------------------- run folders
@dataclass(frozen=True)
class RunPaths:
    """The folders of one run; every notebook finds its inputs and outputs here.

    ``checkpoint`` follows :func:`samuel.train.train`: ``runs/<profile>/checkpoint`` for the
    default run folder, ``<run>/train/checkpoint`` for any other.
    """

    root: Path
    data: Path
    popdb: Path
    train: Path
    checkpoint: Path
    evaluation: Path
    analysis: Path
    results: Path
    default: bool
    profile: str = ""


def run_paths(profile: str, run_dir: str | os.PathLike | None = "") -> RunPaths:
    """The :class:`RunPaths` of ``run_dir`` (empty or None: ``samuel.paths.run_dir(profile)``)."""
    default_root = paths.run_dir(profile)
    root = Path(run_dir) if run_dir else default_root
    default = root.resolve() == default_root.resolve()
    train = root / "train"
    return RunPaths(root=root, data=root / "data", popdb=root / "data" / "popdb", train=train,
                    checkpoint=root / "checkpoint" if default else train / "checkpoint",
                    evaluation=root / "evaluation", analysis=root / "analysis",
                    results=root / "results", default=default, profile=str(profile))


# ----------------------------------------------------------------------------- results cells
def rounded(obj: Any, digits: int = 3) -> Any:
    """``obj`` with every float rounded to ``digits`` decimals (NaN/inf kept as strings): the
    package's JSON sanitiser (:func:`samuel.io.to_jsonable`) as the results cells want it."""
    return to_jsonable(obj, digits=digits, nonfinite=str, default=str)


def record(results: dict, run: RunPaths | str | os.PathLike, notebook: str, digits: int = 3) -> dict:
    """Print ``results`` rounded, one ``key: value`` per line, and save them as JSON.

    Written to ``<run>/results/<notebook>.json`` (``notebook`` without ``.ipynb``); when ``run``
    is a :class:`RunPaths`, the file also names the run's profile (``"profile"``, not printed).
    Returns the rounded dict. Book: the last cell of every notebook.
    """
    folder = run.results if isinstance(run, RunPaths) else Path(run) / "results"
    out = rounded(results, digits)
    profile = run.profile if isinstance(run, RunPaths) else ""
    write_json(folder / f"{Path(notebook).stem}.json", {"profile": profile, **out} if profile else out)
    width = max((len(k) for k in out), default=0)
    for k, v in out.items():
        print(f"{k.ljust(width)} : {json.dumps(v) if isinstance(v, (list, dict)) else v}")
    return out


def colab_url(notebook: str) -> str:
    """The Colab address of a notebook of this repository."""
    return (f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/notebooks/"
            f"{Path(notebook).name}")


def pip_spec() -> str:
    """What the Colab cell installs: the package straight from the repository."""
    return f"samuel @ git+https://github.com/{REPO}.git@{BRANCH}"


def shown(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when inside it (outputs that read the same anywhere)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(paths.ROOT.resolve()))
    except ValueError:
        return str(path)


# Fields that say where a run happens (this machine's device and VAE folder), not what it
# computes: config_lines shows them on a line of their own, and only where they matter.
WHERE_FIELDS = {"data": ("vae", "vae_half")}


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


def show_players(audios: dict, sr: int = SAMPLE_RATE, seconds: float = 6.0) -> None:
    """One labelled audio player per entry of ``audios`` (``{label: [C, N]}``), ``seconds`` long."""
    from IPython.display import HTML, display

    from .audio import player

    for label, audio in audios.items():
        display(HTML(f"<b>{label}</b>"))
        display(player(audio, sr, seconds=seconds))


# ----------------------------------------------------------------------------- the run's data
# Three sources make the data of a run (notebook 01), and the notebooks after it read any of
# them the same way: the offline corpus (songs/<id>/ with a musical truth), a song list
# (audio/<id>.wav downloads, stems/<id>/ separated, no truth) and the published POPDB (an index
# over its two arrays: no songs, no audio; what is heard is decoded from the latents).
SAMPLE_ROWS = 1024  # rows drawn where a figure needs a split's statistics (bounded memory)
SAO_SAMPLES_PER_FRAME = 2048  # the SAO VAE's hop: the published POPDB's frame rate is 44100/2048


def data_kind(run: RunPaths) -> str:
    """``"popdb"`` (an index over the published POPDB), ``"songlist"`` or ``"corpus"``."""
    from .data import store

    if (run.popdb / store.INDEX_FILE).exists():
        return "popdb"
    prov = run.data / "provenance.json"
    if prov.exists() and read_json(prov).get("source") == "songlist":
        return "songlist"
    return "corpus"


def build_data(cfg, run: RunPaths, songlist: str = "", popdb: str = "",
               progress: bool = False) -> dict:
    """Notebook 01's data stage: the offline corpus, a song list, or the published POPDB.

    A song list goes through :func:`samuel.data.pipeline.build` (download, Demucs, encoding;
    its ``file://`` URLs are let through: the list is the user's own). The published POPDB is
    indexed by :func:`samuel.data.popdb.prepare` into ``run.popdb`` (nothing copied).

    Returns:
        The pipeline's summary; for POPDB one with the same keys (``songs`` counts blocks of
        rows, the published POPDB's unit of the split).
    """
    from .data import pipeline

    if songlist and popdb:
        raise ValueError(f"songlist {songlist} and popdb {popdb}: expected one, found both")
    if not popdb:
        return pipeline.build(cfg, out_dir=run.data, songlist=songlist or None,
                              progress=progress, allow_file_urls=bool(songlist))
    from .data import popdb as popdb_mod
    from .data import store

    t0 = time.perf_counter()
    prepared = popdb_mod.prepare(popdb, run.popdb, cfg, progress=progress)
    chunks, blocks = {}, {}
    for split in store.SPLITS:
        rows = store.split_info(run.popdb, split)["rows"]
        chunks[split] = len(rows)
        blocks[split] = len({r["song_id"] for r in rows})
    return {"out": str(run.popdb), "source": "published POPDB", "songs": sum(blocks.values()),
            "counts": {"rows": sum(chunks.values()), "failed": 0}, "chunks": chunks,
            "split_songs": blocks, "too_short": [], "failures": {},
            "seconds": {"total": round(time.perf_counter() - t0, 3)}, "prepared": prepared}


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


def song_splits(run: RunPaths) -> dict:
    """``{split: [song ids]}``: songs by split (for POPDB, its blocks of rows)."""
    from .data import store

    if data_kind(run) == "popdb":
        return {s: sorted({r["song_id"] for r in store.split_info(run.popdb, s)["rows"]})
                for s in store.SPLITS}
    return read_json(run.popdb / "splits.json")


def example_song(run: RunPaths, split: Optional[str] = None) -> str:
    """The song the notebooks listen to: the first of ``split``, or of all songs on disk."""
    if split is not None:
        return song_splits(run)[split][0]
    kind = data_kind(run)
    if kind == "popdb":
        return example_song(run, "train")
    root = run.data / ("songs" if kind == "corpus" else "stems")
    songs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not songs:
        raise FileNotFoundError(f"{root}: expected a folder per song, found none "
                                "(run notebook 01 first)")
    return songs[0]


def truths(run: RunPaths) -> list[dict]:
    """The musical truth (``truth.json``) of every song of the offline corpus; [] otherwise."""
    return [read_json(p) for p in sorted((run.data / "songs").glob("*/truth.json"))]


def song_truth(run: RunPaths, song_id: str) -> Optional[dict]:
    """One song's ``truth.json``, or None (downloaded songs and POPDB have none)."""
    path = run.data / "songs" / song_id / "truth.json"
    return read_json(path) if path.exists() else None


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


def provenance(run: RunPaths, cfg=None) -> dict:
    """Where the run's data came from: ``provenance.json`` of the data build; for the
    published POPDB, the same keys from its index (the latents are SAO VAE latents)."""
    from . import __version__

    if data_kind(run) != "popdb":
        return read_json(run.data / "provenance.json")
    from .data import store

    index = store.read_index(run.popdb)
    n, channels, _ = index["shape"]
    sr = cfg.data.sample_rate if cfg is not None else SAMPLE_RATE
    return {"profile": cfg.profile if cfg is not None else run.profile,
            "seed": int(index["seed"]), "package_version": __version__,
            "source": "published POPDB", "songs": int(index["n_blocks"]),
            "codec": {"frames_per_second": sr / SAO_SAMPLES_PER_FRAME,
                      "latent_channels": int(channels), "name": "sao"},
            "rows": int(n), "folder": index["source"]}



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


def sample_rows(array, n: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """At most ``n`` rows of ``array`` (``[N, C, T]``: a memmap or a view of one), drawn
    without replacement (seeded) and read in order, as float32: what a figure of a split's
    statistics needs, without the whole split in memory. All rows when ``N <= n``."""
    total = len(array)
    rows = (np.arange(total) if total <= n
            else np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False)))
    return np.asarray(array[rows], np.float32)


def zscore_check(array) -> dict:
    """Per-channel mean and std of a z-scored split ``[N, C, T]`` over every row, read block by
    block (:func:`samuel.data.store.channel_stats`): ``dict(mean, channel_means_ok,
    channel_stds_ok, means [C], stds [C])``, within ±0.01 of 0 and of 1."""
    from .data import store

    s = store.channel_stats(array)
    means, stds = np.asarray(s["mean"]), np.asarray(s["std"])
    return {"mean": round(float(means.mean()), 3) + 0.0,  # + 0.0: never print -0.000
            "channel_means_ok": bool(np.all(np.abs(means) < 0.01)),
            "channel_stds_ok": bool(np.all(np.abs(stds - 1) < 0.01)), "means": means, "stds": stds}


# ----------------------------------------------------------------------------- skip work done
def training_fields(config: dict) -> dict:
    """The part of a configuration (as :meth:`Config.to_dict` gives it) that decides the
    weights a training run produces: without the device, the VAE folder and the evaluation's
    settings, which a machine or a notebook may change without retraining."""
    d = json.loads(json.dumps(config))
    d.pop("device", None)
    d.pop("eval", None)
    for section, names in WHERE_FIELDS.items():
        for name in names:
            d.get(section, {}).pop(name, None)
    return d


def same_config(folder: str | os.PathLike, cfg) -> bool:
    """True if the checkpoint in ``folder`` holds weights trained with ``cfg`` (its
    :func:`training_fields`: another device or VAE folder is the same training)."""
    from . import checkpoint as ckpt

    folder = Path(folder)
    if not (folder / ckpt.MODEL_FILE).exists():
        return False
    try:
        saved = ckpt.load_meta(folder).get("config")
        return training_fields(saved) == training_fields(json.loads(cfg.to_json()))
    except Exception:
        return False


def train_once(cfg, run: RunPaths, progress: bool = False) -> dict:
    """Train ``cfg`` unless ``run.checkpoint`` already holds a finished run of the same config.

    A run of the same config that was interrupted is resumed (exactly, see
    :func:`samuel.train.train`); a checkpoint of another config is trained over. Returns the
    training summary, with ``"reused": True`` when nothing was trained. Book: notebook 04.
    """
    from .train import train

    summary_path = run.train / "summary.json"
    if same_config(run.checkpoint, cfg) and summary_path.exists():
        summary = read_json(summary_path)
        if summary.get("steps", 0) >= cfg.train.max_steps or summary.get("stopped_early"):
            return {**summary, "reused": True}
    from . import checkpoint as ckpt

    resume = same_config(run.checkpoint, cfg) and (run.checkpoint / ckpt.STATE_FILE).exists()
    summary = train(cfg, data_dir=run.popdb, run_dir=None if run.default else run.train,
                    resume=resume, progress=progress)
    return {**summary, "reused": False}


def evaluate_once(cfg, run: RunPaths, progress: bool = False, **kwargs) -> dict:
    """:func:`samuel.evaluate.evaluate` on ``run``, unless its ``results.json`` is newer than the
    checkpoint and was made with the same arguments. Book: notebook 06."""
    from . import checkpoint as ckpt
    from . import evaluate

    results_path = run.evaluation / "results.json"
    stamp_path = run.evaluation / "book_arguments.json"
    model = run.checkpoint / ckpt.MODEL_FILE
    arguments = {"config": json.loads(cfg.to_json()), **{k: repr(v) for k, v in kwargs.items()}}
    if (results_path.exists() and model.exists() and stamp_path.exists()
            and results_path.stat().st_mtime > model.stat().st_mtime
            and read_json(stamp_path) == arguments):
        return read_json(results_path)
    results = evaluate.evaluate(cfg, checkpoint=run.checkpoint, data_dir=run.data,
                                out_dir=run.evaluation, progress=progress, **kwargs)
    write_json(stamp_path, arguments)
    return results


# ----------------------------------------------------------------------------- the runner
def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise FileNotFoundError("jupyter-book: expected the command (pip install 'jupyter-book>=1,<2'), "
                            "found none")


def _failure_message(notebook: str, err, output: Path) -> str:
    cell = getattr(err, "cell_index", None)
    count = getattr(err, "exec_count", None)
    source = (getattr(err, "source", "") or "").strip().splitlines()
    first = next((line for line in source if line.strip() and not line.startswith("#")), "")
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    where = f"cell {cell}" if cell is not None else "a cell"
    if count is not None:
        where += f" (execution count {count})"
    return (f"{notebook}: {where} failed with {ename}: {str(evalue).strip()[:300]}"
            + (f"\n  the cell starts: {first[:120]}" if first else "")
            + f"\n  executed notebook with the error: {output}")


def execute(notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict,
            cwd: str | os.PathLike | None = None, progress: bool = True,
            kernel: str = KERNEL) -> float:
    """Execute one notebook with papermill; return its seconds. Raises :class:`NotebookFailed`."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            cwd=str(cwd or notebook.parent), progress_bar=progress,
                            log_output=False, report_mode=False)
    except PapermillExecutionError as err:
        raise NotebookFailed(_failure_message(notebook.name, err, output)) from None
    return time.perf_counter() - t0


def run(profile: str = "demo", run_dir: str | os.PathLike | None = None, html: bool = True,
        notebooks: Optional[Sequence[str]] = None, seed: int = 0, overrides: Optional[dict] = None,
        progress: bool = True, songlist: str | os.PathLike | None = None,
        popdb: str | os.PathLike | None = None, vae: str | os.PathLike | None = None,
        device: Optional[str] = None) -> dict:
    """Execute the book's notebooks in order with ``profile``, then build the HTML.

    Args:
        profile: ``smoke`` / ``demo`` / ``paper`` (injected as ``PROFILE``).
        run_dir: the run folder (injected as ``RUN_DIR``; default ``runs/<profile>``).
        html: build the HTML with ``jupyter-book build`` (execution off) afterwards.
        notebooks: names (or prefixes such as ``"03"``) of the notebooks to run; default all.
        seed, overrides: injected as ``SEED`` and ``OVERRIDES`` (configuration overrides,
            e.g. ``{"train__max_steps": 100}``; see :func:`samuel.config.load`).
        songlist: a song list CSV to collect the data from (injected as ``SONGLIST``).
        popdb: a folder holding the published POPDB's two arrays (injected as ``POPDB``).
        vae: a local SAO VAE folder: the override ``data__vae``.
        device: where torch runs (``auto``, ``cpu``, ``cuda``...): the override ``device``.

    A profile without an offline corpus (``paper``) needs ``songlist`` or ``popdb``; paths
    are made absolute, since the notebooks run in ``notebooks/``.

    Returns:
        ``dict(seconds={notebook: s}, total_seconds, executed=folder, html=index or None)``.
    """
    t_start = time.perf_counter()
    params = parameters(profile, run_dir=run_dir, seed=seed, overrides=overrides,
                        songlist=songlist, popdb=popdb, vae=vae, device=device)
    run = run_paths(profile, params["RUN_DIR"])
    names = _select(notebooks)
    out_dir = run.root / "book" / "notebooks"
    publish = (profile == "demo" and run.default and not params["OVERRIDES"] and int(seed) == 0
               and not params["SONGLIST"] and not params["POPDB"])
    seconds: dict[str, float] = {}
    print(f"book: {len(names)} notebook(s), profile {profile!r}, run folder {run.root}")
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", flush=True)
        try:
            seconds[name] = execute(NOTEBOOK_DIR / name, out_dir / name, params,
                                    cwd=NOTEBOOK_DIR, progress=progress)
        except NotebookFailed as err:
            print(f"book: stopped. {err}", file=sys.stderr, flush=True)
            write_json(run.root / "book" / "timings.json", {"seconds": seconds, "failed": name})
            raise
        print(f"      {name}: {seconds[name]:.1f} s", flush=True)
        if publish:
            shutil.copyfile(out_dir / name, NOTEBOOK_DIR / name)
    summary = {"profile": profile, "seconds": {k: round(v, 1) for k, v in seconds.items()},
               "executed": str(out_dir), "html": None}
    if html:
        site = paths.ROOT if publish else _stage_site(run, out_dir)
        write_results_page(run, site / "book" / "results.md", profile)
        summary["html"] = str(build_html(site))
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(run.root / "book" / "timings.json", summary)
    _print_summary(summary)
    return summary


def parameters(profile: str, run_dir: str | os.PathLike | None = None, seed: int = 0,
               overrides: Optional[dict] = None, songlist: str | os.PathLike | None = None,
               popdb: str | os.PathLike | None = None, vae: str | os.PathLike | None = None,
               device: Optional[str] = None) -> dict:
    """The papermill parameters of every notebook: ``PROFILE, SEED, RUN_DIR, OVERRIDES,
    SONGLIST, POPDB``, checked before anything runs.

    ``vae`` becomes the override ``data__vae`` and ``device`` the override ``device``; the
    configuration they make is loaded once here, so a bad override fails now, not in a
    notebook. Paths (run folder, song list, POPDB, VAE) are made absolute.

    Raises:
        ValueError: both ``songlist`` and ``popdb``, or neither for a profile without an
            offline corpus; FileNotFoundError: a song list or POPDB folder that is not there.
    """
    from . import config

    overrides = dict(overrides or {})
    if vae:
        overrides["data__vae"] = str(Path(vae).expanduser().resolve())
    if device:
        overrides["device"] = str(device)
    cfg = config.load(profile, seed=seed, **overrides)
    if songlist and popdb:
        raise ValueError(f"songlist {songlist} and popdb {popdb}: expected one data source, "
                         "found both")
    if songlist and not Path(songlist).is_file():
        raise FileNotFoundError(f"{songlist}: expected a song list CSV (title, artist), found "
                                f"{'a folder' if Path(songlist).exists() else 'nothing'}")
    if popdb and not Path(popdb).is_dir():
        raise FileNotFoundError(f"{popdb}: expected a folder holding latent_vocal.npy and "
                                f"latent_accomp.npy, found {'a file' if Path(popdb).exists() else 'nothing'}")
    if not (songlist or popdb) and cfg.data.corpus_songs <= 0:
        raise ValueError(f"profile {profile!r} has no offline corpus (data.corpus_songs is "
                         f"{cfg.data.corpus_songs}): expected a song list (--songlist CSV) or "
                         "the published POPDB (--popdb DIR), found neither")

    def absolute(path) -> str:
        return str(Path(path).expanduser().resolve()) if path else ""

    return {"PROFILE": profile, "SEED": int(seed), "RUN_DIR": absolute(run_dir),
            "OVERRIDES": overrides, "SONGLIST": absolute(songlist), "POPDB": absolute(popdb)}


def _select(notebooks: Optional[Iterable[str]]) -> list[str]:
    if not notebooks:
        return list(NOTEBOOKS)
    names = []
    for want in notebooks:
        match = [n for n in NOTEBOOKS if n == want or n.startswith(str(want))]
        if len(match) != 1:
            raise ValueError(f"notebook {want!r}: expected one of {', '.join(NOTEBOOKS)}, "
                             f"found {len(match)} matches")
        names.append(match[0])
    return names


def _stage_site(run: RunPaths, executed: Path) -> Path:
    """A copy of the book in ``<run>/book/site`` whose notebooks are this run's."""
    site = run.root / "book" / "site"
    for name in BOOK_FILES:
        src, dst = paths.ROOT / name, site / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    (site / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in NOTEBOOKS:  # notebooks not executed in this run keep their committed version
        src = executed / name if (executed / name).exists() else NOTEBOOK_DIR / name
        if src.exists():
            shutil.copyfile(src, site / "notebooks" / name)
    return site


def build_html(site: str | os.PathLike = paths.ROOT) -> Path:
    """``jupyter-book build <site>`` (execution off, see ``_config.yml``); returns index.html."""
    site = Path(site)
    t0 = time.perf_counter()
    proc = subprocess.run(_jupyter_book() + ["build", str(site)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"jupyter-book build {site}: exit status {proc.returncode}\n{tail}")
    index = site / "_build" / "html" / "index.html"
    print(f"html: built in {time.perf_counter() - t0:.1f} s")
    return index


def _print_summary(summary: dict) -> None:
    print("\nnotebook                         seconds")
    for name, s in summary["seconds"].items():
        print(f"  {name:<30} {s:7.1f}")
    print(f"  {'total (with the HTML build)':<30} {summary['total_seconds']:7.1f}")
    if summary.get("html"):
        index = Path(summary["html"])
        print(f"\nthe book: {index}\nopen it: xdg-open {index}   (or open file://{index.resolve()} "
              "in a browser)")


# ----------------------------------------------------------------------------- results page
def write_results_page(run: RunPaths, out: str | os.PathLike, profile: str) -> Path:
    """Write ``book/results.md`` from the run's saved results (the evaluation when present)."""
    from . import __version__

    results = {}
    if run.results.is_dir():
        for path in sorted(run.results.glob("*.json")):
            results[path.stem] = read_json(path)
    lines = ["# Results", "",
             f"The numbers of the last `samuel book run --profile {profile}` (package "
             f"{__version__}), collected from the results cell at the end of each notebook. "
             "The figures, tables and audio are in the notebooks themselves; the evaluation "
             "in detail is {doc}`../notebooks/06_evaluation`.", ""]
    evaluation = run.evaluation / "results.json"
    if evaluation.exists():
        try:
            from . import evaluate

            table = evaluate.format_table(read_json(evaluation))
            lines += ["## Evaluation (design §7)", "", "```text", table.rstrip(), "```", ""]
        except Exception as err:  # the page is still written without the table
            lines += [f"(evaluation table unavailable: {type(err).__name__}: {err})", ""]
    if not results:
        lines += ["No results yet: run `samuel book run --profile demo`."]
    for stem, values in results.items():
        lines += [f"## {stem.replace('_', ' ', 1)}", "", "| result | value |", "|---|---|"]
        for k, v in values.items():
            if k == "profile":  # the heading's profile, not a result
                continue
            v = json.dumps(v) if isinstance(v, (list, dict)) else v
            lines.append(f"| {k} | {str(v).replace('|', '/')} |")
        lines.append("")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
