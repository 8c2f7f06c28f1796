"""Source separation with Demucs (design §2, paper §III-C).

A song becomes two stems: ``vocals`` (the condition) and ``accomp`` = drums + bass + other
(every non-vocal source; the target). The paper used HTDemucs.

Demucs runs on the device of the ``device`` setting (``samuel.devices.resolve``: the CUDA GPU
when there is one). Weights come from the network (Hugging Face hub, then Demucs's own server)
or from a local folder (``repo``). With no network and no local weights, :func:`load_separator` says so in
one sentence within a second, instead of retrying for half a minute.

Book: notebook 01, "The song-list path"; design §2.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np
import torch

from samuel import audio, hub

log = logging.getLogger(__name__)

SAMPLE_RATE = audio.SAMPLE_RATE  # the package's audio rate (paper §III-C)


class SeparatorUnavailable(RuntimeError):
    """The Demucs model's weights cannot be had here (offline, or not in the local folder)."""


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Load from local caches only: the hub in offline mode, torch.hub without downloads."""
    import huggingface_hub.constants as hf_constants

    load_url = torch.hub.load_state_dict_from_url

    def cached_only(url, model_dir=None, *args, file_name=None, **kwargs):
        folder = model_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
        cached = os.path.join(folder, file_name or os.path.basename(urlparse(url).path))
        if not os.path.exists(cached):
            raise FileNotFoundError(f"{cached} is not in the torch hub cache")
        return load_url(url, model_dir, *args, file_name=file_name, **kwargs)

    was_offline = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    torch.hub.load_state_dict_from_url = cached_only
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = was_offline
        torch.hub.load_state_dict_from_url = load_url


def load_separator(name: str = "htdemucs", repo: str | os.PathLike | None = None,
                   device: str = "auto"):
    """Load a pretrained Demucs model (``htdemucs`` in the paper) in eval mode on ``device``.

    Args:
        name: Demucs model name; ``demucs_unittest`` is a tiny untrained model that needs
            no download (tests).
        repo: a folder holding the model's weights (``<sig>.th`` files and ``<name>.yaml``),
            as Demucs's ``--repo`` takes; None: the network, or what is cached locally.
        device: where the model runs (``"auto"``: CUDA when available, else the CPU; see
            :func:`samuel.devices.resolve`); :func:`separate` runs it there.

    Raises:
        SeparatorUnavailable: one sentence saying what is missing and how to supply it.
    """
    from demucs.pretrained import get_model

    from samuel.devices import resolve

    device = resolve(device)
    if repo is not None:
        repo = Path(repo)
        if not repo.is_dir():
            raise SeparatorUnavailable(f"Demucs model {name!r}: expected a folder of weights at "
                                       f"{repo}, found none")
        try:
            model = get_model(name, repo=repo)
        except (Exception, SystemExit) as err:  # demucs exits on some errors
            raise SeparatorUnavailable(f"Demucs model {name!r}: expected its weights in {repo}, "
                                       f"found none that load ({_one_line(err)})") from None
    elif hub.reachable():
        try:
            model = get_model(name)
        except (Exception, SystemExit) as err:
            raise SeparatorUnavailable(f"Demucs model {name!r} could not be loaded: "
                                       f"{_one_line(err)}") from None
    else:
        try:
            with _offline():
                model = get_model(name)
        except (Exception, SystemExit):
            raise SeparatorUnavailable(
                f"Demucs model {name!r} is not available offline: put its weights in a folder "
                f"and pass --separator-repo DIR, or connect to the network") from None
    model.to(device).eval()
    return model


def model_device(model) -> torch.device:
    """The device holding ``model``'s parameters (the CPU for a model without any)."""
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _one_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def _max_segment(model) -> float:
    """The longest segment the model accepts (HTDemucs: its training length)."""
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    if isinstance(model, BagOfModels):
        return float(model.max_allowed_segment)
    if isinstance(model, HTDemucs):
        return float(model.segment)
    return float("inf")


def _blocks(n: int, block: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows of ``block`` samples covering ``n``, overlapping by ``overlap``."""
    if n <= block:
        return [(0, n)]
    step = block - overlap
    starts = list(range(0, n - overlap, step))
    return [(s, min(s + block, n)) for s in starts if s < n]


@torch.no_grad()
def separate(model, mix: np.ndarray, sr: int = SAMPLE_RATE, segment_seconds: float | None = None,
             overlap: float = 0.25, block_seconds: float = 120.0, shifts: int = 0,
             device: str | torch.device | None = None, keep_sources: bool = False) -> dict:
    """Split ``mix [C, N]`` into ``vocals`` and ``accomp`` = every non-vocal source, both ``[2, N]``.

    Demucs runs over overlapping segments (``demucs.apply.apply_model`` with ``split=True``);
    a long song is further cut into blocks of ``block_seconds`` that overlap by a few seconds
    and are cross-faded, so memory grows with the block, not the song. The mix is
    normalised by its own mean and standard deviation, as Demucs's command line does (the
    mean is handed back in equal shares, so the stems of a perfect separator sum to the mix).

    Args:
        model: from :func:`load_separator`.
        mix: the song, float32 ``[C, N]`` at ``sr`` (mono is duplicated).
        sr: its rate; resampled to ``model.samplerate`` and back if they differ.
        segment_seconds: Demucs segment length (None: the model's own; capped at the longest
            the model accepts).
        overlap: overlap of Demucs segments (fraction).
        block_seconds: longest piece handed to Demucs at once.
        shifts: Demucs random-shift averaging (0: deterministic).
        device: where to run (None: the model's device, as :func:`load_separator` put it).
        keep_sources: also return ``sources``: ``{name: [2, N]}`` for every model source.

    Returns:
        ``{"vocals": [2, N], "accomp": [2, N]}`` float32 (plus ``"sources"`` if asked).
    """
    from demucs.apply import apply_model

    # apply_model would otherwise move the model to the mix's device, the CPU
    device = torch.device(device) if device is not None else model_device(model)
    mix = audio.to_channels(np.asarray(mix, dtype=np.float32), model.audio_channels)
    n = mix.shape[1]
    rate = int(model.samplerate)
    x = audio.resample(mix, sr, rate) if rate != sr else mix
    if segment_seconds is not None:
        segment_seconds = min(float(segment_seconds), _max_segment(model))
    sources = list(model.sources)
    if "vocals" not in sources:
        raise ValueError(f"Demucs model: expected a 'vocals' source, found {', '.join(sources)}")

    wav = torch.from_numpy(np.ascontiguousarray(x))
    ref = wav.mean(0)
    mean, std = float(ref.mean()), float(ref.std())
    std = std if std > 1e-8 else 1.0  # silence: nothing to scale
    m = x.shape[1]
    out = np.zeros((len(sources), x.shape[0], m), np.float32)
    block = max(int(block_seconds * rate), 1)
    fade = min(int(5 * rate), block // 4)  # cross-fade between blocks (samples)
    for start, end in _blocks(m, block, fade):
        piece = (wav[:, start:end] - mean) / std
        est = apply_model(model, piece[None], shifts=shifts, split=True, overlap=overlap,
                          segment=segment_seconds, device=device, progress=False)[0]
        # back to the mix's scale; its DC offset is shared equally, so stems still sum to the mix
        est = (est * std + mean / len(sources)).cpu().numpy()  # [S, C, L]
        w = np.ones(end - start, np.float32)
        if start > 0 and fade:
            w[:fade] = np.linspace(0, 1, fade, endpoint=False, dtype=np.float32)
        if end < m and fade:
            w[-fade:] = np.linspace(1, 0, fade, endpoint=False, dtype=np.float32)
        out[..., start:end] += est * w

    if rate != sr:
        out = np.stack([audio.resample(s, rate, sr) for s in out])
        out = out[..., :n] if out.shape[-1] >= n else np.pad(out, ((0, 0), (0, 0), (0, n - out.shape[-1])))
    if out.shape[1] == 1:  # a mono model: stems as stereo like the rest of the package
        out = np.repeat(out, 2, axis=1)
    v = sources.index("vocals")
    result = {"vocals": np.ascontiguousarray(out[v]),
              "accomp": np.ascontiguousarray(out[[i for i in range(len(sources)) if i != v]].sum(0))}
    if keep_sources:
        result["sources"] = {name: out[i] for i, name in enumerate(sources)}
    return result
