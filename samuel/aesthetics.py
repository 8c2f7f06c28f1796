"""AudioBox-Aesthetics scores, the paper's quality measure (paper §VI-A, Table I).

Book: notebook 06 (results).

Meta's AudioBox-Aesthetics (Tjandra et al. 2025, the paper's [12]) rates audio on four axes,
each on a 1 (less desirable) to 10 (more desirable) scale: production quality (PQ), production
complexity (PC), content enjoyment (CE) and content usefulness (CU; the paper calls it
"content unity"). It is a WavLM encoder (12 layers, 768 wide, ~94 M parameters) with a
weighted sum of its layer outputs and one linear head per axis.

    from samuel import aesthetics
    model = aesthetics.load("path/to/folder")        # or None: $SAMUEL_AUDIOBOX_CKPT, then the hub
    aesthetics.score(model, [audio], sr=44100)         # -> [{"PQ": ..., "PC": ..., "CE": ..., "CU": ...}]

Only the model class of the ``audiobox-aesthetics`` package is used
(``audiobox_aesthetics.model.aes.AesMultiOutput``). The package's own predictor
(``audiobox_aesthetics.infer``) imports torchaudio, which has no CPU build beside the torch
this project pins, so the input side is ours and follows the published predictor's rules:

* audio is made mono and resampled to 16 kHz (we average the channels first and resample
  with soxr; resampling is linear, so the order does not matter, up to the filter);
* it is cut into 10 s windows with a 10 s hop (no overlap); a last, shorter window is
  zero-padded to 10 s and a mask marks its real samples, which the encoder's pooling uses;
* the network's per-window outputs are in standardised units; each axis is mapped back with
  the checkpoint's ``target_transform`` (``score = out * std + mean``);
* a clip's score is the mean of its windows' scores weighted by the fraction of each window
  that is real audio (a full window weighs 1, a 2.5 s tail 0.25).

Weights load from a folder in the Hugging Face layout (``config.json`` + ``model.safetensors``,
what ``AesMultiOutput.save_pretrained`` writes and what the hub repository
``facebook/audiobox-aesthetics`` holds), from the package's ``checkpoint.pt`` file, or from the
hub (or its local cache) when no path is given.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .audio import SAMPLE_RATE as PACKAGE_RATE

AXES = ("PQ", "PC", "CE", "CU")
AXIS_NAMES = {"PQ": "production quality", "PC": "production complexity",
              "CE": "content enjoyment", "CU": "content usefulness"}
HUB_REPO = "facebook/audiobox-aesthetics"
ENV_VAR = "SAMUEL_AUDIOBOX_CKPT"
SAMPLE_RATE = 16000  # the model's input rate
WINDOW_SECONDS = 10.0  # window length of the published predictor
HOP_SECONDS = 10.0  # and its hop: windows do not overlap
MIN_SECONDS = 0.025  # 400 samples: the WavLM feature extractor's receptive field
PACKAGE = "audiobox-aesthetics==0.0.4"

# Paper §VI-A, Table I ("Music Quality Assessment and Model Comparison"): AudioBox-Aesthetics
# scores, each the mean over 10 tracks.
PAPER_TABLE_I = {
    "Pop Benchmark": {"PQ": 7.92, "PC": 6.26, "CE": 7.36, "CU": 7.61},
    "MusicGen": {"PQ": 7.99, "PC": 5.62, "CE": 7.99, "CU": 8.14},
    "Stable Audio Open": {"PQ": 7.54, "PC": 4.06, "CE": 6.84, "CU": 7.71},
    "OpenAI Jukebox": {"PQ": 5.30, "PC": 5.97, "CE": 4.83, "CU": 4.66},
    "SAMUeL": {"PQ": 5.73, "PC": 5.14, "CE": 2.93, "CU": 4.97},
}
PAPER_TABLE_I_TRACKS = 10
# Our evaluation's conditions and the paper row each one is to be read beside.
PAPER_ROW_OF = {"real": "Pop Benchmark", "conditioned": "SAMUeL"}


class AestheticsUnavailable(RuntimeError):
    """The scorer cannot be had here (package missing, or no weights offline)."""


# --------------------------------------------------------------------------- loading


def _model_class():
    try:
        from audiobox_aesthetics.model.aes import AesMultiOutput
    except ImportError as e:
        raise AestheticsUnavailable(
            f"the audiobox_aesthetics package is not installed ({e}); `make setup` installs it "
            f"(pip install --no-deps {PACKAGE})") from e
    return AesMultiOutput


def _device(device: str | None) -> str:
    import torch

    device = device or "cpu"
    if device == "auto":
        try:
            from .devices import resolve
        except ImportError:
            return "cuda" if torch.cuda.is_available() else "cpu"
        return resolve(device)
    return device


def _build(cls, config: Mapping, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in config.items() if k in names}
    tt = kwargs.get("target_transform")
    if not isinstance(tt, Mapping) or any(
            not isinstance(tt.get(a), Mapping) or not {"mean", "std"} <= set(tt[a]) for a in AXES):
        raise ValueError(f"{where}: expected a target_transform with mean and std for each of "
                         f"{', '.join(AXES)}, found {tt!r}"[:400])
    with warnings.catch_warnings():  # WavLM's torch.nn.utils.weight_norm deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        return cls(**kwargs)


def _load_weights(model, state: Mapping, where: str) -> None:
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"{where}: expected the {len(expected)} AudioBox-Aesthetics tensors, found "
                         f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    extra = sorted(set(state) - expected)
    if extra:
        raise ValueError(f"{where}: expected only AudioBox-Aesthetics tensors, found {len(extra)} "
                         f"others (e.g. {', '.join(extra[:3])})")
    model.load_state_dict(dict(state), strict=True)


def _from_folder(cls, folder: Path):
    from safetensors.torch import load_file

    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            found = ", ".join(sorted(q.name for q in folder.iterdir())) or "an empty folder"
            raise FileNotFoundError(f"{folder}: expected an AudioBox-Aesthetics folder with config.json "
                                    f"and model.safetensors, found {found}")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: expected JSON, found unreadable text ({e})") from e
    model = _build(cls, config, str(cfg_path))
    _load_weights(model, load_file(str(weights)), str(weights))
    return model


def _from_pt(cls, path: Path):
    """The package's own ``checkpoint.pt``: ``state_dict`` (keys ``model.*``), ``model_cfg``,
    ``target_transform``."""
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: expected an AudioBox-Aesthetics checkpoint.pt readable without "
                         f"running code, found {type(e).__name__}: {str(e)[:200]}") from e
    if not isinstance(ckpt, Mapping) or not {"state_dict", "model_cfg", "target_transform"} <= set(ckpt):
        found = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{path}: expected a checkpoint with state_dict, model_cfg and "
                         f"target_transform, found {found}")
    config = {**dict(ckpt["model_cfg"]), "target_transform": ckpt["target_transform"]}
    model = _build(cls, config, str(path))
    state = {(k[len("model."):] if k.startswith("model.") else k): v for k, v in ckpt["state_dict"].items()}
    _load_weights(model, state, str(path))
    return model


def _from_hub(cls):
    from huggingface_hub import hf_hub_download

    from . import hub

    cached_only = not hub.reachable()  # offline: the local cache answers at once, no retries
    try:
        files = [hf_hub_download(HUB_REPO, name, local_files_only=cached_only)
                 for name in ("config.json", "model.safetensors")]
    except Exception as e:
        raise AestheticsUnavailable(
            f"the AudioBox-Aesthetics weights could not be fetched from the hub ({HUB_REPO}: "
            f"{type(e).__name__}) and are not cached here; pass a local copy with "
            f"`samuel evaluate --audiobox PATH` or ${ENV_VAR}") from e
    return _from_folder(cls, Path(files[1]).parent)


def load(checkpoint: str | os.PathLike | None = None, device: str | None = "cpu"):
    """The AudioBox-Aesthetics model, in eval mode on ``device``.

    Args:
        checkpoint: a folder with ``config.json`` + ``model.safetensors`` (the hub layout), or
            the package's ``checkpoint.pt``; None: ``$SAMUEL_AUDIOBOX_CKPT``, then the hub
            repository ``facebook/audiobox-aesthetics`` (or its local cache).
        device: "cpu", "cuda", ... or "auto".

    Returns:
        An ``AesMultiOutput`` module: ``{"wav": [B, 1, T], "mask": [B, 1, T]}`` at 16 kHz ->
        ``{axis: [B]}`` in standardised units (:func:`score` maps them to 1-10).

    Raises:
        AestheticsUnavailable: the package is missing, or no path was given and the hub cannot
            be reached.
        FileNotFoundError / ValueError: a given path is missing or not a checkpoint.
    """
    cls = _model_class()
    checkpoint = checkpoint or os.environ.get(ENV_VAR) or None
    if checkpoint is None:
        model = _from_hub(cls)
    else:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            model = _from_folder(cls, path)
        elif path.is_file():
            model = _from_pt(cls, path)
        else:
            raise FileNotFoundError(f"{path}: expected an AudioBox-Aesthetics folder (config.json + "
                                    "model.safetensors) or checkpoint.pt, found nothing there")
    return model.to(_device(device)).eval()


# --------------------------------------------------------------------------- scoring


def prepare(audio: np.ndarray, sr: int, name: str = "clip") -> np.ndarray:
    """``[C, N]`` or ``[N]`` audio at ``sr`` -> float32 mono ``[N']`` at 16 kHz.

    Raises:
        ValueError: naming ``name``, for audio that is empty, too short, not finite or of
            the wrong rank.
    """
    import soxr

    x = np.asarray(audio, np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"{name}: expected audio [C, N] or [N], found shape {list(x.shape)}")
    mono = x if x.ndim == 1 else x.mean(axis=0)
    if int(sr) <= 0:
        raise ValueError(f"{name}: expected a positive sample rate, found {sr}")
    if mono.size < MIN_SECONDS * sr:
        raise ValueError(f"{name}: expected at least {MIN_SECONDS:g} s of audio, found "
                         f"{mono.size / sr:.4f} s ({mono.size} samples at {sr} Hz)")
    if not np.all(np.isfinite(mono)):
        raise ValueError(f"{name}: expected finite samples, found NaN or infinity")
    if int(sr) != SAMPLE_RATE:
        mono = soxr.resample(mono, int(sr), SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, np.float32)


def windows(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut 16 kHz mono ``[N]`` into the predictor's windows.

    Returns:
        ``(wavs [W, 1, L], masks [W, 1, L] bool, weights [W])`` with ``L`` = 10 s; window ``k``
        starts at ``k`` * 10 s, is zero-padded to ``L``, its mask marks the real samples and its
        weight is the real fraction (1 for a full window).
    """
    wav = np.asarray(wav, np.float32).reshape(-1)
    length, hop = int(round(WINDOW_SECONDS * SAMPLE_RATE)), int(round(HOP_SECONDS * SAMPLE_RATE))
    count = max(1, math.ceil(wav.size / hop))
    wavs = np.zeros((count, 1, length), np.float32)
    masks = np.zeros((count, 1, length), bool)
    weights = np.zeros(count, np.float64)
    for k in range(count):
        piece = wav[k * hop:k * hop + length]
        wavs[k, 0, :piece.size] = piece
        masks[k, 0, :piece.size] = True
        weights[k] = piece.size / length
    return wavs, masks, weights


def score(model, clips: Sequence[np.ndarray], sr: int = PACKAGE_RATE, batch_size: int = 4,
          progress: bool = False) -> list[dict]:
    """PQ / PC / CE / CU (1-10) of each clip.

    Args:
        model: from :func:`load` (or any module with the same contract and ``target_transform``).
        clips: audio ``[C, N]`` or ``[N]`` each, at ``sr``; any length of at least 25 ms.
        sr: their sample rate.
        batch_size: windows per forward pass.
        progress: show a progress bar over the batches.

    Returns:
        One ``{"PQ", "PC", "CE", "CU"}`` dict of floats per clip, in order.
    """
    import torch
    from tqdm.auto import tqdm

    if isinstance(clips, np.ndarray) and clips.ndim == 1:
        clips = [clips]
    cut = [windows(prepare(c, sr, name=f"clip {i}")) for i, c in enumerate(clips)]
    if not cut:
        return []
    wavs = np.concatenate([w for w, _, _ in cut])
    masks = np.concatenate([m for _, m, _ in cut])
    weights = np.concatenate([g for _, _, g in cut])
    owner = np.concatenate([np.full(len(g), i) for i, (_, _, g) in enumerate(cut)])
    tt = model.target_transform
    device = next(model.parameters()).device
    out = {a: np.zeros(len(wavs), np.float64) for a in AXES}
    starts = range(0, len(wavs), max(1, int(batch_size)))
    with torch.inference_mode(), warnings.catch_warnings():
        # WavLM passes a bool padding mask beside a float attention bias: torch's notice about it
        warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
        for s in tqdm(starts, desc="aesthetics", disable=not progress):
            pred = model({"wav": torch.from_numpy(wavs[s:s + batch_size]).to(device),
                          "mask": torch.from_numpy(masks[s:s + batch_size]).to(device)})
            for a in AXES:
                p = pred[a].float().reshape(-1).cpu().numpy().astype(np.float64)
                out[a][s:s + len(p)] = p * float(tt[a]["std"]) + float(tt[a]["mean"])
    results = []
    for i in range(len(cut)):
        sel = owner == i
        w = weights[sel]
        results.append({a: float(np.sum(out[a][sel] * w) / np.sum(w)) for a in AXES})
    return results


# --------------------------------------------------------------------------- Table I


def table_i(ours: Mapping[str, Mapping[str, Mapping]] | None = None) -> list[dict]:
    """Table I's rows: the paper's five, then ours, each with PQ / PC / CE / CU.

    Args:
        ours: per condition (``real``, ``conditioned``, ...), per axis, a summary
            ``{"mean", "lo", "hi", "n"}`` over clips; None for the paper's rows only.

    Returns:
        Rows ``{"source", "from": "paper" | "ours", "n", "compare_with", PQ, PC, CE, CU,
        PQ_lo, PQ_hi, ...}`` (paper rows have no interval; ``compare_with`` names the paper row
        an ours row is to be read beside, or None).
    """
    rows = [{"source": name, "from": "paper", "n": PAPER_TABLE_I_TRACKS, "compare_with": None,
             **{a: v[a] for a in AXES}, **{f"{a}_{e}": None for a in AXES for e in ("lo", "hi")}}
            for name, v in PAPER_TABLE_I.items()]
    for cond, axes in (ours or {}).items():
        if not isinstance(axes, Mapping) or not all(isinstance(axes.get(a), Mapping) for a in AXES):
            continue
        rows.append({"source": cond, "from": "ours", "n": axes[AXES[0]].get("n"),
                     "compare_with": PAPER_ROW_OF.get(cond),
                     **{a: axes[a].get("mean") for a in AXES},
                     **{f"{a}_{e}": axes[a].get(e) for a in AXES for e in ("lo", "hi")}})
    return rows


def format_table_i(rows: Sequence[Mapping]) -> str:
    """Table I as text: paper rows, then ours as mean [95 % interval]."""
    def cell(r, a):
        v = r.get(a)
        if v is None:
            return "n/a"
        lo, hi = r.get(f"{a}_lo"), r.get(f"{a}_hi")
        return f"{v:.2f}" if lo is None or hi is None else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"

    lines = ["Table I: AudioBox-Aesthetics, 1-10 (paper rows: paper §VI-A, mean of "
             f"{PAPER_TABLE_I_TRACKS} tracks; ours: mean [95 % interval] over clips)",
             "source".ljust(34) + "".join(a.ljust(20) for a in AXES)]
    for r in rows:
        label = f"{r['source']} (paper)" if r["from"] == "paper" else (
            f"{r['source']} (ours, n={r['n']}" + (f", vs {r['compare_with']})" if r.get("compare_with") else ")"))
        lines.append(label.ljust(34) + "".join(cell(r, a).ljust(20) for a in AXES))
    return "\n".join(lines)
