"""Chunking, song splits and the POPDB store (design §2, paper §III-C).

The POPDB layout is one folder per split holding two arrays whose row ``i`` is the same chunk:

    latent_vocal.npy    float32 [N, 64, chunk]   vocal latents
    latent_accomp.npy   float32 [N, 64, chunk]   accompaniment latents
    chunks.json         row -> song_id, offset frame, offset seconds   (ours; optional)

The published POPDB (Kaggle ``boyazhangnb/encodedsongs``, 15,713 x 64 x 1024, ~4 GB per file)
is just the two ``.npy`` files; :func:`load_popdb` reads it as-is, memory-mapped. It ships no
split: :func:`samuel.data.popdb.prepare` writes an *index* folder (``index.json`` of row ranges
per split and ``stats.json``) beside it, and :func:`open_split` reads a split of either layout,
ours (``popdb/<split>/``) or an index, as memory-mapped views (:class:`RowView`).
Book: notebook 01 (data) and "What differs from the paper" (the published POPDB's split).

Normalisation is a per-channel z-score (mean and std of each of the 64 channels over all rows
and frames) computed on the training split, one set per stem. :func:`channel_stats` computes it
block by block, so a 4 GB memmap never has to fit in memory; :func:`load_popdb` returns a
:class:`NormalisedArray` that normalises rows when they are read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..io import atomic_path, read_json, write_json

VOCAL_FILE = "latent_vocal.npy"  # POPDB's own file names (design §2)
ACCOMP_FILE = "latent_accomp.npy"
CHUNKS_FILE = "chunks.json"
STATS_FILE = "stats.json"
INDEX_FILE = "index.json"  # an index over the published POPDB (samuel.data.popdb.prepare)
INDEX_FORMAT = "samuel-popdb-index/1"
SPLITS = ("train", "val", "test")
STD_FLOOR = 1e-6  # a constant channel is divided by this instead of 0
_BLOCK_BYTES = 64 << 20  # rows read per block by channel_stats: about 64 MB


class PopdbError(ValueError):
    """A POPDB folder is missing a file or holds arrays of the wrong shape or dtype."""


# --------------------------------------------------------------------------- chunking


def chunk_latents(latents: np.ndarray, chunk_frames: int) -> np.ndarray:
    """Cut one song's latents into consecutive, non-overlapping chunks (paper §III-C).

    Args:
        latents: ``[C, T]`` latent frames of one song.
        chunk_frames: frames per chunk (1024 = 47.55 s in the paper).

    Returns:
        ``[T // chunk_frames, C, chunk_frames]``; the trailing short chunk is dropped, so a
        song shorter than one chunk gives an empty ``[0, C, chunk_frames]`` array.
    """
    latents = np.asarray(latents)
    if latents.ndim != 2:
        raise ValueError(f"chunk_latents: expected latents [C, T], found shape {latents.shape}")
    if chunk_frames <= 0:
        raise ValueError(f"chunk_latents: chunk_frames must be positive, found {chunk_frames}")
    channels, frames = latents.shape
    n = frames // chunk_frames
    used = latents[:, : n * chunk_frames]
    return np.ascontiguousarray(used.reshape(channels, n, chunk_frames).transpose(1, 0, 2))


def n_chunks(frames: int, chunk_frames: int) -> int:
    """How many whole chunks :func:`chunk_latents` cuts from ``frames`` frames."""
    return int(frames) // int(chunk_frames)


# --------------------------------------------------------------------------- splits


def split_songs(song_ids: Iterable[str], val_fraction: float, test_fraction: float,
                seed: int = 0) -> dict[str, list[str]]:
    """Split songs (not chunks) into train / val / test, so no song is on both sides.

    Deterministic: the result depends on the set of ids and the seed, not on their order.
    With at least 3 songs and positive fractions every split gets at least one song;
    the sizes are ``round(n * fraction)`` otherwise. Each list comes back sorted.
    """
    ids = sorted(set(song_ids))
    n = len(ids)
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [ids[i] for i in order]

    def size(fraction: float) -> int:
        k = int(round(n * fraction)) if fraction > 0 else 0
        if fraction > 0 and n >= 3:
            k = max(k, 1)
        return k

    n_val, n_test = size(val_fraction), size(test_fraction)
    while n_val + n_test > max(n - 1, 0) and (n_val or n_test):  # keep one training song
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    val = shuffled[:n_val]
    test = shuffled[n_val:n_val + n_test]
    train = shuffled[n_val + n_test:]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


# --------------------------------------------------------------------------- writing


def write_split(folder: str | os.PathLike, songs: Sequence[tuple[str, int]],
                load: Callable[[str], tuple[np.ndarray, np.ndarray]], chunk_frames: int,
                channels: int = 64, frames_per_second: float | None = None) -> int:
    """Write one POPDB split folder from per-song latents, one song in memory at a time.

    Args:
        folder: the split folder (created).
        songs: ``(song_id, n_frames)`` in the order their chunks are written.
        load: ``song_id -> (vocal [C, T], accomp [C, T])``.
        chunk_frames: frames per chunk.
        channels: latent channels ``C``.
        frames_per_second: the codec's frame rate, for the offsets in seconds.

    Returns:
        The number of chunks (rows) written. Each file is written atomically; ``chunks.json``
        is written last, so its presence means the folder is complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHUNKS_FILE).unlink(missing_ok=True)  # incomplete until rewritten
    total = sum(n_chunks(frames, chunk_frames) for _, frames in songs)
    shape = (total, channels, chunk_frames)
    rows: list[dict] = []
    with atomic_path(folder / VOCAL_FILE) as tmp_v, atomic_path(folder / ACCOMP_FILE) as tmp_a:
        out_v = np.lib.format.open_memmap(tmp_v, mode="w+", dtype=np.float32, shape=shape)
        out_a = np.lib.format.open_memmap(tmp_a, mode="w+", dtype=np.float32, shape=shape)
        row = 0
        for song_id, frames in songs:
            k = n_chunks(frames, chunk_frames)
            if k == 0:
                continue
            vocal, accomp = load(song_id)
            if vocal.shape != accomp.shape or vocal.shape[0] != channels:
                raise PopdbError(f"{song_id}: expected vocal and accomp latents [{channels}, T] "
                                 f"of one shape, found {vocal.shape} and {accomp.shape}")
            if vocal.shape[1] != frames:
                raise PopdbError(f"{song_id}: expected {frames} latent frames, "
                                 f"found {vocal.shape[1]}")
            out_v[row:row + k] = chunk_latents(vocal, chunk_frames)
            out_a[row:row + k] = chunk_latents(accomp, chunk_frames)
            for j in range(k):
                offset = j * chunk_frames
                rows.append({"row": row + j, "song_id": song_id, "offset_frame": offset,
                             "offset_seconds": (round(offset / frames_per_second, 4)
                                                if frames_per_second else None)})
            row += k
        out_v.flush()
        out_a.flush()
        del out_v, out_a
    write_json(folder / CHUNKS_FILE, {
        "count": total, "channels": channels, "chunk_frames": chunk_frames,
        "frames_per_second": frames_per_second, "rows": rows,
    })
    return total


def read_chunks(folder: str | os.PathLike) -> dict:
    """The ``chunks.json`` of a split folder written by :func:`write_split`."""
    path = Path(folder) / CHUNKS_FILE
    if not path.exists():
        raise PopdbError(f"{folder}: no {CHUNKS_FILE} (a published POPDB folder has none; "
                         "a folder of ours without it was not finished)")
    return read_json(path)


# --------------------------------------------------------------------------- statistics


def channel_stats(array: np.ndarray, block_rows: int | None = None,
                  desc: str | None = None) -> dict[str, list[float]]:
    """Per-channel mean and std of ``[N, C, T]`` latents over N and T, in bounded memory.

    Reads ``block_rows`` rows at a time (by default about 64 MB) and merges the blocks'
    means and squared deviations in float64 (Chan et al.'s parallel update), so a memory-mapped
    4 GB array is never loaded at once. The std is the population std (``ddof=0``), as
    ``np.std``. ``array`` may be anything indexable by row slices with a ``shape``
    (a memmap, a :class:`RowView`). With ``desc`` a progress bar of that name is shown.

    Returns:
        ``dict(mean=[C], std=[C])`` as lists of floats (JSON-ready).
    """
    if array.ndim != 3:
        raise ValueError(f"channel_stats: expected [N, C, T], found shape {array.shape}")
    n, c, t = array.shape
    if n == 0 or t == 0:
        raise ValueError(f"channel_stats: no data in an array of shape {array.shape}")
    if block_rows is None:
        block_rows = max(1, _BLOCK_BYTES // max(1, c * t * 8))
    count = 0
    mean = np.zeros(c, np.float64)
    m2 = np.zeros(c, np.float64)
    starts = range(0, n, block_rows)
    if desc is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="block")
    for start in starts:
        block = np.asarray(array[start:start + block_rows], dtype=np.float64)
        k = block.shape[0] * t
        b_mean = block.mean(axis=(0, 2))
        b_m2 = ((block - b_mean[None, :, None]) ** 2).sum(axis=(0, 2))
        delta = b_mean - mean
        total = count + k
        mean = mean + delta * (k / total)
        m2 = m2 + b_m2 + delta ** 2 * (count * k / total)
        count = total
    std = np.sqrt(m2 / count)
    return {"mean": [float(x) for x in mean], "std": [float(x) for x in std]}


def popdb_stats(folder: str | os.PathLike) -> dict:
    """Per-channel z-score statistics of one split folder, one set per stem.

    Returns:
        ``dict(vocal=dict(mean, std), accomp=dict(mean, std), rows=N)``.
    """
    vocals, accomp = load_popdb(folder, normalise=False)
    return {"vocal": channel_stats(vocals), "accomp": channel_stats(accomp),
            "rows": int(vocals.shape[0])}


def _stem_stats(stats: Mapping, stem: str) -> tuple[np.ndarray, np.ndarray]:
    s = stats[stem] if stem in stats else stats  # a single dict(mean, std) serves both stems
    if "mean" not in s or "std" not in s:
        raise PopdbError(f"normalisation stats: expected 'mean' and 'std' (or '{stem}' with "
                         f"them), found keys {sorted(stats)}")
    return np.asarray(s["mean"], np.float32), np.asarray(s["std"], np.float32)


def normalise(x: np.ndarray, stats: Mapping, stem: str) -> np.ndarray:
    """z-score ``[..., C, T]`` latents of ``stem`` ("vocal" or "accomp") with ``stats``."""
    mean, std = _stem_stats(stats, stem)
    return ((np.asarray(x, np.float32) - mean[:, None]) / np.maximum(std, STD_FLOOR)[:, None])


def denormalise(x: np.ndarray, stats: Mapping, stem: str) -> np.ndarray:
    """Undo :func:`normalise`: back to codec latents before decoding."""
    mean, std = _stem_stats(stats, stem)
    return np.asarray(x, np.float32) * np.maximum(std, STD_FLOOR)[:, None] + mean[:, None]


# --------------------------------------------------------------------------- reading


class NormalisedArray:
    """A read-only ``[N, C, T]`` view of a (memory-mapped) array, z-scored row by row on access.

    Indexing works like numpy's on the row axis (int, slice, list or array of ints, or a tuple
    whose first item picks rows); only the rows asked for are read and returned as float32.
    ``np.asarray(view)`` materialises everything: fine for small splits, not for POPDB.
    """

    def __init__(self, base: np.ndarray, mean: np.ndarray, std: np.ndarray):
        self.base = base
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        if self.mean.shape != (base.shape[1],) or self.std.shape != (base.shape[1],):
            raise PopdbError(f"normalisation stats: expected {base.shape[1]} channels, found "
                             f"mean {self.mean.shape} and std {self.std.shape}")
        self._scale = 1.0 / np.maximum(self.std, STD_FLOOR)[:, None]

    shape = property(lambda self: self.base.shape)
    ndim = property(lambda self: 3)
    dtype = property(lambda self: np.dtype(np.float32))

    def __len__(self) -> int:
        return self.base.shape[0]

    def __getitem__(self, index):
        rest: tuple = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        rows = (np.asarray(self.base[index], np.float32) - self.mean[:, None]) * self._scale
        if rest:
            lead = () if np.ndim(index) == 0 and not isinstance(index, slice) else (slice(None),)
            rows = rows[lead + rest]
        return rows

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"NormalisedArray(shape={self.shape}, dtype=float32)"


def _open(folder: Path, name: str) -> np.ndarray:
    path = folder / name
    if not path.exists():
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise PopdbError(f"{folder}: missing {name} (a POPDB folder holds {VOCAL_FILE} and "
                         f"{ACCOMP_FILE}; found {present or 'nothing'})")
    try:
        array = np.load(path, mmap_mode="r")
    except Exception as e:  # truncated or not an .npy file
        raise PopdbError(f"{path}: expected a .npy array, could not read it ({e})") from e
    if array.ndim != 3:
        raise PopdbError(f"{path}: expected 3 dimensions [N, C, T], found shape {array.shape}")
    if array.dtype != np.float32:
        raise PopdbError(f"{path}: expected float32, found {array.dtype}")
    return array


def find_stats(folder: str | os.PathLike) -> dict | None:
    """The ``stats.json`` beside a split (``popdb/stats.json``) or inside it, if any."""
    folder = Path(folder)
    for path in (folder / STATS_FILE, folder.parent / STATS_FILE):
        if path.exists():
            return read_json(path)
    return None


def load_popdb(folder: str | os.PathLike, normalise: bool = True, stats: Mapping | None = None):
    """Open a POPDB split folder, ours or the published one, memory-mapped (design §2).

    Args:
        folder: a folder with ``latent_vocal.npy`` and ``latent_accomp.npy``.
        normalise: z-score each channel (design §2). False returns the raw memmaps.
        stats: ``dict(vocal=dict(mean, std), accomp=dict(mean, std))`` (or one ``dict(mean,
            std)`` for both stems), normally the training split's. When None, the
            ``stats.json`` written by the pipeline (in ``folder`` or its parent) is used, and
            failing that the folder's own statistics are computed (the published POPDB is one
            training folder, so that is its training split's).

    Returns:
        ``(vocals, accomp)``, each ``[N, C, T]``: read-only float32 memmaps, or
        :class:`NormalisedArray` views that normalise the rows read, so that the 4 GB files of
        the paper's POPDB are never loaded at once.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PopdbError(f"{folder}: expected a POPDB folder, found "
                         f"{'a file' if folder.exists() else 'nothing'}")
    vocals = _open(folder, VOCAL_FILE)
    accomp = _open(folder, ACCOMP_FILE)
    if vocals.shape != accomp.shape:
        raise PopdbError(f"{folder}: {VOCAL_FILE} and {ACCOMP_FILE} must have one shape "
                         f"(row i of both is the same chunk), found {vocals.shape} and "
                         f"{accomp.shape}")
    if not normalise:
        return vocals, accomp
    if stats is None:
        stats = find_stats(folder)
    if stats is None:
        stats = {"vocal": channel_stats(vocals), "accomp": channel_stats(accomp)}
    return (NormalisedArray(vocals, *_stem_stats(stats, "vocal")),
            NormalisedArray(accomp, *_stem_stats(stats, "accomp")))


# --------------------------------------------------------------------------- splits of either layout


class RowView:
    """A read-only ``[n, C, T]`` view of the rows ``rows`` of an ``[N, C, T]`` (memory-mapped) array.

    Nothing is copied when the view is made: it holds the base array and an int64 row index.
    Indexing works like numpy's on the row axis (int, slice, list or array of ints, or a tuple
    whose first item picks rows) and reads only the rows asked for; a slice whose rows are
    contiguous in the base is a view of the memmap, anything else a copy of just those rows.
    ``np.asarray(view)`` materialises every row: fine for small splits, not for POPDB.

    Args:
        base: ``[N, C, T]`` array (normally a read-only ``np.memmap``).
        rows: indices into ``base``'s first axis, each in ``[0, N)``.
    """

    def __init__(self, base: np.ndarray, rows: Sequence[int] | np.ndarray):
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= base.shape[0]):
            raise PopdbError(f"row index: expected rows in [0, {base.shape[0]}), found "
                             f"[{self.rows.min()}, {self.rows.max()}]")

    shape = property(lambda self: (int(self.rows.size), *self.base.shape[1:]))
    ndim = property(lambda self: self.base.ndim)
    dtype = property(lambda self: self.base.dtype)

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index):
        rest: tuple = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, slice):
            sel = self.rows[index]
            if sel.size and index.step in (None, 1) and sel[-1] - sel[0] == sel.size - 1:
                out = self.base[sel[0]:sel[-1] + 1]  # contiguous: a view, no copy
            else:
                out = self.base[sel]
            return out[(slice(None),) + rest] if rest else out
        if np.ndim(index) == 0:
            return self.base[(int(self.rows[int(index)]),) + rest]
        return self.base[(self.rows[np.asarray(index)],) + rest]

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.base[self.rows])
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"RowView(shape={self.shape}, dtype={self.dtype}, base={self.base.shape})"


def read_index(folder: str | os.PathLike) -> dict | None:
    """The ``index.json`` of an index folder written by :func:`samuel.data.popdb.prepare`, or
    None when ``folder`` holds none (a POPDB folder of ours)."""
    path = Path(folder) / INDEX_FILE
    if not path.exists():
        return None
    try:
        index = read_json(path)
    except ValueError as e:
        raise PopdbError(f"{path}: expected a POPDB index (JSON), could not read it ({e})") from e
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise PopdbError(f"{path}: expected a POPDB index of format {INDEX_FORMAT!r}, found {found!r}")
    return index


def index_rows(index: Mapping, split: str) -> np.ndarray:
    """The source rows of ``split`` in an index, ascending: ``[n]`` int64 (from its row ranges)."""
    if split not in index["splits"]:
        raise PopdbError(f"{INDEX_FILE}: expected a {split!r} split, found {sorted(index['splits'])}")
    ranges = index["splits"][split]["ranges"]
    if not ranges:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])


def _index_arrays(folder: Path, index: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """The published arrays an index points at, checked against the shape it was written for."""
    source = Path(index["source"])
    try:
        vocals, accomp = load_popdb(source, normalise=False)
    except PopdbError as e:
        raise PopdbError(f"{folder / INDEX_FILE} points at the published POPDB in {source}: {e}; "
                         "re-run `samuel data popdb` on where the arrays are now") from e
    for name, array in ((VOCAL_FILE, vocals), (ACCOMP_FILE, accomp)):
        if list(array.shape) != list(index["shape"]):
            raise PopdbError(f"{source / name}: expected shape {tuple(index['shape'])} (as when "
                             f"{folder / INDEX_FILE} was written), found {array.shape}; re-run "
                             "`samuel data popdb`")
    return vocals, accomp


def _listing(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()) if folder.is_dir() else []
    return ", ".join(names[:12]) + (" ..." if len(names) > 12 else "") if names else "nothing"


def open_split(popdb_dir: str | os.PathLike, split: str, normalise: bool = True,
               stats: Mapping | None = None):
    """Open one split of a POPDB, ours (``popdb_dir/<split>/``) or an index folder, memory-mapped.

    Args:
        popdb_dir: a POPDB folder of ours (``train/ val/ test/`` and ``stats.json``) or an index
            folder written by :func:`samuel.data.popdb.prepare` (``index.json``, ``stats.json``).
        split: "train", "val" or "test".
        normalise: z-score each channel; False returns the raw rows.
        stats: the z-score statistics (normally the training split's); when None, the saved
            ones (``stats.json``), and for an index without them the training rows' own.

    Returns:
        ``(vocals, accomp)``, each ``[n, C, T]``: read-only memmaps (ours) or :class:`RowView`
        over the published memmaps (an index), wrapped in :class:`NormalisedArray` when
        ``normalise``. No array is copied or loaded whole.
    """
    popdb_dir = Path(popdb_dir)
    if split not in SPLITS:
        raise ValueError(f"open_split: expected a split of {', '.join(SPLITS)}, found {split!r}")
    index = read_index(popdb_dir)
    if index is None:
        if not (popdb_dir / split).is_dir():
            raise PopdbError(f"{popdb_dir}: expected a {split} split ({split}/ holding {VOCAL_FILE} "
                             f"and {ACCOMP_FILE}, or an {INDEX_FILE} written by `samuel data "
                             f"popdb`), found {_listing(popdb_dir)}")
        return load_popdb(popdb_dir / split, normalise=normalise, stats=stats)
    vocals, accomp = _index_arrays(popdb_dir, index)
    rows = index_rows(index, split)
    v, a = RowView(vocals, rows), RowView(accomp, rows)
    if not normalise:
        return v, a
    if stats is None:
        stats = train_stats(popdb_dir)
    return (NormalisedArray(v, *_stem_stats(stats, "vocal")),
            NormalisedArray(a, *_stem_stats(stats, "accomp")))


def split_info(popdb_dir: str | os.PathLike, split: str) -> dict:
    """What is known about the rows of one split: song, offset, and whether song audio exists.

    Returns:
        ``dict(layout, count, chunk_frames, frames_per_second, rows, has_audio, songs_dir)``.
        ``rows[i]`` is ``dict(row, song_id, offset_frame, offset_seconds)`` for row ``i`` of the
        split. For a POPDB of ours they come from ``chunks.json`` and ``songs_dir`` is the
        ``songs/`` folder beside ``popdb/`` when there is one. For an index over the published
        POPDB, which has no song ids, ``song_id`` is the row's block (``block_00012``),
        ``offset_frame`` counts from the block's first row, ``offset_seconds`` is None,
        ``source_row`` is the row in the published arrays, and there is no audio.
    """
    popdb_dir = Path(popdb_dir)
    index = read_index(popdb_dir)
    if index is None:
        if not (popdb_dir / split).is_dir():
            raise PopdbError(f"{popdb_dir}: expected a {split} split ({split}/ with {CHUNKS_FILE}), "
                             f"found {_listing(popdb_dir)}")
        chunks = read_chunks(popdb_dir / split)
        songs = popdb_dir.parent / "songs"
        ids = {r["song_id"] for r in chunks["rows"]}
        has_audio = songs.is_dir() and any((songs / s).is_dir() for s in ids)
        return {"layout": "popdb", "folder": str(popdb_dir), "count": int(chunks["count"]),
                "chunk_frames": chunks.get("chunk_frames"),
                "frames_per_second": chunks.get("frames_per_second"), "rows": chunks["rows"],
                "has_audio": bool(has_audio), "songs_dir": str(songs) if songs.is_dir() else None}
    block, frames = int(index["block_rows"]), int(index["shape"][2])
    rows = []
    for i, r in enumerate(index_rows(index, split).tolist()):
        b = r // block
        rows.append({"row": i, "source_row": r, "song_id": f"block_{b:05d}",
                     "offset_frame": (r - b * block) * frames, "offset_seconds": None})
    return {"layout": "published POPDB index", "folder": str(popdb_dir), "source": index["source"],
            "count": len(rows), "chunk_frames": frames, "frames_per_second": None, "rows": rows,
            "has_audio": False, "songs_dir": None}


def saved_stats(popdb_dir: str | os.PathLike) -> dict | None:
    """The saved training statistics of a POPDB folder (ours or an index), or None.

    For an index, its ``stats.json`` counts only when written for this very index (the same
    ``index_key``); for ours, ``stats.json`` in ``popdb_dir`` (or its parent).
    """
    popdb_dir = Path(popdb_dir)
    index = read_index(popdb_dir)
    if index is None:
        return find_stats(popdb_dir)
    path = popdb_dir / STATS_FILE
    if path.exists():
        stats = read_json(path)
        if stats.get("index_key") == index["key"]:
            return stats
    return None


def train_stats(popdb_dir: str | os.PathLike, progress: bool = False) -> dict:
    """The per-channel z-score statistics of the training split, computed in bounded memory.

    Saved ones are used when there are (:func:`saved_stats`); otherwise they are computed
    block by block over the training rows only (:func:`channel_stats`). For an index folder
    they are then cached in its ``stats.json``; a folder of ours is left as it is (its
    ``stats.json`` belongs to the data stage).

    Returns:
        ``dict(vocal=dict(mean, std), accomp=dict(mean, std), rows=N, split="train")``.
    """
    popdb_dir = Path(popdb_dir)
    index = read_index(popdb_dir)
    if index is None:
        return find_stats(popdb_dir / "train") or popdb_stats(popdb_dir / "train")
    stats = saved_stats(popdb_dir)
    if stats is not None:
        return stats
    vocals, accomp = open_split(popdb_dir, "train", normalise=False)
    stats = {"vocal": channel_stats(vocals, desc="stats: vocal" if progress else None),
             "accomp": channel_stats(accomp, desc="stats: accomp" if progress else None),
             "rows": len(vocals), "split": "train", "index_key": index["key"]}
    write_json(popdb_dir / STATS_FILE, stats)
    return stats
