"""Evaluation (SPEC §7): metrics on synthetic audio with known answers, the shuffled-vocal
derangement, intervals, and one end-to-end run on a tiny fake POPDB with an untrained model."""
import csv
import json

import numpy as np
import pytest

from samuel import codecs, config, evaluate as ev
from samuel.audio import save as save_audio
from samuel.io import save_npy, write_json

SR = 44100
C_MAJOR = [[0, 4, 7], [5, 9, 0], [7, 11, 2], [0, 4, 7]]  # I IV V I


def tone(pcs, seconds, octave=4):
    """Sines (fundamental + octave) on the pitch classes ``pcs``, ``[N]`` at 44.1 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for pc in pcs:
        f = 440.0 * 2 ** ((12 * (octave + 1) + pc - 69) / 12)
        y += np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)
    return (0.2 * y / len(pcs)).astype(np.float32)


def progression(chords=C_MAJOR, seconds=1.0, shift=0):
    return np.concatenate([tone([(p + shift) % 12 for p in c], seconds) for c in chords])


def clicks(times, seconds):
    y = np.zeros(int(seconds * SR), np.float32)
    burst = np.random.default_rng(0).standard_normal(400).astype(np.float32) * np.hanning(400)
    for t in times:
        i = int(t * SR)
        y[i:i + 400] += burst[: len(y[i:i + 400])]
    return 0.5 * y


# --------------------------------------------------------------------------- metrics


def test_chroma_agreement_same_harmony_high_transposed_low():
    a = progression()
    assert ev.chroma_agreement(a, a) > 0.95
    assert ev.chroma_agreement(np.stack([a, a]), a) > 0.95  # stereo in, mono reference
    assert ev.chroma_agreement(a, progression(shift=6)) < 0.2


def test_key_agreement_right_key_one_wrong_key_lower():
    a = progression()
    assert ev.estimate_key(a)[:2] == (0, "major")
    assert ev.key_agreement(a, 0, "major") == 1.0
    assert ev.key_agreement(a, 6, "major") == 0.0  # a tritone away
    assert ev.key_agreement(a, 5, "major") == 0.5  # the estimate is a fifth above F major
    assert ev.key_agreement(a, 9, "minor") == pytest.approx(0.3)  # relative minor
    minor = progression([[0, 3, 7], [5, 8, 0], [7, 11, 2], [0, 3, 7]], shift=2)
    assert ev.estimate_key(minor)[:2] == (2, "minor")


def test_beat_alignment_on_beats_beats_off_beats():
    seconds, beat = 6.0, 0.5  # 120 bpm
    beats = np.arange(0.25, seconds - 0.3, beat)
    on = ev.beat_alignment(clicks(beats, seconds), beats)
    off = ev.beat_alignment(clicks(beats + beat / 2, seconds), beats)
    assert on > 1.5 > 1.0 > off
    assert np.isnan(ev.beat_alignment(clicks(beats, seconds), [-1.0, 99.0]))  # no beat in the clip
    assert ev.beat_alignment(np.zeros(SR, np.float32), [0.5]) == 0.0  # silence


def test_frechet_distance_identical_shifted_and_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 5))
    assert ev.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.zeros(5)
    shift[0] = 3.0
    assert ev.frechet_distance(a, a + shift) == pytest.approx(9.0, rel=1e-6)
    x, y = rng.normal(1.0, 2.0, (300, 1)), rng.normal(-0.5, 0.5, (400, 1))
    closed = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert ev.frechet_distance(x, y) == pytest.approx(closed, rel=1e-9)


def test_fad_on_clip_features_and_real_vs_real():
    rng = np.random.default_rng(1)
    real = [progression(shift=int(k)) + 0.01 * rng.standard_normal(4 * SR).astype(np.float32)
            for k in range(6)]
    noise = [0.1 * rng.standard_normal(4 * SR).astype(np.float32) for _ in range(6)]
    f = ev.clip_features(real[0])
    assert f.shape == (2 * ev.N_MELS + 24 + 2,) and np.isfinite(f).all()
    same = ev.fad(real, real, bootstrap=20)
    far = ev.fad(noise, real, bootstrap=20)
    assert same["mean"] == pytest.approx(0.0, abs=1e-3)
    assert far["mean"] > 10 * max(same["mean"], 1e-3) and far["lo"] <= far["mean"] <= far["hi"]
    rr = ev.real_vs_real(np.stack([ev.clip_features(x) for x in real]), bootstrap=20)
    assert rr["n"] == 6 and rr["mean"] >= 0


def test_paired_frechet_sees_the_pairing_the_set_distance_cannot():
    """Oracle accompaniments: each vocal's own true accompaniment vs the true accompaniment of
    another song (the perfect answer to a shuffled vocal). The set-level distance is the same
    for both (the same set of clips), the paired one is 0 for the own and > 0 for the other."""
    rng = np.random.default_rng(3)
    real = []
    for k in range(4):  # four songs: keys 0, 3, 6, 9 and different click tempi
        y = progression(shift=3 * k) + clicks(np.arange(0, 4, 0.3 + 0.1 * k), 4.0)
        real.append(y + 0.01 * rng.standard_normal(y.size).astype(np.float32))
    frames = [ev.frame_features(x) for x in real]
    assert frames[0].shape[1] == ev.FRAME_BLOCKS[-1][1] == ev.N_MELS + 13
    np.testing.assert_allclose(ev.clip_features_from_frames(frames[0]), ev.clip_features(real[0]))
    perm = ev.derangement(["a", "b", "c", "d"])
    z = ev.frame_standardiser(frames)
    pooled = z(np.concatenate(frames))
    for lo, hi in ev.FRAME_BLOCKS:  # timbre, harmony and rhythm weigh alike
        assert pooled[:, lo:hi].var(0).sum() == pytest.approx(1.0, rel=1e-6)
    own = [ev.paired_frechet(frames[i], frames[i], z) for i in range(4)]
    other = [ev.paired_frechet(frames[perm[i]], frames[i], z) for i in range(4)]
    assert max(own) == pytest.approx(0.0, abs=1e-6) and min(other) > 0.5
    clip = np.stack([ev.clip_features_from_frames(f) for f in frames])
    set_own = ev.fad_from_features(clip, clip, bootstrap=0)["mean"]
    set_other = ev.fad_from_features(clip[perm], clip, bootstrap=0)["mean"]
    assert set_own == pytest.approx(set_other, abs=1e-6)
    assert ev.other_segment(["a", "a", "b", "a", "c"]) == [1, 3, None, 0, None]


def test_mean_ci_covers_the_mean():
    from scipy import stats

    x = np.random.default_rng(2).normal(5.0, 1.0, 40)
    m, lo, hi = ev.mean_ci(x)
    assert lo < m < hi and m == pytest.approx(x.mean())
    half = stats.t.ppf(0.975, 39) * x.std(ddof=1) / np.sqrt(40)
    assert hi - m == pytest.approx(half)
    mb, lob, hib = ev.mean_ci(x, method="bootstrap", seed=3)
    assert lob < mb < hib and (lob, hib) == ev.mean_ci(x, method="bootstrap", seed=3)[1:]
    assert ev.mean_ci([1.0, np.nan, 3.0])[0] == 2.0
    assert np.isnan(ev.mean_ci([1.0])[1])


def test_beats_handles_direction_and_overlap():
    hi = {"lo": 0.6, "hi": 0.8}
    lo = {"lo": 0.1, "hi": 0.3}
    assert ev.beats(hi, lo) and not ev.beats(lo, hi)
    assert ev.beats(lo, hi, higher_is_better=False)  # e.g. FAD: lower wins
    assert not ev.beats(hi, {"lo": 0.5, "hi": 0.7}) and ev.overlap(hi, {"lo": 0.5, "hi": 0.7})
    assert not ev.beats(hi, {"lo": None, "hi": None})


@pytest.mark.parametrize("ids", [
    ["a", "a", "b", "b", "c", "c", "c"],
    ["s0"] * 4 + ["s1"] * 4,
    ["x"] * 5 + ["y", "z"],  # one song holds most clips: not a permutation, still other songs
    [f"s{i % 5}" for i in range(23)],
])
def test_derangement_never_maps_a_clip_to_its_own_song(ids):
    perm = ev.derangement(ids, seed=4)
    assert all(ids[j] != ids[i] for i, j in enumerate(perm))
    assert np.array_equal(perm, ev.derangement(ids, seed=4))
    if 2 * max(ids.count(s) for s in set(ids)) <= len(ids):
        assert sorted(perm) == list(range(len(ids)))


def test_derangement_needs_two_songs():
    with pytest.raises(ValueError, match="two"):
        ev.derangement(["a", "a", "a"])


def test_select_clips_round_robin_over_songs():
    ids = ["a", "a", "a", "b", "b", "c"]
    assert ev.select_clips(ids, 3) == [0, 3, 5]
    assert ev.select_clips(ids, None) == list(range(6))


def test_clip_truth_shifts_beats_to_clip_time():
    truth = {"tonic_pc": 2, "mode": "minor", "beat_times": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]}
    t = ev.clip_truth(truth, offset_seconds=1.0, seconds=1.2)
    assert t["beat_times"] == [0.0, 0.5, 1.0] and t["source"] == "truth.json"


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
                   {"key": f"{ev.PITCH_NAMES[tonic]} major", "tonic_pc": tonic, "mode": "major",
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
    assert isinstance(s["equal_fit"], bool) and s["speed_ratio"] > 0
    e = res["efficiency"]
    assert e["parameters"] > 0 and e["codec_parameters"] == 0 and e["fast_seconds_per_47s_clip"] > 0
    assert e["peak_rss_mib"] > 0 and e["scaled_to_frames"] == 1024
    assert res["audiobox"]["available"] is False and res["audiobox"]["reason"]
    assert res["truth_sources"] == {"truth.json": 2}

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
