"""Every committed number is checked: a run's recorded results against the committed ones.

    samuel book check [--profile demo] [--run-dir D]    # or: python -m samuel.reproduce check ...
    python -m samuel.reproduce commit --profile smoke --run-dir D   # write book/results/smoke.json

The last cell of every notebook saves its results (:func:`samuel.runs.record`) to
``<run>/results/<notebook>.json``. The committed ones live in ``book/results/<profile>.json``
(written by :func:`commit`, which ``samuel book run --profile demo`` calls when it publishes,
beside ``book/results.md``): ``{"profile", "package_version", "notebooks": {stem: results},
"evaluation": {...}}``, the evaluation being the part of ``results.json`` the tables page
shows. :func:`check` compares the two, result by result: booleans and strings equal, numbers
within the tolerance of their kind (:data:`TOLERANCE`), timings not at all (they are the
machine's, not the method's); a result missing on either side is a mismatch.

Book: "Reproduce it" (what still varies, and by how much).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from . import paths
from .io import read_json, write_json

COMMITTED_DIR = paths.ROOT / "book" / "results"

# What varies between two runs of the same profile, seed and machine, by kind of result. Each
# recorded number is rounded to 3 decimals by `record` (ROUNDING), so two runs that agree to
# rounding can differ by one unit in the last place.
ROUNDING = 0.001
# The spread measured between two runs from empty run folders (`samuel book run --profile P
# --run-dir <empty>` twice; compared with `spread`): the largest absolute difference of any
# result of the kind. smoke, 2026-12-02: two runs with the same thread count were equal in
# every result (training is deterministic on the CPU: samuel.train._deterministic; the
# evaluation and the analysis sample from seeded generators); one run on 1 thread against one
# on 2 threads (OMP_NUM_THREADS), our stand-in for another machine's rounding, differed by up to
# 0.011 in the evaluation's means (beat salience of the shuffled baseline) and 0.001 in the
# codec table, with every loss, boundary and boolean equal. Since `samuel book run` trains 04's
# model on 1 thread beside 05's (samuel.book.side_by_side), a run with that split against the
# earlier all-2-thread one differed by 0.038 in one mean (key agreement of 4 smoke clips, whose
# per-clip MIREX scores move in steps of 0.1 or more): the smoke fit spread is that. CI runs 2
# threads (so the side-by-side split), as the committed smoke results were made. demo: the entry.
MEASURED_SPREAD: dict[str, dict[str, Optional[float]]] = {
    "smoke": {"loss": 0.0, "fit": 0.038, "codec": 0.001, "boundary": 0.0, "exact": 0.0},
    # demo, 2026-12-02: the run committed before (2 threads, the previous kernels and decode)
    # against a fresh run from an empty runs/ (2 threads, today's model kernels, equal to the old
    # within 1e-5, and today's Griffin-Lim): every claim equal; losses up to 0.002, the
    # evaluation's means up to 0.046 (Fréchet distance of the shuffled baseline), codec 0.005,
    # the σ boundary 4 steps. An upper bound for two machines: it includes those code changes.
    "demo": {"loss": 0.002, "fit": 0.046, "codec": 0.005, "boundary": 4.0, "exact": 0.0},
}
SAFETY = 2.0  # a tolerance is twice the measured spread, and never below the rounding
# Kinds of result, by name (first match wins). "time": seconds and the device, which are the
# machine's and are not compared. "loss": training and validation losses (a sum over many
# float ops: the first thing to move if a kernel rounds differently). "fit": the evaluation's
# means (chroma, key, beat, frechet, fad) and APA, each over clips sampled from seeded noise.
# "codec": notebook 02's round-trip metrics. "boundary": notebook 05's σ boundary (a timestep:
# an integer that moves by whole steps when the sampled statistics do). Everything else is
# counting or closed-form arithmetic ("exact"): rounding only.
KINDS = (("time", re.compile(r"seconds|(^|_)device$|^device")),
         ("loss", re.compile(r"loss")),
         ("fit", re.compile(r"^(chroma|key|beat|frechet|fad|apa)_")),
         ("codec", re.compile(r"^mix_")),
         ("boundary", re.compile(r"^boundary_t$")),
         ("exact", re.compile(r"")))
IGNORED = ("profile",)  # the file's own label, not a result


def kind_of(name: str) -> str:
    """The kind of a recorded result (see :data:`KINDS`)."""
    return next(kind for kind, pattern in KINDS if pattern.search(name))


def tolerance(name: str, profile: str) -> Optional[float]:
    """The absolute tolerance of result ``name`` on ``profile``; None: not compared (a timing)."""
    kind = kind_of(name)
    if kind == "time":
        return None
    spread = MEASURED_SPREAD.get(profile, {}).get(kind)
    floor = 1.0 if kind == "boundary" else ROUNDING  # a timestep moves by whole steps
    return max(floor, SAFETY * spread) if spread else floor


# ----------------------------------------------------------------------------- the files
def committed_path(profile: str, folder: str | os.PathLike = COMMITTED_DIR) -> Path:
    return Path(folder) / f"{profile}.json"


def recorded(run_root: str | os.PathLike) -> dict:
    """``{notebook stem: results}`` of a run folder (``<run>/results/*.json``)."""
    folder = Path(run_root) / "results"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected the results of a book run (one JSON per "
                                "notebook), found no folder")
    return {p.stem: {k: v for k, v in read_json(p).items() if k not in IGNORED}
            for p in sorted(folder.glob("*.json"))}


EVALUATION_KEYS = ("profile", "n_clips", "n_songs", "clip_seconds", "sampler", "fit",
                   "beats_baselines", "beats_baselines_all", "efficiency", "audiobox", "table_i")


def compact_evaluation(results: Mapping) -> dict:
    """The part of an evaluation's ``results.json`` the tables page shows (no per-clip data)."""
    out = {k: results[k] for k in EVALUATION_KEYS if k in results}
    s = dict(results.get("samplers", {}))
    for name in ("fast", "ancestral"):
        if isinstance(s.get(name), Mapping):
            s[name] = {k: v for k, v in s[name].items() if k in ("name", "steps", "fit", "seconds_per_clip")}
    out["samplers"] = {k: v for k, v in s.items()
                       if k != "per_clip" and not (k == "clips" and not isinstance(v, int))}
    return out


def commit(run_root: str | os.PathLike, profile: str, out: str | os.PathLike | None = None) -> Path:
    """Write the committed results of a run: ``book/results/<profile>.json`` (or ``out``)."""
    from . import __version__

    run_root = Path(run_root)
    data: dict[str, Any] = {"profile": profile, "package_version": __version__,
                            "notebooks": recorded(run_root)}
    evaluation = run_root / "evaluation" / "results.json"
    if evaluation.exists():
        data["evaluation"] = compact_evaluation(read_json(evaluation))
    out = Path(out) if out else committed_path(profile)
    write_json(out, data)
    return out


def load_committed(profile: str, path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path else committed_path(profile)
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected the committed results of profile {profile!r} "
                                f"(python -m samuel.reproduce commit --profile {profile} --run-dir D), "
                                "found nothing")
    data = read_json(path)
    if not isinstance(data.get("notebooks"), dict):
        raise ValueError(f"{path}: expected {{'notebooks': {{notebook: results}}}}, found keys "
                         f"{sorted(data)}")
    return data


# ----------------------------------------------------------------------------- the check
def compare(name: str, ours: Any, theirs: Any, profile: str) -> Optional[str]:
    """Why ``ours`` (recorded) disagrees with ``theirs`` (committed), or None when they agree."""
    if isinstance(theirs, bool) or isinstance(ours, bool):
        return None if ours is theirs or ours == theirs and type(ours) is type(theirs) else "differs"
    tol = tolerance(name, profile)
    if tol is None:
        return None
    if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)):
        if math.isnan(float(theirs)) and math.isnan(float(ours)):
            return None
        diff = abs(float(ours) - float(theirs))
        return None if diff <= tol + 1e-12 else f"off by {diff:.4g} (tolerance {tol:g}, {kind_of(name)})"
    return None if ours == theirs else "differs"


def check(run_root: str | os.PathLike, profile: str,
          committed: str | os.PathLike | Mapping | None = None) -> list[dict]:
    """The mismatches of a run against the committed results: ``[{notebook, result, recorded,
    committed, why}]`` (empty when everything agrees)."""
    data = committed if isinstance(committed, Mapping) else load_committed(profile, committed)
    theirs_all, ours_all = data["notebooks"], recorded(run_root)
    out = []
    for nb in sorted(set(theirs_all) | set(ours_all)):
        theirs, ours = theirs_all.get(nb), ours_all.get(nb)
        if theirs is None or ours is None:
            out.append({"notebook": nb, "result": "(all)", "recorded": "present" if ours else "missing",
                        "committed": "present" if theirs else "missing", "why": "notebook missing"})
            continue
        for key in sorted(set(theirs) | set(ours)):
            if key in IGNORED:
                continue
            if key not in ours or key not in theirs:
                out.append({"notebook": nb, "result": key, "recorded": ours.get(key, "missing"),
                            "committed": theirs.get(key, "missing"), "why": "result missing"})
                continue
            why = compare(key, ours[key], theirs[key], profile)
            if why:
                out.append({"notebook": nb, "result": key, "recorded": ours[key],
                            "committed": theirs[key], "why": why})
    return out


def spread(run_a: str | os.PathLike, run_b: str | os.PathLike) -> dict:
    """The largest absolute difference per kind between two run folders' numeric results, and
    the results that differ otherwise (booleans, strings): what :data:`MEASURED_SPREAD` holds."""
    a, b = recorded(run_a), recorded(run_b)
    largest: dict[str, float] = {}
    other = []
    for nb in sorted(set(a) & set(b)):
        for key in sorted(set(a[nb]) & set(b[nb])):
            x, y, kind = a[nb][key], b[nb][key], kind_of(key)
            if kind == "time":
                continue
            if (isinstance(x, (int, float)) and isinstance(y, (int, float))
                    and not isinstance(x, bool) and not isinstance(y, bool)):
                largest[kind] = max(largest.get(kind, 0.0), abs(float(x) - float(y)))
            elif x != y:
                other.append(f"{nb}.{key}: {x} vs {y}")
    return {"spread": largest, "differ": other}


def format_mismatches(mismatches: list[dict]) -> str:
    if not mismatches:
        return "every recorded result agrees with the committed one"
    from .evaluate.report import Table

    return str(Table(["notebook", "result", "recorded", "committed", "why"],
                     [[m["notebook"], m["result"], m["recorded"], m["committed"], m["why"]]
                      for m in mismatches], caption=f"{len(mismatches)} mismatch(es)"))


# ----------------------------------------------------------------------------- the tables page
TABLES_PAGE = paths.ROOT / "book" / "tables.md"
PAPER_COMMAND = ("`samuel book run --profile paper --popdb DIR --vae DIR` on a GPU (AudioBox-"
                 "Aesthetics from the hub, or `samuel evaluate --audiobox PATH`), then "
                 "`python -m samuel.reproduce commit --profile paper`")


def tables_page(folder: str | os.PathLike = COMMITTED_DIR) -> str:
    """``book/tables.md``: the paper's Table I and Table II beside ours, from the committed
    results of each profile in ``folder`` (``demo.json``; ``paper.json`` where a GPU run made
    one). A cell no committed run fills shows — and the command that fills it."""
    from .aesthetics import PAPER_TABLE_I
    from .evaluate.conditions import AUDIOBOX_AXES
    from .evaluate.report import EMPTY, PAPER_TABLE_II, Table, interval

    runs = {p: read_json(committed_path(p, folder)) for p in ("demo", "paper")
            if committed_path(p, folder).exists()}
    ev = {p: r.get("evaluation", {}) for p, r in runs.items()}
    lines = ["# Paper tables beside ours", "",
             "The paper's two tables with this reproduction's numbers beside them: the `demo` "
             "profile's from the committed run (`book/results/demo.json`, written by "
             "`samuel book run --profile demo`), the `paper` profile's where a GPU run has been "
             f"committed. An empty cell (—) is one no committed run fills; {PAPER_COMMAND} "
             "fills the `paper` rows. The fit to the vocal, which the paper does not measure, "
             "is in {doc}`../notebooks/06_evaluation`; every recorded number is on the results page.", "",
             "## Table I: AudioBox-Aesthetics", ""]
    rows = [[name, "paper (10 tracks)", *(f"{v[a]:.2f}" for a in AUDIOBOX_AXES)]
            for name, v in PAPER_TABLE_I.items()]
    notes = []
    for profile in ("demo", "paper"):
        a = ev.get(profile, {}).get("audiobox", {})
        conds = [c for c in ("conditioned", "real") if isinstance(a.get(c), Mapping)] if a.get("available") else []
        for c in conds or ["conditioned"]:
            label = "SAMUeL" if c == "conditioned" else "true accompaniment"
            cells = [interval(a[c].get(k)) for k in AUDIOBOX_AXES] if conds else [EMPTY] * len(AUDIOBOX_AXES)
            rows.append([f"{label} (ours)", f"`{profile}`", *cells])
        if not conds:
            notes.append(f"`{profile}`: " + (f"not measured: {a.get('reason')}" if a.get("reason")
                                             else f"no committed run; {PAPER_COMMAND}"
                                             if profile == "paper" else "no committed run"))
    lines += [Table(["source", "from", *AUDIOBOX_AXES], rows).markdown(), "", *[f"* {n}" for n in notes], ""]
    lines += ["## Table II: efficiency", ""]
    rows = [[name, "paper (A100)", v["parameters"], v["seconds"], EMPTY]
            for name, v in PAPER_TABLE_II.items()]
    for profile in ("demo", "paper"):
        e = ev.get(profile, {}).get("efficiency")
        if e:
            anc = e.get("ancestral_seconds_per_47s_clip")
            rows.append(["SAMUeL (ours)", f"`{profile}`, {e['device']}", f"{e['parameters']:,}",
                         EMPTY if anc is None else f"{anc:.2f}",
                         f"{e['fast_total_seconds_per_47s_clip']:.2f}"])
        else:
            rows.append(["SAMUeL (ours)", f"`{profile}`", EMPTY, EMPTY, EMPTY])
    lines += [Table(["model", "from", "parameters", "seconds per 47.55 s clip (800 steps)",
                     "seconds, fast sampler + decode"], rows).markdown(), "",
              "* The paper's seconds are generation with its 800-step sampler; ours are measured "
              "on short clips and scaled to 47.55 s (the `demo` model has 128-frame chunks and "
              "about 2 M parameters, so its row is not the paper's model: the `paper` row is).",
              f"* `paper`: {'committed' if 'paper' in runs else 'no committed run; ' + PAPER_COMMAND}.", ""]
    return "\n".join(lines)


def write_tables_page(out: str | os.PathLike = TABLES_PAGE,
                      folder: str | os.PathLike = COMMITTED_DIR) -> Path:
    from .io import atomic_path

    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(tables_page(folder), encoding="utf-8")
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="samuel book check", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="action")
    for action in ("check", "commit", "spread"):
        p = sub.add_parser(action)
        p.add_argument("--profile", default="demo")
        p.add_argument("--run-dir", default="", help="default runs/<profile>")
        if action == "check":
            p.add_argument("--committed", default="", help="default book/results/<profile>.json")
        if action == "spread":
            p.add_argument("other", help="a second run folder of the same profile")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("check", "commit", "spread", "-h", "--help"):
        argv = ["check", *argv]
    args = ap.parse_args(argv)
    root = Path(args.run_dir) if args.run_dir else paths.run_dir(args.profile)
    if args.action == "commit":
        print(f"wrote {commit(root, args.profile)}")
        return 0
    if args.action == "spread":
        res = spread(root, args.other)
        print(res)
        return 0
    mismatches = check(root, args.profile, args.committed or None)
    print(format_mismatches(mismatches))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
