"""design §1: `samuel generate` — any vocal file in, an accompaniment of the same length out."""
import numpy as np
import pytest
import soundfile as sf
import torch

from samuel import audio, config, generate as gen, model, paths
from samuel.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from samuel.diffusion import Schedule

SR = 44100
CFG = config.load("smoke")  # chunk 32 frames ≈ 1.49 s with the offline codec


def identity_stats(channels: int = 64) -> dict:
    one = dict(mean=[0.0] * channels, std=[1.0] * channels)
    return dict(vocal=one, accomp=dict(one))


def sung(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A mono 'sung' line: harmonic tones on a scale, one note per 0.25 s, with a soft attack."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    notes = 57 + np.array([0, 2, 4, 5, 7, 9, 11, 12])[rng.integers(0, 8, size=int(seconds * 4) + 1)]
    f0 = 440.0 * 2 ** ((notes[(t * 4).astype(int)] - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    env = np.minimum(1.0, (t * 4 % 1) * 20)
    return (0.3 * y * env).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The smoke U-Net on 32 frames gains nothing from 2 threads, and on a loaded 2-core machine
    OpenMP's spinning threads made it 10-100x slower (0.025 s vs 0.2-3.7 s per window)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained smoke model saved as a real checkpoint folder (offline codec, identity stats)."""
    folder = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    save_checkpoint(folder, model.build(CFG), CFG, identity_stats())
    return load_checkpoint(folder)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocals")
    files = {}
    files["short"] = d / "short.wav"
    sf.write(files["short"], np.stack([sung(1.5), sung(1.5, seed=1)]).T, SR)
    files["long"] = d / "long.wav"  # 4 s = 87 frames = 4 windows of 32 with overlap 8
    sf.write(files["long"], sung(4.0), SR)
    files["mono48k_u8"] = d / "mono48k_u8.wav"
    sf.write(files["mono48k_u8"], sung(1.3, sr=48000), 48000, subtype="PCM_U8")
    files["silent"] = d / "silent.wav"
    sf.write(files["silent"], np.zeros((SR * 2, 2), np.float32), SR)
    files["tiny"] = d / "tiny.wav"
    sf.write(files["tiny"], sung(0.5), SR)
    return files


def run(ckpt, src, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("steps", 2)  # the sampler's step count does not change shapes or files: keep tests fast
    kw.setdefault("seam", False)
    return gen.generate(src, out, checkpoint=ckpt, **kw)


def test_short_input_gives_exact_duration_44k_stereo(ckpt, wavs, tmp_path):
    res = run(ckpt, wavs["short"], tmp_path / "a.wav")
    info = sf.info(str(tmp_path / "a.wav"))
    assert info.samplerate == SR and info.channels == 2
    assert info.frames == sf.info(str(wavs["short"])).frames == int(1.5 * SR)
    assert res["frames"] == 33 and res["windows"] == 2  # 1.5 s is just over one smoke window (32 frames)
    assert set(res["timings"]) >= {"encode_s", "sample_s", "decode_s"}


def test_long_input_uses_overlapping_windows_and_exact_duration(ckpt, wavs, tmp_path):
    res = run(ckpt, wavs["long"], tmp_path / "a.flac", seam=True)
    assert sf.info(str(tmp_path / "a.flac")).frames == 4 * SR
    assert res["windows"] == 4 and res["overlap_frames"] == 8
    assert res["known_frames"][0] == 0 and all(k >= 8 for k in res["known_frames"][1:])
    starts = res["window_starts_s"]
    window_s = res["window_frames"] * 2048 / SR
    assert all(b < a + window_s for a, b in zip(starts, starts[1:])), "windows must overlap"
    seam = res["seam"]
    assert seam["boundaries"] == 3 and seam["within"] == 4
    assert seam["boundary_flux"] is not None and seam["within_flux"] is not None


def test_plan_windows():
    assert gen.plan_windows(32, 32, 8) == [0]
    assert gen.plan_windows(86, 32, 8) == [0, 24, 48, 54]
    assert gen.plan_windows(33, 32, 8) == [0, 1]
    with pytest.raises(gen.GenerateError):
        gen.plan_windows(100, 32, 32)


def test_inpainting_constrains_the_overlap(ckpt):
    """Window k+1's own prediction of the overlap follows window k's latents; independent
    windows do not. The cross-fade starts on window k's latents."""
    torch.manual_seed(0)
    vocals = torch.randn(64, 56).numpy()  # two windows: [0, 32) and [24, 56)
    common = dict(window=32, overlap=8, steps=8, cfg_scale=1.0, seed=3)
    sched = Schedule.from_config(CFG)
    inpainted = gen.generate_latents(ckpt.model, sched, vocals, **common)
    independent = gen.generate_latents(ckpt.model, sched, vocals, inpaint=False, **common)
    err_in, err_free = np.mean(inpainted["overlap_error"]), np.mean(independent["overlap_error"])
    assert err_in < 0.35 * err_free, (err_in, err_free)


def test_sample_window_replaces_known_region_at_every_step(ckpt):
    """With a denoiser that returns x_t as its clean estimate, the output's known region is
    the known latents noised only by the last step: close to them, far from fresh noise."""
    sched = Schedule.from_config(CFG)

    def echo(x, t, vocals, mask):  # v such that x0_from_v(x, v, t) == x
        a = sched.table("sqrt_ab", x.device)[t].view(-1, 1, 1)
        s = sched.table("sqrt_1m_ab", x.device)[t].view(-1, 1, 1)
        return (a - 1) * x / s

    known = torch.full((1, 64, 8), 2.0)
    out = gen.sample_window(echo, sched, torch.zeros(1, 64, 32), steps=16, cfg_scale=1.0, method="ddim",
                            generator=torch.Generator().manual_seed(0), known=known, known_frames=8)
    assert torch.allclose(out[..., :8].mean(), torch.tensor(2.0), atol=0.1)
    assert abs(float(out[..., 8:].mean())) < 0.5


@pytest.mark.parametrize("name", ["mono48k_u8"])
def test_mono_48k_8bit_input(ckpt, wavs, tmp_path, name):
    res = run(ckpt, wavs[name], tmp_path / "a.wav")
    data, sr = sf.read(str(tmp_path / "a.wav"), always_2d=True)
    assert sr == SR and data.shape == (int(round(1.3 * SR)), 2)
    assert res["seconds"] == pytest.approx(1.3, abs=1e-3)
    # shorter than a window: 28 frames padded with silence to 32 (a multiple of 8), then cropped
    assert res["windows"] == 1 and (res["frames"], res["padded_frames"]) == (28, 32)


def test_same_seed_same_output_and_mix_does_not_clip(ckpt, wavs, tmp_path):
    src = wavs["mono48k_u8"]
    run(ckpt, src, tmp_path / "a.wav", seed=5, mix_path=tmp_path / "m.wav")
    run(ckpt, src, tmp_path / "b.wav", seed=5)
    run(ckpt, src, tmp_path / "c.wav", seed=6)
    a, b, c = (sf.read(str(tmp_path / f"{x}.wav"))[0] for x in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    m = sf.read(str(tmp_path / "m.wav"), dtype="float32")[0]
    assert m.shape == a.shape and np.abs(m).max() <= 0.99 + 1e-4


def test_mix_level_and_peak():
    v = (0.9 * np.sign(np.sin(np.linspace(0, 200, SR)))).astype(np.float32)[None].repeat(2, 0)
    a = (0.01 * np.random.default_rng(0).standard_normal((2, SR))).astype(np.float32)
    m = gen.mix(v, a)
    assert np.abs(m).max() <= 0.99 + 1e-6
    quiet = gen.mix(0.1 * v, a) - 0.1 * v
    assert audio.loudness_db(quiet) == pytest.approx(audio.loudness_db(0.1 * v) + gen.MIX_ACCOMP_DB, abs=0.01)


def test_mix_in_place_computes_what_the_copying_form_did():
    """The in-place mix (one new array) against the earlier form written out with copies:
    loudness match, then the mix gain, then the vocal, then the peak limit; bit for bit."""
    rng = np.random.default_rng(1)
    v = (0.3 * rng.standard_normal((2, SR))).astype(np.float32)
    for a in ((0.05 * rng.standard_normal((2, SR))).astype(np.float32),  # quiet: no limiting
              (3.0 * rng.standard_normal((2, SR))).astype(np.float32),  # loud: limited
              np.zeros((2, SR), np.float32)):  # silent accompaniment: unchanged gain
        a_before = a.copy()
        la, lv = audio.loudness_db(a), audio.loudness_db(v)  # the earlier match_loudness, spelt out
        ref = (a * np.float32(10.0 ** ((lv - la) / 20.0))).astype(np.float32) if np.isfinite(la) else a.copy()
        ref = ref * np.float32(10.0 ** (gen.MIX_ACCOMP_DB / 20.0))
        ref = np.asarray(v, np.float32) + ref
        p = float(np.max(np.abs(ref)))
        ref = (ref * (0.99 / p)).astype(np.float32) if p > 0.99 else ref.astype(np.float32)
        m = gen.mix(v, a)
        assert m.dtype == np.float32 and np.array_equal(m, ref)
        assert np.array_equal(a, a_before)  # the caller's accompaniment is left as it was


@pytest.mark.parametrize("which, expected", [
    ("silent", "silence"), ("tiny", "at least 1 s"), ("missing", "no file at this path")])
def test_bad_vocals_give_one_clear_sentence(ckpt, wavs, tmp_path, which, expected):
    src = wavs.get(which, tmp_path / "nope.wav")
    with pytest.raises(audio.AudioError) as err:
        run(ckpt, src, tmp_path / "a.wav")
    msg = str(err.value)
    assert expected in msg and str(src) in msg and "\n" not in msg
    assert not (tmp_path / "a.wav").exists()


def test_missing_default_checkpoint_says_how_to_build_it(wavs, tmp_path, tmp_runs):
    with pytest.raises(CheckpointError) as err:
        gen.generate(wavs["short"], tmp_path / "a.wav", progress=False)
    msg = str(err.value)
    folder = str(paths.run_dir("demo") / "checkpoint")
    assert msg.startswith(f"{folder}: expected a SAMUeL checkpoint, found no such folder")
    assert "make book" in msg and "--checkpoint DIR" in msg and "\n" not in msg


def test_missing_given_checkpoint_names_it(wavs, tmp_path):
    with pytest.raises(CheckpointError, match=r"nope: expected a SAMUeL checkpoint, found no such "
                       r"folder; pass --checkpoint DIR"):
        gen.generate(wavs["short"], tmp_path / "a.wav", checkpoint=tmp_path / "nope", progress=False)
    assert not (tmp_path / "a.wav").exists()


def test_mismatched_codec_gives_one_clear_sentence(ckpt, wavs, tmp_path):
    class Narrow:
        name, latent_channels, samples_per_frame, sample_rate = "narrow", 32, 2048, SR

    with pytest.raises(CheckpointError, match="expected a codec with 64 latent channels"):
        run(ckpt, wavs["short"], tmp_path / "a.wav", codec=Narrow())


def test_cli_arguments_parse():
    from samuel import cli

    args = cli.parser().parse_args(["generate", "v.wav", "-o", "a.wav", "--mix", "m.wav", "--steps",
                                    "4", "--cfg", "1.5", "--seed", "2", "--codec", "offline"])
    assert (args.vocals, args.out, args.mix, args.steps, args.cfg_scale, args.seed, args.codec) == \
        ("v.wav", "a.wav", "m.wav", 4, 1.5, 2, "offline")


# --------------------------------------------------------------------------- one sampling loop
@torch.no_grad()
def reference_sample_window(model, schedule, vocals, steps, cfg_scale, method, generator, known,
                            known_frames, eta=0.0):
    """The window sampler as generate had it before it used diffusion.sample_fast's ``known``
    region: a reference to compare against, kept here only."""
    from samuel.diffusion import fast_timesteps, guided_v, solver_step

    shape = tuple(vocals.shape)
    device = vocals.device
    x = torch.randn(shape, generator=generator).to(device)
    mask = None
    if known is not None and known_frames > 0:
        known_noise = torch.randn((shape[0], shape[1], known_frames), generator=generator).to(device)
        mask = torch.zeros((1, 1, shape[2]), device=device)
        mask[..., :known_frames] = 1.0
        full_known = torch.zeros(shape, device=device)
        full_known[..., :known_frames] = known
        full_noise = torch.zeros(shape, device=device)
        full_noise[..., :known_frames] = known_noise

    def constrain(x, i):
        if mask is None:
            return x
        t = torch.full((shape[0],), i, dtype=torch.long, device=device)
        return mask * schedule.q_sample(full_known, t, full_noise) + (1 - mask) * x

    ab = schedule.alpha_bar
    ts = fast_timesteps(schedule.timesteps, steps)
    x = constrain(x, ts[0])
    prev_x0, prev_h = None, None
    for k, i in enumerate(ts):
        t = torch.full((shape[0],), i, dtype=torch.long, device=device)
        v = guided_v(model, x, t, vocals, cfg_scale)
        x0 = schedule.x0_from_v(x, v, t)
        if k + 1 == len(ts):
            return x0
        j = ts[k + 1]
        x, h = solver_step(ab, i, j, x, x0, prev_x0, prev_h, method, eta, generator)
        x = constrain(x, j)
        prev_x0, prev_h = x0, h


@pytest.mark.parametrize("method, eta, known_frames, steps", [
    ("dpmsolver++", 0.0, 8, 6), ("dpmsolver++", 0.0, 0, 6), ("ddim", 0.0, 12, 5),
    ("ddim", 1.0, 8, 4), ("dpmsolver++", 0.0, 8, 1)])
def test_sample_window_is_the_reference_loop_bit_for_bit(ckpt, method, eta, known_frames, steps):
    """generate's windows go through diffusion.sample_fast: the same numbers as the loop it
    replaced, for every sampler, with and without a known region."""
    sched = Schedule.from_config(CFG)
    torch.manual_seed(1)
    vocals, known = torch.randn(1, 64, 32), torch.randn(1, 64, max(known_frames, 1))[..., :known_frames]
    steps_seen = []
    new = gen.sample_window(ckpt.model, sched, vocals, steps, 1.5, method,
                            torch.Generator().manual_seed(7), known=known, known_frames=known_frames,
                            on_step=lambda: steps_seen.append(1), eta=eta)
    old = reference_sample_window(ckpt.model, sched, vocals, steps, 1.5, method,
                                  torch.Generator().manual_seed(7), known, known_frames, eta=eta)
    assert torch.equal(new, old)
    assert len(steps_seen) == steps


def test_generate_latents_over_windows_equal_the_reference(ckpt, monkeypatch):
    """Three inpainted windows, end to end through generate_latents: the same latents as with
    the reference window sampler."""
    sched = Schedule.from_config(CFG)
    vocals = torch.randn(64, 72, generator=torch.Generator().manual_seed(2)).numpy()
    common = dict(window=32, overlap=8, steps=3, cfg_scale=1.0, seed=5)
    new = gen.generate_latents(ckpt.model, sched, vocals, **common)

    def reference(model, schedule, v, steps, cfg_scale, method, generator, known=None,
                  known_frames=0, on_step=None, eta=0.0):
        return reference_sample_window(model, schedule, v, steps, cfg_scale, method, generator,
                                       known, known_frames, eta)

    monkeypatch.setattr(gen, "sample_window", reference)
    old = gen.generate_latents(ckpt.model, sched, vocals, **common)
    assert new["starts"] == old["starts"] == [0, 24, 40] and new["known"] == [0, 8, 16]
    assert np.array_equal(new["latents"], old["latents"])
    assert new["overlap_error"] == old["overlap_error"]


def test_timings_name_the_six_stages(ckpt, wavs, tmp_path):
    stages = {}
    res = run(ckpt, wavs["short"], tmp_path / "a.wav", mix_path=tmp_path / "m.wav", timings=stages)
    assert tuple(stages) == gen.STAGES == ("load", "encode", "sample", "decode", "write", "mix")
    assert all(isinstance(v, float) for v in stages.values())  # wall seconds: not bounded here
    assert res["timings"]["write_s"] == stages["write"] + stages["mix"]
    assert res["timings"]["sample_s"] == stages["sample"]
    without = {}
    run(ckpt, wavs["short"], tmp_path / "b.wav", timings=without)
    assert tuple(without) == gen.STAGES  # "mix" too, the time of no mix
