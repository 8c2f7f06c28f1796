"""Render ``data/example_vocal.wav``: the vocal stem of one seeded synthetic song.

    .venv/bin/python data/make_example_vocal.py            # rewrites data/example_vocal.wav

The song is :func:`samuel.data.synth.compose` ``(SEED, SECONDS)`` rendered by
:func:`samuel.data.synth.render` with the built-in synthesiser (deterministic, needs neither
FluidSynth nor a soundfont); its ``vocals`` stem is averaged to mono, resampled to 22.05 kHz and
written as 16-bit PCM WAV (about 350 KB). Book: notebook 01 (the synthetic corpus).
"""
from __future__ import annotations

import sys
from pathlib import Path

SEED = 11  # the song's seed: A major, 112 BPM, "pop" (not a seed of any profile's corpus)
SECONDS = 8.0  # length of the example, in seconds
SAMPLE_RATE = 22050  # written rate (samuel.audio.load resamples to 44.1 kHz on reading)
BACKEND = "builtin"  # the package's own synthesiser: the same samples on every machine
OUT = Path(__file__).resolve().parent / "example_vocal.wav"


def render_example_vocal():
    """The example vocal, float32 ``[1, SECONDS * SAMPLE_RATE]`` at :data:`SAMPLE_RATE`."""
    from samuel import audio
    from samuel.data import synth

    song = synth.compose(SEED, SECONDS)
    vocals = synth.render(song, synth.SR, BACKEND)["vocals"]  # [2, N] at 44.1 kHz
    mono = vocals.mean(axis=0, keepdims=True)
    return audio.resample(mono, synth.SR, SAMPLE_RATE)


def main(out: Path = OUT) -> Path:
    from samuel import audio

    return audio.save(out, render_example_vocal(), SAMPLE_RATE, subtype="PCM_16")


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
