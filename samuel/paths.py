"""Where things live: resolved from the package, never from the working directory.

Book: "Reproduce it" (where runs/ and data/ are); design §8.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (or install prefix)
DATA = ROOT / "data"  # small bundled inputs


def shown(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when inside it (outputs that read the same anywhere)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def runs_dir() -> Path:
    """Generated artefacts; git-ignored. ``SAMUEL_RUNS`` overrides."""
    return Path(os.environ.get("SAMUEL_RUNS", ROOT / "runs"))


def run_dir(profile: str) -> Path:
    """The default run folder of a profile: ``runs/<profile>``."""
    return runs_dir() / profile
