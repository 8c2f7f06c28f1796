"""Where the model, the codec and Demucs run: the ``device`` setting (book: "Reproduce it").

One setting, :attr:`samuel.config.Config.device`, chooses the device of everything that uses
torch (the U-Net, the Stable Audio Open VAE, Demucs). ``"auto"`` (the default) is the CUDA GPU
when torch sees one, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` ask for
one explicitly. It is set with ``--device D`` on the commands, ``--set device=D``,
``samuel.config.load(profile, device=D)`` or ``OVERRIDES={"device": D}`` in a notebook.

    >>> resolve("cpu")
    'cpu'
"""
from __future__ import annotations

import re

CHOICES = ("auto", "cpu", "cuda", "mps")  # plus "cuda:N"
_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check(device: str) -> str:
    """Return ``device`` if it is a device name we accept, else raise ValueError.

    Accepted: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    """
    name = str(device).strip().lower()
    if not _PATTERN.fullmatch(name):
        raise ValueError(f"device {device!r}: expected one of auto, cpu, cuda, cuda:N or mps, "
                         f"found {device!r}")
    return name


def resolve(device: str = "auto") -> str:
    """The torch device name to use for ``device``.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.

    Returns:
        ``"cuda"``/``"cuda:N"``, ``"mps"`` or ``"cpu"``.

    Raises:
        ValueError: an unknown name, or a GPU that torch cannot see here.
    """
    import torch

    name = check(device or "auto")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: expected a CUDA GPU, found none "
                             "(torch.cuda.is_available() is False); use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: expected a GPU index below "
                             f"{torch.cuda.device_count()}, found {index}")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r}: expected an Apple MPS device, found none; "
                             "use --device cpu or auto")
    return name


def synchronize(device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU); for timing."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)
    elif str(device) == "mps":
        torch.mps.synchronize()
