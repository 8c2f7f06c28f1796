"""samuel/plots.py: the notebooks' figures come back as figures with labelled axes, and the
tables and masks behind them say what they should (book: notebooks 01, 02, 03 and 05)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from samuel import config, model as model_mod, plots  # noqa: E402
from samuel.diffusion import Schedule  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tone(seconds: float, hz: float, sr: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * hz * t).astype(np.float32)
    return np.stack([x, x])  # [2, N]


def _plot_axes(fig: Figure) -> list:
    """The figure's plotting axes (colorbars excluded)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _colorbar_labels(fig: Figure) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_spectrograms_one_labelled_row_per_signal():
    fig = plots.spectrograms({"vocals": _tone(2.0, 440.0), "accomp": _tone(2.0, 110.0)}, seconds=1.0,
                             title="one song")
    assert isinstance(fig, Figure)
    axes = _plot_axes(fig)
    assert [ax.get_title(loc="left") for ax in axes] == ["vocals", "accomp"]
    assert all(ax.get_ylabel() == "frequency (Hz)" for ax in axes)
    assert axes[-1].get_xlabel() == "time (s)"
    assert _colorbar_labels(fig) == ["level (dB re peak)"]
    assert fig._suptitle.get_text() == "one song"
    assert axes[0].get_xlim()[1] == pytest.approx(1.0, abs=0.05)  # cut to `seconds`


def test_latent_histograms_label_both_panels_and_name_the_entries():
    rng = np.random.default_rng(0)
    fig = plots.latent_histograms({"vocal": rng.normal(size=(3, 64, 16)),
                                   "accomp": rng.normal(2.0, 3.0, size=(64, 40))})
    a, b = _plot_axes(fig)
    assert a.get_xlabel() == "per-channel mean (latent units)"
    assert b.get_xlabel() == "per-channel standard deviation (latent units)"
    assert a.get_ylabel() == b.get_ylabel() == "channels"
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["vocal", "accomp"]
    counts = [sum(p.get_height() for p in a.patches[i * 24:(i + 1) * 24]) for i in range(2)]
    assert counts == [64, 64]  # one value per channel, for each entry


def test_latent_image_spans_the_clip_in_seconds():
    latents = np.random.default_rng(1).normal(size=(64, 215)).astype(np.float32)
    fig = plots.latent_image(latents, frames_per_second=21.5, title="vocal")
    (ax,) = _plot_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title(loc="left")) == ("time (s)", "latent channel", "vocal")
    assert ax.get_xlim() == pytest.approx((0.0, 10.0)) and ax.get_ylim() == pytest.approx((0.0, 64.0))
    assert _colorbar_labels(fig) == ["value"]


def test_block_table_counts_every_parameter_once():
    net = model_mod.build(config.load("smoke"))
    rows = plots.block_table(net)
    names = [n for n, _ in rows]
    assert names[: len(list(net.named_children()))] == [n for n, _ in net.named_children()]
    assert sum(n for _, n in rows) == model_mod.count_parameters(net)
    assert ("(own parameters: null condition)", 64) in rows


def test_format_block_table_lines_up_profiles_and_totals():
    text = plots.format_block_table({"a": [("conv", 10), ("attn", 2_000)], "b": [("conv", 5)]})
    lines = text.splitlines()
    assert lines[0].split() == ["block", "a", "b"]
    assert lines[2].split() == ["conv", "10", "5"]
    assert lines[3].split() == ["attn", "2,000", "0"]  # a block one profile lacks counts 0
    assert lines[-1].split() == ["total", "2,010", "5"]
    assert len({len(line) for line in lines}) == 1  # a rectangle: columns line up


@pytest.mark.parametrize("window", [16, 8, 5])
def test_local_window_mask_is_eq1s_window(window):
    frames = 40
    mask = plots.local_window_mask(frames, window)
    assert mask.shape == (frames, frames) and mask.dtype == bool
    left = window // 2
    for i in range(frames):
        keys = [j for j in range(i - left, i - left + window) if 0 <= j < frames]
        assert np.flatnonzero(mask[i]).tolist() == keys, i
    assert mask[frames // 2].sum() == window


def test_attention_windows_draws_the_mask_and_the_rope_profile():
    fig = plots.attention_windows(frames=32, window=16, head_dim=16)
    a, b = _plot_axes(fig)
    assert (a.get_xlabel(), a.get_ylabel()) == ("key frame j", "query frame i")
    assert b.get_xlabel() == "key position − query position (frames)"
    assert b.get_ylabel() == "RoPE score / unrotated score"
    np.testing.assert_array_equal(a.images[0].get_array(), plots.local_window_mask(32, 16))
    dist, score = b.lines[0].get_data()
    assert score[list(dist).index(0)] == pytest.approx(1.0, abs=1e-5)  # no rotation at distance 0
    assert np.all(np.abs(score) <= 1.0 + 1e-5)


def test_mix_weights_figure_shows_both_readings_of_eq3():
    alpha_bar = Schedule(800).alpha_bar
    fig = plots.mix_weights_figure(alpha_bar)
    paper, reversed_ = _plot_axes(fig)
    assert paper.get_title() == 'mix="paper" (eq. 3 as printed)'
    assert reversed_.get_title() == "mix=\"reversed\" (the prose's reading)"
    assert paper.get_ylabel() == "weight in the context"
    assert all(ax.get_xlabel() == "timestep t (0 = clean, 799 = noise)" for ax in (paper, reversed_))
    for ax in (paper, reversed_):
        (t, w_global), (_, w_local) = (line.get_data() for line in ax.lines[:2])
        assert len(t) == 800
        np.testing.assert_allclose(np.asarray(w_global) + np.asarray(w_local), 1.0, atol=1e-12)
    np.testing.assert_allclose(paper.lines[0].get_ydata(), np.sqrt(alpha_bar), atol=1e-12)
    np.testing.assert_allclose(reversed_.lines[0].get_ydata(), 1 - np.sqrt(alpha_bar), atol=1e-12)
    assert paper.lines[0].get_ydata()[-1] < 0.05 < 0.95 < reversed_.lines[0].get_ydata()[-1]
