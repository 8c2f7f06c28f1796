"""Chunking, song splits, the POPDB store and its statistics; the manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest

from samuel.data import store
from samuel.data.manifest import STATES, Manifest


# --------------------------------------------------------------------------- chunking


def test_chunk_latents_drops_trailing_and_keeps_content():
    lat = np.arange(3 * 10, dtype=np.float32).reshape(3, 10)
    chunks = store.chunk_latents(lat, 4)
    assert chunks.shape == (2, 3, 4)
    np.testing.assert_array_equal(chunks[0], lat[:, 0:4])
    np.testing.assert_array_equal(chunks[1], lat[:, 4:8])
    assert store.chunk_latents(lat, 5).shape == (2, 3, 5)
    assert store.chunk_latents(lat, 11).shape == (0, 3, 11)
    assert store.n_chunks(10, 4) == 2


def test_chunk_latents_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[C, T\]"):
        store.chunk_latents(np.zeros((2, 3, 4)), 2)
    with pytest.raises(ValueError, match="positive"):
        store.chunk_latents(np.zeros((2, 4)), 0)


# --------------------------------------------------------------------------- splits


def test_split_songs_disjoint_deterministic_nonempty():
    ids = [f"song{i:03d}" for i in range(50)]
    a = store.split_songs(ids, 0.1, 0.1, seed=3)
    b = store.split_songs(list(reversed(ids)), 0.1, 0.1, seed=3)
    assert a == b  # independent of input order
    assert [len(a[k]) for k in ("train", "val", "test")] == [40, 5, 5]
    assert set(a["train"]) | set(a["val"]) | set(a["test"]) == set(ids)
    assert not set(a["train"]) & set(a["val"])
    assert not set(a["train"]) & set(a["test"])
    assert not set(a["val"]) & set(a["test"])
    assert store.split_songs(ids, 0.1, 0.1, seed=4) != a
    for n in (3, 4, 7):
        s = store.split_songs([f"s{i}" for i in range(n)], 0.1, 0.1, seed=0)
        assert all(len(s[k]) >= 1 for k in ("train", "val", "test")), s
        assert sum(len(v) for v in s.values()) == n
    assert store.split_songs(["x"], 0.1, 0.1)["train"] == ["x"]
    assert store.split_songs([], 0.1, 0.1) == {"train": [], "val": [], "test": []}


# --------------------------------------------------------------------------- POPDB


def _published(folder, n=6, c=4, t=8, seed=0, dtype=np.float32):
    """A folder laid out like the published POPDB: only the two .npy files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vocal = (rng.normal(size=(n, c, t)) * np.arange(1, c + 1)[:, None] + 3).astype(dtype)
    accomp = (rng.normal(size=(n, c, t)) - np.arange(c)[:, None]).astype(dtype)
    np.save(folder / store.VOCAL_FILE, vocal)
    np.save(folder / store.ACCOMP_FILE, accomp)
    return vocal, accomp


def test_load_popdb_reads_published_layout_memory_mapped(tmp_path):
    vocal, accomp = _published(tmp_path / "popdb")
    v, a = store.load_popdb(tmp_path / "popdb", normalise=False)
    assert isinstance(v, np.memmap) and isinstance(a, np.memmap)
    assert v.shape == (6, 4, 8) and v.dtype == np.float32
    np.testing.assert_array_equal(v, vocal)
    np.testing.assert_array_equal(a, accomp)


def test_load_popdb_zscore_per_channel(tmp_path):
    vocal, accomp = _published(tmp_path / "p")
    v, a = store.load_popdb(tmp_path / "p")  # no stats.json: the folder's own statistics
    assert len(v) == 6 and v.shape == (6, 4, 8) and v.dtype == np.float32
    expect = (vocal - vocal.mean(axis=(0, 2))[:, None]) / vocal.std(axis=(0, 2))[:, None]
    np.testing.assert_allclose(np.asarray(v), expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v[2], expect[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v[[4, 1]], expect[[4, 1]], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v[1:3, 2, :5], expect[1:3, 2, :5], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v[3, 1], expect[3, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(a).mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(a).std(axis=(0, 2)), 1, atol=1e-5)
    # Given stats (the training split's) are used as they are.
    stats = {"mean": [1.0] * 4, "std": [2.0] * 4}
    v2, _ = store.load_popdb(tmp_path / "p", stats=stats)
    np.testing.assert_allclose(v2[0], (vocal[0] - 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(store.denormalise(v2[0], stats, "vocal"), vocal[0], rtol=1e-5)


def test_load_popdb_uses_stats_json_beside_the_split(tmp_path):
    _published(tmp_path / "popdb" / "val")
    stats = {"vocal": {"mean": [0.0] * 4, "std": [10.0] * 4},
             "accomp": {"mean": [5.0] * 4, "std": [1.0] * 4}}
    (tmp_path / "popdb" / "stats.json").write_text(json.dumps(stats))
    v, a = store.load_popdb(tmp_path / "popdb" / "val")
    raw_v, raw_a = store.load_popdb(tmp_path / "popdb" / "val", normalise=False)
    np.testing.assert_allclose(v[0], raw_v[0] / 10, rtol=1e-6)
    np.testing.assert_allclose(a[0], raw_a[0] - 5, rtol=1e-6)


def test_channel_stats_blocks_equal_direct(tmp_path):
    vocal, _ = _published(tmp_path / "p", n=13, c=5, t=7, seed=2)
    v, _ = store.load_popdb(tmp_path / "p", normalise=False)
    direct = store.channel_stats(vocal, block_rows=len(vocal))
    np.testing.assert_allclose(direct["mean"], vocal.astype(np.float64).mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(direct["std"], vocal.astype(np.float64).std(axis=(0, 2)), rtol=1e-12)
    for rows in (1, 2, 5):
        blocked = store.channel_stats(v, block_rows=rows)  # over the memmap, block by block
        np.testing.assert_allclose(blocked["mean"], direct["mean"], rtol=1e-10)
        np.testing.assert_allclose(blocked["std"], direct["std"], rtol=1e-10)


def test_load_popdb_clear_errors(tmp_path):
    with pytest.raises(store.PopdbError, match="found nothing"):
        store.load_popdb(tmp_path / "absent")
    folder = tmp_path / "p"
    folder.mkdir()
    np.save(folder / store.VOCAL_FILE, np.zeros((2, 4, 8), np.float32))
    with pytest.raises(store.PopdbError, match=r"missing latent_accomp\.npy.*latent_vocal\.npy"):
        store.load_popdb(folder)
    np.save(folder / store.ACCOMP_FILE, np.zeros((3, 4, 8), np.float32))
    with pytest.raises(store.PopdbError, match=r"one shape.*\(2, 4, 8\) and \(3, 4, 8\)"):
        store.load_popdb(folder)
    np.save(folder / store.ACCOMP_FILE, np.zeros((2, 4, 8), np.float64))
    with pytest.raises(store.PopdbError, match="expected float32, found float64"):
        store.load_popdb(folder)
    np.save(folder / store.ACCOMP_FILE, np.zeros((2, 32), np.float32))
    with pytest.raises(store.PopdbError, match=r"expected 3 dimensions.*\(2, 32\)"):
        store.load_popdb(folder)
    (folder / store.ACCOMP_FILE).write_bytes(b"not numpy")
    with pytest.raises(store.PopdbError, match="latent_accomp.npy: expected a .npy array"):
        store.load_popdb(folder)
    np.save(folder / store.ACCOMP_FILE, np.zeros((2, 4, 8), np.float32))
    with pytest.raises(store.PopdbError, match="expected 4 channels"):
        store.load_popdb(folder, stats={"mean": [0.0] * 3, "std": [1.0] * 3})


def test_write_split_rows_and_manifest(tmp_path):
    rng = np.random.default_rng(0)
    lat = {s: (rng.normal(size=(4, t)).astype(np.float32), rng.normal(size=(4, t)).astype(np.float32))
           for s, t in (("a", 10), ("b", 3), ("c", 8))}
    songs = [(s, lat[s][0].shape[1]) for s in ("a", "b", "c")]
    n = store.write_split(tmp_path / "train", songs, lat.__getitem__, 4, channels=4,
                          frames_per_second=2.0)
    assert n == 2 + 0 + 2
    v, a = store.load_popdb(tmp_path / "train", normalise=False)
    assert v.shape == a.shape == (4, 4, 4)
    np.testing.assert_array_equal(v[1], lat["a"][0][:, 4:8])
    np.testing.assert_array_equal(a[2], lat["c"][1][:, 0:4])
    rows = store.read_chunks(tmp_path / "train")["rows"]
    assert [(r["song_id"], r["offset_frame"], r["offset_seconds"]) for r in rows] == [
        ("a", 0, 0.0), ("a", 4, 2.0), ("c", 0, 0.0), ("c", 4, 2.0)]
    assert not list(tmp_path.glob("train/.*tmp*"))  # no temp files left behind
    assert store.write_split(tmp_path / "empty", [], lat.__getitem__, 4, channels=4) == 0
    assert store.load_popdb(tmp_path / "empty", normalise=False)[0].shape == (0, 4, 4)


# --------------------------------------------------------------------------- manifest


def test_manifest_states_persist_and_count(tmp_path):
    path = tmp_path / "run" / "manifest.json"
    m = Manifest(path)
    assert m.state("a") is None and len(m) == 0
    m.set("a", "listed", title="A")
    m.set("a", "downloaded", paths={"audio": "audio/a.wav"}, seconds={"download": 1.5})
    m.set("a", "separated", paths={"vocals": "v.wav"}, seconds={"separate": 2.0})
    m.set("b", "listed")
    m.fail("b", "download", "no search result")
    assert path.exists() and not list(path.parent.glob(".*tmp*"))

    again = Manifest(path)  # every change is on disk
    assert again.state("a") == "separated" and again.state("b") == "failed"
    rec = again.get("a")
    assert rec["paths"] == {"audio": "audio/a.wav", "vocals": "v.wav"}  # merged, not replaced
    assert rec["seconds"] == {"download": 1.5, "separate": 2.0}
    assert rec["title"] == "A"
    assert again.get("b")["stage"] == "download" and again.get("b")["reason"] == "no search result"
    assert again.counts() == {"listed": 0, "downloaded": 0, "separated": 1, "encoded": 0, "failed": 1}
    assert set(again.counts()) == set(STATES)
    assert again.reached("a", "downloaded") and not again.reached("a", "encoded")
    assert not again.reached("b", "listed")

    again.set("b", "listed")  # a retry clears the failure
    assert "reason" not in again.get("b") and "stage" not in again.get("b")
    again.set_meta(codec={"name": "offline"})
    assert Manifest(path).meta == {"codec": {"name": "offline"}}
    assert list(Manifest(path)) == ["a", "b"]  # one record per song, no duplicates
    with pytest.raises(ValueError, match="unknown state"):
        again.set("a", "done")


def test_manifest_rejects_foreign_json(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="manifest.json: expected a manifest"):
        Manifest(path)
