"""Choosing the device: everything runs on CPU; CUDA is used when present."""

from __future__ import annotations

import torch

from ralif._validation import RalifInputError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        # The current device: under torchrun each process has set its own.
        return (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RalifInputError("--device cuda was asked for, but no CUDA device is available")
        if device == "cuda":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device(device)
    raise RalifInputError(f"device must be auto, cpu or cuda[:N]; got {device!r}")
