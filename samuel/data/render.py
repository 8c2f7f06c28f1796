"""Rendering composed songs to stems (book: notebook 01, "An offline corpus").

A :class:`~samuel.data.compose.Song` becomes separate stems: ``vocals`` (the lead) and
``accomp`` (everything else), plus their ``mix``, 44.1 kHz stereo float32. Two renderers:

* ``"fluidsynth"``: a General MIDI soundfont through pyfluidsynth (a plain song's lead on a
  sung-vowel patch, "Voice Oohs" / "Choir Aahs"; a varied song's on its drawn patch), when the
  library and a soundfont are found;
* ``"builtin"``: a small numpy synthesiser (wavetable tones with envelopes, a formant-shaped
  vibrato voice, noise/sweep drums); always available, fast and deterministic.

A song composed with variety (its ``variety`` settings, :func:`samuel.data.compose._variety`)
is rendered with them: the lead on its drawn patch (FluidSynth) or timbre and formants (the
built-in synthesiser), its pitch bent by vibrato, glides and drift (:func:`lead_bend`; pitch
wheel events for FluidSynth), the parts at jittered levels; then each stem gets its own EQ tilt
and room, the vocal stem breath, a noise floor, soft distortion and the accompaniment's
band-limited bleed (:func:`_vary_stems`), and the song a drawn peak level.
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
    if song.variety:
        vocals, accomp = _vary_stems(song, vocals, accomp, sr)
    else:
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
    gain = float(song.variety.get("peak", 0.9)) / max(max(peaks), 1e-9)
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


# ------------------------------------------------------------------ corpus variety
def lead_bend(song: Song, rate: float) -> np.ndarray:
    """The lead's pitch deviation in semitones, sampled at ``rate`` Hz over the song (and 0.5 s
    beyond, for release tails): drift + per-note detune + vibrato + glides (song.variety).

    Zero for a song without variety. Seeded by ``[song.seed, 31]``, so the curve is the same
    for both backends whatever ``rate``.
    """
    n = int(np.ceil((song.seconds + 0.5) * rate)) + 1
    bend = np.zeros(n)
    v = song.variety
    if not v:
        return bend
    rng = np.random.default_rng([song.seed, 31])
    t = np.arange(n) / rate
    drift = sum(np.sin(2 * np.pi * f * t + ph) for f, ph in zip(rng.uniform(0.03, 0.3, 3),
                                                                   rng.uniform(0, 2 * np.pi, 3)))
    bend += v["drift_st"] * drift / max(float(np.max(np.abs(drift))), 1e-9)
    prev = None
    lead = song.part("vocals")
    for k, note in enumerate(lead):  # each note's curve runs into its release, up to the next note
        stop = lead[k + 1].start if k + 1 < len(lead) else song.seconds + 0.5
        i0, i1 = int(note.start * rate), min(n, int(min(note.end + 0.3, stop) * rate))
        if i1 <= i0:
            continue
        tt = t[i0:i1] - note.start
        detune = float(np.clip(rng.normal(0.0, 0.03), -0.06, 0.06))
        ramp = np.clip((tt - v["vibrato_delay_s"]) / 0.25, 0.0, 1.0)
        seg = detune + v["vibrato_st"] * ramp * np.sin(2 * np.pi * v["vibrato_hz"] * tt)
        glide = rng.random() < v["glide_p"]
        if glide and prev is not None and note.start - prev.end < 0.3:
            x = np.clip(tt / v["glide_s"], 0.0, 1.0)
            seg = seg + (prev.pitch - note.pitch) * (1.0 - x) ** 2
        bend[i0:i1] += seg
        prev = note
    return np.clip(bend, -11.9, 11.9)


def _freqs(n: int, sr: int) -> np.ndarray:
    return np.fft.rfftfreq(n, 1.0 / sr).astype(np.float32)


def _spectrum(x: np.ndarray, n: int | None = None) -> np.ndarray:
    """The rfft of ``x`` along its last axis, zero-padded to ``n`` (single precision)."""
    from scipy import fft

    return fft.rfft(np.asarray(x, np.float32), n=n, axis=-1)


def _signal(spec: np.ndarray, n: int) -> np.ndarray:
    from scipy import fft

    return fft.irfft(spec, n=n, axis=-1)


def _tilt(f: np.ndarray, db_per_octave: float) -> np.ndarray:
    """The magnitude of an EQ tilt about 1 kHz at frequencies ``f``, limited to ±18 dB."""
    return 10 ** (np.clip(db_per_octave * np.log2(np.maximum(f, 20.0) / 1000.0), -18, 18) / 20)


def _band(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A band-pass magnitude: second-order high-pass at ``lo``, fourth-order low-pass at ``hi``."""
    return 1.0 / np.sqrt((1 + (lo / np.maximum(f, 1.0)) ** 4) * (1 + (f / hi) ** 8))


def _room(seed: int, which: int, decay: float, sr: int) -> np.ndarray:
    """A stereo room of reverberation time ``decay`` s (amplitude time constant decay / 6.9)."""
    rng = np.random.default_rng([seed, 41, which])
    tau = decay / 6.9
    t = np.arange(int(min(2.0, 0.01 + 7 * tau) * sr)) / sr
    ir = rng.standard_normal((2, t.size)) * np.exp(-t / tau)
    ir[:, : int(0.006 * sr)] = 0.0
    return ir / np.sqrt(np.sum(ir ** 2, axis=1, keepdims=True))


def _breath(song: Song, rng, n: int, sr: int) -> np.ndarray:
    """Breaths ``[n]`` before the phrases (a gap of 0.35 s or more), unit RMS where they sound:
    windows of one second of band-passed (500 Hz - 5 kHz) noise."""
    source = _signal(_spectrum(rng.standard_normal(sr)) * _band(_freqs(sr, sr), 500.0, 5000.0), sr)
    out, prev_end = np.zeros(n), -1.0
    for note in song.part("vocals"):
        if note.start - prev_end >= 0.35:
            length = int(float(rng.uniform(0.12, 0.3)) * sr)
            i1 = int((note.start - 0.02) * sr)
            i0 = max(0, i1 - length)
            if i1 > i0:
                at = int(rng.integers(0, sr - (i1 - i0)))
                out[i0:i1] += source[at: at + i1 - i0] * np.sin(np.linspace(0, np.pi, i1 - i0)) ** 2
        prev_end = note.end
    on = out != 0
    return out / max(_rms(out[on]), 1e-12) if on.any() else out


def _vary_stems(song: Song, vocals: np.ndarray, accomp: np.ndarray, sr: int) -> tuple:
    """Production of a varied song: drive, breath and a noise floor on the vocal, EQ tilt and a
    room per stem, the vocal's level, then the accompaniment's bleed into the vocal stem.

    Tilt and room are both linear and time-invariant, so they are applied together, as one
    product of spectra (zero-padded, so the convolution is linear, then cut to the song's
    length); the bleed is the accompaniment as it sounds in the mix, band-limited."""
    from scipy.fft import next_fast_len

    v = song.variety
    rng = np.random.default_rng([song.seed, 37])
    n = vocals.shape[1]
    if v["drive"] > 0:
        peak = max(float(np.max(np.abs(vocals))), 1e-9)
        vocals = np.tanh(v["drive"] * vocals / peak) / np.tanh(v["drive"]) * peak
    v_rms = _rms(vocals)
    if v["breath_db"] is not None:
        vocals = vocals + (v_rms * 10 ** (v["breath_db"] / 20)) * _breath(song, rng, n, sr)[None, :]
    rooms = [_room(song.seed, k, v[key][0], sr) for k, key in enumerate(("room_vocals", "room_accomp"))]
    size = next_fast_len(n + max(r.shape[1] for r in rooms))
    f = _freqs(size, sr)

    def response(room, wet, tilt):  # [2, F]: (dry + wet · room) · tilt
        return (1 + np.float32(wet) * _spectrum(room, size)) * _tilt(f, tilt).astype(np.float32)

    spec = _spectrum(vocals, size)
    # a noise floor, -3 dB per octave, drawn in the frequency domain; Parseval sets its RMS to
    # v_rms·10^(noise_db/20) over the padded length, scaled to the song's
    noise = (rng.standard_normal(spec.shape, dtype=np.float32)
             + 1j * rng.standard_normal(spec.shape, dtype=np.float32)) * _tilt(f, -3.0).astype(np.float32)
    noise_rms = np.sqrt(2 * np.mean(np.abs(noise[0]) ** 2) / size) * np.sqrt(size / n)
    spec += noise * np.float32(v_rms * 10 ** (v["noise_db"] / 20) / max(noise_rms, 1e-12))
    vocals = _signal(spec * response(rooms[0], v["room_vocals"][1], v["tilt_vocals"]), size)[:, :n]
    spec = _spectrum(accomp, size) * response(rooms[1], v["room_accomp"][1], v["tilt_accomp"])
    accomp = _signal(spec, size)[:, :n]
    vocals, accomp = vocals.astype(np.float64), accomp.astype(np.float64)
    v_rms, a_rms = _rms(vocals), _rms(accomp)
    if v_rms > 0 and a_rms > 0:
        vocals *= a_rms / v_rms * 10 ** (song.vocal_gain_db / 20)
    if v["bleed_db"] is not None:
        band = _band(f, *v["bleed_band"]).astype(np.float32)
        vocals = vocals + _signal(spec * band, size)[:, :n] * 10 ** (v["bleed_db"] / 20)
    return vocals, accomp


# ------------------------------------------------------------------ fluidsynth backend
FS_CHANNELS = dict(vocals=0, bass=1, harmony=2, pad=3, drums=9)
FS_VOLUME = dict(vocals=110, bass=105, harmony=88, pad=64, drums=110)
BEND_SAMPLES = 256  # a varied lead's pitch-wheel events: every 256 samples (5.8 ms at 44.1 kHz)


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
            volume = FS_VOLUME[part]
            if song.variety and part != "vocals":  # CC7 is a gain of (cc / 127) ** 2
                volume = int(np.clip(round(volume * 10 ** (song.variety["part_db"][part] / 40)), 1, 127))
            synth.cc(ch, 7, volume)
            if song.variety and part == "vocals":  # pitch-wheel range: ±12 semitones (RPN 0)
                for cc, value in ((101, 0), (100, 0), (6, 12), (38, 0)):
                    synth.cc(ch, cc, value)
            synth.cc(ch, 10, int(np.clip(64 + 63 * song.pans.get(part, 0.0), 0, 127)))
            synth.cc(ch, 91, 0)
            synth.cc(ch, 93, 0)
        events = []
        for note in song.notes:
            if note.part in parts and (note.part == "drums" or song.instruments.get(note.part) is not None):
                ch = FS_CHANNELS[note.part]
                events.append((int(round(note.start * sr)), 1, ch, note.pitch, note.velocity))
                events.append((int(round(note.end * sr)), 0, ch, note.pitch, 0))
        if song.variety and parts == ("vocals",):
            rate = sr / BEND_SAMPLES
            bend = np.round(lead_bend(song, rate) / 12.0 * 8191).astype(int)
            last = 0
            for k, value in enumerate(bend[: int(n / BEND_SAMPLES) + 1]):
                if value != last:  # kind -1 sorts before a note-on at the same sample
                    events.append((k * BEND_SAMPLES, -1, FS_CHANNELS["vocals"], int(value), 0))
                    last = value
        events.sort()
        buf = np.zeros((n, 2), dtype=np.float32)
        pos = 0
        for at, on, ch, key, vel in events:
            at = min(at, n)
            if at > pos:
                write_frames(buf, pos, at - pos)
                pos = at
            if on < 0:
                synth.pitch_bend(ch, key)
            elif on:
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
# the varied corpus's formant sets: the four above, "i" and "ae"
VARIETY_VOWELS = [*VOWELS.values(), ((270, 2290, 3010), (1.0, 0.2, 0.15)),
                  ((660, 1720, 2410), (1.0, 0.5, 0.2))]


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
        freqs, gains = VOWELS[vowel] if isinstance(vowel, str) else vowel
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
    if kind == "saw":
        return k ** -1.0, k ** -1.0
    if kind == "square":
        a = k ** -1.0 * (k % 2 == 1)
        return a, a
    if kind == "flute":
        a = k ** -2.5 * (1 + 0.5 * (k == 2))
        return a, a
    if kind == "reed":
        a = k ** -1.1 * np.where(k % 2 == 1, 1.0, 0.35)
        return a, a
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
    saw=(0.01, None, 1.0, None, 0.08), square=(0.01, None, 1.0, None, 0.08),
    flute=(0.05, None, 1.0, None, 0.1), reed=(0.03, None, 1.0, None, 0.08),
)


def _tone(kind: str, pitch: int, dur: float, velocity: int, sr: int, vowel="a",
          bend: np.ndarray | None = None) -> np.ndarray:
    """One note. ``vowel``: a name of :data:`VOWELS` or ``(formants, gains)``; ``bend``: the
    pitch deviation in semitones per output sample (replaces the built-in vibrato)."""
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    att, tau, sus, bright_tau, rel = ENVELOPES[kind]
    n = int((dur + rel) * sr)
    t = np.arange(n) / sr
    if bend is not None:
        bend = np.pad(bend[:n], (0, max(0, n - len(bend))), mode="edge") if len(bend) else np.zeros(n)
        phase = np.cumsum(f0 * 2 ** (bend / 12)) / sr
    elif kind in ("voice", "strings"):
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
    var = song.variety
    if var:  # the drawn formant sets, scaled (a shorter or longer vocal tract), and pitch curve
        song_vowels = [(tuple(f * var["formant_scale"] for f in VARIETY_VOWELS[i][0]), VARIETY_VOWELS[i][1])
                       for i in var["vowels"]]
        bend = lead_bend(song, sr)
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
            kind = _timbre(song.instruments[note.part], note.part)
            note_bend = None
            if var and note.part == "vocals":
                kind, note_bend = var["timbre"], bend[i0:]
            y = _tone(kind, note.pitch, note.end - note.start, note.velocity, sr, vowel, note_bend)
        y = y[: n + pad - i0]
        mono[note.part][i0: i0 + y.size] += y
    vocals = np.zeros((2, n))
    accomp = np.zeros((2, n))
    for part, x in mono.items():
        gain = PART_GAIN[part] * (10 ** (var["part_db"][part] / 20) if var and part != "vocals" else 1.0)
        stereo = _pan_gains(song.pans.get(part, 0.0))[:, None] * (gain * x[:n])[None, :]
        if part == "vocals":
            vocals += stereo
        else:
            accomp += stereo
    return vocals, accomp
