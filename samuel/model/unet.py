"""The SAMUeL latent U-Net (paper §IV-A, Fig. 2; design §4).

Book: notebook 03.

    x_t (64,T) ─conv─ (c0,T) ─xattn─┬─ down ─ (c1,T/2) ─xattn─┬─ down ─ (c2,T/4) ─xattn─┬─ down ─ (c3,T/8)
                                     │                          │                          │        │ mid: res, xattn,
    v  (64,T) ◄─conv─ (c0,T) ◄────── up ◄── (c1,T/2) ◄──────── up ◄── (c2,T/4) ◄────────── up ◄───┘ self-attn, res

Vocal features come from a small convolutional encoder at the same four resolutions; they
enter through soft-alignment cross-attention (queries: accompaniment features; keys and
values: vocal features). Every residual block carries a FiLM layer driven by the time
embedding (paper §IV-A).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import SoftAlignmentAttention


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[B, dim]`` of integer timesteps ``t [B]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018): ``h (1 + γ) + β`` from the time embedding."""

    def __init__(self, time_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(time_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        gamma, beta = self.proj(temb)[:, :, None].chunk(2, dim=1)
        return h * (1 + gamma) + beta

    def after_norm(self, h: Tensor, norm: nn.GroupNorm, temb: Tensor) -> Tensor:
        """``self(norm(h), temb)`` in one pass over ``h`` after the normalisation.

        GroupNorm's affine ``x̂ w + b`` followed by FiLM's ``(1 + γ)`` and ``β`` is one affine
        map per (example, channel): ``x̂ · w (1 + γ) + (b (1 + γ) + β)``; the small
        ``[B, C, 1]`` factors are formed first, then applied to ``x̂`` with one ``addcmul``.
        """
        gamma, beta = self.proj(temb)[:, :, None].chunk(2, dim=1)
        scale = 1 + gamma
        shift = torch.addcmul(beta, norm.bias[None, :, None], scale)
        scale = norm.weight[None, :, None] * scale
        xhat = F.group_norm(h, norm.num_groups, None, None, norm.eps)
        return torch.addcmul(shift, xhat, scale)


class ResBlock(nn.Module):
    """Two convolutions, GroupNorm + SiLU, one FiLM layer, residual (paper §IV-A, design §4).

    ``down=True`` makes the first convolution strided (T → T/2) and average-pools the skip.
    """

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int, down: bool = False):
        super().__init__()
        self.down = down
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride=2 if down else 1, padding=1)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.film = FiLM(time_dim, c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.film.after_norm(h, self.norm2, temb)))
        s = F.avg_pool1d(x, 2) if self.down else x
        return self.skip(s) + h


class VocalEncoder(nn.Module):
    """Vocal latents ``[B,64,T]`` → features at ``T, T/2, T/4, T/8`` with channels ``c0…c3``."""

    def __init__(self, latent_channels: int, channels: tuple, groups: int):
        super().__init__()
        self.stem = nn.Conv1d(latent_channels, channels[0], 3, padding=1)
        self.downs = nn.ModuleList()
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            self.downs.append(nn.Sequential(
                nn.GroupNorm(min(groups, c_in), c_in), nn.SiLU(),
                nn.Conv1d(c_in, c_out, 4, stride=2, padding=1),
                nn.GroupNorm(min(groups, c_out), c_out), nn.SiLU(),
                nn.Conv1d(c_out, c_out, 3, padding=1)))

    def forward(self, vocals: Tensor) -> list:
        feats = [self.stem(vocals)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class SamuelUNet(nn.Module):
    """``model(x_t [B,64,T], t [B] int64, vocals [B,64,T] | None, cond_mask [B] | None) -> v``.

    ``vocals=None`` uses the learned null condition for every row; ``cond_mask`` (True = keep
    the vocal) replaces the rows where it is False, which is how training drops the condition
    and how guidance batches the conditioned and null passes together.
    """

    def __init__(self, cfg_model, alpha_bar):
        super().__init__()
        m = cfg_model
        c = tuple(m.channels)
        if len(c) != 4:
            raise ValueError(f"model.channels: expected 4 widths (T, T/2, T/4, T/8), found {c}")
        self.cfg = m
        self.latent_channels = m.latent_channels
        sin_dim = c[0] * 2
        self.sin_dim = sin_dim
        self.time_mlp = nn.Sequential(nn.Linear(sin_dim, m.time_dim), nn.SiLU(),
                                      nn.Linear(m.time_dim, m.time_dim))
        self.null_vocal = nn.Parameter(torch.zeros(m.latent_channels))  # learned null condition
        self.register_buffer("sqrt_alpha_bar",
                             torch.as_tensor(alpha_bar, dtype=torch.float64).sqrt().float(),
                             persistent=False)
        attn = dict(heads=m.heads, head_dim=m.head_dim, window=m.window, mix=m.mix)
        self.vocal_encoder = VocalEncoder(m.latent_channels, c, m.groups)
        self.vocal_concat = bool(m.vocal_concat)
        self.conv_in = nn.Conv1d(m.latent_channels * (2 if self.vocal_concat else 1), c[0], 3, padding=1)
        self.xattn = nn.ModuleList([SoftAlignmentAttention(ci, ci, **attn) for ci in c])
        self.downs = nn.ModuleList([ResBlock(c[i], c[i + 1], m.time_dim, m.groups, down=True)
                                    for i in range(3)])
        self.mid1 = nn.ModuleList([ResBlock(c[3], c[3], m.time_dim, m.groups) for _ in range(m.mid_blocks)])
        self.mid_attn = SoftAlignmentAttention(c[3], c[3], **attn)  # bottleneck self-attention
        self.mid2 = nn.ModuleList([ResBlock(c[3], c[3], m.time_dim, m.groups) for _ in range(m.mid_blocks)])
        self.ups = nn.ModuleList([ResBlock(c[i + 1] + c[i], c[i], m.time_dim, m.groups)
                                  for i in reversed(range(3))])
        self.norm_out = nn.GroupNorm(min(m.groups, c[0]), c[0])
        self.conv_out = nn.Conv1d(c[0], m.latent_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def condition(self, vocals: Tensor | None, cond_mask: Tensor | None, like: Tensor) -> Tensor:
        """The vocal latents with the null condition substituted where ``cond_mask`` is False."""
        null = self.null_vocal.to(like.dtype)[None, :, None].expand_as(like)
        if vocals is None:
            return null
        if vocals.shape != like.shape:
            raise ValueError(f"vocals: expected shape {tuple(like.shape)} like x_t, found {tuple(vocals.shape)}")
        if cond_mask is None:
            return vocals
        return torch.where(cond_mask.to(like.device)[:, None, None], vocals, null)

    def forward(self, x_t: Tensor, t: Tensor, vocals: Tensor | None = None,
                cond_mask: Tensor | None = None) -> Tensor:
        b, ch, T = x_t.shape
        if ch != self.latent_channels:
            raise ValueError(f"x_t: expected {self.latent_channels} channels, found {ch}")
        if T % 8:
            raise ValueError(f"x_t: expected a length divisible by 8 (three halvings), found T={T}")
        sab = self.sqrt_alpha_bar[t]
        temb = self.time_mlp(timestep_embedding(t, self.sin_dim))
        cond = self.condition(vocals, cond_mask, x_t)
        vfeats = self.vocal_encoder(cond)
        h = self.conv_in(torch.cat([x_t, cond], dim=1) if self.vocal_concat else x_t)
        h = self.xattn[0](h, vfeats[0], sab)
        skips = [h]
        for i, down in enumerate(self.downs):
            h = self.xattn[i + 1](down(h, temb), vfeats[i + 1], sab)
            skips.append(h)
        skips.pop()
        for blk in self.mid1:
            h = blk(h, temb)
        h = self.mid_attn(h, h, sab)
        for blk in self.mid2:
            h = blk(h, temb)
        for up in self.ups:  # upsample, join the skip at the new resolution, residual block
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = up(torch.cat([h, skips.pop()], dim=1), temb)
        return self.conv_out(F.silu(self.norm_out(h)))
