"""Rendering composed songs to stems (book: notebook 01, "An offline corpus").

A :class:`~samuel.data.compose.Song` becomes separate stems: ``vocals`` (the lead) and
``accomp`` (everything else), plus their ``mix``, 44.1 kHz stereo float32. Two renderers:

* ``"fluidsynth"``: a General MIDI soundfont through pyfluidsynth (the lead on a sung-vowel
  patch, "Voice Oohs" / "Choir Aahs"), when the library and a soundfont are found;
* ``"builtin"``: a small numpy synthesiser (wavetable tones with envelopes, a formant-shaped
  vibrato voice, noise/sweep drums); always available, fast and deterministic.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
from pathlib import Path

import numpy as np

from .compose import (CLAP, CRASH, HAT, KICK, OPEN, PARTS, PEDAL, RIDE, SHAKER, SNARE, SR, STICK,
                      TOM, Song)


# ----------------------------------------------------------------------------- rendering
def find_soundfont() -> str | None:
    """A GM soundfont: ``$SAMUEL_SOUNDFONT``, else the first of the usual system locations."""
    env = os.environ.get("SAMUEL_SOUNDFONT")
    if env and Path(env).is_file():
        return env
    for pattern in ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/*.sf2",
                    "/usr/share/soundfonts/*.sf2", "/usr/local/share/soundfonts/*.sf2"):
        for path in sorted(glob.glob(pattern)):
            if Path(path).is_file():
                return path
    return None


@functools.lru_cache(maxsize=1)
def fluidsynth_available() -> bool:
    """True when pyfluidsynth, libfluidsynth and a soundfont are all present."""
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth; loading it loads libfluidsynth)
    except Exception:  # ImportError, or OSError when the shared library is missing
        return False
    return find_soundfont() is not None


def resolve_backend(backend: str = "auto") -> str:
    """``"auto"`` → ``"fluidsynth"`` when available, else ``"builtin"``."""
    if backend == "auto":
        return "fluidsynth" if fluidsynth_available() else "builtin"
    if backend not in ("fluidsynth", "builtin"):
        raise ValueError(f"backend: expected 'auto', 'fluidsynth' or 'builtin', found {backend!r}")
    if backend == "fluidsynth" and not fluidsynth_available():
        raise RuntimeError("backend 'fluidsynth': pyfluidsynth, libfluidsynth or a GM soundfont "
                           "(set SAMUEL_SOUNDFONT) not found")
    return backend


def render(song: Song, sr: int = SR, backend: str = "auto") -> dict:
    """Render stems: ``{"vocals", "accomp", "mix"}``, each float32 ``[2, N]``, N = round(seconds·sr).

    ``mix == vocals + accomp`` exactly; the same gain brings the mix peak to 0.9 (all peaks < 0.99).
    """
    backend = resolve_backend(backend)
    n = int(round(song.seconds * sr))
    if backend == "fluidsynth":
        vocals, accomp = _render_fluidsynth(song, sr, n)
    else:
        vocals, accomp = _render_builtin(song, sr, n)
    room = _room_ir(song.seed, sr)
    vocals, accomp = _reverb(vocals, room, 0.12), _reverb(accomp, room, 0.18)
    # balance: vocal RMS relative to the accompaniment
    v_rms, a_rms = _rms(vocals), _rms(accomp)
    if v_rms > 0 and a_rms > 0:
        vocals *= a_rms / v_rms * 10 ** (song.vocal_gain_db / 20)
    fade = min(n, int(0.01 * sr))
    ramp = np.linspace(1.0, 0.0, fade)
    for x in (vocals, accomp):
        x[:, n - fade:] *= ramp
    mix = vocals + accomp
    peaks = [np.abs(mix).max(), np.abs(vocals).max() / 0.98 * 0.9, np.abs(accomp).max() / 0.98 * 0.9]
    gain = 0.9 / max(max(peaks), 1e-9)
    vocals = (vocals * gain).astype(np.float32)
    accomp = (accomp * gain).astype(np.float32)
    return dict(vocals=vocals, accomp=accomp, mix=vocals + accomp)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _room_ir(seed: int, sr: int) -> np.ndarray:
    """A short stereo room response: exponentially decaying noise, [2, L]."""
    rng = np.random.default_rng([seed, 7])
    t = np.arange(int(0.35 * sr)) / sr
    ir = rng.standard_normal((2, t.size)) * np.exp(-t / 0.09)
    ir[:, : int(0.008 * sr)] = 0.0  # pre-delay
    return ir / np.sqrt(np.sum(ir ** 2, axis=1, keepdims=True))


def _reverb(x: np.ndarray, ir: np.ndarray, wet: float) -> np.ndarray:
    from scipy.signal import oaconvolve

    y = np.stack([oaconvolve(x[c], ir[c])[: x.shape[1]] for c in range(2)])
    return (x + wet * y).astype(np.float64)


# ------------------------------------------------------------------ fluidsynth backend
FS_CHANNELS = dict(vocals=0, bass=1, harmony=2, pad=3, drums=9)
FS_VOLUME = dict(vocals=110, bass=105, harmony=88, pad=64, drums=110)


def _fluid_synth(soundfont: str, sr: int):
    """A fresh synth per render: a reused one keeps state that makes renders depend on history."""
    import fluidsynth

    synth = fluidsynth.Synth(gain=0.4, samplerate=float(sr))
    synth.setting("synth.reverb.active", 0)  # our own deterministic room is applied afterwards
    synth.setting("synth.chorus.active", 0)
    synth.setting("synth.polyphony", 256)
    sfid = synth.sfload(soundfont)
    if sfid < 0:
        raise RuntimeError(f"{soundfont}: expected a SoundFont, fluidsynth could not load it")
    write = fluidsynth._fl.fluid_synth_write_float
    write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    write.restype = ctypes.c_int
    # fluidsynth renders in 64-sample blocks and applies events at block boundaries; counting the
    # samples written lets every render start on a block boundary, so renders are reproducible.
    state = dict(written=0)

    def write_frames(buf: np.ndarray, start: int, count: int) -> None:
        write(synth.synth, count, buf.ctypes.data, 2 * start, 2, buf.ctypes.data, 2 * start + 1, 2)
        state["written"] += count

    return synth, sfid, write_frames, state


def _render_fluidsynth(song: Song, sr: int, n: int) -> tuple:
    synth, sfid, write_frames, state = _fluid_synth(find_soundfont(), sr)
    try:
        return _play_fluidsynth(song, sr, n, synth, sfid, write_frames, state)
    finally:
        synth.delete()


def _play_fluidsynth(song: Song, sr: int, n: int, synth, sfid, write_frames, state) -> tuple:
    scratch = np.zeros((8192 + 64, 2), dtype=np.float32)

    def silence():  # kill every voice now (no release tails), free them, realign to a block
        for ch in range(16):
            synth.cc(ch, 120, 0)
        synth.system_reset()
        write_frames(scratch, 0, 8192 + (-(state["written"] + 8192)) % 64)

    stems = []
    for parts in (("vocals",), ("bass", "harmony", "pad", "drums")):
        silence()
        for part in parts:
            ch = FS_CHANNELS[part]
            if part == "drums":
                synth.program_select(ch, sfid, 128, 0)
            elif song.instruments.get(part) is not None:
                synth.program_select(ch, sfid, 0, song.instruments[part])
            synth.cc(ch, 7, FS_VOLUME[part])
            synth.cc(ch, 10, int(np.clip(64 + 63 * song.pans.get(part, 0.0), 0, 127)))
            synth.cc(ch, 91, 0)
            synth.cc(ch, 93, 0)
        events = []
        for note in song.notes:
            if note.part in parts and (note.part == "drums" or song.instruments.get(note.part) is not None):
                ch = FS_CHANNELS[note.part]
                events.append((int(round(note.start * sr)), 1, ch, note.pitch, note.velocity))
                events.append((int(round(note.end * sr)), 0, ch, note.pitch, 0))
        events.sort()
        buf = np.zeros((n, 2), dtype=np.float32)
        pos = 0
        for at, on, ch, key, vel in events:
            at = min(at, n)
            if at > pos:
                write_frames(buf, pos, at - pos)
                pos = at
            if on:
                synth.noteon(ch, key, vel)
            else:
                synth.noteoff(ch, key)
        if pos < n:
            write_frames(buf, pos, n - pos)
        silence()
        stems.append(buf.T.astype(np.float64))
    return stems[0], stems[1]


# ------------------------------------------------------------------ builtin backend
TABLE = 4096  # wavetable length
VOWELS = {  # formants (Hz) and relative gains
    "a": ((800, 1150, 2900), (1.0, 0.5, 0.2)), "o": ((450, 800, 2830), (1.0, 0.45, 0.12)),
    "u": ((325, 700, 2530), (1.0, 0.25, 0.08)), "e": ((400, 2000, 2700), (1.0, 0.35, 0.2)),
}
PART_GAIN = dict(bass=0.55, harmony=0.16, pad=0.08, drums=0.5, vocals=0.3)


def _timbre(program: int | None, part: str) -> str:
    if part == "vocals":
        return "voice"
    if part == "bass":
        return "synthbass" if program in (38, 39) else "bass"
    p = -1 if program is None else program
    if p in (7,):
        return "clav"
    if p in (29, 30):
        return "dist"
    for lo, hi, name in ((0, 7, "piano"), (8, 15, "bell"), (16, 23, "organ"), (24, 28, "pluck"),
                         (40, 51, "strings"), (56, 63, "brass"), (80, 95, "pad")):
        if lo <= p <= hi:
            return name
    return "piano"


def _table(amps: np.ndarray) -> np.ndarray:
    """One period whose harmonic k has amplitude ``amps[k-1]``."""
    spec = np.zeros(TABLE // 2 + 1, dtype=np.complex128)
    spec[1: amps.size + 1] = -1j * amps * (TABLE / 2)
    return np.fft.irfft(spec, TABLE)


def _harmonic_amps(kind: str, f0: float, vowel: str = "a") -> tuple:
    """Bright and dull harmonic amplitudes for a timbre (the note fades from one to the other)."""
    kmax = max(1, min(60, int(16000 / f0)))
    k = np.arange(1, kmax + 1, dtype=float)
    if kind == "voice":
        freqs, gains = VOWELS[vowel]
        source = k ** -1.0
        shape = sum(g / (1 + ((k * f0 - F) / (60 + 0.06 * F)) ** 2) for F, g in zip(freqs, gains))
        a = source * (0.08 + shape)
        return a, a
    if kind == "piano":
        return k ** -1.3 * (1 + 0.3 * (k == 2)), k ** -3.0
    if kind == "pluck":
        return k ** -1.0 * np.abs(np.sin(np.pi * k * 0.18)), k ** -3.5
    if kind == "clav":
        return k ** -0.7, k ** -2.0
    if kind == "dist":
        return k ** -0.8, k ** -1.2
    if kind == "organ":
        a = np.zeros_like(k)
        for h, g in ((1, 1.0), (2, 0.8), (3, 0.5), (4, 0.4), (6, 0.25), (8, 0.2)):
            if h <= kmax:
                a[h - 1] = g
        return a, a
    if kind == "bell":
        a = np.zeros_like(k)
        a[0] = 1.0
        if kmax >= 4:
            a[3] = 0.25
        return a, a * 0.5
    if kind in ("strings", "brass"):
        a = k ** -1.0 * np.exp(-k / (14 if kind == "strings" else 20))
        return a, a
    if kind == "pad":
        return k ** -2.0, k ** -2.0
    if kind == "bass":
        return k ** -1.8 * np.exp(-k / 6), k ** -3.0
    if kind == "synthbass":
        return k ** -1.0 * np.exp(-k / 8), k ** -1.0 * np.exp(-k / 3)
    return k ** -2.0, k ** -2.0


# attack (s), decay time constant (s; None = sustained), sustain level, brightness decay (s), release (s)
ENVELOPES = dict(
    voice=(0.06, None, 1.0, None, 0.12), piano=(0.004, 0.9, 0.0, 0.25, 0.15),
    pluck=(0.003, 0.6, 0.0, 0.12, 0.08), clav=(0.002, 0.3, 0.0, 0.1, 0.04),
    dist=(0.005, 2.0, 0.4, None, 0.06), organ=(0.01, None, 1.0, None, 0.05),
    bell=(0.002, 1.0, 0.0, 0.5, 0.3), strings=(0.15, None, 1.0, None, 0.3),
    brass=(0.04, 1.0, 0.7, None, 0.1), pad=(0.3, None, 1.0, None, 0.5),
    bass=(0.005, 0.8, 0.3, 0.2, 0.06), synthbass=(0.003, 0.4, 0.5, 0.15, 0.05),
)


def _tone(kind: str, pitch: int, dur: float, velocity: int, sr: int, vowel: str = "a") -> np.ndarray:
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    att, tau, sus, bright_tau, rel = ENVELOPES[kind]
    n = int((dur + rel) * sr)
    t = np.arange(n) / sr
    if kind in ("voice", "strings"):
        depth = 0.004 if kind == "voice" else 0.002  # vibrato ~ ±0.07 semitones-ish, fading in
        ramp = np.clip((t - 0.15) / 0.3, 0.0, 1.0)
        freq = f0 * (1 + depth * ramp * np.sin(2 * np.pi * 5.3 * t))
        phase = np.cumsum(freq) / sr
    else:
        phase = f0 * t
    idx = (phase * TABLE).astype(np.int64) & (TABLE - 1)
    bright, dull = _harmonic_amps(kind, f0, vowel)
    y = _table(bright)[idx]
    if bright_tau is not None:
        mix = np.exp(-t / bright_tau)
        y = mix * y + (1 - mix) * _table(dull)[idx]
    env = np.minimum(t / att, 1.0)
    if tau is not None:
        env = env * (sus + (1 - sus) * np.exp(-t / tau))
    env *= np.clip(1.0 - (t - dur) / rel, 0.0, 1.0)
    y = y * env
    if kind == "dist":
        y = np.tanh(4 * y) * 0.4
    return y * (velocity / 127.0) ** 1.5


def _drum_kit(seed: int, sr: int) -> dict:
    rng = np.random.default_rng([seed, 11])

    def t_(s):
        return np.arange(int(s * sr)) / sr

    def noise(s):
        return rng.standard_normal(int(s * sr))

    def hp(x):
        return np.diff(x, prepend=0.0)

    kit = {}
    t = t_(0.4)
    kit[KICK] = np.sin(2 * np.pi * np.cumsum(48 + 110 * np.exp(-t / 0.03)) / sr) * np.exp(-t / 0.22)
    t = t_(0.3)
    kit[SNARE] = 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05) + 0.5 * hp(noise(0.3)) * np.exp(-t / 0.1)
    t = t_(0.25)
    kit[CLAP] = 0.6 * hp(noise(0.25)) * (np.exp(-t / 0.08) + np.exp(-np.maximum(t - 0.012, 0) / 0.01) * (t > 0.012))
    t = t_(0.08)
    kit[STICK] = 0.6 * np.sin(2 * np.pi * 1700 * t) * np.exp(-t / 0.012) + 0.3 * hp(noise(0.08)) * np.exp(-t / 0.008)
    t = t_(0.12)
    kit[HAT] = 0.35 * hp(hp(noise(0.12))) * np.exp(-t / 0.025)
    kit[PEDAL] = 0.25 * hp(hp(noise(0.12))) * np.exp(-t / 0.018)
    t = t_(0.5)
    kit[OPEN] = 0.3 * hp(hp(noise(0.5))) * np.exp(-t / 0.2)
    t = t_(1.2)
    metal = sum(np.sin(2 * np.pi * f * t) for f in (3120, 4230, 5470, 6810)) / 4
    kit[RIDE] = (0.25 * metal + 0.1 * hp(noise(1.2))) * np.exp(-t / 0.6)
    t = t_(1.5)
    kit[CRASH] = 0.35 * hp(noise(1.5)) * np.exp(-t / 0.7)
    t = t_(0.35)
    kit[TOM] = np.sin(2 * np.pi * np.cumsum(110 + 60 * np.exp(-t / 0.05)) / sr) * np.exp(-t / 0.18)
    t = t_(0.09)
    kit[SHAKER] = 0.2 * hp(noise(0.09)) * np.exp(-((t - 0.03) / 0.02) ** 2)
    return kit


def _pan_gains(pan: float) -> np.ndarray:
    angle = (np.clip(pan, -1, 1) + 1) * np.pi / 4
    return np.array([np.cos(angle), np.sin(angle)]) * np.sqrt(2)


def _render_builtin(song: Song, sr: int, n: int) -> tuple:
    rng = np.random.default_rng([song.seed, 3])
    vowels = list(VOWELS)
    song_vowels = [vowels[i] for i in rng.choice(len(vowels), size=2, replace=False)]
    kit = _drum_kit(song.seed, sr)
    pad = int(2 * sr)
    mono = {part: np.zeros(n + pad) for part in PARTS}
    for note in song.notes:
        if note.part != "drums" and song.instruments.get(note.part) is None:
            continue
        i0 = int(round(note.start * sr))
        if note.part == "drums":
            y = kit.get(note.pitch, kit[HAT]) * (note.velocity / 127.0)
        else:
            vowel = song_vowels[int(rng.integers(2))] if note.part == "vocals" else "a"
            y = _tone(_timbre(song.instruments[note.part], note.part), note.pitch, note.end - note.start,
                      note.velocity, sr, vowel)
        y = y[: n + pad - i0]
        mono[note.part][i0: i0 + y.size] += y
    vocals = np.zeros((2, n))
    accomp = np.zeros((2, n))
    for part, x in mono.items():
        stereo = _pan_gains(song.pans.get(part, 0.0))[:, None] * (PART_GAIN[part] * x[:n])[None, :]
        if part == "vocals":
            vocals += stereo
        else:
            accomp += stereo
    return vocals, accomp
