"""The codec interface: the "VAE" slot of the pipeline (design §3).

A codec turns audio into a ``[C, T']`` latent array (C = 64 for both of ours) and back into
44.1 kHz stereo. Lengths are frame-exact: ``decode`` of ``T'`` frames returns exactly
``T' * samples_per_frame`` samples, so latent frame ``t`` covers samples
``[t * samples_per_frame, (t + 1) * samples_per_frame)`` of the decoded audio.

Book: notebook 02 (the VAE slot); design §3.
"""
from __future__ import annotations

import abc

import numpy as np

from ..audio import SAMPLE_RATE, as_channels_first  # noqa: F401 (the codecs' channel helper)


class CodecUnavailable(RuntimeError):
    """The codec's weights cannot be had here (no local copy, no network or no access)."""


class Codec(abc.ABC):
    """Audio <-> latents. Subclasses set ``name``, ``latent_channels``, ``samples_per_frame``."""

    name: str = "codec"
    sample_rate: int = SAMPLE_RATE  # rate of decoded audio (44.1 kHz stereo)
    latent_channels: int = 64  # latent width (design §3)
    samples_per_frame: int = 2048  # decoded samples (at ``sample_rate``) per latent frame

    @property
    def frames_per_second(self) -> float:
        """Latent frames per second of audio (21.53 for 2048 samples at 44.1 kHz)."""
        return self.sample_rate / self.samples_per_frame

    def frames_for(self, num_samples: int, sr: int) -> int:
        """Latent frames that ``encode`` returns for ``num_samples`` samples at ``sr`` Hz."""
        seconds = num_samples / sr
        return int(np.ceil(seconds * self.frames_per_second - 1e-6))

    @abc.abstractmethod
    def encode(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Encode audio.

        Args:
            audio: ``[2, N]`` or ``[N]`` (mono) float samples in [-1, 1]; other channel
                counts are averaged to mono first.
            sr: its sample rate in Hz; resampled internally.

        Returns:
            float32 latents ``[latent_channels, T']`` with ``T' = frames_for(N, sr)``.
        """

    @abc.abstractmethod
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Decode ``[latent_channels, T']`` latents into float32 ``[2, T' * samples_per_frame]``
        audio at ``sample_rate``."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, latent_channels={self.latent_channels}, "
                f"frames_per_second={self.frames_per_second:.2f})")


def check_latents(latents: np.ndarray, channels: int) -> np.ndarray:
    """Validate ``[channels, T']`` latents and return them as float32."""
    latents = np.asarray(latents, dtype=np.float32)
    if latents.ndim != 2 or latents.shape[0] != channels or latents.shape[1] == 0:
        raise ValueError(f"latents: expected shape [{channels}, T'] with T' > 0, found {latents.shape}")
    return latents
