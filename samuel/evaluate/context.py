"""The state one evaluation shares: the model, the codec, the picked clips and the sampler.

Book: notebook 06 ("Setup"); design §7.

:func:`prepare` resolves a checkpoint, a data folder and a codec into a :class:`Context`, which
the parts of the run read (:mod:`.conditions`, :mod:`.samplers`, :mod:`.efficiency`,
:mod:`.report`); :func:`sample_latents` draws accompaniment latents from seeded noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import derangement, select_clips


@dataclass(frozen=True)
class Context:
    """What every part of one evaluation reads; built once by :func:`prepare`.

    Attributes:
        cfg: the model's configuration (the checkpoint's own when one was loaded).
        asked: the configuration given to :func:`samuel.evaluate.evaluate` (this machine's
            device, VAE folder and ``eval.max_clips``).
        model: the denoiser, in eval mode on ``device``.
        schedule: its noise schedule (:class:`samuel.diffusion.Schedule`).
        codec: decodes latents ``[C, T]`` to audio ``[2, N]`` at ``sr`` Hz.
        device: where the model and the codec run.
        stats: the latents' normalisation statistics.
        checkpoint_info: where the model came from (``results["checkpoint"]``).
        split: the split evaluated (``"test"``, or ``"val"`` to choose settings).
        data_dir: the data folder asked for (or ``runs/<profile>/data``).
        popdb_dir: the POPDB folder resolved from it.
        songs_dir: the folder of the songs' audio and ``truth.json``; None without one.
        data_info: folder, layout and whether song audio exists (``results["data"]``).
        picked: rows of the split evaluated (:func:`select_clips`), ``[N]``.
        rows: the split's facts of those rows (``song_id``, ``offset_frame``), ``[N]``.
        song_ids: their songs, ``[N]``.
        perm: for clip ``i``, the clip whose vocal the shuffled baseline gets
            (:func:`derangement`), ``[N]``.
        vocals: normalised vocal latents of the picked rows ``[N, C, T]`` float32.
        accomp: normalised true accompaniment latents ``[N, C, T]`` float32.
        fps: latent frames per second.
        sr: the decoded audio's sample rate.
        sampler: ``"fast"`` or ``"ancestral"``, the sampler of the fit metrics.
        steps: the fast sampler's steps.
        seed: the noise seed.
    """

    cfg: Any
    asked: Any
    model: Any
    schedule: Any
    codec: Any
    device: str
    stats: dict
    checkpoint_info: dict
    split: str
    data_dir: Path
    popdb_dir: Path
    songs_dir: Path | None
    data_info: dict
    picked: list
    rows: list
    song_ids: list
    perm: np.ndarray
    vocals: np.ndarray
    accomp: np.ndarray
    fps: float
    sr: int
    sampler: str
    steps: int
    seed: int

    @property
    def n(self) -> int:
        """The number of clips evaluated."""
        return int(self.vocals.shape[0])

    @property
    def frames(self) -> int:
        """Latent frames per clip (``T``)."""
        return int(self.vocals.shape[2])

    @property
    def clip_seconds(self) -> float:
        """Seconds per clip."""
        return self.frames / self.fps

    def sample(self, shape, vocals, seed: int, sampler: str | None = None) -> np.ndarray:
        """:func:`sample_latents` with this run's model, schedule, configuration and steps
        (``sampler`` default :attr:`sampler`): normalised latents ``[B, C, T]``."""
        return sample_latents(self.model, self.schedule, shape, vocals, self.cfg,
                              sampler or self.sampler, self.steps, seed, self.device)

    def decode(self, latents: np.ndarray, part: str = "accomp") -> np.ndarray:
        """Normalised latents ``[C, T]`` of ``part`` ("accomp" or "vocal") -> audio ``[2, N]``."""
        from ..data import store

        return self.codec.decode(store.denormalise(latents, self.stats, part))


def prepare(cfg, checkpoint=None, data_dir=None, max_clips: int | None = None,
            steps: int | None = None, sampler: str = "fast", seed: int = 0, codec=None,
            device: str | None = None, split: str = "test") -> Context:
    """Load the model, open the split, pick the clips and build the codec.

    The arguments are :func:`samuel.evaluate.evaluate`'s, which documents them.

    Raises:
        FileNotFoundError: no normalisation statistics beside the split nor in the checkpoint.
        ValueError: an unknown sampler, a split without clips, or clips of fewer than two songs.
    """
    from .. import codecs as codecs_mod
    from ..checkpoint import resolve as resolve_checkpoint
    from ..data import store
    from ..data.popdb import resolve as resolve_popdb
    from ..devices import resolve as resolve_device
    from ..diffusion import Schedule
    from ..paths import run_dir

    if sampler not in ("fast", "ancestral"):
        raise ValueError(f"unknown sampler {sampler!r}: expected 'fast' or 'ancestral'")
    device = resolve_device(device or cfg.device)
    asked = cfg  # the device and the VAE folder are this machine's, not the checkpoint's
    loaded = resolve_checkpoint(checkpoint, device=device, profile=cfg.profile, cfg=cfg)
    model, cfg, ck_stats = loaded.model, loaded.cfg, loaded.stats or None
    folder = getattr(loaded, "folder", None)
    ck_info = {**(getattr(loaded, "info", None) or {}), **({"folder": str(folder)} if folder else {})}
    data_dir = Path(data_dir) if data_dir is not None else run_dir(cfg.profile) / "data"
    # ours (data/ or data/popdb/), an index of `samuel data popdb`, or the published folder
    popdb_dir = resolve_popdb(data_dir, cfg)
    split_info = store.split_info(popdb_dir, split)  # rows -> song, offset; audio or not
    songs_dir = Path(split_info["songs_dir"]) if split_info["songs_dir"] else None
    stats = ck_stats or store.saved_stats(popdb_dir)
    if stats is None:
        raise FileNotFoundError(f"{popdb_dir}: no normalisation statistics (stats.json) beside the "
                                "split nor in the checkpoint")
    vocals_all, accomp_all = store.open_split(popdb_dir, split, normalise=True, stats=stats)
    rows_info = split_info["rows"]
    song_ids_all = [r["song_id"] for r in rows_info]
    if max_clips is None:  # the configuration's bound (paper: 200 clips, ~half an hour on an A100)
        max_clips = getattr(getattr(asked, "eval", None), "max_clips", 0)
    max_clips = max_clips or None  # 0: all, given here or by the configuration
    picked = select_clips(song_ids_all, max_clips)
    if not picked:  # the folder is named in the message (an index has no such folder)
        raise ValueError(f"{popdb_dir / split}: the {split} split holds no clips")
    song_ids = [song_ids_all[i] for i in picked]
    perm = derangement(song_ids, seed=seed)
    if codec is None or isinstance(codec, str):
        codec = codecs_mod.from_config(cfg, name=codec, vae=asked.data.vae, device=device,
                                       half=asked.data.vae_half)
    return Context(
        cfg=cfg, asked=asked, model=model, schedule=Schedule.from_config(cfg), codec=codec,
        device=device, stats=stats, checkpoint_info=ck_info, split=split, data_dir=data_dir,
        popdb_dir=popdb_dir, songs_dir=songs_dir,
        data_info={"folder": str(popdb_dir), "layout": split_info["layout"],
                   "has_audio": split_info["has_audio"]},
        picked=picked, rows=[rows_info[i] for i in picked], song_ids=song_ids, perm=perm,
        vocals=np.asarray(vocals_all[picked], np.float32),
        accomp=np.asarray(accomp_all[picked], np.float32),
        fps=float(split_info.get("frames_per_second") or codec.frames_per_second),
        sr=int(codec.sample_rate), sampler=sampler,
        steps=int(steps or cfg.diffusion.fast_steps), seed=int(seed))


def sample_latents(model, schedule, shape, vocals, cfg, sampler, steps, seed, device) -> np.ndarray:
    """Accompaniment latents ``[B, C, T]`` (normalised) from noise seeded by ``seed``.

    Args:
        shape: ``(B, C, T)``.
        vocals: ``[B, C, T]`` normalised vocal latents, or None (the null condition).
        sampler: ``"fast"`` (``cfg.diffusion.fast_sampler`` in ``steps`` steps) or
            ``"ancestral"`` (the paper's, all ``cfg.diffusion.timesteps`` steps).
    """
    import torch

    from .. import diffusion

    v = None  # the null condition
    if vocals is not None:
        v = torch.as_tensor(np.asarray(vocals), dtype=torch.float32).to(device)
    g = torch.Generator().manual_seed(int(seed))
    kw = dict(vocals=v, cfg_scale=cfg.diffusion.cfg_scale, generator=g, device=device)
    if sampler == "ancestral":
        x = diffusion.sample_ancestral(model, schedule, tuple(shape), **kw)
    elif sampler == "fast":
        x = diffusion.sample_fast(model, schedule, tuple(shape), steps=steps,
                                  method=cfg.diffusion.fast_sampler,
                                  eta=cfg.diffusion.ddim_eta, **kw)
    else:
        raise ValueError(f"unknown sampler {sampler!r}: expected 'fast' or 'ancestral'")
    return x.float().cpu().numpy()


def fast_name(cfg) -> str:
    """The fast sampler's name as reported: ``dpmsolver++``, ``ddim`` or ``ddim-eta1``."""
    name, eta = cfg.diffusion.fast_sampler, cfg.diffusion.ddim_eta
    return f"{name}-eta{eta:g}" if eta > 0 else name


def sync(device) -> None:
    """Wait for the device's queued work (CUDA), so that a timing covers it."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
