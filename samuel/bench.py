"""``samuel bench model|codec``: numbers, not assertions (speed and memory targets live here).

Targets for the paper profile on a 2-thread CPU (issue "Core"): fast sampler ≥ 40× faster than
the 800-step sampler; training step at batch 16 ≤ 2.5 s with peak RSS ≤ 3.2 GB; one CFG
sampling step ≤ 130 ms.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import torch

TARGETS = {"train_step_s": 2.5, "train_peak_rss_gb": 3.2, "cfg_step_ms": 130.0, "fast_speedup": 40.0}


def _time(fn, repeat: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _train_step_child(profile: str, threads: int, overrides: dict) -> dict:
    """Run in a fresh process so that its peak RSS is the training step's own."""
    from . import config, diffusion, model

    torch.set_num_threads(threads)
    cfg = config.load(profile, **overrides)
    m = model.build(cfg)
    sched = diffusion.Schedule.from_config(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.train.lr)
    b, t_len = cfg.train.batch_size, cfg.data.chunk_frames
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(b, 64, t_len, generator=g), torch.randn(b, 64, t_len, generator=g)

    def step():
        loss = diffusion.training_loss(m, sched, x, v, cfg.diffusion.cond_dropout, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    s = _time(step, repeat=2, warmup=1)
    return {"train_step_s": s, "train_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def bench_model(cfg, threads: int | None = None, slice_steps: int = 20) -> dict:
    """Parameters, forward ms (batch 1 and 16), a training step, a CFG step, both samplers."""
    from . import model as model_mod
    from .diffusion import Schedule, guided_v, sample_ancestral, sample_fast

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    t_len = cfg.data.chunk_frames
    m = model_mod.build(cfg).eval()
    sched = Schedule.from_config(cfg)
    res = {"profile": cfg.profile, "threads": threads, "frames": t_len, "device": "cpu",
           "parameters": model_mod.count_parameters(m)}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in (1, 16):
            x = torch.randn(b, 64, t_len, generator=g)
            t = torch.full((b,), 400, dtype=torch.long)
            res[f"forward_ms_b{b}"] = 1000 * _time(lambda: m(x, t, x), repeat=2)
        x = torch.randn(1, 64, t_len, generator=g)
        t = torch.tensor([400])
        res["cfg_step_ms"] = 1000 * _time(lambda: guided_v(m, x, t, x, cfg.diffusion.cfg_scale), repeat=3)
        voc = torch.randn(1, 64, t_len, generator=g)
        n_steps = cfg.diffusion.timesteps
        t0 = time.perf_counter()
        sample_ancestral(m, sched, (1, 64, t_len), vocals=voc, cfg_scale=cfg.diffusion.cfg_scale,
                         generator=g, steps=slice_steps)
        res["ancestral_s"] = (time.perf_counter() - t0) * n_steps / slice_steps
        res["ancestral_note"] = f"measured {slice_steps} of {n_steps} steps, extrapolated linearly"
        t0 = time.perf_counter()
        sample_fast(m, sched, (1, 64, t_len), vocals=voc, cfg_scale=cfg.diffusion.cfg_scale,
                    steps=cfg.diffusion.fast_steps, method=cfg.diffusion.fast_sampler, generator=g,
                    eta=cfg.diffusion.ddim_eta)
        res["fast_s"] = time.perf_counter() - t0
        res["fast_sampler"] = (f"{cfg.diffusion.fast_sampler} (eta {cfg.diffusion.ddim_eta:g}), "
                               f"{cfg.diffusion.fast_steps} steps")
    res["fast_speedup"] = res["ancestral_s"] / res["fast_s"]
    child = subprocess.run(
        [sys.executable, "-c",
         "import json,sys; from samuel.bench import _train_step_child as f; "
         f"print(json.dumps(f({cfg.profile!r}, {threads}, {{}})))"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if child.returncode != 0:
        raise RuntimeError(f"training-step benchmark failed: {child.stderr.strip()[-500:]}")
    res.update(json.loads(child.stdout.strip().splitlines()[-1]))
    res["batch_size"] = cfg.train.batch_size
    res["targets"] = TARGETS
    res["meets"] = {
        "train_step_s": res["train_step_s"] <= TARGETS["train_step_s"],
        "train_peak_rss_gb": res["train_peak_rss_gb"] <= TARGETS["train_peak_rss_gb"],
        "cfg_step_ms": res["cfg_step_ms"] <= TARGETS["cfg_step_ms"],
        "fast_speedup": res["fast_speedup"] >= TARGETS["fast_speedup"],
    }
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}


def format_model(r: dict) -> str:
    lines = [f"SAMUeL model benchmark — profile {r['profile']}, {r['threads']} CPU threads, T = {r['frames']} frames",
             f"  parameters                      {r['parameters']:,}",
             f"  forward, batch 1                {r['forward_ms_b1']:.1f} ms",
             f"  forward, batch 16               {r['forward_ms_b16']:.1f} ms",
             f"  training step, batch {r['batch_size']:<2}         {r['train_step_s']:.2f} s   (target ≤ 2.5 s: {r['meets']['train_step_s']})",
             f"  training peak RSS               {r['train_peak_rss_gb']:.2f} GB (target ≤ 3.2 GB: {r['meets']['train_peak_rss_gb']})",
             f"  one CFG sampling step           {r['cfg_step_ms']:.1f} ms (target ≤ 130 ms: {r['meets']['cfg_step_ms']})",
             f"  800-step ancestral, one clip    {r['ancestral_s']:.1f} s   ({r['ancestral_note']})",
             f"  fast sampler, one clip          {r['fast_s']:.2f} s   ({r['fast_sampler']})",
             f"  speed-up                        {r['fast_speedup']:.1f}×   (target ≥ 40×: {r['meets']['fast_speedup']})"]
    return "\n".join(lines)


def bench_codec(seconds: float = 30.0) -> dict:
    """Round-trip quality and speed of the offline codec on a synthetic song."""
    from .codecs import load
    from .codecs.quality import round_trip_metrics
    from .data.synth import compose, render

    song = compose(0, seconds)
    audio = render(song, backend="builtin")["accomp"]
    return round_trip_metrics(load("offline"), audio, 44100)


def format_codec(r: dict) -> str:
    from .codecs.quality import report

    return report(r)
