"""Latent augmentation for the offline codec: gain, band tilt and noise in z-scored space.

The offline codec's latents are log band levels, ``(dB + 50) / 25`` (samuel/codecs/offline.py),
so turning a recording up by ``g`` dB adds ``g / 25`` to every band above the floor, and an EQ
tilt adds a ramp across the bands. The model sees them z-scored per channel with the training
statistics (``(x - mean_c) / std_c``), where the same gain is an offset of ``g / (25 std_c)``
in channel ``c`` (:func:`db_offset`). Real recordings differ from the synthetic corpus in level
and spectral balance, and a separated vocal carries noise; this augmentation shows the model
such rows so that it does not read the key or the beat from a level it never varies:

* **gain**: ``± gain_db`` on both stems of a row (the whole song louder or softer), plus an
  independent ``± gain_db / 2`` on the vocal (its level against the backing);
* **tilt**: a linear ramp of ``± tilt_db`` from band 0 to band 63, on both stems (mastering);
* **noise**: Gaussian noise on the vocal, its std uniform in ``[0, noise]`` z-units.

A band at the codec's floor (silence, -80 dB) stays silent, and no band is pushed below the
floor. Each row is augmented with probability ``p``; every batch draws the same number of
values from the generator whatever is chosen, so a run resumes exactly.

Book: notebook 04 (training); design §5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np
import torch

from .codecs.offline import DB_FLOOR, DB_OFFSET, DB_SCALE, SEMITONE_BANDS, WIDE_EDGES_HZ
from .data.store import STD_FLOOR

CHANNELS = SEMITONE_BANDS + len(WIDE_EDGES_HZ) - 1  # 64
FLOOR = (DB_FLOOR + DB_OFFSET) / DB_SCALE  # the codec's silence level (-1.2)
FLOOR_TOL = 1e-3  # a codec value within this of the floor counts as silence


@dataclass(frozen=True)
class LatentAugment:
    """Strength of the augmentation: ``p`` per row; ranges in dB and z-units (module docstring)."""

    p: float = 0.0
    gain_db: float = 6.0
    tilt_db: float = 6.0
    noise: float = 0.1

    @classmethod
    def from_config(cls, cfg) -> "LatentAugment":
        tc = cfg.train
        return cls(p=float(tc.latent_augment), gain_db=float(tc.latent_gain_db),
                   tilt_db=float(tc.latent_tilt_db), noise=float(tc.latent_noise))


def _stats(stats: Mapping, stem: str) -> tuple:
    s = stats[stem] if stem in stats else stats
    if "mean" not in s or "std" not in s:
        raise ValueError(f"latent augmentation stats: expected 'mean' and 'std' (or '{stem}' with "
                         f"them), found keys {sorted(stats)}")
    mean = np.asarray(s["mean"], np.float32)
    std = np.maximum(np.asarray(s["std"], np.float32), STD_FLOOR)
    return mean, std


def db_offset(db, stats: Mapping, stem: str) -> np.ndarray:
    """The z-scored offset ``[..., C]`` of a level change of ``db`` dB (a number, or ``[..., C]``
    per channel) in ``stem`` ("vocal" or "accomp"): ``db / 25 / std_c``."""
    _, std = _stats(stats, stem)
    return (np.asarray(db, np.float32) / DB_SCALE / std).astype(np.float32)


def tilt_ramp(channels: int = CHANNELS) -> np.ndarray:
    """The tilt's shape ``[C]``: -1 at band 0 rising linearly to +1 at the last band."""
    return np.linspace(-1.0, 1.0, channels, dtype=np.float32)


def shift_levels(z: np.ndarray, db: np.ndarray, stats: Mapping, stem: str) -> np.ndarray:
    """Add ``db`` ``[B, C]`` dB to z-scored latents ``z`` ``[B, C, T]`` of ``stem``, keeping
    silent bands silent and none below the floor."""
    mean, std = _stats(stats, stem)
    z = np.asarray(z, np.float32)
    z_floor = ((FLOOR - mean) / std)[None, :, None]
    silent = z * std[None, :, None] + mean[None, :, None] <= FLOOR + FLOOR_TOL
    shifted = np.maximum(z + db_offset(db, stats, stem)[:, :, None], z_floor)
    return np.where(silent, z, shifted).astype(np.float32)


def apply(v: np.ndarray, a: np.ndarray, stats: Mapping, g: torch.Generator,
          aug: LatentAugment) -> tuple:
    """Augment a batch of z-scored ``(vocals, accomp)`` ``[B, C, T]``; draws from ``g``: ``[B, 5]``
    uniforms (choice, gain, vocal gain, tilt, noise level), then ``[B, C, T]`` normals.

    Rows not chosen (all of them at ``p`` = 0) come back unchanged, bit for bit.
    """
    v, a = np.asarray(v, np.float32), np.asarray(a, np.float32)
    if v.ndim != 3 or v.shape != a.shape:
        raise ValueError(f"latent augmentation: expected vocals and accomp of one shape [B, C, T], "
                         f"found {v.shape} and {a.shape}")
    u = torch.rand((len(v), 5), generator=g, dtype=torch.float64).numpy()
    normal = torch.randn(v.shape, generator=g, dtype=torch.float32).numpy()
    chosen = u[:, 0] < aug.p
    if not chosen.any():
        return v, a
    ramp = tilt_ramp(v.shape[1])
    gain = (2 * u[:, 1] - 1) * aug.gain_db
    own = (2 * u[:, 2] - 1) * aug.gain_db / 2
    tilt = (2 * u[:, 3] - 1) * aug.tilt_db
    both = gain[:, None] + tilt[:, None] * ramp[None, :]  # [B, C] dB
    rows = np.flatnonzero(chosen)
    v_out, a_out = v.copy(), a.copy()
    v_out[rows] = shift_levels(v[rows], (both + own[:, None])[rows], stats, "vocal")
    a_out[rows] = shift_levels(a[rows], both[rows], stats, "accomp")
    sigma = (u[:, 4] * aug.noise).astype(np.float32)
    v_out[rows] += sigma[rows, None, None] * normal[rows]
    return v_out, a_out


def latent_augmenter(cfg, stats: Mapping, g: torch.Generator,
                     inner: Optional[Callable] = None) -> Callable:
    """The training loop's ``augment(v, a)``: ``inner`` (the transposition, which z-scores) if
    given, then :func:`apply` with ``cfg.train``'s strength, drawing from ``g`` after it.

    Raises:
        ValueError: the codec is not the offline one (its latents are not dB levels).
    """
    if cfg.data.codec != "offline":
        raise ValueError(f"train.latent_augment={cfg.train.latent_augment}: expected the 'offline' "
                         f"codec (log band levels), found {cfg.data.codec!r}; set train__latent_augment=0")
    aug = LatentAugment.from_config(cfg)

    def augment(v, a):
        if inner is not None:
            v, a = inner(v, a)
        return apply(v, a, stats, g, aug)

    return augment
