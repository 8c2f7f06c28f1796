"""The book: execute the notebooks in order with papermill, then build the HTML (Jupyter Book 1.x).

    samuel book run --profile demo          # or: make book
    samuel book run --profile paper --songlist CSV | --popdb DIR [--vae DIR] [--device D] [--set K=V]
    python -c "import samuel.book as b; b.run('smoke', html=False)"

Where things go:

* Each notebook is executed, with ``PROFILE`` / ``SEED`` / ``RUN_DIR`` / ``OVERRIDES`` /
  ``SONGLIST`` / ``POPDB`` injected into its ``parameters`` cell (:func:`parameters`), from
  ``notebooks/`` into ``<run>/book/notebooks/`` (``<run>`` is ``runs/<profile>`` or ``run_dir``);
  the kernel runs in ``notebooks/``.
* The data of a run comes from the offline corpus, a song list (``SONGLIST``) or the published
  POPDB (``POPDB``); :mod:`samuel.runs` lets every notebook read the three alike and
  :mod:`samuel.show` displays them (book: "Reproduce it"; rehearsed by ``tests/test_rehearsal.py``).
* The book reads ``notebooks/`` directly (``_toc.yml``). With the ``demo`` profile and the default
  run folder, the executed notebooks are copied back over ``notebooks/`` (the committed notebooks
  carry the demo outputs), ``book/results.md`` is rewritten from the run's results, and the HTML
  is built at the repository root: ``_build/html/index.html``.
* Any other profile (or run folder) leaves ``notebooks/`` alone: a copy of the book (``_config.yml``,
  ``_toc.yml``, ``book/``, the executed notebooks) is assembled in ``<run>/book/site/`` and built
  there: ``<run>/book/site/_build/html/index.html``.

A failing cell stops the run with one message naming the notebook, the cell and the error
(:class:`NotebookFailed`); the executed notebook, error included, is kept for inspection.

Each notebook's last cell calls :func:`samuel.runs.record`, which prints its key results rounded
(what nbval compares) and saves them to ``<run>/results/<notebook>.json``; the results page is
written from those files (:func:`write_results_page`).

Book: "Reproduce it" (running the whole book).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

from . import paths
from .io import read_json, write_json
from .runs import RunPaths, run_paths
# The repository the Colab cells install from and the badges open: one setting, pyproject.toml's
# [project.urls] Repository, read by samuel.site (which rewrites every link: `samuel book links`).
from .site import BRANCH, REPO, colab_url, pip_spec  # noqa: F401

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
KERNEL = "python3"


class NotebookFailed(RuntimeError):
    """A notebook of the book failed; the message names the notebook, the cell and the error."""


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
    from .site import hide_injected_parameters

    hide_injected_parameters(output)  # the book shows the parameters cell once, not papermill's copy
    return time.perf_counter() - t0


def run(profile: str = "demo", run_dir: str | os.PathLike | None = None, html: bool = True,
        notebooks: Optional[Sequence[str]] = None, seed: int = 0, overrides: Optional[dict] = None,
        progress: bool = True, songlist: str | os.PathLike | None = None,
        popdb: str | os.PathLike | None = None, vae: str | os.PathLike | None = None,
        device: Optional[str] = None) -> dict:
    """Execute the book's notebooks in order with ``profile``, then build the HTML.

    Args:
        profile: ``smoke`` / ``demo`` / ``paper`` (injected as ``PROFILE``).
        run_dir: the run folder (injected as ``RUN_DIR``; default ``runs/<profile>``).
        html: build the HTML with ``jupyter-book build`` (execution off) afterwards.
        notebooks: names (or prefixes such as ``"03"``) of the notebooks to run; default all.
        seed, overrides: injected as ``SEED`` and ``OVERRIDES`` (configuration overrides,
            e.g. ``{"train__max_steps": 100}``; see :func:`samuel.config.load`).
        songlist: a song list CSV to collect the data from (injected as ``SONGLIST``).
        popdb: a folder holding the published POPDB's two arrays (injected as ``POPDB``).
        vae: a local SAO VAE folder: the override ``data__vae``.
        device: where torch runs (``auto``, ``cpu``, ``cuda``...): the override ``device``.

    A profile without an offline corpus (``paper``) needs ``songlist`` or ``popdb``; paths
    are made absolute, since the notebooks run in ``notebooks/``.

    Returns:
        ``dict(seconds={notebook: s}, side_by_side={what: s}, total_seconds, executed=folder,
        html=index or None)``; ``side_by_side`` holds the training run beside notebook 04
        (:func:`side_by_side`), whose seconds overlap 04's.
    """
    t_start = time.perf_counter()
    params = parameters(profile, run_dir=run_dir, seed=seed, overrides=overrides,
                        songlist=songlist, popdb=popdb, vae=vae, device=device)
    run = run_paths(profile, params["RUN_DIR"])
    names = _select(notebooks)
    out_dir = run.root / "book" / "notebooks"
    publish = (profile == "demo" and run.default and not params["OVERRIDES"] and int(seed) == 0
               and not params["SONGLIST"] and not params["POPDB"])
    seconds: dict[str, float] = {}
    print(f"book: {len(names)} notebook(s), profile {profile!r}, run folder {run.root}")
    beside, side = None, {}
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", flush=True)
        if name == TRAINING and ABLATION in names:
            beside = side_by_side(params, run)
        if name == ABLATION and beside is not None:
            side[f"{ABLATION_MODEL} (beside {Path(TRAINING).stem[:2]})"] = beside.wait()
        try:
            with beside.threads() if (beside is not None and name == TRAINING) else contextlib.nullcontext():
                seconds[name] = execute(NOTEBOOK_DIR / name, out_dir / name, params,
                                        cwd=NOTEBOOK_DIR, progress=progress)
        except NotebookFailed as err:
            print(f"book: stopped. {err}", file=sys.stderr, flush=True)
            write_json(run.root / "book" / "timings.json", {"seconds": seconds, "failed": name})
            raise
        finally:
            if beside is not None and sys.exc_info()[0] is not None:
                beside.stop()  # the book stopped (a failure, Ctrl-C): so does the training beside
        print(f"      {name}: {seconds[name]:.1f} s", flush=True)
        if publish:
            shutil.copyfile(out_dir / name, NOTEBOOK_DIR / name)
    summary = {"profile": profile, "seconds": {k: round(v, 1) for k, v in seconds.items()},
               "side_by_side": side, "executed": str(out_dir), "html": None}
    if html:
        site = paths.ROOT if publish else _stage_site(run, out_dir)
        write_results_page(run, site / "book" / "results.md", profile)
        from . import reproduce

        # the committed numbers (what `samuel book check` compares with) and the tables page
        reproduce.commit(run.root, profile, site / "book" / "results" / f"{profile}.json")
        reproduce.write_tables_page(site / "book" / "tables.md", site / "book" / "results")
        summary["html"] = str(build_html(site))
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(run.root / "book" / "timings.json", summary)
    _print_summary(summary)
    return summary


# ----------------------------------------------------------------------------- side by side
TRAINING, ABLATION = "04_training.ipynb", "05_sigma_vs_timestep.ipynb"
ABLATION_MODEL = "05's reversed-mix model"


class SideBySide:
    """The eq. 3 ablation's second model, trained in a subprocess while notebook 04 trains the
    main one, each on half the CPU threads (:func:`side_by_side`)."""

    def __init__(self, proc: subprocess.Popen, threads: int, log: Path):
        self.proc, self.n_threads, self.log, self.t0 = proc, threads, log, time.perf_counter()

    @contextlib.contextmanager
    def threads(self):
        """Notebook 04's kernel (launched inside) gets the other half of the threads."""
        before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.n_threads)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before

    def wait(self) -> float:
        """Wait for the subprocess; its seconds from start to end. A failed one is reported in
        one line and left to notebook 05, which trains (or resumes) the model itself."""
        code = self.proc.wait()
        seconds = round(time.perf_counter() - self.t0, 1)
        if code != 0:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] if self.log.exists() else []
            print(f"      the ablation training beside 04 failed (exit status {code}: "
                  f"{tail[0] if tail else 'no output'}; log {self.log}); notebook 05 trains it",
                  flush=True)
        else:
            print(f"      ablation model trained beside 04 in {seconds:.1f} s", flush=True)
        return seconds

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def cpu_threads() -> int:
    """The threads a run may use: ``OMP_NUM_THREADS`` where set, else the CPU count."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, os.cpu_count() or 1)


def side_by_side(params: dict, run: RunPaths) -> Optional[SideBySide]:
    """Start the eq. 3 ablation's second training beside notebook 04, or return None.

    On a CPU the demo model's training step hardly gets faster from one thread to two (0.26 s
    and 0.24 s at batch 16, ``samuel bench model --profile demo``), so two trainings of one
    thread each, side by side, take about the time of one: the book's two trainings (04's main
    model and 05's reversed-mix model, trained alike) cost one. Only where torch runs on the
    CPU with at least two threads; on a GPU (and on one thread) notebook 05 trains it after 04,
    as a reader running the notebooks by hand gets. The subprocess writes the same run folder
    05 reads (:func:`samuel.analysis.train_ablation`, via :func:`samuel.runs.train_once`: a
    finished run is reused, an interrupted one resumed), logging to ``<run>/ablation/train.log``.
    """
    from . import config, devices

    cfg = config.load(params["PROFILE"], seed=params["SEED"], **params["OVERRIDES"])
    threads = cpu_threads()
    if threads < 2 or devices.resolve(cfg.device) != "cpu":
        return None
    log = run.root / "ablation" / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    code = ("import json, sys\n"
            "from samuel import analysis, config\n"
            "p = json.loads(sys.argv[1])\n"
            "cfg = config.load(p['PROFILE'], seed=p['SEED'], **p['OVERRIDES'])\n"
            "analysis.train_ablation(cfg, p['RUN_DIR'] or None)\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads // 2)}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(params)], cwd=NOTEBOOK_DIR,
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    print(f"      the ablation's second model trains beside 04 ({threads // 2} + "
          f"{threads - threads // 2} threads; log {log})", flush=True)
    return SideBySide(proc, threads - threads // 2, log)


def parameters(profile: str, run_dir: str | os.PathLike | None = None, seed: int = 0,
               overrides: Optional[dict] = None, songlist: str | os.PathLike | None = None,
               popdb: str | os.PathLike | None = None, vae: str | os.PathLike | None = None,
               device: Optional[str] = None) -> dict:
    """The papermill parameters of every notebook: ``PROFILE, SEED, RUN_DIR, OVERRIDES,
    SONGLIST, POPDB``, checked before anything runs.

    ``vae`` becomes the override ``data__vae`` and ``device`` the override ``device``; the
    configuration they make is loaded once here, so a bad override fails now, not in a
    notebook. Paths (run folder, song list, POPDB, VAE) are made absolute.

    Raises:
        ValueError: both ``songlist`` and ``popdb``, or neither for a profile without an
            offline corpus; FileNotFoundError: a song list or POPDB folder that is not there.
    """
    from . import config

    overrides = dict(overrides or {})
    if vae:
        overrides["data__vae"] = str(Path(vae).expanduser().resolve())
    if device:
        overrides["device"] = str(device)
    cfg = config.load(profile, seed=seed, **overrides)
    if songlist and popdb:
        raise ValueError(f"songlist {songlist} and popdb {popdb}: expected one data source, "
                         "found both")
    if songlist and not Path(songlist).is_file():
        raise FileNotFoundError(f"{songlist}: expected a song list CSV (title, artist), found "
                                f"{'a folder' if Path(songlist).exists() else 'nothing'}")
    if popdb and not Path(popdb).is_dir():
        raise FileNotFoundError(f"{popdb}: expected a folder holding latent_vocal.npy and "
                                f"latent_accomp.npy, found {'a file' if Path(popdb).exists() else 'nothing'}")
    if not (songlist or popdb) and cfg.data.corpus_songs <= 0:
        raise ValueError(f"profile {profile!r} has no offline corpus (data.corpus_songs is "
                         f"{cfg.data.corpus_songs}): expected a song list (--songlist CSV) or "
                         "the published POPDB (--popdb DIR), found neither")

    def absolute(path) -> str:
        return str(Path(path).expanduser().resolve()) if path else ""

    return {"PROFILE": profile, "SEED": int(seed), "RUN_DIR": absolute(run_dir),
            "OVERRIDES": overrides, "SONGLIST": absolute(songlist), "POPDB": absolute(popdb)}


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
    for name, s in summary.get("side_by_side", {}).items():
        print(f"  {name:<30} {s:7.1f}   (at the same time as 04, not added)")
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
            lines += ["## Evaluation (design §7)", "", "```text", table.rstrip(), "```", ""]
        except Exception as err:  # the page is still written without the table
            lines += [f"(evaluation table unavailable: {type(err).__name__}: {err})", ""]
    if not results:
        lines += ["No results yet: run `samuel book run --profile demo`."]
    for stem, values in results.items():
        lines += [f"## {stem.replace('_', ' ', 1)}", "", "| result | value |", "|---|---|"]
        for k, v in values.items():
            if k == "profile":  # the heading's profile, not a result
                continue
            v = json.dumps(v) if isinstance(v, (list, dict)) else v
            lines.append(f"| {k} | {str(v).replace('|', '/')} |")
        lines.append("")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
