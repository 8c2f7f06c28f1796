"""samuel.evaluate: the evaluation run on a tiny fake POPDB with an untrained model (context,
conditions, samplers, efficiency, report), and the clips' ground truth."""
import csv
import json
import math

import numpy as np
import pytest

from samuel import codecs, config, evaluate as ev
from samuel.audio import save as save_audio
from samuel.data.compose import PITCH_NAMES
from samuel.io import save_npy, write_json
from test_metrics import SR, clicks, progression, tone


def test_clip_truth_shifts_beats_to_clip_time():
    truth = {"tonic_pc": 2, "mode": "minor", "beat_times": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]}
    t = ev.clip_truth(truth, offset_seconds=1.0, seconds=1.2)
    assert t["beat_times"] == [0.0, 0.5, 1.0] and t["source"] == "truth.json"


def test_clip_truth_is_estimated_from_the_true_accompaniment_without_truth_json():
    beats = list(np.arange(0.25, 3.7, 0.5))
    ref = progression() + clicks(beats, 4.0)
    t = ev.clip_truth(None, offset_seconds=0.0, seconds=4.0, ref_audio=ref)
    assert (t["tonic_pc"], t["mode"]) == (0, "major") and t["source"].startswith("estimated")
    assert len(t["beat_times"]) >= 4 and all(0 <= b < 4.0 for b in t["beat_times"])
    with pytest.raises(ValueError, match="no truth.json and no reference audio"):
        ev.clip_truth({"key": "C major"}, 0.0, 4.0)  # a truth.json without tonic and beats
    assert ev.truth_note({"truth.json": 2}, {}) == "key and beats of all 2 clips from the songs' truth.json"
    note = ev.truth_note({"truth.json": 1, t["source"]: 3}, {"layout": "published POPDB index"})
    assert note.startswith("key and beats of 3 of 4 clips estimated") and "published POPDB" in note


def test_prepare_names_what_is_wrong(tmp_path):
    from samuel.model import build

    cfg = config.load("smoke")
    with pytest.raises(ValueError, match="unknown sampler 'slow': expected 'fast' or 'ancestral'"):
        ev.prepare(cfg, checkpoint=build(cfg), data_dir=tmp_path, sampler="slow")
    fake_data(tmp_path / "data", cfg)
    (tmp_path / "data" / "popdb" / "stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="no normalisation statistics"):
        ev.prepare(cfg, checkpoint=build(cfg), data_dir=tmp_path / "data")


def test_a_missing_checkpoint_reads_as_in_samuel_generate(tmp_path):
    """The evaluation and ``samuel generate`` find their model with one resolver: the same
    sentence, naming the folder, for a checkpoint that is not there."""
    from samuel import checkpoint, generate

    cfg = config.load("smoke")
    with pytest.raises(checkpoint.CheckpointError) as evaluating:
        ev.prepare(cfg, checkpoint=tmp_path / "nope", data_dir=tmp_path)
    vocal = tmp_path / "v.wav"
    save_audio(vocal, 0.1 * np.sin(np.linspace(0, 2000, 2 * SR, dtype=np.float32))[None], SR)
    with pytest.raises(checkpoint.CheckpointError) as generating:
        generate.generate(vocal, tmp_path / "a.wav", checkpoint=tmp_path / "nope", progress=False)
    assert str(evaluating.value) == str(generating.value)
    assert str(evaluating.value).startswith(f"{tmp_path / 'nope'}: expected a SAMUeL checkpoint, "
                                            "found no such folder")


# --------------------------------------------------------------------------- end to end


def fake_data(root, cfg):
    """A tiny test split as the data stage writes it: three songs, two chunks each."""
    codec = codecs.load("offline")
    chunk = cfg.data.chunk_frames
    seconds = 2 * chunk / codec.frames_per_second
    vocal_rows, accomp_rows, rows = [], [], []
    for s, tonic in enumerate((0, 7, 9)):
        song_id = f"synth_{s:04d}"
        beats = list(np.round(np.arange(0.0, seconds, 0.5), 6))
        vocal = tone([tonic], seconds + 0.1, octave=5)
        harmony = progression(shift=tonic, seconds=(seconds + 0.1) / 4)
        accomp = harmony + clicks(beats, len(harmony) / SR)
        save_audio(root / "songs" / song_id / "vocals.wav", vocal)
        lat_v = codec.encode(vocal, SR)[:, : 2 * chunk]
        lat_a = codec.encode(accomp, SR)[:, : 2 * chunk]
        for j in range(2):
            rows.append({"row": len(rows), "song_id": song_id, "offset_frame": j * chunk,
                         "offset_seconds": round(j * chunk / codec.frames_per_second, 4)})
            vocal_rows.append(lat_v[:, j * chunk:(j + 1) * chunk])
            accomp_rows.append(lat_a[:, j * chunk:(j + 1) * chunk])
        write_json(root / "songs" / song_id / "truth.json",
                   {"key": f"{PITCH_NAMES[tonic]} major", "tonic_pc": tonic, "mode": "major",
                    "tempo_bpm": 120.0, "beat_times": beats, "downbeat_times": beats[::4],
                    "chords": []})
    test = root / "popdb" / "test"
    vocals, accomp = np.stack(vocal_rows), np.stack(accomp_rows)
    save_npy(test / "latent_vocal.npy", vocals.astype(np.float32))
    save_npy(test / "latent_accomp.npy", accomp.astype(np.float32))
    write_json(test / "chunks.json", {"count": len(rows), "channels": 64, "chunk_frames": chunk,
                                      "frames_per_second": codec.frames_per_second, "rows": rows})
    stats = {stem: {"mean": x.mean(axis=(0, 2)).tolist(), "std": x.std(axis=(0, 2)).tolist()}
             for stem, x in (("vocal", vocals), ("accomp", accomp))}
    write_json(root / "popdb" / "stats.json", stats)


def test_evaluate_end_to_end_on_a_tiny_fake_popdb(tmp_path, tmp_runs, monkeypatch):
    from samuel.model import build

    monkeypatch.delenv("SAMUEL_AUDIOBOX_CKPT", raising=False)
    cfg = config.load("smoke", timesteps=10, fast_steps=2)
    data = tmp_path / "data"
    fake_data(data, cfg)
    model = build(cfg)
    out = tmp_path / "evaluation"
    res = ev.evaluate(cfg, checkpoint=model, data_dir=data, out_dir=out, max_clips=2,
                      progress=False, batch_size=2, sampler_clips=2,
                      codec=codecs.load("offline", griffin_lim_iters=4))

    assert res["n_clips"] == 2 and res["n_songs"] == 2  # round-robin: one clip per song
    assert all(c["song_id"] != c["shuffled_vocal_from"] for c in res["clips"])
    for c in ev.CONDITIONS:
        for m in ev.METRICS:
            assert set(res["fit"][c][m]) >= {"mean", "lo", "hi", "n"}
    assert set(res["fit"]["real"]) == {"key", "beat", "frechet", "fad"}
    assert "fad" in res["fit"]["conditioned"] and "fad" not in res["beats_baselines"]
    assert set(res["beats_baselines"]) == set(ev.METRICS)
    assert all(isinstance(v, bool) for v in res["beats_baselines"].values())
    s = res["samplers"]
    assert s["clips"] == 2 and s["ancestral"]["steps"] == 10 and s["fast"]["steps"] == 2
    assert isinstance(s["equal_fit"], bool) and math.isfinite(s["speed_ratio"])  # wall time: printed
    e = res["efficiency"]
    assert e["parameters"] == sum(p.numel() for p in model.parameters()) and e["codec_parameters"] == 0
    assert math.isfinite(e["fast_seconds_per_47s_clip"])
    assert e["peak_rss_mib"] > 0 and e["scaled_to_frames"] == 1024
    assert res["audiobox"]["available"] is False and res["audiobox"]["reason"]
    assert res["truth_sources"] == {"truth.json": 2}
    rough = res["roughness"]
    assert set(rough["ratio"]) == set(ev.CONDITIONS) and rough["features"]["real"]["mean"] > 0
    assert rough["ratio"]["null"] == pytest.approx(
        rough["features"]["null"]["mean"] / rough["features"]["real"]["mean"])
    assert set(rough["blocks"]["real"]) == {"mel", "chroma", "onset"}

    on_disk = json.loads((out / "results.json").read_text())  # strict JSON: no NaN
    assert on_disk["beats_baselines"] == res["beats_baselines"]
    with open(out / "fit.csv") as f:
        fit_rows = list(csv.DictReader(f))
    assert {r["condition"] for r in fit_rows} == {*ev.CONDITIONS, "real"}
    for name in ("samplers.csv", "efficiency.csv", "fit.png", "samplers.png"):
        assert (out / name).stat().st_size > 0
    wavs = sorted(p.name for p in (out / "examples").glob("*.wav"))
    assert len(wavs) == 8 and any(w.endswith("_mix.wav") for w in wavs)

    table = ev.format_table(res)
    assert "conditioned beats shuffled and null on chroma: " in table
    assert "Efficiency" in table and "AudioBox-Aesthetics: not available" in table
    from samuel.evaluate import report

    assert "roughness (frame to frame" in table and "roughness (frame to frame" in str(report.fit_table(res))
    assert ev.format_table(on_disk) == table  # the report reads results.json back

    # the conditions' scores do not depend on whether the samplers are compared as well
    again = ev.evaluate(cfg, checkpoint=model, data_dir=data, out_dir=tmp_path / "again",
                        max_clips=2, progress=False, batch_size=2, compare_samplers=False,
                        n_examples=0, codec=codecs.load("offline", griffin_lim_iters=4))
    assert again["fit"] == res["fit"] and again["per_clip"] == res["per_clip"]
    assert again["samplers"] == {"skipped": True}
    assert "ancestral_seconds_per_47s_clip" not in again["efficiency"]
    assert "sampler comparison: skipped" in ev.format_table(again)
    assert (tmp_path / "again" / "samplers.csv").read_text().count("\n") == 1  # the header only
    assert not (tmp_path / "again" / "examples").exists()

    # max_clips=0 is every clip, as the configuration's 0 is
    every = ev.evaluate(cfg, checkpoint=model, data_dir=data, out_dir=tmp_path / "every",
                        max_clips=0, progress=False, batch_size=2, compare_samplers=False,
                        n_examples=0, codec=codecs.load("offline", griffin_lim_iters=4))
    assert every["n_clips"] == 6 and every["n_songs"] == 3
