"""The σ-vs-timestep analysis (paper Fig. 3, design §6) and the eq. 3 mix ablation.

Book: notebook 05.

During the paper's ancestral sampling we record, per timestep, the mean and standard
deviation of the model's v prediction and of the current latent ``x_t``. Read from ``t = T-1``
downwards, ``x_t`` starts as N(0, I); the paper's claim is read here as: the step below which
the latent's statistics leave N(0, I) — equivalently, counting from the data side, the
timestep at which the latent "returns to a normal distribution" (~600 of 800 in the paper).
We locate it as the smallest ``t`` such that, for every ``t' ≥ t``, ``|mean| ≤ tol`` and
``|std − 1| ≤ tol``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .diffusion import Schedule, sample_ancestral
from .model.attention import mix_weights


def record_sampling(model, schedule: Schedule, vocals: Optional[torch.Tensor], shape,
                    cfg_scale: float = 1.0, seed: int = 0, progress: bool = False,
                    device="cpu") -> dict:
    """Run the ancestral sampler and record per-timestep statistics.

    ``model`` and ``vocals`` ``[B, C, T]`` live on ``device``; the noise is drawn on the CPU
    from ``seed`` (the same on any device).

    Returns:
        dict of numpy arrays indexed by position in the run (``t`` descending): ``t``,
        ``x_mean``, ``x_std``, ``v_mean``, ``v_std``, and the final sample ``x0`` (a CPU tensor).
    """
    rec = {k: [] for k in ("t", "x_mean", "x_std", "v_mean", "v_std")}

    def callback(t, x, v):
        rec["t"].append(t)
        rec["x_mean"].append(float(x.mean()))
        rec["x_std"].append(float(x.std()))
        rec["v_mean"].append(float(v.mean()))
        rec["v_std"].append(float(v.std()))

    g = torch.Generator().manual_seed(seed)
    x0 = sample_ancestral(model, schedule, shape, vocals=vocals, cfg_scale=cfg_scale, generator=g,
                          callback=callback, progress=progress, device=device)
    out = {k: np.asarray(v) for k, v in rec.items()}
    out["x0"] = x0.cpu()
    return out


def normal_until(record: dict, tol: float = 0.05) -> int:
    """The smallest timestep ``t`` such that ``x_t`` is N(0, I) within ``tol`` for all ``t' ≥ t``.

    ``record`` is :func:`record_sampling`'s output (``t`` descending).
    """
    ok = (np.abs(record["x_mean"]) <= tol) & (np.abs(record["x_std"] - 1) <= tol)
    t = record["t"]
    boundary = int(t[0])
    for i in range(len(t)):
        if not ok[i]:
            break
        boundary = int(t[i])
    return boundary


def theoretical_std(schedule: Schedule, data_std: float = 1.0) -> np.ndarray:
    """std of ``x_t`` under the forward process for data of std ``data_std``: sqrt(ᾱ s² + 1 − ᾱ)."""
    ab = schedule.alpha_bar
    return np.sqrt(ab * data_std ** 2 + 1 - ab)


def mixing_weights(schedule: Schedule, mix: str = "paper") -> dict:
    """Eq. 3 weights for every t: ``dict(t, w_global, w_local)``."""
    sab = torch.as_tensor(np.sqrt(schedule.alpha_bar), dtype=torch.float64)
    w_g, w_l = mix_weights(sab, mix)
    return {"t": np.arange(schedule.timesteps), "w_global": w_g.numpy(), "w_local": w_l.numpy()}


def plot_sigma(record: dict, boundary: int, schedule: Schedule, paper_claim: int = 600, ax=None):
    """Fig. 3: std and mean of x_t and of v against the timestep, with the N(0, I) boundary."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8))
    t = record["t"]
    ax.plot(t, record["x_std"], label="std of x_t (sampling)")
    ax.plot(t, record["v_std"], label="std of predicted v")
    ax.plot(t, record["x_mean"], "--", label="mean of x_t")
    ax.plot(np.arange(schedule.timesteps), theoretical_std(schedule, float(np.std(record["x0"].numpy()))),
            ":", color="gray", label="std of x_t (forward process)")
    ax.axvline(boundary, color="k", lw=1, label=f"N(0, I) from t = {boundary} (ours)")
    ax.axvline(paper_claim, color="r", lw=1, ls="--", label=f"paper: ~{paper_claim}")
    ax.invert_xaxis()
    ax.set_xlabel("timestep t (sampling runs right to left → t = 0)")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_mixing(schedule: Schedule, ax=None):
    """Eq. 3 weights against t for ``mix="paper"`` and ``mix="reversed"``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    for mix, style in (("paper", "-"), ("reversed", "--")):
        w = mixing_weights(schedule, mix)
        ax.plot(w["t"], w["w_global"], style, label=f"global ({mix})")
        ax.plot(w["t"], w["w_local"], style, label=f"local ({mix})")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("weight")
    ax.set_title("eq. 3: context = w_g · global + w_l · local")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


MIXES = ("paper", "reversed")  # the two readings of eq. 3 the ablation compares (design §4)


def ablation_run(cfg, main_run, mix: str):
    """``(config, RunPaths)`` of the ablation's ``mix`` variant: the main run itself for
    ``cfg.model.mix``, otherwise ``<root>/ablation/<mix>`` (same data, steps and seed)."""
    import dataclasses

    c = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, mix=mix))
    if mix == cfg.model.mix:
        return c, main_run
    folder = main_run.root / "ablation" / mix
    return c, dataclasses.replace(main_run, train=folder, checkpoint=folder / "checkpoint",
                                  default=False)


def train_ablation(cfg, root=None, progress: bool = False) -> list[dict]:
    """Train the ablation's other variant(s) only (not the main run): what ``samuel book run``
    starts beside notebook 04 on a multi-core CPU (:func:`samuel.book.side_by_side`), so that
    :func:`mix_ablation` in notebook 05 finds them finished. Returns their training summaries."""
    from .runs import run_paths, train_once

    main_run = run_paths(cfg.profile, root)
    return [train_once(*ablation_run(cfg, main_run, mix), progress=progress)
            for mix in MIXES if mix != cfg.model.mix]


def mix_ablation(cfg, root=None, progress: bool = True, max_clips: Optional[int] = None) -> dict:
    """Train ``cfg`` with ``mix="reversed"`` beside the main (``mix="paper"``) run and compare
    their best validation loss and fit metrics on the test split (design §4's known conflict).

    ``root`` is the run folder (default ``runs/<profile>``). The ``paper`` variant is its main
    checkpoint, trained by notebook 04, and its evaluation is the run's own
    (:func:`samuel.runs.evaluate_once`, which notebook 06 then reuses); the reversed one is
    trained with the same data, steps and seed into ``root/ablation/reversed``.
    """
    from . import checkpoint as ckpt, evaluate
    from .runs import evaluate_once, run_paths, train_once

    main_run = run_paths(cfg.profile, root)
    root = main_run.root
    out = {}
    for mix in MIXES:
        c, run = ablation_run(cfg, main_run, mix)
        train_once(c, run, progress=progress)  # reuses a finished run of the same configuration
        ck_dir = run.checkpoint
        info = ckpt.load_meta(ck_dir).get("info", {})
        if run is main_run and max_clips is None:
            # the main run's own evaluation (notebook 06 reads it instead of repeating it): the
            # sampler comparison it adds runs after the conditions and changes none of their fit
            res = evaluate_once(c, main_run, progress=progress)
        else:
            res = evaluate.evaluate(c, checkpoint=ck_dir, data_dir=main_run.data,
                                    out_dir=root / "ablation" / mix / "evaluation",
                                    max_clips=max_clips, compare_samplers=False, progress=progress)
        out[mix] = {"best_val_loss": info.get("best_val_loss"), "fit": res.get("fit", {})}
    return out
