"""The book: its runner (samuel/book.py), the run folders the notebooks share (samuel/runs.py)
and the structure of the notebooks in notebooks/."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from samuel import book, paths, runs

NOTEBOOK_DIR = paths.ROOT / "notebooks"
PARAMETERS = ("PROFILE", "SEED", "RUN_DIR", "OVERRIDES")


def _notebook(name):
    return nbformat.read(str(NOTEBOOK_DIR / name), as_version=4)


def _code(nb):
    """The code cells, without the one papermill inserts when it executes a notebook."""
    return [c for c in nb.cells if c.cell_type == "code"
            and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.fixture(params=book.NOTEBOOKS)
def notebook(request):
    path = NOTEBOOK_DIR / request.param
    assert path.exists(), f"{path}: expected a notebook of the book, found none"
    return request.param, _notebook(request.param)


def test_every_notebook_of_the_toc_exists():
    toc = (paths.ROOT / "_toc.yml").read_text()
    for name in book.NOTEBOOKS:
        assert f"notebooks/{Path(name).stem}" in toc, f"_toc.yml: expected {name}"
        assert (NOTEBOOK_DIR / name).exists()


def test_title_and_colab_badge(notebook):
    name, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{name}: expected a title"
    assert book.colab_url(name) in first.source, f"{name}: expected its Colab badge"


def test_parameters_cell_holds_flat_literals(notebook):
    name, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    assert tagged[0] is _code(nb)[0], f"{name}: expected the parameters cell to be the first code cell"
    source = tagged[0].source
    for p in PARAMETERS:
        assert re.search(rf"^{p} = ", source, re.M), f"{name}: expected {p} in the parameters cell"
    assert re.search(r'^PROFILE = "demo"', source, re.M)
    assert re.search(r'^RUN_DIR = ""', source, re.M)
    namespace: dict = {}
    exec(source, namespace)  # literals only: runs without any import
    assert namespace["SEED"] == 0 and namespace["OVERRIDES"] == {}


def test_colab_cell_does_nothing_elsewhere(notebook):
    name, nb = notebook
    cell = _code(nb)[1]
    assert 'if "google.colab" in sys.modules' in cell.source, f"{name}: expected the Colab cell second"
    assert "pip" in cell.source and "git+https://github.com/" in cell.source


def test_config_is_loaded_from_the_parameters(notebook):
    name, nb = notebook
    assert any("config.load(PROFILE, seed=SEED, **OVERRIDES)" in c.source for c in _code(nb)), name


def test_last_cell_records_the_results(notebook):
    name, nb = notebook
    last = nb.cells[-1]
    assert last.cell_type == "code" and "runs.record(results, run, " in last.source, \
        f"{name}: expected the last cell to record its results"
    assert "nbval-check-output" in last.metadata.get("tags", []), \
        f"{name}: expected nbval to compare the recorded results"


def test_notebooks_read_runs_and_show_not_the_runner(notebook):
    """The notebooks import what they use (samuel.runs, samuel.show), never the runner that
    executes them."""
    name, nb = notebook
    for i, c in enumerate(_code(nb)):
        assert not re.search(r"(?<![\w.])book\.\w", c.source), f"{name}: cell {i} calls samuel.book"
        assert not re.search(r"^\s*from samuel import .*\bbook\b", c.source, re.M), \
            f"{name}: cell {i} imports samuel.book"
    setup = next(c.source for c in _code(nb) if "config.load(PROFILE" in c.source)
    assert re.search(r"^from samuel import config, runs, show$", setup, re.M), name


def test_cells_are_short(notebook):
    name, nb = notebook
    for i, c in enumerate(_code(nb)):
        lines = [ln for ln in c.source.splitlines() if ln.strip()]
        assert len(lines) <= 16, f"{name}: cell {i} has {len(lines)} lines; move code into the package"


def test_committed_notebooks_carry_their_demo_outputs(notebook):
    """Once executed with the demo profile, every code cell has run (nbval compares nothing
    in a cell whose execution_count is null)."""
    name, nb = notebook
    executed = nb.metadata.get("papermill", {}).get("parameters", {})
    if not executed:
        pytest.skip(f"{name}: not executed yet (run `samuel book run --profile demo`)")
    assert executed.get("PROFILE") == "demo", f"{name}: expected outputs of the demo profile"
    for i, c in enumerate(_code(nb)):
        assert c.execution_count is not None, f"{name}: code cell {i} was not executed"
        assert not any(o.output_type == "error" for o in c.outputs), f"{name}: cell {i} has an error"


# ----------------------------------------------------------------------------- the runner
def _broken_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('PROFILE = "demo"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError(f'broken on purpose in {PROFILE}')")]
    path = folder / "99_broken.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
def test_failure_names_the_notebook_and_the_cell(tmp_path):
    src = _broken_notebook(tmp_path)
    out = tmp_path / "out" / src.name
    with pytest.raises(book.NotebookFailed) as err:
        book.execute(src, out, {"PROFILE": "smoke"}, cwd=tmp_path, progress=False)
    message = str(err.value)
    assert "99_broken.ipynb" in message
    assert "cell 3" in message or "cell 2" in message  # papermill counts its injected cell
    assert "ValueError: broken on purpose in smoke" in message
    assert out.exists(), "the executed notebook, error included, is kept"


def test_failure_message_format():
    class Err(Exception):
        cell_index, exec_count, ename, evalue = 4, 3, "KeyError", "'x'"
        source = "# NBVAL_CHECK_OUTPUT\nprint(results['x'])"

    msg = book._failure_message("03_model.ipynb", Err(), Path("/tmp/o.ipynb"))
    assert msg.startswith("03_model.ipynb: cell 4 (execution count 3) failed with KeyError: 'x'")
    assert "print(results['x'])" in msg and "/tmp/o.ipynb" in msg


def test_select_notebooks_by_prefix():
    assert book._select(["03", "01_data_collection.ipynb"]) == ["03_model.ipynb", "01_data_collection.ipynb"]
    assert book._select(None) == list(book.NOTEBOOKS)
    with pytest.raises(ValueError, match="expected one of"):
        book._select(["9"])


def test_run_paths_follow_train(tmp_path):
    default = runs.run_paths("smoke")
    assert default.root == paths.run_dir("smoke") and default.checkpoint == default.root / "checkpoint"
    other = runs.run_paths("smoke", tmp_path)
    assert other.checkpoint == tmp_path / "train" / "checkpoint" and not other.default


def test_record_rounds_and_saves(tmp_path, capsys):
    out = runs.record({"a": 1.23456, "ok": True, "n": 3, "xs": [0.11111]}, tmp_path, "07_x.ipynb")
    assert out == {"a": 1.235, "ok": True, "n": 3, "xs": [0.111]}
    assert json.loads((tmp_path / "results" / "07_x.json").read_text()) == out
    assert "ok : True" in capsys.readouterr().out


def test_results_page_is_written(tmp_path):
    run = runs.run_paths("smoke", tmp_path)
    runs.record({"songs": 8}, run, "01_data_collection")
    page = book.write_results_page(run, tmp_path / "results.md", "smoke")
    text = page.read_text()
    assert text.startswith("# Results") and "| songs | 8 |" in text


def test_book_config_excludes_generated_folders():
    text = (paths.ROOT / "_config.yml").read_text()
    assert 'execute_notebooks: "off"' in text and "only_build_toc_files: true" in text
    for pattern in (".venv/*", "data/*", "tests/*", "samuel/*", "_build/*", "runs/*"):
        assert pattern in text
