"""A vocal file in, an accompaniment (and optionally the mix) out: ``samuel generate`` (design §1).

Book: notebook 05 (sampling) and the closing page (generating for a whole song).

    from samuel.generate import generate
    result = generate("vocals.wav", "accomp.wav", mix_path="mix.wav", seed=0)
    result["windows"], result["timings"]["sample_s"], result["seam"]

Pipeline: load (any format, rate, channel count) → encode with the checkpoint's codec →
normalise with the vocal stats → sample the accompaniment latents window by window →
denormalise → decode → trim to the input's exact length → write (atomically).

**Windows.** The model was trained on ``cfg.data.chunk_frames``-frame windows (1024 = 47.55 s
in the paper). A longer vocal is covered by windows of that length that overlap by
``overlap_frames`` (default a quarter window); the last one is shifted back so it ends on the
last frame (its overlap is then larger, never smaller). Each window *continues* the previous
one by inpainting (RePaint-style replacement, Lugmayr et al. 2022): its first frames are the
already generated latents, and at every sampler step the known region of ``x_t`` is replaced
by those latents noised to the current ``t`` with :meth:`Schedule.q_sample` and ONE fixed
noise draw per window. With a fixed noise the replaced region follows exactly the path a
deterministic (DDIM / DPM-Solver) trajectory of the known latents takes, so the model sees a
consistent, partially denoised context and continues it. The sampler's own prediction of the
overlap is then cross-faded linearly (in latent space: neighbouring latents are strongly
correlated, so linear, not equal-power) from the previous window's latents to the new ones.

**Short vocals.** A vocal shorter than one window is padded with digital silence (in audio,
before encoding, so the codec's own encoding of silence fills the gap) up to the next multiple
of 8 frames (the U-Net halves T three times), generated, and the padding cropped away.

**Mix.** ``mix_path`` adds the vocal back: the accompaniment is scaled to the vocal's RMS
level plus :data:`MIX_ACCOMP_DB` (−2 dB: the voice sits slightly on top), then the sum is
scaled down to a peak of :data:`PEAK` if it would exceed it, so the mix never clips.

:func:`seam_report` measures how audible the window boundaries are (onset-strength peak and
local-tempo jump across boundaries vs mid-window points); :func:`generate` returns it with the
stage timings.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import audio as audio_mod
from . import paths
from .diffusion import Schedule, sample_fast

SAMPLE_RATE = audio_mod.SAMPLE_RATE  # output rate (paper §III-C: 44.1 kHz stereo)
MIN_SECONDS = 1.0  # shortest vocal accepted
FRAME_MULTIPLE = 8  # the U-Net needs T divisible by 8 (design §4: three halvings)
OVERLAP_FRACTION = 0.25  # default overlap between consecutive windows (ours)
MIX_ACCOMP_DB = -2.0  # accompaniment RMS relative to the vocal's RMS in the mix (ours)
PEAK = 0.99  # outputs are scaled down to this peak if louder (no clipping)
SEAM_CONTEXT_S = 3.0  # seconds each side of a point for the local tempo (seam_report)
SEAM_RADIUS_S = 0.25  # minimum half-width of the region whose onset peak is measured
STAGES = ("load", "encode", "sample", "decode", "write", "mix")  # generate(timings=...)'s keys


class GenerateError(ValueError):
    """An input, option or checkpoint that generation cannot use; one sentence."""


# --------------------------------------------------------------------------- checkpoint


def _check_match(loaded, codec, where: str) -> None:
    from .checkpoint import CheckpointError

    want = int(loaded.cfg.model.latent_channels)
    if int(codec.latent_channels) != want:
        raise CheckpointError(f"{where}: expected a codec with {want} latent channels for this model, "
                              f"found codec {codec.name!r} with {codec.latent_channels}")
    for stem in ("vocal", "accomp"):
        s = loaded.stats.get(stem, loaded.stats) if isinstance(loaded.stats, dict) else None
        n = len(s["mean"]) if isinstance(s, dict) and "mean" in s else None
        if n != want:
            raise CheckpointError(f"{where}: expected normalisation stats for '{stem}' with {want} "
                                  f"channels, found {n if n is not None else 'none'}")


# --------------------------------------------------------------------------- windows


def plan_windows(frames: int, window: int, overlap: int) -> list:
    """Start frames of the windows covering ``frames`` latent frames.

    Consecutive starts are ``window - overlap`` apart; the last start is pulled back to
    ``frames - window`` so no window runs past the end (its overlap grows instead).
    One window (start 0) when ``frames <= window``.

    >>> plan_windows(86, 32, 8)
    [0, 24, 48, 54]
    """
    if not 0 <= overlap < window:
        raise GenerateError(f"overlap: expected 0 <= overlap_frames < window ({window} frames), found {overlap}")
    starts = [0]
    while starts[-1] + window < frames:
        starts.append(min(starts[-1] + window - overlap, frames - window))
    return starts


def _padded_length(frames: int) -> int:
    return max(FRAME_MULTIPLE, int(math.ceil(frames / FRAME_MULTIPLE)) * FRAME_MULTIPLE)


def sample_window(model, schedule: Schedule, vocals: Tensor, steps: int, cfg_scale: float,
                  method: str = "dpmsolver++", generator: Optional[torch.Generator] = None,
                  known: Optional[Tensor] = None, known_frames: int = 0,
                  on_step: Optional[Callable[[], None]] = None, eta: float = 0.0) -> Tensor:
    """Few-step sampling of one window with the first ``known_frames`` frames inpainted.

    :func:`samuel.diffusion.sample_fast` (DDIM / DPM-Solver++(2M) on the data prediction,
    trailing timesteps, CFG) with its ``known`` region: ``x_t[..., :k] ← q_sample(known, t,
    ε_fixed)`` before the first step and after every update.

    Args:
        vocals: normalised vocal latents ``[1, C, T]``.
        known: normalised latents ``[1, C, known_frames]`` the window must continue.
        on_step: called once per sampler step (a progress bar).

    Returns:
        the model's data prediction ``[1, C, T]`` at the last step, known region included (it
        is not overwritten, so it shows how well the model followed the constraint).
    """
    if method not in ("ddim", "dpmsolver++"):
        raise GenerateError(f"sampler: expected 'ddim' or 'dpmsolver++', found {method!r}")
    shape = tuple(vocals.shape)
    device = vocals.device
    region = None
    if known is not None and known_frames > 0:
        latents = torch.zeros(shape, device=device)
        latents[..., :known_frames] = known
        mask = torch.zeros(shape[2], dtype=torch.bool, device=device)
        mask[:known_frames] = True
        region = (latents, mask)
    return sample_fast(model, schedule, shape, vocals=vocals, cfg_scale=cfg_scale, steps=steps,
                       method=method, generator=generator, device=device, eta=eta, known=region,
                       callback=None if on_step is None else (lambda t, x, v: on_step()))


def generate_latents(model, schedule: Schedule, vocals: np.ndarray, window: int, overlap: int,
                     steps: int, cfg_scale: float, method: str = "dpmsolver++", seed: int = 0,
                     inpaint: bool = True, progress: bool = False, device="cpu",
                     eta: float = 0.0) -> dict:
    """Accompaniment latents ``[C, T]`` for normalised vocal latents ``[C, T]`` of any length.

    ``T`` must be at least ``window`` or a multiple of 8 (short inputs are padded by the
    caller). ``inpaint=False`` samples the windows independently and only cross-fades them
    (the baseline the seam measurement compares against).

    Returns:
        dict(latents [C, T] float32, starts [frames], known [frames per window],
        overlap_error [relative RMS gap between each window's prediction of its overlap and
        the latents it had to continue]).
    """
    channels, frames = vocals.shape
    win = min(window, frames)
    starts = plan_windows(frames, win, overlap) if frames > window else [0]
    generator = torch.Generator().manual_seed(int(seed))
    out = np.zeros((channels, frames), dtype=np.float32)
    known_counts, errors = [], []
    bar = tqdm(total=len(starts) * steps, disable=not progress, desc="generate", unit="step")
    try:
        end = 0
        for s in starts:
            k = max(0, end - s)
            v = torch.from_numpy(np.ascontiguousarray(vocals[None, :, s:s + win])).to(device)
            known = torch.from_numpy(np.ascontiguousarray(out[None, :, s:s + k])).to(device) if k else None
            pred = sample_window(model, schedule, v, steps, cfg_scale, method, generator,
                                 known=known if inpaint else None, known_frames=k if inpaint else 0,
                                 on_step=bar.update, eta=eta)[0].float().cpu().numpy()
            if k:
                prev = out[:, s:s + k]
                errors.append(float(np.sqrt(np.mean((pred[:, :k] - prev) ** 2))
                                    / max(np.sqrt(np.mean(prev ** 2)), 1e-8)))
                w = (np.arange(1, k + 1, dtype=np.float32) / (k + 1))[None]  # linear cross-fade
                out[:, s:s + k] = (1 - w) * prev + w * pred[:, :k]
            out[:, s + k:s + win] = pred[:, k:]
            known_counts.append(k)
            end = s + win
    finally:
        bar.close()
    return dict(latents=out, starts=starts, known=known_counts, overlap_error=errors)


# --------------------------------------------------------------------------- generate


def load_vocal(path: Path) -> np.ndarray:
    """The vocal as 44.1 kHz stereo ``[2, N]``.

    Raises:
        AudioError: missing, unreadable, silent, or shorter than :data:`MIN_SECONDS`.
    """
    vocal_audio = audio_mod.load(path, sr=SAMPLE_RATE, channels=2)
    seconds = vocal_audio.shape[1] / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise audio_mod.AudioError(path, f"at least {MIN_SECONDS:g} s of audio", f"{seconds:.2f} s")
    audio_mod.check_not_silent(vocal_audio, path)
    return vocal_audio


def _model_and_codec(checkpoint, codec, device, vae) -> tuple:
    """``(loaded checkpoint, codec, device)``: the model in eval mode on ``device`` ("auto"
    by default) and the codec it was trained with (or ``codec``, checked to fit it)."""
    from . import codecs as codecs_mod
    from .checkpoint import resolve as resolve_checkpoint
    from .devices import resolve as resolve_device

    device = resolve_device(device or "auto")
    loaded = resolve_checkpoint(checkpoint, device=device)
    loaded.model.eval()
    params = list(loaded.model.parameters())
    device = params[0].device if params else device
    folder = getattr(loaded, "folder", None) or (checkpoint if not hasattr(checkpoint, "model") else None)
    where = paths.shown(folder) if folder is not None else "checkpoint"
    if codec is None or isinstance(codec, str):
        codec = codecs_mod.from_config(loaded.cfg, name=codec, vae=vae or "", device=str(device))
    _check_match(loaded, codec, where)
    return loaded, codec, device


def encode_vocal(codec, vocal_audio: np.ndarray, window: int, stats) -> tuple:
    """``(normalised vocal latents [C, T'], frames T, padded frames T')``; a vocal shorter than
    one window is padded with silence to a multiple of 8 frames (the U-Net's halvings)."""
    from .data.store import normalise

    n = vocal_audio.shape[1]
    spf = int(codec.samples_per_frame)
    frames = codec.frames_for(n, SAMPLE_RATE)
    padded = frames if frames >= window else _padded_length(frames)
    to_encode = vocal_audio
    if padded * spf > n and padded != frames:
        to_encode = np.pad(vocal_audio, ((0, 0), (0, padded * spf - n)))
    latents = codec.encode(to_encode, SAMPLE_RATE)[:, :padded]
    return normalise(latents, stats, "vocal"), frames, padded


def decode_accompaniment(codec, latents: np.ndarray, stats, n: int) -> np.ndarray:
    """Normalised accompaniment latents -> 44.1 kHz stereo ``[2, n]``, scaled below :data:`PEAK`."""
    from .data.store import denormalise

    accomp = _fit(codec.decode(denormalise(latents, stats, "accomp")), n)
    if int(codec.sample_rate) != SAMPLE_RATE:
        accomp = _fit(audio_mod.resample(accomp, codec.sample_rate, SAMPLE_RATE), n)
    return _limit(audio_mod.to_channels(accomp, 2))


def generate(vocals_path, out_path, mix_path=None, checkpoint=None, steps: Optional[int] = None,
             cfg_scale: Optional[float] = None, seed: int = 0, codec=None, progress: bool = True,
             overlap_frames: Optional[int] = None, inpaint: bool = True, device: Optional[str] = None,
             seam: bool = True, vae: Optional[str] = None, timings: Optional[dict] = None) -> dict:
    """Generate an accompaniment for the vocal in ``vocals_path`` and write it to ``out_path``.

    Args:
        vocals_path: any common audio file (WAV/FLAC/OGG/MP3, or whatever ffmpeg reads), any
            rate, mono or stereo, from 1 s to a whole song.
        out_path: the accompaniment, 44.1 kHz stereo, exactly as long as the input (.wav/.flac/.ogg).
        mix_path: also write vocal + accompaniment here (loudness-matched, never clipping).
        checkpoint: a checkpoint folder, an already loaded checkpoint, or None for
            ``runs/demo/checkpoint``.
        steps: sampler steps (default ``cfg.diffusion.fast_steps``).
        cfg_scale: classifier-free guidance scale (default ``cfg.diffusion.cfg_scale``).
        seed: the same seed gives the same output.
        codec: a codec name or object overriding the checkpoint's (must have its latent width).
        overlap_frames: overlap of consecutive windows (default a quarter window).
        inpaint: continue each window from the previous one (False: independent windows,
            cross-faded; a baseline).
        seam: measure the window boundaries with :func:`seam_report` (needs 2+ windows).
        device: where the model and the codec run ("auto", the default: CUDA when available).
        vae: a local SAO VAE folder (default ``$SAMUEL_VAE``, then the hub); the checkpoint's
            own ``data.vae`` and ``device`` belong to the machine it was trained on and are not used.
        timings: a dict to fill with the wall seconds of each stage, :data:`STAGES`: ``load``
            (the vocal, the model and the codec), ``encode``, ``sample``, ``decode``, ``write``
            (the accompaniment) and ``mix`` (making and writing the mix; 0 without ``mix_path``).

    Returns:
        dict with ``seconds``, ``frames``, ``windows``, ``window_starts_s``, ``overlap_frames``,
        ``overlap_error`` (mean), ``steps``, ``cfg_scale``, ``timings`` (``load_s``, ``encode_s``,
        ``sample_s``, ``decode_s``, ``write_s`` (both files), ``seam_s``, ``total_s``), ``seam``
        (or None) and the written paths.

    Raises:
        AudioError: missing, unreadable, silent or too short (< 1 s) vocal.
        CheckpointError: no checkpoint, or one that does not fit the codec.
    """
    stage = {} if timings is None else timings
    t0 = time.perf_counter()
    vocals_path = Path(vocals_path)
    vocal_audio = load_vocal(vocals_path)
    n = vocal_audio.shape[1]
    seconds = n / SAMPLE_RATE
    loaded, codec, device = _model_and_codec(checkpoint, codec, device, vae)
    model, cfg, stats = loaded.model, loaded.cfg, loaded.stats
    stage["load"] = time.perf_counter() - t0
    steps = int(steps if steps is not None else cfg.diffusion.fast_steps)
    cfg_scale = float(cfg_scale if cfg_scale is not None else cfg.diffusion.cfg_scale)
    if steps < 1:
        raise GenerateError(f"steps: expected a positive number of sampler steps, found {steps}")
    window = int(cfg.data.chunk_frames)
    overlap = int(overlap_frames if overlap_frames is not None else round(window * OVERLAP_FRACTION))
    if not 0 <= overlap < window:
        raise GenerateError(f"overlap_frames: expected 0 <= overlap < {window} (one window), found {overlap}")

    t0 = time.perf_counter()
    vocals_norm, frames, padded = encode_vocal(codec, vocal_audio, window, stats)
    stage["encode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gen = generate_latents(model, Schedule.from_config(cfg), vocals_norm, window, overlap, steps,
                           cfg_scale, method=cfg.diffusion.fast_sampler, seed=seed, inpaint=inpaint,
                           progress=progress, device=device, eta=cfg.diffusion.ddim_eta)
    stage["sample"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    accomp = decode_accompaniment(codec, gen["latents"][:, :frames], stats, n)
    stage["decode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    audio_mod.save(out_path, accomp, SAMPLE_RATE)
    stage["write"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if mix_path is not None:
        audio_mod.save(mix_path, mix(vocal_audio, accomp), SAMPLE_RATE)
    stage["mix"] = time.perf_counter() - t0
    times = {f"{k}_s": stage[k] for k in ("load", "encode", "sample", "decode")}
    times["write_s"] = stage["write"] + stage["mix"]

    fps = SAMPLE_RATE / int(codec.samples_per_frame)
    starts_s = [s / fps for s in gen["starts"]]
    report = None
    if seam and len(gen["starts"]) > 1:
        t0 = time.perf_counter()
        report = seam_report(accomp, starts_s, SAMPLE_RATE, window_s=window / fps)
        times["seam_s"] = time.perf_counter() - t0
    times["total_s"] = sum(times.values())
    errors = gen["overlap_error"]
    return dict(vocals=str(vocals_path), out=str(out_path), mix=str(mix_path) if mix_path else None,
                seconds=seconds, frames=frames, padded_frames=padded, window_frames=window,
                windows=len(gen["starts"]), window_starts_s=starts_s, overlap_frames=overlap,
                known_frames=gen["known"], inpaint=inpaint,
                overlap_error=float(np.mean(errors)) if errors else None,
                steps=steps, cfg_scale=cfg_scale, seed=int(seed), codec=codec.name,
                timings=times, realtime_factor=times["total_s"] / seconds, seam=report)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``[C, N']`` to exactly ``n`` samples."""
    return x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


def _limit(x: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Scale ``x`` down so its peak is at most ``peak`` (never up), in place where ``x`` is
    already float32 (the caller's own fresh array): on a 3-minute song each fresh 63 MB copy
    costs its page faults, about as much as the arithmetic."""
    x = np.asarray(x).astype(np.float32, copy=False)
    p = max(float(x.max()), -float(x.min())) if x.size else 0.0  # max |x| without an |x| copy
    if p > peak:
        x *= np.float32(peak / p)
    return x


def mix(vocals: np.ndarray, accomp: np.ndarray, accomp_db: float = MIX_ACCOMP_DB) -> np.ndarray:
    """Vocal + accompaniment ``[2, N]``: the accompaniment at the vocal's RMS level + ``accomp_db``
    dB, the sum scaled down to a peak of :data:`PEAK` if louder.

    One new array, the loudness-matched accompaniment: the ``accomp_db`` gain and the vocal are
    applied to it in place, in that order, as separate float32 roundings."""
    vocals = np.asarray(vocals, np.float32)
    out = audio_mod.match_loudness(accomp, vocals)
    out *= np.float32(10.0 ** (accomp_db / 20.0))
    out += vocals
    return _limit(out)


# --------------------------------------------------------------------------- seams


def seam_report(accomp_audio: np.ndarray, window_starts_s: Sequence[float], sr: int = SAMPLE_RATE,
                window_s: Optional[float] = None, context_s: float = SEAM_CONTEXT_S) -> dict:
    """How audible the window boundaries are: onset strength and local tempo across boundaries
    versus across mid-window points of the same audio.

    A boundary is the overlap of window ``k-1`` and ``k`` (``[start_k, start_{k-1} + window_s]``;
    ``±SEAM_RADIUS_S`` around ``start_k`` when ``window_s`` is None), measured at its centre.
    Reference points are the centres of the stretches between boundaries (one per window).

    * flux: the peak of librosa's onset strength (spectral flux) within the region, divided by
      the median onset strength of the whole clip; a seam shows as a spike (> 1 = above the
      typical onset).
    * tempo jump: librosa's tempo over the ``context_s`` seconds before vs after the point,
      ``|log2(left/right)|`` after folding octave errors, in percent (0 = same tempo).

    Returns:
        dict(boundary_flux, within_flux, boundary_tempo_jump_pct, within_tempo_jump_pct,
        boundaries, within) — means over points; None where there are no points.
    """
    import librosa

    x = np.asarray(accomp_audio, dtype=np.float32)
    mono = x.mean(axis=0) if x.ndim == 2 else x
    an_sr = 22050
    if sr != an_sr:
        mono = audio_mod.resample(mono, sr, an_sr)
    hop = 512
    env = librosa.onset.onset_strength(y=mono, sr=an_sr, hop_length=hop)
    duration = len(mono) / an_sr
    ref = float(np.median(env)) if env.size else 0.0
    ref = ref if ref > 1e-8 else float(np.mean(env)) + 1e-8
    starts = sorted(float(s) for s in window_starts_s)

    centres, radii = [], []
    for k in range(1, len(starts)):
        if window_s is not None:
            lo, hi = starts[k], min(starts[k - 1] + window_s, duration)
            centres.append((lo + hi) / 2)
            radii.append(max((hi - lo) / 2, SEAM_RADIUS_S))
        else:
            centres.append(starts[k])
            radii.append(SEAM_RADIUS_S)
    edges = [0.0] + centres + [duration]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    mid_radius = float(np.mean(radii)) if radii else SEAM_RADIUS_S

    def frame(s: float) -> int:
        return int(np.clip(round(s * an_sr / hop), 0, max(len(env) - 1, 0)))

    def flux(c: float, r: float) -> float:
        seg = env[frame(c - r): frame(c + r) + 1]
        return float(seg.max()) / ref if seg.size else float("nan")

    def tempo(a: float, b: float) -> float:
        seg = env[frame(a): frame(b) + 1]
        if seg.size < 8:
            return float("nan")
        return float(librosa.feature.tempo(onset_envelope=seg, sr=an_sr, hop_length=hop)[0])

    def jump(c: float) -> float:
        left, right = tempo(c - context_s, c), tempo(c, c + context_s)
        if not (left > 0 and right > 0):
            return float("nan")
        d = abs(math.log2(left / right))
        d = min(d, abs(d - 1), abs(d - 2))  # fold octave (half/double tempo) errors
        return 100.0 * (2.0 ** d - 1.0)

    def mean(values: list) -> Optional[float]:
        values = [v for v in values if np.isfinite(v)]
        return float(np.mean(values)) if values else None

    return dict(
        boundary_flux=mean([flux(c, r) for c, r in zip(centres, radii)]),
        within_flux=mean([flux(m, mid_radius) for m in mids]),
        boundary_tempo_jump_pct=mean([jump(c) for c in centres]),
        within_tempo_jump_pct=mean([jump(m) for m in mids]),
        boundaries=len(centres), within=len(mids))
