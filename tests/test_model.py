"""design §4: the U-Net, soft alignment attention, RoPE and eq. 3's mixing weights."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samuel import config, model
from samuel.diffusion import Schedule
from samuel.model.attention import (SoftAlignmentAttention, global_attention, local_attention,
                                    mix_weights, rope)


def _reference_local(q, k, v, window):
    """Eq. 1 written literally: a loop over queries and their zero-padded windows."""
    b, h, t, d = q.shape
    left = window // 2
    kp = F.pad(k, (0, 0, left, window - left - 1))
    vp = F.pad(v, (0, 0, left, window - left - 1))
    out = torch.empty_like(q)
    for i in range(t):
        kw, vw = kp[:, :, i:i + window], vp[:, :, i:i + window]
        p = (torch.einsum("bhd,bhwd->bhw", q[:, :, i], kw) / d ** 0.5).softmax(-1)
        out[:, :, i] = torch.einsum("bhw,bhwd->bhd", p, vw)
    return out


@pytest.mark.parametrize("t,window", [(24, 16), (40, 8), (64, 16), (8, 16)])
def test_local_attention_matches_literal_eq1(t, window):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, t, 8, generator=g) for _ in range(3))
    assert torch.allclose(local_attention(q, k, v, window), _reference_local(q, k, v, window), atol=1e-5)


def test_local_branch_is_local_at_the_right_frames():
    """Perturbing the vocal at frame j changes the local output exactly at i in [j-7, j+8]."""
    torch.manual_seed(0)
    att = SoftAlignmentAttention(16, 16, heads=2, head_dim=8, window=16)
    x, ctx = torch.randn(1, 16, 64), torch.randn(1, 16, 64)
    j = 30
    ctx2 = ctx.clone()
    ctx2[:, :, j] += 5.0
    local_a, glob_a = att.branches(x, ctx)
    local_b, glob_b = att.branches(x, ctx2)
    changed = (local_a - local_b).abs().amax(dim=1)[0] > 1e-6
    expected = torch.zeros(64, dtype=torch.bool)
    expected[j - 7:j + 9] = True  # window(i) = i-8 … i+7 contains j  <=>  j-7 <= i <= j+8
    assert torch.equal(changed, expected)
    # the global branch, by contrast, changes everywhere
    assert bool(((glob_a - glob_b).abs().amax(dim=1)[0] > 1e-6).all())


def test_global_attention_rope_is_shift_invariant():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 12, 16, generator=g) for _ in range(3))
    pos = torch.arange(12)
    a = global_attention(q, k, v, pos, pos)
    b = global_attention(q, k, v, pos + 37, pos + 37)
    assert torch.allclose(a, b, atol=1e-4)
    # ...but not to a shift of the keys alone: RoPE does carry relative position
    c = global_attention(q, k, v, pos, pos + 5)
    assert not torch.allclose(a, c, atol=1e-3)


def test_rope_preserves_norm_and_relative_dot():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 5, 8, generator=g)
    y = rope(x, torch.arange(5))
    assert torch.allclose(x.norm(dim=-1), y.norm(dim=-1), atol=1e-5)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
    d1 = (rope(q.view(1, 1, 1, 8), torch.tensor([3])) * rope(k.view(1, 1, 1, 8), torch.tensor([1]))).sum()
    d2 = (rope(q.view(1, 1, 1, 8), torch.tensor([12])) * rope(k.view(1, 1, 1, 8), torch.tensor([10]))).sum()
    assert torch.allclose(d1, d2, atol=1e-5)


@pytest.mark.parametrize("mix", ["paper", "reversed"])
def test_mixing_weights_follow_eq3_for_every_t(mix):
    cfg = config.load("smoke", mix=mix)
    m = model.build(cfg)
    sched = Schedule.from_config(cfg)
    t = torch.arange(cfg.diffusion.timesteps)
    sab = torch.as_tensor(np.sqrt(sched.alpha_bar), dtype=torch.float32)
    assert torch.allclose(m.sqrt_alpha_bar[t], sab, atol=1e-6)
    w_g, w_l = mix_weights(m.sqrt_alpha_bar[t], mix)
    if mix == "paper":
        assert torch.allclose(w_g, sab, atol=1e-6) and torch.allclose(w_l, 1 - sab, atol=1e-6)
    else:
        assert torch.allclose(w_g, 1 - sab, atol=1e-6) and torch.allclose(w_l, sab, atol=1e-6)
    # and the attention block really combines its branches with these weights
    att = m.xattn[0]
    x, ctx = torch.randn(3, att.to_q.in_channels, 16), torch.randn(3, att.to_k.in_channels, 16)
    torch.nn.init.normal_(att.to_out.weight)
    ts = torch.tensor([0, 400, 799])
    local, glob = att.branches(x, ctx)
    wg, wl = mix_weights(m.sqrt_alpha_bar[ts], mix)
    expected = x + att.to_out(wg[:, None, None] * glob + wl[:, None, None] * local)
    assert torch.allclose(att(x, ctx, m.sqrt_alpha_bar[ts]), expected, atol=1e-5)


def test_unknown_mix_is_rejected():
    with pytest.raises(ValueError, match="mix"):
        model.build(config.load("smoke", mix="sideways"))


def test_paper_profile_parameter_count():
    n = model.count_parameters(model.build(config.load("paper")))
    assert 12_000_000 <= n <= 18_000_000, n


@pytest.mark.parametrize("t_len", [256, 512, 1024, 2048])
def test_paper_model_runs_at_several_lengths(t_len):
    cfg = config.load("paper")
    m = model.build(cfg).eval()
    x = torch.randn(1, 64, t_len)
    with torch.no_grad():
        y = m(x, torch.tensor([799]), torch.randn(1, 64, t_len))
    assert y.shape == (1, 64, t_len)
    assert torch.isfinite(y).all()


def test_length_not_divisible_by_8_is_a_clear_error():
    m = model.build(config.load("smoke"))
    with pytest.raises(ValueError, match="divisible by 8"):
        m(torch.randn(1, 64, 36), torch.tensor([3]), None)


def _nonzero_outputs(m):
    # The output conv and the attention outputs start at zero (identity residuals); give
    # them weights so that every path shows in the output.
    torch.manual_seed(5)
    for mod in m.modules():
        if isinstance(mod, SoftAlignmentAttention):
            torch.nn.init.normal_(mod.to_out.weight, std=0.05)
    torch.nn.init.normal_(m.conv_out.weight, std=0.05)
    return m


@pytest.mark.parametrize("concat", [False, True])
def test_null_condition_is_used_when_vocals_is_none(concat):
    cfg = config.load("smoke", vocal_concat=concat)
    m = _nonzero_outputs(model.build(cfg)).eval()
    with torch.no_grad():
        m.null_vocal.normal_()
    x, t = torch.randn(2, 64, 32), torch.tensor([10, 500])
    null = m.null_vocal[None, :, None].expand(2, 64, 32)
    vocals = torch.randn(2, 64, 32)
    with torch.no_grad():
        a = m(x, t, None)
        b = m(x, t, null)
        c = m(x, t, vocals)
        d = m(x, t, vocals, torch.tensor([True, False]))
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-4)
    assert torch.allclose(d[0], c[0], atol=1e-5) and torch.allclose(d[1], a[1], atol=1e-5)


def test_vocal_concat_feeds_the_vocal_to_the_input_convolution():
    """With ``vocal_concat`` the vocal reaches the output through the input convolution even
    while every cross-attention output is still zero (its initial state), at the frames where
    it changed; without it, only cross-attention carries the vocal."""
    x, t = torch.randn(1, 64, 64), torch.tensor([300])
    vocals = torch.randn(1, 64, 64)
    moved = vocals.clone()
    moved[..., 20] += 3.0
    changed = {}
    for concat in (False, True):
        cfg = config.load("smoke", vocal_concat=concat)
        m = model.build(cfg).eval()
        torch.nn.init.normal_(m.conv_out.weight, std=0.05)  # attention outputs stay zero
        assert m.conv_in.in_channels == 64 * (2 if concat else 1)
        with torch.no_grad():
            changed[concat] = (m(x, t, moved) - m(x, t, vocals)).abs().amax(dim=1)[0]
    assert changed[False].max() == 0
    assert changed[True].max() > 0 and changed[True].argmax().item() in range(16, 25)
    assert config.load("paper").model.vocal_concat is False


def test_same_seed_same_output():
    cfg = config.load("smoke", seed=3)
    outs = []
    for _ in range(2):
        m = model.build(cfg).eval()
        g = torch.Generator().manual_seed(0)
        x, v = torch.randn(1, 64, 32, generator=g), torch.randn(1, 64, 32, generator=g)
        with torch.no_grad():
            outs.append(m(x, torch.tensor([5]), v))
    assert torch.equal(outs[0], outs[1])
    other = model.build(dataclasses.replace(cfg, seed=4))
    assert not all(torch.equal(a, b) for a, b in zip(other.parameters(), model.build(cfg).parameters()))


# ------------------------------------------------------------ the fast paths against the literal code
# The reference below is the model's code before its memory layout was optimised (the
# convolution projections, the unfold-based local attention, autograd's RoPE and FiLM after
# a full GroupNorm), kept verbatim so that the optimised modules can be checked against it.
def _ref_rope(x, positions, base=10000.0):
    d = x.shape[-1]
    half = d // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float32) * 2 / d)
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _ref_local_attention(q, k, v, window):
    b, h, t, d = q.shape
    left = window // 2
    right = window - left - 1
    nb = -(-t // window)
    extra = nb * window - t
    span = 2 * window - 1
    qb = F.pad(q, (0, 0, 0, extra)).view(b, h, nb, window, d)
    kp = F.pad(k, (0, 0, left, right + extra))
    vp = F.pad(v, (0, 0, left, right + extra))
    kw = kp.unfold(2, span, window)
    vw = vp.unfold(2, span, window)
    scores = torch.matmul(qb, kw) * d ** -0.5
    r = torch.arange(window)[:, None]
    j = torch.arange(span)[None, :]
    band = (j >= r) & (j < r + window)
    p = scores.masked_fill(~band, float("-inf")).softmax(dim=-1)
    out = torch.matmul(p, vw.transpose(-1, -2))
    return out.reshape(b, h, nb * window, d)[:, :, :t]


def _ref_attention_forward(self, x, ctx, sqrt_alpha_bar):
    def split(y):
        b, _, t = y.shape
        return y.view(b, self.heads, self.head_dim, t).transpose(2, 3).contiguous()

    def merge(y):
        b, h, t, d = y.shape
        return y.transpose(2, 3).reshape(b, h * d, t)

    q, k, v = split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx))
    pos_q, pos_k = torch.arange(q.shape[2]), torch.arange(k.shape[2])
    local = merge(_ref_local_attention(q, k, v, self.window))
    glob = merge(F.scaled_dot_product_attention(_ref_rope(q, pos_q), _ref_rope(k, pos_k), v))
    w_global, w_local = mix_weights(sqrt_alpha_bar.to(x.dtype), self.mix)
    context = w_global[:, None, None] * glob + w_local[:, None, None] * local
    return x + self.to_out(context)


def _ref_resblock_forward(self, x, temb):
    h = self.conv1(F.silu(self.norm1(x)))
    gamma, beta = self.film.proj(temb)[:, :, None].chunk(2, dim=1)
    h = self.conv2(F.silu(self.norm2(h) * (1 + gamma) + beta))
    s = F.avg_pool1d(x, 2) if self.down else x
    return self.skip(s) + h


def _as_reference(net):
    """A deep copy of ``net`` whose attention and residual blocks run the reference code."""
    import copy
    import types

    from samuel.model.unet import ResBlock

    ref = copy.deepcopy(net)
    for mod in ref.modules():
        if isinstance(mod, SoftAlignmentAttention):
            mod.forward = types.MethodType(_ref_attention_forward, mod)
        elif isinstance(mod, ResBlock):
            mod.forward = types.MethodType(_ref_resblock_forward, mod)
    return ref


def _randomise(net, seed=0):
    """Non-zero weights everywhere (the zero-initialised output projections hide the attention)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5 + (p.dim() == 1) * 0.1)
    return net


# tolerance: float32 throughout; the fast paths reorder sums (matmul vs convolution, folded
# GroupNorm + FiLM, q scaled before the product), so agreement is to rounding, not bitwise
ATOL, RTOL = 1e-5, 1e-4


@pytest.mark.parametrize("t,window,heads,head_dim", [(24, 16, 2, 8), (40, 8, 3, 4), (8, 16, 2, 8),
                                                       (33, 7, 1, 6), (64, 16, 4, 16)])
def test_local_attention_forward_and_gradients_match_the_reference(t, window, heads, head_dim):
    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(2, heads, t, head_dim, generator=g, requires_grad=True) for _ in range(3))
    w = torch.randn(2, heads, t, head_dim, generator=g)
    out = local_attention(q, k, v, window)
    ref = _ref_local_attention(q, k, v, window)
    assert torch.allclose(out, ref, atol=ATOL, rtol=RTOL)
    grads = torch.autograd.grad((out * w).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * w).sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=ATOL, rtol=RTOL)


def test_local_attention_and_rope_backward_pass_gradcheck():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 21, 4, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: local_attention(a, b, c, 8), (q, k, v))
    assert torch.autograd.gradcheck(lambda a: rope(a, torch.arange(21) + 5), (q,))


def test_rope_matches_the_reference_at_cached_and_shifted_positions():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 10, 8, generator=g)
    for pos in (torch.arange(10), torch.arange(10), torch.arange(10) + 7, torch.arange(10) * 3):
        assert torch.allclose(rope(x, pos), _ref_rope(x, pos), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("mix", ["paper", "reversed"])
def test_attention_block_matches_the_reference(mix):
    torch.manual_seed(0)
    att = _randomise(SoftAlignmentAttention(12, 10, heads=3, head_dim=8, window=8, mix=mix))
    ref = _as_reference(att)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 12, 40, generator=g, requires_grad=True)
    ctx = torch.randn(2, 10, 40, generator=g, requires_grad=True)
    sab = torch.rand(2, generator=g)
    out, expect = att(x, ctx, sab), ref(x, ctx, sab)
    assert torch.allclose(out, expect, atol=ATOL, rtol=RTOL)
    w = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * w).sum(), [x, ctx] + list(att.parameters()))
    ref_grads = torch.autograd.grad((expect * w).sum(), [x, ctx] + list(ref.parameters()))
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("profile", ["smoke", "demo"])
def test_unet_forward_and_gradients_match_the_reference(profile):
    cfg = config.load(profile)
    net = _randomise(model.build(cfg), seed=2)
    ref = _as_reference(net)
    g = torch.Generator().manual_seed(5)
    b, t_len = 2, 32
    x = torch.randn(b, 64, t_len, generator=g)
    voc = torch.randn(b, 64, t_len, generator=g)
    t = torch.tensor([10, 700])
    mask = torch.tensor([True, False])
    out, expect = net(x, t, voc, mask), ref(x, t, voc, mask)
    scale = float(expect.detach().abs().max())
    assert scale > 0.1  # the attention and residual paths are live
    assert torch.allclose(out, expect, atol=ATOL * scale, rtol=RTOL)
    w = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * w).sum(), list(net.parameters()))
    ref_grads = torch.autograd.grad((expect * w).sum(), list(ref.parameters()))
    for (name, _), a, b_ in zip(net.named_parameters(), grads, ref_grads):
        tol = ATOL * max(1.0, float(b_.abs().max()))
        assert torch.allclose(a, b_, atol=tol, rtol=RTOL), name


def test_checkpoint_format_is_unchanged():
    """Parameter names and shapes of every profile: a fingerprint of the checkpoint format
    (sha256 of the sorted ``name:shape`` lines), computed with the code before the fast paths."""
    import hashlib

    expected = {"paper": ("b9584d685e51c088", 169), "demo": ("3cc922ee04dd4d56", 169),
                "smoke": ("a3f7a44b373b3510", 165)}
    for profile, (digest, count) in expected.items():
        sd = model.build(config.load(profile)).state_dict()
        lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(sd.items()))
        assert (hashlib.sha256(lines.encode()).hexdigest()[:16], len(sd)) == (digest, count), profile


@pytest.mark.parametrize("t,window", [(24, 16), (33, 7), (8, 16)])
def test_local_attention_forward_only_path_matches_the_reference(t, window):
    """Without gradients (sampling) the unfold form runs; it must agree with the trained one."""
    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(2, 2, t, 8, generator=g) for _ in range(3))
    with torch.no_grad():
        fast = local_attention(q, k, v, window)
    trained = local_attention(q.requires_grad_(), k, v, window)
    assert torch.allclose(fast, _ref_local_attention(q, k, v, window), atol=ATOL, rtol=RTOL)
    assert torch.allclose(fast, trained.detach(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("t,window", [(24, 16), (33, 7), (64, 16)])
def test_the_gpu_forms_of_local_attention_match_the_cpu_one(t, window):
    """On CPU local attention runs through the fused kernel; the batched-matmul forms used on
    other devices (with their hand-written backward, and the unfold form without gradients)
    are checked here on CPU against it, forward and backward."""
    from samuel.model.attention import _LocalAttention, _local_attention_unfold

    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(2, 3, t, 8, generator=g, requires_grad=True) for _ in range(3))
    w = torch.randn(2, 3, t, 8, generator=g)
    fused = local_attention(q, k, v, window)
    bmm = _LocalAttention.apply(q, k, v, window, window)
    with torch.no_grad():
        unfold = _local_attention_unfold(q, k, v, window)
    assert torch.allclose(bmm, fused, atol=ATOL, rtol=RTOL)
    assert torch.allclose(unfold, fused.detach(), atol=ATOL, rtol=RTOL)
    for a, b in zip(torch.autograd.grad((fused * w).sum(), (q, k, v)),
                    torch.autograd.grad((bmm * w).sum(), (q, k, v))):
        assert torch.allclose(a, b, atol=ATOL, rtol=RTOL)
