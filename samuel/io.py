"""Atomic writes (a temp file in the same folder, then ``os.replace``) and JSON values.

A run killed at any moment leaves either the old file or the new one, never half of one; the
file gets the mode any new file would (the umask's), not the temp file's private 0600.

:func:`to_jsonable` is the package's one JSON sanitiser: :func:`write_json` writes what it
returns, as strict JSON (NaN and infinities become ``null``).

Book: design §2 (every step resumable: atomic writes).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give the result the umask's usual mode
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically, through :func:`to_jsonable`
    (numpy values become Python ones, NaN and infinities ``null``).

    Raises:
        TypeError: ``obj`` holds a value JSON has no form for (named in the message).
    """
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=False)
    write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def to_jsonable(obj: Any, nonfinite: Any = None, digits: int | None = None,
                default: Callable[[Any], Any] | None = None) -> Any:
    """``obj`` made of plain JSON values: the package's one JSON sanitiser.

    Mappings become dicts with ``str`` keys; lists and tuples lists; numpy booleans, integers
    and floats Python ones; numpy or torch arrays (``[...]`` or 0-d) nested lists or scalars;
    paths strings. A NaN or infinite float becomes ``nonfinite`` (``None``: JSON ``null``; a
    callable is called with the float, e.g. ``str`` gives ``"nan"``).

    Args:
        obj: the value to convert (not changed).
        nonfinite: what NaN and ±inf become.
        digits: round every finite float to this many decimals (None: keep it exact).
        default: what to do with any other value (e.g. ``str``); None raises.

    Raises:
        TypeError: a value of another type, without ``default``.
    """
    def conv(o: Any) -> Any:
        if o is None or isinstance(o, str):
            return o
        if isinstance(o, (bool, np.bool_)):
            return bool(o)
        if isinstance(o, (int, np.integer)):
            return int(o)
        if isinstance(o, (float, np.floating)):
            if not math.isfinite(o):
                return nonfinite(float(o)) if callable(nonfinite) else nonfinite
            if digits is not None:  # a Python float rounds as Python does, numpy's as numpy does
                o = round(o if isinstance(o, float) else float(o), digits)
            return float(o)
        if isinstance(o, Mapping):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        if hasattr(o, "tolist") and hasattr(o, "ndim"):  # numpy / torch arrays and 0-d scalars
            return conv(o.tolist())
        if default is not None:
            return default(o)
        raise TypeError(f"not JSON-serialisable: {type(o).__name__} ({o!r:.80})")

    return conv(obj)
