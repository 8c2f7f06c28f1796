"""Composing synthetic songs: key, tempo, style, chords, melody, bass, drums (book: notebook 01, "An offline corpus").

Each song is composed from a seed (key, tempo, style, instruments, chord progression, bass,
drums, harmony part and a sung lead melody) as a list of notes, and :func:`truth` records its
musical ground truth — key, tempo, beats, chords — so later chapters can measure whether
generated accompaniment fits the vocal. Rendering the notes to audio is
:mod:`samuel.data.render`; the corpus on disk is :mod:`samuel.data.synth`.

The lead melody is written so that the vocal alone carries the key, the chords and the tempo:
chord tones on every strong beat, scale tones in between, onsets on the beat grid, phrase
endings on the tonic.

With ``variety=True`` (the configuration's ``data.corpus_variety``: on in the ``demo``
profile; off in ``smoke`` and ``paper``, and then every draw is as before) a song also draws,
from a second generator seeded by its seed, what real recordings vary in and the plain corpus
does not: the tempo uniform over 60-200 BPM (the key is uniform over all 24 either way), a lead
from :data:`LEAD_VARIETY` (GM voice patches and melodic instruments), and the performance and
production settings of :func:`_variety`
(vibrato, portamento, pitch drift, breath, noise, soft distortion, accompaniment bleed, levels,
EQ tilt and reverb per stem) that :mod:`samuel.data.render` applies. The truth (key, beats,
chords, melody) stays exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..audio import SAMPLE_RATE as SR  # output sample rate (paper §III-C: 44.1 kHz)

PITCH_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10]  # natural minor
QUALITY_INTERVALS = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6),
    "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10), "7": (0, 4, 7, 10),
}
QUALITY_SUFFIX = {"maj": "", "min": "m", "dim": "dim", "maj7": "maj7", "min7": "m7", "7": "7"}

# Progressions as (scale degree 0..6, quality); one chord per bar.
PROGRESSIONS = {
    "major": [
        "I V vi IV", "I vi IV V", "vi IV I V", "I IV V IV", "I IV vi V", "ii V I I",
        "I V IV V", "I iii IV V", "I V vi iii IV I IV V", "I IV I V I IV V I",
    ],
    "minor": [
        "i VI III VII", "i iv VII III", "i VI VII i", "i VII VI VII", "i iv V i",
        "i III VII iv", "i iv VI V", "i VI iv V i VI VII i",
    ],
}
ROMAN = {"i": 0, "ii": 1, "iii": 2, "iv": 3, "v": 4, "vi": 5, "vii": 6}

# Style table: meter, tempo range (BPM), harmony figurations, instrument pools (GM programs,
# 0-based), whether chords get sevenths.
STYLES = {
    "pop":    dict(beats=4, tempo=(96, 128), figs=["block", "arpeggio", "strum"], sevenths=False,
                   harmony=[0, 1, 4, 25, 27], bass=[33, 34, 38], pad=[48, 50, 89, None]),
    "ballad": dict(beats=4, tempo=(76, 92), figs=["arpeggio", "sustain", "block"], sevenths=False,
                   harmony=[0, 4, 24, 11], bass=[32, 33, 35], pad=[48, 49, 89, 88]),
    "rock":   dict(beats=4, tempo=(112, 150), figs=["strum", "block"], sevenths=False,
                   harmony=[29, 30, 27, 1], bass=[34, 33], pad=[16, 48, None]),
    "waltz":  dict(beats=3, tempo=(84, 150), figs=["oompah", "arpeggio"], sevenths=False,
                   harmony=[0, 24, 21, 11], bass=[32, 33, 35], pad=[48, 49, None]),
    "funk":   dict(beats=4, tempo=(96, 116), figs=["stabs"], sevenths=True,
                   harmony=[7, 4, 27, 16], bass=[33, 36, 38, 39], pad=[61, 50, None]),
    "bossa":  dict(beats=4, tempo=(120, 144), figs=["bossa", "arpeggio"], sevenths=True,
                   harmony=[24, 4, 26, 11], bass=[32, 35], pad=[48, 89, None]),
}
LEAD_PROGRAMS = [53, 52]  # GM "Voice Oohs" (54), "Choir Aahs" (53), 0-based
# corpus variety: lead GM programs (0-based) -> the built-in synthesiser's timbre for them; the
# voice patches are drawn half of the time, one of the melodic instruments otherwise
LEAD_VOICES = {52: "voice", 53: "voice", 54: "voice", 85: "voice"}
LEAD_MELODIC = {40: "strings", 56: "brass", 64: "reed", 65: "reed", 66: "reed", 68: "reed",
                71: "reed", 73: "flute", 75: "flute", 22: "reed", 80: "square", 81: "saw"}
LEAD_VARIETY = {**LEAD_VOICES, **LEAD_MELODIC}
VARIETY_TEMPO = (60.0, 200.0)  # BPM, uniform
GM_NAMES = {
    0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 4: "Electric Piano 1",
    7: "Clavinet", 11: "Vibraphone", 16: "Drawbar Organ", 21: "Accordion",
    24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)", 26: "Electric Guitar (jazz)",
    27: "Electric Guitar (clean)", 29: "Overdriven Guitar", 30: "Distortion Guitar",
    32: "Acoustic Bass", 33: "Electric Bass (finger)", 34: "Electric Bass (pick)",
    35: "Fretless Bass", 36: "Slap Bass 1", 38: "Synth Bass 1", 39: "Synth Bass 2",
    48: "String Ensemble 1", 49: "String Ensemble 2", 50: "Synth Strings 1",
    52: "Choir Aahs", 53: "Voice Oohs", 61: "Brass Section", 88: "Pad 1 (new age)",
    89: "Pad 2 (warm)",
    # leads of the varied corpus
    22: "Harmonica", 40: "Violin", 54: "Synth Voice", 56: "Trumpet", 64: "Soprano Sax",
    65: "Alto Sax", 66: "Tenor Sax", 68: "Oboe", 71: "Clarinet", 73: "Flute", 75: "Pan Flute",
    80: "Lead 1 (square)", 81: "Lead 2 (sawtooth)", 85: "Lead 6 (voice)",
}
# GM percussion keys (channel 10)
KICK, STICK, SNARE, CLAP, HAT, PEDAL, OPEN, CRASH, RIDE, TOM, SHAKER = 36, 37, 38, 39, 42, 44, 46, 49, 51, 45, 70

# Drum patterns on a 16th grid (12 steps for 3/4): {drum: [(step, velocity), ...]}
DRUMS = {
    "pop": [
        {KICK: [(0, 110), (8, 105)], SNARE: [(4, 105), (12, 108)], HAT: [(s, 70 + 15 * (s % 4 == 0)) for s in range(0, 16, 2)]},
        {KICK: [(0, 110), (8, 100), (10, 90)], CLAP: [(4, 100), (12, 104)], HAT: [(s, 65 + 20 * (s % 4 == 0)) for s in range(0, 16, 2)]},
    ],
    "ballad": [
        {KICK: [(0, 100), (10, 80)], STICK: [(8, 90)], HAT: [(s, 60) for s in range(0, 16, 4)]},
        {KICK: [(0, 95)], SNARE: [(8, 85)], RIDE: [(s, 60) for s in range(0, 16, 4)]},
    ],
    "rock": [
        {KICK: [(0, 120), (6, 100), (8, 115)], SNARE: [(4, 120), (12, 120)], HAT: [(s, 85) for s in range(0, 16, 2)]},
        {KICK: [(0, 120), (8, 115), (10, 100)], SNARE: [(4, 120), (12, 120)], RIDE: [(s, 80) for s in range(0, 16, 2)]},
    ],
    "waltz": [
        {KICK: [(0, 105)], SNARE: [(4, 70), (8, 70)], PEDAL: [(s, 60) for s in range(0, 12, 4)]},
        {KICK: [(0, 100)], STICK: [(4, 75), (8, 75)], HAT: [(s, 55 + 15 * (s % 4 == 0)) for s in range(0, 12, 2)]},
    ],
    "funk": [
        {KICK: [(0, 115), (3, 90), (6, 100), (10, 105)], SNARE: [(4, 115), (7, 45), (9, 45), (12, 115), (15, 50)],
         HAT: [(s, 50 + 30 * (s % 2 == 0)) for s in range(16) if s != 14], OPEN: [(14, 80)]},
    ],
    "bossa": [
        {KICK: [(0, 95), (6, 80), (8, 95), (14, 80)], STICK: [(0, 80), (6, 80), (12, 80)],
         SHAKER: [(s, 45 + 20 * (s % 2 == 0)) for s in range(16)]},
    ],
}
# Bass figures: (beat, duration in beats, degree) — R root, 5 fifth, 8 octave, A approach to next root
BASS = {
    "pop": [[(0, 1, "R"), (1.5, 0.5, "R"), (2, 1, "5"), (3, 1, "R")], [(i / 2, 0.5, "R") for i in range(8)],
            [(0, 1.5, "R"), (1.5, 1, "R"), (2.5, 1, "5"), (3.5, 0.5, "A")]],
    "ballad": [[(0, 2, "R"), (2, 2, "5")], [(0, 3, "R"), (3, 1, "A")], [(0, 4, "R")]],
    "rock": [[(i / 2, 0.5, "R") for i in range(8)], [(0, 0.5, "R"), (0.5, 0.5, "R"), (1, 1, "8"), (2, 0.5, "R"), (2.5, 0.5, "R"), (3, 1, "5")]],
    "waltz": [[(0, 1, "R"), (1, 2, "-")], [(0, 1, "R")]],
    "funk": [[(0, 0.5, "R"), (0.75, 0.25, "8"), (1.5, 0.5, "R"), (2.5, 0.25, "5"), (2.75, 0.25, "8"), (3.5, 0.5, "A")],
             [(0, 0.75, "R"), (1, 0.25, "R"), (1.25, 0.25, "8"), (2, 0.5, "5"), (3, 0.25, "R"), (3.25, 0.5, "8")]],
    "bossa": [[(0, 1.5, "R"), (1.5, 0.5, "5"), (2, 1.5, "5"), (3.5, 0.5, "R")]],
}
# Melody rhythms per bar: (beat, duration in beats); cadence bars leave the end of the phrase free.
MELODY_4 = [
    [(0, 1), (1, 1), (2, 1), (3, 1)], [(0, 1.5), (1.5, 0.5), (2, 1), (3, 1)],
    [(0, 0.5), (0.5, 0.5), (1, 1), (2, 2)], [(0, 1), (1, 0.5), (1.5, 0.5), (2, 1.5), (3.5, 0.5)],
    [(0, 2), (2, 1), (3, 1)], [(0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1), (3, 1)],
    [(0, 1), (1, 1), (2, 1.5), (3.5, 0.5)],
]
MELODY_4_FUNK = [
    [(0, 0.75), (0.75, 0.75), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1)],
    [(0, 0.5), (0.5, 0.25), (0.75, 0.75), (2, 1), (3, 0.5), (3.5, 0.5)],
]
CADENCE_4 = [[(0, 1), (1, 1)], [(0, 2)], [(0, 1), (1, 0.5), (1.5, 1.5)], [(0, 1), (1, 2)]]
MELODY_3 = [[(0, 2), (2, 1)], [(0, 1), (1, 1), (2, 1)], [(0, 1.5), (1.5, 0.5), (2, 1)], [(0, 1), (1, 0.5), (1.5, 0.5), (2, 1)]]
CADENCE_3 = [[(0, 2)], [(0, 1), (1, 1)]]
PARTS = ("vocals", "bass", "harmony", "pad", "drums")


class Note(NamedTuple):
    """One note: MIDI ``pitch``, ``start``/``end`` in seconds, ``velocity`` 1..127, ``part``."""

    pitch: int
    start: float
    end: float
    velocity: int
    part: str


@dataclass
class Song:
    """A composed song: everything needed to render it and to write its ground truth."""

    seed: int
    seconds: float
    tonic_pc: int
    mode: str                      # "major" | "minor"
    tempo_bpm: float
    beats_per_bar: int             # 4, or 3 for the waltz
    style: str
    figuration: str                # harmony figuration (arpeggio, block, strum, ...)
    instruments: dict              # part -> GM program (0-based) or None
    progression: list              # one (root_pc, quality) per bar, looped over the song
    notes: list = field(default_factory=list)  # list[Note]
    pans: dict = field(default_factory=dict)   # part -> pan in [-1, 1]
    vocal_gain_db: float = 0.0     # vocal RMS relative to the accompaniment
    variety: dict = field(default_factory=dict)  # performance/production settings; {} = none

    @property
    def beat_s(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def bar_s(self) -> float:
        return self.beats_per_bar * self.beat_s

    @property
    def key_name(self) -> str:
        return f"{PITCH_NAMES[self.tonic_pc]} {self.mode}"

    def part(self, name: str) -> list:
        return [n for n in self.notes if n.part == name]

    def chords(self) -> list:
        """Chord segments ``[{start, end, root_pc, quality, label}]`` covering ``[0, seconds]``."""
        out, bar = [], 0
        while bar * self.bar_s < self.seconds - 1e-9:
            root, quality = self.progression[bar % len(self.progression)]
            out.append(dict(start=round(bar * self.bar_s, 6),
                            end=round(min((bar + 1) * self.bar_s, self.seconds), 6),
                            root_pc=int(root), quality=quality, label=chord_label(root, quality)))
            bar += 1
        return out


def chord_label(root_pc: int, quality: str) -> str:
    return PITCH_NAMES[root_pc] + QUALITY_SUFFIX[quality]


def chord_pcs(root_pc: int, quality: str) -> set:
    """Pitch classes of a chord."""
    return {(root_pc + i) % 12 for i in QUALITY_INTERVALS[quality]}


def song_seed(seed: int, index: int) -> int:
    """Seed of song ``index`` in a corpus drawn with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


# ----------------------------------------------------------------------------- composition
def compose(seed: int, seconds: float, variety: bool = False) -> Song:
    """Compose a song of ``seconds`` from ``seed`` (deterministic: ``numpy.random.default_rng(seed)``).

    ``variety``: also draw the varied tempo, lead and performance settings (module docstring)
    from ``numpy.random.default_rng([seed, 29])``; the main generator's draws are unchanged.
    """
    rng = np.random.default_rng(seed)
    style = str(rng.choice(list(STYLES)))
    spec = STYLES[style]
    mode = str(rng.choice(["major", "minor"]))
    tonic = int(rng.integers(12))
    tempo = float(rng.integers(spec["tempo"][0], spec["tempo"][1] + 1))
    vrng = np.random.default_rng([int(seed), 29]) if variety else None
    if variety:
        tempo = round(float(vrng.uniform(*VARIETY_TEMPO)), 2)
    beats = spec["beats"]
    scale = MAJOR_SCALE if mode == "major" else MINOR_SCALE

    prog_text = str(rng.choice(PROGRESSIONS[mode]))
    progression = [_roman_chord(tok, tonic, scale, spec["sevenths"]) for tok in prog_text.split()]
    instruments = dict(
        vocals=int(rng.choice(LEAD_PROGRAMS)),
        bass=int(rng.choice(spec["bass"])),
        harmony=int(rng.choice(spec["harmony"])),
        pad=_opt_int(spec["pad"][int(rng.integers(len(spec["pad"])))]),
    )
    song = Song(seed=int(seed), seconds=float(seconds), tonic_pc=tonic, mode=mode, tempo_bpm=tempo,
                beats_per_bar=beats, style=style, figuration=str(rng.choice(spec["figs"])),
                instruments=instruments, progression=progression)
    song.pans = dict(vocals=float(rng.uniform(-0.1, 0.1)), bass=float(rng.uniform(-0.05, 0.05)),
                     harmony=float(rng.uniform(0.15, 0.4) * rng.choice([-1, 1])),
                     pad=0.0, drums=float(rng.uniform(-0.1, 0.1)))
    song.pans["pad"] = -0.8 * song.pans["harmony"]
    song.vocal_gain_db = float(rng.uniform(-1.0, 4.0))
    if variety:
        pool = LEAD_VOICES if vrng.random() < 0.5 else LEAD_MELODIC
        song.instruments["vocals"] = int(vrng.choice(sorted(pool)))
        song.vocal_gain_db = float(vrng.uniform(-6.0, 8.0))
        song.variety = _variety(vrng, song.instruments["vocals"])

    n_bars = int(np.ceil(seconds / song.bar_s))
    notes = []
    notes += _melody(song, rng, n_bars, scale)
    notes += _bass(song, rng, n_bars)
    notes += _harmony(song, rng, n_bars)
    notes += _drums(song, rng, n_bars)
    song.notes = _tidy(notes, seconds)
    return song


def _variety(rng, lead: int) -> dict:
    """The performance and production settings of a varied song (applied by the renderer).

    Pitch: vibrato (rate Hz, depth and onset delay), a glide into a note from the previous one
    (portamento: probability and time) and a slow drift of the intonation (semitones), all
    small enough that every note stays nearest its written pitch. Vocal stem: breath before
    phrases and a noise floor (dB re the vocal RMS), soft distortion (tanh drive; 0 = none) and
    the accompaniment's bleed as a separator leaves it (dB re the accompaniment, band-limited
    to ``bleed_band`` Hz; None = no bleed). Per stem: an EQ tilt (dB per octave about 1 kHz),
    a room (decay s, wet level), level jitter of each accompaniment part (dB), and the peak of
    the whole song.
    """
    u = rng.uniform
    return dict(
        lead=int(lead), timbre=LEAD_VARIETY[int(lead)],
        vibrato_hz=round(float(u(4.0, 7.0)), 3), vibrato_st=round(float(u(0.0, 0.45)), 3),
        vibrato_delay_s=round(float(u(0.05, 0.4)), 3),
        glide_p=round(float(u(0.0, 0.8)), 3), glide_s=round(float(u(0.02, 0.12)), 3),
        drift_st=round(float(u(0.0, 0.2)), 3),
        formant_scale=round(float(u(0.85, 1.25)), 3), vowels=[int(v) for v in rng.permutation(6)[:2]],
        breath_db=round(float(u(-34.0, -18.0)), 2) if rng.random() < 0.7 else None,
        noise_db=round(float(u(-60.0, -36.0)), 2),
        drive=round(float(u(1.0, 5.0)), 3) if rng.random() < 0.4 else 0.0,
        bleed_db=round(float(-u(20.0, 30.0)), 2) if rng.random() < 0.75 else None,
        bleed_band=[round(float(u(80.0, 400.0)), 1), round(float(u(2000.0, 9000.0)), 1)],
        tilt_vocals=round(float(u(-3.0, 3.0)), 3), tilt_accomp=round(float(u(-3.0, 3.0)), 3),
        room_vocals=[round(float(u(0.03, 0.6)), 3), round(float(u(0.0, 0.45)), 3)],
        room_accomp=[round(float(u(0.03, 0.6)), 3), round(float(u(0.0, 0.45)), 3)],
        part_db={p: round(float(u(-4.0, 4.0)), 2) for p in PARTS if p != "vocals"},
        peak=round(float(u(0.3, 0.9)), 3),
    )


def _opt_int(x):
    return None if x is None else int(x)


def _roman_chord(token: str, tonic: int, scale: list, sevenths: bool) -> tuple:
    degree = ROMAN[token.lower()]
    root = (tonic + scale[degree]) % 12
    third = (scale[(degree + 2) % 7] - scale[degree]) % 12
    fifth = (scale[(degree + 4) % 7] - scale[degree]) % 12
    if token.isupper():  # written major: V in minor is the harmonic-minor dominant
        quality = "maj"
    else:
        quality = "min" if (third, fifth) == (3, 7) else ("dim" if fifth == 6 else "maj")
    if sevenths and quality != "dim":
        seventh = (scale[(degree + 6) % 7] - scale[degree]) % 12
        if token.isupper() and token.lower() == "v":
            seventh = 10
        quality = {("maj", 11): "maj7", ("maj", 10): "7", ("min", 10): "min7"}.get((quality, seventh), quality)
    return root, quality


def _chord_at_bar(song: Song, bar: int) -> tuple:
    return song.progression[bar % len(song.progression)]


def _melody(song: Song, rng, n_bars: int, scale: list) -> list:
    """The sung lead: chord tones on strong beats, scale steps between, tonic at phrase ends."""
    center = int(rng.choice([67, 65, 62, 57]))  # register: up to A5, or lower for variety
    lo, hi = center - 9, center + 10
    scale_pcs = {(song.tonic_pc + s) % 12 for s in scale}
    beats = song.beats_per_bar
    if beats == 3:
        motifs, cadences = MELODY_3, CADENCE_3
    elif song.style == "funk":
        motifs, cadences = MELODY_4_FUNK + MELODY_4[:3], CADENCE_4
    else:
        motifs, cadences = MELODY_4, CADENCE_4
    phrase_bars = int(rng.choice([2, 4]))
    picks = rng.choice(len(motifs), size=2, replace=len(motifs) < 2)
    motif_a, motif_b = motifs[picks[0]], motifs[picks[1]]
    cadence = cadences[int(rng.integers(len(cadences)))]
    start_bar = int(rng.choice([0, 0, 1]))  # sometimes a one-bar intro
    strong = {0.0, 2.0} if beats == 4 else {0.0}

    notes, prev = [], center
    for bar in range(start_bar, n_bars):
        pos = (bar - start_bar) % phrase_bars
        rhythm = cadence if pos == phrase_bars - 1 else (motif_a if pos % 2 == 0 else motif_b)
        root, quality = _chord_at_bar(song, bar)
        tones = chord_pcs(root, quality)
        t0 = bar * song.bar_s
        for i, (beat, dur) in enumerate(rhythm):
            covers_beat = any(beat <= b < beat + dur for b in range(beats))
            covers_strong = any(beat <= b < beat + dur for b in strong)
            last = pos == phrase_bars - 1 and i == len(rhythm) - 1
            if last:
                target = song.tonic_pc if song.tonic_pc in tones else root
                pitch = _nearest_pc(prev, {target}, lo, hi, rng, spread=0)
            elif covers_strong or (covers_beat and rng.random() < 0.75):
                pitch = _nearest_pc(prev, tones, lo, hi, rng, spread=1, tonic=song.tonic_pc)
            else:  # passing / neighbour tone from the scale, one or two steps from prev
                pitch = _scale_step(prev, scale_pcs, lo, hi, rng, center)
            velocity = int(rng.integers(85, 105) if covers_strong else rng.integers(68, 88))
            start = t0 + beat * song.beat_s
            notes.append(Note(pitch, start, start + dur * song.beat_s * 0.94, velocity, "vocals"))
            prev = pitch
    return notes


def _nearest_pc(prev: int, pcs: set, lo: int, hi: int, rng, spread: int, tonic: int = -1) -> int:
    cands = [p for p in range(lo, hi + 1) if p % 12 in pcs]
    dist = np.array([abs(p - prev) for p in cands], dtype=float)
    if spread == 0:
        return cands[int(np.argmin(dist))]
    w = np.exp(-dist / 2.5) * (1.0 + (dist > 0))  # prefer small moves, avoid repeating too often
    # tonal gravity: the tonic and the dominant, when in the chord, are sung more often
    w *= np.array([2.0 if p % 12 == tonic else 1.4 if p % 12 == (tonic + 7) % 12 else 1.0 for p in cands])
    return int(cands[int(rng.choice(len(cands), p=w / w.sum()))])


def _scale_step(prev: int, pcs: set, lo: int, hi: int, rng, center: int) -> int:
    up = rng.random() < (0.5 + 0.04 * (center - prev))
    steps = int(rng.choice([1, 1, 2]))
    for direction in ((1 if up else -1), (-1 if up else 1)):
        pitch = prev
        for _ in range(steps):
            pitch += direction
            while pitch % 12 not in pcs:
                pitch += direction
        if lo <= pitch <= hi:
            return pitch
    return int(np.clip(prev, lo, hi))


def _bass(song: Song, rng, n_bars: int) -> list:
    figures = BASS[song.style]
    fig = figures[int(rng.integers(len(figures)))]
    base = int(rng.integers(31, 36))  # lowest root: G1..B1
    notes = []
    for bar in range(n_bars):
        root, quality = _chord_at_bar(song, bar)
        nxt, _ = _chord_at_bar(song, bar + 1)
        r = base + (root - base) % 12
        for beat, dur, deg in fig:
            if deg == "-":
                continue
            pitch = {"R": r, "5": r + QUALITY_INTERVALS[quality][2], "8": r + 12,
                     "A": base + (nxt - base) % 12 + int(rng.choice([-1, 1, 2]))}[deg]
            start = (bar * song.beats_per_bar + beat) * song.beat_s
            vel = int(rng.integers(90, 110) if beat == 0 else rng.integers(72, 95))
            notes.append(Note(int(pitch), start, start + dur * song.beat_s * 0.92, vel, "bass"))
    return notes


def _voicing(root: int, quality: str, base: int) -> list:
    return sorted(base + (pc - base) % 12 for pc in chord_pcs(root, quality))


def _harmony(song: Song, rng, n_bars: int) -> list:
    """Harmony part in the song's figuration, plus an optional sustained pad."""
    fig, b, beats = song.figuration, song.beat_s, song.beats_per_bar
    base = int(rng.integers(53, 58))
    notes = []

    def add(pitch, beat_pos, dur, vel, part="harmony", offset=0.0):
        start = beat_pos * b + offset
        notes.append(Note(int(pitch), start, start + dur * b, int(vel), part))

    for bar in range(n_bars):
        root, quality = _chord_at_bar(song, bar)
        voice = _voicing(root, quality, base)
        b0 = bar * beats
        if fig == "block":
            hits = [(0, 1), (1, 1), (2, 1), (3, 1)] if song.style != "ballad" else [(0, 2), (2, 2)]
            if song.style == "rock":
                hits = [(i / 2, 0.45) for i in range(8)]
            for beat, dur in hits:
                for p in voice:
                    add(p, b0 + beat, dur * 0.95, 72 + 12 * (beat == 0))
        elif fig == "arpeggio":
            seq = voice + [voice[0] + 12] + voice[1:][::-1]
            for k in range(beats * 2):
                add(seq[k % len(seq)], b0 + k / 2, 0.9, 64 + 14 * (k == 0))
        elif fig == "strum":
            strum = [voice[0] - 12] + voice + [voice[1] + 12]
            pattern = [(0, 1.0, "d"), (1, 0.5, "d"), (1.5, 0.5, "u"), (2.5, 0.5, "u"), (3, 0.5, "d"), (3.5, 0.5, "u")]
            for beat, dur, direction in pattern:
                order = strum if direction == "d" else strum[::-1]
                for j, p in enumerate(order):
                    add(p, b0 + beat, dur * 0.95, (80 if direction == "d" else 62) - 2 * j, offset=0.012 * j)
        elif fig == "sustain":
            for p in voice:
                add(p, b0, beats * 0.97, 70)
        elif fig == "oompah":
            for beat in (1, 2):
                for p in voice:
                    add(p + 12 * (p < 60), b0 + beat, 0.7, 66)
        elif fig == "stabs":
            for step in (2, 6, 7, 10, 14):
                for p in voice:
                    add(p, b0 + step / 4, 0.2, 88 if step in (2, 10) else 70)
        elif fig == "bossa":
            for beat, dur in [(0, 0.75), (1.5, 0.75), (2.5, 0.5), (3, 0.75)]:
                for p in voice:
                    add(p, b0 + beat, dur, 68)
        if song.instruments["pad"] is not None:
            for p in _voicing(root, quality, base + 7):
                add(p, b0, beats * 0.99, 50, part="pad")
    return notes


def _drums(song: Song, rng, n_bars: int) -> list:
    patterns = DRUMS[song.style]
    pattern = patterns[int(rng.integers(len(patterns)))]
    step_s = song.beat_s / 4
    phrase = len(song.progression)
    notes = []
    for bar in range(n_bars):
        t0 = bar * song.bar_s
        for drum, hits in pattern.items():
            for step, vel in hits:
                v = int(np.clip(vel + rng.integers(-6, 7), 1, 127))
                notes.append(Note(drum, t0 + step * step_s, t0 + step * step_s + 0.1, v, "drums"))
        if bar % phrase == 0 and song.style in ("rock", "pop", "funk") and bar > 0:
            notes.append(Note(CRASH, t0, t0 + 0.1, 95, "drums"))
    return notes


def _tidy(notes: list, seconds: float) -> list:
    """Drop notes past the end, clip ends to the song, and stop same-pitch overlaps within a part."""
    out = []
    notes = sorted(notes, key=lambda n: (n.part, n.pitch, n.start))
    for i, n in enumerate(notes):
        if n.start >= seconds - 0.02:
            continue
        end = min(n.end, seconds)
        if i + 1 < len(notes) and notes[i + 1].part == n.part and notes[i + 1].pitch == n.pitch:
            end = min(end, notes[i + 1].start)
        if end > n.start:
            out.append(Note(int(n.pitch), round(n.start, 6), round(end, 6), int(n.velocity), n.part))
    return sorted(out, key=lambda n: (n.start, n.part, n.pitch))


# ----------------------------------------------------------------------------- ground truth
def truth(song: Song, backend: str | None = None) -> dict:
    """Ground truth for the sidecar JSON: key, tempo, beats, downbeats, chords, melody, provenance."""
    n_beats = int(np.ceil(song.seconds / song.beat_s - 1e-9))
    beat_times = [round(k * song.beat_s, 6) for k in range(n_beats) if k * song.beat_s < song.seconds]
    return dict(
        key=song.key_name, tonic_pc=song.tonic_pc, mode=song.mode,
        tempo_bpm=song.tempo_bpm, beats_per_bar=song.beats_per_bar,
        beat_times=beat_times, downbeat_times=beat_times[::song.beats_per_bar],
        chords=song.chords(), style=song.style, figuration=song.figuration,
        instruments={part: (None if prog is None else dict(program=prog, name=GM_NAMES.get(prog, f"GM {prog}")))
                     for part, prog in song.instruments.items()},
        melody=[[n.pitch, n.start, n.end] for n in song.part("vocals")],
        seed=song.seed, backend=backend, seconds=song.seconds, sample_rate=SR,
        **({"variety": song.variety} if song.variety else {}),
    )
