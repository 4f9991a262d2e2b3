"""Where models run: CUDA, then Apple's MPS, else the CPU, with no code change."""

import os

import torch


def pick_device(preferred: str | None = None) -> torch.device:
    """The best available device, or `preferred` (also from ARTLAB_DEVICE) when given."""
    preferred = preferred or os.environ.get("ARTLAB_DEVICE")
    if preferred:
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on GPUs (bf16 where supported), full precision on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None
