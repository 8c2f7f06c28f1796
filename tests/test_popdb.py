"""The published POPDB as it is: block split, index without copies, stats, train and evaluate."""
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from samuel import config
from samuel.cli import main
from samuel.data import popdb, store

N, C, T, B = 120, 64, 32, 8  # rows, channels, frames, rows per block in these tests


def _published(folder: Path, n=N, c=C, t=T, dtype=np.float32, seed=0):
    """A folder laid out like the Kaggle download: only the two arrays, rows correlated in
    blocks (so that the training rows' statistics differ from all rows')."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    drift = np.repeat(rng.normal(size=(n // 4 + 1, c, 1)) * 3, 4, axis=0)[:n]
    vocal = (rng.normal(size=(n, c, t)) + drift + np.arange(c)[:, None]).astype(dtype)
    accomp = (0.5 * vocal + rng.normal(size=(n, c, t)) - 2).astype(dtype)
    np.save(folder / store.VOCAL_FILE, vocal)
    np.save(folder / store.ACCOMP_FILE, accomp)
    return vocal, accomp


def _cfg(profile="paper", **kw):
    """The paper profile at test size (tiny model, 32-frame rows, offline codec)."""
    base = dict(data__chunk_frames=T, data__codec="offline", model__channels=[16, 16, 16, 16],
                model__groups=8, model__heads=2, model__head_dim=8, model__time_dim=32,
                model__window=8, diffusion__timesteps=10, diffusion__fast_steps=2,
                train__batch_size=4, train__max_steps=3, train__eval_every=3,
                train__warmup_steps=1)
    base.update(kw)
    return config.load(profile, **base)


SETS = [f"{k}={json.dumps(v)}" for k, v in {
    "data__chunk_frames": T, "data__codec": "offline", "model__channels": [16, 16, 16, 16],
    "model__groups": 8, "model__heads": 2, "model__head_dim": 8, "model__time_dim": 32,
    "model__window": 8, "diffusion__timesteps": 10, "diffusion__fast_steps": 2,
    "train__batch_size": 4, "train__max_steps": 3, "train__eval_every": 3,
    "train__warmup_steps": 1}.items()]


def _sets():
    return [x for s in SETS for x in ("--set", s)]


# --------------------------------------------------------------------------- the index


def test_prepare_writes_only_row_ranges_disjoint_contiguous_blocks(tmp_path):
    src = tmp_path / "encodedsongs"
    vocal, _ = _published(src)
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in src.iterdir()}
    out = tmp_path / "index"
    summary = popdb.prepare(src, out, _cfg(), block_rows=B, progress=False)

    assert sorted(p.name for p in out.iterdir()) == ["index.json", "stats.json"]  # no array copied
    assert sum(p.stat().st_size for p in out.iterdir()) < 20_000 < vocal.nbytes
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in src.iterdir()} == before
    index = json.loads((out / "index.json").read_text())
    assert index["source"] == str(src.resolve()) and index["shape"] == [N, C, T]
    assert index["n_blocks"] == N // B == 15
    rows = {s: store.index_rows(index, s) for s in store.SPLITS}
    everything = np.concatenate(list(rows.values()))
    assert np.array_equal(np.sort(everything), np.arange(N))  # disjoint, covering every row
    for s in store.SPLITS:
        split = index["splits"][s]
        assert split["rows"] == len(rows[s]) == B * len(split["blocks"]) > 0
        for a, b in split["ranges"]:  # ranges are whole blocks, merged when adjacent
            assert a % B == 0 and b % B == 0 and b > a
        for a, b in zip(split["ranges"], split["ranges"][1:]):
            assert b[0] > a[1]
        assert set(np.unique(rows[s] // B)) == set(split["blocks"])
    # paper fractions 0.1 / 0.1 of 15 blocks: round(1.5) = 2 each
    assert summary["blocks"] == {"train": 11, "val": 2, "test": 2}
    assert summary["rows"] == {"train": 88, "val": 16, "test": 16}
    assert not summary["cached"] and 0 <= summary["leakage"]["test_rows_with_train_song"] <= 1


def test_prepare_is_seeded_deterministic_and_cached(tmp_path):
    src = tmp_path / "src"
    _published(src)
    a = popdb.prepare(src, tmp_path / "a", _cfg(), block_rows=B, progress=False)
    b = popdb.prepare(src, tmp_path / "b", _cfg(), block_rows=B, progress=False)
    c = popdb.prepare(src, tmp_path / "c", _cfg(seed=1), block_rows=B, progress=False)
    split = lambda d: json.loads((Path(d["out"]) / "index.json").read_text())["splits"]  # noqa: E731
    assert split(a) == split(b)
    assert split(a) != split(c)
    stamp = (tmp_path / "a" / "index.json").stat().st_mtime_ns
    again = popdb.prepare(src, tmp_path / "a", _cfg(), progress=False)  # block size kept
    assert again["cached"] and again["block_rows"] == B
    assert (tmp_path / "a" / "index.json").stat().st_mtime_ns == stamp
    other = popdb.prepare(src, tmp_path / "a", _cfg(seed=1), progress=False)  # new seed: rewritten
    assert not other["cached"] and split(other) == split(c)


def test_prepare_finds_the_arrays_one_folder_down(tmp_path):
    _published(tmp_path / "download" / "encodedsongs")
    summary = popdb.prepare(tmp_path / "download", tmp_path / "out", _cfg(), block_rows=B,
                            progress=False)
    assert summary["source"] == str((tmp_path / "download" / "encodedsongs").resolve())
    _published(tmp_path / "download" / "copy")
    with pytest.raises(store.PopdbError, match="expected one folder .* found 2: copy, encodedsongs"):
        popdb.prepare(tmp_path / "download", tmp_path / "out", _cfg(), progress=False)


def test_open_split_reads_rows_of_the_memmap_without_copies(tmp_path):
    src = tmp_path / "src"
    vocal, accomp = _published(src)
    out = tmp_path / "index"
    popdb.prepare(src, out, _cfg(), block_rows=B, progress=False)
    index = store.read_index(out)
    rows = store.index_rows(index, "train")
    v, a = store.open_split(out, "train", normalise=False)
    assert isinstance(v, store.RowView) and isinstance(v.base, np.memmap)
    assert v.shape == (len(rows), C, T) and len(a) == len(rows)
    np.testing.assert_array_equal(v[3], vocal[rows[3]])
    np.testing.assert_array_equal(a[[5, 0, 9]], accomp[rows[[5, 0, 9]]])
    np.testing.assert_array_equal(v[-1, 2, :4], vocal[rows[-1], 2, :4])
    np.testing.assert_array_equal(np.asarray(v), vocal[rows])
    first = index["splits"]["train"]["ranges"][0]
    view = v[0:first[1] - first[0]]  # rows contiguous in the source: a view of the memmap
    assert np.shares_memory(view, v.base) and view.shape[0] == first[1] - first[0]
    # normalised with the training rows' statistics
    nv, na = store.open_split(out, "test")
    stats = json.loads((out / "stats.json").read_text())
    test_rows = store.index_rows(index, "test")
    mean, std = np.array(stats["accomp"]["mean"]), np.array(stats["accomp"]["std"])
    np.testing.assert_allclose(na[[1, 2]], (accomp[test_rows[[1, 2]]] - mean[:, None]) / std[:, None],
                               rtol=1e-4, atol=1e-4)
    info = store.split_info(out, "test")
    assert info["has_audio"] is False and info["songs_dir"] is None and info["count"] == len(test_rows)
    r = info["rows"][1]
    assert r["song_id"] == f"block_{test_rows[1] // B:05d}" and r["source_row"] == test_rows[1]
    assert r["offset_frame"] == (test_rows[1] % B) * T and r["offset_seconds"] is None


def test_stats_are_the_training_rows_numpy_statistics_and_cached(tmp_path):
    src = tmp_path / "src"
    vocal, accomp = _published(src)
    out = tmp_path / "index"
    popdb.prepare(src, out, _cfg(), block_rows=B, progress=False)
    rows = store.index_rows(store.read_index(out), "train")
    stats = json.loads((out / "stats.json").read_text())
    for stem, x in (("vocal", vocal), ("accomp", accomp)):
        train = x[rows].astype(np.float64)
        np.testing.assert_allclose(stats[stem]["mean"], train.mean(axis=(0, 2)), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(stats[stem]["std"], train.std(axis=(0, 2)), rtol=1e-10)
        # not the statistics of every row
        assert np.abs(np.array(stats[stem]["mean"]) - x.astype(np.float64).mean(axis=(0, 2))).max() > 1e-3
    assert stats["rows"] == len(rows) and stats["index_key"] == store.read_index(out)["key"]
    # deleted: recomputed (block by block) and cached again; stale (another index): ignored
    (out / "stats.json").unlink()
    again = store.train_stats(out)
    np.testing.assert_allclose(again["vocal"]["mean"], stats["vocal"]["mean"], rtol=1e-12)
    assert (out / "stats.json").exists()
    (out / "stats.json").write_text(json.dumps({**stats, "index_key": "another"}))
    assert store.saved_stats(out) is None
    # blocks of 3 rows cross the split's range boundaries: the same statistics
    blocked = store.channel_stats(store.RowView(np.load(src / store.VOCAL_FILE, mmap_mode="r"), rows),
                                  block_rows=3)
    np.testing.assert_allclose(blocked["std"], stats["vocal"]["std"], rtol=1e-10)


def test_bad_published_folders_name_the_file_the_expected_and_the_found(tmp_path):
    cfg = _cfg()
    src = tmp_path / "p"
    _published(src, dtype=np.float64)
    with pytest.raises(store.PopdbError, match=r"latent_vocal\.npy: expected float32 \[N, 64, 32\], "
                                               r"found float64 \[120, 64, 32\]"):
        popdb.prepare(src, tmp_path / "o", cfg, progress=False)
    _published(src, c=32)
    with pytest.raises(store.PopdbError, match=r"latent_vocal\.npy: expected float32 \[N, 64, 32\], "
                                               r"found float32 \[120, 32, 32\]"):
        popdb.prepare(src, tmp_path / "o", cfg, progress=False)
    _published(src)
    with pytest.raises(store.PopdbError, match=r"expected float32 \[N, 64, 1024\], found float32 "
                                               r"\[120, 64, 32\]"):
        popdb.prepare(src, tmp_path / "o", config.load("paper"), progress=False)
    np.save(src / store.ACCOMP_FILE, np.zeros((7, C, T), np.float32))
    with pytest.raises(store.PopdbError, match="one row count .* found 120 and 7 rows"):
        popdb.prepare(src, tmp_path / "o", cfg, progress=False)
    (src / store.ACCOMP_FILE).write_bytes(b"")
    with pytest.raises(store.PopdbError, match=r"latent_accomp\.npy: expected a \.npy array .* "
                                               r"found an empty file \(0 bytes\)"):
        popdb.prepare(src, tmp_path / "o", cfg, progress=False)
    (src / store.ACCOMP_FILE).write_bytes(b"not numpy at all")
    with pytest.raises(store.PopdbError, match=r"latent_accomp\.npy: expected a \.npy array .* "
                                               r"found a file numpy cannot read"):
        popdb.prepare(src, tmp_path / "o", cfg, progress=False)
    (src / store.ACCOMP_FILE).unlink()
    with pytest.raises(store.PopdbError, match=r"latent_accomp\.npy: expected the published POPDB's "
                                               r"latent_accomp\.npy .* found nothing \(the folder "
                                               r"holds latent_vocal\.npy\)"):
        popdb.prepare(src, tmp_path / "o", cfg, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(store.PopdbError, match="empty: expected latent_vocal.npy and "
                                               "latent_accomp.npy .* found nothing"):
        popdb.prepare(tmp_path / "empty", tmp_path / "o", cfg, progress=False)
    with pytest.raises(store.PopdbError, match="absent: expected a folder .* found nothing"):
        popdb.prepare(tmp_path / "absent", tmp_path / "o", cfg, progress=False)
    _published(src, n=16)  # two blocks cannot make three splits
    with pytest.raises(store.PopdbError, match=r"at least 3 blocks of 8 rows .* found 16 rows \(2 block"):
        popdb.prepare(src, tmp_path / "o", cfg, block_rows=B, progress=False)
    ours = tmp_path / "ours"
    _published(ours / "train")
    _published(src)
    with pytest.raises(store.PopdbError, match="found a POPDB built by `samuel data build`"):
        popdb.prepare(src, ours, cfg, progress=False)


def test_an_index_whose_arrays_changed_or_moved_says_so(tmp_path):
    src = tmp_path / "src"
    _published(src)
    out = tmp_path / "index"
    popdb.prepare(src, out, _cfg(), block_rows=B, progress=False)
    _published(src, n=112)
    with pytest.raises(store.PopdbError, match=r"expected shape \(120, 64, 32\) .* found \(112, 64, 32\)"):
        store.open_split(out, "train")
    src.rename(tmp_path / "elsewhere")
    with pytest.raises(store.PopdbError, match="points at the published POPDB in .*src.* re-run"):
        store.open_split(out, "val")


def test_resolve_accepts_ours_an_index_and_the_published_folder(tmp_path, tmp_runs):
    ours = tmp_path / "data"
    for s in store.SPLITS:
        _published(ours / "popdb" / s, n=4)
    assert popdb.resolve(ours, _cfg()) == ours / "popdb"
    assert popdb.resolve(ours / "popdb", _cfg()) == ours / "popdb"
    src = tmp_path / "src"
    _published(src, n=200)  # 4 blocks of the default 64 rows
    out = popdb.resolve(src, _cfg())  # the published folder: indexed on the fly, by default
    assert out == tmp_runs / "paper" / "data" / "popdb" and (out / "index.json").exists()
    assert popdb.resolve(out, _cfg()) == out
    with pytest.raises(store.PopdbError, match="nothing: expected a POPDB folder .* found nothing"):
        popdb.resolve(tmp_path / "nothing", _cfg())


# --------------------------------------------------------------------------- leakage


def test_shared_rows_counts_songs_across_splits_exactly():
    split = np.array([0, 0, 0, 0, 2, 2, 2, 2, 1, 1, 0, 0])
    song = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5])
    r = popdb.shared_rows(split, song)
    assert r["test_rows_with_train_song"] == 0.25  # row 4 (song 1 is also in rows 3)
    assert r["test_rows_with_other_song"] == 0.5  # rows 4 and 7 (song 3 reaches val)
    assert r["val_rows_with_train_song"] == 0.5  # row 9 (song 4)
    assert r["songs_split"] == 3 and r["songs"] == 6


def test_leakage_estimate_falls_with_block_size():
    n = popdb.PUBLISHED_ROWS
    est = {}
    for b in (1, 16, 64, 256):
        blocks = popdb.block_split(n, b, 0.1, 0.1, seed=0)
        est[b] = popdb.leakage_estimate(blocks, n, b, trials=5)["test_rows_with_train_song"]
    assert est[1] > 0.9 > est[16] > est[64] > est[256] > 0
    # blocks of 64 rows vs songs of 3-6 chunks: a few percent (book: differences)
    assert 0.02 < est[64] < 0.08


# --------------------------------------------------------------------------- download


def test_download_failures_are_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # not installed
    assert main(["data", "popdb", "--download", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "kagglehub package is not installed" in err and len(err.splitlines()) == 1

    def offline(handle, **kw):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'\n(Name or service not known)")

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=offline))
    assert main(["data", "popdb", "--download"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("samuel data: could not download boyazhangnb/encodedsongs from Kaggle "
                          "(ConnectionError: Failed to resolve")
    assert "token" in err and len(err.splitlines()) == 1
    assert main(["data", "popdb"]) == 2
    assert "expected DIR" in capsys.readouterr().err


def test_download_then_prepare(tmp_path, monkeypatch, capsys):
    calls = []

    def fake(handle, output_dir=None):
        calls.append((handle, output_dir))
        _published(Path(output_dir) / "encodedsongs")
        return output_dir

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=fake))
    out = tmp_path / "index"
    assert main(["data", "popdb", str(tmp_path / "dl"), "--download", "--out", str(out),
                 "--block-rows", str(B), "--json", *_sets()]) == 0
    assert calls == [("boyazhangnb/encodedsongs", str(tmp_path / "dl"))]
    summary = json.loads(capsys.readouterr().out)
    assert summary["source"].endswith("encodedsongs") and summary["rows"]["train"] == 88


# --------------------------------------------------------------------------- train and evaluate


def test_train_and_evaluate_the_paper_profile_on_the_published_folder(tmp_path, tmp_runs, monkeypatch):
    """The published folder itself as --data: indexed on the fly, trained, evaluated; the
    evaluation estimates key and beats from the decoded true accompaniment and says so."""
    from samuel import evaluate as ev
    from samuel.train import train

    monkeypatch.delenv("SAMUEL_AUDIOBOX_CKPT", raising=False)
    from samuel import codecs

    monkeypatch.setenv("SAMUEL_VAE", str(tmp_path / "no-vae-here"))
    src = tmp_path / "kaggle"
    _published(src / "encodedsongs", n=512, seed=3)  # 8 blocks of the default 64 rows
    # the paper's codec setting (SAO), no VAE anywhere: training (transpose 0) never decodes
    cfg = _cfg(data__codec="sao", data__test_fraction=0.25)  # two test blocks: shuffled baseline
    summary = train(cfg, data_dir=src, run_dir=tmp_path / "run", progress=False)
    index_dir = tmp_runs / "paper" / "data" / "popdb"
    index = store.read_index(index_dir)
    assert summary["steps"] == 3 and np.isfinite(summary["best_val_loss"])
    assert summary["train_rows"] == index["splits"]["train"]["rows"]
    assert summary["val_rows"] == index["splits"]["val"]["rows"]
    res = ev.evaluate(cfg, checkpoint=tmp_path / "run" / "checkpoint", data_dir=src,
                      out_dir=tmp_path / "eval", max_clips=2, progress=False, batch_size=2,
                      compare_samplers=False,  # the CLI test below runs the comparison
                      codec=codecs.load("offline", griffin_lim_iters=8))  # random latents decode
    assert res["n_clips"] == 2 and res["n_songs"] == 2  # two blocks, round-robin
    assert res["truth_sources"] == {"estimated from the true accompaniment": 2}
    assert res["data"]["layout"] == "published POPDB index" and res["data"]["has_audio"] is False
    assert res["data"]["folder"] == str(index_dir)
    assert "estimated from the decoded true accompaniment" in res["data"]["truth"]
    test_blocks = {f"block_{b:05d}" for b in index["splits"]["test"]["blocks"]}
    assert {c["song_id"] for c in res["clips"]} <= test_blocks
    assert "ground truth: key and beats of 2 of 2 clips estimated" in ev.format_table(res)


def test_cli_data_popdb_then_train_and_evaluate(tmp_path, tmp_runs, monkeypatch, capsys):
    monkeypatch.delenv("SAMUEL_AUDIOBOX_CKPT", raising=False)
    src = tmp_path / "published"
    _published(src, seed=4)
    out = tmp_path / "index"
    assert main(["data", "popdb", str(src), "--out", str(out), "--block-rows", str(B), *_sets()]) == 0
    text = capsys.readouterr().out
    assert f"POPDB index in {out}" in text and "nothing copied" in text
    assert "train      88 rows in   11 blocks" in text and "leakage estimate" in text
    assert main(["train", "--profile", "paper", "--data", str(out), *_sets()]) == 0
    capsys.readouterr()
    trained = json.loads((tmp_runs / "paper" / "train" / "summary.json").read_text())
    assert trained["steps"] == 3 and trained["train_rows"] == 88 and trained["val_rows"] == 16
    assert (tmp_runs / "paper" / "checkpoint").is_dir()
    assert main(["evaluate", "--profile", "paper", "--data", str(out), "--max-clips", "2",
                 *_sets()]) == 0
    table = capsys.readouterr().out
    assert "on 2 test clips of 2 songs" in table
    assert "ground truth: key and beats of 2 of 2 clips estimated from the decoded true accompaniment" in table
    results = json.loads((tmp_runs / "paper" / "evaluation" / "results.json").read_text())
    assert results["data"]["layout"] == "published POPDB index"
    assert main(["data", "popdb", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: expected a folder" in capsys.readouterr().err
