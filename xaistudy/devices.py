"""Choosing the torch device once, from a ``--device auto|cpu|cuda`` option."""

from __future__ import annotations

from xaistudy.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto"):
    """Return the ``torch.device`` for ``name``: ``cuda`` when present for ``auto``."""
    import torch

    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown device {name!r}: allowed are {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda was asked for but no CUDA device is available; use auto or cpu"
        )
    return torch.device(name)
