"""Soft alignment attention (paper §IV-B, eq. 1-3) and rotary position embeddings.

No transformer MLP and no LayerNorm (paper §II-B): Q, K, V and the output are pointwise
(kernel-1) convolutional projections, and the block is residual.

Layout: each input is copied once into time-major rows ``[B·T, C]`` and projected by one
matrix product straight into ``[B, T, H·D]`` memory, viewed as ``[B, H, T, D]``, the layout
that the fused CPU attention kernel reads without a copy (stride 1 on ``D``) and writes its
output in; the output projection reads that memory back as rows, one product again. (One
product over all rows also makes each weight gradient one product.) The parameters
are still the ``Conv1d`` weights ``[out, in, 1]``, so checkpoints are unchanged; only the
order of memory passes differs from the literal convolutions (equal to float rounding).

Book: notebook 03, "Soft alignment attention".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ROPE_CACHE: dict = {}
_BAND_CACHE: dict = {}


def _rope_tables(positions: Tensor, d: int, base: float, dtype) -> tuple[Tensor, Tensor]:
    """``cos, sin [T, D/2]`` of RoPE's angles; cached for the plain ``arange`` positions."""
    t = positions.shape[0]
    plain = positions.dtype == torch.int64 and not positions.requires_grad
    key = (t, d, base, str(positions.device), dtype)
    if plain and key in _ROPE_CACHE:
        cached_pos, cos, sin = _ROPE_CACHE[key]
        if torch.equal(cached_pos, positions):
            return cos, sin
    half = d // 2
    freqs = base ** (-torch.arange(half, device=positions.device, dtype=torch.float32) * 2 / d)
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]  # [T, D/2]
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    if plain:
        if len(_ROPE_CACHE) > 64:
            _ROPE_CACHE.clear()
        _ROPE_CACHE[key] = (positions.clone(), cos, sin)
    return cos, sin


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``[x1 cos − x2 sin, x1 sin + x2 cos]`` for the halves ``x1, x2`` of the last dimension."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    lo, hi = out[..., :half], out[..., half:]
    torch.mul(x1, cos, out=lo)
    lo.addcmul_(x2, sin, value=-1.0)
    torch.mul(x1, sin, out=hi)
    hi.addcmul_(x2, cos)
    return out


class _Rope(torch.autograd.Function):
    """The rotation with its exact adjoint as the backward (the rotation by −angle): one
    pass each way instead of autograd's slices, products and sums."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, -sin), None, None


def rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (Su et al. 2021) of ``x [B,H,T,D]`` at ``positions [T]``.

    Channel pairs ``(i, i + D/2)`` are rotated by ``pos · base^(-2i/D)``, so that
    ``<rope(q, m), rope(k, n)>`` depends on ``m - n`` only.
    """
    cos, sin = _rope_tables(positions, x.shape[-1], base, x.dtype)
    return _Rope.apply(x, cos, sin)


def _band(window: int, block: int, device) -> Tensor:
    """``[block, 2·block]`` True where query ``r`` of a block sees key ``j`` of its span."""
    key = (window, block, str(device))
    if key not in _BAND_CACHE:
        r = torch.arange(block, device=device)[:, None]
        j = torch.arange(2 * block, device=device)[None, :]
        _BAND_CACHE[key] = (j >= r) & (j < r + window)
    return _BAND_CACHE[key]


def _blocks(x: Tensor, left: int, length: int, n: int, window: int) -> Tensor:
    """``x [B,H,T,D]`` zero-padded by ``left`` in front to ``length`` frames, as ``[n, window, D]``."""
    b, h, t, d = x.shape
    out = x.new_empty(b, h, length, d)  # zero only the pads: no fill of the whole buffer
    out[:, :, :left].zero_()
    out[:, :, left:left + t].copy_(x)
    out[:, :, left + t:].zero_()
    return out.view(n, window, d)


class _LocalAttention(torch.autograd.Function):
    """Eq. 1 on blocks, with a hand-written backward.

    Rows (batch × head) are cut into ``nb + 1`` blocks of ``window`` frames and laid end to
    end (``n`` blocks in all); block ``i`` of the queries sees blocks ``i`` and ``i + 1`` of the
    padded keys, which are the views ``kb[:-1]`` and ``kb[1:]``, so no window is copied. The
    pairs that straddle two rows (the extra last block of each row) are computed and dropped.
    The backward writes the gradients of both views straight into one buffer.
    """

    @staticmethod
    def forward(ctx, q, k, v, window, block):
        with torch.autocast(q.device.type, enabled=False):  # in q's dtype, softmax in float32
            return _LocalAttention._forward(ctx, q, k.to(q.dtype), v.to(q.dtype), window, block)

    @staticmethod
    def _forward(ctx, q, k, v, window, block):
        b, h, t, d = q.shape
        left = window // 2
        mask = ~_band(window, block, q.device)
        window = block  # from here on: the block length
        nb = -(-t // window)
        length = (nb + 1) * window
        n = b * h * (nb + 1)
        scale = d ** -0.5
        qb = _blocks(q, 0, length, n, window)[:-1]
        kb, vb = _blocks(k, left, length, n, window), _blocks(v, left, length, n, window)
        scores = torch.empty(n - 1, window, 2 * window, dtype=q.dtype, device=q.device)
        torch.bmm(qb, kb[:-1].transpose(1, 2), out=scores[..., :window])
        torch.bmm(qb, kb[1:].transpose(1, 2), out=scores[..., window:])
        scores.mul_(scale).masked_fill_(mask, float("-inf"))
        low = q.dtype in (torch.float16, torch.bfloat16)  # softmax in float32 then, as autocast does
        p = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype) if low else scores.softmax(dim=-1)
        out = torch.empty(n, window, d, dtype=q.dtype, device=q.device)
        torch.bmm(p[..., :window], vb[:-1], out=out[:-1])
        out[:-1].baddbmm_(p[..., window:], vb[1:])
        ctx.save_for_backward(qb, kb, vb, p)
        ctx.geometry = (b, h, t, d, window, left, nb, n, scale)
        return out.view(b, h, length, d)[:, :, :t]

    @staticmethod
    def backward(ctx, grad):
        qb = ctx.saved_tensors[0]
        with torch.autocast(qb.device.type, enabled=False):
            return _LocalAttention._backward(ctx, grad.to(qb.dtype))

    @staticmethod
    def _backward(ctx, grad):
        qb, kb, vb, p = ctx.saved_tensors
        b, h, t, d, window, left, nb, n, scale = ctx.geometry
        length = (nb + 1) * window
        g = _blocks(grad, 0, length, n, window)[:-1]  # [n-1, window, D]
        p0, p1 = p[..., :window], p[..., window:]
        # values: block i + 1 of vb gets p1ᵀ g from query block i, block i gets p0ᵀ g
        dvb = torch.empty(n, window, d, dtype=grad.dtype, device=grad.device)
        torch.bmm(p0.transpose(1, 2), g, out=dvb[:-1])
        dvb[-1].zero_()
        dvb[1:].baddbmm_(p1.transpose(1, 2), g)
        # softmax: dS = P ⊙ (dP − Σ_j dP P)
        dp = torch.empty_like(p)
        torch.bmm(g, vb[:-1].transpose(1, 2), out=dp[..., :window])
        torch.bmm(g, vb[1:].transpose(1, 2), out=dp[..., window:])
        ds = p * (dp - (dp * p).sum(dim=-1, keepdim=True))
        ds.mul_(scale)
        ds0, ds1 = ds[..., :window], ds[..., window:]
        dqb = torch.empty(n, window, d, dtype=grad.dtype, device=grad.device)  # last block unused
        torch.bmm(ds0, kb[:-1], out=dqb[:-1])
        dqb[:-1].baddbmm_(ds1, kb[1:])
        dkb = torch.empty(n, window, d, dtype=grad.dtype, device=grad.device)
        torch.bmm(ds0.transpose(1, 2), qb, out=dkb[:-1])
        dkb[-1].zero_()
        dkb[1:].baddbmm_(ds1.transpose(1, 2), qb)
        dq = dqb.view(b, h, length, d)[:, :, :t]
        dk = dkb.view(b, h, length, d)[:, :, left:left + t]
        dv = dvb.view(b, h, length, d)[:, :, left:left + t]
        return dq, dk, dv, None, None


def _fused_layout(x: Tensor, left: int, per: int, extra: int) -> Tensor:
    """``x [B,H,T,D]`` as time-major rows ``[B·per + extra, H, D]``: each example's ``T`` frames
    after ``left`` zero rows, zeros up to ``per`` rows, and ``extra`` zero rows at the very end."""
    b, h, t, d = x.shape
    buf = x.new_empty(b * per + extra, h, d)
    rows = buf[:b * per].view(b, per, h, d)
    rows[:, :left].zero_()
    rows[:, left:left + t].copy_(x.transpose(1, 2))
    rows[:, left + t:].zero_()
    buf[b * per:].zero_()
    return buf


def _fused_forward(q: Tensor, k: Tensor, v: Tensor, window: int, keep_graph: bool):
    """Eq. 1 as one call of the fused attention kernel on blocks (see :class:`_LocalAttentionFused`).

    Returns ``(out [B,H,T,D], graph)``; ``graph`` (the kernel's inputs as leaves and its output)
    only when ``keep_graph``."""
    b, h, t, d = q.shape
    left = window // 2
    nb = -(-t // window)
    per = (nb + 1) * window  # rows per example: its blocks and one more (dropped)
    n = b * (nb + 1)  # query blocks in all
    strides = (window * h * d, d, h * d, 1)  # [block, head, frame, channel] over the time-major rows
    qv = _fused_layout(q, 0, per, 0).as_strided((n, h, window, d), strides)
    # keys and values: block i of the queries sees the 2·window rows from its own block start
    # (overlapping views: no window is copied); the last block reads the ``window`` extra rows
    kv = _fused_layout(k, left, per, window).as_strided((n, h, 2 * window, d), strides)
    vv = _fused_layout(v, left, per, window).as_strided((n, h, 2 * window, d), strides)
    mask = _band(window, window, q.device)
    graph = None
    if keep_graph:
        with torch.enable_grad():
            qv, kv, vv = (x.detach().requires_grad_() for x in (qv, kv, vv))
            o = F.scaled_dot_product_attention(qv, kv, vv, attn_mask=mask)
        graph = (qv, kv, vv, o)
        o = o.detach()
    else:
        o = F.scaled_dot_product_attention(qv, kv, vv, attn_mask=mask)
    # [n, H, window, D] -> [B, per, H, D] rows -> the first T frames, as [B, H, T, D]
    out = o.transpose(1, 2).reshape(b, per, h, d)[:, :t]
    return out.transpose(1, 2), graph


class _LocalAttentionFused(torch.autograd.Function):
    """Eq. 1 through PyTorch's fused attention kernel (``scaled_dot_product_attention`` with the
    band as its mask), on CPU.

    The blockwise form of :class:`_LocalAttention` spends most of its time not computing: its
    products are ``window × D`` matrices, one library call each, tens of thousands per layer
    (on a 2-core CPU the paper-size local attention ran at about 6 GFLOP/s). Here the query
    blocks are the kernel's batch: the queries, keys and values are written once into
    time-major rows (zero-padded like eq. 1), block ``i`` of the queries is a view of its
    ``window`` rows and its keys a view of the ``2·window`` rows from the same start
    (overlapping views, nothing copied), so the whole layer is one kernel call each way. Each
    example carries one extra block whose queries are zero: its output is dropped and its
    gradients are exactly zero, so neighbouring examples do not mix. The backward is the
    kernel's own, through a small saved graph; the key and value gradients of the two halves
    of each span are added back into their rows.
    """

    @staticmethod
    def forward(ctx, q, k, v, window):
        with torch.autocast(q.device.type, enabled=False):  # in q's dtype, as _LocalAttention
            out, graph = _fused_forward(q, k.to(q.dtype), v.to(q.dtype), window, keep_graph=True)
        # saved as tensors (not attributes), so that autograd releases the small graph with
        # this node's other buffers once the backward has run
        ctx.save_for_backward(*graph)
        ctx.geometry = (q.shape, window)
        return out

    @staticmethod
    def backward(ctx, grad):
        qv, kv, vv, o = ctx.saved_tensors
        (b, h, t, d), window = ctx.geometry
        left = window // 2
        nb = -(-t // window)
        per, n = (nb + 1) * window, b * (nb + 1)
        g = _fused_layout(grad.to(o.dtype), 0, per, 0).view(n, window, h, d).transpose(1, 2)
        # retain_graph: a second backward through this node (gradcheck) needs it again
        dq, dk, dv = torch.autograd.grad(o, (qv, kv, vv), g, retain_graph=True)

        def rows(dx: Tensor, lo: int) -> Tensor:  # [n, H, window, D] blocks -> [B, H, T, D]
            return dx.transpose(1, 2).reshape(b, per, h, d)[:, lo:lo + t].transpose(1, 2)

        def fold(dspan: Tensor) -> Tensor:  # the span's halves back onto their rows, summed
            acc = dspan.new_empty(n + 1, window, h, d)
            acc[:n].copy_(dspan[:, :, :window].transpose(1, 2))
            acc[n].zero_()
            acc[1:].add_(dspan[:, :, window:].transpose(1, 2))
            return acc[:n].view(b, per, h, d)[:, left:left + t].transpose(1, 2)

        return rows(dq, 0), fold(dk), fold(dv), None


def local_attention(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """Eq. 1: each query ``i`` attends to the keys at ``i - window//2 … i + window - window//2 - 1``.

    The key/value sequence is zero-padded at both ends (paper §IV-B), so every query sees
    ``window`` slots; padded slots carry a zero key (logit 0) and a zero value. No positional
    embedding. Shapes ``[B,H,T,D]``.

    Computed blockwise: queries in blocks of ``window`` frames share a span of two blocks
    of the padded keys, so the scores are ``[window, 2·window]`` per block with a band mask,
    instead of ``T × T`` scores or ``window`` separate passes. On CPU all blocks go through
    the fused attention kernel at once (:class:`_LocalAttentionFused`); elsewhere as batched
    matmuls (:class:`_LocalAttention` with its hand-written backward; without gradients, the
    unfold form).
    """
    window = int(window)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if q.device.type == "cpu":
        if grad:
            return _LocalAttentionFused.apply(q, k, v, window)
        with torch.autocast("cpu", enabled=False):
            return _fused_forward(q, k.to(q.dtype), v.to(q.dtype), window, keep_graph=False)[0]
    if grad:
        return _LocalAttention.apply(q, k, v, window, window)
    return _local_attention_unfold(q, k, v, window)


def _local_attention_unfold(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """The forward-only form (sampling): a span of ``2·window − 1`` keys per query block,
    cut from the padded keys by ``unfold`` (a view). Its forward is the cheapest, but its
    backward is not, hence :class:`_LocalAttention` when gradients are needed."""
    b, h, t, d = q.shape
    left = window // 2
    right = window - left - 1
    nb = -(-t // window)
    extra = nb * window - t
    span = 2 * window - 1
    qb = F.pad(q, (0, 0, 0, extra)).view(b, h, nb, window, d)
    kw = F.pad(k, (0, 0, left, right + extra)).unfold(2, span, window)  # [B,H,nb,D,span]
    vw = F.pad(v, (0, 0, left, right + extra)).unfold(2, span, window)
    scores = torch.matmul(qb, kw) * d ** -0.5  # [B,H,nb,window,span]
    band = _band(window, window, q.device)[:, :span]
    p = scores.masked_fill(~band, float("-inf")).softmax(dim=-1)
    out = torch.matmul(p.to(vw.dtype), vw.transpose(-1, -2))  # [B,H,nb,window,D]
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


def _rows(x: Tensor) -> Tensor:
    """``x [B, C, T]`` as time-major rows ``[B·T, C]`` (one transposing copy)."""
    b, c, t = x.shape
    return x.transpose(1, 2).reshape(b * t, c)


def _pointwise(conv: nn.Conv1d, rows: Tensor, b: int) -> Tensor:
    """A kernel-1 ``conv`` of the time-major ``rows [B·T, C]`` (:func:`_rows`), as ``[B, T, out]``.

    One matrix product over all ``B·T`` rows, so that its backward forms the weight's
    gradient as one product too; written as a batched product over ``B`` (each ``[T, C]``
    read in place from ``[B, C, T]``), that gradient was ``B`` products of depth ``T``
    summed afterwards, slow at the coarse resolutions (``T`` = 128: about 36 GFLOP/s)."""
    w = conv.weight[:, :, 0].t()  # [in, out]
    return torch.addmm(conv.bias, rows, w).view(b, rows.shape[0] // b, -1)


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

    def _split(self, x: Tensor) -> Tensor:  # [B, T, H*D] -> [B, H, T, D] (a view, D stride 1)
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:  # [B, H, T, D] -> [B, H*D, T]
        b, h, t, d = x.shape
        return x.transpose(1, 2).reshape(b, t, h * d).transpose(1, 2)

    def qkv(self, x: Tensor, ctx: Tensor):
        """Queries, keys and values ``[B, H, T, D]`` (views of time-major memory)."""
        b = x.shape[0]
        xr = _rows(x)
        cr = xr if ctx is x else _rows(ctx)  # self-attention: one copy for all three
        return (self._split(_pointwise(self.to_q, xr, b)), self._split(_pointwise(self.to_k, cr, b)),
                self._split(_pointwise(self.to_v, cr, b)))

    def branches(self, x: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """The local and global contexts ``[B, H*D, T]`` before mixing (for tests and plots)."""
        q, k, v = self.qkv(x, ctx)
        return (self._merge(local_attention(q, k, v, self.window)),
                self._merge(global_attention(q, k, v)))

    def forward(self, x: Tensor, ctx: Tensor, sqrt_alpha_bar: Tensor) -> Tensor:
        q, k, v = self.qkv(x, ctx)
        b, h, t, d = q.shape
        local = local_attention(q, k, v, self.window).transpose(1, 2)  # [B, T, H, D]
        glob = global_attention(q, k, v).transpose(1, 2)
        w_global, w_local = mix_weights(sqrt_alpha_bar.to(x.dtype), self.mix)
        context = torch.addcmul(glob * w_global[:, None, None, None], local,
                                w_local[:, None, None, None])  # eq. 3, [B, T, H, D]
        context = context.reshape(b * t, h * d)  # time-major rows (the [B, T, H, D] memory)
        w = self.to_out.weight[:, :, 0].t()  # [H*D, dim]
        out = torch.addmm(self.to_out.bias, context, w).view(b, t, -1)  # one product, as _pointwise
        return x + out.transpose(1, 2)
