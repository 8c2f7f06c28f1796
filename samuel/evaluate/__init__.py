"""Evaluation: fit to the vocal against two baselines, samplers, efficiency (paper §VI).

Book: notebook 06 (results); design §7. ``samuel evaluate --profile demo [--json]`` runs
:func:`evaluate`, which calls one module per part:

==================  =========================================================================
:mod:`.metrics`     features, the fit metrics, Fréchet distances, intervals, the baselines
:mod:`.context`     the model, the codec and the picked clips one run shares (:class:`Context`)
:mod:`.conditions`  scoring the conditioned model, the shuffled and the null baseline
:mod:`.samplers`    the paper's ancestral sampler against the fast one
:mod:`.efficiency`  parameters, seconds and memory per 47.55 s clip (paper Table II)
:mod:`.report`      ``results.json``, the CSV tables, the plots, the examples, the text table
:mod:`.run`         :func:`evaluate`: the parts above, in order
==================  =========================================================================

Fit metrics (ours; the paper has none), each computed per clip:

* ``chroma`` -- :func:`chroma_agreement`: harmony agreement with the true accompaniment.
* ``key`` -- :func:`key_agreement`: MIREX weighted key score of the clip's estimated key
  against the song's key.
* ``beat`` -- :func:`beat_alignment`: beat salience ratio of the onset envelope at the song's
  beats (1 = chance).
* ``frechet`` -- :func:`paired_frechet`: per clip, the Fréchet distance between the frame-feature
  distributions (:func:`frame_features`: log-mel, chroma, onset) of the generated and of the true
  accompaniment of the same vocal. The real reference is another segment of the same song.

Beside them, a realism measure that is not a fit metric: ``fad`` -- :func:`fad`, the set-level
Fréchet distance between all generated and all real clips on :func:`clip_features` (bootstrap
interval), with real vs real as reference. It cannot see which vocal a clip was made for (see
:func:`paired_frechet`), so the shuffled baseline is not expected to lose on it.

Each is reported as mean with a 95 % interval over clips (:func:`mean_ci`) for three
conditions of the same model, from the same initial noise: ``conditioned`` (the clip's own
vocal), ``shuffled`` (a vocal from a clip of another test song, :func:`derangement`) and
``null`` (no vocal). ``beats_baselines[metric]`` is True when the conditioned interval lies
strictly on the better side of both baselines' intervals.
"""
from __future__ import annotations

from .apa import apa_conditions, apa_of_scores, clap_embedder
from .conditions import (AUDIOBOX_AXES, Scores, audiobox_score, audiobox_table, clip_truth,
                         fit_summary, load_audiobox, score_conditions, truth_note)
from .context import Context, fast_name, prepare, sample_latents
from .efficiency import PAPER_CLIP_FRAMES, SAO_VAE_PARAMETERS, codec_parameters, measure_efficiency
from .metrics import (BEAT_TOLERANCE_S, BOOTSTRAP, CLIP_METRICS, CONDITIONS, FEATURE_BLOCKS,
                      FRAME_BLOCKS, HIGHER_IS_BETTER, HOP, METRIC_NAMES, METRIC_SR, METRICS, N_FFT,
                      N_MELS, REALISM, beat_alignment, beats, chroma, chroma_agreement,
                      clip_features, clip_features_from_frames, clip_metrics, derangement,
                      estimate_key, fad, fad_from_features, frame_features, frame_standardiser,
                      frechet_distance, interval, key_agreement, key_name, mean_ci,
                      onset_envelope, other_segment, overlap, paired_frechet, real_vs_real,
                      select_clips, to_mono)
from .real import evaluate_real, format_real, real_examples, real_table
from .real import table_rows as real_table_rows
from .report import format_table, write_examples, write_outputs
from .run import evaluate
from .samplers import compare_fast_and_ancestral

__all__ = [
    # the run
    "evaluate", "format_table", "write_outputs", "write_examples",
    "Context", "prepare", "sample_latents", "fast_name",
    "Scores", "score_conditions", "fit_summary", "clip_truth", "truth_note",
    "compare_fast_and_ancestral", "measure_efficiency", "codec_parameters",
    "load_audiobox", "audiobox_score", "audiobox_table",
    # real recordings, accompaniment prompt adherence
    "evaluate_real", "format_real", "real_table", "real_table_rows", "real_examples",
    "apa_conditions", "apa_of_scores", "clap_embedder",
    # metrics, statistics, baselines
    "to_mono", "chroma", "onset_envelope", "chroma_agreement", "key_name", "estimate_key",
    "key_agreement", "beat_alignment", "frame_features", "clip_features_from_frames",
    "clip_features", "clip_metrics", "frechet_distance", "fad_from_features", "fad",
    "real_vs_real", "frame_standardiser", "paired_frechet", "mean_ci", "interval", "beats",
    "overlap", "derangement", "other_segment", "select_clips",
    # constants
    "CONDITIONS", "METRICS", "CLIP_METRICS", "HIGHER_IS_BETTER", "METRIC_NAMES", "REALISM",
    "METRIC_SR", "N_FFT", "HOP", "N_MELS", "BEAT_TOLERANCE_S", "BOOTSTRAP", "FRAME_BLOCKS",
    "FEATURE_BLOCKS", "AUDIOBOX_AXES", "SAO_VAE_PARAMETERS", "PAPER_CLIP_FRAMES",
]
