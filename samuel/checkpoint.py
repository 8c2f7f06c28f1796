"""Checkpoints: safetensors weights + JSON, never pickles of code (design §5).

A checkpoint folder holds:

- ``model.safetensors``: the EMA weights used for sampling (the best on validation);
- ``checkpoint.json``: the configuration, the normalisation statistics, the codec, the step
  and the validation loss, and the non-tensor parts of the training state;
- ``state.safetensors``: the training state to resume a run exactly — the raw and EMA
  weights of the latest step, the optimiser's moments and step counters, and the RNG state
  of every training process: ``rng.{rank}`` (its CPU generator: batch rows, transposition,
  and on a CPU also the noise) and, when training on a GPU, ``rng_dev.{rank}`` (its device
  generator: timesteps, noise, dropout). Rank 0 gathers them all and writes the one file.

Book: notebook 04.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__, config as config_mod
from .io import atomic_path, read_json, write_json

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match what uses it."""


def save_tensors(path: Path, tensors: dict) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def optimizer_to_flat(opt_state: dict) -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON."""
    tensors, scalars = {}, {}
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith("opt."):
            _, idx, k = name.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for name, v in meta.get("scalars", {}).items():
        idx, k = name.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass
class Loaded:
    """A loaded checkpoint: ``model`` (EMA weights, eval mode), ``cfg``, ``stats``, ``info``
    (``folder`` is None for a model that was handed over rather than read from disk)."""

    model: torch.nn.Module
    cfg: Any
    stats: dict
    info: dict
    folder: Path | None


def save_checkpoint(folder, ema_model: torch.nn.Module, cfg, stats: dict, info: dict | None = None,
                    state: dict | None = None, state_meta: dict | None = None,
                    write_model: bool = True) -> None:
    """Write a checkpoint atomically, file by file; ``checkpoint.json`` last marks it complete."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if write_model:
        save_tensors(folder / MODEL_FILE, dict(ema_model.state_dict()))
    if state is not None:
        save_tensors(folder / STATE_FILE, state)
    meta = read_json(folder / META_FILE) if (folder / META_FILE).exists() else {}
    meta.update({"format": 1, "version": __version__, "config": cfg.to_dict(), "stats": stats,
                 "codec": cfg.data.codec})
    if info:
        meta.setdefault("info", {}).update(info)
    if state_meta is not None:
        meta["state"] = state_meta
    write_json(folder / META_FILE, meta)


def load_meta(folder) -> dict:
    folder = Path(folder)
    path = folder / META_FILE
    if not path.exists():
        what = "no such folder" if not folder.exists() else f"no {META_FILE} in it"
        raise CheckpointError(f"{folder}: expected a SAMUeL checkpoint, found {what}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: expected JSON, found unreadable text ({e})") from e


def load_checkpoint(folder, device: str = "cpu") -> Loaded:
    """Load the EMA model of a checkpoint folder for sampling."""
    from .model import build

    folder = Path(folder)
    meta = load_meta(folder)
    cfg = config_mod.from_dict(meta["config"])
    model = build(cfg)
    path = folder / MODEL_FILE
    if not path.exists():
        raise CheckpointError(f"{folder}: expected {MODEL_FILE}, found none")
    try:
        weights = load_file(str(path))
    except Exception as e:  # truncated or not safetensors
        raise CheckpointError(f"{path}: expected safetensors weights, could not read them ({e})") from e
    own = model.state_dict()
    shapes = [k for k, v in weights.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if shapes:
        k = shapes[0]
        raise CheckpointError(f"{path}: weights do not match the configuration in {META_FILE} "
                              f"({len(shapes)} of another shape, e.g. {k}: expected "
                              f"{tuple(own[k].shape)}, found {tuple(weights[k].shape)})")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the configuration in {META_FILE} "
                              f"(missing {len(missing)}, unexpected {len(unexpected)}, e.g. "
                              f"{(missing + unexpected)[:2]})")
    model.to(device).eval()
    return Loaded(model=model, cfg=cfg, stats=meta.get("stats", {}), info=meta.get("info", {}),
                  folder=folder)


def resolve(checkpoint=None, device: str = "cpu", profile: str = "demo", cfg=None) -> Loaded:
    """The model to sample from, as a :class:`Loaded` on ``device`` in eval mode, whatever
    ``checkpoint`` is: ``samuel generate``'s and the evaluation's one way to find it.

    Args:
        checkpoint: a loaded checkpoint (``.model``, ``.cfg``) as is; a bare
            ``torch.nn.Module`` (then ``cfg`` is its configuration; no stats, ``info``
            ``{"source": "module"}``); a folder; or None for ``runs/<profile>/checkpoint``.

    Raises:
        CheckpointError: no folder there (the message says how to make one), or an
            unreadable / mismatched checkpoint (:func:`load_checkpoint`).
    """
    if isinstance(checkpoint, torch.nn.Module):
        if cfg is None:
            raise CheckpointError("a bare model: expected its configuration (cfg=...), found none")
        return Loaded(model=checkpoint.to(device).eval(), cfg=cfg, stats={},
                      info={"source": "module"}, folder=None)
    if checkpoint is not None and hasattr(checkpoint, "model") and hasattr(checkpoint, "cfg"):
        checkpoint.model.to(device).eval()
        return checkpoint
    from .paths import run_dir

    folder = Path(checkpoint) if checkpoint is not None else run_dir(profile) / "checkpoint"
    if not folder.exists():
        build = (f"`make book` (or `samuel train --profile {profile}`)" if profile == "demo"
                 else f"`samuel train --profile {profile}`")
        how = (f"build it first with {build}, or pass --checkpoint DIR" if checkpoint is None
               else "pass --checkpoint DIR of a folder written by `samuel train`")
        raise CheckpointError(f"{folder}: expected a SAMUeL checkpoint, found no such folder; {how}")
    return load_checkpoint(folder, device=device)


def load_state(folder) -> tuple[dict, dict]:
    """The resume state: ``(tensors, json_meta)``."""
    folder = Path(folder)
    meta = load_meta(folder)
    if not (folder / STATE_FILE).exists() or "state" not in meta:
        raise CheckpointError(f"{folder}: expected a resumable training state ({STATE_FILE}), found none")
    path = folder / STATE_FILE
    try:
        tensors = load_file(str(path))
    except Exception as e:  # truncated or not safetensors
        raise CheckpointError(f"{path}: expected safetensors training state, could not read it ({e})") from e
    return tensors, meta["state"]
