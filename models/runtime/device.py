"""Which device to run on: a GPU when one is present, else the CPU."""

from __future__ import annotations

import torch

from loopline.models.runtime.base import BackendError

__all__ = ["resolve_device"]


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendError("device 'cuda' was asked for, but no CUDA GPU is visible to torch")
    if device not in ("cpu", "cuda"):
        raise BackendError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device
