"""The training loop (design §5, paper §V). ``samuel train --profile …``; book: notebook 04.

AdamW with linear warm-up then cosine annealing, clamped SNR-weighted v loss with 10 %
condition dropout, EMA weights (used for validation, sampling and the saved model), gradient
clipping, bf16 autocast on GPU, validation on held-out songs with early stopping, atomic
safetensors checkpoints that resume a killed run exactly, and DistributedDataParallel when
started by ``torchrun`` (gloo on CPU, NCCL on GPU).

Exact resume: every random draw of the loop comes from generators whose states are saved with
the optimiser, scheduler and EMA: a CPU ``torch.Generator`` for the batch rows (and the
transposition), and one on the training device for the timesteps, noise and dropout mask (on
the CPU these are one and the same generator, drawn in the order rows, transposition, timesteps,
noise, mask). The next step after a resume therefore sees the same batch and the same weights as
the uninterrupted run. Each process has its own generators (seeded ``seed·1000 + rank``); at
every checkpoint their states are gathered to rank 0, which saves them all as ``rng.{rank}``
(rows) and, on a GPU, ``rng_dev.{rank}`` (noise), and each process restores its own on resume.

Several processes (``torchrun --nproc_per_node=N``): the batch size is per process, so one
optimiser step sees N × ``train.batch_size`` rows (each process draws its own rows, with
replacement, from the whole training split); DDP averages the gradients over all of them, and
the learning rate and its schedule are used as configured, not scaled with N. ``max_steps``,
``warmup_steps`` and ``eval_every`` count optimiser steps, so N processes see N times as many
examples in the same steps. The start of a run prints this (rank 0).

Feeding a GPU: batches are read, pinned and queued one step ahead by a background thread (on
the CPU they are read in the loop, which keeps the CPU runs' draws in their order), the noise
never leaves the GPU, and the host waits for the GPU only every ``LOG_EVERY`` steps, at
validation, and when ``on_step`` asks for the loss.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import paths
from .devices import resolve as resolve_device
from .diffusion import Schedule, training_loss
from .io import atomic_path, write_json
from .model import build, count_parameters

CURVES_FILE = "curves.csv"
VAL_SEED = 12345  # fixed draws for the validation loss, so that it is comparable across steps
LOG_EVERY = 25  # steps between progress-bar loss updates (each one waits for the device)
PREFETCH = 2  # batches queued ahead by the background reader on a GPU


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine annealing to 0 (paper §V: "cosine annealing")."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))


def _dist(device: str):
    """``(torch.distributed or None, rank, world size)``; joins the process group that
    ``torchrun`` (env ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) describes:
    NCCL when training on CUDA, else gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if device.startswith("cuda"):
                torch.cuda.set_device(torch.device(device))
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _feeds_accelerator(device) -> bool:
    """Whether the loop feeds an accelerator: noise from a generator on ``device`` and batches
    read ahead by a background thread. False on the CPU, where one generator draws everything
    in step order (tests set it to True to exercise the accelerator's bookkeeping on a CPU)."""
    return torch.device(device).type != "cpu"


def _comm_device(dist, device: str) -> str:
    """Where tensors of collective calls live: the GPU for NCCL, the CPU for gloo."""
    return device if dist is not None and dist.get_backend() == "nccl" else "cpu"


def _gather_states(dist, world: int, comm: str, state: torch.Tensor) -> list:
    """Every rank's generator ``state`` (a uint8 tensor), on the CPU, in rank order.

    A collective call: all ranks call it together. One rank: ``[state]``.
    """
    if dist is None:
        return [state]
    mine = state.to(comm)
    out = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(out, mine)
    return [o.cpu() for o in out]


def _interval_mean(losses: list, dist, comm: str) -> float:
    """Mean of the step losses (0-dim tensors on the device) since the last evaluation, over
    all ranks; the one host synchronisation of the interval. A collective call."""
    vals = torch.stack(losses).double()
    if dist is None:
        return float(np.mean(vals.cpu().numpy()))
    both = torch.stack([vals.sum(), torch.tensor(float(len(losses)), dtype=torch.float64,
                                                 device=vals.device)]).to(comm)
    dist.all_reduce(both)
    return float(both[0] / both[1])


def _load_split(data_dir: Path, split: str, stats):
    """``(vocals, accomp)`` ``[N, C, T]`` of a split, z-scored with ``stats``; raw when ``stats``
    is None. ``data_dir`` is a POPDB folder of ours or an index over the published POPDB
    (:func:`samuel.data.store.open_split`): memory-mapped views, never loaded whole."""
    from .data.store import open_split

    return open_split(data_dir, split, normalise=stats is not None, stats=stats)


def _rows(vocals, accomp, idx: torch.Tensor, augment=None) -> tuple:
    """CPU float32 tensors ``([B, C, T], [B, C, T])`` of the rows ``idx`` (augmented)."""
    rows = np.sort(idx.numpy())  # memmap-friendly order; the same rows as drawn
    v = np.ascontiguousarray(vocals[rows], dtype=np.float32)
    a = np.ascontiguousarray(accomp[rows], dtype=np.float32)
    if augment is not None:
        v, a = augment(v, a)
    return torch.from_numpy(v), torch.from_numpy(a)


def _batch(vocals, accomp, idx: torch.Tensor, device, augment=None) -> tuple:
    v, a = _rows(vocals, accomp, idx, augment)
    return v.to(device), a.to(device)


class Batches:
    """The training batches ``(vocals, accomp)`` ``[B, C, T]`` on ``device``, in step order.

    The rows of step k are the k-th draw of ``torch.randint(0, len(vocals), (B,))`` from the
    CPU generator ``g`` (then the transposition's draws, if any), whatever the mode:

    - ``ahead`` = 0 (the CPU): each batch is read when asked for, in the loop's thread, so
      draws from ``g`` interleave with the loss's exactly as in step order;
    - ``ahead`` > 0 (a GPU, where the noise comes from another generator): a background thread
      reads up to ``ahead`` batches in advance into pinned memory; the copy to the GPU is
      asynchronous.

    :meth:`state` is the state of ``g`` to save after the last batch handed out.
    """

    def __init__(self, vocals, accomp, batch_size: int, g: torch.Generator, device,
                 augment=None, ahead: int = 0):
        self.vocals, self.accomp, self.batch_size, self.g = vocals, accomp, batch_size, g
        self.device, self.augment, self.ahead = torch.device(device), augment, ahead
        self.pin = self.device.type == "cuda"
        self._state = g.get_state()  # read-ahead mode: the state after the last batch handed out
        if ahead > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=ahead)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._produce, name="samuel-batches", daemon=True)
            self._thread.start()

    def _draw(self) -> tuple:
        idx = torch.randint(0, len(self.vocals), (self.batch_size,), generator=self.g)
        v, a = _rows(self.vocals, self.accomp, idx, self.augment)
        if self.pin:
            v, a = v.pin_memory(), a.pin_memory()
        return v, a

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                v, a = self._draw()
                if not self._put((v, a, self.g.get_state())):
                    return
        except BaseException as e:  # handed to the loop, which raises it
            self._put(e)

    def next(self) -> tuple:
        """The next batch ``(vocals, accomp)``, each ``[B, C, T]`` float32 on the device."""
        if self.ahead == 0:
            v, a = self._draw()
        else:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            v, a, self._state = item
        nb = self.pin
        return v.to(self.device, non_blocking=nb), a.to(self.device, non_blocking=nb)

    def state(self) -> torch.Tensor:
        """The state of ``g`` right after the last batch handed out (the one to save)."""
        if self.ahead == 0:
            return self.g.get_state()
        return self._state

    def close(self) -> None:
        """Stop the background reader (if any)."""
        if self.ahead > 0:
            self._stop.set()
            self._thread.join(timeout=10)


def _transposer(cfg, stats, g: torch.Generator):
    """Pitch-shift augmentation (``cfg.train.transpose`` semitones either way): vocal and
    accompaniment of a row are shifted together in codec space, then z-scored.

    With it, the key of a training example is uniform over the range, so the model can only
    get the key right by listening to the vocal. Only codecs with a ``transpose`` method
    (the offline codec's semitone bands) support it.
    """
    from .codecs import from_config
    from .data.store import normalise

    codec = from_config(cfg)
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
def validation_loss(model, schedule, vocals, accomp, cfg, device, max_rows: int = 256,
                    autocast: bool = False) -> float:
    """Mean loss over (up to ``max_rows``) validation rows with fixed timesteps and noise.

    The draws come from a CPU generator seeded ``VAL_SEED``, so the loss is the same
    measurement on every device; ``autocast`` runs the model under bf16 autocast (off by
    default). One host synchronisation, at the end.
    """
    g = torch.Generator().manual_seed(VAL_SEED)
    n = min(len(vocals), max_rows)
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    bs = cfg.train.batch_size
    for start in range(0, n, bs):
        idx = torch.arange(start, min(n, start + bs))
        v, a = _batch(vocals, accomp, idx, device)
        # no condition dropout here: validation measures the conditioned model
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
            loss = training_loss(model, schedule, a, v, cond_dropout=0.0, generator=g)
        total += loss.detach().double() * len(idx)
        count += len(idx)
    return float(total) / max(count, 1)


def restore(ck_dir, model, ema, opt, sched, g: torch.Generator, g_dev: torch.Generator,
            rank: int = 0, world: int = 1) -> dict:
    """Load a run's training state from ``ck_dir`` into the given objects, in place.

    Weights are copied into the models' parameters on their devices; the optimiser state is
    handed to ``opt.load_state_dict`` on the CPU, which places the moments beside their
    parameters and AdamW's ``step`` counters where its form wants them (the CPU, or beside the
    parameters for the fused form). ``g`` (batch
    rows) gets ``rng.{rank}``, and ``g_dev`` (noise, when it is not ``g``) ``rng_dev.{rank}``.

    Returns:
        the JSON part of the state (``step``, ``best``, ``bad_evals``, ``seconds``, ...).

    Raises:
        CheckpointError: the state does not fit the model or holds an unreadable RNG state.
    """
    tensors, meta = ckpt.load_state(ck_dir)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    opt.load_state_dict(ckpt.optimizer_from_flat(tensors, meta["optimizer"]))
    sched.load_state_dict(meta["scheduler"])
    saved_world = int(meta.get("world_size", 1))
    notes = []
    if saved_world != world:
        notes.append(f"written by {saved_world} process(es), resumed with {world}")
    pairs = [(g, f"rng.{rank}")] + ([(g_dev, f"rng_dev.{rank}")] if g_dev is not g else [])
    for gen, key in pairs:
        if key not in tensors:
            notes.append(f"no {key} in it (a fresh seed instead)")
            continue
        try:
            gen.set_state(tensors[key])
        except RuntimeError as e:
            raise ckpt.CheckpointError(f"{Path(ck_dir) / ckpt.STATE_FILE}: {key}: expected the state "
                                       f"of a {gen.device} generator, found {tensors[key].numel()} "
                                       f"bytes that do not fit ({e})") from e
    if g_dev is g and f"rng_dev.{rank}" in tensors:
        notes.append("its noise came from a GPU generator, now from the CPU one")
    if notes and rank == 0:
        print(f"warning: {ck_dir}: the resume is not exact: " + "; ".join(notes))
    return meta


def _ema_update(ema, model, decay: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)


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


def _deterministic(device: str) -> Callable[[], None]:
    """On the CPU, make the loop as deterministic as PyTorch allows
    (``torch.use_deterministic_algorithms(True)``: an op without a deterministic kernel raises
    instead of varying); returns what puts the previous setting back.

    The rest of the loop's determinism is its own: every draw comes from the seeded
    generators above, batches are read in the loop's thread (no workers), and the summary
    records the CPU thread count, since a reduction split over another number of threads may
    round differently. On a GPU the setting is left as it is: several CUDA kernels the loop uses
    have no deterministic version, and the GPU runs are not the committed ones.
    """
    if device != "cpu":
        return lambda: None
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    return lambda: torch.use_deterministic_algorithms(before)


def _open_data(cfg, data_dir: Path, progress: bool) -> tuple:
    """``(data_dir, stats, (train vocals, train accomp), (val vocals, val accomp))`` of ours, an
    index of ``samuel data popdb``, or the published folder (indexed on the fly).

    Raises:
        ValueError: the chunks are not ``cfg.data.chunk_frames`` long.
    """
    from .data.popdb import resolve
    from .data.store import train_stats

    data_dir = resolve(data_dir, cfg)
    stats = train_stats(data_dir, progress=progress)  # training rows only, cached
    # with transposition the rows are read raw, shifted, then z-scored (see _transposer)
    tr_v, tr_a = _load_split(data_dir, "train", None if cfg.train.transpose else stats)
    va_v, va_a = _load_split(data_dir, "val", stats)
    if tr_v.shape[-1] != cfg.data.chunk_frames:
        raise ValueError(f"{data_dir}: expected chunks of {cfg.data.chunk_frames} frames for profile "
                         f"{cfg.profile!r}, found {tr_v.shape[-1]}")
    return data_dir, stats, (tr_v, tr_a), (va_v, va_a)


def adamw(params, tc) -> torch.optim.AdamW:
    """AdamW with ``tc.lr`` and ``tc.weight_decay`` (``tc``: ``cfg.train``), in its fused form.

    The fused kernel updates every tensor in one pass instead of a dozen elementwise calls per
    tensor (torch's default on a CPU): the same update within float rounding (tested), about
    3x faster (measured on 2 cores: the demo step's AdamW 14 -> 4 ms, the paper's 44 -> 12 ms).
    Its state dict has the same tensors; its saved hyperparameters name the form, so a resumed
    run keeps the form it was saved with. Where a build of torch has no fused kernel for the
    device, the default form is used.
    """
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)


def _optimisation(cfg, device: str) -> tuple:
    """``(model, ema, optimiser, lr scheduler)``: a fresh model on ``device``, its EMA copy,
    AdamW and the warm-up + cosine schedule."""
    model = build(cfg).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    tc = cfg.train
    opt = adamw(model.parameters(), tc)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, tc.warmup_steps, tc.max_steps))
    return model, ema, opt, sched


def _save_state(ck_dir: Path, cfg, stats, model, ema, opt, sched, progress: dict,
                rows_states: list, noise_states: Optional[list], val: float, improved: bool,
                world: int) -> None:
    """Write the checkpoint at a validation pass: the EMA weights when they ``improved``, and
    always the whole loop state (weights, optimiser, scheduler, every rank's generators) that
    ``--resume`` restores (:func:`restore`). ``progress``: step, best, bad_evals, seconds."""
    tensors = {**{f"model.{k}": t for k, t in model.state_dict().items()},
               **{f"ema.{k}": t for k, t in ema.state_dict().items()},
               **{f"rng.{r}": st for r, st in enumerate(rows_states)},
               **{f"rng_dev.{r}": st for r, st in enumerate(noise_states or [])}}
    opt_t, opt_meta = ckpt.optimizer_to_flat(opt.state_dict())
    tensors.update(opt_t)
    step, best = progress["step"], progress["best"]
    meta = {"optimizer": opt_meta, "scheduler": sched.state_dict(), **progress, "world_size": world}
    info = ({"step": step, "val_loss": val, "best_val_loss": best,
             "parameters": count_parameters(model)} if improved else {"last_step": step})
    ckpt.save_checkpoint(ck_dir, ema, cfg, stats, write_model=improved, info=info,
                         state=tensors, state_meta=meta)


def train(cfg, data_dir=None, run_dir=None, resume: bool = False, progress: bool = True,
          device: Optional[str] = None, on_step: Optional[Callable[[int, float], None]] = None) -> dict:
    """Train ``cfg``'s model on the POPDB folder ``data_dir`` (default ``runs/<profile>/data/popdb``).

    Writes ``run_dir`` (default ``runs/<profile>/train``): ``curves.csv``, ``curves.png``,
    ``summary.json`` and the checkpoint in ``runs/<profile>/checkpoint`` (or
    ``run_dir/checkpoint`` when ``run_dir`` is given).
    Returns a summary with the steps run, best validation loss and timings.
    ``on_step(step, loss)`` is called after every optimiser step with this process's loss (tests
    use it); giving it makes every step wait for the device.
    ``device`` defaults to ``cfg.device`` (:func:`samuel.devices.resolve`); under ``torchrun``
    each process takes the GPU of its ``LOCAL_RANK``. With N processes the batch size is per
    process (see the module docstring).

    The loop stays one function (about 110 lines of code) on purpose: every random draw (rows,
    timesteps, noise, dropout) happens in this order for a run to resume exactly and to equal
    the uninterrupted one; the stages around it are :func:`_open_data`, :func:`_optimisation`,
    :func:`validation_loss` and :func:`_save_state`.
    """
    device = device or resolve_device(cfg.device)
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = f"cuda:{_local_rank()}"
    dist, rank, world = _dist(device)
    comm = _comm_device(dist, device)
    root = paths.run_dir(cfg.profile)
    data_dir = Path(data_dir) if data_dir else root / "data" / "popdb"
    run_dir = Path(run_dir) if run_dir else root / "train"
    ck_dir = run_dir / "checkpoint" if run_dir != root / "train" else root / "checkpoint"
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir, stats, (tr_v, tr_a), (va_v, va_a) = _open_data(cfg, data_dir, progress and rank == 0)

    schedule = Schedule.from_config(cfg)
    model, ema, opt, sched = _optimisation(cfg, device)
    tc = cfg.train
    accel = _feeds_accelerator(device)
    restore_determinism = _deterministic(device)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)  # batch rows, transposition
    # timesteps, noise, dropout: on the training device; on the CPU the same generator as the rows
    g_dev = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank) if accel else g
    augment = _transposer(cfg, stats, g) if cfg.train.transpose else None
    if tc.latent_augment:  # gain, tilt, noise (samuel.augment), drawn after the transposition
        from .augment import latent_augmenter

        augment = latent_augmenter(cfg, stats, g, augment)
    step, best, bad_evals, interval = 0, float("inf"), 0, []
    elapsed = 0.0

    if resume and (ck_dir / ckpt.STATE_FILE).exists():
        meta = restore(ck_dir, model, ema, opt, sched, g, g_dev, rank, world)
        step, best, bad_evals = meta["step"], meta["best"], meta["bad_evals"]
        elapsed = meta.get("seconds", 0.0)
        if rank == 0:
            print(f"resumed from {ck_dir} at step {step}")
    elif rank == 0 and (run_dir / CURVES_FILE).exists():
        (run_dir / CURVES_FILE).unlink()  # a fresh run starts a fresh curve
    if rank == 0 and (progress or world > 1):
        print(f"training on {device}: {world} process(es) x batch {tc.batch_size} = "
              f"{world * tc.batch_size} rows per optimiser step; learning rate {tc.lr:g} as "
              "configured (not scaled with the number of processes)")

    net = model
    if dist is not None:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)

    use_bf16 = tc.bf16 and device.startswith("cuda")
    batches = Batches(tr_v, tr_a, tc.batch_size, g, device, augment, ahead=PREFETCH if accel else 0)
    bar = tqdm(total=tc.max_steps, initial=step, disable=not progress or rank != 0, desc="train")
    t0 = time.time()
    start_step = step
    stopped_early = False
    try:
        while step < tc.max_steps:
            net.train()
            v, a = batches.next()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                loss = training_loss(net, schedule, a, v, cfg.diffusion.cond_dropout, g_dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            step += 1
            _ema_update(ema, model, min(tc.ema_decay, (1 + step) / (10 + step)))
            interval.append(loss.detach())  # stays on the device until the next evaluation
            if on_step is not None:
                on_step(step, loss.item())
            bar.update(1)
            if step % LOG_EVERY == 0 and not bar.disable:
                recent = float(torch.stack(interval[-LOG_EVERY:]).mean())
                bar.set_postfix(loss=f"{recent:.4f}",
                                it_s=f"{(step - start_step) / max(time.time() - t0, 1e-9):.1f}")
            if step % tc.eval_every == 0 or step == tc.max_steps:
                # collective calls first (every rank): the interval's loss, the generators' states
                train_loss = _interval_mean(interval, dist, comm)
                interval = []
                rows_states = _gather_states(dist, world, comm, batches.state())
                noise_states = None if g_dev is g else _gather_states(dist, world, comm, g_dev.get_state())
                stop = False
                if rank == 0:
                    val = validation_loss(ema, schedule, va_v, va_a, cfg, device)
                    seconds = elapsed + time.time() - t0
                    _append_curve(run_dir / CURVES_FILE, {"step": step, "train_loss": train_loss,
                                                          "val_loss": val, "lr": sched.get_last_lr()[0],
                                                          "seconds": round(seconds, 2)})
                    improved = val < best
                    best, bad_evals = (val, 0) if improved else (best, bad_evals + 1)
                    stop = bad_evals >= tc.patience
                    _save_state(ck_dir, cfg, stats, model, ema, opt, sched,
                                {"step": step, "best": best, "bad_evals": bad_evals, "seconds": seconds},
                                rows_states, noise_states, val, improved, world)
                    bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val:.4f}")
                if dist is not None:
                    # rank 0's decision to every rank; the flag lives where the backend wants it
                    flag = torch.tensor([int(stop)], device=comm)
                    dist.broadcast(flag, 0)
                    stop = bool(flag.item())
                if stop:
                    stopped_early = True
                    break
    finally:
        batches.close()
        bar.close()
        restore_determinism()
    seconds = elapsed + time.time() - t0
    summary = {"profile": cfg.profile, "steps": step, "best_val_loss": best, "stopped_early": stopped_early,
               "seconds": round(seconds, 1), "parameters": count_parameters(model), "device": device,
               "train_rows": len(tr_v), "val_rows": len(va_v), "world_size": world,
               "rows_per_step": world * tc.batch_size, "checkpoint": str(ck_dir),
               "threads": torch.get_num_threads(), "deterministic": device == "cpu"}
    if rank == 0:
        write_json(run_dir / "summary.json", summary)
        plot_curves(run_dir, run_dir / "curves.png")
    if dist is not None:
        dist.barrier()
    return summary
