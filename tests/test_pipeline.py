"""The data build: end to end, resumable after a kill, failures recorded per song."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import samuel
from samuel import config
from samuel.data import pipeline, store
from samuel.data.manifest import Manifest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SR = 44100
POPDB_FILES = [f"{split}/{name}" for split in store.SPLITS
               for name in (store.VOCAL_FILE, store.ACCOMP_FILE, store.CHUNKS_FILE)]
POPDB_FILES += ["stats.json", "splits.json"]


class Killed(BaseException):
    """Stands for the process dying: not an ``Exception``, so no song records it as a failure."""


class FakeCodec:
    """64 channels at 10 frames/s; each frame is a deterministic function of its samples."""

    name = "fake"
    sample_rate = SR
    latent_channels = 64
    frames_per_second = 10.0

    def __init__(self):
        self.calls = 0

    def encode(self, audio, sr):
        self.calls += 1
        mono = np.asarray(audio, np.float64).mean(axis=0)
        hop = int(sr / self.frames_per_second)
        frames = int(np.ceil(len(mono) / hop))
        mono = np.pad(mono, (0, frames * hop - len(mono))).reshape(frames, hop)
        feats = np.stack([mono.mean(1), np.abs(mono).mean(1), mono.std(1), mono.max(1)])  # [4, T]
        scale = np.arange(1, 17)[:, None, None]
        return (feats[None] * scale).reshape(64, frames).astype(np.float32) + 0.25


def fake_render(seconds_per_song=None, kill_after=None):
    """A corpus renderer with synth.render_corpus's contract (truth.json last; skips done songs)."""

    def render(out_dir, n_songs, seconds, seed=0, progress=True):
        out_dir = Path(out_dir)
        records = []
        for i in range(n_songs):
            song_id = f"fake_{i:03d}"
            folder = out_dir / song_id
            secs = seconds_per_song[i] if seconds_per_song else seconds
            if not (folder / "truth.json").exists() or not all(
                    (folder / f"{s}.wav").exists() for s in ("vocals", "accomp", "mix")):
                if kill_after is not None and i == kill_after:
                    raise Killed(f"killed while rendering {song_id}")
                rng = np.random.default_rng([seed, i])
                t = np.arange(int(secs * SR)) / SR
                vocals = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 400) * t) * rng.uniform(0.5, 1, (2, 1))
                accomp = 0.2 * np.sign(np.sin(2 * np.pi * rng.uniform(50, 100) * t)) * np.ones((2, 1))
                folder.mkdir(parents=True, exist_ok=True)
                for name, x in (("vocals", vocals), ("accomp", accomp), ("mix", vocals + accomp)):
                    sf.write(folder / f"{name}.wav", x.T.astype(np.float32), SR, subtype="FLOAT")
                (folder / "truth.json").write_text(json.dumps({"seed": seed, "index": i}))
            records.append({"song_id": song_id, "dir": str(folder),
                            **{s: str(folder / f"{s}.wav") for s in ("vocals", "accomp", "mix")}})
        return records

    return render


def _cfg(**overrides):
    # 10 songs of 3.1 s at 10 frames/s -> 31 frames -> 3 chunks of 8 frames (7 dropped).
    base = dict(corpus_songs=10, corpus_song_seconds=3.1, chunk_frames=8, val_fraction=0.1,
                test_fraction=0.1)
    base.update(overrides)
    return config.load("smoke", **base)


def _popdb_bytes(out: Path) -> dict:
    return {name: (out / "popdb" / name).read_bytes() for name in POPDB_FILES}


def test_build_end_to_end_with_fakes(tmp_path):
    cfg = _cfg()
    codec = FakeCodec()
    summary = pipeline.build(cfg, out_dir=tmp_path, progress=False, codec=codec,
                             render_corpus=fake_render())
    assert summary["counts"]["encoded"] == 10 and summary["counts"]["failed"] == 0
    assert summary["split_songs"] == {"train": 8, "val": 1, "test": 1}
    assert summary["chunks"] == {"train": 24, "val": 3, "test": 3}
    assert {"render", "encode", "assemble", "stats", "total"} <= set(summary["seconds"])
    assert codec.calls == 20

    splits = json.loads((tmp_path / "popdb" / "splits.json").read_text())
    assert splits == store.split_songs([f"fake_{i:03d}" for i in range(10)], 0.1, 0.1, cfg.seed)
    for split in store.SPLITS:
        vocals, accomp = store.load_popdb(tmp_path / "popdb" / split, normalise=False)
        rows = store.read_chunks(tmp_path / "popdb" / split)["rows"]
        assert vocals.shape == accomp.shape == (len(rows), 64, 8)
        assert {r["song_id"] for r in rows} == set(splits[split])
        for i, r in enumerate(rows):  # row i of both files is the same chunk of the same song
            lat_v = np.load(tmp_path / "latents" / f"{r['song_id']}.vocal.npy")
            lat_a = np.load(tmp_path / "latents" / f"{r['song_id']}.accomp.npy")
            f = r["offset_frame"]
            np.testing.assert_array_equal(vocals[i], lat_v[:, f:f + 8])
            np.testing.assert_array_equal(accomp[i], lat_a[:, f:f + 8])
            assert r["offset_seconds"] == pytest.approx(f / 10.0)

    stats = json.loads((tmp_path / "popdb" / "stats.json").read_text())
    raw_v, raw_a = store.load_popdb(tmp_path / "popdb" / "train", normalise=False)
    np.testing.assert_allclose(stats["vocal"]["mean"], np.asarray(raw_v, np.float64).mean(axis=(0, 2)))
    np.testing.assert_allclose(stats["accomp"]["std"], np.asarray(raw_a, np.float64).std(axis=(0, 2)),
                               rtol=1e-6, atol=1e-9)
    v, _ = store.load_popdb(tmp_path / "popdb" / "val")  # normalised with the train stats
    raw_val, _ = store.load_popdb(tmp_path / "popdb" / "val", normalise=False)
    np.testing.assert_allclose(v[0], store.normalise(raw_val[0], stats, "vocal"), rtol=1e-6)

    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["profile"] == "smoke" and prov["seed"] == cfg.seed
    assert prov["package_version"] == samuel.__version__
    assert prov["codec"] == {"name": "fake", "frames_per_second": 10.0, "latent_channels": 64}
    assert prov["chunks"] == summary["chunks"] and "encode" in prov["seconds"]

    # A second run finds everything done: nothing encoded again, same bytes.
    before = _popdb_bytes(tmp_path)
    again = pipeline.build(cfg, out_dir=tmp_path, progress=False, codec=codec,
                           render_corpus=fake_render())
    assert codec.calls == 20 and again["chunks"] == summary["chunks"]
    assert _popdb_bytes(tmp_path) == before


def test_short_songs_and_limit(tmp_path):
    cfg = _cfg(corpus_songs=5)
    lengths = [3.1, 0.5, 3.1, 2.0, 1.0]  # 0.5 s = 5 frames: shorter than one chunk
    summary = pipeline.build(cfg, out_dir=tmp_path, progress=False, codec=FakeCodec(),
                             render_corpus=fake_render(lengths), limit=4)
    assert summary["songs"] == 4 and summary["too_short"] == ["fake_001"]
    assert sum(summary["split_songs"].values()) == 3
    assert sum(summary["chunks"].values()) == 3 + 3 + 2


@pytest.mark.parametrize("kill_at", [("render", 4), ("encode", 0), ("encode", 6), ("encode", 9)])
def test_resume_after_kill_is_byte_identical(tmp_path, kill_at):
    cfg = _cfg()
    reference = tmp_path / "reference"
    pipeline.build(cfg, out_dir=reference, progress=False, codec=FakeCodec(),
                   render_corpus=fake_render())

    out = tmp_path / "killed"
    stage, k = kill_at
    seen = []

    def die(stage_name, song_id):
        seen.append(song_id)
        if stage_name == stage and len(seen) > k:
            raise Killed(f"killed after {song_id}")

    with pytest.raises(Killed):
        pipeline.build(cfg, out_dir=out, progress=False, codec=FakeCodec(),
                       render_corpus=fake_render(kill_after=k if stage == "render" else None),
                       on_song=die if stage == "encode" else None)

    # Damage what the killed run left: a lost latent, a truncated latent, a lost stem,
    # a stray temp file from an interrupted atomic write.
    latents = sorted((out / "latents").glob("*.npy")) if (out / "latents").exists() else []
    if len(latents) >= 4:
        latents[0].unlink()
        latents[3].write_bytes(latents[3].read_bytes()[:100])
    stems = sorted((out / "songs").glob("*/accomp.wav"))
    stems[-1].unlink()
    (out / "songs" / ".stray.tmp.npy").write_bytes(b"junk")

    codec = FakeCodec()
    summary = pipeline.build(cfg, out_dir=out, progress=False, codec=codec,
                             render_corpus=fake_render())
    assert summary["counts"]["encoded"] == 10
    assert _popdb_bytes(out) == _popdb_bytes(reference)
    m = Manifest(out / "manifest.json")
    assert sorted(m) == [f"fake_{i:03d}" for i in range(10)]  # each song once
    assert m.counts()["encoded"] == 10
    assert codec.calls < 20 or stage == "render" or k == 0  # finished work was skipped
    raw = json.loads((out / "manifest.json").read_text())
    assert len(raw["songs"]) == 10


def _write_wav(path, seconds, freq):
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.stack([x, x * 0.5], 1).astype(np.float32), SR)


def test_songlist_records_bad_songs_and_goes_on(tmp_path):
    cfg = _cfg()
    audio = tmp_path / "in"
    audio.mkdir()
    for i in range(4):
        _write_wav(audio / f"good{i}.wav", 3.1, 220 * (i + 1))
    (audio / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    rows = ["title,artist,path"] + [f"Good {i},Band,in/good{i}.wav" for i in range(4)]
    rows += ["Corrupt,Band,in/corrupt.wav", "Missing,Band,in/nothing.wav",
             "Searched,Band,", "Unfindable,Band,"]
    csv_path = tmp_path / "songs.csv"
    csv_path.write_text("\n".join(rows) + "\n")

    def download(song, out_dir, url=None, max_seconds=900):
        if song.title == "Unfindable":
            raise RuntimeError(f"{song.query}: no search result")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{song.song_id}.wav"
        _write_wav(path, 3.1, 330)
        return path

    def separate(mix, sr):
        return {"vocals": mix * 0.5, "accomp": mix[::-1] * 0.5}

    out = tmp_path / "run"
    summary = pipeline.build(cfg, out_dir=out, songlist=csv_path, progress=False,
                             codec=FakeCodec(), download=download, separate=separate)
    assert summary["source"] == "songlist" and summary["songs"] == 8
    assert summary["counts"]["encoded"] == 5 and summary["counts"]["failed"] == 3
    titles = {r["song_id"]: r["title"] for r in pipeline.read_songs(csv_path)}
    fails = {titles[sid]: f for sid, f in summary["failures"].items()}
    assert set(fails) == {"Corrupt", "Missing", "Unfindable"}
    assert fails["Corrupt"]["stage"] == "separate" and "corrupt.wav" in fails["Corrupt"]["reason"]
    assert fails["Missing"]["stage"] == "download" and "nothing.wav" in fails["Missing"]["reason"]
    assert fails["Unfindable"]["stage"] == "download" and "no search result" in fails["Unfindable"]["reason"]
    assert sum(summary["split_songs"].values()) == 5 and summary["chunks"]["train"] > 0
    m = Manifest(out / "manifest.json")
    sid = pipeline.read_songs(csv_path)[0]["song_id"]
    assert set(m.get(sid)["paths"]) >= {"audio", "vocals", "accomp", "latent_vocal", "latent_accomp"}

    # Failed songs stay failed on a re-run, unless retried.
    (audio / "nothing.wav").write_bytes((audio / "good0.wav").read_bytes())
    again = pipeline.build(cfg, out_dir=out, songlist=csv_path, progress=False,
                           codec=FakeCodec(), download=download, separate=separate)
    assert again["counts"]["failed"] == 3
    retried = pipeline.build(cfg, out_dir=out, songlist=csv_path, progress=False,
                             codec=FakeCodec(), download=download, separate=separate,
                             retry_failed=True)
    assert retried["counts"]["encoded"] == 6 and retried["counts"]["failed"] == 2


def test_codec_change_encodes_again(tmp_path):
    cfg = _cfg(corpus_songs=3)
    pipeline.build(cfg, out_dir=tmp_path, progress=False, codec=FakeCodec(), render_corpus=fake_render())

    class Other(FakeCodec):
        name = "other"

    other = Other()
    pipeline.build(cfg, out_dir=tmp_path, progress=False, codec=other, render_corpus=fake_render())
    assert other.calls == 6
    assert json.loads((tmp_path / "provenance.json").read_text())["codec"]["name"] == "other"


# --------------------------------------------------------------------------- real modules


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    """One uninterrupted real build of the smoke profile: (out folder, summary)."""
    out = tmp_path_factory.mktemp("smoke") / "data"
    cfg = config.load("smoke")  # 8 synthetic songs x 6 s, offline codec, 32-frame chunks
    return out, pipeline.build(cfg, out_dir=out, progress=False)


def test_real_end_to_end_smoke(smoke_build):
    tmp_path, summary = smoke_build
    assert summary["counts"]["encoded"] == 8 and summary["counts"]["failed"] == 0
    assert summary["split_songs"] == {"train": 4, "val": 2, "test": 2}
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["codec"]["name"] == "offline" and prov["codec"]["latent_channels"] == 64
    frames = int(np.ceil(6.0 * prov["codec"]["frames_per_second"] - 1e-6))
    assert summary["chunks"]["train"] == 4 * (frames // 32)
    vocals, accomp = store.load_popdb(tmp_path / "popdb" / "train")
    x = np.asarray(accomp)
    assert x.shape == (summary["chunks"]["train"], 64, 32)
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0, atol=1e-4)
    std = x.std(axis=(0, 2))
    np.testing.assert_allclose(std[std > 0.5], 1, atol=1e-3)  # constant channels stay 0


def _contents(out: Path) -> dict:
    """Every file a build leaves, as something to compare: arrays and JSON by their bytes, wav
    files by their samples (libsndfile stamps a float wav's PEAK chunk with the time), and the
    manifest and provenance without their timings."""
    timing = {"seconds", "updated"}
    files = {}
    for path in sorted(out.rglob("*")):
        rel = str(path.relative_to(out))
        if not path.is_file() or path.name in (".build.lock", "build.json"):  # build.json: mtimes
            continue
        if path.name in ("manifest.json", "provenance.json"):
            data = {k: v for k, v in json.loads(path.read_text()).items() if k not in timing}
            if path.name == "manifest.json":
                data["songs"] = {s: {k: v for k, v in r.items() if k not in timing}
                                 for s, r in data["songs"].items()}
            files[rel] = data
        elif path.suffix == ".wav":
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            files[rel] = (sr, x.shape, hashlib.sha256(x.tobytes()).hexdigest())
        else:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def test_real_smoke_build_is_deterministic_and_resumable(tmp_path, smoke_build):
    """A second smoke build in another folder leaves the same files; run again it does nothing;
    after a lost latent it encodes that one song again, to the same bytes."""
    reference, first = smoke_build
    cfg = config.load("smoke")
    out = tmp_path / "again"
    summary = pipeline.build(cfg, out_dir=out, progress=False)
    expected = _contents(reference)
    assert sum(name.endswith(".npy") for name in expected) == 8 * 2 + 3 * 2  # latents + POPDB
    assert _contents(out) == expected
    drop = ("out", "seconds")
    assert ({k: v for k, v in summary.items() if k not in drop}
            == {k: v for k, v in first.items() if k not in drop})

    calls = []
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    again = pipeline.build(cfg, out_dir=out, progress=False,
                           on_song=lambda stage, song_id: calls.append((stage, song_id)))
    assert calls == [] and again["counts"] == summary["counts"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == mtimes  # nothing rewritten

    lost = sorted((out / "latents").glob("*.vocal.npy"))[2]
    lost.unlink()
    pipeline.build(cfg, out_dir=out, progress=False,
                   on_song=lambda stage, song_id: calls.append((stage, song_id)))
    assert calls == [("encode", lost.name.split(".")[0])]
    assert _contents(out) == expected


def test_real_build_survives_sigkill(tmp_path, smoke_build):
    """Kill a real smoke build with SIGKILL mid-run; the re-run matches an uninterrupted one."""
    cfg = config.load("smoke")
    reference = smoke_build[0]

    out = tmp_path / "killed"
    code = ("import samuel.config as c, samuel.data.pipeline as p; "
            f"p.build(c.load('smoke'), out_dir={str(out)!r}, progress=False)")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # kill once a few songs are on disk
        if len(list((out / "songs").glob("*/truth.json"))) >= 3:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the build finished before it could be killed"
    assert not (out / "provenance.json").exists()

    summary = pipeline.build(cfg, out_dir=out, progress=False)
    assert summary["counts"]["encoded"] == 8
    assert _popdb_bytes(out) == _popdb_bytes(reference)
    assert len(Manifest(out / "manifest.json")) == 8


@pytest.mark.slow
def test_real_songlist_build(tmp_path):
    """Song list -> yt-dlp on file:// URLs -> Demucs (the tiny untrained test model) -> codec."""
    import shutil

    pytest.importorskip("yt_dlp")
    pytest.importorskip("demucs")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    audio = tmp_path / "in"
    audio.mkdir()
    for i in range(3):
        _write_wav(audio / f"song{i}.wav", 3.0, 220 * (i + 1))
    (audio / "broken.wav").write_bytes(b"\x00" * 64)
    rows = ["title,artist,url"] + [f"Song {i},Band,{(audio / f'song{i}.wav').as_uri()}"
                                   for i in range(3)]
    rows.append(f"Broken,Band,{(audio / 'broken.wav').as_uri()}")
    (tmp_path / "songs.csv").write_text("\n".join(rows) + "\n")
    cfg = config.load("smoke", separator="demucs_unittest")
    summary = pipeline.build(cfg, out_dir=tmp_path / "run", songlist=tmp_path / "songs.csv",
                             progress=False, allow_file_urls=True)
    assert summary["counts"]["encoded"] == 3, summary["failures"]
    assert summary["counts"]["failed"] == 1
    (failure,) = summary["failures"].values()
    assert failure["stage"] == "download" and failure["reason"]
    assert summary["split_songs"] == {"train": 1, "val": 1, "test": 1}
    assert {"download", "separate", "encode"} <= set(summary["seconds"])


def test_stray_temps_removed_and_one_build_per_folder(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    cfg = _cfg(corpus_songs=3)
    (tmp_path / "latents").mkdir(parents=True)
    stray = tmp_path / "latents" / ".fake_000.vocal.npy.abc123.tmp.npy"
    stray.write_bytes(b"half a file")
    pipeline.build(cfg, out_dir=tmp_path, progress=False, codec=FakeCodec(), render_corpus=fake_render())
    assert not stray.exists()
    with open(tmp_path / ".build.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match="another data build is running"):
            pipeline.build(cfg, out_dir=tmp_path, progress=False, codec=FakeCodec(),
                           render_corpus=fake_render())
