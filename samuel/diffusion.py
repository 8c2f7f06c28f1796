"""Cosine schedule, v-parametrisation, the SNR-weighted loss and the samplers (design §5).

Book: notebook 03 (schedule, v identities), 04 (loss), 05 (samplers and σ-vs-t).

Indices: ``t`` runs over ``0 … timesteps-1``; ``alpha_bar[t]`` is the signal fraction after
``t+1`` noising steps, so ``alpha_bar[0] ≈ 1`` and ``alpha_bar[-1] ≈ 0`` (the convention of
``diffusers``' ``squaredcos_cap_v2``, which lets its few-step schedulers share our schedule).

A ``model`` here is any callable ``model(x_t [B,C,T], t [B] int64, vocals [B,C,T] | None,
cond_mask [B] bool | None) -> v [B,C,T]``; the U-Net of :mod:`samuel.model` is one, and the
tests use an exact Gaussian denoiser.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm


def cosine_betas(timesteps: int = 800, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Betas of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), float64 ``[timesteps]``."""
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return np.array([min(1 - f((i + 1) / timesteps) / f(i / timesteps), max_beta)
                     for i in range(timesteps)], dtype=np.float64)


class Schedule:
    """The noise schedule and the v-parametrisation identities (paper §IV-C).

    ``x_t = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) ε``;  ``v = sqrt(ᾱ_t) ε − sqrt(1-ᾱ_t) x0``.
    Hence ``x0 = sqrt(ᾱ_t) x_t − sqrt(1-ᾱ_t) v`` and ``ε = sqrt(1-ᾱ_t) x_t + sqrt(ᾱ_t) v``.
    """

    def __init__(self, timesteps: int = 800, s: float = 0.008, snr_clamp: float = 5.0,
                 snr_floor: float = 0.0):
        self.timesteps = timesteps
        self.snr_floor = snr_floor
        self.betas = cosine_betas(timesteps, s)
        self.alpha_bar = np.cumprod(1.0 - self.betas)  # float64
        self.snr_clamp = snr_clamp
        self._cache: dict = {}

    @classmethod
    def from_config(cls, cfg) -> "Schedule":
        d = cfg.diffusion
        return cls(d.timesteps, d.cosine_s, d.snr_clamp, d.snr_floor)

    def table(self, name: str, device, dtype=torch.float32) -> Tensor:
        key = (name, str(device), dtype)
        if key not in self._cache:
            ab = self.alpha_bar
            values = {"sqrt_ab": np.sqrt(ab), "sqrt_1m_ab": np.sqrt(1 - ab), "ab": ab,
                      "snr": ab / (1 - ab)}[name]
            self._cache[key] = torch.as_tensor(values, dtype=dtype, device=device)
        return self._cache[key]

    def _coef(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        c = self.table(name, like.device, torch.float64 if like.dtype == torch.float64 else torch.float32)
        return c[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(ᾱ_t) x0 + sqrt(1-ᾱ_t) ε`` (forward process)."""
        return self._coef("sqrt_ab", t, x0) * x0 + self._coef("sqrt_1m_ab", t, x0) * noise

    def v_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``v = sqrt(ᾱ_t) ε − sqrt(1-ᾱ_t) x0`` (paper eq. 4)."""
        return self._coef("sqrt_ab", t, x0) * noise - self._coef("sqrt_1m_ab", t, x0) * x0

    def x0_from_v(self, x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
        return self._coef("sqrt_ab", t, x_t) * x_t - self._coef("sqrt_1m_ab", t, x_t) * v

    def eps_from_v(self, x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
        return self._coef("sqrt_1m_ab", t, x_t) * x_t + self._coef("sqrt_ab", t, x_t) * v

    def snr_weight(self, t: Tensor) -> Tensor:
        """``w(t) = ᾱ_t / (1-ᾱ_t)`` (paper eq. 5), clamped at ``snr_clamp`` (design §5).

        Unclamped, w reaches ~5e4 at t=0 and the loss is dominated by the easiest steps;
        Min-SNR weighting (Hang et al. 2023) caps it at 5. At the other end w → 0 as t → T,
        so the noisiest steps (where the accompaniment's structure and its fit to the vocal
        are decided) hardly train; ``snr_floor`` > 0 (ours, off in the paper profile) keeps
        their weight at least that.
        """
        w = self.table("snr", t.device)[t]
        if self.snr_clamp:
            w = w.clamp(max=self.snr_clamp)
        return w.clamp(min=self.snr_floor) if self.snr_floor else w


def training_loss(model, schedule: Schedule, x0: Tensor, vocals: Tensor, cond_dropout: float = 0.1,
                  generator: Optional[torch.Generator] = None, return_parts: bool = False):
    """Clamped SNR-weighted MSE on v with condition dropout (paper §V, eq. 5).

    Args:
        x0: clean accompaniment latents ``[B,C,T]``.
        vocals: vocal latents ``[B,C,T]``; a fraction ``cond_dropout`` of rows is replaced by
            the model's learned null condition (``cond_mask`` False) for classifier-free guidance.
        generator: the source of the timesteps, noise and dropout mask; they are drawn on its
            device (a CUDA generator keeps them on the GPU) and moved to ``x0``'s device.

    Returns:
        the scalar loss (a 0-dim tensor, not synchronised with the host).
    """
    b = x0.shape[0]
    dev = x0.device
    # drawn on the generator's device (the training device when the loop passes a device
    # generator; the CPU for a CPU generator, then moved), in the order t, noise, mask
    gdev = generator.device if generator is not None else torch.device("cpu")
    t = torch.randint(0, schedule.timesteps, (b,), generator=generator, device=gdev).to(dev)
    noise = torch.randn(x0.shape, generator=generator, device=gdev).to(dev, x0.dtype)
    cond_mask = (torch.rand(b, generator=generator, device=gdev) >= cond_dropout).to(dev)
    x_t = schedule.q_sample(x0, t, noise)
    v = schedule.v_target(x0, noise, t)
    pred = model(x_t, t, vocals, cond_mask)
    per_example = (pred.float() - v.float()).pow(2).mean(dim=tuple(range(1, x0.dim())))
    loss = (schedule.snr_weight(t) * per_example).mean()
    if return_parts:
        return loss, {"t": t, "noise": noise, "cond_mask": cond_mask, "per_example": per_example}
    return loss


def guided_v(model, x: Tensor, t: Tensor, vocals: Optional[Tensor], cfg_scale: float) -> Tensor:
    """Classifier-free guidance: ``v_null + s (v_cond − v_null)`` from ONE batched forward."""
    if vocals is None or cfg_scale == 0.0:
        return model(x, t, None, None)
    if cfg_scale == 1.0:
        return model(x, t, vocals, None)
    b = x.shape[0]
    mask = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)]).to(x.device)
    v = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([vocals, vocals]), mask)
    v_cond, v_null = v[:b], v[b:]
    return v_null + cfg_scale * (v_cond - v_null)


Callback = Callable[[int, Tensor, Tensor], None]  # (t, x_t, v)


def _randn(shape, generator: Optional[torch.Generator], device, dtype=None) -> Tensor:
    """Standard normal ``shape`` drawn on the generator's device (CPU without one), then moved."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=gdev).to(device, dtype)


def _guided(model, x: Tensor, t: Tensor, vocals: Optional[Tensor], cfg_scale: float,
            autocast: bool) -> Tensor:
    """:func:`guided_v`, under bf16 autocast when ``autocast``; returned in ``x``'s dtype."""
    if not autocast:
        return guided_v(model, x, t, vocals, cfg_scale)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        v = guided_v(model, x, t, vocals, cfg_scale)
    return v.to(x.dtype)


@torch.no_grad()
def sample_ancestral(model, schedule: Schedule, shape, vocals: Optional[Tensor] = None,
                     cfg_scale: float = 1.0, generator: Optional[torch.Generator] = None,
                     callback: Optional[Callback] = None, steps: Optional[int] = None,
                     progress: bool = False, device="cpu", autocast: bool = False) -> Tensor:
    """The paper's ancestral (DDPM) sampler over all timesteps, from ``t = T-1`` to ``0``.

    ``steps`` runs only the first ``steps`` iterations (used to time a slice and extrapolate).
    ``autocast`` runs the model under bf16 autocast (off by default; the update itself stays
    in float32); the noise comes from ``generator`` on its own device.

    Returns:
        the sample ``shape`` (``[B, C, T]``), float32.
    """
    x = _randn(shape, generator, device)
    betas = torch.as_tensor(schedule.betas, dtype=torch.float64)
    ab = torch.as_tensor(schedule.alpha_bar, dtype=torch.float64)
    ts = list(range(schedule.timesteps - 1, -1, -1))
    if steps is not None:
        ts = ts[:steps]
    for i in tqdm(ts, disable=not progress, desc="ancestral", leave=False):
        t = torch.full((shape[0],), i, dtype=torch.long, device=device)
        v = _guided(model, x, t, vocals, cfg_scale, autocast)
        if callback is not None:
            callback(i, x, v)
        x0 = schedule.x0_from_v(x, v, t)
        ab_t, ab_prev = ab[i], (ab[i - 1] if i > 0 else torch.tensor(1.0, dtype=torch.float64))
        beta = betas[i]
        c0 = float(ab_prev.sqrt() * beta / (1 - ab_t))
        ct = float((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t))
        mean = c0 * x0 + ct * x
        if i > 0:
            var = float(beta * (1 - ab_prev) / (1 - ab_t))
            x = mean + math.sqrt(var) * _randn(shape, generator, device)
        else:
            x = mean
    return x


def fast_timesteps(timesteps: int, steps: int) -> list:
    """Evenly spaced ``trailing`` timesteps: the first is ``timesteps-1`` (pure noise).

    At most ``timesteps`` steps: more would repeat timesteps, a zero step in log-SNR
    (DPM-Solver++ divides by it).

    Raises:
        ValueError: ``steps`` is below 1 or above ``timesteps``.
    """
    if not 1 <= int(steps) <= timesteps:
        raise ValueError(f"steps = {steps}: expected 1 to {timesteps} sampling steps (the "
                         f"schedule has {timesteps} distinct timesteps; more would repeat them)")
    return [int(round(timesteps - 1 - i * timesteps / steps)) for i in range(steps)]


def solver_step(alpha_bar, i: int, j: int, x: Tensor, x0: Tensor, prev_x0: Optional[Tensor],
                prev_h: Optional[float], method: str, eta: float = 0.0,
                generator: Optional[torch.Generator] = None) -> tuple:
    """One DDIM / DPM-Solver++(2M) step from timestep ``i`` to ``j < i`` given the data
    prediction ``x0``; returns ``(x_j, h)`` with ``h`` the step in log-SNR/2 (for the next step).

    ``eta`` > 0 (DDIM only) makes the step stochastic (Song et al. 2021, eq. 16):
    ``x_j = α_j x0 + sqrt(1 − ᾱ_j − σ²) ε̂ + σ z`` with
    ``σ = η sqrt((1 − ᾱ_j)/(1 − ᾱ_i)) sqrt(1 − ᾱ_i/ᾱ_j)``; η = 1 is the ancestral (DDPM)
    step over the skipped timesteps, the paper's sampler in few steps.
    """
    if eta > 0 and method != "ddim":
        raise ValueError(f"eta = {eta:g}: only the 'ddim' sampler is stochastic, not {method!r}")
    if not j < i:
        raise ValueError(f"solver step from timestep {i} to {j}: expected a smaller timestep "
                         "(a step of zero or backwards in noise level)")
    a_t, s_t = math.sqrt(alpha_bar[i]), math.sqrt(1 - alpha_bar[i])
    a_s, s_s = math.sqrt(alpha_bar[j]), math.sqrt(1 - alpha_bar[j])
    h = math.log(a_s / s_s) - math.log(a_t / s_t)
    if eta > 0:
        sigma = eta * math.sqrt((1 - alpha_bar[j]) / (1 - alpha_bar[i])) \
            * math.sqrt(max(1 - alpha_bar[i] / alpha_bar[j], 0.0))
        eps = (x - a_t * x0) / s_t
        z = _randn(x.shape, generator, x.device, x.dtype)
        return a_s * x0 + math.sqrt(max(1 - alpha_bar[j] - sigma ** 2, 0.0)) * eps + sigma * z, h
    d = x0
    if method == "dpmsolver++" and prev_x0 is not None:
        r = prev_h / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
    return (s_s / s_t) * x - a_s * math.expm1(-h) * d, h


@torch.no_grad()
def sample_fast(model, schedule: Schedule, shape, vocals: Optional[Tensor] = None,
                cfg_scale: float = 1.0, steps: int = 16, method: str = "dpmsolver++",
                generator: Optional[torch.Generator] = None, callback: Optional[Callback] = None,
                progress: bool = False, device="cpu", eta: float = 0.0,
                autocast: bool = False, known: Optional[tuple] = None) -> Tensor:
    """A few-step sampler: DDIM (Song et al. 2021; deterministic at ``eta`` = 0, ancestral at
    ``eta`` = 1, see :func:`solver_step`) or DPM-Solver++(2M) (Lu et al. 2022) on the data
    prediction, both with classifier-free guidance.

    Both work in the data-prediction form: with ``λ = log(sqrt(ᾱ)/sqrt(1-ᾱ))``, DDIM is the
    first-order step ``x_s = (σ_s/σ_t) x_t − α_s (e^{-h} − 1) x0`` and DPM-Solver++(2M) adds a
    second-order correction from the previous step's ``x0``.

    ``steps`` is at most the schedule's timesteps (:func:`fast_timesteps` raises otherwise);
    ``autocast`` runs the model under bf16 autocast (off by default).

    ``known = (latents, mask)`` inpaints (RePaint-style replacement, Lugmayr et al. 2022; how
    ``samuel generate`` continues one window from the previous): ``latents`` is ``shape``,
    ``mask`` a boolean ``[T]`` of the frames to hold. Before the first step and after every
    update, ``x_t`` on those frames is replaced by ``q_sample(latents, t, ε)`` with ONE noise
    ``ε`` for the whole run (drawn from ``generator`` right after the initial noise), so the
    held frames follow the trajectory of a deterministic sampler from those latents. The
    returned data prediction is not overwritten there (it shows how well the model followed).

    Returns:
        the sample ``shape`` (``[B, C, T]``), float32.
    """
    if method not in ("ddim", "dpmsolver++"):
        raise ValueError(f"unknown fast sampler {method!r}: expected 'ddim' or 'dpmsolver++'")
    ab = schedule.alpha_bar
    ts = fast_timesteps(schedule.timesteps, steps)
    x = _randn(shape, generator, device)
    hold = None if known is None else _holder(schedule, known, x, generator)
    if hold is not None:
        x = hold(x, ts[0])
    prev_x0, prev_h = None, None
    for k, i in enumerate(tqdm(ts, disable=not progress, desc=method, leave=False)):
        t = torch.full((shape[0],), i, dtype=torch.long, device=device)
        v = _guided(model, x, t, vocals, cfg_scale, autocast)
        if callback is not None:
            callback(i, x, v)
        x0 = schedule.x0_from_v(x, v, t)
        if k + 1 == len(ts):
            x = x0  # the last step lands on the data prediction (σ_next = 0)
            break
        x, h = solver_step(ab, i, ts[k + 1], x, x0, prev_x0, prev_h, method, eta, generator)
        if hold is not None:
            x = hold(x, ts[k + 1])
        prev_x0, prev_h = x0, h
    return x


def _holder(schedule: Schedule, known: tuple, x: Tensor,
            generator: Optional[torch.Generator]) -> Callable[[Tensor, int], Tensor]:
    """``hold(x_t, t)``: :func:`sample_fast`'s ``known`` region re-imposed on ``x_t`` at ``t``;
    its one noise draw (``[B, C, frames held]``) is taken from ``generator`` now."""
    latents, mask = known
    batch, channels, frames = x.shape
    mask = torch.as_tensor(mask, device=x.device).reshape(-1).bool()
    if tuple(latents.shape) != tuple(x.shape) or mask.numel() != frames:
        raise ValueError(f"known: expected latents {tuple(x.shape)} and a mask of {frames} "
                         f"frames, found {tuple(latents.shape)} and {mask.numel()}")
    held = torch.nonzero(mask).flatten()
    noise = torch.zeros_like(x)
    noise[..., held] = _randn((batch, channels, len(held)), generator, x.device, x.dtype)
    weight = mask.to(x.dtype).view(1, 1, frames)
    latents = latents.to(x.device, x.dtype)

    def hold(x: Tensor, i: int) -> Tensor:
        t = torch.full((batch,), i, dtype=torch.long, device=x.device)
        return weight * schedule.q_sample(latents, t, noise) + (1 - weight) * x

    return hold
