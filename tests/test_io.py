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
