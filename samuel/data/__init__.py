"""Data: song lists, download, separation, the synthetic corpus, chunking and the POPDB store.

Imports are lazy: ``import samuel.data`` pulls in neither torch nor Demucs nor yt-dlp.

Book: notebook 01; design §2.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build": "pipeline",
    "Manifest": "manifest",
    "chunk_latents": "store",
    "split_songs": "store",
    "load_popdb": "store",
    "channel_stats": "store",
    "write_split": "store",
    "PopdbError": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
