"""samuel/plots.py: the notebooks' figures come back as figures with labelled axes, and the
tables and masks behind them say what they should (book: notebooks 01, 02, 03 and 05)."""
from __future__ import annotations

import json

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


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_loss_weight_figure_draws_the_weight_the_loss_uses(profile):
    """The solid line is Schedule.snr_weight for the profile's clamp and floor (demo has a
    floor, paper none), not a weighting recomputed beside it."""
    import torch

    schedule = Schedule.from_config(config.load(profile))
    fig = plots.loss_weight_figure(schedule)
    (ax,) = _plot_axes(fig)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    used = next(ln for label, ln in lines.items() if "snr_weight" in label)
    expected = schedule.snr_weight(torch.arange(schedule.timesteps)).double().numpy()
    np.testing.assert_allclose(used.get_ydata(), expected, rtol=0, atol=0)
    assert ax.get_xlabel() and ax.get_ylabel() == "loss weight"
    has_floor = any(label.startswith("floor") for label in lines)
    assert has_floor == bool(schedule.snr_floor)
    if schedule.snr_floor:
        assert float(np.min(used.get_ydata())) == pytest.approx(schedule.snr_floor)


def test_describe_loss_weight_names_clamp_and_floor():
    demo = plots.describe_loss_weight(Schedule.from_config(config.load("demo")))
    paper = plots.describe_loss_weight(Schedule.from_config(config.load("paper")))
    assert "floor at 1" in demo and "no floor" in paper
    snr = Schedule(800).alpha_bar / (1 - Schedule(800).alpha_bar)
    assert f"{int((snr > 5).sum())} cleanest" in demo


# ----------------------------------------------------------------------------- tables of the book
def _evaluation():
    from samuel import reproduce

    return reproduce.load_committed("demo")["evaluation"]


def test_fit_table_marks_each_claim_and_renders_as_html():
    from samuel.evaluate import report

    ev = json.loads(json.dumps(_evaluation()))
    ev["beats_baselines"]["key"] = False
    table = report.fit_table(ev)
    html = table._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 1 + len(table.rows)
    by_metric = {r[0].split()[0]: r for r in table.rows}
    assert by_metric["chroma"][-1] == "✓" and by_metric["key"][-1] == "✗"
    c = ev["fit"]["conditioned"]["chroma"]
    shown = f"{c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]"
    assert by_metric["chroma"][1] == shown
    assert by_metric["chroma"][4] == "—"  # no real-vs-real chroma
    assert "| metric |" in table.markdown() and shown in str(table)


def test_sampler_and_efficiency_tables_show_intervals_claims_and_the_paper():
    from samuel.evaluate import report

    ev = _evaluation()
    samplers = report.sampler_table(ev)
    assert [r[0] for r in samplers.rows][:3] == ["chroma", "key", "beat"]
    assert all(r[3] == "✓" for r in samplers.rows[:3]) and "at least 40x faster: ✓" in samplers.notes[0]
    table_ii = report.table_ii(ev)
    row = {r[0]: r for r in table_ii.rows}["seconds per 47.55 s clip, 800-step sampler"]
    assert row[1:] == [f"{ev['efficiency']['ancestral_seconds_per_47s_clip']:.2f}", "21"]
    table_i = report.table_i(ev)
    assert table_i.rows[-1] == ["SAMUeL (ours)", "—", "—", "—", "—"] and "not measured" in table_i.notes[0]


def test_table_rejects_ragged_rows_and_escapes_html():
    from samuel.evaluate import report

    with pytest.raises(ValueError, match="expected 2 cells per row, found 1"):
        report.Table(["a", "b"], [["x"]])
    assert "&lt;b&gt;" in report.Table(["a"], [["<b>"]])._repr_html_()
    assert report.mark(None) == "—" and report.mark(True) == "✓" and report.mark(0) == "✗"


def test_notebook_results_and_ablation_claims():
    from samuel.evaluate import report

    ev = dict(_evaluation())
    out = report.notebook_results(ev)
    assert out["chroma_conditioned"] == ev["fit"]["conditioned"]["chroma"]["mean"]
    # the claims are carried over as evaluated (the committed demo run misses the Fréchet one)
    assert out["beats_baselines_all"] is ev["beats_baselines_all"] is all(ev["beats_baselines"].values())
    for metric, beats in ev["beats_baselines"].items():
        assert out[f"beats_baselines_{metric}"] is beats
    assert out["fast_40x"] is True and out["audiobox_available"] is False
    fit = ev["fit"]["conditioned"]
    shifted = {m: {**v, "mean": v["mean"] + 10, "lo": v["lo"] + 10, "hi": v["hi"] + 10} for m, v in fit.items()}
    ablation = {"paper": {"best_val_loss": 1.50, "fit": {"conditioned": fit}},
                "reversed": {"best_val_loss": 1.49, "fit": {"conditioned": shifted}}}
    claims = report.ablation_claims(ablation)
    assert claims["reversed_lower_val_loss"] is True and claims["overlap_chroma"] is False
    table = report.ablation_table(ablation)
    assert table.rows[0][:3] == ["best validation loss", "1.5000", "1.4900"] and table.rows[1][-1] == "✗"


def test_sigma_csv_and_claims(tmp_path):
    from samuel.evaluate import report

    rec = {"t": np.array([799, 798]), "x_mean": np.zeros(2), "x_std": np.array([1.01, 0.9]),
           "v_mean": np.zeros(2), "v_std": np.ones(2)}
    path = report.write_sigma_csv(rec, tmp_path / "a" / "sigma.csv")
    assert path.read_text().splitlines()[:2] == ["t,x_mean,x_std,v_mean,v_std", "799,0.0,1.01,0.0,1.0"]
    assert report.sigma_claims(rec, 758) == {"starts_normal": True, "leaves_normal": True,
                                             "within_100_of_paper": False}


def test_fit_figure_is_a_grid_of_at_most_three_panels_per_row(tmp_path):
    from samuel.evaluate import report

    report._plot_fit(_evaluation(), tmp_path / "fit.png")
    import matplotlib.image as mpimg

    h, w = mpimg.imread(str(tmp_path / "fit.png")).shape[:2]
    assert w <= 3.3 * 3 * 100 + 1 and h > 3.3 * 100  # two rows of three at 100 dpi


def test_corpus_lines_and_players_group_one_example():
    from samuel import show

    songs = [{"style": "pop", "mode": "major", "tonic_pc": 0, "tempo_bpm": 100.0},
             {"style": "rock", "mode": "minor", "tonic_pc": 3, "tempo_bpm": 120.0}]
    assert show.corpus_lines(songs).splitlines() == [
        "styles: {'pop': 1, 'rock': 1}", "modes: {'major': 1, 'minor': 1}", "tonics: 2 of 12",
        "tempo: 100-120 BPM, median 120"]
    assert show.corpus_lines([]) == ""
    assert show.split_of({"train": ["a"], "test": ["b"]}) == {"a": "train", "b": "test"}
    html = show.players_html({"vocal": _tone(0.2, 440.0), "mix": _tone(0.2, 220.0)}, title="example 1")
    assert html.count("<audio") == 2 and html.index("example 1") < html.index("vocal") < html.index("mix")
