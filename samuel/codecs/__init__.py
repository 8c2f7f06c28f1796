"""Codecs for the "VAE" slot (SPEC §3): ``load("sao")`` or ``load("offline")``.

    >>> from samuel import codecs
    >>> codec = codecs.load("offline")
    >>> latents = codec.encode(audio, sr)      # [64, T']
    >>> audio_out = codec.decode(latents)      # [2, T' * codec.samples_per_frame] @ 44.1 kHz
"""
from __future__ import annotations

from .base import Codec, CodecUnavailable

NAMES = ("sao", "offline")


def load(name: str, **options) -> Codec:
    """Build the codec called ``name`` ("sao" or "offline") with its ``options``.

    The SAO codec (and torch/diffusers) is imported only when asked for.
    """
    if name == "offline":
        from .offline import OfflineCodec

        return OfflineCodec(**options)
    if name == "sao":
        from .sao import SAOCodec

        return SAOCodec(**options)
    raise ValueError(f"unknown codec {name!r}: expected one of {', '.join(repr(n) for n in NAMES)}")


__all__ = ["Codec", "CodecUnavailable", "NAMES", "load"]
