"""The whole book on the `smoke` profile: every notebook runs in order with papermill and the
HTML renders with its figures and audio players.

This is CI's check of notebooks 04-06: executing them on `demo` (two trainings, ~15 min)
does not fit CI's budget beside the rest, so CI re-executes 01-03 on `demo` under nbval
(see the Makefile's `test`) and runs all six here on `smoke`. The committed notebooks keep
their `demo` outputs.
"""
import re

import pytest

from samuel import book


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
    results = (tmp_path / "run" / "results")
    assert sorted(p.name for p in results.glob("*.json"))  # each notebook recorded its results
