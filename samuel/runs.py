"""The folders of a run and the work every notebook of the book does once.

* Run folders: :class:`RunPaths` (``runs/<profile>`` or any ``run_dir``), and :func:`record`,
  which each notebook's last cell calls: it prints the key results rounded (what nbval compares)
  and saves them to ``<run>/results/<notebook>.json``.
* The run's data: the offline corpus (songs/<id>/ with a musical truth), a song list
  (audio/<id>.wav downloads, stems/<id>/ separated, no truth) or the published POPDB (an index
  over its two arrays: no songs, no audio); :func:`data_kind`, :func:`song_splits`,
  :func:`example_song`, :func:`provenance` ... let every notebook read the three alike.
* Work done once: :func:`train_once` and :func:`evaluate_once` reuse a finished run of the same
  configuration (:func:`training_fields`: another device or VAE folder is the same training).

Nothing here displays anything; what the notebooks show is :mod:`samuel.show`.

Book: "Reproduce it" (run folders, skipping work done); every notebook's first and last cells.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import paths
from .audio import SAMPLE_RATE
from .io import read_json, to_jsonable, write_json


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
# Fields that say where a run happens (this machine's device and VAE folder), not what it
# computes: a training run is the same without them (training_fields), and
# samuel.show.config_lines shows them on a line of their own, only where they matter.
WHERE_FIELDS = {"data": ("vae", "vae_half")}


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
        from .config import from_dict

        # through the dataclasses: fields added since the checkpoint was written take their
        # defaults (which keep the old behaviour), so the same training is still recognised
        saved = json.loads(from_dict(ckpt.load_meta(folder).get("config")).to_json())
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


def data_results(cfg, summary: dict, provenance_: dict, splits: dict) -> dict:
    """What notebook 01 records (:func:`record`): songs, failures, chunks per split, seconds per
    chunk, and whether no song is in two splits. ``summary`` is the data build's, ``provenance_``
    :func:`provenance`'s, ``splits`` :func:`song_splits`'s (split -> song ids)."""
    songs = [s for ids in splits.values() for s in ids]
    return {"songs": summary["songs"], "failed": summary["counts"]["failed"],
            **{f"chunks_{k}": summary["chunks"][k] for k in ("train", "val", "test")},
            "chunk_seconds": cfg.data.chunk_frames / provenance_["codec"]["frames_per_second"],
            "splits_disjoint": len(set(songs)) == len(songs)}
