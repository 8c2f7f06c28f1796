"""Every reference in the project points at something that exists here.

Scanned: ``samuel/**/*.py``, ``notebooks/*.ipynb`` (cell sources; outputs too for the forbidden
names), ``book/*.md``, ``README.md``, ``Makefile``, ``tests/*.py`` (but this file, whose synthetic
trees hold one mistake of each kind) and ``data/*.{md,py}``. A
problem is reported as ``<file>[ cell N]: <what>``:

* (a) names of files outside the repository (the design notes this project was started from);
* (b) ``design §N`` whose section N is not in ``book/design.md`` (and ``design: <title>`` whose
  titled section is not there);
* (c) ``{doc}`` and ``{ref}`` targets and markdown links to local files that do not exist;
* (d) mentions of repository paths (``book/<name>.md``, ``notebooks/<name>.ipynb``,
  ``samuel/<module>.py``, ``tests/…``, ``data/…``) that do not exist.

And each module under ``samuel/`` says in its docstring where the book explains it
(``book: notebook 03``, ``book: design §5``, ``book: "Reproduce it"``, ...), naming a notebook or
a book page that exists. The checker is a plain function of a root folder, tested on a small
synthetic tree with one mistake of each kind.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from samuel import paths

ROOT = paths.ROOT
# built from parts, so that this file does not contain (and trip over) the names it forbids
FORBIDDEN = ("SPEC" + " §", "SPEC" + ".md", "TOOLING" + ".md")

SECTION_HEADING = re.compile(r"^##\s+(\d+)\.\s+(.+?)\s*$", re.M)  # "## 5. Diffusion and training"
NAMED_HEADING = re.compile(r"^##\s+([^\d\s].*?)\s*$", re.M)  # "## Measured facts"
LABEL = re.compile(r"^\(([\w.:-]+)\)=\s*$", re.M)  # MyST target "(design-5)="
DESIGN_SECTION = re.compile(r"\bdesign §(\d+)((?:\s*(?:[-–,]|and|or|to)\s*§?\d+)*)")
DESIGN_TITLE = re.compile(r"\bdesign: ([a-z][a-z ]*[a-z])")
ROLE = re.compile(r"\{(doc|ref)\}`([^`]+)`")
MD_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w/.<>{}-])((?:samuel|tests|notebooks|book|data)/[\w./-]*?"
                       r"\.(?:py|md|ipynb|csv|wav|flac|yml|cfg))\b")
NUMBER = re.compile(r"\d+")


@dataclass
class Text:
    """One scanned piece of text: a file, or one notebook cell."""

    where: str  # "book/intro.md" or "notebooks/01_x.ipynb cell 3"
    text: str
    base: Path  # the folder relative links resolve from
    markdown: bool  # markdown links are checked only here (``a[i](x)`` is Python)
    source: bool = True  # False: a notebook output, checked for forbidden names only


def _cell_text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


SELF = Path(__file__).name  # this file: its synthetic trees are full of deliberate dangling references


def scanned_files(root: Path) -> list[Path]:
    files = sorted((root / "samuel").rglob("*.py"))
    files += sorted((root / "notebooks").glob("*.ipynb"))
    files += sorted((root / "book").glob("*.md"))
    files += [p for p in (root / "README.md", root / "Makefile") if p.exists()]
    files += sorted(p for p in (root / "tests").glob("*.py") if p.name != SELF)
    files += sorted((root / "data").glob("*.md")) + sorted((root / "data").glob("*.py"))
    return files


def texts(root: Path) -> list[Text]:
    out = []
    for path in scanned_files(root):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text(encoding="utf-8"))
            for i, cell in enumerate(nb.get("cells", [])):
                where = f"{rel} cell {i}"
                out.append(Text(where, _cell_text(cell.get("source")), path.parent,
                                cell.get("cell_type") == "markdown"))
                for o in cell.get("outputs", []):
                    shown = _cell_text(o.get("text")) + "".join(
                        _cell_text(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
                    out.append(Text(where + " output", shown, path.parent, False, source=False))
        else:
            out.append(Text(rel, path.read_text(encoding="utf-8"), path.parent, path.suffix == ".md"))
    return out


@dataclass
class Design:
    """What ``book/design.md`` defines: numbered sections, titled sections, labels."""

    numbers: set
    titles: set  # lower-case section titles, numbered ones without their number
    labels: list  # MyST labels in order


def design(root: Path) -> Design:
    path = root / "book" / "design.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    numbered = SECTION_HEADING.findall(text)
    titles = {t.lower() for _, t in numbered} | {t.lower() for t in NAMED_HEADING.findall(text)}
    return Design({int(n) for n, _ in numbered}, titles, LABEL.findall(text))


def labels(root: Path) -> set:
    """Every MyST label defined in a book page or a notebook's markdown."""
    found = set()
    for t in texts(root):
        if t.markdown:
            found |= set(LABEL.findall(t.text))
    return found


def _design_title_ok(phrase: str, d: Design) -> bool:
    words = phrase.split()
    return any(" ".join(words[:n]) in d.titles for n in range(1, len(words) + 1))


def _doc_exists(target: str, base: Path, root: Path) -> bool:
    target = target.split("#")[0]
    path = (root / target.lstrip("/")) if target.startswith("/") else (base / target)
    return any(p.is_file() for p in (path, path.with_name(path.name + ".md"),
                                     path.with_name(path.name + ".ipynb")))


def reference_problems(root: Path) -> list[str]:
    """All dangling references under ``root`` (a repository laid out like this one)."""
    d = design(root)
    known_labels = labels(root)
    problems = []
    for t in texts(root):
        for name in FORBIDDEN:
            if name in t.text:
                problems.append(f"{t.where}: mentions {name!r}, a file outside the repository")
        if not t.source:
            continue
        for m in DESIGN_SECTION.finditer(t.text):
            for n in [m.group(1)] + NUMBER.findall(m.group(2)):
                if int(n) not in d.numbers:
                    problems.append(f"{t.where}: 'design §{n}': expected one of the sections "
                                    f"{sorted(d.numbers)} of book/design.md, found none numbered {n}")
        for m in DESIGN_TITLE.finditer(t.text):
            if not _design_title_ok(m.group(1), d):
                problems.append(f"{t.where}: 'design: {m.group(1)}': expected a section of that "
                                "title in book/design.md, found none")
        for role, body in ROLE.findall(t.text):
            target = re.sub(r"^.*<(.+)>\s*$", r"\1", body).strip()
            if role == "doc" and not _doc_exists(target, t.base, root):
                problems.append(f"{t.where}: {{doc}}`{body}`: expected a page at {target}, found none")
            if role == "ref" and target not in known_labels:
                problems.append(f"{t.where}: {{ref}}`{body}`: expected a label ({target})= in a "
                                "book page or notebook, found none")
        if t.markdown:
            for target in MD_LINK.findall(t.text):
                if re.match(r"^(?:[a-z][a-z0-9+.-]*:|#)", target, re.I):  # URLs, anchors
                    continue
                local = target.split("#")[0]
                path = (root / local.lstrip("/")) if local.startswith("/") else (t.base / local)
                if not path.exists():
                    problems.append(f"{t.where}: link ({target}): expected a file at "
                                    f"{path.relative_to(root) if path.is_relative_to(root) else path}, "
                                    "found none")
        for mention in REPO_PATH.findall(t.text):
            if not (root / mention).exists():
                problems.append(f"{t.where}: mentions {mention}, which does not exist")
    return problems


# --------------------------------------------------------------------------- module docstrings
BOOK_MENTION = re.compile(r"(?<!the )\bbook:\s*(.+?)(?:\n\s*\n|\Z)", re.I | re.S)  # not "The book: …"
NOTEBOOK_NUMBERS = re.compile(r"\bnotebooks?\s+(\d{1,2}(?:\s*(?:,|and|-|–|to)\s*\d{1,2})*)", re.I)
QUOTED = re.compile(r"[\"“]([^\"”\n]+)[\"”]")


def book_pages(root: Path) -> dict:
    """``{stem: lower-case title}`` of the book's own pages (``book/*.md``)."""
    pages = {}
    for p in sorted((root / "book").glob("*.md")):
        m = re.search(r"^#\s+(.+?)\s*$", p.read_text(encoding="utf-8"), re.M)
        pages[p.stem] = m.group(1).lower() if m else ""
    return pages


def notebook_numbers(root: Path) -> set:
    return {int(p.name[:2]) for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")}


def docstring_problem(module: Path, root: Path) -> str | None:
    """Why ``module``'s docstring does not say where the book explains it, or None."""
    rel = module.relative_to(root).as_posix()
    doc = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8"))) or ""
    spans = BOOK_MENTION.findall(doc)
    if not spans:
        return f"{rel}: expected a 'book: …' line naming a notebook or a book page, found none"
    pages, numbers, d = book_pages(root), notebook_numbers(root), design(root)
    found = False
    for span in spans:
        for group in NOTEBOOK_NUMBERS.findall(span):
            for n in NUMBER.findall(group):
                if int(n) not in numbers:
                    return f"{rel}: 'book: notebook {n}': no notebooks/{int(n):02d}_*.ipynb"
                found = True
        for n in re.findall(r"\bdesign §(\d+)", span):
            if int(n) not in d.numbers:
                return f"{rel}: 'book: design §{n}': no such section in book/design.md"
            found = True
        if any(re.search(rf"\b{re.escape(stem)}\b", span, re.I) for stem in pages):
            found = True
        if any(len(q) > 3 and title.startswith(q.lower()) for q in QUOTED.findall(span)
               for title in pages.values()):  # a page's title, or its first words
            found = True
    if not found:
        return (f"{rel}: 'book: {spans[0].strip()[:60]}': expected a notebook number or a book page "
                f"({', '.join(sorted(pages))}), found neither")
    return None


def docstring_problems(root: Path) -> list[str]:
    return [p for m in sorted((root / "samuel").rglob("*.py")) if (p := docstring_problem(m, root))]


# --------------------------------------------------------------------------- the repository


def test_no_dangling_references():
    problems = reference_problems(ROOT)
    assert not problems, f"{len(problems)} dangling references:\n" + "\n".join(problems)


def test_every_module_names_where_the_book_explains_it():
    problems = docstring_problems(ROOT)
    assert not problems, f"{len(problems)} modules:\n" + "\n".join(problems)


def test_design_page_has_the_eight_stages_labelled_in_order():
    d = design(ROOT)
    assert d.numbers == set(range(1, 9)), sorted(d.numbers)
    text = (ROOT / "book" / "design.md").read_text(encoding="utf-8")
    for n in range(1, 9):  # each label directly above its heading, so {ref}`design-N` lands there
        assert re.search(rf"^\(design-{n}\)=\n## {n}\. ", text, re.M), f"design §{n}: label"
    assert [lab for lab in d.labels if re.fullmatch(r"design-\d", lab)] == \
        [f"design-{n}" for n in range(1, 9)]
    assert "measured facts" in d.titles and "module map" in d.titles


def test_design_page_is_in_the_table_of_contents():
    assert re.search(r"^\s*- file: book/design\s*$", (ROOT / "_toc.yml").read_text(), re.M)


def test_module_map_lists_every_module():
    text = (ROOT / "book" / "design.md").read_text(encoding="utf-8")
    table = text.split("## Module map", 1)[1]
    listed = set(re.findall(r"^\| `(samuel/[\w/]+\.py)` \|", table, re.M))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "samuel").rglob("*.py")}
    assert modules - listed == set(), "modules missing from design.md's module map"
    assert listed - modules == set(), "module map lists modules that do not exist"


# --------------------------------------------------------------------------- the checker itself


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _notebook(cells) -> str:
    return json.dumps({"cells": [{"cell_type": kind, "source": src, "metadata": {}, **(
        {"outputs": [{"output_type": "stream", "name": "stdout", "text": out}]} if out else {})}
        for kind, src, out in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def tree(tmp_path):
    """A tiny clean repository: a design page with sections 1-2, two pages, one notebook."""
    _write(tmp_path, "book/design.md", "# How the paper maps to the code\n\n(design-1)=\n"
           "## 1. The task\n\n(design-2)=\n## 2. Data\n\n## Measured facts\n\nfacts\n")
    _write(tmp_path, "book/intro.md", "# Intro\n\nSee {doc}`design`, {doc}`Data <../notebooks/"
           "01_data>`, {ref}`design-2`, [facts](design.md#measured-facts), design §1, design §1-§2, "
           "design: measured facts, https://example.org/x.md, book/intro.md, notebooks/01_data.ipynb.\n")
    _write(tmp_path, "book/reproduce.md", "# Reproduce it\n\n`samuel/core.py`\n")
    _write(tmp_path, "notebooks/01_data.ipynb", _notebook([
        ("markdown", "# 1. Data\n\nOn to {doc}`../book/reproduce`.", None),
        ("code", "x = fns[0](1)  # design §2\n", "ok\n")]))
    _write(tmp_path, "samuel/core.py", '"""Core.\n\nBook: notebook 01, "The corpus".\n"""\n')
    _write(tmp_path, "samuel/cli.py", '"""CLI. book: "Reproduce it"."""\n')
    _write(tmp_path, "samuel/sub/deep.py", '"""Deep.\n\nbook: design §2 (data).\n"""\n')
    _write(tmp_path, "README.md", "# R\n\n[reproduce](book/reproduce.md)\n")
    return tmp_path


def test_checker_passes_a_clean_tree(tree):
    assert reference_problems(tree) == []
    assert docstring_problems(tree) == []


@pytest.mark.parametrize("rel, text, expected", [
    ("book/a.md", "From " + FORBIDDEN[0] + "5.", "a file outside the repository"),
    ("samuel/x.py", '"""X. book: notebook 01."""\n# see ' + FORBIDDEN[2] + "\n", FORBIDDEN[2]),
    ("tests/test_x.py", "# " + FORBIDDEN[1] + "\n", FORBIDDEN[1]),
    ("book/a.md", "see design §" + "3 and design §1", "'design §3'"),
    ("book/a.md", "design §1-§" + "4", "'design §4'"),
    ("book/a.md", "design: " + "module map", "'design: module map'"),
    ("book/a.md", "{doc}" + "`../notebooks/02_model`", "expected a page at ../notebooks/02_model"),
    ("book/a.md", "{ref}" + "`the map <design-9>`", "expected a label (design-9)="),
    ("book/a.md", "[x](" + "missing.md)", "link (missing.md)"),
    ("README.md", "see book/" + "ghost.md", "mentions book/ghost.md"),
    ("samuel/x.py", '"""X. book: notebook 01."""\n# notebooks/' + "09_x.ipynb\n",
     "mentions notebooks/09_x.ipynb"),
    ("Makefile", "run: samuel/" + "gone.py\n", "mentions samuel/gone.py"),
])
def test_checker_finds_each_kind_of_dangling_reference(tree, rel, text, expected):
    _write(tree, rel, text)
    problems = reference_problems(tree)
    assert any(expected in p and p.startswith(rel) for p in problems), problems


def test_checker_reads_notebook_cells_and_outputs(tree):
    _write(tree, "notebooks/02_more.ipynb", _notebook([
        ("markdown", "# 2\n\n[x](" + "nope.md)", None),
        ("code", "print(1)", "from " + FORBIDDEN[0] + "2\n")]))
    problems = reference_problems(tree)
    assert any(p.startswith("notebooks/02_more.ipynb cell 0: link (nope.md)") for p in problems)
    assert any(p.startswith("notebooks/02_more.ipynb cell 1 output: mentions") for p in problems)


def test_markdown_links_are_not_looked_for_in_python(tree):
    _write(tree, "samuel/y.py", '"""Y. book: notebook 01."""\nz = table[key](' + "missing.md)\n")
    assert reference_problems(tree) == []


@pytest.mark.parametrize("doc, expected", [
    ("Core, explained nowhere.", "expected a 'book: …' line"),
    ("Core.\n\nbook: notebook " + "07.", "'book: notebook 07': no notebooks/07_*.ipynb"),
    ("Core.\n\nbook: notebooks 01 and " + "05.", "'book: notebook 05'"),
    ("Core.\n\nbook: design §" + "6.", "'book: design §6'"),
    ("Core.\n\nbook: the closing page.", "found neither"),
])
def test_docstring_check_finds_missing_or_wrong_book_mentions(tree, doc, expected):
    _write(tree, "samuel/core.py", f'"""{doc}\n"""\n')
    problems = docstring_problems(tree)
    assert len(problems) == 1 and problems[0].startswith("samuel/core.py: ") \
        and expected in problems[0], problems


# --------------------------------------------------------------------------- layering
RUNNER = "samuel.book"  # executes the notebooks: the top of the package, imported by the CLI only
RUNNER_IMPORTERS = {"samuel/cli.py", "samuel/book.py"}


def _imported_modules(module: Path, root: Path) -> set:
    """Every module ``module`` imports (absolute dotted names, relative imports resolved)."""
    rel = module.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from
    found = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            found.add(stem)
            found |= {f"{stem}.{a.name}" for a in node.names}
    return found


def runner_importers(root: Path) -> list[str]:
    """The modules under ``samuel/`` other than the CLI that import the notebook runner."""
    return [rel for m in sorted((root / "samuel").rglob("*.py"))
            if (rel := m.relative_to(root).as_posix()) not in RUNNER_IMPORTERS
            and any(name == RUNNER or name.startswith(RUNNER + ".")
                    for name in _imported_modules(m, root))]


def test_only_the_cli_imports_the_notebook_runner():
    assert runner_importers(ROOT) == [], "import samuel.runs / samuel.show instead of samuel.book"


@pytest.mark.parametrize("rel, source", [
    ("samuel/analysis.py", "from .book import run_paths\n"),
    ("samuel/analysis.py", "def f():\n    from . import book\n"),
    ("samuel/sub/deep.py", "from .. import book\n"),
    ("samuel/sub/deep.py", "from ..book import train_once\n"),
    ("samuel/core.py", "import samuel.book as b\n"),
    ("samuel/core.py", "from samuel import config, book\n"),
])
def test_layering_check_finds_an_import_of_the_runner(tree, rel, source):
    assert runner_importers(tree) == []
    _write(tree, rel, '"""M. book: notebook 01."""\n' + source)
    assert runner_importers(tree) == [rel]


def test_layering_check_lets_the_cli_and_lookalikes_through(tree):
    _write(tree, "samuel/cli.py", '"""CLI. book: "Reproduce it"."""\nfrom . import book\n')
    _write(tree, "samuel/core.py", '"""C. book: notebook 01."""\nfrom . import runs, show\n'
           "from .bookkeeping import x\nimport samuel.books\n")
    _write(tree, "samuel/sub/deep.py", '"""D. book: design §2."""\nfrom . import book\n')  # samuel.sub.book
    assert runner_importers(tree) == []
