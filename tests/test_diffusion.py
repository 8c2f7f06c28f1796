"""design §5: schedule, v identities, loss, condition dropout, samplers and guidance."""
import math

import numpy as np
import pytest
import torch

from samuel import config, model
from samuel.diffusion import (Schedule, fast_timesteps, guided_v, sample_ancestral, sample_fast,
                              training_loss)

SCHED = Schedule(800)


def test_schedule_shape_and_ends():
    ab = SCHED.alpha_bar
    assert ab.shape == (800,)
    assert np.all(np.diff(ab) < 0), "alpha_bar must decrease"
    assert ab[0] > 0.9999 and ab[-1] < 1e-4
    assert abs(ab[399] - math.cos((0.5 + 0.008) / 1.008 * math.pi / 2) ** 2 /
               math.cos(0.008 / 1.008 * math.pi / 2) ** 2) < 1e-2


def test_schedule_equals_diffusers_squaredcos():
    from diffusers import DDPMScheduler
    ref = DDPMScheduler(num_train_timesteps=800, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    assert np.allclose(SCHED.alpha_bar, ref.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_v_identities_recover_x0_and_eps_across_the_schedule(dtype):
    g = torch.Generator().manual_seed(0)
    t = torch.arange(0, 800, dtype=torch.long)
    x0 = torch.randn(800, 4, 8, generator=g, dtype=dtype)
    eps = torch.randn(800, 4, 8, generator=g, dtype=dtype)
    x_t = SCHED.q_sample(x0, t, eps)
    v = SCHED.v_target(x0, eps, t)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert torch.allclose(SCHED.x0_from_v(x_t, v, t), x0, atol=tol)
    assert torch.allclose(SCHED.eps_from_v(x_t, v, t), eps, atol=tol)
    # v is the rotation of (ε, x0): its norm equals the noise-data norm on average
    ab = torch.as_tensor(SCHED.alpha_bar, dtype=dtype)[t].view(-1, 1, 1)
    assert torch.allclose(v, ab.sqrt() * eps - (1 - ab).sqrt() * x0, atol=tol)


def test_snr_weight_is_clamped():
    t = torch.arange(800)
    w = SCHED.snr_weight(t)
    raw = torch.as_tensor(SCHED.alpha_bar / (1 - SCHED.alpha_bar), dtype=torch.float32)
    assert torch.allclose(w, raw.clamp(max=5.0))
    assert w.max() == 5.0 and raw.max() > 1000
    assert torch.allclose(Schedule(800, snr_clamp=0).snr_weight(t), raw)
    floored = Schedule(800, snr_floor=1.0).snr_weight(t)
    assert torch.allclose(floored, raw.clamp(min=1.0, max=5.0))
    assert floored.min() == 1.0 and (raw < 1).sum() > 300  # the noisier ~half of the schedule


class Spy(torch.nn.Module):
    """Records what the loss passes to the model."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, vocals, cond_mask):
        self.calls.append((x, t, vocals, cond_mask))
        return torch.zeros_like(x)


def test_condition_dropout_fraction_and_loss_value():
    spy = Spy()
    g = torch.Generator().manual_seed(0)
    x0, voc = torch.randn(4000, 2, 4, generator=g), torch.randn(4000, 2, 4, generator=g)
    loss, parts = training_loss(spy, SCHED, x0, voc, cond_dropout=0.1, generator=g, return_parts=True)
    _, t, vocals, mask = spy.calls[0]
    assert vocals is voc
    dropped = (~mask).float().mean().item()
    assert 0.08 < dropped < 0.12
    # with a zero prediction, the loss is the clamped-SNR-weighted mean of |v|^2
    v = SCHED.v_target(x0, parts["noise"], t)
    expected = (SCHED.snr_weight(t) * v.pow(2).mean(dim=(1, 2))).mean()
    assert torch.allclose(loss, expected)
    assert training_loss(Spy(), SCHED, x0[:8], voc[:8], cond_dropout=1.0, generator=g,
                         return_parts=True)[1]["cond_mask"].sum() == 0


def test_dropped_rows_reach_the_model_as_the_null_condition():
    m = model.build(config.load("smoke"))
    with torch.no_grad():
        m.null_vocal.fill_(7.0)
    seen = {}
    m.vocal_encoder.register_forward_hook(lambda mod, inp, out: seen.update(v=inp[0]))
    g = torch.Generator().manual_seed(1)
    voc = torch.randn(64, 64, 32, generator=g)
    _, parts = training_loss(m, SCHED, torch.randn(64, 64, 32, generator=g), voc, 0.1, g, True)
    used = seen["v"]
    mask = parts["cond_mask"]
    assert (~mask).any() and mask.any()
    assert torch.all(used[~mask] == 7.0)
    assert torch.equal(used[mask], voc[mask])


class GaussianDenoiser(torch.nn.Module):
    """The exact v-prediction for data x0 ~ N(mu, s^2) (per element), optionally conditional:
    with a condition c, the data mean is ``c`` (so guidance at scale 1 must give mean c)."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s
        self.calls = 0
        self.batch_sizes = []

    def forward(self, x, t, vocals=None, cond_mask=None):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        a = torch.as_tensor(np.sqrt(SCHED.alpha_bar), dtype=x.dtype)[t].view(-1, 1, 1)
        b = torch.as_tensor(np.sqrt(1 - SCHED.alpha_bar), dtype=x.dtype)[t].view(-1, 1, 1)
        mu = torch.full_like(x, self.mu)
        if vocals is not None:
            keep = torch.ones(x.shape[0], dtype=torch.bool) if cond_mask is None else cond_mask
            mu = torch.where(keep[:, None, None], vocals, mu)
        var = a ** 2 * self.s ** 2 + b ** 2
        resid = x - a * mu
        x0 = mu + a * self.s ** 2 / var * resid
        eps = b / var * resid
        return a * eps - b * x0


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpmsolver++", "ddim-eta1"])
def test_samplers_reproduce_a_known_gaussian(sampler):
    mu, s = 1.5, 0.5
    den = GaussianDenoiser(mu, s)
    g = torch.Generator().manual_seed(0)
    shape = (4096, 1, 8)
    if sampler == "ancestral":
        x = sample_ancestral(den, SCHED, shape, generator=g)
        assert den.calls == 800
    else:
        # DDIM is first order: at 16 steps it shrinks this Gaussian's std by ~9 %; 50 are needed.
        # With eta = 1 (ancestral steps over skipped timesteps) 16 steps shrink it by ~16 %
        # (test below); 200 are needed.
        steps = {"ddim": 50, "dpmsolver++": 16, "ddim-eta1": 200}[sampler]
        method, eta = ("ddim", 1.0) if sampler == "ddim-eta1" else (sampler, 0.0)
        x = sample_fast(den, SCHED, shape, steps=steps, method=method, generator=g, eta=eta)
        assert den.calls == steps
    assert abs(x.mean().item() - mu) < 0.02
    assert abs(x.std().item() - s) / s < 0.05


def test_stochastic_ddim_converges_to_the_ancestral_sampler_with_steps():
    """DDIM with eta = 1 takes DDPM's posterior step with x0 replaced by its prediction: the mean
    is right at any step count, the spread is under-dispersed at few steps and converges."""
    stds = []
    for steps in (16, 50, 200):
        g = torch.Generator().manual_seed(0)
        x = sample_fast(GaussianDenoiser(1.5, 0.5), SCHED, (4096, 1, 8), steps=steps,
                        method="ddim", generator=g, eta=1.0)
        assert abs(x.mean().item() - 1.5) < 0.02
        stds.append(x.std().item())
    assert stds[0] < stds[1] < stds[2] and 0.40 < stds[0] < 0.45 and abs(stds[2] - 0.5) < 0.025
    g = torch.Generator().manual_seed(0)
    a = sample_fast(GaussianDenoiser(1.5, 0.5), SCHED, (64, 1, 8), steps=16, method="ddim",
                    generator=g, eta=1.0)
    g = torch.Generator().manual_seed(0)
    b = sample_fast(GaussianDenoiser(1.5, 0.5), SCHED, (64, 1, 8), steps=16, method="ddim",
                    generator=g)
    assert not torch.allclose(a, b)  # eta = 0 is the deterministic DDIM
    with pytest.raises(ValueError, match="only the 'ddim' sampler"):
        sample_fast(GaussianDenoiser(1.5, 0.5), SCHED, (4, 1, 8), steps=4, eta=1.0)


@pytest.mark.parametrize("sampler", ["ancestral", "dpmsolver++"])
def test_guidance_is_one_batched_forward_and_follows_the_condition(sampler):
    den = GaussianDenoiser(0.0, 0.3)
    g = torch.Generator().manual_seed(0)
    cond = torch.full((512, 1, 8), 2.0)
    kw = dict(vocals=cond, cfg_scale=1.0001, generator=g)
    if sampler == "ancestral":
        x = sample_ancestral(den, SCHED, cond.shape, **kw)
        assert den.calls == 800
    else:
        x = sample_fast(den, SCHED, cond.shape, steps=16, **kw)
        assert den.calls == 16
    assert all(b == 1024 for b in den.batch_sizes)  # conditioned + null in one batch
    assert abs(x.mean().item() - 2.0) < 0.05


def test_guided_v_formula():
    den = GaussianDenoiser(0.0, 1.0)
    x, t = torch.randn(3, 1, 4), torch.tensor([100, 400, 700])
    c = torch.ones(3, 1, 4)
    v_c, v_u = den(x, t, c), den(x, t, None)
    assert torch.allclose(guided_v(den, x, t, c, 3.0), v_u + 3.0 * (v_c - v_u), atol=1e-6)


def test_fast_timesteps_start_at_pure_noise():
    ts = fast_timesteps(800, 16)
    assert ts[0] == 799 and len(ts) == 16 and ts == sorted(ts, reverse=True) and ts[-1] >= 0


def test_tiny_model_overfits_a_conditional_toy_set():
    """Two vocal patterns, each with its own accompaniment: the loss must fall 10x and the
    samples must follow their condition.

    The loss watched is the x0-prediction error at t in {400, 550, 700, 799}, where the
    accompaniment has to come from the condition (at t = 799, x_t is nearly pure noise). The
    schedule keeps w(t) >= 1 (``snr_floor``) so that these steps train at all.
    """
    cfg = config.load("smoke", seed=0)
    sched = Schedule(800, snr_floor=1.0)
    torch.manual_seed(0)
    m = model.build(cfg)
    g = torch.Generator().manual_seed(0)
    T = 16
    ramp = torch.linspace(-1, 1, T)
    voc = torch.stack([torch.sin(3 * ramp).expand(64, T), torch.cos(5 * ramp).expand(64, T)])
    acc = torch.stack([ramp.expand(64, T) * 1.0, -ramp.expand(64, T) * 1.0])
    steps = 1800  # 1400 fell 9.9x on 1 thread, 11.7x on 2 (rounding); 1800: 14.2x and 14.1x
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    lr = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    probe_t = torch.tensor([400, 550, 700, 799] * 2)
    probe_noise = torch.randn(8, 64, T, generator=g)

    def probe():
        with torch.no_grad():
            x0, v = acc.repeat(4, 1, 1), voc.repeat(4, 1, 1)
            xt = sched.q_sample(x0, probe_t, probe_noise)
            return (sched.x0_from_v(xt, m(xt, probe_t, v), probe_t) - x0).pow(2).mean().item()

    first = probe()
    for _ in range(steps):
        idx = torch.randint(0, 2, (32,), generator=g)
        loss = training_loss(m, sched, acc[idx], voc[idx], 0.1, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr.step()
    last = probe()
    assert last < first / 10, (first, last)
    m.eval()
    x = sample_fast(m, sched, (2, 64, T), vocals=voc, cfg_scale=1.0, steps=16, generator=g)
    err_right = (x - acc).pow(2).mean(dim=(1, 2))
    err_swapped = (x - acc.flip(0)).pow(2).mean(dim=(1, 2))
    assert torch.all(err_right < err_swapped / 4), (err_right, err_swapped)


def test_fast_timesteps_are_distinct_up_to_the_schedule_and_refuse_more():
    for steps in range(1, 801):
        ts = fast_timesteps(800, steps)
        assert len(set(ts)) == steps and ts == sorted(ts, reverse=True) and ts[-1] >= 0, steps
    for bad in (0, 801, 1000):
        with pytest.raises(ValueError, match="expected 1 to 800 sampling steps"):
            fast_timesteps(800, bad)


def test_dpm_solver_beyond_the_training_timesteps_is_a_clear_error():
    """More steps than timesteps would repeat one (h = 0: DPM-Solver++ divided by zero)."""
    den = GaussianDenoiser(1.5, 0.5)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="steps = 801: expected 1 to 800"):
        sample_fast(den, SCHED, (4, 1, 8), steps=801, method="dpmsolver++", generator=g)
    assert den.calls == 0
    # the most there may be: every timestep once, finite and on the right distribution
    x = sample_fast(den, SCHED, (2048, 1, 8), steps=800, method="dpmsolver++", generator=g)
    assert den.calls == 800 and torch.isfinite(x).all()
    assert abs(x.mean().item() - 1.5) < 0.03 and abs(x.std().item() - 0.5) / 0.5 < 0.05
    from samuel.diffusion import solver_step
    with pytest.raises(ValueError, match="expected a smaller timestep"):
        solver_step(SCHED.alpha_bar, 400, 400, x, x, x, 0.1, "dpmsolver++")


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpmsolver++"])
def test_bf16_autocast_sampling_is_an_option_close_to_float32(sampler):
    cfg = config.load("smoke")
    torch.manual_seed(0)
    m = model.build(cfg).eval()
    with torch.no_grad():  # the zero-initialised output layer would make every sample noise
        m.conv_out.weight.normal_(0, 0.05)
    voc = torch.randn(2, 64, 32, generator=torch.Generator().manual_seed(1))

    def run(**kw):
        g = torch.Generator().manual_seed(0)
        common = dict(vocals=voc, cfg_scale=2.0, generator=g, **kw)
        if sampler == "ancestral":
            return sample_ancestral(m, SCHED, (2, 64, 32), steps=8, **common)
        return sample_fast(m, SCHED, (2, 64, 32), steps=8, method=sampler, **common)

    ref, off, on = run(), run(autocast=False), run(autocast=True)
    assert torch.equal(ref, off)  # off by default
    assert on.dtype == torch.float32 and torch.isfinite(on).all()
    assert not torch.equal(on, ref)  # the model really ran in bf16
    rel = ((on - ref).norm() / ref.norm()).item()
    assert rel < 0.05, rel


def test_loss_draws_come_from_the_generator_in_a_fixed_order():
    """t, then the noise, then the dropout mask, all from ``generator`` (on its device)."""
    spy = Spy()
    x0, voc = torch.randn(8, 2, 4), torch.randn(8, 2, 4)
    g = torch.Generator().manual_seed(7)
    _, parts = training_loss(spy, SCHED, x0, voc, cond_dropout=0.5, generator=g, return_parts=True)
    ref = torch.Generator().manual_seed(7)
    assert torch.equal(parts["t"], torch.randint(0, 800, (8,), generator=ref))
    assert torch.equal(parts["noise"], torch.randn(x0.shape, generator=ref))
    assert torch.equal(parts["cond_mask"], torch.rand(8, generator=ref) >= 0.5)
    assert torch.equal(g.get_state(), ref.get_state())


# --------------------------------------------------------------------------- inpainting
def _known(shape, frames):
    latents = torch.zeros(shape)
    latents[..., :frames] = 2.0
    mask = torch.zeros(shape[-1], dtype=torch.bool)
    mask[:frames] = True
    return latents, mask


@pytest.mark.parametrize("method, eta", [("dpmsolver++", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_known_frames_follow_one_noise_draw_at_every_step(method, eta):
    """sample_fast's ``known`` region: at every step the held frames of x_t are exactly
    q_sample(latents, t, ε) for one ε, the other frames are the sampler's own."""
    shape, frames = (2, 3, 16), 6
    latents, mask = _known(shape, frames)
    seen = []
    sample_fast(GaussianDenoiser(0.0, 1.0), SCHED, shape, steps=8, method=method, eta=eta,
                generator=torch.Generator().manual_seed(0), known=(latents, mask),
                callback=lambda t, x, v: seen.append((t, x.clone())))
    eps = []
    for t, x in seen:
        a, s = np.sqrt(SCHED.alpha_bar[t]), np.sqrt(1 - SCHED.alpha_bar[t])
        eps.append((x[..., :frames] - a * 2.0) / s)
    assert len(eps) == 8
    for e in eps[1:]:
        assert torch.allclose(e, eps[0], atol=1e-4)
    assert not torch.allclose(seen[-1][1][..., frames:], seen[-2][1][..., frames:])


def test_an_empty_known_region_changes_nothing():
    shape = (2, 3, 16)
    latents, mask = _known(shape, 0)
    kw = dict(steps=6, method="dpmsolver++")
    free = sample_fast(GaussianDenoiser(1.0, 0.5), SCHED, shape,
                       generator=torch.Generator().manual_seed(4), **kw)
    held = sample_fast(GaussianDenoiser(1.0, 0.5), SCHED, shape, known=(latents, mask),
                       generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(free, held)


def test_a_known_region_of_another_shape_is_a_clear_error():
    latents, mask = _known((2, 3, 16), 4)
    with pytest.raises(ValueError, match=r"known: expected latents \(2, 3, 8\) and a mask of 8 "
                       r"frames, found \(2, 3, 16\) and 16"):
        sample_fast(GaussianDenoiser(0.0, 1.0), SCHED, (2, 3, 8), steps=2, known=(latents, mask))
