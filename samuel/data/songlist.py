"""Song lists: a CSV of songs to collect (design §2, paper §III-C).

The paper drew its songs from Kaggle's "Song Popularity Dataset"; that CSV is read as it is
(``song_name``, no artist column), as is any CSV with ``title`` and ``artist`` columns.
Each song gets a ``song_id``: a file-name-safe slug built from the list's own title and
artist (never from a web page's title), made unique by a short hash of both.

Book: notebook 01, "The song-list path"; design §2.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TITLE_COLUMNS = ("title", "song_name", "song", "track_name", "name")  # first present wins
ARTIST_COLUMNS = ("artist", "artist_name", "artists", "track_artist")  # optional
MAX_ID = 80  # longest song_id, in characters
_HASH = 6  # hex digits of the hash suffix


@dataclass(frozen=True)
class Song:
    """One song of a list: ``song_id`` names every file made from it."""

    song_id: str
    title: str
    artist: str = ""

    @classmethod
    def make(cls, title: str, artist: str = "") -> "Song":
        """A song with its ``song_id`` computed from ``title`` and ``artist``."""
        title, artist = _clean(title), _clean(artist)
        return cls(song_id(title, artist), title, artist)

    @property
    def query(self) -> str:
        """The search text: ``"title artist"``."""
        return f"{self.title} {self.artist}".strip()


def _clean(text: str | None) -> str:
    """Collapse whitespace; turn a list-looking artists cell (``['A', 'B']``) into ``A, B``."""
    text = " ".join(str(text or "").split())
    if text.startswith("[") and text.endswith("]"):
        parts = [p.strip().strip("'\"").strip() for p in text[1:-1].split(",")]
        text = ", ".join(p for p in parts if p)
    return text


def _key(title: str, artist: str) -> str:
    """What makes two rows the same song: case- and spacing-insensitive title and artist."""
    return f"{' '.join(title.casefold().split())}\x1f{' '.join(artist.casefold().split())}"


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def song_id(title: str, artist: str = "") -> str:
    """A slug of ``[a-z0-9_-]``, at most 80 characters, ending in a hash of title + artist.

    >>> song_id("Shape of You", "Ed Sheeran")[:24]
    'shape_of_you-ed_sheeran-'
    """
    digest = hashlib.sha1(_key(title, artist).encode()).hexdigest()[:_HASH]
    words = "-".join(s for s in (_slug(title), _slug(artist)) if s) or "song"
    words = words[: MAX_ID - _HASH - 1].rstrip("_-")
    return f"{words}-{digest}"


def _pick(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    by_name = {c.strip().lower(): c for c in columns}
    for name in wanted:
        if name in by_name:
            return by_name[name]
    return None


def read_songlist(path: str | os.PathLike) -> list[Song]:
    """Read a CSV of songs; duplicates (same title and artist, any case) are kept once.

    Rows with an empty title are skipped. Two different songs whose ids collide (a hash
    collision) get ``-2``, ``-3``... appended, so ids are unique within a list.

    Raises:
        ValueError: the file has no header, or no title column (the message lists the
            columns it found and the ones it accepts).
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        if not columns:
            raise ValueError(f"{path}: expected a CSV with a header row, found an empty file")
        title_col = _pick(columns, TITLE_COLUMNS)
        if title_col is None:
            raise ValueError(f"{path}: expected a title column (one of {', '.join(TITLE_COLUMNS)}), "
                             f"found columns: {', '.join(c for c in columns) or '(none)'}")
        artist_col = _pick(columns, ARTIST_COLUMNS)
        songs: list[Song] = []
        seen_keys: set[str] = set()
        seen_ids: set[str] = set()
        skipped = 0
        for row in reader:
            title = _clean(row.get(title_col))
            artist = _clean(row.get(artist_col)) if artist_col else ""
            if not title:
                skipped += 1
                continue
            key = _key(title, artist)
            if key in seen_keys:
                continue
            seen_keys.add(key)
            sid = base = song_id(title, artist)
            n = 1
            while sid in seen_ids:
                n += 1
                sid = f"{base[: MAX_ID - len(str(n)) - 1]}-{n}"
            seen_ids.add(sid)
            songs.append(Song(sid, title, artist))
    if skipped:
        log.warning("%s: skipped %d rows with an empty title", path, skipped)
    return songs
