import numpy as np
import torch

from samuel.analysis import mixing_weights, normal_until, record_sampling, theoretical_std
from samuel.diffusion import Schedule

from test_diffusion import GaussianDenoiser

SCHED = Schedule(800)


def test_record_and_boundary_with_an_exact_denoiser():
    """For data N(3, 0.5²) the latent leaves N(0, I) where sqrt(ᾱ)·3 exceeds the tolerance."""
    rec = record_sampling(GaussianDenoiser(3.0, 0.5), SCHED, None, (256, 4, 16), seed=0)
    assert len(rec["t"]) == 800 and rec["t"][0] == 799 and rec["t"][-1] == 0
    b = normal_until(rec, tol=0.05)
    # the forward process: mean sqrt(ᾱ_t)·3 crosses 0.05 (+ sampling noise) near this t
    t_theory = int(np.argmax(np.sqrt(SCHED.alpha_bar) * 3.0 < 0.05))
    assert abs(b - t_theory) < 40, (b, t_theory)
    assert abs(rec["x_mean"][-1] - 3.0) < 0.05
    assert np.allclose(theoretical_std(SCHED, 1.0), 1.0)


def test_normal_until_on_a_hand_made_record():
    rec = {"t": np.array([3, 2, 1, 0]), "x_mean": np.array([0.0, 0.01, 0.3, 1.0]),
           "x_std": np.array([1.0, 1.0, 1.0, 0.5])}
    assert normal_until(rec, 0.05) == 2


def test_mixing_weights_sum_to_one_and_swap():
    p, r = mixing_weights(SCHED, "paper"), mixing_weights(SCHED, "reversed")
    assert np.allclose(p["w_global"] + p["w_local"], 1)
    assert np.allclose(p["w_global"], r["w_local"])
    assert p["w_global"][0] > 0.99 and p["w_global"][-1] < 0.01
