"""The training loop (SPEC §5, paper §V). ``samuel train --profile …``; book: notebook 04.

AdamW with linear warm-up then cosine annealing, clamped SNR-weighted v loss with 10 %
condition dropout, EMA weights (used for validation, sampling and the saved model), gradient
clipping, bf16 autocast on GPU, validation on held-out songs with early stopping, atomic
safetensors checkpoints that resume a killed run exactly, and DistributedDataParallel when
started by ``torchrun`` (gloo on CPU, NCCL on GPU).

Exact resume: every random draw of the loop (batch rows, timesteps, noise, dropout) comes from
one ``torch.Generator`` whose state is saved with the optimiser, scheduler and EMA; the next
step after a resume therefore sees the same batch and the same weights as the uninterrupted run.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import paths
from .diffusion import Schedule, training_loss
from .io import atomic_path, write_json
from .model import build, count_parameters

CURVES_FILE = "curves.csv"
VAL_SEED = 12345  # fixed draws for the validation loss, so that it is comparable across steps


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine annealing to 0 (paper §V: "cosine annealing")."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def _dist():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _load_split(data_dir: Path, split: str, stats):
    """``(vocals, accomp)`` of a split, z-scored with ``stats``; raw when ``stats`` is None."""
    from .data.store import load_popdb

    return load_popdb(data_dir / split, normalise=stats is not None, stats=stats)


def _batch(vocals, accomp, idx: torch.Tensor, device, augment=None) -> tuple:
    rows = np.sort(idx.numpy())  # memmap-friendly order; the same rows as drawn
    v = np.ascontiguousarray(vocals[rows], dtype=np.float32)
    a = np.ascontiguousarray(accomp[rows], dtype=np.float32)
    if augment is not None:
        v, a = augment(v, a)
    return torch.from_numpy(v).to(device), torch.from_numpy(a).to(device)


def _transposer(cfg, stats, g: torch.Generator):
    """Pitch-shift augmentation (``cfg.train.transpose`` semitones either way): vocal and
    accompaniment of a row are shifted together in codec space, then z-scored.

    With it, the key of a training example is uniform over the range, so the model can only
    get the key right by listening to the vocal. Only codecs with a ``transpose`` method
    (the offline codec's semitone bands) support it.
    """
    from .codecs import load as load_codec
    from .data.store import normalise

    codec = load_codec(cfg.data.codec)
    if not hasattr(codec, "transpose"):
        raise ValueError(f"train.transpose={cfg.train.transpose}: the {cfg.data.codec!r} codec has no "
                         "latent transposition; set train__transpose=0")
    k_max = cfg.train.transpose

    def augment(v_raw, a_raw):
        ks = torch.randint(-k_max, k_max + 1, (len(v_raw),), generator=g).tolist()
        v = np.stack([codec.transpose(x, k) for x, k in zip(v_raw, ks)])
        a = np.stack([codec.transpose(x, k) for x, k in zip(a_raw, ks)])
        return normalise(v, stats, "vocal"), normalise(a, stats, "accomp")

    return augment


@torch.no_grad()
def validation_loss(model, schedule, vocals, accomp, cfg, device, max_rows: int = 256) -> float:
    """Mean loss over (up to ``max_rows``) validation rows with fixed timesteps and noise."""
    g = torch.Generator().manual_seed(VAL_SEED)
    n = min(len(vocals), max_rows)
    total, count = 0.0, 0
    bs = cfg.train.batch_size
    for start in range(0, n, bs):
        idx = torch.arange(start, min(n, start + bs))
        v, a = _batch(vocals, accomp, idx, device)
        # no condition dropout here: validation measures the conditioned model
        loss = training_loss(model, schedule, a, v, cond_dropout=0.0, generator=g)
        total += float(loss) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def _ema_update(ema, model, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1 - decay)


def _append_curve(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def read_curves(run_dir) -> list[dict]:
    """The training curve rows (``step, train_loss, val_loss, lr, seconds``) of a run."""
    path = Path(run_dir) / CURVES_FILE
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


def plot_curves(run_dir, out: Optional[Path] = None):
    """Plot training and validation loss against step; saves ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg") if out else None
    import matplotlib.pyplot as plt

    rows = read_curves(run_dir)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["train_loss"] for r in rows], label="training (interval mean)")
    ax.plot(steps, [r["val_loss"] for r in rows], "o-", label="validation (EMA weights)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("clamped SNR-weighted v loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if out:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    return fig


def train(cfg, data_dir=None, run_dir=None, resume: bool = False, progress: bool = True,
          device: Optional[str] = None, on_step: Optional[Callable[[int, float], None]] = None) -> dict:
    """Train ``cfg``'s model on the POPDB folder ``data_dir`` (default ``runs/<profile>/data/popdb``).

    Writes ``run_dir`` (default ``runs/<profile>/train``): ``curves.csv``, ``curves.png``,
    ``summary.json`` and the checkpoint in ``runs/<profile>/checkpoint`` (or
    ``run_dir/checkpoint`` when ``run_dir`` is given).
    Returns a summary with the steps run, best validation loss and timings.
    ``on_step(step, loss)`` is called after every optimiser step (tests use it).
    """
    dist, rank, world = _dist()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    root = paths.run_dir(cfg.profile)
    data_dir = Path(data_dir) if data_dir else root / "data" / "popdb"
    run_dir = Path(run_dir) if run_dir else root / "train"
    ck_dir = run_dir / "checkpoint" if run_dir != root / "train" else root / "checkpoint"
    run_dir.mkdir(parents=True, exist_ok=True)

    from .data.store import find_stats, popdb_stats

    stats = find_stats(data_dir / "train") or popdb_stats(data_dir / "train")
    # with transposition the rows are read raw, shifted, then z-scored (see _transposer)
    tr_v, tr_a = _load_split(data_dir, "train", None if cfg.train.transpose else stats)
    va_v, va_a = _load_split(data_dir, "val", stats)
    if tr_v.shape[-1] != cfg.data.chunk_frames:
        raise ValueError(f"{data_dir}: expected chunks of {cfg.data.chunk_frames} frames for profile "
                         f"{cfg.profile!r}, found {tr_v.shape[-1]}")

    schedule = Schedule.from_config(cfg)
    model = build(cfg).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    tc = cfg.train
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, tc.warmup_steps, tc.max_steps))
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    augment = _transposer(cfg, stats, g) if cfg.train.transpose else None
    step, best, bad_evals, interval = 0, float("inf"), 0, []
    elapsed = 0.0

    if resume and (ck_dir / ckpt.STATE_FILE).exists():
        tensors, meta = ckpt.load_state(ck_dir)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        opt.load_state_dict(ckpt.optimizer_from_flat({k: v.to(device) for k, v in tensors.items()}, meta["optimizer"]))
        sched.load_state_dict(meta["scheduler"])
        g.set_state(tensors[f"rng.{rank}"] if f"rng.{rank}" in tensors else tensors["rng.0"])
        step, best, bad_evals = meta["step"], meta["best"], meta["bad_evals"]
        elapsed = meta.get("seconds", 0.0)
        if rank == 0:
            print(f"resumed from {ck_dir} at step {step}")
    elif rank == 0 and (run_dir / CURVES_FILE).exists():
        (run_dir / CURVES_FILE).unlink()  # a fresh run starts a fresh curve

    net = model
    if dist is not None:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)

    use_bf16 = tc.bf16 and device.startswith("cuda")
    n_train = len(tr_v)
    bar = tqdm(total=tc.max_steps, initial=step, disable=not progress or rank != 0, desc="train")
    t0 = time.time()
    start_step = step
    stopped_early = False
    while step < tc.max_steps:
        net.train()
        idx = torch.randint(0, n_train, (tc.batch_size,), generator=g)
        v, a = _batch(tr_v, tr_a, idx, device, augment)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            loss = training_loss(net, schedule, a, v, cfg.diffusion.cond_dropout, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        step += 1
        _ema_update(ema, model, min(tc.ema_decay, (1 + step) / (10 + step)))
        loss_value = loss.item()
        interval.append(loss_value)
        if on_step is not None:
            on_step(step, loss_value)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", it_s=f"{(step - start_step) / max(time.time() - t0, 1e-9):.1f}")
        if step % tc.eval_every == 0 or step == tc.max_steps:
            stop = False
            if rank == 0:
                val = validation_loss(ema, schedule, va_v, va_a, cfg, device)
                seconds = elapsed + time.time() - t0
                _append_curve(run_dir / CURVES_FILE, {"step": step, "train_loss": float(np.mean(interval)),
                                                      "val_loss": val, "lr": sched.get_last_lr()[0],
                                                      "seconds": round(seconds, 2)})
                interval = []
                improved = val < best
                if improved:
                    best, bad_evals = val, 0
                else:
                    bad_evals += 1
                stop = bad_evals >= tc.patience
                tensors = {**{f"model.{k}": t for k, t in model.state_dict().items()},
                           **{f"ema.{k}": t for k, t in ema.state_dict().items()},
                           "rng.0": g.get_state()}
                opt_t, opt_meta = ckpt.optimizer_to_flat(opt.state_dict())
                tensors.update(opt_t)
                meta = {"optimizer": opt_meta, "scheduler": sched.state_dict(), "step": step,
                        "best": best, "bad_evals": bad_evals, "seconds": seconds}
                ckpt.save_checkpoint(ck_dir, ema, cfg, stats, write_model=improved,
                                     info={"step": step, "val_loss": val, "best_val_loss": best,
                                           "parameters": count_parameters(model)} if improved else
                                     {"last_step": step},
                                     state=tensors, state_meta=meta)
                bar.set_postfix(loss=f"{loss_value:.4f}", val=f"{val:.4f}")
            if dist is not None:
                flag = torch.tensor([int(stop)])
                dist.broadcast(flag, 0)
                stop = bool(flag.item())
            if stop:
                stopped_early = True
                break
    bar.close()
    seconds = elapsed + time.time() - t0
    summary = {"profile": cfg.profile, "steps": step, "best_val_loss": best, "stopped_early": stopped_early,
               "seconds": round(seconds, 1), "parameters": count_parameters(model), "device": device,
               "train_rows": n_train, "val_rows": len(va_v), "world_size": world,
               "checkpoint": str(ck_dir)}
    if rank == 0:
        write_json(run_dir / "summary.json", summary)
        plot_curves(run_dir, run_dir / "curves.png")
    if dist is not None:
        dist.barrier()
    return summary
