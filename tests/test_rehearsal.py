"""The paper path, rehearsed: the whole book with ``PROFILE = "paper"`` at a tiny size.

Nothing here has a network or a GPU, so the paper profile's two routes are run through their
real code paths with stand-ins in the real formats (book: "Reproduce it"):

* the Stable Audio Open VAE: the ``sao`` codec loads a small random-weight Oobleck (the paper's
  strides [2, 4, 4, 8, 8], 2048 samples per frame, 64 latent channels; few channels) that the
  test writes in the stable-audio-tools layout (``model_config.json`` + ``model.safetensors``
  with ``pretransform.model.*`` keys), given as ``--vae`` (the override ``data__vae``);
* route 1, a song list: a CSV whose ``url`` column holds ``file://`` URLs of a few short
  synthetic songs, downloaded by yt-dlp, separated by Demucs's built-in ``demucs_unittest``
  (``data__separator``), encoded, chunked (the ``audio/`` + ``stems/`` layout, no truth);
* route 2, POPDB as published: a folder of the two arrays and nothing else.

The sizes go through ``OVERRIDES`` (``--set``), the one documented override mechanism; the
profile stays ``paper``, and every notebook's results carry its name and the keys the demo
run records. The first tests check the pieces (parameters, CLI, helpers) in seconds.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from samuel import book, config, runs, show

# The size of a rehearsal: seconds per notebook on 2 CPU cores. Everything else is `paper`.
SIZE = {
    "device": "cpu",
    "eval__real_seconds": 1.0,  # one 0.74 s window per real song
    "eval__real_per_song": 1,
    "data__chunk_frames": 16,  # 0.74 s clips
    "data__separator": "demucs_unittest",
    "data__val_fraction": 0.2,
    "data__test_fraction": 0.4,  # two test songs (or blocks): the shuffled baseline needs two
    "model__channels": [32, 32, 32, 32],
    "model__heads": 2,
    "model__head_dim": 16,
    "model__time_dim": 32,
    "model__groups": 8,
    "model__window": 8,
    "train__max_steps": 20,
    "train__batch_size": 4,
    "train__warmup_steps": 2,
    "train__eval_every": 10,
    "train__patience": 3,
    "eval__max_clips": 8,
}
SONGS, SONG_SECONDS = 5, 3.0  # split 2 / 1 / 2 songs
POPDB_ROWS = 300  # five blocks of up to 64 rows (samuel.data.popdb.BLOCK_ROWS): 2 / 1 / 2
# the tiny Oobleck: SAO's strides and 64 latents (its encoder width is 2 x 64), 8 decoder channels
TINY_VAE = dict(encoder_hidden_size=128, decoder_channels=8, decoder_input_channels=64,
                channel_multiples=[1, 1, 1, 1, 1], downsampling_ratios=[2, 4, 4, 8, 8],
                audio_channels=2, sampling_rate=44100)


# ----------------------------------------------------------------------------- the pieces
def test_every_notebook_takes_a_song_list_and_popdb():
    for name in book.NOTEBOOKS:
        nb = nbformat.read(str(book.NOTEBOOK_DIR / name), as_version=4)
        (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        namespace: dict = {}
        exec(cell.source, namespace)
        assert namespace["SONGLIST"] == "" and namespace["POPDB"] == "", name
        assert re.search(r"^POPDB = ", cell.source, re.M) and re.search(r"^SONGLIST = ", cell.source, re.M)


def test_parameters_of_the_paper_path(tmp_path, monkeypatch):
    songs = tmp_path / "songs.csv"
    songs.write_text("title,artist\nA,B\n")
    (tmp_path / "popdb").mkdir()
    monkeypatch.chdir(tmp_path)
    p = book.parameters("paper", songlist="songs.csv", vae="vae", device="cpu",
                        overrides={"train__max_steps": 5})
    assert set(p) == {"PROFILE", "SEED", "RUN_DIR", "OVERRIDES", "SONGLIST", "POPDB"}
    assert p["SONGLIST"] == str(songs.resolve()) and p["POPDB"] == "" and p["RUN_DIR"] == ""
    assert p["OVERRIDES"] == {"train__max_steps": 5, "data__vae": str((tmp_path / "vae").resolve()),
                              "device": "cpu"}
    assert book.parameters("paper", popdb="popdb", run_dir="r")["RUN_DIR"] == str(tmp_path / "r")
    with pytest.raises(ValueError, match="expected a song list .*--songlist.*found neither"):
        book.parameters("paper")
    with pytest.raises(ValueError, match="found both"):
        book.parameters("paper", songlist="songs.csv", popdb="popdb")
    with pytest.raises(FileNotFoundError, match="missing.csv: expected a song list CSV"):
        book.parameters("paper", songlist="missing.csv")
    with pytest.raises(FileNotFoundError, match="songs.csv: expected a folder holding latent_vocal"):
        book.parameters("paper", popdb="songs.csv")
    with pytest.raises(ValueError, match="override 'nonsense'"):
        book.parameters("paper", popdb="popdb", overrides={"nonsense": 1})
    assert book.parameters("smoke")["SONGLIST"] == ""  # an offline corpus needs neither


def test_cli_book_run_passes_the_paper_flags(monkeypatch):
    from samuel import cli

    calls = []
    monkeypatch.setattr(book, "run", lambda *a, **k: calls.append((a, k)))
    assert cli.main(["book", "run", "--profile", "paper", "--popdb", "P", "--vae", "V",
                     "--device", "cpu", "--set", "train__max_steps=3", "--no-html"]) == 0
    (args, kwargs), = calls
    assert args == ("paper",) and kwargs["popdb"] == "P" and kwargs["songlist"] is None
    assert kwargs["vae"] == "V" and kwargs["device"] == "cpu" and kwargs["html"] is False
    assert kwargs["overrides"] == {"train__max_steps": 3}
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["book", "run", "--songlist", "a.csv", "--popdb", "P"])


def test_setup_lines_keep_the_demo_and_name_where_paper_runs(monkeypatch):
    monkeypatch.delenv("SAMUEL_VAE", raising=False)
    demo = show.config_lines(config.load("demo"))
    assert "vae" not in demo and "runs on" not in demo and len(demo.splitlines()) == 5
    paper = show.config_lines(config.load("paper", device="cpu", data__vae="/x/vae"))
    assert paper.splitlines()[-1] == "runs on: device=cpu, vae=/x/vae"
    assert "the hub (stabilityai/stable-audio-open-1.0)" in show.config_lines(config.load("paper"))


def test_another_device_or_vae_is_the_same_training():
    a = config.load("paper").to_dict()
    b = config.load("paper", device="cpu", data__vae="/x", eval__max_clips=3).to_dict()
    assert runs.training_fields(a) == runs.training_fields(b)
    c = config.load("paper", train__max_steps=7).to_dict()
    assert runs.training_fields(a) != runs.training_fields(c)


def test_paper_evaluation_is_bounded():
    assert config.load("paper").eval.max_clips == 200
    assert config.load("demo").eval.max_clips == 0 and config.load("smoke").eval.max_clips == 0
    assert config.load("paper", max_clips=8).eval.max_clips == 8


def test_sample_rows_and_zscore_check_read_a_split_in_blocks(tmp_path):
    from samuel.data import store

    rng = np.random.default_rng(0)
    path = tmp_path / "a.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(3000, 4, 8))
    array[:] = rng.normal(3.0, 2.0, (3000, 4, 8)).astype(np.float32)
    array.flush()
    base = np.load(path, mmap_mode="r")
    sample = runs.sample_rows(base, n=1024)
    assert sample.shape == (1024, 4, 8) and sample.dtype == np.float32
    assert np.array_equal(runs.sample_rows(base, n=1024), sample)  # seeded
    assert np.array_equal(runs.sample_rows(base[:10], n=1024), np.asarray(base[:10]))
    stats = {"mean": store.channel_stats(base)["mean"], "std": store.channel_stats(base)["std"]}
    check = runs.zscore_check(store.NormalisedArray(base, stats["mean"], stats["std"]))
    assert check["channel_means_ok"] and check["channel_stds_ok"]
    assert f"{check['mean']:.3f}" == "0.000"
    off = runs.zscore_check(base)  # not z-scored: mean 3, std 2
    assert not off["channel_means_ok"] and not off["channel_stds_ok"] and off["mean"] == pytest.approx(3, abs=0.1)


def test_excerpts_read_only_what_is_heard(tmp_path):
    import soundfile as sf

    from samuel import audio

    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3 * 44100, 2)).astype(np.float32)
    sf.write(str(tmp_path / "a.wav"), x, 44100, subtype="FLOAT")
    sf.write(str(tmp_path / "b.wav"), x[::2], 22050, subtype="FLOAT")  # resampled: read whole
    whole = audio.load(tmp_path / "a.wav")
    assert np.array_equal(show._excerpt(tmp_path / "a.wav", 1.5), whole[:, : int(1.5 * 44100)])
    assert np.array_equal(show._excerpt(tmp_path / "a.wav", None), whole)
    assert np.array_equal(show._excerpt(tmp_path / "b.wav", 1.0), audio.load(tmp_path / "b.wav")[:, :44100])
    with pytest.raises(audio.AudioError, match="missing.wav: expected an audio file"):
        show._excerpt(tmp_path / "missing.wav", 1.0)


def test_record_names_the_profile_without_printing_it(tmp_path, capsys):
    run = runs.run_paths("paper", tmp_path)
    runs.record({"x": 1.0}, run, "07_x.ipynb")
    assert json.loads((tmp_path / "results" / "07_x.json").read_text()) == {"profile": "paper", "x": 1.0}
    assert capsys.readouterr().out.strip() == "x : 1.0"


# ----------------------------------------------------------------------------- the rehearsals
def _sat_config(c: dict) -> dict:
    """``model_config.json`` of a stable-audio-tools diffusion model whose autoencoder (the
    pretransform) is an Oobleck VAE of diffusers' configuration ``c``."""
    enc = dict(in_channels=2, channels=c["encoder_hidden_size"], c_mults=c["channel_multiples"],
               strides=c["downsampling_ratios"], latent_dim=c["encoder_hidden_size"], use_snake=True)
    dec = dict(out_channels=2, channels=c["decoder_channels"], c_mults=c["channel_multiples"],
               strides=c["downsampling_ratios"], latent_dim=c["decoder_input_channels"],
               use_snake=True, final_tanh=False)
    return {"model_type": "diffusion_cond", "sample_rate": 44100, "sample_size": 2097152,
            "model": {"pretransform": {"type": "autoencoder", "iterate_batch": True, "config": {
                "encoder": {"type": "oobleck", "requires_grad": False, "config": enc},
                "decoder": {"type": "oobleck", "config": dec}, "bottleneck": {"type": "vae"},
                "latent_dim": c["decoder_input_channels"], "downsampling_ratio": 2048,
                "io_channels": 2}}}}


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    """A random-weight Oobleck saved as a stable-audio-tools checkpoint folder."""
    import torch
    from diffusers import AutoencoderOobleck
    from safetensors.torch import save_file

    from samuel.codecs.sao import SAT_PREFIX, diffusers_to_sat_state_dict

    torch.manual_seed(0)
    vae = AutoencoderOobleck(**TINY_VAE).eval()
    with torch.no_grad():  # Snake alphas/betas start at 0: randomise them, as trained ones are
        for name, p in vae.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp("sao_vae")
    (folder / "model_config.json").write_text(json.dumps(_sat_config(TINY_VAE)))
    state = {k: v.contiguous() for k, v in diffusers_to_sat_state_dict(vae.state_dict()).items()}
    assert all(k.startswith(SAT_PREFIX) for k in state)
    save_file(state, str(folder / "model.safetensors"))
    return folder


def _demo_keys(name: str) -> list[str]:
    """The result keys the committed (demo) notebook's last cell printed."""
    nb = nbformat.read(str(book.NOTEBOOK_DIR / name), as_version=4)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return [line.split(" : ")[0].strip() for line in text.splitlines() if " : " in line]


def _outputs(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    return json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])


@pytest.fixture
def kernel_env(monkeypatch):
    """One OpenMP thread per notebook kernel: on 2 shared cores, two threads of a tiny model's
    convolutions spin against any other busy process (measured: 50x slower); and no VAE folder
    from this machine's environment (the rehearsal passes its own)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("SAMUEL_VAE", raising=False)


def _rehearse(run_dir: Path, vae: Path, **source) -> dict:
    summary = book.run("paper", run_dir=run_dir, html=False, overrides=dict(SIZE), vae=vae,
                       device="cpu", progress=False, **source)
    print("\nrehearsal", list(source), "seconds per notebook:", summary["seconds"],
          "total", summary["total_seconds"])
    assert list(summary["seconds"]) == list(book.NOTEBOOKS)
    results = {}
    for name in book.NOTEBOOKS:
        stem = Path(name).stem
        saved = json.loads((run_dir / "results" / f"{stem}.json").read_text())
        assert saved.pop("profile") == "paper", name
        assert sorted(saved) == sorted(_demo_keys(name)), f"{name}: the paper run records other keys"
        results[stem] = saved
    executed = run_dir / "book" / "notebooks"
    outputs = {Path(n).stem: _outputs(executed / n) for n in book.NOTEBOOKS}
    for stem in ("01_data_collection", "02_vae_encoding", "06_evaluation"):
        assert "<audio" in outputs[stem], f"{stem}: expected audio players"
    assert "image/png" in outputs["02_vae_encoding"]
    assert "runs on: device=cpu, vae=" in outputs["01_data_collection"]
    nb2 = results["02_vae_encoding"]
    assert nb2["codec"] == "sao" and nb2["latent_channels"] == 64
    assert nb2["frames_per_second"] == pytest.approx(44100 / 2048, abs=1e-3)
    assert results["03_model"]["paper_within_15M_20pct"] is True
    assert results["04_training"]["max_steps"] == 20 and results["04_training"]["device"] == "cpu"
    evaluation = json.loads((run_dir / "evaluation" / "results.json").read_text())
    assert evaluation["profile"] == "paper" and evaluation["codec"] == "sao"
    assert evaluation["n_clips"] == results["06_evaluation"]["n_clips"] == SIZE["eval__max_clips"]
    assert evaluation["n_songs"] == 2
    assert evaluation["truth_sources"] == {"estimated from the true accompaniment": 8}
    assert evaluation["efficiency"]["codec_parameters"] > 0
    return results


@pytest.mark.slow
def test_rehearsal_from_a_song_list(tmp_path, tiny_vae, kernel_env):
    """Song list (file:// URLs) -> yt-dlp -> Demucs -> SAO codec -> POPDB -> the whole book."""
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg: expected the command (yt-dlp needs it; `make system`), found none")
    from samuel.data.synth import render_corpus

    records = render_corpus(tmp_path / "songs", SONGS, SONG_SECONDS, seed=0, progress=False)
    lines = ["title,artist,url"] + [f"Rehearsal song {i},Synth,{Path(r['mix']).as_uri()}"
                                    for i, r in enumerate(records)]
    (tmp_path / "songs.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    results = _rehearse(run, tiny_vae, songlist=tmp_path / "songs.csv")

    data = results["01_data_collection"]
    assert data["songs"] == SONGS and data["failed"] == 0 and data["splits_disjoint"] is True
    assert (data["chunks_train"], data["chunks_val"], data["chunks_test"]) == (8, 4, 8)
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert {r["state"] for r in manifest["songs"].values()} == {"encoded"}
    for song_id, r in manifest["songs"].items():  # the layout of downloaded songs
        assert r["paths"]["audio"] == f"audio/{song_id}.wav" and (run / "data" / r["paths"]["audio"]).is_file()
        assert (run / "data" / "stems" / song_id / "vocals.wav").is_file()
    assert not (run / "data" / "songs").exists()  # no truth, no corpus folders
    prov = json.loads((run / "data" / "provenance.json").read_text())
    assert prov["profile"] == "paper" and prov["source"] == "songlist" and prov["codec"]["name"] == "sao"
    assert prov["data"]["separator"] == "demucs_unittest"


@pytest.mark.slow
def test_rehearsal_from_popdb_as_published(tmp_path, tiny_vae, kernel_env):
    """The published POPDB's two arrays, nothing else -> an index -> the whole book."""
    rng = np.random.default_rng(0)
    src = tmp_path / "encodedsongs"
    src.mkdir()
    shape = (POPDB_ROWS, 64, SIZE["data__chunk_frames"])
    level = rng.normal(0, 1, (1, 64, 1))
    vocal = (level + rng.normal(0, 0.5, shape)).astype(np.float32)
    accomp = (0.5 * vocal + rng.normal(0, 0.5, shape)).astype(np.float32)  # related to the vocal
    np.save(src / "latent_vocal.npy", vocal)
    np.save(src / "latent_accomp.npy", accomp)
    run = tmp_path / "run"
    results = _rehearse(run, tiny_vae, popdb=src)

    data = results["01_data_collection"]
    assert data["songs"] == 5 and data["failed"] == 0 and data["splits_disjoint"] is True
    assert data["chunks_train"] + data["chunks_val"] + data["chunks_test"] == POPDB_ROWS
    assert data["chunk_seconds"] == pytest.approx(16 * 2048 / 44100, abs=1e-3)
    assert (run / "data" / "popdb" / "index.json").is_file()
    assert not list((run / "data").rglob("*.npy")), "the published arrays are read, not copied"
    assert sorted(p.name for p in src.iterdir()) == ["latent_accomp.npy", "latent_vocal.npy"]
    assert not (run / "data" / "songs").exists() and not (run / "data" / "stems").exists()
