"""AudioBox-Aesthetics (paper §VI-A, Table I): our input side (mono, 16 kHz, 10 s windows),
loading from the hub layout and the package's checkpoint.pt, a rehearsal with the real model
class at random weights, and Table I in the evaluation's results."""
import csv
import math
import warnings

import numpy as np
import pytest
import torch

from samuel import aesthetics, cli, codecs, config, evaluate as ev

SR16 = aesthetics.SAMPLE_RATE
TT = {a: {"mean": 5.5, "std": 1.5} for a in ("CE", "CU", "PC", "PQ")}


class MaskedMean(torch.nn.Module):
    """Same contract as the real model: per window, ``gain[axis]`` x the mean of its real samples."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5]))  # PQ PC CE CU
        self.target_transform = TT
        self.calls = []

    def forward(self, batch):
        wav, mask = batch["wav"], batch["mask"]
        assert wav.ndim == 3 and wav.shape[1] == 1 and wav.shape[2] == 10 * SR16
        self.calls.append(wav.shape[0])
        m = (wav * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))
        return {a: g * m for a, g in zip(aesthetics.AXES, self.gain)}


# --------------------------------------------------------------------------- input side


def test_windows_are_10s_without_overlap_zero_padded_and_weighted_by_real_fraction():
    wav = np.arange(25 * SR16, dtype=np.float32) + 1  # 25 s: windows 0-10, 10-20, 20-25 (+pad)
    wavs, masks, weights = aesthetics.windows(wav)
    assert wavs.shape == masks.shape == (3, 1, 10 * SR16) and masks.dtype == bool
    np.testing.assert_allclose(weights, [1.0, 1.0, 0.5])
    assert wavs[1, 0, 0] == 10 * SR16 + 1 and wavs[2, 0, 0] == 20 * SR16 + 1
    assert masks[2, 0].sum() == 5 * SR16 and not masks[2, 0, 5 * SR16:].any()
    assert np.all(wavs[2, 0, 5 * SR16:] == 0)
    np.testing.assert_array_equal(wavs[masks], wav)  # every sample once, in order
    one = aesthetics.windows(np.ones(10 * SR16, np.float32))
    assert one[0].shape[0] == 1 and one[2].tolist() == [1.0]


def test_prepare_makes_16k_mono_and_names_bad_clips():
    sr = 44100
    t = np.arange(sr) / sr
    left = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    stereo = np.stack([left, np.zeros_like(left)])
    out = aesthetics.prepare(stereo, sr)
    assert out.dtype == np.float32 and out.shape == (SR16,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SR16 / out.size - 440) < 2  # same pitch at the new rate
    assert abs(np.abs(out[1000:-1000]).max() - 0.5) < 0.02  # channel mean: half the amplitude
    with pytest.raises(ValueError, match=r"clip 3: expected at least 0.025 s of audio, found 0.0000 s"):
        aesthetics.prepare(np.zeros((2, 0)), sr, name="clip 3")
    with pytest.raises(ValueError, match="expected finite samples"):
        aesthetics.prepare(np.full(SR16, np.nan), SR16)
    with pytest.raises(ValueError, match=r"expected audio \[C, N\] or \[N\], found shape \[1, 2, 3\]"):
        aesthetics.prepare(np.zeros((1, 2, 3)), SR16)


def test_score_averages_windows_by_weight_and_maps_back_to_the_1_10_scale():
    model = MaskedMean()
    a, b = 0.2, -0.4
    long = np.concatenate([np.full(10 * SR16, a), np.full(5 * SR16, b)]).astype(np.float32)  # 2 windows
    short = np.full(3 * SR16, 0.1, np.float32)  # 1 window
    clips = [long, short, long[:, None].T.repeat(2, axis=0)]  # the last one stereo: same as `long`
    got = aesthetics.score(model, clips, sr=SR16, batch_size=2)
    assert model.calls == [2, 2, 1]  # 5 windows in batches of 2
    for axis, g in zip(aesthetics.AXES, [1.0, -2.0, 3.0, 0.5]):
        want_long = (g * a * 1.0 + g * b * 0.5) / 1.5 * 1.5 + 5.5
        assert got[0][axis] == pytest.approx(want_long, abs=1e-5)
        assert got[1][axis] == pytest.approx(g * 0.1 * 1.5 + 5.5, abs=1e-5)
        assert got[2][axis] == pytest.approx(want_long, abs=1e-5)
    assert list(got[0]) == list(aesthetics.AXES)
    with pytest.raises(ValueError, match="clip 1: expected finite samples"):
        aesthetics.score(model, [short, np.full(SR16, np.inf)], sr=SR16)


# --------------------------------------------------------------------------- the real model class


def _random_model():
    from audiobox_aesthetics.model.aes import AesMultiOutput

    torch.manual_seed(0)
    with warnings.catch_warnings():  # WavLM's torch.nn.utils.weight_norm deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        return AesMultiOutput(target_transform=TT).eval()


def test_real_model_class_round_trips_the_hub_layout_and_scores_clips_end_to_end(tmp_path):
    model = _random_model()
    assert sum(p.numel() for p in model.parameters()) > 90_000_000  # the published size
    folder = tmp_path / "audiobox"
    model.save_pretrained(folder)
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors"}

    loaded = aesthetics.load(folder)
    assert not loaded.training and loaded.target_transform == TT
    want = model.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)

    # the package's checkpoint.pt layout: state_dict keys with a "model." prefix
    pt = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in want.items()},
                "model_cfg": {"proj_num_layer": 1, "nth_layer": 13, "precision": "32"},
                "target_transform": TT}, pt)
    from_pt = aesthetics.load(str(pt)).state_dict()
    assert all(torch.equal(from_pt[k], want[k]) for k in ("proj_layer.PQ.0.weight",
                                                           "wavlm_model.encoder.layers.11.fc2.weight"))
    del from_pt

    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal((2, int(1.5 * 44100)))).astype(np.float32)  # 1.5 s stereo 44.1k
    t = np.arange(4 * SR16) / SR16
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.25)).astype(np.float32)  # 4 s mono 16k
    scores = aesthetics.score(loaded, [noise], sr=44100) + aesthetics.score(loaded, [tone], sr=SR16)
    assert len(scores) == 2
    for s in scores:
        assert list(s) == list(aesthetics.AXES) and all(math.isfinite(v) for v in s.values())
        # random heads see a unit-norm embedding: |out| <= ~1, so the score lies within about
        # one std of the target mean; without the inverse transform it would sit near 0
        assert all(abs(v - 5.5) < 1.1 * 1.5 for v in s.values())
    assert scores[0] != scores[1]


def test_load_names_what_is_wrong(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants
    from safetensors.torch import save_file

    monkeypatch.delenv(aesthetics.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="nope: expected an AudioBox-Aesthetics folder"):
        aesthetics.load(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="config.json and model.safetensors, found notes.txt"):
        aesthetics.load(empty)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text('{"target_transform": {"PQ": {"mean": 5, "std": 1}}}')
    save_file({"proj_layer.PQ.0.bias": torch.zeros(1)}, str(partial / "model.safetensors"))
    with pytest.raises(ValueError, match="expected a target_transform with mean and std for each of PQ"):
        aesthetics.load(partial)
    (partial / "config.json").write_text('{"target_transform": %s}' % str(TT).replace("'", '"'))
    with pytest.raises(ValueError, match=r"model.safetensors: expected the \d+ AudioBox-Aesthetics "
                                         r"tensors, found \d+ missing"):
        aesthetics.load(partial)
    # no path, offline, nothing cached: one clear sentence
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(aesthetics.AestheticsUnavailable,
                       match=r"could not be fetched from the hub \(facebook/audiobox-aesthetics"):
        aesthetics.load(None)
    model, info = ev.load_audiobox(None)
    assert model is None and info["available"] is False and "--audiobox PATH" in info["reason"]


# --------------------------------------------------------------------------- Table I


def test_paper_table_i_rows_come_first_then_ours():
    rows = aesthetics.table_i()
    assert [r["source"] for r in rows] == ["Pop Benchmark", "MusicGen", "Stable Audio Open",
                                           "OpenAI Jukebox", "SAMUeL"]
    assert rows[-1]["CE"] == 2.93 and rows[0]["PQ"] == 7.92 and all(r["from"] == "paper" for r in rows)
    summary = {a: {"mean": 4.0, "lo": 3.5, "hi": 4.5, "n": 6} for a in aesthetics.AXES}
    rows = aesthetics.table_i({"conditioned": summary, "real": summary, "available": True})
    ours = [r for r in rows if r["from"] == "ours"]
    assert [(r["source"], r["compare_with"], r["n"]) for r in ours] == [
        ("conditioned", "SAMUeL", 6), ("real", "Pop Benchmark", 6)]
    text = aesthetics.format_table_i(rows)
    assert "SAMUeL (paper)" in text and "conditioned (ours, n=6, vs SAMUeL)" in text
    assert "4.00 [3.50, 4.50]" in text and "5.73" in text


def test_evaluate_scores_every_condition_and_writes_table_i(tmp_path, tmp_runs, monkeypatch):
    from test_evaluate import fake_data

    from samuel.model import build

    seen = {}

    def fake_load(checkpoint=None, device="cpu"):
        seen["checkpoint"], seen["device"] = checkpoint, device
        return MaskedMean()

    monkeypatch.setattr(aesthetics, "load", fake_load)
    cfg = config.load("smoke", timesteps=10, fast_steps=2)
    data = tmp_path / "data"
    fake_data(data, cfg)
    out = tmp_path / "evaluation"
    res = ev.evaluate(cfg, checkpoint=build(cfg), data_dir=data, out_dir=out, max_clips=2,
                      progress=False, batch_size=2, compare_samplers=False,
                      codec=codecs.load("offline", griffin_lim_iters=4),
                      audiobox_checkpoint=str(tmp_path / "weights"))
    assert seen == {"checkpoint": str(tmp_path / "weights"), "device": "cpu"}
    a = res["audiobox"]
    assert a["available"] is True and a["checkpoint"] == str(tmp_path / "weights")
    for cond in (*ev.CONDITIONS, "real"):
        assert all(a[cond][k]["n"] == 2 and math.isfinite(a[cond][k]["mean"]) for k in ev.AUDIOBOX_AXES)
    ours = {r["source"]: r for r in res["table_i"] if r["from"] == "ours"}
    assert set(ours) == {*ev.CONDITIONS, "real"} and ours["conditioned"]["compare_with"] == "SAMUeL"
    assert ours["real"]["PQ"] == pytest.approx(a["real"]["PQ"]["mean"])
    with open(out / "table_i.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 + 4 and rows[4]["source"] == "SAMUeL" and rows[4]["CE"] == "2.93"
    table = ev.format_table(res)
    assert "Table I: AudioBox-Aesthetics" in table and "real (ours, n=2, vs Pop Benchmark)" in table


def test_cli_evaluate_passes_audiobox_path(monkeypatch, capsys):
    seen = {}

    def fake_evaluate(cfg, **kw):
        seen.update(kw)
        return {"stub": True}

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    monkeypatch.setattr(ev, "format_table", lambda r: "table")
    args = cli.parser().parse_args(["evaluate", "--profile", "smoke", "--audiobox", "/weights/aes"])
    args.func(args)
    assert seen["audiobox_checkpoint"] == "/weights/aes" and capsys.readouterr().out.strip() == "table"
