"""samuel.audio: every kind of input a user may hand us, and the messages when it is bad."""
import io
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from samuel import audio
from samuel.audio import AudioError

SR = 44100
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def tone(seconds=0.5, sr=SR, channels=2, freq=440.0, amp=0.5):
    """A sine ``[C, N]``; channel c is a little louder than channel c-1."""
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([amp * (1 + 0.1 * c) / 1.3 * np.sin(2 * np.pi * freq * t)
                     for c in range(channels)]).astype(np.float32)


def write(path, x, sr=SR, **kw):
    sf.write(str(path), np.asarray(x).T, sr, **kw)
    return path


# ----------------------------------------------------------------------------- good inputs
def test_stereo_wav_round_trip(tmp_path):
    x = tone()
    out = audio.save(tmp_path / "a.wav", x)
    y = audio.load(out)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) < 1e-3  # PCM_16 quantisation


def test_mono_becomes_stereo(tmp_path):
    x = tone(channels=1)
    y = audio.load(write(tmp_path / "mono.wav", x))
    assert y.shape == (2, x.shape[1])
    np.testing.assert_array_equal(y[0], y[1])
    assert audio.load(tmp_path / "mono.wav", channels=1).shape == (1, x.shape[1])


def test_8bit_unsigned(tmp_path):
    x = tone(channels=1, amp=0.8)
    y = audio.load(write(tmp_path / "u8.wav", x, subtype="PCM_U8"))
    assert y.dtype == np.float32 and y.shape == (2, x.shape[1])
    assert abs(float(y.mean())) < 0.02  # unsigned offset removed: centred on 0, not on 0.5
    assert np.max(np.abs(y[0] - x[0])) < 0.02


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_24bit_and_float(tmp_path, subtype):
    x = tone()
    y = audio.load(write(tmp_path / f"{subtype}.wav", x, subtype=subtype))
    assert np.max(np.abs(y - x)) < 1e-5


def test_48k_resampled_to_44k1(tmp_path):
    x = tone(seconds=1.0, sr=48000)
    y = audio.load(write(tmp_path / "48k.wav", x, sr=48000))
    assert y.shape == (2, SR)
    # still a 440 Hz tone at the same level
    spectrum = np.abs(np.fft.rfft(y[0]))
    assert abs(np.argmax(spectrum) * SR / y.shape[1] - 440) < 2
    assert abs(audio.loudness_db(y) - audio.loudness_db(x)) < 0.1


def test_six_channels_downmixed(tmp_path):
    x = tone(channels=6)
    y = audio.load(write(tmp_path / "surround.wav", x))
    assert y.shape == (2, x.shape[1])
    rest = x[2:].mean(0)
    np.testing.assert_allclose(y[0], (x[0] + rest) / 2, atol=1e-4)
    np.testing.assert_allclose(y[1], (x[1] + rest) / 2, atol=1e-4)
    mono = audio.load(tmp_path / "surround.wav", channels=1)
    np.testing.assert_allclose(mono[0], x.mean(0), atol=1e-4)


def test_very_short_file_loads(tmp_path):
    x = tone(channels=1)[:, :10]
    y = audio.load(write(tmp_path / "short.wav", x))
    assert y.shape == (2, 10)


def test_flac_named_wav(tmp_path):
    x = tone()
    path = write(tmp_path / "really_flac.wav", x, format="FLAC")
    assert path.read_bytes()[:4] == b"fLaC"
    y = audio.load(path)
    assert y.shape == x.shape and np.max(np.abs(y - x)) < 1e-3


@needs_ffmpeg
def test_ogg_named_mp3(tmp_path):
    x = tone(seconds=1.0)
    path = write(tmp_path / "really_ogg.mp3", x, format="OGG", subtype="VORBIS")
    assert path.read_bytes()[:4] == b"OggS"
    y = audio.load(path)
    assert y.shape[0] == 2 and abs(y.shape[1] - SR) < SR // 20
    assert abs(audio.loudness_db(y) - audio.loudness_db(x)) < 1.0


@needs_ffmpeg
def test_format_only_ffmpeg_reads(tmp_path):
    """An m4a (AAC) is not libsndfile's: the ffmpeg fall-back decodes it."""
    import subprocess

    src = write(tmp_path / "src.wav", tone(seconds=1.0))
    m4a = tmp_path / "song.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "aac", str(m4a)], check=True)
    y = audio.load(m4a)
    assert y.shape[0] == 2 and abs(y.shape[1] - SR) < SR // 10


# ----------------------------------------------------------------------------- bad inputs
def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: expected an audio file, found no file"):
        audio.load(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    (tmp_path / "vocals.wav").write_bytes(b"")
    with pytest.raises(AudioError, match=r"vocals\.wav: expected audio, found an empty file \(0 bytes\)"):
        audio.load(tmp_path / "vocals.wav")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match=r"corrupt\.wav: expected audio.*found unreadable data") as err:
        audio.load(path)
    assert "\n" not in str(err.value)


def test_zero_frames(tmp_path):
    path = write(tmp_path / "zero.wav", np.zeros((2, 0), np.float32))
    with pytest.raises(AudioError, match=r"zero\.wav: expected audio, found 0 samples"):
        audio.load(path)


def test_too_long_refused_before_decoding(tmp_path):
    # an hour at 1 kHz mono: a 7 MB file standing in for an hour-long song
    path = write(tmp_path / "hour.wav", np.zeros((1, 3600 * 1000), np.float32), sr=1000)
    with pytest.raises(AudioError, match=r"hour\.wav: expected at most 900 s of audio, found 3600\.0 s"):
        audio.load(path, max_seconds=900)


def test_silent(tmp_path):
    path = write(tmp_path / "silent.wav", np.zeros((2, 1000), np.float32))
    x = audio.load(path)
    assert audio.is_silent(x)
    with pytest.raises(AudioError, match=r"silent\.wav: expected audio with sound, found silence \(peak -inf dBFS\)"):
        audio.check_not_silent(x, path)
    quiet = tone(amp=1e-4)  # -80 dBFS
    assert audio.is_silent(quiet) and not audio.is_silent(tone())
    audio.check_not_silent(tone(), path)


# ----------------------------------------------------------------------------- save & helpers
def test_save_clips_instead_of_wrapping(tmp_path):
    x = np.array([[0.5, 1.5, -2.0, 1.0, -1.0]], np.float32)
    y = audio.load(audio.save(tmp_path / "loud.wav", x), channels=1)
    assert y[0, 1] > 0.99 and y[0, 2] < -0.99  # saturated, not wrapped to the other sign
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


def test_save_cleans_every_block_and_leaves_the_input_alone(tmp_path):
    # longer than one write block (2^16 frames), with NaN/inf/loud samples in the first and last
    n = (1 << 16) * 2 + 123
    x = (0.5 * np.sin(np.linspace(0, 900, n))).astype(np.float32)[None].repeat(2, 0)
    x[0, 5], x[1, 6], x[0, n - 3], x[1, n - 2], x[0, n - 1] = np.nan, np.inf, -np.inf, 3.0, np.nan
    before = x.copy()
    y, _ = sf.read(str(audio.save(tmp_path / "a.wav", x)), dtype="float32", always_2d=True)
    assert y.shape == (n, 2) and np.isfinite(y).all()
    assert y[5, 0] == 0.0 and y[6, 1] > 0.99 and y[n - 3, 0] < -0.99 and y[n - 2, 1] > 0.99
    assert y[n - 1, 0] == 0.0
    ok = np.isfinite(before) & (np.abs(before) <= 1.0)
    assert np.abs(y.T[ok] - before[ok]).max() < 1.0 / 32767 + 1e-6  # PCM_16 rounding only
    assert np.array_equal(x, before, equal_nan=True)
    z, _ = sf.read(str(audio.save(tmp_path / "f.wav", x, subtype="FLOAT")), dtype="float32", always_2d=True)
    assert z[n - 2, 1] == 3.0 and z[5, 0] == 0.0  # float files keep loud samples, never NaN


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])
def test_save_other_formats(tmp_path, suffix):
    x = tone(seconds=2.0)
    path = audio.save(tmp_path / f"a{suffix}", x)
    assert sf.info(str(path)).format == suffix[1:].upper()
    y = audio.load(path)
    assert y.shape[0] == 2 and abs(y.shape[1] - x.shape[1]) < SR // 20


def test_save_refuses_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"a\.xyz: expected a \.wav"):
        audio.save(tmp_path / "a.xyz", tone())


@pytest.mark.parametrize("bad, expected", [
    (np.zeros((2, 3, 4)), r"expected \[N\] or \[channels, N\] samples, found shape \(2, 3, 4\)"),
    (np.zeros((SR, 2)), r"expected channels first \(\[channels, N\]\), found shape \(44100, 2\)"),
    (np.zeros((2, 0)), "expected audio, found 0 samples")])
def test_save_names_the_file_and_the_layout_it_refuses(tmp_path, bad, expected):
    """save reads the channel layout with the codecs' one helper: the same rules, the file named."""
    with pytest.raises(ValueError, match=rf"a\.wav: {expected}"):
        audio.save(tmp_path / "a.wav", bad)
    assert not (tmp_path / "a.wav").exists()
    with pytest.raises(ValueError, match=rf"^audio: {expected}"):
        audio.as_channels_first(bad)
    from samuel.codecs import base

    assert base.as_channels_first is audio.as_channels_first


def test_save_writes_mono_from_1d(tmp_path):
    x = tone(channels=1)[0]
    y = audio.load(audio.save(tmp_path / "m.wav", x, subtype="FLOAT"), channels=1)
    assert sf.info(str(tmp_path / "m.wav")).channels == 1 and np.array_equal(y[0], x)


def test_resample_and_channels():
    x = tone(seconds=1.0)
    assert audio.resample(x, SR, 22050).shape == (2, 22050)
    assert audio.resample(x, SR, SR) is x or np.array_equal(audio.resample(x, SR, SR), x)
    assert audio.to_channels(x[:1], 2).shape == (2, SR)
    assert audio.to_channels(x, 1).shape == (1, SR)
    with pytest.raises(ValueError):
        audio.to_channels(x, 6)


def test_loudness():
    x = tone(amp=1.0, channels=1) * 1.3  # amplitude 1.0 sine: RMS -3.01 dBFS
    assert abs(audio.loudness_db(x) + 3.01) < 0.05
    assert audio.loudness_db(np.zeros((2, 10))) == -math.inf
    y = audio.match_loudness(tone(amp=0.01), x)
    assert abs(audio.loudness_db(y) - audio.loudness_db(x)) < 1e-3
    silence = np.zeros((2, 10), np.float32)
    np.testing.assert_array_equal(audio.match_loudness(silence, x), silence)


def test_player_is_small_and_peak_safe():
    x = tone(seconds=4.0, amp=3.0)  # clips: the player must scale it down, not fail
    p = audio.player(x, seconds=1.0)
    shown, rate = sf.read(io.BytesIO(p.data))
    assert rate == 22050 and shown.shape == (22050, 2)
    assert np.max(np.abs(shown)) <= 1.0
    full = audio.player(tone(seconds=4.0))
    assert len(p.data) < len(full.data) / 3


def test_loudness_db_in_blocks_equals_the_whole_signal_formula():
    """The block-wise float64 sum gives the RMS level of the whole signal (3 blocks and a part)."""
    x = np.random.default_rng(0).standard_normal((2, 1_700_000)).astype(np.float32) * 0.1
    whole = 20.0 * math.log10(math.sqrt(np.mean(x.astype(np.float64) ** 2)))
    assert abs(audio.loudness_db(x) - whole) < 1e-9
    assert abs(audio.loudness_db(x[0]) - 20.0 * math.log10(math.sqrt(np.mean(x[0].astype(np.float64) ** 2)))) < 1e-9
