"""The whole book on the `smoke` profile: every notebook runs in order with papermill and the
HTML renders with its figures and audio players.

This is CI's check of notebooks 04-06: executing them on `demo` (two trainings, ~15 min)
does not fit CI's budget beside the rest, so CI re-executes 01-03 on `demo` under nbval
(see the Makefile's `test`) and runs all six here on `smoke`. The committed notebooks keep
their `demo` outputs. The numbers the smoke run records are checked against the committed
ones, `book/results/smoke.json` (samuel/reproduce.py; regenerate it with
`python -m samuel.reproduce commit --profile smoke --run-dir DIR` after a change that moves them).
"""
import json
import re
from pathlib import Path

import pytest

from samuel import book, reproduce


@pytest.mark.slow
def test_whole_book_runs_on_smoke_and_renders(tmp_path):
    summary = book.run("smoke", run_dir=tmp_path / "run", html=True, progress=False)
    assert list(summary["seconds"]) == list(book.NOTEBOOKS)
    html_dir = tmp_path / "run" / "book" / "site" / "_build" / "html"
    assert summary["html"] and (html_dir / "index.html").exists()
    page = (html_dir / "notebooks" / "06_evaluation.html").read_text()
    assert len(re.findall(r"<audio", page)) >= 4, "the evaluation page shows audio players"
    assert re.search(r'<img[^>]+src="[^"]*\.png"', page) or "data:image/png" in page
    for name in ("01_data_collection", "02_vae_encoding", "04_training", "05_sigma_vs_timestep"):
        assert (html_dir / "notebooks" / f"{name}.html").exists()
    # every notebook recorded its results, under the committed names, with the committed claims
    recorded = reproduce.recorded(tmp_path / "run")
    committed = reproduce.load_committed("smoke")["notebooks"]
    assert sorted(recorded) == sorted(Path(n).stem for n in book.NOTEBOOKS)
    for stem, results in recorded.items():
        assert set(results) == set(committed[stem]), f"{stem}: result names differ from book/results/smoke.json"
        claims = {k: v for k, v in committed[stem].items() if isinstance(v, bool)}
        assert {k: results[k] for k in claims} == claims, f"{stem}: a claim changed"
    # and every number within its tolerance (samuel/reproduce.py); the table names any mismatch
    mismatches = reproduce.check(tmp_path / "run", "smoke")
    assert mismatches == [], reproduce.format_mismatches(mismatches)
    # the machinery stays out of the reader's way: papermill's parameters cell is removed
    executed = tmp_path / "run" / "book" / "notebooks" / "03_model.ipynb"
    injected = [c for c in json.loads(executed.read_text())["cells"]
                if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"]
    page = (html_dir / "notebooks" / "03_model.html").read_text()
    assert "# Parameters" not in page and "google.colab" not in page and "NBVAL" not in page
    tables = (html_dir / "book" / "tables.html").read_text()
    assert "Table II" in tables and "<table" in tables


def test_side_by_side_only_on_a_multicore_cpu(monkeypatch, tmp_path):
    """The ablation's second training runs beside notebook 04 only on a CPU with two or more
    threads; with one thread (or on a GPU) notebook 05 trains it, as by hand."""
    from samuel import runs

    params = book.parameters("smoke", run_dir=tmp_path / "run")
    run = runs.run_paths("smoke", params["RUN_DIR"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert book.cpu_threads() == 1
    assert book.side_by_side(params, run) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert book.cpu_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert book.cpu_threads() >= 1


@pytest.mark.slow
def test_side_by_side_training_is_the_one_notebook_05_reuses(monkeypatch, tmp_path):
    """The subprocess trains exactly what notebook 05's mix_ablation would: afterwards
    train_once finds it finished (reused), with the reversed mix in its checkpoint."""
    from samuel import analysis, checkpoint, config, runs

    params = book.parameters("smoke", run_dir=tmp_path / "run")
    run = runs.run_paths("smoke", params["RUN_DIR"])
    cfg = config.load("smoke")
    from samuel.data import pipeline

    pipeline.build(cfg, out_dir=run.data)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    beside = book.side_by_side(params, run)
    assert beside is not None and beside.n_threads >= 1
    seconds = beside.wait()
    assert seconds > 0 and beside.proc.returncode == 0, beside.log.read_text()[-2000:]
    c, ablation = analysis.ablation_run(cfg, run, "reversed")
    assert checkpoint.load_meta(ablation.checkpoint)["config"]["model"]["mix"] == "reversed"
    assert runs.train_once(c, ablation)["reused"] is True
