"""Profiles ``smoke`` / ``demo`` / ``paper`` as frozen dataclasses (design §8).

Every hyperparameter that comes from the paper carries its meaning and the section it
comes from. ``load(profile, **overrides)`` is the one way to get a configuration; an
override is addressed as ``section__field`` (``train__lr=1e-4``) or by a unique field
name (``lr=1e-4``).

Book: design §8 (profiles); every notebook's parameters cell.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .audio import SAMPLE_RATE

PROFILES = ("smoke", "demo", "paper")


@dataclass(frozen=True)
class ModelConfig:
    """The latent U-Net (design §4, paper §IV-A/B)."""

    latent_channels: int = 64  # VAE latent width: 64 channels (paper §III-B)
    channels: tuple = (64, 128, 256, 512)  # (64,T)->(128,T/2)->(256,T/4)->(512,T/8) (design §4)
    heads: int = 8  # attention heads (paper §IV-D: "8 heads")
    head_dim: int = 64  # per-head projection width (paper §IV-D: "64-dimensional projections")
    window: int = 16  # local attention window in frames (paper §IV-B)
    mix: str = "paper"  # eq. 3 as printed ("paper") or the prose's reading ("reversed") (design §4)
    time_dim: int = 512  # width of the sinusoidal time embedding MLP (ours; paper silent)
    groups: int = 32  # GroupNorm groups (ours; paper: "Group Normalization")
    mid_blocks: int = 1  # residual blocks before and after the bottleneck attention (ours)
    # also feed the vocal latents (or the null condition) to the input convolution, beside x_t
    # (ours; off in the paper, where the vocal enters through cross-attention only)
    vocal_concat: bool = False


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule, parametrisation, loss and samplers (design §5, paper §IV-C/§V)."""

    timesteps: int = 800  # training timesteps (paper §V: "800 timesteps")
    cosine_s: float = 0.008  # cosine schedule offset s (Nichol & Dhariwal; design §5)
    snr_clamp: float = 5.0  # max of w(t)=ᾱ/(1-ᾱ); unbounded at t->0, clamped as in Min-SNR (design §5)
    snr_floor: float = 0.0  # min of w(t); 0 = the paper's weighting (ours, see diffusion.py)
    cond_dropout: float = 0.1  # condition dropped for CFG training (paper §V: 10 %)
    cfg_scale: float = 2.0  # classifier-free guidance scale at sampling (ours; paper silent)
    fast_sampler: str = "dpmsolver++"  # few-step sampler: "dpmsolver++" or "ddim" (design §5)
    fast_steps: int = 16  # its default step count (>= 40x fewer than 800)
    ddim_eta: float = 0.0  # DDIM's stochasticity: 0 deterministic, 1 ancestral (ours)


@dataclass(frozen=True)
class DataConfig:
    """Data, codec and chunking (design §2-§3, paper §III-C)."""

    codec: str = "sao"  # "sao" (Stable Audio Open VAE) or "offline" (design §3)
    sample_rate: int = SAMPLE_RATE  # audio rate (paper §III-C: WAV 44.1 kHz)
    chunk_frames: int = 1024  # latent frames per example: 1024 = 47.55 s (paper §III-C)
    max_song_seconds: float = 900.0  # skip anything over 15 minutes (paper §III-C)
    separator: str = "htdemucs"  # Demucs model (paper §III-C)
    corpus_songs: int = 0  # offline corpus size (0: use a song list instead)
    corpus_song_seconds: float = 0.0  # length of each synthetic song
    val_fraction: float = 0.1  # held-out validation by song (paper §V: 10 %)
    test_fraction: float = 0.1  # held-out test songs for evaluation (ours)
    # a local Stable Audio Open VAE folder (diffusers 'vae/' or a stable-audio-tools checkpoint
    # folder); "" -> the environment variable SAMUEL_VAE, then the hub (samuel.codecs.from_config)
    vae: str = ""
    vae_half: bool = False  # decode the SAO VAE in float16 on CUDA (ours; encode stays float32)
    # the offline corpus with what real recordings vary in (ours; samuel.data.compose): tempo
    # 60-200 BPM, GM voice and melodic leads, vibrato/glides/drift, breath, noise, drive, the
    # backing's bleed into the vocal stem, levels, EQ tilt and a room per stem. Off: as before.
    # Everything on for a profile: --set data__corpus_variety=true --set train__latent_augment=0.5
    corpus_variety: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Training loop (design §5, paper §V)."""

    lr: float = 3.5e-4  # AdamW learning rate (paper §V)
    batch_size: int = 16  # batch size (paper §V: "batch size 16")
    weight_decay: float = 0.01  # AdamW decoupled weight decay (ours; paper silent)
    max_steps: int = 20000  # optimiser steps (paper: "one hour on one A100")
    warmup_steps: int = 200  # linear warm-up before cosine annealing (ours)
    ema_decay: float = 0.999  # EMA of weights used for sampling (ours)
    grad_clip: float = 1.0  # gradient-norm clip (ours)
    eval_every: int = 500  # steps between validation passes
    patience: int = 10  # early stopping: validation passes without improvement (paper §V)
    bf16: bool = True  # bf16 autocast on GPU (paper §V: "mixed precision")
    transpose: int = 0  # pitch-shift augmentation: ± semitones, offline codec only (ours)
    # latent augmentation, offline codec only (ours; samuel.augment): the probability that a
    # training row gets a gain (± latent_gain_db, both stems, plus half that on the vocal
    # alone), a band tilt (± latent_tilt_db at the band edges, both stems) and noise on the
    # vocal (std up to latent_noise z-units). 0: off, the run as before.
    latent_augment: float = 0.0
    latent_gain_db: float = 6.0
    latent_tilt_db: float = 6.0
    latent_noise: float = 0.1


@dataclass(frozen=True)
class EvalConfig:
    """How much of the test split the evaluation scores (samuel/evaluate/, book: notebook 06)."""

    # test clips scored at most, round-robin over songs; 0 = all. Each costs one decode per
    # condition and ~5 s of CPU features, so the paper profile keeps 200 (ours; Table I used 10)
    max_clips: int = 0
    # the real-recordings evaluation (samuel/evaluate/real.py): seconds per excerpt (rounded to
    # whole model windows) and excerpts per song
    real_seconds: float = 30.0
    real_per_song: int = 3


@dataclass(frozen=True)
class Config:
    """The whole configuration of one run."""

    profile: str
    seed: int = 0
    # where torch runs (model, codec, Demucs): "auto" = CUDA when available, else CPU;
    # "cpu", "cuda", "cuda:N", "mps" (samuel.devices.resolve)
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _paper() -> Config:
    # eval: ~200 clips fit about half an hour on one A100 (book: "Reproduce it")
    return Config(profile="paper", eval=EvalConfig(max_clips=200))


def _demo() -> Config:
    # A laptop-CPU scale (design §8: well under an hour): the whole book in under 30 min on 2 cores.
    return Config(
        profile="demo",
        # The first width stays at 64 = latent channels: a narrower full-resolution path
        # cannot carry the identity of x_t, and v ≈ ε at small t needs it.
        # vocal_concat: the paper's local attention has no positional information inside its
        # window (±8 frames, about one beat), so through cross-attention alone the demo model
        # could not place drum hits on the vocal's beats (beat salience at chance); the vocal
        # also at the input convolution fixes that (book: "differences").
        model=ModelConfig(channels=(64, 96, 128, 192), heads=4, head_dim=32, time_dim=128,
                          groups=8, vocal_concat=True),
        # snr_floor: without it the noisiest steps, where the fit to the vocal is decided, get
        # weight ~0 and the demo model hardly listens to the vocal (book: "differences").
        # cfg_scale 4: the best of {2, 4, 7} on the validation songs (fit metrics).
        # DDIM with eta = 1 (the ancestral step over the skipped timesteps): on the validation
        # songs its output is less rough than deterministic DPM-Solver++'s (frame-to-frame change
        # 0.61 vs 0.70 z-units; real 0.29), with better chroma agreement (0.15 vs 0.09) and paired
        # Fréchet distance (1.38 vs 1.48) and the same beat salience. 8 steps (100x fewer than
        # 800): on 24 validation clips chroma, key and beat intervals overlap the 800-step
        # sampler's, as at 16 (book: "differences").
        diffusion=DiffusionConfig(snr_floor=1.0, cfg_scale=4.0, fast_sampler="ddim", ddim_eta=1.0,
                                  fast_steps=8),
        # corpus_songs 240 (192/24/24 songs, 96 test clips): with 120 songs (48 test clips) the
        # paired Fréchet distance beat the null baseline by 0.37 on average but the 95 %
        # intervals overlapped; the null baseline's spread across songs is wide. On the
        # validation songs the 240-song model, same steps, gave 1.09 [0.94, 1.24] against null
        # 1.56 [1.29, 1.83] and shuffled 1.71 [1.46, 1.95] (book: "differences").
        # corpus_variety: the corpus with what real recordings vary in (samuel.data.compose).
        # Chosen on the validation sets, 5000 steps each: on the real recordings (Debian's
        # fretsonfire multitracks) its chroma agreement beats shuffled and null with
        # non-overlapping intervals (0.075 [0.049, 0.101] against 0.014 and -0.003; the plain
        # corpus: -0.025) and its outputs are in 7 keys for 12 leads (plain: 4); on the plain
        # corpus's 96 validation clips chroma, key, beat and paired Frechet distance stay
        # within the plain model's intervals (book: "differences").
        data=DataConfig(codec="offline", chunk_frames=128, corpus_songs=240,
                        corpus_song_seconds=24.0, separator="none", corpus_variety=True),
        # max_steps 5000: the longest training that keeps the book within 30 minutes on 2 cores;
        # on the 96 validation clips its fit overlaps the 8000-step model's on chroma, key, beat
        # and paired Frechet distance (book: "differences"); 4000 steps were further off.
        train=TrainConfig(lr=1e-3, max_steps=5000, warmup_steps=100, eval_every=250,
                          patience=6, ema_decay=0.998, transpose=6),
    )


def _smoke() -> Config:
    # Seconds per notebook: what CI's quick checks execute (design §8).
    return Config(
        profile="smoke",
        eval=EvalConfig(real_seconds=3.0, real_per_song=1),
        model=ModelConfig(channels=(64, 64, 64, 96), heads=2, head_dim=16, time_dim=64,
                          groups=8, window=8),
        diffusion=DiffusionConfig(fast_steps=8),
        # 8 songs: 4 train, 2 validation, 2 test (the shuffled baseline needs two test songs)
        data=DataConfig(codec="offline", chunk_frames=32, corpus_songs=8,
                        corpus_song_seconds=6.0, separator="none", val_fraction=0.25,
                        test_fraction=0.25),
        train=TrainConfig(lr=1e-3, batch_size=4, max_steps=20, warmup_steps=2,
                          eval_every=10, patience=3, ema_decay=0.9),
    )


_BUILDERS = {"smoke": _smoke, "demo": _demo, "paper": _paper}
_SECTIONS = ("model", "diffusion", "data", "train", "eval")


def _coerce(old: Any, new: Any) -> Any:
    if isinstance(old, tuple) and isinstance(new, list):
        return tuple(new)
    if isinstance(old, bool) and isinstance(new, str):
        return new.lower() in ("1", "true", "yes")
    if isinstance(old, (int, float)) and not isinstance(old, bool) and isinstance(new, str):
        return type(old)(float(new)) if isinstance(old, int) else float(new)
    return new


def load(profile: str = "demo", **overrides: Any) -> Config:
    """Return the named profile with ``overrides`` applied.

    >>> load("paper").model.channels
    (64, 128, 256, 512)
    >>> load("demo", lr=3e-4).train.lr
    0.0003
    """
    if isinstance(profile, Config):
        cfg = profile
    else:
        if profile not in _BUILDERS:
            raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
        cfg = _BUILDERS[profile]()
    for key, value in overrides.items():
        if key == "seed":
            cfg = replace(cfg, seed=int(value))
            continue
        if key == "device":
            from .devices import check

            cfg = replace(cfg, device=check(value))
            continue
        if "__" in key:
            section, name = key.split("__", 1)
            candidates = [section] if section in _SECTIONS else []
        else:
            name = key
            candidates = [s for s in _SECTIONS if name in {f.name for f in fields(getattr(cfg, s))}]
        candidates = [s for s in candidates if name in {f.name for f in fields(getattr(cfg, s))}]
        if len(candidates) != 1:
            raise ValueError(f"override {key!r}: expected one field of "
                             f"{'/'.join(_SECTIONS)}, found {len(candidates)}")
        section = getattr(cfg, candidates[0])
        section = replace(section, **{name: _coerce(getattr(section, name), value)})
        cfg = replace(cfg, **{candidates[0]: section})
    return cfg


def from_dict(d: dict) -> Config:
    """Rebuild a :class:`Config` from :meth:`Config.to_dict` output (e.g. a checkpoint's JSON).

    Fields missing from ``d`` (a checkpoint written before they existed, such as ``device``
    or ``data.vae``) take their defaults; unknown fields are ignored.
    """
    def build(cls, values):
        kw = {}
        for f in fields(cls):
            if f.name in values:
                v = values[f.name]
                kw[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)
    return Config(profile=d["profile"], seed=d.get("seed", 0), device=d.get("device", "auto"),
                  model=build(ModelConfig, d.get("model", {})),
                  diffusion=build(DiffusionConfig, d.get("diffusion", {})),
                  data=build(DataConfig, d.get("data", {})),
                  train=build(TrainConfig, d.get("train", {})),
                  eval=build(EvalConfig, d.get("eval", {})))
