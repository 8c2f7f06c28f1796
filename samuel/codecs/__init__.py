"""Codecs for the "VAE" slot (design §3): ``from_config(cfg)``, ``load("sao")`` or ``load("offline")``.

Every command gets its codec from :func:`from_config`: the codec named by ``cfg.data.codec``,
on the device of ``cfg.device``, with the SAO VAE's weights from ``cfg.data.vae`` (or the
environment variable ``SAMUEL_VAE``, or the hub) (book: "Reproduce it").

    >>> from samuel import codecs
    >>> codec = codecs.from_config(cfg)        # or codecs.load("offline")
    >>> latents = codec.encode(audio, sr)      # [64, T']
    >>> audio_out = codec.decode(latents)      # [2, T' * codec.samples_per_frame] @ 44.1 kHz
"""
from __future__ import annotations

import logging
import os

from .base import Codec, CodecUnavailable

NAMES = ("sao", "offline")
VAE_ENV = "SAMUEL_VAE"  # a local SAO VAE folder, used when the configuration names none

log = logging.getLogger(__name__)


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


def vae_path(cfg=None, vae: str | os.PathLike | None = None) -> str | None:
    """The local SAO VAE folder to load: ``vae`` (when not None, it replaces ``cfg.data.vae``,
    even when empty), else ``cfg.data.vae``; when that is empty, ``$SAMUEL_VAE``.

    Returns None when all are empty (the hub, or its cache, is tried then).
    """
    first = vae if vae is not None else getattr(getattr(cfg, "data", None), "vae", None)
    for candidate in (first, os.environ.get(VAE_ENV)):
        if candidate is not None and str(candidate).strip():
            return os.path.expanduser(str(candidate).strip())
    return None


def from_config(cfg, *, name: str | None = None, vae: str | os.PathLike | None = None,
                device: str | None = None, half: bool | None = None, **options) -> Codec:
    """The codec of ``cfg``, ready to use: THE way the package gets its codec.

    Args:
        cfg: a :class:`samuel.config.Config` (uses ``data.codec``, ``data.vae``,
            ``data.vae_half`` and ``device``).
        name: a codec name overriding ``cfg.data.codec`` (e.g. a checkpoint's codec).
        vae: a local SAO VAE folder overriding ``cfg.data.vae``; when both are empty the
            environment variable ``SAMUEL_VAE`` is used, then the hub.
        device: overrides ``cfg.device`` ("auto", "cpu", "cuda", ...).
        half: overrides ``cfg.data.vae_half``: decode in float16 (CUDA only; ignored with a
            log message on other devices).
        options: passed on to the codec's constructor.

    Raises:
        CodecUnavailable: the SAO VAE's weights are nowhere to be had (the message says how
            to give them: ``--vae PATH``, ``SAMUEL_VAE`` or ``data__vae``).
    """
    from ..devices import resolve

    name = name or cfg.data.codec
    if name != "sao":
        return load(name, **options)
    dev = resolve(device if device is not None else getattr(cfg, "device", "auto"))
    half = bool(cfg.data.vae_half if half is None else half)
    if half and not dev.startswith("cuda"):
        log.info("data.vae_half: float16 decoding is for CUDA; decoding in float32 on %s", dev)
        half = False
    options.setdefault("path", vae_path(cfg, vae))
    options.setdefault("device", dev)
    if half:
        options.setdefault("decode_dtype", "float16")
    return load(name, **options)


__all__ = ["Codec", "CodecUnavailable", "NAMES", "VAE_ENV", "from_config", "load", "vae_path"]
