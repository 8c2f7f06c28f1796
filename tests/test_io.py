"""Tests for samuel.io: atomic writes."""
def test_atomic_writes_get_the_umask_mode_not_the_temp_files(tmp_path):
    import os

    from samuel.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    import pytest

    from samuel.io import atomic_path, write_json

    write_json(tmp_path / "x.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "x.json").read_text().strip().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_to_jsonable_is_the_one_sanitiser():
    import math
    from pathlib import Path

    import numpy as np
    import pytest
    import torch

    from samuel.io import to_jsonable

    obj = {1: (np.float32(0.5), np.int64(3), np.bool_(True)), "nan": float("nan"),
           "inf": np.float64("-inf"), "arr": np.array([[1.0, np.nan]]), "t": torch.tensor(2.5),
           "p": Path("a/b"), "none": None, "s": "x"}
    out = to_jsonable(obj)
    assert out == {"1": [0.5, 3, True], "nan": None, "inf": None, "arr": [[1.0, None]],
                   "t": 2.5, "p": "a/b", "none": None, "s": "x"}
    assert type(out["1"][0]) is float and type(out["1"][1]) is int and type(out["1"][2]) is bool
    assert math.isnan(obj["nan"])  # the input is not changed
    shown = to_jsonable({"x": 1.23456, "y": np.float32(2.0004), "z": float("nan")},
                        digits=3, nonfinite=str)
    assert shown == {"x": 1.235, "y": 2.0, "z": "nan"}
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"o": object()})
    assert to_jsonable({"o": object()}, default=lambda o: "?") == {"o": "?"}


def test_write_json_writes_strict_json(tmp_path):
    import json

    import numpy as np
    import pytest

    from samuel.io import write_json

    write_json(tmp_path / "r.json", {"mean": np.float64("nan"), "n": np.int32(2)})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"mean": None, "n": 2}
    with pytest.raises(TypeError, match="set"):
        write_json(tmp_path / "bad.json", {"s": {1, 2}})
    assert not (tmp_path / "bad.json").exists()
