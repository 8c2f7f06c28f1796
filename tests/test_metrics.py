"""samuel.evaluate.metrics: the fit metrics on synthetic audio with known answers, the
Fréchet distances, intervals, and the shuffled-vocal derangement."""
import numpy as np
import pytest

from samuel.audio import SAMPLE_RATE
from samuel.evaluate import metrics

SR = SAMPLE_RATE
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



def test_chroma_agreement_same_harmony_high_transposed_low():
    a = progression()
    assert metrics.chroma_agreement(a, a) > 0.95
    assert metrics.chroma_agreement(np.stack([a, a]), a) > 0.95  # stereo in, mono reference
    assert metrics.chroma_agreement(a, progression(shift=6)) < 0.2


def test_key_agreement_right_key_one_wrong_key_lower():
    a = progression()
    assert metrics.estimate_key(a)[:2] == (0, "major")
    assert metrics.key_agreement(a, 0, "major") == 1.0
    assert metrics.key_agreement(a, 6, "major") == 0.0  # a tritone away
    assert metrics.key_agreement(a, 5, "major") == 0.5  # the estimate is a fifth above F major
    assert metrics.key_agreement(a, 9, "minor") == pytest.approx(0.3)  # relative minor
    minor = progression([[0, 3, 7], [5, 8, 0], [7, 11, 2], [0, 3, 7]], shift=2)
    assert metrics.estimate_key(minor)[:2] == (2, "minor")


def test_beat_alignment_on_beats_beats_off_beats():
    seconds, beat = 6.0, 0.5  # 120 bpm
    beats = np.arange(0.25, seconds - 0.3, beat)
    on = metrics.beat_alignment(clicks(beats, seconds), beats)
    off = metrics.beat_alignment(clicks(beats + beat / 2, seconds), beats)
    assert on > 1.5 > 1.0 > off
    assert np.isnan(metrics.beat_alignment(clicks(beats, seconds), [-1.0, 99.0]))  # no beat in the clip
    assert metrics.beat_alignment(np.zeros(SR, np.float32), [0.5]) == 0.0  # silence


def test_frechet_distance_identical_shifted_and_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 5))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.zeros(5)
    shift[0] = 3.0
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(9.0, rel=1e-6)
    x, y = rng.normal(1.0, 2.0, (300, 1)), rng.normal(-0.5, 0.5, (400, 1))
    closed = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert metrics.frechet_distance(x, y) == pytest.approx(closed, rel=1e-9)


def test_fad_on_clip_features_and_real_vs_real():
    rng = np.random.default_rng(1)
    real = [progression(shift=int(k)) + 0.01 * rng.standard_normal(4 * SR).astype(np.float32)
            for k in range(6)]
    noise = [0.1 * rng.standard_normal(4 * SR).astype(np.float32) for _ in range(6)]
    f = metrics.clip_features(real[0])
    assert f.shape == (2 * metrics.N_MELS + 24 + 2,) and np.isfinite(f).all()
    same = metrics.fad(real, real, bootstrap=20)
    far = metrics.fad(noise, real, bootstrap=20)
    assert same["mean"] == pytest.approx(0.0, abs=1e-3)
    assert far["mean"] > 10 * max(same["mean"], 1e-3) and far["lo"] <= far["mean"] <= far["hi"]
    rr = metrics.real_vs_real(np.stack([metrics.clip_features(x) for x in real]), bootstrap=20)
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
    frames = [metrics.frame_features(x) for x in real]
    assert frames[0].shape[1] == metrics.FRAME_BLOCKS[-1][1] == metrics.N_MELS + 13
    np.testing.assert_allclose(metrics.clip_features_from_frames(frames[0]), metrics.clip_features(real[0]))
    perm = metrics.derangement(["a", "b", "c", "d"])
    z = metrics.frame_standardiser(frames)
    pooled = z(np.concatenate(frames))
    for lo, hi in metrics.FRAME_BLOCKS:  # timbre, harmony and rhythm weigh alike
        assert pooled[:, lo:hi].var(0).sum() == pytest.approx(1.0, rel=1e-6)
    own = [metrics.paired_frechet(frames[i], frames[i], z) for i in range(4)]
    other = [metrics.paired_frechet(frames[perm[i]], frames[i], z) for i in range(4)]
    assert max(own) == pytest.approx(0.0, abs=1e-6) and min(other) > 0.5
    clip = np.stack([metrics.clip_features_from_frames(f) for f in frames])
    set_own = metrics.fad_from_features(clip, clip, bootstrap=0)["mean"]
    set_other = metrics.fad_from_features(clip[perm], clip, bootstrap=0)["mean"]
    assert set_own == pytest.approx(set_other, abs=1e-6)
    assert metrics.other_segment(["a", "a", "b", "a", "c"]) == [1, 3, None, 0, None]


def test_mean_ci_covers_the_mean():
    from scipy import stats

    x = np.random.default_rng(2).normal(5.0, 1.0, 40)
    m, lo, hi = metrics.mean_ci(x)
    assert lo < m < hi and m == pytest.approx(x.mean())
    half = stats.t.ppf(0.975, 39) * x.std(ddof=1) / np.sqrt(40)
    assert hi - m == pytest.approx(half)
    mb, lob, hib = metrics.mean_ci(x, method="bootstrap", seed=3)
    assert lob < mb < hib and (lob, hib) == metrics.mean_ci(x, method="bootstrap", seed=3)[1:]
    assert metrics.mean_ci([1.0, np.nan, 3.0])[0] == 2.0
    assert np.isnan(metrics.mean_ci([1.0])[1])


def test_beats_handles_direction_and_overlap():
    hi = {"lo": 0.6, "hi": 0.8}
    lo = {"lo": 0.1, "hi": 0.3}
    assert metrics.beats(hi, lo) and not metrics.beats(lo, hi)
    assert metrics.beats(lo, hi, higher_is_better=False)  # e.g. FAD: lower wins
    assert not metrics.beats(hi, {"lo": 0.5, "hi": 0.7}) and metrics.overlap(hi, {"lo": 0.5, "hi": 0.7})
    assert not metrics.beats(hi, {"lo": None, "hi": None})


@pytest.mark.parametrize("ids", [
    ["a", "a", "b", "b", "c", "c", "c"],
    ["s0"] * 4 + ["s1"] * 4,
    ["x"] * 5 + ["y", "z"],  # one song holds most clips: not a permutation, still other songs
    [f"s{i % 5}" for i in range(23)],
])
def test_derangement_never_maps_a_clip_to_its_own_song(ids):
    perm = metrics.derangement(ids, seed=4)
    assert all(ids[j] != ids[i] for i, j in enumerate(perm))
    assert np.array_equal(perm, metrics.derangement(ids, seed=4))
    if 2 * max(ids.count(s) for s in set(ids)) <= len(ids):
        assert sorted(perm) == list(range(len(ids)))


def test_derangement_needs_two_songs():
    with pytest.raises(ValueError, match="two"):
        metrics.derangement(["a", "a", "a"])


def test_select_clips_round_robin_over_songs():
    ids = ["a", "a", "a", "b", "b", "c"]
    assert metrics.select_clips(ids, 3) == [0, 3, 5]
    assert metrics.select_clips(ids, None) == list(range(6))
