"""``samuel bench model|codec|generate|gpu``: numbers, not assertions (speed and memory targets live here).

Targets for the paper profile on a 2-thread CPU: fast sampler ≥ 40× faster than the 800-step
sampler; training step (forward, backward, AdamW) at batch 16 ≤ 1.8 s with peak RSS ≤ 2.2 GB;
forward at batch 1 ≤ 55 ms; one CFG sampling step ≤ 130 ms. ``samuel bench model --device cuda`` measures the same on a GPU.

``samuel bench generate`` times ``samuel generate`` end to end on a 3-minute vocal (the
bundled example vocal repeated) on 2 threads, stage by stage (load, encode, sample, decode,
write, mix); target ≤ 10 s in all with the demo model. Without the demo checkpoint it uses a
randomly initialised demo-size model saved as a temporary checkpoint (the speed does not
depend on the weights) and says so.

``samuel bench gpu`` is the check to run first on a GPU machine (a Colab A100, about a minute):
training steps/s of the paper model at batch 16 in bf16, seconds for one 1024-frame clip with
the 800-step and the fast sampler, and encode/decode seconds of a full-size Stable Audio Open
VAE (random weights: the speed does not depend on them) for one 47.55 s clip, in float32 and
in float16, with the difference float16 decoding makes; peak GPU memory of each part. On a
machine without a GPU it says so in one line (book: "Reproduce it").
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import torch

from .audio import SAMPLE_RATE
from .devices import resolve, synchronize

TARGETS = {"train_step_s": 1.8, "train_peak_rss_gb": 2.2, "cfg_step_ms": 130.0, "fast_speedup": 40.0}
FORWARD_B1_TARGET_MS = 55.0  # forward pass at batch 1 (printed beside the number)
GENERATE_TARGET_S = 10.0  # `samuel generate` on a 3-minute vocal, 2 threads, demo model


def _time(fn, repeat: int = 3, warmup: int = 1, device="cpu") -> float:
    """Best of ``repeat`` timed calls of ``fn`` after ``warmup`` calls (synchronised on a GPU)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _timed(fn, device) -> tuple:
    """``(fn(), seconds)`` with the device synchronised before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t0


def _reset_peak(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device) -> float:
    """Peak memory since :func:`_reset_peak`: CUDA's allocator on a GPU, else the process's peak RSS."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def train_steps_per_second(cfg, device: str, batch_size: int = 16, frames: int | None = None,
                           warmup: int = 2, steps: int = 10, bf16: bool = True) -> dict:
    """Optimiser steps per second of ``cfg``'s model, as :func:`samuel.train.train` runs them.

    One step: v-prediction loss under bf16 autocast (when ``bf16``), backward, gradient clip,
    AdamW, on random latents ``[batch_size, 64, frames]`` held on ``device``.

    Returns:
        ``dict(train_steps_per_s, train_step_s, train_peak_gb, batch_size, frames, bf16)``.
    """
    from . import diffusion, model as model_mod
    from .train import adamw

    frames = int(frames or cfg.data.chunk_frames)
    torch.manual_seed(cfg.seed)
    m = model_mod.build(cfg).to(device).train()
    sched = diffusion.Schedule.from_config(cfg)
    opt = adamw(m.parameters(), cfg.train)  # as training makes it
    g = torch.Generator().manual_seed(cfg.seed)
    c = cfg.model.latent_channels
    x = torch.randn(batch_size, c, frames, generator=g).to(device)
    v = torch.randn(batch_size, c, frames, generator=g).to(device)
    kind = torch.device(device).type

    def step():
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion.training_loss(m, sched, x, v, cfg.diffusion.cond_dropout, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.train.grad_clip)
        opt.step()

    _reset_peak(device)
    for _ in range(warmup):
        step()
    _, seconds = _timed(lambda: [step() for _ in range(steps)], device)
    out = {"train_steps_per_s": steps / seconds, "train_step_s": seconds / steps,
           "train_peak_gb": _peak_gb(device), "batch_size": int(batch_size), "frames": frames,
           "bf16": bool(bf16)}
    del m, opt, x, v
    return out


def _train_step_child(profile: str, threads: int, overrides: dict, bf16: bool = False) -> dict:
    """Run in a fresh process so that its peak RSS is the training step's own.

    ``bf16``: the step under CPU bf16 autocast (the paper's mixed precision, as training runs
    it on a GPU) instead of float32, as training runs it on a CPU; only for the benchmark's
    second line: the numbers differ from float32's by bf16 rounding."""
    from . import config, diffusion, model
    from .train import adamw

    torch.set_num_threads(threads)
    cfg = config.load(profile, **overrides)
    m = model.build(cfg)
    sched = diffusion.Schedule.from_config(cfg)
    opt = adamw(m.parameters(), cfg.train)  # as training makes it
    b, t_len = cfg.train.batch_size, cfg.data.chunk_frames
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(b, 64, t_len, generator=g), torch.randn(b, 64, t_len, generator=g)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion.training_loss(m, sched, x, v, cfg.diffusion.cond_dropout, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    s = _time(step, repeat=3, warmup=2)  # the first steps still allocate: on one VM, 3.3 s against 2.4
    out = {"train_step_s": s, "train_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    if not bf16:  # the work of one step against this CPU's matrix-product rate (after the peak RSS)
        out["train_step_gflop"] = step_gflop(step)
        out["matmul_gflops"] = matmul_gflops()
    return out


def step_gflop(step) -> float:
    """Floating-point work of one call of ``step``, in GFLOP, as torch's counter counts it
    (matrix products, convolutions and attention, forward and backward; elementwise passes are
    not counted). The CPU attention kernel's forward and backward are counted with torch's own
    formulas for the GPU ones (its backward recomputes the scores, as theirs do)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    def forward(q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(q, k, v)

    def backward(grad, q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad, q, k, v)

    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: forward,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}
    counter = fc.FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        step()
    return counter.get_total_flops() / 1e9


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """This CPU's float32 matrix-product rate on torch's threads: GFLOP/s of the best of
    ``repeat`` ``n × n`` products, the most any of the step's large products can reach here."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    return 2 * n ** 3 / _time(lambda: a @ b, repeat=repeat, warmup=2) / 1e9


def _train_step_in_child(profile: str, threads: int, bf16: bool = False) -> dict:
    """:func:`_train_step_child` in a fresh Python process (its peak RSS is the step's own)."""
    child = subprocess.run(
        [sys.executable, "-c",
         "import json,sys; from samuel.bench import _train_step_child as f; "
         f"print(json.dumps(f({profile!r}, {threads}, {{}}, bf16={bf16})))"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if child.returncode != 0:
        raise RuntimeError(f"training-step benchmark failed: {child.stderr.strip()[-500:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """What the CPU benchmarks ran on: the CPU's name, torch's vector unit for it, the CPUs this
    process may use, torch's version. Timings of different machines differ more than most
    changes do (the same paper step took 2.1 s on an AVX-512 VM and 3.98 s on an AVX2 one), so
    every CPU benchmark prints this beside its numbers."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    if not name:
        import platform

        name = platform.processor() or platform.machine() or "unknown CPU"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"cpu": name, "vector_unit": str(torch.backends.cpu.get_cpu_capability()), "cpus": cpus,
            "torch": torch.__version__}


def machine_line(r: dict) -> list:
    """The line that names the machine of a result of :func:`machine` (none without it)."""
    m = r.get("machine")
    return ([f"  machine: {m['cpu']}, {m['vector_unit']}, {m['cpus']} CPUs, torch {m['torch']}"]
            if m else [])


def cpu_bf16_skip_reason() -> str | None:
    """Why the CPU bf16 line of :func:`bench_model` is not measured here, or None.

    Without AVX-512 torch's CPU bf16 kernels are emulated: on a 2-core AVX2 EPYC (2026-12-04) the
    paper step under bf16 autocast took 62 s against 3.98 s in float32, a minute of waiting for a
    number that says nothing about the paper's mixed precision (where it is measured, AVX-512,
    it was 1.14 s against 2.1 s)."""
    capability = str(torch.backends.cpu.get_cpu_capability())
    if capability.upper().startswith("AVX512"):
        return None
    return (f"not measured: this CPU's vector unit is {capability}, without AVX-512, where bf16 "
            "runs emulated (about 15 times slower than float32)")


def bench_model(cfg, threads: int | None = None, slice_steps: int = 20, device: str = "cpu") -> dict:
    """Parameters, forward ms (batch 1 and 16), a training step, a CFG step, both samplers.

    ``device`` "cpu" (the default: the CPU targets above) or a GPU ("cuda", "auto"); on a GPU
    the training step runs in this process under bf16 autocast (``cfg.train.bf16``) and its
    peak is CUDA's allocator peak instead of the process RSS.
    """
    before = torch.get_num_threads()
    try:  # the caller keeps its thread count (left at 1, it once slowed and changed every later test)
        return _bench_model(cfg, threads or before, slice_steps, device)
    finally:
        torch.set_num_threads(before)


def _bench_model(cfg, threads: int, slice_steps: int, device: str) -> dict:
    from . import model as model_mod
    from .diffusion import Schedule, guided_v, sample_ancestral, sample_fast

    device = resolve(device)
    torch.set_num_threads(threads)
    t_len = cfg.data.chunk_frames
    m = model_mod.build(cfg).to(device).eval()
    sched = Schedule.from_config(cfg)
    res = {"profile": cfg.profile, "threads": threads, "frames": t_len, "device": device,
           "parameters": model_mod.count_parameters(m), "machine": machine()}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in (1, 16):
            x = torch.randn(b, 64, t_len, generator=g).to(device)
            t = torch.full((b,), 400, dtype=torch.long, device=device)
            res[f"forward_ms_b{b}"] = 1000 * _time(lambda: m(x, t, x), repeat=2, device=device)
            if b == 1 and device == "cpu":
                res["forward_b1_gflop"] = step_gflop(lambda: m(x, t, x))
        x = torch.randn(1, 64, t_len, generator=g).to(device)
        t = torch.tensor([400], device=device)
        res["cfg_step_ms"] = 1000 * _time(lambda: guided_v(m, x, t, x, cfg.diffusion.cfg_scale), repeat=3,
                                          device=device)
        voc = torch.randn(1, 64, t_len, generator=g).to(device)
        n_steps = cfg.diffusion.timesteps
        _, s = _timed(lambda: sample_ancestral(m, sched, (1, 64, t_len), vocals=voc,
                                               cfg_scale=cfg.diffusion.cfg_scale, generator=g,
                                               steps=slice_steps, device=device), device)
        res["ancestral_s"] = s * n_steps / slice_steps
        res["ancestral_note"] = f"measured {slice_steps} of {n_steps} steps, extrapolated linearly"
        _, res["fast_s"] = _timed(lambda: sample_fast(
            m, sched, (1, 64, t_len), vocals=voc, cfg_scale=cfg.diffusion.cfg_scale,
            steps=cfg.diffusion.fast_steps, method=cfg.diffusion.fast_sampler, generator=g,
            eta=cfg.diffusion.ddim_eta, device=device), device)
        res["fast_sampler"] = (f"{cfg.diffusion.fast_sampler} (eta {cfg.diffusion.ddim_eta:g}), "
                               f"{cfg.diffusion.fast_steps} steps")
    res["fast_speedup"] = res["ancestral_s"] / res["fast_s"]
    del m
    if device != "cpu":
        step = train_steps_per_second(cfg, device, cfg.train.batch_size, t_len, warmup=1, steps=2,
                                      bf16=cfg.train.bf16)
        res.update(train_step_s=step["train_step_s"], train_peak_rss_gb=step["train_peak_gb"],
                   train_peak_note="CUDA allocator peak, not RSS")
    else:
        res.update(_train_step_in_child(cfg.profile, threads))
        res["train_step_floor_s"] = res["train_step_gflop"] / res["matmul_gflops"]
        res["forward_b1_floor_ms"] = 1000 * res["forward_b1_gflop"] / res["matmul_gflops"]
        skip = cpu_bf16_skip_reason()
        if skip is None:
            bf16 = _train_step_in_child(cfg.profile, threads, bf16=True)
            res.update(train_step_bf16_s=bf16["train_step_s"], train_peak_rss_bf16_gb=bf16["train_peak_rss_gb"])
        else:
            res["train_step_bf16_note"] = skip
    res["batch_size"] = cfg.train.batch_size
    res["targets"] = TARGETS
    res["meets"] = {
        "train_step_s": res["train_step_s"] <= TARGETS["train_step_s"],
        "train_peak_rss_gb": res["train_peak_rss_gb"] <= TARGETS["train_peak_rss_gb"],
        "cfg_step_ms": res["cfg_step_ms"] <= TARGETS["cfg_step_ms"],
        "fast_speedup": res["fast_speedup"] >= TARGETS["fast_speedup"],
    }
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}


def work_lines(r: dict) -> list:
    """What this machine allows the training step: its counted work over the CPU's matrix-product
    rate is the least time the step can take here (none without those numbers)."""
    if "train_step_floor_s" not in r:
        return []
    floor = r["train_step_floor_s"]
    return [f"  work per training step          {r['train_step_gflop']:.0f} GFLOP; this CPU's float32 matrix "
            f"product runs {r['matmul_gflops']:.0f} GFLOP/s,",
            f"                                  so no step takes under {floor:.2f} s here "
            f"(this one ran at {100 * floor / r['train_step_s']:.0f} % of that rate)"]


def format_model(r: dict) -> str:
    where = f"{r['threads']} CPU threads" if r.get("device", "cpu") == "cpu" else f"device {r['device']}"
    lines = [f"SAMUeL model benchmark — profile {r['profile']}, {where}, T = {r['frames']} frames",
             f"  parameters                      {r['parameters']:,}",
             f"  forward, batch 1                {r['forward_ms_b1']:.1f} ms (target ≤ {FORWARD_B1_TARGET_MS:g} ms: "
             f"{r['forward_ms_b1'] <= FORWARD_B1_TARGET_MS})",
             *([f"                                  {r['forward_b1_gflop']:.1f} GFLOP: none takes under "
                f"{r['forward_b1_floor_ms']:.0f} ms here (the rate below)"] if "forward_b1_floor_ms" in r else []),
             f"  forward, batch 16               {r['forward_ms_b16']:.1f} ms",
             f"  training step, batch {r['batch_size']:<2}         {r['train_step_s']:.2f} s   (target ≤ {r['targets']['train_step_s']:g} s: {r['meets']['train_step_s']})",
             f"  training peak RSS               {r['train_peak_rss_gb']:.2f} GB (target ≤ {r['targets']['train_peak_rss_gb']:g} GB: {r['meets']['train_peak_rss_gb']})",
             *work_lines(r),
             *([f"  the same step in bf16 autocast  {r['train_step_bf16_s']:.2f} s, peak RSS "
                f"{r['train_peak_rss_bf16_gb']:.2f} GB (the paper's mixed precision; CPU training runs float32)"]
               if "train_step_bf16_s" in r else []),
             *([f"  the same step in bf16 autocast  {r['train_step_bf16_note']}"]
               if "train_step_bf16_note" in r else []),
             f"  one CFG sampling step           {r['cfg_step_ms']:.1f} ms (target ≤ 130 ms: {r['meets']['cfg_step_ms']})",
             f"  800-step ancestral, one clip    {r['ancestral_s']:.1f} s   ({r['ancestral_note']})",
             f"  fast sampler, one clip          {r['fast_s']:.2f} s   ({r['fast_sampler']})",
             f"  speed-up                        {r['fast_speedup']:.1f}×   (target ≥ 40×: {r['meets']['fast_speedup']})",
             *machine_line(r)]
    return "\n".join(lines)


def bench_codec(seconds: float = 30.0) -> dict:
    """Round-trip quality and speed of the offline codec on a synthetic song."""
    from .codecs import load
    from .codecs.quality import round_trip_metrics
    from .data.synth import compose, render

    song = compose(0, seconds)
    audio = render(song, backend="builtin")["accomp"]
    return {**round_trip_metrics(load("offline"), audio, SAMPLE_RATE), "machine": machine()}


def format_codec(r: dict) -> str:
    from .codecs.quality import report

    return "\n".join([report(r), *machine_line(r)])


def bench_generate(seconds: float = 180.0, checkpoint=None, profile: str = "demo", threads: int = 2,
                   steps: int | None = None, vocal=None, mix: bool = True) -> dict:
    """``samuel generate`` end to end on a ``seconds``-long vocal, stage by stage.

    Args:
        seconds: vocal length; the vocal (default ``data/example_vocal.wav``) is repeated
            and cut to it.
        checkpoint: a checkpoint folder; None: ``runs/<profile>/checkpoint`` when it exists,
            else a randomly initialised ``profile``-size model saved as a temporary checkpoint
            (identity normalisation statistics).
        threads: torch's CPU threads (restored afterwards).
        steps: sampler steps (default the checkpoint's ``fast_steps``).
        mix: also write the mix, as ``samuel generate --mix`` does.

    Returns:
        ``audio_seconds``, ``threads``, ``checkpoint`` (which model, in words), ``profile``,
        ``steps``, ``windows``, ``stages`` (``generate.STAGES`` → wall seconds), ``total_s``
        (their sum), ``realtime_factor`` (audio seconds per second), ``target_total_s``,
        ``meets``.
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    from . import audio as audio_mod
    from . import config as config_mod
    from . import generate as gen
    from . import model as model_mod
    from .checkpoint import save_checkpoint
    from .paths import DATA, run_dir

    if seconds <= 0:
        raise ValueError(f"bench generate: expected a positive vocal length, found {seconds} s")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with tempfile.TemporaryDirectory(prefix="samuel-bench-") as tmp:
            tmp = Path(tmp)
            source = Path(vocal) if vocal is not None else DATA / "example_vocal.wav"
            voc = audio_mod.load(source)
            n = int(round(seconds * SAMPLE_RATE))
            voc = np.tile(voc, (1, -(-n // voc.shape[1])))[:, :n]
            vocal_path = tmp / "vocal.wav"
            audio_mod.save(vocal_path, voc, SAMPLE_RATE)
            default = run_dir(profile) / "checkpoint"
            if checkpoint is not None:
                folder, which = Path(checkpoint), f"checkpoint {checkpoint}"
            elif (default / "checkpoint.json").exists():
                folder, which = default, f"the {profile} checkpoint ({default})"
            else:
                cfg = config_mod.load(profile)
                folder = tmp / "checkpoint"
                c = cfg.model.latent_channels
                stats = {"mean": [0.0] * c, "std": [1.0] * c}
                save_checkpoint(folder, model_mod.build(cfg), cfg, {"vocal": stats, "accomp": stats})
                which = (f"a randomly initialised {profile}-size model (temporary checkpoint; "
                         f"no {default} here)")
            timings: dict = {}
            res = gen.generate(vocal_path, tmp / "accomp.wav", mix_path=tmp / "mix.wav" if mix else None,
                               checkpoint=folder, steps=steps, progress=False, device="cpu",
                               timings=timings)
    finally:
        torch.set_num_threads(before)
    stages = {k: float(timings.get(k, 0.0)) for k in gen.STAGES}
    total = sum(stages.values())
    return {"audio_seconds": n / SAMPLE_RATE, "threads": int(threads), "checkpoint": which,
            "profile": profile, "steps": res.get("steps"), "windows": res.get("windows"),
            "stages": stages, "total_s": total, "realtime_factor": (n / SAMPLE_RATE) / max(total, 1e-9),
            "target_total_s": GENERATE_TARGET_S, "meets": total <= GENERATE_TARGET_S,
            "machine": machine()}


def format_generate(r: dict) -> str:
    """:func:`bench_generate`'s result as text: one line per stage, then the total."""
    lines = [f"samuel generate benchmark — {r['audio_seconds']:.0f} s vocal, {r['threads']} CPU threads, "
             f"{r['steps']} steps, {r['windows']} windows",
             f"  model: {r['checkpoint']}"]
    for k, v in r["stages"].items():
        lines.append(f"  {k:<8} {v:7.2f} s")
    lines.append(f"  total    {r['total_s']:7.2f} s   ({r['realtime_factor']:.1f}× real time; "
                 f"target ≤ {r['target_total_s']:g} s: {r['meets']})")
    return "\n".join(lines + machine_line(r))


NO_GPU = ("no CUDA GPU here (torch.cuda.is_available() is False): nothing measured; "
          "run `samuel bench gpu` on a GPU machine (e.g. a Colab A100)")
SAO_CLIP_SECONDS = 1024 * 2048 / SAMPLE_RATE  # one paper clip: 1024 latent frames = 47.55 s


def bench_gpu(cfg=None, device: str = "cuda", batch_size: int = 16, frames: int | None = None,
              warmup: int = 2, steps: int = 10, ancestral_steps: int | None = None,
              vae_seconds: float = SAO_CLIP_SECONDS, vae_config: dict | None = None,
              half_dtype: str | None = None, progress: bool = False) -> dict:
    """The GPU check: training, both samplers and the SAO VAE on ``device``.

    The defaults are the paper's sizes (a few minutes at most on an A100); the parameters
    shrink them so that the same code runs on a CPU in tests.

    Args:
        cfg: the configuration of the model (default the ``paper`` profile).
        device: "cuda", "cuda:N", "auto" or (tests, rehearsals) "cpu"; anything but "cpu"
            on a machine without CUDA returns the no-GPU answer.
        batch_size, frames: training batch ``[batch_size, 64, frames]`` (frames default
            ``cfg.data.chunk_frames``, 1024 for the paper: 47.55 s); the sampled clip is
            ``[1, 64, frames]``.
        warmup, steps: untimed and timed training steps.
        ancestral_steps: steps of the 800-step sampler actually run (None: all of them);
            fewer are extrapolated linearly.
        vae_seconds: audio length encoded and decoded.
        vae_config: ``AutoencoderOobleck`` keyword arguments (default ``{}``: its defaults,
            the full-size SAO VAE, 156 M parameters), with random weights.
        half_dtype: reduced-precision decode dtype (default "float16"; on a CPU "bfloat16"
            when float16 convolutions are not supported).
        progress: show the 800-step sampler's progress bar.

    Returns:
        ``{"gpu": None, "reason": ...}`` when ``device`` is CUDA and there is none; otherwise
        ``gpu`` (its name), ``device``, ``train`` (:func:`train_steps_per_second`), ``sample``
        (``ancestral_s``, ``fast_s``, ``fast_sampler``, ``peak_gb``), ``vae`` (``encode_s``,
        ``decode_s``, ``decode_half_s``, ``half`` = the float16-vs-float32 difference,
        ``peak_gb``) and ``seconds`` (the whole check).
    """
    from . import config as config_mod

    if str(device).strip().lower() != "cpu" and not torch.cuda.is_available():
        return {"gpu": None, "reason": NO_GPU}
    t_start = time.perf_counter()
    device = resolve(device)
    cuda = device.startswith("cuda")
    cfg = cfg if cfg is not None else config_mod.load("paper")
    frames = int(frames or cfg.data.chunk_frames)
    res = {"gpu": torch.cuda.get_device_name(device) if cuda else f"none ({device} rehearsal)",
           "device": device, "profile": cfg.profile, "torch": torch.__version__}

    # training: the paper's batch in bf16
    res["train"] = train_steps_per_second(cfg, device, batch_size, frames, warmup, steps, bf16=True)
    if cuda:
        torch.cuda.empty_cache()

    res["sample"] = _gpu_sampling(cfg, device, frames, ancestral_steps, progress)
    if cuda:
        torch.cuda.empty_cache()
    res["vae"] = _gpu_vae(cfg, device, vae_seconds, vae_config, half_dtype)
    if cuda:
        torch.cuda.empty_cache()
    res["seconds"] = time.perf_counter() - t_start
    return res


def _gpu_sampling(cfg, device: str, frames: int, ancestral_steps: int | None,
                  progress: bool) -> dict:
    """:func:`bench_gpu`'s sampling part: one clip ``[1, 64, frames]`` in float32 (as
    ``samuel generate`` does) with the fast sampler and the 800-step one (``ancestral_steps``
    of them run, the rest extrapolated)."""
    from . import model as model_mod
    from .diffusion import Schedule, sample_ancestral, sample_fast

    torch.manual_seed(cfg.seed)
    m = model_mod.build(cfg).to(device).eval()
    sched = Schedule.from_config(cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    c = cfg.model.latent_channels
    voc = torch.randn(1, c, frames, generator=g).to(device)
    d = cfg.diffusion
    n_steps = d.timesteps if ancestral_steps is None else min(int(ancestral_steps), d.timesteps)

    def fast():
        return sample_fast(m, sched, (1, c, frames), vocals=voc, cfg_scale=d.cfg_scale,
                           steps=d.fast_steps, method=d.fast_sampler, generator=g, eta=d.ddim_eta,
                           device=device)

    _reset_peak(device)
    fast()  # warm-up (kernels, allocator)
    _, fast_s = _timed(fast, device)
    _, anc_s = _timed(lambda: sample_ancestral(m, sched, (1, c, frames), vocals=voc, cfg_scale=d.cfg_scale,
                                               generator=g, steps=n_steps, progress=progress,
                                               device=device), device)
    out = {"frames": frames, "ancestral_s": anc_s * d.timesteps / n_steps,
           "ancestral_steps_run": n_steps, "ancestral_steps": d.timesteps, "fast_s": fast_s,
           "fast_sampler": f"{d.fast_sampler} (eta {d.ddim_eta:g}), {d.fast_steps} steps",
           "peak_gb": _peak_gb(device)}
    out["fast_speedup"] = out["ancestral_s"] / max(fast_s, 1e-12)
    return out


def _gpu_vae(cfg, device: str, vae_seconds: float, vae_config: dict | None,
             half_dtype: str | None) -> dict:
    """:func:`bench_gpu`'s VAE part: the SAO VAE (random weights) encodes and decodes
    ``vae_seconds`` of noise, then decodes again in reduced precision."""
    from .codecs.sao import SAOCodec, decode_difference

    cuda = device.startswith("cuda")
    _reset_peak(device)
    codec = SAOCodec(device=device, config_overrides=dict(vae_config or {}))
    sr = codec.sample_rate
    n = int(round(vae_seconds * sr))
    rng = torch.Generator().manual_seed(cfg.seed)
    audio = (0.1 * torch.randn(2, n, generator=rng)).numpy()
    codec.decode(codec.encode(audio[:, : min(n, sr)], sr))  # warm-up on one second
    latents, enc_s = _timed(lambda: codec.encode(audio, sr), device)
    ref, dec_s = _timed(lambda: codec.decode(latents), device)
    half = half_dtype or "float16"
    try:
        codec.set_decode_dtype(half)
        codec.decode(latents[:, :2])
    except RuntimeError:  # a CPU without float16 convolutions
        if half_dtype is not None or cuda:
            raise
        half = "bfloat16"
        codec.set_decode_dtype(half)
    low, half_s = _timed(lambda: codec.decode(latents), device)
    return {"seconds_of_audio": n / sr, "latent_frames": int(latents.shape[1]),
            "parameters": sum(p.numel() for p in codec.vae.parameters()),
            "chunk_seconds": codec.chunk_seconds, "encode_s": enc_s, "decode_s": dec_s,
            "decode_half_s": half_s, "half": decode_difference(ref, low, half),
            "peak_gb": _peak_gb(device), "weights": "random (AutoencoderOobleck defaults)"
            if not vae_config else f"random {vae_config}"}


def format_gpu(r: dict) -> str:
    """:func:`bench_gpu`'s result as text (one line when there is no GPU)."""
    if r.get("gpu") is None:
        return f"samuel bench gpu: {r['reason']}"
    t, s, v = r["train"], r["sample"], r["vae"]
    h = v["half"]
    mem = "GPU peak" if r["device"].startswith("cuda") else "process peak RSS"
    lines = [f"SAMUeL GPU check — {r['gpu']} ({r['device']}), profile {r['profile']}, torch {r['torch']}",
             f"  training, batch {t['batch_size']}, T = {t['frames']}, bf16   {t['train_steps_per_s']:.2f} steps/s "
             f"({t['train_step_s'] * 1000:.0f} ms/step; {mem} {t['train_peak_gb']:.2f} GB)",
             f"  800-step sampler, one clip         {s['ancestral_s']:.1f} s"
             + ("" if s["ancestral_steps_run"] == s["ancestral_steps"]
                else f"  ({s['ancestral_steps_run']} steps run, extrapolated)"),
             f"  fast sampler, one clip             {s['fast_s']:.2f} s   ({s['fast_sampler']}; "
             f"{s['fast_speedup']:.0f}× faster; {mem} {s['peak_gb']:.2f} GB)",
             f"  SAO VAE encode, {v['seconds_of_audio']:.2f} s            {v['encode_s']:.2f} s   "
             f"({v['parameters']:,} parameters, {v['weights']})",
             f"  SAO VAE decode, float32            {v['decode_s']:.2f} s",
             f"  SAO VAE decode, {h['dtype']:<8}           {v['decode_half_s']:.2f} s   (vs float32: max |Δ| "
             f"{h['max_abs']:.2e}, SNR {h['snr_db']:.1f} dB{'' if h['finite'] else ', NOT FINITE'}; "
             f"{mem} {v['peak_gb']:.2f} GB)",
             f"  whole check                        {r['seconds']:.0f} s"]
    return "\n".join(lines)
