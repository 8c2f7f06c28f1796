"""samuel.evaluate.apa: the accompaniment prompt adherence on constructed pairs with known
answers (true pairs 1, a random re-pairing 0.5 or below, the re-paired set itself 0), its
clipping, its errors, the re-pairing and the synthetic evaluation's call."""
from types import SimpleNamespace

import numpy as np
import pytest

from samuel.evaluate import apa as apa_mod
from samuel.evaluate import metrics
from samuel.evaluate.conditions import Scores
from test_metrics import SR, tone


def pairs(n=300, d=6, noise=0.3, seed=0, clean=False):
    """Vocals ``[n, d]`` and accompaniments that follow them (a fixed linear map plus noise);
    with ``clean`` also the noise-free map scaled to the accompaniments' spread."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, d))
    w = rng.standard_normal((d, d))
    a = v @ w + noise * rng.standard_normal((n, d))
    if not clean:
        return v, a
    c = v @ w
    return v, a, (c - c.mean(0)) * (a.std(0) / c.std(0)) + a.mean(0)


def test_true_pairs_give_one_and_the_repaired_set_gives_zero():
    v, a = pairs()
    perm = apa_mod.repairing(len(v), seed=0)
    out = apa_mod.apa_conditions(v, a, {"true": a, "repaired": a[perm]}, seed=0)
    assert out["true"]["apa"] == pytest.approx(1.0, abs=1e-6)
    assert out["true"]["fd_c_r"] == pytest.approx(0.0, abs=1e-6)
    assert out["repaired"]["apa"] == pytest.approx(0.0, abs=1e-6)  # C = R' exactly
    assert out["true"]["fd_r_rr"] > 1.0 and out["true"]["n"] == len(v)


def test_another_random_repairing_scores_half_or_below():
    v, a = pairs()
    other = apa_mod.repairing(len(v), seed=7)
    res = apa_mod.apa(v, a, a[other], seed=0)
    assert res["apa"] <= 0.55  # as far from the true pairs as a random pairing is
    assert res["fd_c_r"] > 0.5 * res["fd_r_rr"]
    # a model that half follows the vocal lies in between
    rng = np.random.default_rng(3)
    mixed = np.where(rng.random(len(a))[:, None] < 0.5, a, a[other])
    mid = apa_mod.apa(v, a, mixed, seed=0)["apa"]
    assert res["apa"] + 0.1 < mid < 0.95


def test_clipped_to_zero_and_one():
    v, a, closer = pairs(noise=1.5, clean=True)
    # follows the vocal more closely than the true accompaniment does: beyond 1, clipped
    above = apa_mod.apa(v, a, closer, seed=0)
    assert above["raw"] > 1.0 and above["apa"] == 1.0
    # anti-correlated with the vocal: further from R than R' is, below 0, clipped
    below = apa_mod.apa(v, a, 2 * a.mean(0) - a, seed=0)
    assert below["raw"] < 0.0 and below["apa"] == 0.0


def test_bad_shapes_give_clear_errors():
    v, a = pairs(n=10)
    with pytest.raises(ValueError, match=r"expected vocal features \[N, Dv\]"):
        apa_mod.apa(v[:, 0], a, a)
    with pytest.raises(ValueError, match="one vocal per true accompaniment, found 9 vocals and 10"):
        apa_mod.apa(v[:9], a, a)
    with pytest.raises(ValueError, match=r"candidate 'candidate': expected .* \(10, 6\), found \(10, 5\)"):
        apa_mod.apa(v, a, a[:, :5])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        apa_mod.apa(v[:1], a[:1], a[:1])
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        apa_mod.apa(v, a, bad)
    with pytest.raises(ValueError, match="one group per pair"):
        apa_mod.repairing(10, groups=["a", "b"])


def test_repairing_never_stays_in_a_song_and_is_seeded():
    groups = [f"s{i // 3}" for i in range(12)]
    p = apa_mod.repairing(12, groups, seed=4)
    assert sorted(p) == list(range(12))
    assert all(groups[p[i]] != groups[i] for i in range(12))
    assert np.array_equal(p, apa_mod.repairing(12, groups, seed=4))
    assert not np.array_equal(p, apa_mod.repairing(12, groups, seed=5))
    q = apa_mod.repairing(5, seed=0)  # no groups: never a clip's own
    assert all(q[i] != i for i in range(5))


def test_apa_of_scores_on_the_synthetic_clips():
    """The synthetic evaluation's call: vocals decoded from the context, accompaniments from the
    frame features the scoring took. The true accompaniment as output gives 1."""
    songs = [f"song{i // 2}" for i in range(8)]
    vocal_audio = [tone([i % 12], 1.0, octave=5) for i in range(8)]
    accomp_frames = [metrics.frame_features(tone([i % 12, (i + 4) % 12], 1.0), SR) for i in range(8)]
    ctx = SimpleNamespace(n=8, sr=SR, seed=0, song_ids=songs, vocals=np.arange(8),
                          decode=lambda i, part: vocal_audio[int(i)])
    scores = Scores()
    shuffled = metrics.derangement(songs, seed=0)
    scores.frames_of = {"real": accomp_frames, "conditioned": list(accomp_frames),
                        "shuffled": [accomp_frames[j] for j in shuffled],
                        "null": [accomp_frames[0]] * 8}
    out = apa_mod.apa_of_scores(ctx, scores)
    assert out["conditioned"]["apa"] == pytest.approx(1.0, abs=1e-6)
    assert out["shuffled"]["apa"] < 0.9 and out["null"]["apa"] < 0.9
    assert "clip_features" in out["embedding"]


def test_clap_is_optional_and_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv(apa_mod.CLAP_ENV, raising=False)
    embed, note = apa_mod.clap_embedder()
    assert embed is None and apa_mod.CLAP_ENV in note and "offline features" in note
    with pytest.raises(FileNotFoundError, match="expected a CLAP checkpoint folder"):
        apa_mod.clap_embedder(tmp_path / "missing")
    try:
        import transformers  # noqa: F401
    except ImportError:
        embed, note = apa_mod.clap_embedder(tmp_path)
        assert embed is None and "transformers" in note
    else:  # an empty folder is no checkpoint
        with pytest.raises(OSError):
            apa_mod.clap_embedder(tmp_path)
