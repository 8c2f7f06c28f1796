"""The per-run manifest: each song's state in the data pipeline (design §2).

One JSON file, rewritten atomically after every change, so a run killed at any moment leaves
the last recorded state. A song moves ``listed -> downloaded -> separated -> encoded``; a song
that fails is ``failed`` with the stage and the reason, and the run goes on without it.

    {"version": 1,
     "meta":  {...run-wide facts, e.g. the codec the latents were made with...},
     "songs": {"<song_id>": {"state": "encoded", "paths": {...}, "seconds": {...},
                             "stage": ..., "reason": ..., ...}}}

Book: notebook 01 (building the data); design §2 (resumable, idempotent).
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any, Iterator

from ..io import read_json, write_json

STATES = ("listed", "downloaded", "separated", "encoded", "failed")
PROGRESS = {s: i for i, s in enumerate(STATES[:-1])}  # order of the states of a healthy song
_MERGED = ("paths", "seconds")  # info keys whose dicts are merged, not replaced


class Manifest:
    """Each song's state, persisted to ``path`` after every change.

    >>> m = Manifest("/tmp/example-manifest.json")   # doctest: +SKIP
    >>> m.set("song-1", "downloaded", paths={"audio": "audio/song-1.wav"}, seconds={"download": 2.1})
    >>> m.fail("song-2", "download", "no search result")
    >>> m.counts()["failed"]
    1
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.exists():
            data = read_json(self.path)
            if not isinstance(data, dict) or not isinstance(data.get("songs"), dict):
                raise ValueError(f"{self.path}: expected a manifest with a 'songs' object, "
                                 f"found {type(data).__name__}")
        else:
            data = {"version": 1, "meta": {}, "songs": {}}
        self._data = data
        self._data.setdefault("meta", {})

    # ---------------------------------------------------------------- reading

    def state(self, song_id: str) -> str | None:
        """The song's state, or None if it is not in the manifest."""
        record = self._data["songs"].get(song_id)
        return record["state"] if record else None

    def get(self, song_id: str) -> dict:
        """A copy of the song's record (empty if unknown)."""
        return copy.deepcopy(self._data["songs"].get(song_id, {}))

    def reached(self, song_id: str, state: str) -> bool:
        """True if the song is healthy and at ``state`` or past it."""
        current = self.state(song_id)
        return current in PROGRESS and PROGRESS[current] >= PROGRESS[state]

    def songs(self, state: str | None = None) -> list[str]:
        """Song ids (in insertion order), all or those in ``state``."""
        return [k for k, r in self._data["songs"].items() if state is None or r["state"] == state]

    def counts(self) -> dict[str, int]:
        """How many songs are in each state (every state present, zeros included)."""
        counts = {s: 0 for s in STATES}
        for record in self._data["songs"].values():
            counts[record["state"]] += 1
        return counts

    @property
    def meta(self) -> dict:
        """A copy of the run-wide facts."""
        return copy.deepcopy(self._data["meta"])

    def __contains__(self, song_id: str) -> bool:
        return song_id in self._data["songs"]

    def __len__(self) -> int:
        return len(self._data["songs"])

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data["songs"]))

    # ---------------------------------------------------------------- writing

    def set(self, song_id: str, state: str, **info: Any) -> None:
        """Move a song to ``state`` and record ``info`` (``paths``/``seconds`` dicts are merged).

        Moving to a healthy state clears a previous failure's ``stage`` and ``reason``.
        """
        if state not in STATES:
            raise ValueError(f"manifest: unknown state {state!r}; expected one of {STATES}")
        record = self._data["songs"].setdefault(song_id, {})
        if state != "failed":
            record.pop("stage", None)
            record.pop("reason", None)
        record["state"] = state
        for key, value in info.items():
            if key in _MERGED and isinstance(value, dict):
                record.setdefault(key, {}).update(value)
            else:
                record[key] = value
        record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.save()

    def fail(self, song_id: str, stage: str, reason: str, **info: Any) -> None:
        """Record that ``stage`` failed for the song, and why."""
        self.set(song_id, "failed", stage=stage, reason=str(reason), **info)

    def set_meta(self, **values: Any) -> None:
        """Record run-wide facts (merged into ``meta``)."""
        self._data["meta"].update(values)
        self.save()

    def save(self) -> None:
        """Write the manifest atomically."""
        write_json(self.path, self._data)
