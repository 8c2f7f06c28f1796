"""samuel/site.py: one repository setting, and every badge, link, install cell and _config.yml
field made from it; the notebooks' machinery cells carry the tags that hide them in the book
(book: "Reproduce it")."""
from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from samuel import book, paths, site


def test_every_link_agrees_with_the_setting():
    problems = site.check()
    assert problems == [], "\n".join(problems) + "\n(run `samuel book links`)"


def test_the_setting_is_pyprojects_repository_url():
    text = (paths.ROOT / "pyproject.toml").read_text()
    assert f'Repository = "https://github.com/{site.REPO}"' in text
    assert book.colab_url("03_model.ipynb") == site.colab_url("03_model.ipynb")
    assert book.pip_spec() == f"samuel @ git+https://github.com/{site.REPO}.git@{site.BRANCH}"


def test_repo_from_url_accepts_github_addresses_only():
    assert site.repo_from_url("https://github.com/a-b/c.d.git") == "a-b/c.d"
    assert site.repo_from_url("https://github.com/a/b/") == "a/b"
    with pytest.raises(ValueError, match="expected https://github.com/OWNER/NAME"):
        site.repo_from_url("https://gitlab.com/a/b")


def _copy_tree(tmp_path):
    for name in ("notebooks", "book"):
        shutil.copytree(paths.ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("results"))
    shutil.copyfile(paths.ROOT / "_config.yml", tmp_path / "_config.yml")
    return tmp_path


def test_rewrite_moves_every_link_to_another_repository(tmp_path):
    root = _copy_tree(tmp_path)
    changed = site.rewrite(root, repo="someone/fork", branch="dev")
    assert {p.name for p in changed} >= {*book.NOTEBOOKS, "reproduce.md", "_config.yml"}
    assert site.check(root, repo="someone/fork", branch="dev") == []
    stale = site.check(root)  # against the setting, every notebook and page now disagrees
    assert {p.split(":")[0] for p in stale} >= {*book.NOTEBOOKS, "book/reproduce.md", "_config.yml"}
    nb = json.loads((root / "notebooks" / "01_data_collection.ipynb").read_text())
    install = [c for c in nb["cells"] if site.INSTALL_TAG in c["metadata"].get("tags", [])]
    assert "git+https://github.com/someone/fork.git@dev" in "".join(install[0]["source"])
    assert "https://github.com/someone/fork" in (root / "_config.yml").read_text()
    # outputs and metadata survive the rewrite
    before = nbformat.read(str(paths.ROOT / "notebooks" / "01_data_collection.ipynb"), as_version=4)
    after = nbformat.read(str(root / "notebooks" / "01_data_collection.ipynb"), as_version=4)
    assert [c.get("outputs") for c in before.cells] == [c.get("outputs") for c in after.cells]
    assert site.rewrite(root, repo="someone/fork", branch="dev") == []  # idempotent


def test_check_names_a_wrong_badge(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "notebooks" / "02_vae_encoding.ipynb"
    path.write_text(path.read_text().replace(f"github/{site.REPO}/blob", "github/x/y/blob", 1))
    problems = site.check(root)
    assert any(p.startswith("02_vae_encoding.ipynb: Colab badge") for p in problems), problems


@pytest.fixture(params=book.NOTEBOOKS)
def notebook(request):
    return request.param, json.loads((paths.ROOT / "notebooks" / request.param).read_text())


def test_machinery_cells_carry_their_hiding_tags(notebook):
    """The Colab install cell and the setup cell once each, the results cell last; each with its
    hiding tag; papermill's copy of the parameters (when present) removed; nbval's markers as
    tags, never as comments the reader would see."""
    name, nb = notebook
    assert site.machinery_problems(nb, name) == []
    tagged = {kind: [i for i, c in enumerate(nb["cells"]) if kind in c["metadata"].get("tags", [])]
              for kind in site.HIDING_TAGS}
    assert len(tagged[site.INSTALL_TAG]) == 1 and len(tagged["setup"]) == 1, tagged
    assert tagged["results"] == [len(nb["cells"]) - 1]
    assert len(tagged["injected-parameters"]) <= 1
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and not any(t.startswith(("remove", "hide")) for t in params[0]["metadata"]["tags"])
    checked = [c for c in nb["cells"] if "nbval-check-output" in c["metadata"].get("tags", [])]
    assert checked and nb["cells"][-1] in checked  # what nbval compares: the results cell at least


def test_machinery_problems_finds_a_missing_tag_and_a_comment_marker():
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": [site.INSTALL_TAG]}, "source": "x = 1"},
                    {"cell_type": "code", "metadata": {"tags": []}, "source": "# NBVAL_CHECK_OUTPUT\nprint(1)"}]}
    problems = site.machinery_problems(nb, "x.ipynb")
    assert len(problems) == 2 and "remove-cell" in problems[0] and "as a comment" in problems[1]


def test_hide_injected_parameters_tags_papermills_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell('PROFILE = "smoke"')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), injected]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, str(path))
    assert site.hide_injected_parameters(path) is True
    tags = [c.metadata.get("tags", []) for c in nbformat.read(str(path), as_version=4).cells]
    assert tags == [[], ["injected-parameters", "remove-cell"]]
    assert site.hide_injected_parameters(path) is False
