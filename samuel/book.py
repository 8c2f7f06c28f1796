"""The book: execute the notebooks in order with papermill, then build the HTML (Jupyter Book 1.x).

    samuel book run --profile demo          # or: make book
    python -c "import samuel.book as b; b.run('smoke', html=False)"

Where things go:

* Each notebook is executed, with ``PROFILE`` / ``SEED`` / ``RUN_DIR`` / ``OVERRIDES`` injected
  into its ``parameters`` cell, from ``notebooks/`` into ``<run>/book/notebooks/`` (``<run>`` is
  ``runs/<profile>`` or ``run_dir``); the kernel runs in ``notebooks/``.
* The book reads ``notebooks/`` directly (``_toc.yml``). With the ``demo`` profile and the default
  run folder, the executed notebooks are copied back over ``notebooks/`` (the committed notebooks
  carry the demo outputs), ``book/results.md`` is rewritten from the run's results, and the HTML
  is built at the repository root: ``_build/html/index.html``.
* Any other profile (or run folder) leaves ``notebooks/`` alone: a copy of the book (``_config.yml``,
  ``_toc.yml``, ``book/``, the executed notebooks) is assembled in ``<run>/book/site/`` and built
  there: ``<run>/book/site/_build/html/index.html``.

A failing cell stops the run with one message naming the notebook, the cell and the error
(:class:`NotebookFailed`); the executed notebook, error included, is kept for inspection.

Each notebook's last cell calls :func:`record`, which prints its key results rounded (what nbval
compares) and saves them to ``<run>/results/<notebook>.json``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from . import paths
from .io import read_json, write_json

# tqdm.auto asks for ipywidgets in a kernel; the book shows no progress widgets, so the warning is noise
warnings.filterwarnings("ignore", message="IProgress not found")

NOTEBOOKS = (
    "01_data_collection.ipynb",
    "02_vae_encoding.ipynb",
    "03_model.ipynb",
    "04_training.ipynb",
    "05_sigma_vs_timestep.ipynb",
    "06_evaluation.ipynb",
)
NOTEBOOK_DIR = paths.ROOT / "notebooks"
BOOK_FILES = ("_config.yml", "_toc.yml", "book")
# The public repository the Colab cells install from and the badges open. Replace OWNER when the
# repository is published; everything Colab-related reads these two constants.
REPO = "OWNER/samuel"
BRANCH = "main"
KERNEL = "python3"


class NotebookFailed(RuntimeError):
    """A notebook of the book failed; the message names the notebook, the cell and the error."""


# ----------------------------------------------------------------------------- run folders
@dataclass(frozen=True)
class RunPaths:
    """The folders of one run; every notebook finds its inputs and outputs here.

    ``checkpoint`` follows :func:`samuel.train.train`: ``runs/<profile>/checkpoint`` for the
    default run folder, ``<run>/train/checkpoint`` for any other.
    """

    root: Path
    data: Path
    popdb: Path
    train: Path
    checkpoint: Path
    evaluation: Path
    analysis: Path
    results: Path
    default: bool


def run_paths(profile: str, run_dir: str | os.PathLike | None = "") -> RunPaths:
    """The :class:`RunPaths` of ``run_dir`` (empty or None: ``samuel.paths.run_dir(profile)``)."""
    default_root = paths.run_dir(profile)
    root = Path(run_dir) if run_dir else default_root
    default = root.resolve() == default_root.resolve()
    train = root / "train"
    return RunPaths(root=root, data=root / "data", popdb=root / "data" / "popdb", train=train,
                    checkpoint=root / "checkpoint" if default else train / "checkpoint",
                    evaluation=root / "evaluation", analysis=root / "analysis",
                    results=root / "results", default=default)


# ----------------------------------------------------------------------------- results cells
def rounded(obj: Any, digits: int = 3) -> Any:
    """``obj`` with every float rounded to ``digits`` decimals (NaN/inf kept as strings)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return round(obj, digits) if math.isfinite(obj) else str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return rounded(obj.item(), digits)
    if isinstance(obj, dict):
        return {str(k): rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return str(obj)


def record(results: dict, run: RunPaths | str | os.PathLike, notebook: str, digits: int = 3) -> dict:
    """Print ``results`` rounded, one ``key: value`` per line, and save them as JSON.

    Written to ``<run>/results/<notebook>.json`` (``notebook`` without ``.ipynb``). Returns the
    rounded dict. Book: the last cell of every notebook.
    """
    folder = run.results if isinstance(run, RunPaths) else Path(run) / "results"
    out = rounded(results, digits)
    write_json(folder / f"{Path(notebook).stem}.json", out)
    width = max((len(k) for k in out), default=0)
    for k, v in out.items():
        print(f"{k.ljust(width)} : {json.dumps(v) if isinstance(v, (list, dict)) else v}")
    return out


def colab_url(notebook: str) -> str:
    """The Colab address of a notebook of this repository."""
    return (f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/notebooks/"
            f"{Path(notebook).name}")


def pip_spec() -> str:
    """What the Colab cell installs: the package straight from the repository."""
    return f"samuel @ git+https://github.com/{REPO}.git@{BRANCH}"


def shown(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when inside it (outputs that read the same anywhere)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(paths.ROOT.resolve()))
    except ValueError:
        return str(path)


def config_lines(cfg, sections: Sequence[str] = ("model", "diffusion", "data", "train")) -> str:
    """The configuration as one ``section: field=value, ...`` line per section (notebook setup)."""
    d = cfg.to_dict()
    lines = [f"profile: {cfg.profile}, seed: {cfg.seed}"]
    for section in sections:
        lines.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in d[section].items()))
    return "\n".join(lines)


def show_players(audios: dict, sr: int = 44100, seconds: float = 6.0) -> None:
    """One labelled audio player per entry of ``audios`` (``{label: [C, N]}``), ``seconds`` long."""
    from IPython.display import HTML, display

    from .audio import player

    for label, audio in audios.items():
        display(HTML(f"<b>{label}</b>"))
        display(player(audio, sr, seconds=seconds))


# ----------------------------------------------------------------------------- skip work done
def same_config(folder: str | os.PathLike, cfg) -> bool:
    """True if the checkpoint in ``folder`` holds weights trained with exactly ``cfg``."""
    from . import checkpoint as ckpt

    folder = Path(folder)
    if not (folder / ckpt.MODEL_FILE).exists():
        return False
    try:
        return ckpt.load_meta(folder).get("config") == json.loads(cfg.to_json())
    except Exception:
        return False


def train_once(cfg, run: RunPaths, progress: bool = False) -> dict:
    """Train ``cfg`` unless ``run.checkpoint`` already holds a finished run of the same config.

    A run of the same config that was interrupted is resumed (exactly, see
    :func:`samuel.train.train`); a checkpoint of another config is trained over. Returns the
    training summary, with ``"reused": True`` when nothing was trained. Book: notebook 04.
    """
    from .train import train

    summary_path = run.train / "summary.json"
    if same_config(run.checkpoint, cfg) and summary_path.exists():
        summary = read_json(summary_path)
        if summary.get("steps", 0) >= cfg.train.max_steps or summary.get("stopped_early"):
            return {**summary, "reused": True}
    from . import checkpoint as ckpt

    resume = same_config(run.checkpoint, cfg) and (run.checkpoint / ckpt.STATE_FILE).exists()
    summary = train(cfg, data_dir=run.popdb, run_dir=None if run.default else run.train,
                    resume=resume, progress=progress)
    return {**summary, "reused": False}


def evaluate_once(cfg, run: RunPaths, progress: bool = False, **kwargs) -> dict:
    """:func:`samuel.evaluate.evaluate` on ``run``, unless its ``results.json`` is newer than the
    checkpoint and was made with the same arguments. Book: notebook 06."""
    from . import checkpoint as ckpt
    from . import evaluate

    results_path = run.evaluation / "results.json"
    stamp_path = run.evaluation / "book_arguments.json"
    model = run.checkpoint / ckpt.MODEL_FILE
    arguments = {"config": json.loads(cfg.to_json()), **{k: repr(v) for k, v in kwargs.items()}}
    if (results_path.exists() and model.exists() and stamp_path.exists()
            and results_path.stat().st_mtime > model.stat().st_mtime
            and read_json(stamp_path) == arguments):
        return read_json(results_path)
    results = evaluate.evaluate(cfg, checkpoint=run.checkpoint, data_dir=run.data,
                                out_dir=run.evaluation, progress=progress, **kwargs)
    write_json(stamp_path, arguments)
    return results


# ----------------------------------------------------------------------------- the runner
def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise FileNotFoundError("jupyter-book: expected the command (pip install 'jupyter-book>=1,<2'), "
                            "found none")


def _failure_message(notebook: str, err, output: Path) -> str:
    cell = getattr(err, "cell_index", None)
    count = getattr(err, "exec_count", None)
    source = (getattr(err, "source", "") or "").strip().splitlines()
    first = next((line for line in source if line.strip() and not line.startswith("#")), "")
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    where = f"cell {cell}" if cell is not None else "a cell"
    if count is not None:
        where += f" (execution count {count})"
    return (f"{notebook}: {where} failed with {ename}: {str(evalue).strip()[:300]}"
            + (f"\n  the cell starts: {first[:120]}" if first else "")
            + f"\n  executed notebook with the error: {output}")


def execute(notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict,
            cwd: str | os.PathLike | None = None, progress: bool = True,
            kernel: str = KERNEL) -> float:
    """Execute one notebook with papermill; return its seconds. Raises :class:`NotebookFailed`."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            cwd=str(cwd or notebook.parent), progress_bar=progress,
                            log_output=False, report_mode=False)
    except PapermillExecutionError as err:
        raise NotebookFailed(_failure_message(notebook.name, err, output)) from None
    return time.perf_counter() - t0


def run(profile: str = "demo", run_dir: str | os.PathLike | None = None, html: bool = True,
        notebooks: Optional[Sequence[str]] = None, seed: int = 0, overrides: Optional[dict] = None,
        progress: bool = True) -> dict:
    """Execute the book's notebooks in order with ``profile``, then build the HTML.

    Args:
        profile: ``smoke`` / ``demo`` / ``paper`` (injected as ``PROFILE``).
        run_dir: the run folder (injected as ``RUN_DIR``; default ``runs/<profile>``).
        html: build the HTML with ``jupyter-book build`` (execution off) afterwards.
        notebooks: names (or prefixes such as ``"03"``) of the notebooks to run; default all.
        seed, overrides: injected as ``SEED`` and ``OVERRIDES``.

    Returns:
        ``dict(seconds={notebook: s}, total_seconds, executed=folder, html=index or None)``.
    """
    t_start = time.perf_counter()
    run = run_paths(profile, run_dir)
    names = _select(notebooks)
    out_dir = run.root / "book" / "notebooks"
    params = {"PROFILE": profile, "SEED": int(seed), "RUN_DIR": str(run_dir) if run_dir else "",
              "OVERRIDES": dict(overrides or {})}
    publish = profile == "demo" and run.default and not overrides and int(seed) == 0
    seconds: dict[str, float] = {}
    print(f"book: {len(names)} notebook(s), profile {profile!r}, run folder {run.root}")
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", flush=True)
        try:
            seconds[name] = execute(NOTEBOOK_DIR / name, out_dir / name, params,
                                    cwd=NOTEBOOK_DIR, progress=progress)
        except NotebookFailed as err:
            print(f"book: stopped. {err}", file=sys.stderr, flush=True)
            write_json(run.root / "book" / "timings.json", {"seconds": seconds, "failed": name})
            raise
        print(f"      {name}: {seconds[name]:.1f} s", flush=True)
        if publish:
            shutil.copyfile(out_dir / name, NOTEBOOK_DIR / name)
    summary = {"profile": profile, "seconds": {k: round(v, 1) for k, v in seconds.items()},
               "executed": str(out_dir), "html": None}
    if html:
        site = paths.ROOT if publish else _stage_site(run, out_dir)
        write_results_page(run, site / "book" / "results.md", profile)
        summary["html"] = str(build_html(site))
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(run.root / "book" / "timings.json", summary)
    _print_summary(summary)
    return summary


def _select(notebooks: Optional[Iterable[str]]) -> list[str]:
    if not notebooks:
        return list(NOTEBOOKS)
    names = []
    for want in notebooks:
        match = [n for n in NOTEBOOKS if n == want or n.startswith(str(want))]
        if len(match) != 1:
            raise ValueError(f"notebook {want!r}: expected one of {', '.join(NOTEBOOKS)}, "
                             f"found {len(match)} matches")
        names.append(match[0])
    return names


def _stage_site(run: RunPaths, executed: Path) -> Path:
    """A copy of the book in ``<run>/book/site`` whose notebooks are this run's."""
    site = run.root / "book" / "site"
    for name in BOOK_FILES:
        src, dst = paths.ROOT / name, site / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    (site / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in NOTEBOOKS:  # notebooks not executed in this run keep their committed version
        src = executed / name if (executed / name).exists() else NOTEBOOK_DIR / name
        if src.exists():
            shutil.copyfile(src, site / "notebooks" / name)
    return site


def build_html(site: str | os.PathLike = paths.ROOT) -> Path:
    """``jupyter-book build <site>`` (execution off, see ``_config.yml``); returns index.html."""
    site = Path(site)
    t0 = time.perf_counter()
    proc = subprocess.run(_jupyter_book() + ["build", str(site)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"jupyter-book build {site}: exit status {proc.returncode}\n{tail}")
    index = site / "_build" / "html" / "index.html"
    print(f"html: built in {time.perf_counter() - t0:.1f} s")
    return index


def _print_summary(summary: dict) -> None:
    print("\nnotebook                         seconds")
    for name, s in summary["seconds"].items():
        print(f"  {name:<30} {s:7.1f}")
    print(f"  {'total (with the HTML build)':<30} {summary['total_seconds']:7.1f}")
    if summary.get("html"):
        index = Path(summary["html"])
        print(f"\nthe book: {index}\nopen it: xdg-open {index}   (or open file://{index.resolve()} "
              "in a browser)")


# ----------------------------------------------------------------------------- results page
def write_results_page(run: RunPaths, out: str | os.PathLike, profile: str) -> Path:
    """Write ``book/results.md`` from the run's saved results (the evaluation when present)."""
    from . import __version__

    results = {}
    if run.results.is_dir():
        for path in sorted(run.results.glob("*.json")):
            results[path.stem] = read_json(path)
    lines = ["# Results", "",
             f"The numbers of the last `samuel book run --profile {profile}` (package "
             f"{__version__}), collected from the results cell at the end of each notebook. "
             "The figures, tables and audio are in the notebooks themselves; the evaluation "
             "in detail is {doc}`../notebooks/06_evaluation`.", ""]
    evaluation = run.evaluation / "results.json"
    if evaluation.exists():
        try:
            from . import evaluate

            table = evaluate.format_table(read_json(evaluation))
            lines += ["## Evaluation (SPEC §7)", "", "```text", table.rstrip(), "```", ""]
        except Exception as err:  # the page is still written without the table
            lines += [f"(evaluation table unavailable: {type(err).__name__}: {err})", ""]
    if not results:
        lines += ["No results yet: run `samuel book run --profile demo`."]
    for stem, values in results.items():
        lines += [f"## {stem.replace('_', ' ', 1)}", "", "| result | value |", "|---|---|"]
        for k, v in values.items():
            v = json.dumps(v) if isinstance(v, (list, dict)) else v
            lines.append(f"| {k} | {str(v).replace('|', '/')} |")
        lines.append("")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
