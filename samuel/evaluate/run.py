"""One evaluation run: the conditions, the samplers, efficiency, the report, in that order.

Book: notebook 06 (all of it); design §7. ``samuel evaluate --profile demo [--json]`` runs
:func:`evaluate`.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..io import to_jsonable
from .apa import apa_of_scores
from .conditions import audiobox_table, fit_summary, load_audiobox, score_conditions, truth_note
from .context import Context, fast_name, prepare
from .efficiency import measure_efficiency
from .metrics import CONDITIONS, HIGHER_IS_BETTER, METRIC_NAMES, METRICS, REALISM
from .real import roughness_summary
from .report import write_examples, write_outputs
from .samplers import compare_fast_and_ancestral


def evaluate(cfg, checkpoint=None, data_dir=None, out_dir=None, max_clips: int | None = None,
             steps: int | None = None, sampler: str = "fast", compare_samplers: bool = True,
             progress: bool = True, seed: int = 0, batch_size: int = 8, sampler_clips: int = 16,
             n_examples: int = 2, codec=None, device: str | None = None,
             audiobox_checkpoint: str | None = None, split: str = "test") -> dict:
    """Evaluate a model on the test split (songs never trained on) and write the results.

    ``split="val"`` evaluates on the validation songs instead: that is where settings such
    as the guidance scale are chosen, so that the test split stays unseen.

    Args:
        cfg: the configuration (a checkpoint's own configuration replaces it when loaded).
        checkpoint: a checkpoint folder, a loaded checkpoint, a ``torch.nn.Module`` (uses
            ``cfg`` and the data's ``stats.json``), or None for ``runs/<profile>/checkpoint``.
        data_dir: the data folder holding ``popdb/test`` and ``songs/`` (default
            ``runs/<profile>/data``), a POPDB folder of ours, an index written by
            ``samuel data popdb``, or the published POPDB folder itself (indexed on the fly).
            Without a song's ``truth.json`` (the published POPDB has none), its key and beats
            are estimated from the decoded true accompaniment
            (:func:`~samuel.evaluate.conditions.clip_truth`), and the results say so
            (``data.truth``).
        out_dir: where results go (default ``runs/<profile>/evaluation``).
        max_clips: evaluate at most this many test clips (round-robin over songs); None:
            ``cfg.eval.max_clips`` of the ``cfg`` given here (0: all; the paper profile's 200).
        steps: fast-sampler steps (default ``cfg.diffusion.fast_steps``).
        sampler: "fast" (``cfg.diffusion.fast_sampler``) or "ancestral" (the paper's, all
            ``cfg.diffusion.timesteps`` steps) for the fit metrics.
        compare_samplers: also run the paper's ancestral sampler beside the fast one on
            ``sampler_clips`` clips (the first ones: one per test song, round-robin). 16, not
            fewer: a t-interval over 4 clips (3 degrees of freedom) swings with the clips drawn.
            On the demo test songs 4 clips once gave beat salience 1.89 [1.77, 2.02] (fast)
            against 1.69 [1.61, 1.76] (ancestral), while 16 validation clips gave 1.35
            [1.26, 1.45] against 1.30 [1.19, 1.42]. The 800-step sampler costs ~4 s a clip on
            2 CPU cores.
        seed: the noise seed; batch ``k`` uses ``seed + k`` for all three conditions.
        codec: a codec object or name (default ``cfg.data.codec``; built by
            ``samuel.codecs.from_config`` with the device and VAE folder of the ``cfg`` given
            here, not of the checkpoint's configuration).
        device: where the model and codec run (default ``cfg.device``; "auto": CUDA when
            available).
        audiobox_checkpoint: AudioBox-Aesthetics weights, a hub-layout folder or the package's
            ``checkpoint.pt`` (default ``$SAMUEL_AUDIOBOX_CKPT``, then the hub); with scores,
            ``results["table_i"]`` and ``table_i.csv`` hold paper Table I beside ours.

    Returns:
        The results dict written to ``results.json``
        (see :func:`~samuel.evaluate.report.format_table`).
    """
    t_start = time.perf_counter()
    ctx = prepare(cfg, checkpoint, data_dir=data_dir, max_clips=max_clips, steps=steps,
                  sampler=sampler, seed=seed, codec=codec, device=device, split=split)
    if out_dir is None:
        from ..paths import run_dir

        out_dir = run_dir(ctx.cfg.profile) / "evaluation"
    predictor, audiobox_info = load_audiobox(audiobox_checkpoint, device=ctx.device)
    scores = score_conditions(ctx, predictor, batch_size=batch_size, n_examples=n_examples,
                              keep_refs=sampler_clips if compare_samplers else 0, progress=progress)
    fit, beats_baselines = fit_summary(ctx, scores)
    samplers = (compare_fast_and_ancestral(ctx, scores.refs, sampler_clips) if compare_samplers
                else {"skipped": True})
    efficiency = measure_efficiency(ctx, scores.decode_seconds, samplers)
    results = _results(ctx, scores, fit, beats_baselines, samplers, efficiency, audiobox_info)
    # accompaniment prompt adherence on the same clips (its re-pairing has its own seed)
    results["apa"] = apa_of_scores(ctx, scores)
    # frame-to-frame roughness of each condition against the true accompaniment's
    results["roughness"] = roughness_summary(scores.frames_of)
    if predictor is not None:  # paper Table I rows beside ours
        results["table_i"] = audiobox_table(scores.aesthetics, audiobox_info)
    results["seconds"]["total"] = time.perf_counter() - t_start
    results = to_jsonable(results)  # NaN -> null, numpy -> Python: what results.json holds
    write_outputs(results, Path(out_dir))
    write_examples(ctx, Path(out_dir) / "examples", scores.examples)
    return results


def _results(ctx: Context, scores, fit: dict, beats_baselines: dict, samplers: dict,
             efficiency: dict, audiobox_info: dict) -> dict:
    """The results dict of :func:`evaluate`, before AudioBox's Table I and the total time."""
    ancestral = ctx.sampler == "ancestral"
    return {
        "profile": ctx.cfg.profile, "split": ctx.split, "device": str(ctx.device),
        "seed": int(ctx.seed), "codec": ctx.codec.name, "n_clips": int(ctx.n),
        "n_songs": len(set(ctx.song_ids)), "clip_seconds": ctx.clip_seconds,
        "sampler": {"name": ctx.sampler if ancestral else fast_name(ctx.cfg),
                    "steps": int(ctx.schedule.timesteps) if ancestral else ctx.steps,
                    "cfg_scale": float(ctx.cfg.diffusion.cfg_scale)},
        "checkpoint": ctx.checkpoint_info,
        "conditions": list(CONDITIONS),
        "metrics": {m: {"description": METRIC_NAMES[m], "higher_is_better": HIGHER_IS_BETTER[m]}
                    for m in METRICS},
        "realism": {m: {"description": d, "higher_is_better": HIGHER_IS_BETTER[m]}
                    for m, d in REALISM.items()},
        "fit": fit,
        "beats_baselines": beats_baselines,
        "beats_baselines_all": all(beats_baselines.values()),
        "per_clip": scores.per_clip,
        "clips": scores.clips,
        "truth_sources": scores.truth_sources,
        "data": {**ctx.data_info, "truth": truth_note(scores.truth_sources, ctx.data_info)},
        "samplers": samplers,
        "efficiency": efficiency,
        "audiobox": audiobox_info,
        "seconds": {"generate": scores.gen_seconds, "decode_reference": scores.decode_seconds},
    }
