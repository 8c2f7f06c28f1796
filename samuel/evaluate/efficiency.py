"""Efficiency, as in paper Table II: parameters, seconds per 47.55 s clip, peak memory.

Book: notebook 06 ("Table II: efficiency"); design §7.

Times are measured on the run's clips (a few seconds each outside the paper profile) and
scaled linearly to one paper clip of :data:`PAPER_CLIP_FRAMES` latent frames.
"""
from __future__ import annotations

import resource
import time
from typing import Mapping

from .context import Context, sync

SAO_VAE_PARAMETERS = 156_112_514  # the Stable Audio Open VAE (AutoencoderOobleck defaults)
PAPER_CLIP_FRAMES = 1024  # one paper clip: 1024 frames = 47.55 s (paper §III-C)


def measure_efficiency(ctx: Context, decode_seconds: float, samplers: Mapping) -> dict:
    """Table II of this run: one fast-sampler clip timed now, decoding from the run.

    Args:
        ctx: the run.
        decode_seconds: the time spent decoding the run's ``ctx.n`` true accompaniments.
        samplers: ``results["samplers"]`` (its ancestral time is scaled too, unless skipped).

    Returns:
        ``results["efficiency"]``: device, parameters (model, codec, both), seconds per
        47.55 s clip (fast sampler, decode, total; ancestral), peak RSS (and CUDA) memory.
    """
    import torch

    from ..model import count_parameters

    frames, device = ctx.frames, ctx.device
    scale = PAPER_CLIP_FRAMES / frames
    t0 = time.perf_counter()
    ctx.sample(ctx.vocals[:1].shape, ctx.vocals[:1], ctx.seed, sampler="fast")
    sync(device)
    fast_one = time.perf_counter() - t0
    decode_one = decode_seconds / ctx.n
    efficiency = {
        "device": (torch.cuda.get_device_name(0) if str(device).startswith("cuda") else
                   f"cpu ({torch.get_num_threads()} threads)"),
        "parameters": int(count_parameters(ctx.model)),
        "codec": ctx.codec.name,
        "codec_parameters": codec_parameters(ctx.codec),
        "clip_frames_measured": int(frames),
        "clip_seconds_measured": ctx.clip_seconds,
        "scaled_to_frames": PAPER_CLIP_FRAMES,
        "scaling": f"measured on {frames}-frame clips and scaled linearly by {scale:g} to "
                   f"{PAPER_CLIP_FRAMES} frames (47.55 s)",
        "fast_seconds_per_47s_clip": fast_one * scale,
        "decode_seconds_per_47s_clip": decode_one * scale,
        "fast_total_seconds_per_47s_clip": (fast_one + decode_one) * scale,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    efficiency["parameters_with_codec"] = efficiency["parameters"] + efficiency["codec_parameters"]
    if not samplers.get("skipped"):
        efficiency["ancestral_seconds_per_47s_clip"] = samplers["ancestral"]["seconds_per_clip"] * scale
    if str(device).startswith("cuda"):
        efficiency["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return efficiency


def codec_parameters(codec) -> int:
    """The codec's parameters: 0 for the offline codec, the loaded VAE's count, else the
    Stable Audio Open VAE's (:data:`SAO_VAE_PARAMETERS`)."""
    if codec.name == "offline":
        return 0
    vae = getattr(codec, "vae", None)
    if vae is not None and hasattr(vae, "parameters"):
        from ..model import count_parameters

        return int(count_parameters(vae))
    return SAO_VAE_PARAMETERS
