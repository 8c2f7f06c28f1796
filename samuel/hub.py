"""Whether the Hugging Face hub can be asked at all, decided in under a second when it cannot.

Offline, the hub client retries each file for about half a minute before it gives up, and the
project asks it for three optional things (the Stable Audio Open VAE, Demucs's weights,
AudioBox-Aesthetics). Each of them first asks :func:`reachable`: offline mode asked for, or no
connection to the hub, means "from the local cache only", which answers at once (a found cache
entry, or one clear sentence from the caller).

Book: design §8 and its measured facts (AudioBox-Aesthetics offline).
"""
from __future__ import annotations

import os
import socket

HUB = ("huggingface.co", 443)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_asked() -> bool:
    """``HF_HUB_OFFLINE`` or ``SAMUEL_OFFLINE`` is set to a true value."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("SAMUEL_OFFLINE"))


def reachable(timeout: float = 3.0) -> bool:
    """False when offline mode is asked for, or the hub takes no connection within ``timeout``
    seconds (without a resolver, at once)."""
    if offline_asked():
        return False
    try:
        with socket.create_connection(HUB, timeout=timeout):
            return True
    except OSError:
        return False
