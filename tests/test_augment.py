"""samuel/augment.py: latent gain, tilt and noise for the offline codec (book: notebook 04)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samuel import augment, config
from samuel.codecs.offline import DB_SCALE

C, T = 64, 16


def _stats(seed=0):
    rng = np.random.default_rng(seed)
    return {"vocal": {"mean": rng.uniform(-0.5, 0.5, C).tolist(), "std": rng.uniform(0.2, 0.8, C).tolist()},
            "accomp": {"mean": rng.uniform(-0.5, 0.5, C).tolist(), "std": rng.uniform(0.2, 0.8, C).tolist()}}


def _batch(stats, b=6, seed=1):
    """z-scored rows of codec latents well above the floor (-1.2)."""
    rng = np.random.default_rng(seed)
    out = []
    for stem in ("vocal", "accomp"):
        raw = rng.uniform(0.0, 1.5, (b, C, T)).astype(np.float32)
        mean, std = np.array(stats[stem]["mean"]), np.array(stats[stem]["std"])
        out.append(((raw - mean[:, None]) / std[:, None]).astype(np.float32))
    return out


def test_shapes_dtype_and_seeded():
    stats = _stats()
    v, a = _batch(stats)
    aug = augment.LatentAugment(p=1.0)
    v1, a1 = augment.apply(v, a, stats, torch.Generator().manual_seed(3), aug)
    v2, a2 = augment.apply(v, a, stats, torch.Generator().manual_seed(3), aug)
    v3, _ = augment.apply(v, a, stats, torch.Generator().manual_seed(4), aug)
    assert v1.shape == v.shape and a1.shape == a.shape and v1.dtype == np.float32
    assert np.array_equal(v1, v2) and np.array_equal(a1, a2)
    assert not np.array_equal(v1, v3)
    assert not np.array_equal(v1, v) and not np.array_equal(a1, a)


@pytest.mark.parametrize("aug", [augment.LatentAugment(p=0.0),
                                 augment.LatentAugment(p=1.0, gain_db=0.0, tilt_db=0.0, noise=0.0)])
def test_identity_at_strength_zero(aug):
    stats = _stats()
    v, a = _batch(stats)
    g = torch.Generator().manual_seed(0)
    v1, a1 = augment.apply(v, a, stats, g, aug)
    assert np.array_equal(v1, v) and np.array_equal(a1, a)
    # the draws are made all the same: a run's later draws do not depend on the strength
    g_ref = torch.Generator().manual_seed(0)
    augment.apply(v, a, stats, g_ref, augment.LatentAugment(p=1.0))
    assert torch.equal(g.get_state(), g_ref.get_state())


def test_gain_maps_to_the_expected_normalised_offset():
    stats = _stats()
    v, _ = _batch(stats, b=2)
    std = np.array(stats["vocal"]["std"], np.float32)
    out = augment.shift_levels(v, np.full((2, C), 6.0, np.float32), stats, "vocal")
    assert np.allclose(out - v, (6.0 / DB_SCALE / std)[None, :, None], atol=1e-5)
    assert np.allclose(augment.db_offset(-12.0, stats, "vocal"), -12.0 / 25.0 / std)
    # back in codec units the shift is exactly gain / 25 in every channel
    mean = np.array(stats["vocal"]["mean"], np.float32)
    raw = lambda z: z * std[:, None] + mean[:, None]  # noqa: E731
    assert np.allclose(raw(out) - raw(v), 6.0 / DB_SCALE, atol=1e-5)


def test_tilt_is_a_linear_ramp_and_silence_stays_silent():
    stats = _stats()
    v, _ = _batch(stats, b=1)
    mean, std = np.array(stats["vocal"]["mean"], np.float32), np.array(stats["vocal"]["std"], np.float32)
    silent = (augment.FLOOR - mean) / std
    v[0, :, 0] = silent  # one silent frame
    db = 4.0 * augment.tilt_ramp()[None, :]
    out = augment.shift_levels(v, db, stats, "vocal")
    shift = (out[0, :, 1:] - v[0, :, 1:]) * std[:, None] * DB_SCALE
    assert np.allclose(shift, np.linspace(-4, 4, C)[:, None], atol=1e-3)
    assert np.array_equal(out[0, :, 0], v[0, :, 0])
    down = augment.shift_levels(v, np.full((1, C), -80.0, np.float32), stats, "vocal")
    assert np.all(down >= silent[None, :, None] - 1e-6)  # nothing below the floor


def test_noise_is_on_the_vocal_only_and_gain_is_shared():
    stats = _stats()
    v, a = _batch(stats, b=32)
    aug = augment.LatentAugment(p=1.0, gain_db=0.0, tilt_db=0.0, noise=0.5)
    v1, a1 = augment.apply(v, a, stats, torch.Generator().manual_seed(5), aug)
    assert np.array_equal(a1, a) and 0.1 < np.std(v1 - v) < 0.5
    aug = augment.LatentAugment(p=1.0, gain_db=6.0, tilt_db=0.0, noise=0.0)
    v1, a1 = augment.apply(v, a, stats, torch.Generator().manual_seed(5), aug)
    db_v = (v1 - v) * np.array(stats["vocal"]["std"])[:, None] * DB_SCALE
    db_a = (a1 - a) * np.array(stats["accomp"]["std"])[:, None] * DB_SCALE
    assert np.allclose(db_v.std(axis=(1, 2)), 0, atol=1e-3)  # one gain per row
    assert np.all(np.abs(db_a.mean(axis=(1, 2))) <= 6.0 + 1e-3)
    assert np.all(np.abs(db_v.mean(axis=(1, 2)) - db_a.mean(axis=(1, 2))) <= 3.0 + 1e-3)
    assert np.abs(db_a.mean(axis=(1, 2))).max() > 1.0


def test_probability_picks_rows():
    stats = _stats()
    v, a = _batch(stats, b=200)
    v1, _ = augment.apply(v, a, stats, torch.Generator().manual_seed(2), augment.LatentAugment(p=0.3))
    changed = np.mean([not np.array_equal(x, y) for x, y in zip(v1, v)])
    assert 0.18 < changed < 0.42


def test_augmenter_from_config_runs_after_the_inner_step_and_needs_the_offline_codec():
    stats = _stats()
    v, a = _batch(stats, b=4)
    cfg = config.load("smoke", train__latent_augment=1.0)
    calls = []

    def inner(x, y):
        calls.append(1)
        return x + 1.0, y + 1.0

    out_v, _ = augment.latent_augmenter(cfg, stats, torch.Generator().manual_seed(0), inner)(v, a)
    ref_v, _ = augment.apply(v + 1.0, a + 1.0, stats, torch.Generator().manual_seed(0),
                             augment.LatentAugment.from_config(cfg))
    assert calls == [1] and np.array_equal(out_v, ref_v)
    with pytest.raises(ValueError, match="expected the 'offline' codec"):
        augment.latent_augmenter(config.load("paper", train__latent_augment=0.5), stats,
                                 torch.Generator(), None)
    assert config.load("demo").train.latent_augment == 0.0


def test_shape_mismatch_is_a_clear_error():
    stats = _stats()
    with pytest.raises(ValueError, match=r"expected vocals and accomp of one shape"):
        augment.apply(np.zeros((2, C, T)), np.zeros((2, C, T + 1)), stats,
                      torch.Generator(), augment.LatentAugment(p=1.0))


def test_training_with_latent_augmentation_changes_the_run_and_resumes_exactly(tmp_path):
    """Its draws come from the loop's saved row generator, so a resumed run repeats the
    uninterrupted one; with the option off the run is the plain one."""
    from samuel.train import train

    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 8)):
        folder = tmp_path / "popdb" / split
        folder.mkdir(parents=True)
        v = rng.standard_normal((n, C, 32)).astype(np.float32)
        np.save(folder / "latent_vocal.npy", v)
        np.save(folder / "latent_accomp.npy", (0.8 * np.roll(v, 1, axis=1)).astype(np.float32))
    data = tmp_path / "popdb"

    def cfg(**kw):
        return config.load("smoke", max_steps=8, eval_every=4, patience=100, batch_size=4, **kw)

    def run(c, name, resume=False, kill_at=None):
        losses = {}

        def on_step(step, loss):
            losses.setdefault(step, loss)
            if step == kill_at:
                raise KeyboardInterrupt

        train(c, data_dir=data, run_dir=tmp_path / name, progress=False, resume=resume, on_step=on_step)
        return losses

    plain, aug = run(cfg(), "p"), run(cfg(latent_augment=1.0), "a")
    assert plain != aug
    with pytest.raises(KeyboardInterrupt):
        run(cfg(latent_augment=1.0), "b", kill_at=5)
    resumed = run(cfg(latent_augment=1.0), "b", resume=True)
    assert [resumed[s] for s in range(5, 9)] == [aug[s] for s in range(5, 9)]
