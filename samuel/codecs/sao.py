"""The Stable Audio Open 1.0 VAE as a codec (design §3), through diffusers' ``AutoencoderOobleck``.

Its default configuration *is* the SAO VAE (channels 128, c_mults [1,2,4,8,16], strides
[2,4,4,8,8], latent 64, 2048 samples per frame, no final tanh; 156,112,514 parameters).
Weights come from, in this order:

1. ``path``: a diffusers folder (``vae/config.json`` + ``vae/diffusion_pytorch_model.safetensors``,
   or that ``vae`` folder itself), or a stable-audio-tools checkpoint folder
   (``model_config.json`` + ``model.safetensors`` or ``model.ckpt``) whose autoencoder keys,
   ``pretransform.model.encoder.layers.N...``, are renamed by :func:`sat_to_diffusers_key`;
2. the hub repo ``stabilityai/stable-audio-open-1.0`` (subfolder ``vae``; gated, needs a token),
   only from the local cache when ``HF_HUB_OFFLINE=1``.

Otherwise :class:`CodecUnavailable` is raised with what to do. The commands take ``path`` from
``--vae PATH``, the configuration field ``data.vae`` or the environment variable ``SAMUEL_VAE``
(:func:`samuel.codecs.from_config`).

On CUDA the decoder can run in float16 (``decode_dtype``; ``data.vae_half``) while the encoder
stays in float32: :func:`half_decode_difference` measures what that changes.

Long audio is processed in chunks of ``chunk_seconds`` with ``overlap_seconds`` of context on
each side, cut on 2048-sample frame boundaries and joined with a short linear cross-fade
inside the overlap. The encoder's and decoder's receptive fields are finite (about 0.4 s
each way for the SAO configuration), so with the default 1 s of overlap the chunked result
equals the unchunked one up to float rounding.

Book: notebook 02 (the VAE slot); design §3 (weights, checkpoint layouts).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from .base import Codec, CodecUnavailable, as_channels_first, check_latents

HUB_REPO = "stabilityai/stable-audio-open-1.0"  # gated (design §3)
# The same sentence is in the book ("Reproduce it"); keep the two alike.
UNAVAILABLE = ("The Stable Audio Open VAE is not available: pass --vae PATH, set SAMUEL_VAE=PATH in the "
               "environment or set the configuration field data__vae=PATH (PATH: a diffusers 'vae/' "
               "folder or a stable-audio-tools checkpoint folder), or log in to the Hugging Face hub "
               f"with access to {HUB_REPO}")
SAT_PREFIX = "pretransform.model."  # where a full SAO checkpoint keeps the autoencoder

_RES_PARTS = ("snake1", "conv1", "snake2", "conv2")  # ResidualUnit layers.0..3
_ENC_BLOCK_PARTS = ("res_unit1", "res_unit2", "res_unit3", "snake1", "conv1")  # EncoderBlock layers.0..4
_DEC_BLOCK_PARTS = ("snake1", "conv_t1", "res_unit1", "res_unit2", "res_unit3")  # DecoderBlock layers.0..4


# --------------------------------------------------------------------------------------------
# stable-audio-tools <-> diffusers key names
# --------------------------------------------------------------------------------------------
def sat_to_diffusers_key(key: str, num_blocks: int = 5) -> str | None:
    """Rename one stable-audio-tools autoencoder key to diffusers' ``AutoencoderOobleck`` name.

    ``key`` is relative to the autoencoder (``encoder.layers.1.layers.0.layers.1.weight_v``;
    strip ``pretransform.model.`` first). Layout, for ``num_blocks`` = len(strides) blocks:
    ``{en,de}coder.layers.0`` is the first conv; ``layers.1..num_blocks`` the blocks;
    ``layers.num_blocks+1`` the final Snake; ``layers.num_blocks+2`` the final conv. Parameter
    suffixes are kept (``weight_g``/``weight_v``/``bias``/``alpha``/``beta``; weight-norm
    parametrizations are renamed by :func:`_normalise_param`). Returns None for a key that is
    not part of the Oobleck encoder/decoder (bottleneck buffers, a final Identity...).
    """
    m = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
    if not m:
        return None
    side, index, rest = m.group(1), int(m.group(2)), m.group(3)
    if index == 0:
        return f"{side}.conv1.{rest}"
    if index == num_blocks + 1:
        return f"{side}.snake1.{rest}"
    if index == num_blocks + 2:
        return f"{side}.conv2.{rest}"
    if not 1 <= index <= num_blocks:
        return None
    block = f"{side}.block.{index - 1}"
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", rest)
    if not m:
        return None
    part_index, rest = int(m.group(1)), m.group(2)
    parts = _ENC_BLOCK_PARTS if side == "encoder" else _DEC_BLOCK_PARTS
    if part_index >= len(parts):
        return None
    part = parts[part_index]
    if not part.startswith("res_unit"):
        return f"{block}.{part}.{rest}"
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", rest)
    if not m or int(m.group(1)) >= len(_RES_PARTS):
        return None
    return f"{block}.{part}.{_RES_PARTS[int(m.group(1))]}.{m.group(2)}"


def diffusers_to_sat_key(key: str, num_blocks: int = 5) -> str:
    """The inverse of :func:`sat_to_diffusers_key` (without the ``pretransform.model.`` prefix)."""
    side, rest = key.split(".", 1)
    top = {"conv1": 0, "snake1": num_blocks + 1, "conv2": num_blocks + 2}
    head, tail = rest.split(".", 1)
    if head in top:
        return f"{side}.layers.{top[head]}.{tail}"
    if head != "block":
        raise KeyError(f"not an AutoencoderOobleck key: {key}")
    block, tail = tail.split(".", 1)
    part, tail = tail.split(".", 1)
    parts = _ENC_BLOCK_PARTS if side == "encoder" else _DEC_BLOCK_PARTS
    out = f"{side}.layers.{int(block) + 1}.layers.{parts.index(part)}"
    if part.startswith("res_unit"):
        sub, tail = tail.split(".", 1)
        out += f".layers.{_RES_PARTS.index(sub)}"
    return f"{out}.{tail}"


def sat_to_diffusers_state_dict(state: dict, num_blocks: int = 5) -> dict:
    """Convert a stable-audio-tools state dict (full model or autoencoder only) to diffusers'.

    Keys outside the autoencoder (the diffusion transformer, conditioners) are dropped. Snake
    ``alpha``/``beta`` ``[C]`` become ``[1, C, 1]``; weight norm stored as parametrizations
    (``parametrizations.weight.original0/1``) or as a plain ``weight`` becomes ``weight_g``/``weight_v``.
    """
    has_prefix = any(k.startswith(SAT_PREFIX) for k in state)
    out = {}
    for key, value in state.items():
        if has_prefix:
            if not key.startswith(SAT_PREFIX):
                continue
            key = key[len(SAT_PREFIX):]
        new = sat_to_diffusers_key(key, num_blocks)
        if new is None:
            continue
        for name, tensor in _normalise_param(new, value):
            out[name] = tensor
    return out


def diffusers_to_sat_state_dict(state: dict, num_blocks: int = 5, prefix: str = SAT_PREFIX) -> dict:
    """Convert diffusers' ``AutoencoderOobleck`` state dict to stable-audio-tools names (for tests)."""
    out = {}
    for key, value in state.items():
        if key.endswith((".alpha", ".beta")):
            value = value.reshape(-1)
        out[prefix + diffusers_to_sat_key(key, num_blocks)] = value
    return out


def _normalise_param(key: str, value):
    if key.endswith((".alpha", ".beta")):
        return [(key, value.reshape(1, -1, 1))]
    if key.endswith(".parametrizations.weight.original0"):
        return [(key.replace(".parametrizations.weight.original0", ".weight_g"), value)]
    if key.endswith(".parametrizations.weight.original1"):
        return [(key.replace(".parametrizations.weight.original1", ".weight_v"), value)]
    if key.endswith(".weight"):  # weight norm already folded in: g = ||v|| per output channel
        # weight_norm's default dim=0 for Conv1d (out channels) and ConvTranspose1d (in channels)
        g = value.reshape(value.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (value.dim() - 1)))
        return [(key[:-len("weight")] + "weight_g", g), (key[:-len("weight")] + "weight_v", value)]
    return [(key, value)]


def diffusers_config_from_sat(model_config: dict) -> dict:
    """``AutoencoderOobleck`` keyword arguments from a stable-audio-tools ``model_config.json``.

    Reads ``model.pretransform.config`` of a diffusion model config (or ``model`` of an
    autoencoder config). Raises ValueError for variants diffusers cannot represent.
    """
    model = model_config.get("model", {})
    ae = model.get("pretransform", {}).get("config") if "pretransform" in model else model
    if not ae or "encoder" not in ae or "decoder" not in ae:
        raise ValueError("model_config.json: expected model.pretransform.config with an encoder and a "
                         "decoder (a Stable Audio autoencoder), found none")
    enc, dec = ae["encoder"], ae["decoder"]
    ec, dc = enc.get("config", {}), dec.get("config", {})
    problems = []
    if enc.get("type", "oobleck") != "oobleck" or dec.get("type", "oobleck") != "oobleck":
        problems.append(f"encoder/decoder type {enc.get('type')}/{dec.get('type')} (expected oobleck)")
    if ae.get("bottleneck", {}).get("type", "vae") != "vae":
        problems.append(f"bottleneck {ae['bottleneck'].get('type')} (expected vae)")
    if not (ec.get("use_snake") and dc.get("use_snake")):
        problems.append("use_snake false (expected Snake activations)")
    if ec.get("antialias_activation") or dc.get("antialias_activation") or dc.get("use_nearest_upsample"):
        problems.append("antialias_activation/use_nearest_upsample (not in AutoencoderOobleck)")
    if ec.get("c_mults") != dc.get("c_mults") or ec.get("strides") != dc.get("strides"):
        problems.append("encoder and decoder differ in c_mults or strides")
    if ec.get("latent_dim") != ec.get("channels"):
        problems.append(f"encoder latent_dim {ec.get('latent_dim')} != channels {ec.get('channels')}")
    if ec.get("latent_dim") != 2 * dc.get("latent_dim", -1):
        problems.append(f"encoder latent_dim {ec.get('latent_dim')} != 2 x decoder latent_dim {dc.get('latent_dim')}")
    if problems:
        raise ValueError("model_config.json: this autoencoder cannot be loaded as AutoencoderOobleck: "
                         + "; ".join(problems))
    return dict(encoder_hidden_size=ec["channels"], downsampling_ratios=list(ec["strides"]),
                channel_multiples=list(ec["c_mults"]), decoder_channels=dc["channels"],
                decoder_input_channels=dc["latent_dim"], audio_channels=ae.get("io_channels", 2),
                sampling_rate=model_config.get("sample_rate", SAMPLE_RATE))


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def load_vae(path: str | os.PathLike | None = None, config_overrides: dict | None = None):
    """Load the SAO VAE as ``(AutoencoderOobleck, final_tanh)``; see the module docstring.

    ``config_overrides`` builds a randomly initialised model of that configuration instead
    (no weights are read when ``path`` is None): used by tests and for timing.
    """
    from diffusers import AutoencoderOobleck

    if config_overrides is not None and path is None:
        import torch

        torch.manual_seed(0)
        return AutoencoderOobleck(**config_overrides), False
    if path is not None:
        return _load_local(Path(path))
    from .. import hub

    offline = not hub.reachable()  # offline: the local cache answers at once, no retries
    try:
        vae = AutoencoderOobleck.from_pretrained(HUB_REPO, subfolder="vae", local_files_only=offline)
    except Exception as err:  # gated/offline/not cached: all mean "not here"
        raise CodecUnavailable(f"{UNAVAILABLE} ({type(err).__name__}).") from err
    return vae, False


def _load_local(path: Path):
    from diffusers import AutoencoderOobleck

    if not path.exists():
        raise CodecUnavailable(f"{UNAVAILABLE}. {path}: expected a folder, found nothing there.")
    folder = path if path.is_dir() else path.parent
    if (folder / "vae" / "config.json").is_file():
        return AutoencoderOobleck.from_pretrained(folder, subfolder="vae"), False
    if (folder / "config.json").is_file() and not (folder / "model_config.json").is_file():
        return AutoencoderOobleck.from_pretrained(folder), False
    if (folder / "model_config.json").is_file():
        return _load_sat(folder, path if path.is_file() else None)
    raise CodecUnavailable(f"{UNAVAILABLE}. {folder}: expected vae/config.json, config.json or "
                           f"model_config.json, found {sorted(p.name for p in folder.iterdir())[:8]}.")


def _load_sat(folder: Path, weights: Path | None):
    import torch
    from diffusers import AutoencoderOobleck

    model_config = json.loads((folder / "model_config.json").read_text())
    kwargs = diffusers_config_from_sat(model_config)
    ae = model_config["model"].get("pretransform", {}).get("config", model_config["model"])
    final_tanh = bool(ae["decoder"]["config"].get("final_tanh", True))  # SAT's default is True
    if weights is None or weights.suffix not in (".safetensors", ".ckpt", ".pt", ".pth"):
        candidates = [folder / n for n in ("model.safetensors", "model.ckpt")]
        candidates += sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.ckpt"))
        weights = next((c for c in candidates if c.is_file()), None)
    if weights is None:
        raise CodecUnavailable(f"{UNAVAILABLE}. {folder}: expected model.safetensors or model.ckpt "
                               "beside model_config.json, found neither.")
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    converted = sat_to_diffusers_state_dict(state, num_blocks=len(kwargs["downsampling_ratios"]))
    vae = AutoencoderOobleck(**kwargs)
    missing, unexpected = vae.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: expected the {len(vae.state_dict())} AutoencoderOobleck tensors, "
                         f"found {len(missing)} missing (e.g. {missing[:3]}) and {len(unexpected)} "
                         f"unexpected (e.g. {unexpected[:3]})")
    return vae, final_tanh


# --------------------------------------------------------------------------------------------
# the codec
# --------------------------------------------------------------------------------------------
class SAOCodec(Codec):
    """Stable Audio Open VAE: 44.1 kHz stereo <-> ``[64, N / 2048]`` latents (design §3).

    Args:
        path: local weights (see module docstring); None: the hub (or its cache).
        device: torch device for the VAE.
        dtype: torch dtype or its name ("float32", "bfloat16", "float16").
        chunk_seconds: process at most this much audio per forward pass (None: all at once).
        overlap_seconds: context on each side of a chunk, discarded after the pass.
        sample_posterior: sample the VAE posterior instead of using its mean.
        seed: seed of that sampling.
        config_overrides: build a random-weight ``AutoencoderOobleck`` of this configuration
            (tests, timing) instead of loading weights.
        decode_dtype: dtype of the decoder (None: ``dtype``); "float16" halves decoding time
            and memory on CUDA.
    """

    name = "sao"
    sample_rate = SAMPLE_RATE

    def __init__(self, path=None, device="cpu", dtype="float32", chunk_seconds: float | None = 20.0,
                 overlap_seconds: float = 1.0, sample_posterior: bool = False, seed: int = 0,
                 config_overrides: dict | None = None, decode_dtype=None):
        import torch

        vae, self.final_tanh = load_vae(path, config_overrides)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.device = torch.device(device)
        vae = vae.to(self.device)
        self.vae = (vae if self.dtype == torch.float32 else vae.to(self.dtype)).eval()
        self.decode_dtype = self.dtype
        self.set_decode_dtype(decode_dtype or self.dtype)
        self.samples_per_frame = int(np.prod(self.vae.config.downsampling_ratios))  # 2048
        self.sample_rate = int(self.vae.config.sampling_rate)
        self.latent_channels = int(self.vae.config.decoder_input_channels)  # 64
        self.audio_channels = int(self.vae.config.audio_channels)  # 2
        self.chunk_seconds = chunk_seconds
        self.overlap_seconds = overlap_seconds
        self.sample_posterior = sample_posterior
        self.seed = seed

    def set_decode_dtype(self, dtype) -> None:
        """Run the decoder in ``dtype`` (a torch dtype or its name) from now on."""
        import torch

        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.vae.decoder.to(dtype)
        self.decode_dtype = dtype

    def _chunk_frames(self) -> tuple[int | None, int]:
        if not self.chunk_seconds:
            return None, 0
        core = max(1, int(round(self.chunk_seconds * self.frames_per_second)))
        overlap = max(0, int(np.ceil(self.overlap_seconds * self.frames_per_second)))
        return core, overlap

    def encode(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """``[2, N]``/``[N]`` audio at ``sr`` -> float32 ``[64, ceil(N_44k / 2048)]`` latents."""
        import soxr
        import torch
        from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDiagonalGaussianDistribution

        audio = as_channels_first(audio)
        if audio.shape[0] != self.audio_channels:
            audio = np.repeat(audio.mean(axis=0, keepdims=True), self.audio_channels, axis=0)
        if sr != self.sample_rate:
            audio = soxr.resample(audio.T, sr, self.sample_rate, quality="HQ").T
        hop = self.samples_per_frame
        frames = int(np.ceil(audio.shape[1] / hop))
        x = np.zeros((audio.shape[0], frames * hop), dtype=np.float32)
        x[:, :audio.shape[1]] = audio
        x = torch.from_numpy(x)[None]
        core, overlap = self._chunk_frames()
        with torch.inference_mode():
            h = _chunked(lambda s: self.vae.encoder(s.to(self.device, self.dtype)).float().cpu(),
                         x, frames, in_unit=hop, out_unit=1, core=core, overlap=overlap)
            posterior = OobleckDiagonalGaussianDistribution(h)
            if self.sample_posterior:
                z = posterior.sample(generator=torch.Generator().manual_seed(self.seed))
            else:
                z = posterior.mode()
        return z[0].numpy().astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """``[64, T']`` latents -> float32 ``[2, T' * 2048]`` audio at 44.1 kHz."""
        import torch

        latents = check_latents(latents, self.latent_channels)
        z = torch.from_numpy(latents)[None]
        core, overlap = self._chunk_frames()

        def run(chunk):
            y = self.vae.decoder(chunk.to(self.device, self.decode_dtype)).float().cpu()
            return torch.tanh(y) if self.final_tanh else y

        with torch.inference_mode():
            y = _chunked(run, z, z.shape[-1], in_unit=1, out_unit=self.samples_per_frame,
                         core=core, overlap=overlap)
        return y[0].numpy().astype(np.float32)


def half_decode_difference(codec: SAOCodec, latents: np.ndarray, dtype="float16") -> dict:
    """How much decoding in ``dtype`` instead of float32 changes the audio.

    Decodes ``latents`` ``[64, T']`` twice with the same ``codec`` (float32, then ``dtype``)
    and leaves the codec as it found it.

    Returns:
        :func:`decode_difference` of the two decodings.
    """
    import torch

    before = codec.decode_dtype
    try:
        codec.set_decode_dtype(torch.float32)
        ref = codec.decode(latents)
        codec.set_decode_dtype(dtype)
        low = codec.decode(latents)
    finally:
        codec.set_decode_dtype(before)
    return decode_difference(ref, low, dtype)


def decode_difference(ref: np.ndarray, low: np.ndarray, dtype="float16") -> dict:
    """Compare a float32 decoding ``ref`` ``[2, N]`` with a reduced-precision one ``low``.

    Returns:
        ``dict(dtype, max_abs, rms_error, snr_db, finite)``: the largest and the root-mean-square
        sample difference, the signal-to-error ratio ``20 log10(rms(ref) / rms(ref - low))`` in
        dB, and whether ``low`` is free of inf/NaN.
    """
    ref, low = np.asarray(ref, np.float64), np.asarray(low, np.float64)
    if ref.shape != low.shape:
        raise ValueError(f"decodings: expected equal shapes, found {ref.shape} and {low.shape}")
    finite = bool(np.isfinite(low).all())
    diff = np.nan_to_num(low - ref, nan=np.inf)
    rms_err = float(np.sqrt(np.mean(diff ** 2)))
    rms_ref = float(np.sqrt(np.mean(ref ** 2)))
    if rms_err == 0:
        snr = float("inf")
    else:
        snr = float(20 * np.log10(rms_ref / rms_err)) if rms_ref > 0 else float("-inf")
    return {"dtype": str(dtype).replace("torch.", ""), "max_abs": float(np.abs(diff).max()),
            "rms_error": rms_err, "snr_db": snr, "finite": finite}


def _chunked(fn, x, frames: int, in_unit: int, out_unit: int, core: int | None, overlap: int):
    """Apply ``fn`` to ``x`` ``[B, C, frames * in_unit]`` in frame-aligned chunks.

    Each chunk covers ``core`` frames plus ``overlap`` frames of context on each side; its
    output (``out_unit`` per frame) is weighted by 1 on its core, with linear ramps of
    ``fade = overlap // 2`` frames centred on the core's edges, so the weights of
    neighbouring chunks sum to 1 and each output sample comes from the chunk(s) whose
    context covers it best.
    """
    import torch

    if core is None or frames <= core + 2 * overlap:
        return fn(x)
    fade = overlap // 2
    out, weight = None, torch.zeros(frames * out_unit)
    for start in range(0, frames, core):
        end = min(frames, start + core)
        lo, hi = max(0, start - overlap), min(frames, end + overlap)
        y = fn(x[..., lo * in_unit: hi * in_unit])
        if out is None:
            out = torch.zeros(*y.shape[:-1], frames * out_unit, dtype=y.dtype)
        w = _ramp_weights(lo, hi, start, end, frames, fade, out_unit)
        out[..., lo * out_unit: hi * out_unit] += y * w
        weight[lo * out_unit: hi * out_unit] += w
    return out / weight


def _ramp_weights(lo, hi, start, end, frames, fade, unit):
    """Weights ``[(hi - lo) * unit]``: 1 on [start, end), linear ramps of ``fade`` frames
    centred on ``start`` (unless 0) and ``end`` (unless the last frame), 0 elsewhere."""
    import torch

    pos = (torch.arange((hi - lo) * unit, dtype=torch.float64) + 0.5) / unit + lo  # in frames
    w = torch.ones_like(pos)
    if start > 0:
        w = torch.minimum(w, ((pos - (start - fade / 2)) / max(fade, 1e-9)).clamp(0, 1)
                          if fade else (pos >= start).double())
    if end < frames:
        w = torch.minimum(w, (((end + fade / 2) - pos) / max(fade, 1e-9)).clamp(0, 1)
                          if fade else (pos < end).double())
    return w.float()
