"""The report of an evaluation: results files, plots, example clips, the text and the tables.

:func:`write_outputs` writes ``results.json`` and the CSV tables and plots beside it,
:func:`write_examples` the example clips to listen to, and :func:`format_table` is the text
that ``samuel evaluate`` prints. :func:`fit_table`, :func:`sampler_table`,
:func:`table_ii`, :func:`table_i` and :func:`ablation_table` are the tables the
notebooks show as HTML and the tables page writes as Markdown (:class:`Table`), each claim
marked ✓ or ✗.

Book: notebook 06 (every results cell, "Listen"), notebook 05 (the eq. 3 ablation), "Paper
tables beside ours"; design §7.
"""
from __future__ import annotations

import math

import csv
import io as _io
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import atomic_path, write_json
from .conditions import AUDIOBOX_AXES
from .context import Context
from .metrics import CLIP_METRICS, CONDITIONS, HIGHER_IS_BETTER, METRICS, REALISM, overlap


PANELS_PER_ROW = 3  # the book's figures: at most three panels side by side, readable on a page

# --------------------------------------------------------------------------- files and plots


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def write_outputs(results: Mapping, out_dir: str | os.PathLike) -> None:
    """``results.json``, ``fit.csv``, ``samplers.csv``, ``efficiency.csv``, ``fit.png`` and
    ``samplers.png`` in ``out_dir`` (each written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    rows = []
    for cond, metrics in results["fit"].items():
        for m, v in metrics.items():
            rows.append([cond, m, v["mean"], v["lo"], v["hi"], v["n"]])
    _write_csv(out_dir / "fit.csv", ["condition", "metric", "mean", "lo", "hi", "n"], rows)
    s = results["samplers"]
    rows = []
    if not s.get("skipped"):
        for name in ("fast", "ancestral"):
            for m, v in s[name]["fit"].items():
                rows.append([name, s[name]["steps"], m, v["mean"], v["lo"], v["hi"],
                             s[name]["seconds_per_clip"]])
    _write_csv(out_dir / "samplers.csv",
               ["sampler", "steps", "metric", "mean", "lo", "hi", "seconds_per_clip"], rows)
    _write_csv(out_dir / "efficiency.csv", ["quantity", "value"],
               [[k, v] for k, v in results["efficiency"].items()])
    if results.get("table_i"):  # AudioBox-Aesthetics scores exist: paper Table I beside ours
        cols = ["source", "from", "n", "compare_with", *AUDIOBOX_AXES,
                *(f"{k}_{e}" for k in AUDIOBOX_AXES for e in ("lo", "hi"))]
        _write_csv(out_dir / "table_i.csv", cols, [[r.get(c) for c in cols] for r in results["table_i"]])
    _plot_fit(results, out_dir / "fit.png")
    _plot_samplers(results, out_dir / "samplers.png")


def _bar(ax, labels, entries, colors):
    means = [np.nan if e["mean"] is None else e["mean"] for e in entries]
    err = [[0 if (e["lo"] is None or e["mean"] is None) else e["mean"] - e["lo"] for e in entries],
           [0 if (e["hi"] is None or e["mean"] is None) else e["hi"] - e["mean"] for e in entries]]
    ax.bar(range(len(labels)), means, yerr=err, capsize=4, color=colors)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_fit(results: Mapping, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in (*METRICS, *REALISM) if m in results["fit"]["conditioned"]]
    cols = min(PANELS_PER_ROW, len(shown))
    rows = -(-len(shown) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows), squeeze=False)
    axes = grid.ravel()
    for ax in axes[len(shown):]:
        ax.axis("off")
    colors = {"conditioned": "tab:blue", "shuffled": "tab:orange", "null": "tab:gray", "real": "tab:green"}
    real_label = {"fad": "real vs\nreal", "frechet": "real, other\nsegment"}
    for ax, m in zip(axes, shown):
        conds = [c for c in (*CONDITIONS, "real") if m in results["fit"].get(c, {})]
        labels = [real_label.get(m, c) if c == "real" else c for c in conds]
        _bar(ax, labels, [results["fit"][c][m] for c in conds], [colors[c] for c in conds])
        arrow = "higher is better" if HIGHER_IS_BETTER[m] else "lower is better"
        kind = "realism, not fit" if m in REALISM else arrow
        ax.set_title(f"{m} ({kind})", fontsize=9)
        ax.set_ylabel({"chroma": "Pearson r", "key": "MIREX score", "beat": "salience ratio",
                       "frechet": "paired Fréchet distance", "fad": "set Fréchet distance"}[m])
    fig.suptitle(f"Fit to the vocal, mean and 95 % interval over {results['n_clips']} {_split(results)} clips")
    fig.tight_layout()
    _save_fig(fig, path)


def _plot_samplers(results: Mapping, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["samplers"]
    fig, grid = plt.subplots(2, 2, figsize=(8.0, 6.4))
    axes = grid.ravel()
    if s.get("skipped"):
        for ax in axes:
            ax.axis("off")
        axes[0].text(0, 0.5, "sampler comparison skipped")
    else:
        names = ["fast", "ancestral"]
        labels = [f"{s[k]['name'].split(' ')[0]}\n{s[k]['steps']} steps" for k in names]
        for ax, m in zip(axes, ("chroma", "key", "beat")):
            _bar(ax, labels, [s[k]["fit"][m] for k in names], ["tab:blue", "tab:purple"])
            ax.set_title(m, fontsize=9)
        axes[3].bar(labels, [s[k]["seconds_per_clip"] for k in names], color=["tab:blue", "tab:purple"])
        axes[3].set_yscale("log")
        axes[3].set_ylabel("seconds per clip")
        axes[3].set_title(f"speed ratio {s['speed_ratio']:.0f}x", fontsize=9)
    fig.tight_layout()
    _save_fig(fig, path)


def write_examples(ctx: Context, folder: Path, examples: Sequence[tuple]) -> None:
    """``<folder>/<k>_<song>_{vocal,generated,true_accomp,mix}.wav`` for the example clips.

    The vocal is the song's ``vocals.wav`` excerpt when the data has song audio at this rate,
    else the decoded vocal latents.

    Args:
        ctx: the run.
        folder: where the WAV files go.
        examples: ``(clip, row, offset_s, generated [2, N], true [2, N])``
            (:attr:`samuel.evaluate.conditions.Scores.examples`).
    """
    from .. import audio as audio_mod

    sr, clip_seconds = ctx.sr, ctx.clip_seconds
    data_dir = ctx.songs_dir.parent if ctx.songs_dir is not None else ctx.data_dir
    for k, (i, row, offset_s, gen, ref) in enumerate(examples):
        vocal = _vocal_excerpt(data_dir / "songs" / row["song_id"] / "vocals.wav", offset_s,
                               clip_seconds, sr)
        if vocal is None:
            vocal = ctx.decode(ctx.vocals[i], "vocal")
        n = min(vocal.shape[1], gen.shape[1])
        mix = vocal[:, :n] + gen[:, :n]
        peak = float(np.max(np.abs(mix))) if mix.size else 0.0
        if peak > 0.99:
            mix = mix * (0.99 / peak)
        stem = f"{k}_{row['song_id']}"
        for name, x in (("vocal", vocal), ("generated", gen), ("true_accomp", ref), ("mix", mix)):
            audio_mod.save(folder / f"{stem}_{name}.wav", x, sr)


def _vocal_excerpt(wav: Path, offset_s: float, seconds: float, sr: int) -> np.ndarray | None:
    """``[2, N]`` of ``wav`` from ``offset_s``; None when it is missing, unreadable or at
    another rate (the caller then decodes the vocal latents instead)."""
    if not wav.exists():
        return None
    from .. import audio as audio_mod

    try:
        import soundfile as sf

        data, file_sr = sf.read(str(wav), start=int(round(offset_s * sr)),
                                frames=int(round(seconds * sr)), dtype="float32", always_2d=True)
        if file_sr == sr and len(data):
            return audio_mod.to_channels(data.T, 2)
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------- text


def _split(results: Mapping) -> str:
    """How the tables name the clips' split: "test" (the default) or "validation"."""
    return {"val": "validation"}.get(results.get("split", "test"), results.get("split", "test"))


def _num(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.4g}"


def _fmt(v: Mapping) -> str:
    if v.get("mean") is None:
        return "n/a"
    if v.get("lo") is None:
        return _num(v["mean"])
    return f"{_num(v['mean'])} [{_num(v['lo'])}, {_num(v['hi'])}]"


def format_table(results: Mapping) -> str:
    """A readable text report of :func:`~samuel.evaluate.run.evaluate`'s results (what
    ``samuel evaluate`` prints): fit and verdicts, samplers, Table II, AudioBox.

    Works on the results as returned or as read back from ``results.json`` (whose keys are
    sorted: every list here follows the metrics' and conditions' own order).
    """
    return "\n".join([*_fit_lines(results), "", *_sampler_lines(results["samplers"]), "",
                       *_efficiency_lines(results["efficiency"]), "",
                       *_audiobox_lines(results)])


def _fit_lines(results: Mapping) -> list[str]:
    """The header, the fit table (conditions across, metrics down) and the verdicts."""
    s = results["sampler"]
    lines = [f"Evaluation of profile {results['profile']!r} on {results['n_clips']} {_split(results)} clips "
             f"of {results['n_songs']} songs ({results['clip_seconds']:.1f} s each), sampler "
             f"{s['name']} ({s['steps']} steps, cfg {s['cfg_scale']:g}), mean [95 % interval]", ""]
    fit, conds, width = results["fit"], [*CONDITIONS, "real"], 29
    lines.append("metric".ljust(8) + "".join(c.ljust(width) for c in conds))
    for m in (*METRICS, *REALISM):
        if m in fit["conditioned"]:
            lines.append(m.ljust(8) + "".join(
                (_fmt(fit[c][m]) if m in fit.get(c, {}) else "-").ljust(width) for c in conds))
    lines.append("(real: the true accompaniment; its frechet is to another segment of the same song;")
    lines.append(" fad is realism, not fit: set against set, blind to the pairing; real: half vs half)")
    if results.get("data", {}).get("truth"):
        lines.append(f"ground truth: {results['data']['truth']}")
    if results.get("roughness"):
        lines.append(roughness_note(results["roughness"]))
    lines.append("")
    for m in METRICS:
        lines.append(f"conditioned beats shuffled and null on {m}: {results['beats_baselines'][m]}")
    return lines


def num_or_na(x, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, or ``n/a`` for None or NaN (NaN is null once written to
    ``results.json``)."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def roughness_note(rough: Mapping) -> str:
    """One line: each condition's frame-to-frame roughness against the true accompaniment's
    (:func:`samuel.evaluate.real.roughness_summary`)."""
    ratio = ", ".join(f"{c} {num_or_na(rough['ratio'][c])}x" for c in CONDITIONS if c in rough["ratio"])
    return (f"roughness (frame to frame, frame features z-scored by the true accompaniment's): "
            f"{ratio} the true accompaniment's ({num_or_na(rough['features']['real']['mean'], 3)})")


def _sampler_lines(s: Mapping) -> list[str]:
    """The fast sampler against the paper's: times, fit per metric, verdicts."""
    if s.get("skipped"):
        return ["sampler comparison: skipped"]
    fast, anc = s["fast"], s["ancestral"]
    lines = [f"samplers on {s['clips']} clips: fast {fast['name']} ({fast['steps']} steps) "
             f"{fast['seconds_per_clip']:.3f} s/clip, ancestral ({anc['steps']} steps) "
             f"{anc['seconds_per_clip']:.3f} s/clip, ratio {s['speed_ratio']:.1f}x"]
    for m in (m for m in CLIP_METRICS if m in s["overlap"]):
        lines.append(f"  {m}: fast {_fmt(fast['fit'][m])}  ancestral "
                     f"{_fmt(anc['fit'][m])}  overlap: {s['overlap'][m]}")
    lines.append(f"fast sampler fits as well as the paper's: {s['equal_fit']}")
    lines.append(f"fast sampler at least 40x faster: {s['at_least_40x_faster']}")
    return lines


def _efficiency_lines(e: Mapping) -> list[str]:
    """Paper Table II of this run."""
    lines = ["Efficiency (paper Table II)",
             f"  device                      {e['device']}",
             f"  parameters (model)          {e['parameters']:,}",
             f"  parameters (with codec)     {e['parameters_with_codec']:,}  ({e['codec']} codec: "
             f"{e['codec_parameters']:,})",
             f"  seconds per 47.55 s clip    {e['fast_total_seconds_per_47s_clip']:.2f} "
             f"(fast sampler {e['fast_seconds_per_47s_clip']:.2f} + decode "
             f"{e['decode_seconds_per_47s_clip']:.2f})"]
    if "ancestral_seconds_per_47s_clip" in e:
        lines.append(f"  ancestral, per 47.55 s clip {e['ancestral_seconds_per_47s_clip']:.2f} "
                     "(generation only)")
    lines.append(f"  peak memory                 {e['peak_rss_mib']:.0f} MiB RSS"
                 + (f", {e['peak_cuda_mib']:.0f} MiB CUDA" if "peak_cuda_mib" in e else ""))
    lines.append(f"  ({e['scaling']})")
    return lines


def _audiobox_lines(results: Mapping) -> list[str]:
    """AudioBox-Aesthetics per condition (or why there are none), and paper Table I."""
    a = results["audiobox"]
    if not a.get("available"):
        return [f"AudioBox-Aesthetics: not available: {a.get('reason')}"]
    lines = [f"AudioBox-Aesthetics {name}: " + ", ".join(
                 f"{k} {_fmt(a[name][k])}" for k in AUDIOBOX_AXES if k in a[name])
             for name in (*CONDITIONS, "real") if isinstance(a.get(name), Mapping)]
    if results.get("table_i"):
        from ..aesthetics import format_table_i

        lines += ["", format_table_i(results["table_i"])]
    return lines


# --------------------------------------------------------------------------- tables for the book
# The notebooks show these as HTML tables (an object with ``_repr_html_`` is shown as HTML by
# Jupyter and in the rendered book; printed, it is aligned text); the tables page writes them
# as Markdown. Each claim gets a mark: ✓ holds, ✗ does not, — not measured.

YES, NO, EMPTY = "✓", "✗", "—"
# Paper §VI, Table II ("efficiency"): parameters and seconds per 47.55 s clip on an A100
# (SAMUeL's 21 s is the 800-step ancestral sampler).
PAPER_TABLE_II = {
    "SAMUeL": {"parameters": "15 M", "seconds": "21"},
    "Stable Audio Open": {"parameters": "1.2 B", "seconds": "25"},
    "MusicGen Small": {"parameters": "300 M", "seconds": "236"},
    "MusicGen Large": {"parameters": "3.3 B", "seconds": "1083"},
    "OpenAI Jukebox": {"parameters": "5 B", "seconds": "> 6 h"},
}


def mark(flag) -> str:
    """✓ for a claim that holds, ✗ for one that does not, — for one not measured (None)."""
    return EMPTY if flag is None else (YES if flag else NO)


def interval(v: Mapping | None) -> str:
    """``mean [lo, hi]`` of a metric entry (``{"mean", "lo", "hi"}``), — when absent."""
    if not v or v.get("mean") is None:
        return EMPTY
    return _fmt(v)


class Table:
    """A small table for the book: a header row, rows of cells, a caption and notes.

    Shown as HTML in a notebook (``_repr_html_``), as aligned text when printed, and as
    Markdown by :meth:`markdown` (the tables page).
    """

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence], caption: str = "",
                 notes: Sequence[str] = ()):
        self.header = [str(h) for h in header]
        self.rows = [[EMPTY if c is None else str(c) for c in r] for r in rows]
        bad = [r for r in self.rows if len(r) != len(self.header)]
        if bad:
            raise ValueError(f"table {caption!r}: expected {len(self.header)} cells per row, "
                             f"found {len(bad[0])} in {bad[0]}")
        self.caption, self.notes = caption, list(notes)

    def _repr_html_(self) -> str:
        import html

        esc = html.escape
        head = "".join(f"<th>{esc(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        cap = f"<caption>{esc(self.caption)}</caption>" if self.caption else ""
        notes = "".join(f"<p><small>{esc(n)}</small></p>" for n in self.notes)
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"

    def __str__(self) -> str:
        widths = [max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        return "\n".join([*([self.caption] if self.caption else []), line(self.header),
                          *(line(r) for r in self.rows), *self.notes])

    __repr__ = __str__

    def markdown(self) -> str:
        cell = lambda c: c.replace("|", "/")  # noqa: E731
        lines = ["| " + " | ".join(cell(h) for h in self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in self.rows]
        return "\n".join(([f"**{self.caption}**", ""] if self.caption else []) + lines
                         + ([""] + self.notes if self.notes else []))


def fit_table(results: Mapping) -> Table:
    """Fit to the vocal: mean [95 % interval] per metric and condition, and per metric whether
    the conditioned model beats both baselines (notebook 06, "Fit to the vocal")."""
    fit, conds = results["fit"], [*CONDITIONS, "real"]
    rows = []
    for m in (*METRICS, *REALISM):
        if m not in fit["conditioned"]:
            continue
        arrow = "realism" if m in REALISM else ("↑" if HIGHER_IS_BETTER[m] else "↓")
        claim = mark(results["beats_baselines"].get(m)) if m in METRICS else "(not a fit claim)"
        rows.append([f"{m} {arrow}", *(interval(fit.get(c, {}).get(m)) for c in conds), claim])
    return Table(["metric", *conds, "conditioned beats both"], rows,
                 caption=f"Fit to the vocal on {results['n_clips']} {_split(results)} clips of "
                         f"{results['n_songs']} songs: mean [95 % interval]",
                 notes=[f"all four fit claims: {mark(results.get('beats_baselines_all'))}; "
                        "↑ higher is better, ↓ lower; real: the true accompaniment (its frechet "
                        "is to another segment of the same song; its fad is half against half).",
                        *([roughness_note(results["roughness"])] if results.get("roughness") else [])])


def sampler_table(results: Mapping) -> Table:
    """The fast sampler against the paper's 800-step one: fit per metric, speed, the two
    claims (notebook 06, "The paper's sampler against the fast one")."""
    s = results["samplers"]
    if s.get("skipped"):
        return Table(["sampler comparison"], [["skipped"]])
    fast, anc = s["fast"], s["ancestral"]
    rows = [[m, interval(fast["fit"].get(m)), interval(anc["fit"].get(m)), mark(s["overlap"][m])]
            for m in CLIP_METRICS if m in s["overlap"]]
    rows.append(["seconds per clip", f"{fast['seconds_per_clip']:.3f}", f"{anc['seconds_per_clip']:.3f}",
                 f"ratio {s['speed_ratio']:.1f}x"])
    return Table(["metric", f"fast: {fast['name']} ({fast['steps']} steps)",
                  f"paper: ancestral ({anc['steps']} steps)", "intervals overlap"], rows,
                 caption=f"Samplers on the same {s['clips']} clips and noise",
                 notes=[f"fits as well as the paper's: {mark(s.get('equal_fit'))}; "
                        f"at least 40x faster: {mark(s.get('at_least_40x_faster'))}"])


def table_ii(results: Mapping) -> Table:
    """Paper Table II beside this run: parameters, seconds per 47.55 s clip, peak memory."""
    e = results["efficiency"]
    paper = PAPER_TABLE_II["SAMUeL"]
    anc = e.get("ancestral_seconds_per_47s_clip")
    rows = [["parameters (model)", f"{e['parameters']:,}", paper["parameters"]],
            ["parameters (with the codec)", f"{e['parameters_with_codec']:,} ({e['codec']} codec)", EMPTY],
            ["seconds per 47.55 s clip, 800-step sampler", EMPTY if anc is None else f"{anc:.2f}",
             paper["seconds"]],
            ["seconds per 47.55 s clip, fast sampler + decode",
             f"{e['fast_total_seconds_per_47s_clip']:.2f}", EMPTY],
            ["peak memory", f"{e['peak_rss_mib']:.0f} MiB RSS"
             + (f", {e['peak_cuda_mib']:.0f} MiB CUDA" if "peak_cuda_mib" in e else ""), EMPTY],
            ["device", e["device"], "A100"]]
    return Table(["Table II", f"ours ({results['profile']})", "paper (SAMUeL)"], rows,
                 caption="Efficiency (paper Table II)", notes=[f"ours: {e['scaling']}"])


def table_i(results: Mapping) -> Table:
    """Paper Table I (AudioBox-Aesthetics) beside ours, or why ours is missing."""
    from ..aesthetics import PAPER_TABLE_I

    rows = [[f"{name} (paper)", *(f"{v[a]:.2f}" for a in AUDIOBOX_AXES)]
            for name, v in PAPER_TABLE_I.items()]
    a = results["audiobox"]
    notes = []
    if a.get("available"):
        for name in (*CONDITIONS, "real"):
            if isinstance(a.get(name), Mapping):
                rows.append([f"{name} (ours)", *(interval(a[name].get(k)) for k in AUDIOBOX_AXES)])
    else:
        rows.append(["SAMUeL (ours)", *[EMPTY] * len(AUDIOBOX_AXES)])
        notes.append(f"ours: not measured here ({a.get('reason')})")
    return Table(["Table I", *AUDIOBOX_AXES], rows, caption="AudioBox-Aesthetics, 1-10 (paper Table I)",
                 notes=notes)


def apa_table(results: Mapping) -> Table:
    """Accompaniment prompt adherence of the three conditions (:mod:`samuel.evaluate.apa`):
    1 for accompaniments that pair with their own vocal as the true ones do, 0.5 or below for
    re-paired ones (notebook 06, "Fit to the vocal")."""
    apa = results.get("apa") or {}
    rows = []
    for c in CONDITIONS:
        a = apa.get(c)
        if not a:
            continue
        ratio = a["fd_c_r"] / a["fd_r_rr"] if a.get("fd_r_rr") else None
        rows.append([c, _num(a["apa"]) if a.get("apa") is not None else EMPTY,
                     _num(ratio) if ratio is not None else EMPTY])
    return Table(["condition", "APA", "FD(C,R) / FD(R,R')"], rows,
                 caption="Accompaniment prompt adherence (Grachten & Nistal, 2025) on "
                         f"{apa.get('embedding', 'the offline features')}",
                 notes=["APA = 1/2 + (FD(C,R') - FD(C,R)) / (2 FD(R,R')), clipped to [0, 1]: R the true "
                        "(vocal, accompaniment) pairs, R' the same re-paired across songs, C the "
                        "(vocal, generated) pairs. A set far from both R and R' also scores about 1/2; "
                        "the last column says how far C is from R, in units of the R-R' distance."])


def ablation_table(ablation: Mapping) -> Table:
    """Notebook 05: the two readings of eq. 3, validation loss and fit per metric, and whether
    their intervals overlap."""
    names = list(ablation)
    rows = [["best validation loss", *(f"{ablation[n]['best_val_loss']:.4f}" for n in names), ""]]
    for m in METRICS:
        entries = [ablation[n]["fit"]["conditioned"].get(m) for n in names]
        same = None
        if len(entries) == 2 and all(e and e.get("lo") is not None for e in entries):
            same = overlap(*entries)
        rows.append([m, *(interval(e) for e in entries), mark(same)])
    return Table(["", *(f"mix={n}" for n in names), "intervals overlap"], rows,
                 caption="Eq. 3 as printed against the prose's reading (conditioned fit, mean [95 % interval])")


def ablation_claims(ablation: Mapping) -> dict:
    """Notebook 05's claims about the two mixes: which has the lower validation loss, and per
    fit metric whether their intervals overlap."""
    paper, rev = ablation["paper"], ablation["reversed"]
    return {"reversed_lower_val_loss": rev["best_val_loss"] < paper["best_val_loss"],
            **{f"overlap_{m}": bool(overlap(paper["fit"]["conditioned"][m], rev["fit"]["conditioned"][m]))
               for m in METRICS}}


def notebook_results(results: Mapping) -> dict:
    """What notebook 06 records (:func:`samuel.runs.record`): the claims and the means."""
    fit, s = results["fit"], results["samplers"]
    return {"n_clips": results["n_clips"], "beats_baselines_all": results["beats_baselines_all"],
            **{f"beats_baselines_{m}": results["beats_baselines"][m] for m in METRICS},
            **{f"{m}_conditioned": fit["conditioned"][m]["mean"] for m in METRICS},
            **{f"{m}_shuffled": fit["shuffled"][m]["mean"] for m in METRICS},
            "fast_equal_fit": s.get("equal_fit"), "fast_40x": s.get("at_least_40x_faster"),
            "audiobox_available": bool(results["audiobox"].get("available")),
            **{f"apa_{c}": (results.get("apa") or {}).get(c, {}).get("apa") for c in CONDITIONS}}


# --------------------------------------------------------------------------- notebook 05
SIGMA_COLUMNS = ("t", "x_mean", "x_std", "v_mean", "v_std")


def write_sigma_csv(rec: Mapping, path: str | os.PathLike) -> Path:
    """Notebook 05's σ record (:func:`samuel.analysis.record_sampling`) as ``sigma.csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(path, SIGMA_COLUMNS, list(zip(*(np.asarray(rec[k]).tolist() for k in SIGMA_COLUMNS))))
    return path


def sigma_claims(rec: Mapping, boundary: int, paper_claim: int = 600, within: int = 100) -> dict:
    """Notebook 05's claims on the σ record: sampling starts at 𝒩(0, I) (std within 0.05 of 1),
    leaves it before the last step, and does so within ``within`` steps of the paper's claim."""
    return {"starts_normal": bool(abs(float(rec["x_std"][0]) - 1) < 0.05),
            "leaves_normal": bool(boundary > 0),
            f"within_{within}_of_paper": bool(abs(boundary - paper_claim) <= within)}
