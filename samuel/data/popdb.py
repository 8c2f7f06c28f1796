"""The published POPDB as it is: find it, check it, split it by blocks of rows, download it.

The paper's POPDB (Kaggle ``boyazhangnb/encodedsongs``) is two float32 arrays,
``latent_vocal.npy`` and ``latent_accomp.npy`` of shape ``[15713, 64, 1024]`` (about 4 GB each),
row ``i`` of both being the same 47.55 s chunk. It ships no split and no song ids, but its
consecutive rows are consecutive chunks of one song. :func:`prepare` therefore splits it by
contiguous blocks of :data:`BLOCK_ROWS` rows, assigned to train / validation / test at random
(seeded, ``cfg.data.val_fraction`` / ``cfg.data.test_fraction`` of the blocks), and writes an
*index folder*: ``index.json`` (the row ranges of each split) and ``stats.json`` (per-channel
z-score statistics of the training rows). Nothing is copied: training and evaluation read the
published memmaps through the index (:func:`samuel.data.store.open_split`).

    samuel data popdb DIR [--out OUT] [--block-rows 64] [--download]

Book: notebook 01 (data) and "What differs from the paper" (what leakage a block split leaves).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import write_json
from . import store
from .store import ACCOMP_FILE, INDEX_FILE, INDEX_FORMAT, SPLITS, STATS_FILE, VOCAL_FILE, PopdbError

# Rows per block of the split. 64 rows are 50.7 min of audio, about 14 songs of 4-5 chunks:
# small enough for ~25 test blocks from the paper's 15,713 rows (a test set spread over the
# whole collection), large enough that only ~5 % of the test rows share a song with training
# rows across a block boundary (book: "What differs from the paper").
BLOCK_ROWS = 64
KAGGLE_HANDLE = "boyazhangnb/encodedsongs"  # the paper's reference [16]
PUBLISHED_ROWS = 15713  # rows of the published arrays (paper §III-C)
SONG_CHUNKS = (3, 6)  # assumed chunks per song for the leakage estimate: 2.4-5.5 min songs


class DownloadUnavailable(PopdbError):
    """POPDB cannot be downloaded here: no kagglehub, no network, or no Kaggle token."""


# --------------------------------------------------------------------------- finding and checking


def find_published(src: str | os.PathLike) -> Path:
    """The folder holding the published arrays: ``src`` itself or its one subfolder that does
    (Kaggle downloads sometimes unpack one folder down).

    Raises:
        PopdbError: ``src`` is not a folder, holds neither array (nor does any subfolder), or
            several subfolders hold them.
    """
    src = Path(src)
    if not src.is_dir():
        raise PopdbError(f"{src}: expected a folder holding {VOCAL_FILE} and {ACCOMP_FILE} (the "
                         f"published POPDB), found {'a file' if src.exists() else 'nothing'}")

    def holds(folder: Path) -> bool:
        return (folder / VOCAL_FILE).exists() or (folder / ACCOMP_FILE).exists()

    if holds(src):
        return src
    found = [d for d in sorted(src.iterdir()) if d.is_dir() and holds(d)]
    if len(found) == 1:
        return found[0]
    if found:
        raise PopdbError(f"{src}: expected one folder holding {VOCAL_FILE} and {ACCOMP_FILE}, "
                         f"found {len(found)}: {', '.join(d.name for d in found)}")
    raise PopdbError(f"{src}: expected {VOCAL_FILE} and {ACCOMP_FILE} (the published POPDB) here "
                     f"or one folder down, found {store._listing(src)}")


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(x)) for x in shape) + "]"


def check_published(folder: str | os.PathLike, channels: int = 64,
                    chunk_frames: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Open the two published arrays memory-mapped and check their dtype and shapes.

    Args:
        folder: the folder holding ``latent_vocal.npy`` and ``latent_accomp.npy``.
        channels: expected latent channels (64 for the SAO VAE).
        chunk_frames: expected frames per row (1024 in the paper; the profile's chunk length).

    Returns:
        ``(vocals, accomp)``: read-only float32 memmaps ``[N, channels, chunk_frames]``.

    Raises:
        PopdbError: naming the file, what was expected and what was found.
    """
    folder = Path(folder)
    want = f"float32 [N, {channels}, {chunk_frames}]"
    arrays = []
    for name in (VOCAL_FILE, ACCOMP_FILE):
        path = folder / name
        if not path.exists():
            raise PopdbError(f"{path}: expected the published POPDB's {name} ({want}), found "
                             f"nothing (the folder holds {store._listing(folder)})")
        if path.stat().st_size == 0:
            raise PopdbError(f"{path}: expected a .npy array {want}, found an empty file (0 bytes)")
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as e:  # truncated, or not an .npy file
            raise PopdbError(f"{path}: expected a .npy array {want}, found a file numpy cannot "
                             f"read ({type(e).__name__}: {e})") from e
        ok = (array.dtype == np.float32 and array.ndim == 3 and array.shape[1] == channels
              and array.shape[2] == chunk_frames)
        if not ok:
            raise PopdbError(f"{path}: expected {want}, found {array.dtype} {_shape(array.shape)}")
        if array.shape[0] == 0:
            raise PopdbError(f"{path}: expected at least one row ({want}), found "
                             f"{_shape(array.shape)}")
        arrays.append(array)
    vocals, accomp = arrays
    if vocals.shape[0] != accomp.shape[0]:
        raise PopdbError(f"{folder}: expected {VOCAL_FILE} and {ACCOMP_FILE} with one row count "
                         f"(row i of both is the same chunk), found {vocals.shape[0]} and "
                         f"{accomp.shape[0]} rows")
    return vocals, accomp


# --------------------------------------------------------------------------- the block split


def block_split(n_rows: int, block_rows: int, val_fraction: float, test_fraction: float,
                seed: int = 0) -> dict[str, list[int]]:
    """Assign contiguous blocks of rows to train / val / test, seeded.

    Block ``b`` holds rows ``[b * block_rows, min((b + 1) * block_rows, n_rows))`` (the last
    one may be shorter). Blocks are split like songs (:func:`samuel.data.store.split_songs`):
    ``round(n_blocks * fraction)`` blocks each, at least one per split with a positive
    fraction, at least one for training.

    Returns:
        ``{split: [block ids, ascending]}``.
    """
    if block_rows <= 0:
        raise ValueError(f"block_split: expected a positive block size, found {block_rows}")
    n_blocks = -(-int(n_rows) // int(block_rows))
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n_blocks < needed:
        raise PopdbError(f"expected at least {needed} blocks of {block_rows} rows for the "
                         f"train/val/test split, found {n_rows} rows ({n_blocks} block(s)); use "
                         "smaller blocks (--block-rows)")
    names = [f"{b:07d}" for b in range(n_blocks)]  # zero-padded: sorted as numbers
    parts = store.split_songs(names, val_fraction, test_fraction, seed=seed)
    return {s: sorted(int(b) for b in parts[s]) for s in SPLITS}


def block_ranges(blocks: Sequence[int], block_rows: int, n_rows: int) -> list[list[int]]:
    """Row ranges ``[[start, stop), ...]`` of the given blocks, adjacent blocks merged."""
    out: list[list[int]] = []
    for b in sorted(blocks):
        start, stop = b * block_rows, min((b + 1) * block_rows, n_rows)
        if out and out[-1][1] == start:
            out[-1][1] = stop
        else:
            out.append([start, stop])
    return out


def shared_rows(split_of_row: np.ndarray, song_of_row: np.ndarray) -> dict:
    """Exact leakage of a split for a known song of every row.

    Args:
        split_of_row: ``[N]`` split index of each row (0 train, 1 val, 2 test).
        song_of_row: ``[N]`` song index of each row (consecutive rows of one song).

    Returns:
        ``val_rows_with_train_song`` / ``test_rows_with_train_song``: the fraction of the
        validation / test rows whose song also has rows in the training split;
        ``test_rows_with_other_song``: of the test rows whose song also has rows in another
        split; ``songs_split`` / ``songs``: songs with rows in more than one split / all songs.
    """
    split_of_row = np.asarray(split_of_row, np.int64)
    _, song = np.unique(np.asarray(song_of_row), return_inverse=True)
    counts = np.zeros((int(song.max()) + 1 if song.size else 0, 3), np.int64)
    np.add.at(counts, (song, split_of_row), 1)
    present = counts > 0
    in_train = present[song, 0]
    mixed = present.sum(axis=1) > 1

    def frac(mask: np.ndarray) -> float:
        return float(mask.mean()) if mask.size else float("nan")

    return {"val_rows_with_train_song": frac(in_train[split_of_row == 1]),
            "test_rows_with_train_song": frac(in_train[split_of_row == 2]),
            "test_rows_with_other_song": frac(mixed[song][split_of_row == 2]),
            "songs_split": int(mixed.sum()), "songs": int(len(counts))}


def leakage_estimate(blocks: Mapping[str, Sequence[int]], n_rows: int, block_rows: int,
                     song_chunks: tuple[int, int] = SONG_CHUNKS, trials: int = 20,
                     seed: int = 0) -> dict:
    """How much a block split leaks, for songs of unknown length: a simulation.

    The published POPDB has no song ids, so songs are drawn: lengths uniform in
    ``song_chunks`` (chunks, inclusive), laid end to end from a random phase, ``trials``
    times; :func:`shared_rows` of each draw against the actual split, averaged.

    Returns:
        :func:`shared_rows`' fields (means over the trials), with ``song_chunks``,
        ``trials`` and ``block_rows``.
    """
    split_of_row = np.zeros(n_rows, np.int64)
    for k, name in enumerate(SPLITS):
        for a, b in block_ranges(blocks[name], block_rows, n_rows):
            split_of_row[a:b] = k
    lo, hi = song_chunks
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(trials):
        lengths = rng.integers(lo, hi + 1, size=n_rows // lo + 2)
        song = np.repeat(np.arange(lengths.size), lengths)
        phase = int(rng.integers(0, lengths[0]))
        draws.append(shared_rows(split_of_row, song[phase:phase + n_rows]))
    out = {k: float(np.nanmean([d[k] for d in draws])) for k in draws[0]}
    return out | {"song_chunks": list(song_chunks), "trials": trials, "block_rows": block_rows}


# --------------------------------------------------------------------------- the index


def default_out(cfg) -> Path:
    """Where ``samuel data popdb`` writes its index by default: ``runs/<profile>/data/popdb``."""
    from ..paths import run_dir

    return run_dir(cfg.profile) / "data" / "popdb"


def _key(index: Mapping) -> str:
    body = json.dumps({k: v for k, v in index.items() if k != "key"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def prepare(src: str | os.PathLike, out: str | os.PathLike | None = None, cfg=None,
            block_rows: int | None = None, progress: bool = True) -> dict:
    """Index the published POPDB in ``src`` for training and evaluation (no copy of the arrays).

    Checks the arrays (:func:`check_published`), splits their rows by seeded contiguous
    blocks (:func:`block_split`; seed ``cfg.seed``, fractions ``cfg.data.val_fraction`` and
    ``cfg.data.test_fraction``), computes the per-channel statistics of the training rows in
    bounded memory and writes ``out/stats.json`` then ``out/index.json`` (last: its presence
    means the folder is complete), atomically. Idempotent: an index already in ``out`` for the
    same arrays and parameters is kept, statistics included.

    Args:
        src: the folder holding the two published arrays (or its parent, one folder up).
        out: the index folder (default ``runs/<profile>/data/popdb``); it may not hold a POPDB
            built by ``samuel data build``.
        cfg: the configuration (default the ``paper`` profile); its ``data.chunk_frames`` and
            ``model.latent_channels`` are the expected row shape.
        block_rows: rows per block (default: that of an index of the same arrays already in
            ``out``, else :data:`BLOCK_ROWS`).
        progress: show progress bars while computing the statistics.

    Returns:
        A summary: ``source``, ``out``, ``shape``, ``rows`` and ``blocks`` per split,
        ``block_rows``, ``seed``, ``cached``, ``stats_seconds`` and the ``leakage`` estimate
        (:func:`leakage_estimate`).
    """
    import time

    if cfg is None:
        from .. import config

        cfg = config.load("paper")
    folder = find_published(src).resolve()
    vocals, accomp = check_published(folder, cfg.model.latent_channels, cfg.data.chunk_frames)
    out = Path(out) if out is not None else default_out(cfg)
    for s in SPLITS:
        if (out / s / VOCAL_FILE).exists():
            raise PopdbError(f"{out}: expected an empty folder or an index written by `samuel data "
                             f"popdb`, found a POPDB built by `samuel data build` ({s}/{VOCAL_FILE}); "
                             "choose another --out")
    previous = store.read_index(out) if out.is_dir() else None
    if block_rows is None:
        same = previous is not None and previous.get("source") == str(folder)
        block_rows = int(previous["block_rows"]) if same else BLOCK_ROWS
    n = int(vocals.shape[0])
    blocks = block_split(n, block_rows, cfg.data.val_fraction, cfg.data.test_fraction, cfg.seed)
    index = {
        "format": INDEX_FORMAT, "source": str(folder),
        "files": {name: {"bytes": (folder / name).stat().st_size} for name in (VOCAL_FILE, ACCOMP_FILE)},
        "shape": [int(x) for x in vocals.shape], "dtype": "float32",
        "block_rows": int(block_rows), "n_blocks": -(-n // int(block_rows)), "seed": int(cfg.seed),
        "val_fraction": float(cfg.data.val_fraction), "test_fraction": float(cfg.data.test_fraction),
        "splits": {s: {"rows": sum(b - a for a, b in block_ranges(blocks[s], block_rows, n)),
                       "blocks": blocks[s], "ranges": block_ranges(blocks[s], block_rows, n)}
                   for s in SPLITS},
    }
    index["key"] = _key(index)
    cached = (previous is not None and previous.get("key") == index["key"]
              and store.saved_stats(out) is not None)
    t0 = time.perf_counter()
    if not cached:
        out.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"indexing the published POPDB in {folder} ({n} rows) into {out}", file=sys.stderr)
        rows = store.index_rows(index, "train")
        stats = {"vocal": store.channel_stats(store.RowView(vocals, rows),
                                              desc="stats: vocal" if progress else None),
                 "accomp": store.channel_stats(store.RowView(accomp, rows),
                                               desc="stats: accomp" if progress else None),
                 "rows": int(rows.size), "split": "train", "index_key": index["key"]}
        write_json(out / STATS_FILE, stats)
        write_json(out / INDEX_FILE, index)
    return {"source": str(folder), "out": str(out), "shape": index["shape"],
            "rows": {s: index["splits"][s]["rows"] for s in SPLITS},
            "blocks": {s: len(blocks[s]) for s in SPLITS}, "block_rows": int(block_rows),
            "seed": int(cfg.seed), "cached": bool(cached),
            "stats_seconds": round(time.perf_counter() - t0, 3),
            "leakage": leakage_estimate(blocks, n, block_rows, seed=cfg.seed)}


def format_summary(summary: Mapping) -> str:
    """What ``samuel data popdb`` prints."""
    n, c, t = summary["shape"]
    lk = summary["leakage"]
    lines = [f"POPDB index in {summary['out']} over {summary['source']}",
             f"  {n:,} rows of float32 [{c}, {t}], memory-mapped, nothing copied"
             + (" (already indexed)" if summary["cached"] else "")]
    for s in SPLITS:
        lines.append(f"  {s:<5} {summary['rows'][s]:>7,} rows in {summary['blocks'][s]:>4} blocks")
    lines.append(f"  blocks of {summary['block_rows']} rows assigned with seed {summary['seed']}; "
                 f"per-channel statistics of the training rows in {STATS_FILE}")
    lo, hi = lk["song_chunks"]
    lines.append(f"  leakage estimate (songs of {lo}-{hi} chunks): "
                 f"{100 * lk['test_rows_with_train_song']:.1f} % of test rows and "
                 f"{100 * lk['val_rows_with_train_song']:.1f} % of validation rows share a song "
                 "with training rows (across block boundaries)")
    return "\n".join(lines)


def resolve(path: str | os.PathLike, cfg=None) -> Path:
    """The POPDB folder that :func:`samuel.data.store.open_split` reads, from what a user passes.

    ``path`` may be a data folder of ours (holding ``popdb/``), a POPDB folder of ours
    (``train/ val/ test/``), an index folder written by :func:`prepare`, or the published
    folder itself (two arrays, here or one folder down), which is then prepared on the fly
    into :func:`default_out` (kept there: a second call finds it done).
    """
    path = Path(path)
    for folder in (path, path / "popdb"):
        if store.read_index(folder) is not None or any((folder / s).is_dir() for s in SPLITS):
            return folder
    try:
        find_published(path)
    except PopdbError:
        raise PopdbError(f"{path}: expected a POPDB folder (train/ val/ test/ from `samuel data "
                         f"build`, an {INDEX_FILE} from `samuel data popdb`, or the published "
                         f"{VOCAL_FILE} + {ACCOMP_FILE}), found "
                         f"{store._listing(path) if path.is_dir() else 'nothing'}") from None
    return Path(prepare(path, cfg=cfg)["out"])


# --------------------------------------------------------------------------- download


def download(dest: str | os.PathLike | None = None) -> Path:
    """Download the published POPDB from Kaggle with ``kagglehub`` (about 8 GB).

    Args:
        dest: the folder to download into; default kagglehub's cache
            (``~/.cache/kagglehub``), where a second call finds it.

    Returns:
        The folder kagglehub reports (holding the arrays, possibly one folder down).

    Raises:
        DownloadUnavailable: in one sentence, when kagglehub is not installed or the download
            fails (no network, no Kaggle token, ...).
    """
    try:
        import kagglehub
    except ImportError:
        raise DownloadUnavailable(
            f"the kagglehub package is not installed, so {KAGGLE_HANDLE} cannot be downloaded "
            "(pip install 'samuel[popdb]', or download it yourself and run `samuel data popdb "
            "DIR`)") from None
    kw = {"output_dir": str(dest)} if dest is not None else {}
    try:
        path = kagglehub.dataset_download(KAGGLE_HANDLE, **kw)
    except Exception as e:  # no network, no token, refused: one sentence
        detail = " ".join(str(e).split())[:200]
        raise DownloadUnavailable(
            f"could not download {KAGGLE_HANDLE} from Kaggle ({type(e).__name__}: {detail}); it "
            "needs the network and, where Kaggle asks for one, a token (KAGGLE_USERNAME and "
            "KAGGLE_KEY, or ~/.kaggle/kaggle.json); otherwise download it yourself and run "
            "`samuel data popdb DIR`") from e
    return Path(path)
