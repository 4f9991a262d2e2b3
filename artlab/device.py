"""Where models run: CUDA, then Apple's MPS, else the CPU, with no code change."""

import torch

from artlab import paths


def pick_device(preferred: str | None = None) -> torch.device:
    """The best available device, or `preferred` (also from ARTLAB_DEVICE) when given."""
    preferred = preferred or paths.setting("DEVICE")
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
        return torch.bfloat16 if cuda_native_bf16() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def cuda_native_bf16() -> bool:
    """bf16 in the GPU's hardware (Ampere and newer); older GPUs only emulate it, slowly."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older PyTorch: no emulation switch
        return torch.cuda.is_bf16_supported()


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def inference_dtype(device: torch.device) -> torch.dtype:
    """The dtype the convolutional trunks run in for inference (pooling and heads stay in fp32).

    bf16 where the hardware does it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX):
    on the 2-core EPYC this halves the convolutions' time; the shipped models' val accuracy and
    PSNR are unchanged by it (tests/test_fast_paths.py, README). ARTLAB_PRECISION=fp32 forces full precision.
    """
    choice = paths.setting("PRECISION", "auto").lower()
    if choice in ("fp32", "float32"):
        return torch.float32
    if choice in ("bf16", "bfloat16"):
        return torch.bfloat16
    if choice != "auto":
        raise ValueError(f"ARTLAB_PRECISION={choice!r}: use auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if cuda_native_bf16() else torch.float32
    if device.type == "cpu" and native_bf16_cpu():
        return torch.bfloat16
    return torch.float32
