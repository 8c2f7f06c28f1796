"""Where the book is published: one repository setting, and everything that names it.

The repository's address is written once, in ``pyproject.toml``::

    [project.urls]
    Repository = "https://github.com/OWNER/samuel"

and read here (:data:`REPO`, ``owner/name``). Everything that points at the repository is
made from it: the Colab badge of every notebook (:func:`badge_markdown`), the Colab install
cell (:func:`install_cell_source`), the Colab links of the book's pages (:func:`colab_url`),
and ``_config.yml``'s ``repository:`` fields and launch buttons. :func:`rewrite` rewrites them
all from the setting (``python -m samuel.site``, or ``samuel book links``), :func:`check`
lists any that disagree with it (``tests/test_site.py`` fails on one).

:data:`BRANCH` is the branch the book is published from (the repository's default branch);
it is not a setting of its own because Colab and pip follow the same branch.

Book: "Reproduce it" (the Colab links).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Optional

from . import paths

PYPROJECT = paths.ROOT / "pyproject.toml"
BRANCH = "main"
COLAB = "https://colab.research.google.com"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
# The tag that marks a notebook's Colab install cell (it is also removed from the HTML).
INSTALL_TAG = "colab-install"
NOTEBOOK_GLOB = "notebooks/*.ipynb"
PAGE_GLOB = "book/*.md"
CONFIG_FILE = "_config.yml"


def _repository_url(pyproject: Path = PYPROJECT) -> str:
    """``[project.urls] Repository`` of ``pyproject``; a clear error when it is missing."""
    import tomllib

    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{pyproject}: expected a readable TOML file, found {err}") from None
    url = data.get("project", {}).get("urls", {}).get("Repository")
    if not url:
        raise ValueError(f"{pyproject}: expected [project.urls] Repository = "
                         "\"https://github.com/OWNER/NAME\", found none")
    return str(url)


def repo_from_url(url: str) -> str:
    """``owner/name`` of a GitHub address (``https://github.com/owner/name[.git][/]``)."""
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", url.strip())
    if not m:
        raise ValueError(f"repository URL {url!r}: expected https://github.com/OWNER/NAME")
    return f"{m.group(1)}/{m.group(2)}"


REPO = repo_from_url(_repository_url())
REPOSITORY_URL = f"https://github.com/{REPO}"


def colab_url(notebook: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """The Colab address of a notebook of this repository (``notebooks/<name>``)."""
    return f"{COLAB}/github/{repo}/blob/{branch}/notebooks/{Path(notebook).name}"


def pip_spec(repo: str = REPO, branch: str = BRANCH) -> str:
    """What the Colab cell installs: the package straight from the repository."""
    return f"samuel @ git+https://github.com/{repo}.git@{branch}"


def badge_markdown(notebook: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """The "Open in Colab" badge of a notebook, as Markdown."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook, repo, branch)})"


def install_cell_source(repo: str = REPO, branch: str = BRANCH) -> str:
    """The source of every notebook's Colab install cell (it does nothing off Colab)."""
    return ("import sys\n\n"
            "if \"google.colab\" in sys.modules:  # on Colab: install the package; elsewhere nothing happens\n"
            f"    get_ipython().run_line_magic(\"pip\", \"install -q '{pip_spec(repo, branch)}'\")")


def config_fields(repo: str = REPO, branch: str = BRANCH) -> dict:
    """``_config.yml``'s fields that name the repository: ``{section: {key: value}}``."""
    return {"repository": {"url": f"https://github.com/{repo}", "path_to_book": "", "branch": branch},
            "launch_buttons": {"colab_url": COLAB, "notebook_interface": "classic"}}


# ----------------------------------------------------------------------------- machinery cells
# Jupyter Book 1.x cell tags that keep the machinery out of the reader's way, per kind of cell:
# papermill's copy of the parameters, the Colab install cell, the setup cell (imports, the
# configuration and run folder printed), the results cell (its code: the dict handed to
# `record`; its printed results stay). The `parameters` cell itself stays visible.
HIDING_TAGS = {"injected-parameters": "remove-cell", INSTALL_TAG: "remove-cell",
               "setup": "hide-cell", "results": "hide-input"}
NBVAL_TAGS = ("nbval-check-output", "nbval-ignore-output")  # nbval's markers, as cell tags


def hide_injected_parameters(path: str | Path) -> bool:
    """Tag papermill's ``injected-parameters`` cell of the notebook at ``path`` ``remove-cell``
    (papermill writes it with that one tag); True when the file was changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    changed = False
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and HIDING_TAGS["injected-parameters"] not in tags:
            tags.append(HIDING_TAGS["injected-parameters"])
            changed = True
    if changed:
        from .io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(_notebook_text(nb), encoding="utf-8")
    return changed


def machinery_problems(nb: dict, name: str) -> list[str]:
    """The machinery cells of ``nb`` that lack their hiding tag, and any nbval marker left as a
    comment where the reader would see it (``"<name>: cell <i>: ..."``)."""
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        tags = cell.get("metadata", {}).get("tags", [])
        for kind, hiding in HIDING_TAGS.items():
            if kind in tags and hiding not in tags:
                problems.append(f"{name}: cell {i} ({kind}): expected the tag {hiding!r}, found {tags}")
        if cell.get("cell_type") == "code":
            if re.search(r"^\s*#\s*NBVAL_", _source(cell), re.M):
                problems.append(f"{name}: cell {i}: expected nbval's marker as a tag "
                                f"({' or '.join(NBVAL_TAGS)}), found it as a comment")
    return problems


# ----------------------------------------------------------------------------- rewriting
_BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*?/notebooks/([\w.-]+\.ipynb)\)")
_COLAB_LINK_RE = re.compile(re.escape(COLAB) + r"/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/notebooks/([\w.-]+\.ipynb)")


def _install_cells(nb: dict) -> list[dict]:
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"
            and INSTALL_TAG in c.get("metadata", {}).get("tags", [])]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell: dict, text: str) -> None:
    lines = text.splitlines(keepends=True)
    cell["source"] = lines if isinstance(cell.get("source"), list) else text


def _notebook_text(nb: dict) -> str:
    """The notebook as ``nbformat`` writes it (what papermill and Jupyter write too)."""
    import nbformat

    return nbformat.writes(nbformat.from_dict(nb))


def rewrite_notebook(nb: dict, name: str, repo: str = REPO, branch: str = BRANCH) -> dict:
    """``nb`` (notebook JSON) with its badge, Colab links and install cell made from the setting."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = _source(cell)
            new = _BADGE_RE.sub(lambda m: badge_markdown(m.group(1), repo, branch), text)
            new = _COLAB_LINK_RE.sub(lambda m: colab_url(m.group(1), repo, branch), new)
            if new != text:
                _set_source(cell, new)
    for cell in _install_cells(nb):
        _set_source(cell, install_cell_source(repo, branch))
    return nb


def rewrite_page(text: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """A book page with its Colab links made from the setting."""
    return _COLAB_LINK_RE.sub(lambda m: colab_url(m.group(1), repo, branch), text)


def rewrite_config(text: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """``_config.yml`` with its ``repository:`` and ``launch_buttons:`` sections made from the
    setting (each section replaced as a block; added at the end when missing)."""
    for section, fields in config_fields(repo, branch).items():
        block = f"{section}:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fields.items())
        pattern = re.compile(rf"^{section}:\n(?:[ \t]+.*\n?)*", re.M)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + block
    return text


def _files(root: Path) -> tuple[list[Path], list[Path], Path]:
    return sorted(root.glob(NOTEBOOK_GLOB)), sorted(root.glob(PAGE_GLOB)), root / CONFIG_FILE


def rewrite(root: str | Path = paths.ROOT, repo: str = REPO, branch: str = BRANCH) -> list[Path]:
    """Rewrite every badge, Colab link, install cell and ``_config.yml`` field under ``root``
    from the setting; returns the files changed. Notebooks keep their outputs and metadata."""
    from .io import atomic_path

    root = Path(root)
    notebooks, pages, config = _files(root)
    changed = []

    def write(path: Path, old: str, new: str) -> None:
        if new != old:
            with atomic_path(path) as tmp:
                tmp.write_text(new, encoding="utf-8")
            changed.append(path)

    for path in notebooks:
        old = path.read_text(encoding="utf-8")
        nb = rewrite_notebook(json.loads(old), path.name, repo, branch)
        write(path, old, _notebook_text(nb) if json.loads(old) != nb else old)
    for path in pages:
        old = path.read_text(encoding="utf-8")
        write(path, old, rewrite_page(old, repo, branch))
    if config.exists():
        old = config.read_text(encoding="utf-8")
        write(config, old, rewrite_config(old, repo, branch))
    return changed


def check(root: str | Path = paths.ROOT, repo: str = REPO, branch: str = BRANCH) -> list[str]:
    """Every place under ``root`` that names the repository otherwise than the setting:
    ``"<file>: <what>: expected ..., found ..."`` (empty when all agree)."""
    root = Path(root)
    notebooks, pages, config = _files(root)
    problems = []
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = _source(nb["cells"][0]) if nb.get("cells") else ""
        if badge_markdown(path.name, repo, branch) not in first:
            found = _BADGE_RE.search(first)
            problems.append(f"{path.name}: Colab badge: expected {colab_url(path.name, repo, branch)}, "
                            f"found {found.group(0) if found else 'none in the first cell'}")
        cells = _install_cells(nb)
        if len(cells) != 1:
            problems.append(f"{path.name}: install cell: expected one cell tagged {INSTALL_TAG!r}, "
                            f"found {len(cells)}")
        elif _source(cells[0]) != install_cell_source(repo, branch):
            problems.append(f"{path.name}: install cell: expected pip {pip_spec(repo, branch)!r}, "
                            f"found {_source(cells[0])!r}")
        for cell in nb.get("cells", []):
            for m in _COLAB_LINK_RE.finditer(_source(cell)):
                if m.group(0) != colab_url(m.group(1), repo, branch):
                    problems.append(f"{path.name}: Colab link: expected "
                                    f"{colab_url(m.group(1), repo, branch)}, found {m.group(0)}")
    for path in pages:
        for m in _COLAB_LINK_RE.finditer(path.read_text(encoding="utf-8")):
            if m.group(0) != colab_url(m.group(1), repo, branch):
                problems.append(f"{path.relative_to(root)}: Colab link: expected "
                                f"{colab_url(m.group(1), repo, branch)}, found {m.group(0)}")
    text = config.read_text(encoding="utf-8") if config.exists() else ""
    if rewrite_config(text, repo, branch) != text:
        problems.append(f"{CONFIG_FILE}: repository/launch_buttons: expected "
                        f"{config_fields(repo, branch)}, found otherwise (run `samuel book links`)")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    """``samuel book links``: rewrite every link from the setting, then check them."""
    changed = rewrite()
    for path in changed:
        print(f"rewrote {path.relative_to(paths.ROOT)}")
    problems = check()
    for p in problems:
        print(p, file=sys.stderr)
    print(f"repository {REPOSITORY_URL} (branch {BRANCH}): {len(changed)} file(s) rewritten, "
          f"{len(problems)} disagreement(s) left")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
