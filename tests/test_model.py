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
