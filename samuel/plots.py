"""Small figures and tables for the book's notebooks (each function names its notebook).

Every figure has labelled axes with units and is returned (``matplotlib.figure.Figure``) so that
a notebook shows it as the cell's result; nothing here is needed outside the book.

Book: notebooks 01, 02, 03 and 05 (the figures they draw).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .audio import SAMPLE_RATE

SPEC_SR = 22050  # spectrograms are drawn at 22.05 kHz (enough for a look, half the work)


def _plt():
    import matplotlib.pyplot as plt

    return plt


def spectrograms(audios: Mapping[str, np.ndarray], sr: int = SAMPLE_RATE, seconds: float | None = 8.0,
                 n_mels: int = 96, title: str | None = None):
    """Log-mel spectrograms (dB) of several ``[C, N]`` signals, one row each. Notebooks 01, 02."""
    import librosa
    import librosa.display
    import soxr

    plt = _plt()
    fig, axes = plt.subplots(len(audios), 1, figsize=(9, 2.2 * len(audios)), sharex=True,
                             squeeze=False)
    for ax, (name, audio) in zip(axes[:, 0], audios.items()):
        y = np.asarray(audio, np.float32)
        y = y.mean(axis=0) if y.ndim == 2 else y
        if seconds is not None:
            y = y[: int(seconds * sr)]
        if sr != SPEC_SR:
            y = soxr.resample(y, sr, SPEC_SR)
        mel = librosa.feature.melspectrogram(y=y, sr=SPEC_SR, n_mels=n_mels, hop_length=256)
        db = librosa.power_to_db(mel, ref=max(float(mel.max()), 1e-10), top_db=80)
        img = librosa.display.specshow(db, sr=SPEC_SR, hop_length=256, x_axis="time",
                                       y_axis="mel", ax=ax, cmap="magma", vmin=-80, vmax=0)
        ax.set_title(name, fontsize=10, loc="left")
        ax.set_ylabel("frequency (Hz)")
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(img, ax=axes[:, 0].tolist(), label="level (dB re peak)", pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


def latent_histograms(latents: Mapping[str, np.ndarray], title: str | None = None):
    """Histograms of the per-channel mean and standard deviation of latents ``[N, C, T]`` or
    ``[C, T]`` (one colour per entry). Notebook 02."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, x in latents.items():
        x = np.asarray(x, np.float64)
        x = x.transpose(1, 0, 2).reshape(x.shape[1], -1) if x.ndim == 3 else x
        a.hist(x.mean(axis=1), bins=24, alpha=0.6, label=name)
        b.hist(x.std(axis=1), bins=24, alpha=0.6, label=name)
    a.set_xlabel("per-channel mean (latent units)")
    b.set_xlabel("per-channel standard deviation (latent units)")
    for ax in (a, b):
        ax.set_ylabel("channels")
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def latent_image(latents: np.ndarray, frames_per_second: float, title: str = "latents"):
    """The latents ``[C, T]`` of one clip as an image (channel against time). Notebook 02."""
    plt = _plt()
    x = np.asarray(latents)
    fig, ax = plt.subplots(figsize=(9, 2.6))
    lim = float(np.percentile(np.abs(x), 99)) or 1.0
    img = ax.imshow(x, aspect="auto", origin="lower", cmap="coolwarm", vmin=-lim, vmax=lim,
                    extent=[0, x.shape[1] / frames_per_second, 0, x.shape[0]])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latent channel")
    ax.set_title(title, fontsize=10, loc="left")
    fig.colorbar(img, ax=ax, label="value", pad=0.01)
    fig.tight_layout()
    return fig


def block_table(model) -> list[tuple[str, int]]:
    """``(block, parameters)`` for each top-level block of the U-Net, in order. Notebook 03."""
    rows = []
    for name, child in model.named_children():
        rows.append((name, sum(p.numel() for p in child.parameters())))
    own = sum(p.numel() for p in model.parameters(recurse=False))
    if own:
        rows.append(("(own parameters: null condition)", own))
    return rows


def format_block_table(tables: Mapping[str, Sequence[tuple[str, int]]]) -> str:
    """Side-by-side text table of :func:`block_table` outputs keyed by profile. Notebook 03."""
    names = list(dict.fromkeys(n for rows in tables.values() for n, _ in rows))
    cols = list(tables)
    lookup = {c: dict(rows) for c, rows in tables.items()}
    width = max(len(n) for n in names + ["block"])
    lines = ["block".ljust(width) + "".join(f"{c:>14}" for c in cols)]
    lines.append("-" * len(lines[0]))
    for n in names:
        lines.append(n.ljust(width) + "".join(f"{lookup[c].get(n, 0):>14,}" for c in cols))
    lines.append("-" * len(lines[0]))
    lines.append("total".ljust(width) + "".join(f"{sum(lookup[c].values()):>14,}" for c in cols))
    return "\n".join(lines)


def local_window_mask(frames: int = 48, window: int = 16) -> np.ndarray:
    """``[frames, frames]`` booleans: query ``i`` sees key ``j`` in the local branch (eq. 1)."""
    left = window // 2
    i = np.arange(frames)[:, None]
    j = np.arange(frames)[None, :]
    return (j >= i - left) & (j < i - left + window)


def attention_windows(frames: int = 48, window: int = 16, head_dim: int = 64):
    """Left: the local-window mask (which keys each query sees). Right: RoPE, the score of a
    query and a key that are the same vector, against their distance. Notebook 03."""
    import torch

    from .model.attention import rope

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.imshow(local_window_mask(frames, window), cmap="Greys", origin="upper", interpolation="nearest")
    a.set_xlabel("key frame j")
    a.set_ylabel("query frame i")
    a.set_title(f"local branch: window of {window} frames (eq. 1)", fontsize=10)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(1, 1, 1, head_dim, generator=g)
    dist = torch.arange(-frames, frames + 1)
    q = rope(v.expand(1, 1, 1, head_dim), torch.zeros(1))
    k = rope(v.expand(1, 1, len(dist), head_dim), dist)
    score = (q * k).sum(-1)[0, 0] / (v * v).sum()
    b.plot(dist.numpy(), score.numpy(), color="C1")
    b.axvspan(-(window // 2), window - window // 2 - 1, color="0.85", label="local window")
    b.set_xlabel("key position − query position (frames)")
    b.set_ylabel("RoPE score / unrotated score")
    b.set_title("global branch: RoPE makes scores depend on distance (eq. 2)", fontsize=10)
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def mix_weights_figure(alpha_bar: np.ndarray):
    """Eq. 3's weights of the global and local branches against ``t``, for both readings.
    Notebooks 03 and 05."""
    import torch

    from .model.attention import mix_weights

    plt = _plt()
    sab = torch.as_tensor(np.sqrt(alpha_bar), dtype=torch.float64)
    t = np.arange(len(alpha_bar))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, mix in zip(axes, ("paper", "reversed")):
        w_global, w_local = mix_weights(sab, mix)
        ax.plot(t, w_global.numpy(), label="global (RoPE)")
        ax.plot(t, w_local.numpy(), label="local (window)")
        ax.set_title(f'mix="{mix}"' + (" (eq. 3 as printed)" if mix == "paper" else
                                        " (the prose's reading)"), fontsize=10)
        ax.set_xlabel("timestep t (0 = clean, 799 = noise)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("weight in the context")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_weights(schedule) -> tuple[np.ndarray, np.ndarray]:
    """``(snr, w)`` per timestep: the raw ``ᾱ_t / (1 − ᾱ_t)`` and the weight the training
    loss uses, :meth:`samuel.diffusion.Schedule.snr_weight` (clamp and floor applied)."""
    import torch

    t = torch.arange(schedule.timesteps)
    w = schedule.snr_weight(t).double().numpy()
    snr = schedule.alpha_bar / (1 - schedule.alpha_bar)
    return snr, w


def loss_weight_figure(schedule):
    """The loss weight of every timestep: the raw SNR (dashed) and the weight the model trains
    on, ``Schedule.snr_weight`` (solid: the clamp from above, the floor from below). Notebook 04."""
    plt = _plt()
    snr, w = loss_weights(schedule)
    t = np.arange(len(w))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.semilogy(t, snr, ls="--", color="tab:gray", label="SNR ᾱ/(1 − ᾱ), unclamped")
    ax.semilogy(t, w, color="tab:blue", lw=2, label="w(t) the loss uses (Schedule.snr_weight)")
    if schedule.snr_clamp:
        ax.axhline(schedule.snr_clamp, color="tab:red", lw=0.8, ls=":",
                   label=f"clamp {schedule.snr_clamp:g}")
    if schedule.snr_floor:
        ax.axhline(schedule.snr_floor, color="tab:green", lw=0.8, ls=":",
                   label=f"floor {schedule.snr_floor:g}")
    ax.set_xlabel("timestep t (0 = clean, last = noise)")
    ax.set_ylabel("loss weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def describe_loss_weight(schedule) -> str:
    """One sentence on the weighting the loss uses: where the clamp and the floor act."""
    snr, w = loss_weights(schedule)
    n = len(w)
    parts = [f"unclamped, the SNR weight at t=0 is {snr[0]:.0f}"]
    if schedule.snr_clamp:
        parts.append(f"the clamp at {schedule.snr_clamp:g} holds it for the "
                     f"{int((snr > schedule.snr_clamp).sum())} cleanest of {n} steps")
    if schedule.snr_floor:
        parts.append(f"the floor at {schedule.snr_floor:g} lifts it for the "
                     f"{int((snr < schedule.snr_floor).sum())} noisiest")
    else:
        parts.append("no floor: the noisiest steps keep their small weight")
    return "; ".join(parts) + f" (w ranges from {w.min():.3g} to {w.max():.3g})."
