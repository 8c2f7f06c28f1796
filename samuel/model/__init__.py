"""The SAMUeL model (design §4). ``build(cfg)`` is the public entry point.

Book: notebook 03; design §4.
"""
from __future__ import annotations

import torch

from .attention import SoftAlignmentAttention, global_attention, local_attention, mix_weights, rope
from .unet import SamuelUNet

__all__ = ["build", "count_parameters", "SamuelUNet", "SoftAlignmentAttention", "local_attention",
           "global_attention", "mix_weights", "rope"]


def build(cfg) -> torch.nn.Module:
    """Build the U-Net of ``cfg.model`` with the schedule of ``cfg.diffusion`` (for eq. 3's ᾱ_t)."""
    from ..diffusion import Schedule

    torch.manual_seed(cfg.seed)
    return SamuelUNet(cfg.model, Schedule.from_config(cfg).alpha_bar)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
