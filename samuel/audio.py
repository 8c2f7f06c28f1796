"""Audio in and out: load, save, resample, channel layout, loudness, players (design §1-§2).

The only module that touches audio files. Everything inside the package is a float32
array ``[C, N]`` at 44.1 kHz (paper §III-C: "WAV 44.1 kHz stereo"); this module turns
whatever a user hands us (any common format, any rate, mono to 5.1, 8-bit to float) into
that, and says clearly what was wrong when it cannot::

    vocals.wav: expected audio, found an empty file (0 bytes)

Reading goes through soundfile (libsndfile: WAV, FLAC, OGG, MP3, ...); what libsndfile
cannot read (m4a, a mislabelled file it does not recognise) is decoded by ffmpeg when it
is on ``PATH``. Resampling is soxr at high quality.

Book: notebook 01 (a song's stems, heard); design §1 (what goes in and comes out).
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from samuel.io import atomic_path

SAMPLE_RATE = 44100  # the package's audio rate (paper §III-C: WAV 44.1 kHz)
_BLOCK = 1 << 16  # frames per write call (OGG/Vorbis crashes on very long single writes)
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


class AudioError(ValueError):
    """An audio file that cannot be used, with the file, the expected and the found.

    ``str(err)`` reads ``"<path>: expected <expected>, found <found>"``.
    """

    def __init__(self, path: str | os.PathLike, expected: str, found: str):
        self.path = str(path)
        self.expected = expected
        self.found = found
        super().__init__(f"{self.path}: expected {expected}, found {found}")


# ----------------------------------------------------------------------------- loading
def load(path: str | os.PathLike, sr: int = SAMPLE_RATE, channels: int = 2,
         max_seconds: float | None = None) -> np.ndarray:
    """Read an audio file as float32 ``[channels, N]`` at ``sr`` Hz.

    Mono is duplicated to stereo, more channels are down-mixed (see :func:`to_channels`),
    8/16/24-bit and float samples all become float32 in [-1, 1], any rate is resampled.

    Args:
        path: WAV/FLAC/OGG/MP3 (or anything ffmpeg decodes, when ffmpeg is installed).
        sr: output rate in Hz.
        channels: output channels (1 or 2, or the file's own count).
        max_seconds: refuse files longer than this (checked before decoding where possible).

    Raises:
        AudioError: missing, empty, unreadable, zero-length or too long.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "an audio file", "no file at this path")
    if path.is_dir():
        raise AudioError(path, "an audio file", "a directory")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "audio", "an empty file (0 bytes)")

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        info = None
    if info is not None and info.frames > 0 and info.samplerate > 0:
        _check_length(path, info.frames / info.samplerate, max_seconds)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)  # [N, C]
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        reason = _one_line(err).replace(f"Error opening {str(path)!r}: ", "")
        data, file_sr = _ffmpeg_read(path, max_seconds, reason=reason)
    audio = np.ascontiguousarray(data.T)  # [C, N]
    if audio.shape[1] == 0:
        raise AudioError(path, "audio", "0 samples")
    _check_length(path, audio.shape[1] / file_sr, max_seconds)
    np.nan_to_num(audio, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    audio = to_channels(audio, channels)
    return resample(audio, file_sr, sr)


def _check_length(path: Path, seconds: float, max_seconds: float | None) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(path, f"at most {max_seconds:g} s of audio", f"{seconds:.1f} s")


def _ffmpeg_read(path: Path, max_seconds: float | None, reason: str) -> tuple[np.ndarray, int]:
    """Decode ``path`` with ffmpeg to a float WAV and read that; ``[N, C]`` and its rate."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(path, "audio in a format soundfile reads (WAV/FLAC/OGG/MP3)",
                         f"unreadable data ({reason}); installing ffmpeg would let other formats load")
    with tempfile.TemporaryDirectory(prefix="samuel-decode-") as tmp:
        wav = Path(tmp) / "decoded.wav"
        cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(path), "-vn", "-map", "0:a:0"]
        if max_seconds is not None:
            cmd += ["-t", f"{max_seconds + 1:.3f}"]  # enough to tell "too long" without decoding it all
        cmd += ["-c:a", "pcm_f32le", "-f", "wav", str(wav)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wav.exists() or wav.stat().st_size == 0:
            detail = _one_line(proc.stderr).replace(f"{path}: ", "") or f"exit code {proc.returncode}"
            raise AudioError(path, "audio", f"unreadable data (soundfile: {reason}; ffmpeg: {detail})")
        try:
            data, file_sr = sf.read(str(wav), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:  # ffmpeg wrote a WAV with no frames
            raise AudioError(path, "audio", f"unreadable data ({_one_line(err)})") from None
    if max_seconds is not None and data.shape[0] > max_seconds * file_sr:
        raise AudioError(path, f"at most {max_seconds:g} s of audio", f"more than {max_seconds:g} s")
    return data, file_sr


def _one_line(text: object, limit: int = 200) -> str:
    """The last non-empty line of ``text``, trimmed: error output fit for one message line."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ----------------------------------------------------------------------------- silence
def peak_db(audio: np.ndarray) -> float:
    """Peak level in dBFS (``-inf`` for digital silence)."""
    peak = float(np.max(np.abs(audio))) if np.size(audio) else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def is_silent(audio: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the peak of ``audio`` is below ``threshold_db`` dBFS."""
    return peak_db(audio) < threshold_db


def check_not_silent(audio: np.ndarray, path: str | os.PathLike, threshold_db: float = -60.0) -> None:
    """Raise :class:`AudioError` naming ``path`` when ``audio`` is silent."""
    if is_silent(audio, threshold_db):
        raise AudioError(path, "audio with sound", f"silence (peak {peak_db(audio):.1f} dBFS)")


# ----------------------------------------------------------------------------- saving
def save(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE,
         subtype: str = "PCM_16") -> Path:
    """Write ``audio [C, N]`` (or ``[N]``) to WAV, FLAC or OGG, atomically.

    Integer subtypes are clipped to [-1, 1] first, so loud samples saturate instead of
    wrapping round. FLAC has no float subtype (float becomes PCM_24); OGG is Vorbis.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: expected a .wav, .flac or .ogg name, found {path.suffix or 'no suffix'!r}")
    audio = as_channels_first(audio, str(path))
    if fmt == "OGG":
        subtype = "VORBIS"
    elif fmt == "FLAC" and subtype not in ("PCM_S8", "PCM_16", "PCM_24"):
        subtype = "PCM_24"
    clip = subtype not in ("FLOAT", "DOUBLE")
    frames = audio.T  # [N, C]
    # NaN/inf and clipping block by block, on each block's own contiguous copy: whole-song
    # copies (63 MB each for 3 minutes of stereo) cost more in fresh pages than the arithmetic
    with atomic_path(path) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=int(sr), channels=frames.shape[1],
                          subtype=subtype, format=fmt) as f:
            for start in range(0, frames.shape[0], _BLOCK):
                block = np.array(frames[start:start + _BLOCK], dtype=np.float32, order="C")
                np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
                if clip:
                    np.clip(block, -1.0, 1.0, out=block)
                f.write(block)
    return path


# ----------------------------------------------------------------------------- transforms
def as_channels_first(audio: np.ndarray, what: str = "audio") -> np.ndarray:
    """``[N]`` or ``[C, N]`` -> float32 ``[C, N]``; rejects empty or >2-D input, and more than
    16 channels (samples first, ``[N, C]``, by mistake). ``what`` (a path) starts the message.
    Used by :func:`save` and every codec."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"{what}: expected [N] or [channels, N] samples, found shape {audio.shape}")
    if audio.shape[1] == 0:
        raise ValueError(f"{what}: expected audio, found 0 samples")
    if audio.shape[0] > 16:
        raise ValueError(f"{what}: expected channels first ([channels, N]), found shape {audio.shape}")
    return audio


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[C, N]`` from ``sr_in`` to ``sr_out`` Hz with soxr (high quality)."""
    audio = np.asarray(audio, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return audio
    squeeze = audio.ndim == 1
    frames = audio[:, None] if squeeze else audio.T  # [N, C]
    out = soxr.resample(np.ascontiguousarray(frames), int(sr_in), int(sr_out), quality="HQ")
    out = np.ascontiguousarray(out.T, dtype=np.float32)
    return out[0] if squeeze else out


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Return ``[channels, N]``: mono duplicated, or more channels down-mixed.

    Down-mix: to mono, the average of all channels; to stereo from C > 2 channels, each side
    keeps its front channel (0 = left, 1 = right) averaged with the mean of the rest
    (centre, LFE, surrounds), so a 5.1 file keeps its stereo image.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    have = audio.shape[0]
    if have == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(audio, channels, axis=0)
    if channels == 2 and have > 2:
        rest = audio[2:].mean(axis=0)
        return np.stack([(audio[0] + rest) / 2, (audio[1] + rest) / 2]).astype(np.float32)
    raise ValueError(f"expected audio with 1 channel or at least {channels}, found {have} channels")


def loudness_db(audio: np.ndarray) -> float:
    """RMS level in dBFS over all channels and samples (``-inf`` for silence).

    Summed in float64 over blocks of 2^20 samples: a whole song at once would first make two
    float64 copies of it (256 MB for 3 minutes of stereo), whose fresh pages cost more than the
    arithmetic (about 1 s against 0.07 s on a 2-core VM)."""
    flat = np.asarray(audio).reshape(-1)
    if not flat.size:
        return -math.inf
    block = 1 << 20
    total = 0.0
    for i in range(0, flat.size, block):
        part = flat[i:i + block].astype(np.float64)
        total += float(np.dot(part, part))
    rms = math.sqrt(total / flat.size)
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def loudness_gain(x: np.ndarray, ref: np.ndarray) -> float:
    """The factor that brings ``x``'s RMS level to ``ref``'s; 1 where either is silent."""
    lx, lref = loudness_db(x), loudness_db(ref)
    if not (math.isfinite(lx) and math.isfinite(lref)):
        return 1.0
    return 10.0 ** ((lref - lx) / 20.0)


def match_loudness(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Scale ``x`` so its RMS level equals that of ``ref`` (a new float32 array); silence is
    returned unchanged."""
    return np.multiply(np.asarray(x, np.float32), np.float32(loudness_gain(x, ref)), dtype=np.float32)


# ----------------------------------------------------------------------------- display
def player(audio: np.ndarray, sr: int = SAMPLE_RATE, seconds: float | None = None,
           display_sr: int = 22050):
    """An ``IPython.display.Audio`` player of the first ``seconds`` of ``audio [C, N]``.

    Down-sampled to ``display_sr`` so notebooks and the book stay small; played at its own
    level (no normalisation), only scaled down if it would clip.
    """
    from IPython.display import Audio

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if seconds is not None:
        audio = audio[:, : int(round(seconds * sr))]
    rate = int(sr)
    if display_sr and display_sr < sr:
        audio, rate = resample(audio, sr, display_sr), int(display_sr)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    return Audio(audio[0] if audio.shape[0] == 1 else audio, rate=rate, normalize=False)
