"""Soft alignment attention (paper §IV-B, eq. 1-3) and rotary position embeddings.

Book: notebook 03, "Soft alignment attention".

No transformer MLP and no LayerNorm (paper §II-B): Q, K, V and the output are pointwise
(kernel-1) convolutional projections, and the block is residual.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (Su et al. 2021) of ``x [B,H,T,D]`` at ``positions [T]``.

    Channel pairs ``(i, i + D/2)`` are rotated by ``pos · base^(-2i/D)``, so that
    ``<rope(q, m), rope(k, n)>`` depends on ``m - n`` only.
    """
    d = x.shape[-1]
    half = d // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) * 2 / d)
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]  # [T, D/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def local_attention(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """Eq. 1: each query ``i`` attends to the keys at ``i - window//2 … i + window - window//2 - 1``.

    The key/value sequence is zero-padded at both ends (paper §IV-B), so every query sees
    ``window`` slots; padded slots carry a zero key (logit 0) and a zero value. No positional
    embedding. Shapes ``[B,H,T,D]``.

    Computed blockwise: queries in blocks of ``window`` frames share a span of
    ``2·window − 1`` keys, so the scores are one batched matmul ``[.., window, 2·window−1]``
    with a band mask, instead of ``T × T`` scores or ``window`` separate passes.
    """
    b, h, t, d = q.shape
    left = window // 2
    right = window - left - 1
    nb = -(-t // window)  # blocks of queries
    extra = nb * window - t  # pad T up to a whole number of blocks (those queries are dropped)
    span = 2 * window - 1
    qb = F.pad(q, (0, 0, 0, extra)).view(b, h, nb, window, d)
    kp = F.pad(k, (0, 0, left, right + extra))  # [B,H,T+window-1+extra,D]
    vp = F.pad(v, (0, 0, left, right + extra))
    kw = kp.unfold(2, span, window)  # [B,H,nb,D,span]
    vw = vp.unfold(2, span, window)
    scores = torch.matmul(qb, kw) * d ** -0.5  # [B,H,nb,window,span]
    r = torch.arange(window, device=q.device)[:, None]
    j = torch.arange(span, device=q.device)[None, :]
    band = (j >= r) & (j < r + window)  # query r of a block sees block keys r … r+window-1
    p = scores.masked_fill(~band, float("-inf")).softmax(dim=-1)
    out = torch.matmul(p, vw.transpose(-1, -2))  # [B,H,nb,window,D]
    return out.reshape(b, h, nb * window, d)[:, :, :t]


def global_attention(q: Tensor, k: Tensor, v: Tensor, q_pos: Tensor | None = None,
                     k_pos: Tensor | None = None) -> Tensor:
    """Eq. 2: full attention with RoPE on queries and keys, via SDPA. Shapes ``[B,H,T,D]``."""
    if q_pos is None:
        q_pos = torch.arange(q.shape[2], device=q.device)
    if k_pos is None:
        k_pos = torch.arange(k.shape[2], device=k.device)
    return F.scaled_dot_product_attention(rope(q, q_pos), rope(k, k_pos), v)


def mix_weights(sqrt_alpha_bar: Tensor, mix: str = "paper") -> tuple[Tensor, Tensor]:
    """Eq. 3 weights ``(w_global, w_local)`` for ``sqrt(ᾱ_t) [B]``.

    ``mix="paper"``: ``w_global = sqrt(ᾱ_t)``, ``w_local = 1 − sqrt(ᾱ_t)`` (eq. 3 as printed:
    global fades out as noise grows). ``mix="reversed"``: the prose's reading (large t, i.e.
    noisy, emphasises global): ``w_global = 1 − sqrt(ᾱ_t)``, ``w_local = sqrt(ᾱ_t)``.
    """
    if mix == "paper":
        return sqrt_alpha_bar, 1 - sqrt_alpha_bar
    if mix == "reversed":
        return 1 - sqrt_alpha_bar, sqrt_alpha_bar
    raise ValueError(f"unknown mix {mix!r}: expected 'paper' or 'reversed'")


class SoftAlignmentAttention(nn.Module):
    """Cross- (or self-) attention whose context mixes a local and a global branch (eq. 3).

    Args:
        dim: channels of the query features ``x [B,dim,T]``.
        context_dim: channels of the key/value features ``ctx [B,context_dim,T]``.
    """

    def __init__(self, dim: int, context_dim: int, heads: int = 8, head_dim: int = 64,
                 window: int = 16, mix: str = "paper"):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.window, self.mix = heads, head_dim, window, mix
        mix_weights(torch.ones(1), mix)  # validate early
        self.to_q = nn.Conv1d(dim, inner, 1)
        self.to_k = nn.Conv1d(context_dim, inner, 1)
        self.to_v = nn.Conv1d(context_dim, inner, 1)
        self.to_out = nn.Conv1d(inner, dim, 1)
        nn.init.zeros_(self.to_out.weight)  # starts as the identity (residual)
        nn.init.zeros_(self.to_out.bias)

    def _split(self, x: Tensor) -> Tensor:  # [B, H*D, T] -> [B, H, T, D]
        b, _, t = x.shape
        # contiguous: SDPA's fused (flash) CPU kernel needs stride 1 on the last dimension;
        # without it PyTorch falls back to the math path, ~3x slower at T = 1024
        return x.view(b, self.heads, self.head_dim, t).transpose(2, 3).contiguous()

    def _merge(self, x: Tensor) -> Tensor:  # [B, H, T, D] -> [B, H*D, T]
        b, h, t, d = x.shape
        return x.transpose(2, 3).reshape(b, h * d, t)

    def qkv(self, x: Tensor, ctx: Tensor):
        return self._split(self.to_q(x)), self._split(self.to_k(ctx)), self._split(self.to_v(ctx))

    def branches(self, x: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """The local and global contexts ``[B, H*D, T]`` before mixing (for tests and plots)."""
        q, k, v = self.qkv(x, ctx)
        return (self._merge(local_attention(q, k, v, self.window)),
                self._merge(global_attention(q, k, v)))

    def forward(self, x: Tensor, ctx: Tensor, sqrt_alpha_bar: Tensor) -> Tensor:
        local, glob = self.branches(x, ctx)
        w_global, w_local = mix_weights(sqrt_alpha_bar.to(x.dtype), self.mix)
        context = w_global[:, None, None] * glob + w_local[:, None, None] * local  # eq. 3
        return x + self.to_out(context)
