"""Pillow's bicubic resize, on any device, to the same bytes.

The app letterboxes a picture with Pillow (images.letterbox); the bulk indexer letterboxes on the
GPU. Torch's own antialiased bicubic is close but not equal (Pillow rounds to 8 bits after each
of its two passes and clips the overshoot between them), and on val pictures at 320 px the
difference flipped the top label of 1 picture in 60 and moved probabilities by up to 0.10. So the
resize here is Pillow's, step for step (libImaging/Resample.c): the same kernel (a = -0.5), the
same fixed-point weights, horizontal pass then vertical pass, each rounded and clipped to 0-255.
The sums are of integers below 2**53, so float64 matrix products give them exactly on any device.

Pillow's `reducing_gap` (a box reduction first, for shrinking by 6x and more at the gap of 3 the
letterbox uses) is not reproduced: callers keep to smaller factors (see `exact_for`).
"""

import functools

import numpy as np
import torch

PRECISION_BITS = 22          # Pillow's fixed-point weights: 32 - 8 - 2 bits
LETTERBOX_REDUCING_GAP = 3.0  # images.letterbox resizes with this reducing_gap


def _bicubic(x: float) -> float:
    """Pillow's bicubic kernel (a = -0.5), written as in Resample.c so the doubles round alike."""
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=512)
def bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """in_size x out_size matrix of Pillow's integer weights (precompute_coeffs, normalize_coeffs_8bpc)."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    inverse = 1.0 / filterscale
    matrix = np.zeros((in_size, out_size), dtype=np.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - first
        weights = [_bicubic((x + first - center + 0.5) * inverse) for x in range(count)]
        total = sum(weights)
        if total != 0.0:
            weights = [w / total for w in weights]
        matrix[first:first + count, out] = [int(w * (1 << PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
                                            for w in weights]
    return matrix


def _weights_on(in_size: int, out_size: int, device) -> torch.Tensor:
    return _device_weights(in_size, out_size, str(device))


@functools.lru_cache(maxsize=512)
def _device_weights(in_size: int, out_size: int, device: str) -> torch.Tensor:
    return torch.from_numpy(bicubic_weights(in_size, out_size)).to(device)


def _pass(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One pass along the last axis: Pillow's rounding (add half, shift) and clip to 8 bits."""
    total = x @ weights + float(1 << (PRECISION_BITS - 1))
    return torch.floor(total / float(1 << PRECISION_BITS)).clamp_(0, 255)


def resize_bicubic(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ... x H x W -> uint8 ... x height x width, equal to Pillow's resize(BICUBIC, reducing_gap=None)."""
    in_height, in_width = image.shape[-2:]
    x = image.to(torch.float64)
    # Pillow (12) shrinks a picture over 100 times taller than wide vertically first; else horizontally first.
    vertical_first = in_height > in_width * 100 and height < in_height
    for axis in ("vertical", "horizontal") if vertical_first else ("horizontal", "vertical"):
        if axis == "horizontal" and width != in_width:
            x = _pass(x, _weights_on(in_width, width, image.device))
        if axis == "vertical" and height != in_height:
            x = _pass(x.transpose(-1, -2), _weights_on(in_height, height, image.device)).transpose(-1, -2)
    return x.to(torch.uint8)


def exact_for(in_size: tuple[int, int], out_size: tuple[int, int], reducing_gap: float = LETTERBOX_REDUCING_GAP
              ) -> bool:
    """Whether Pillow's resize(in -> out, reducing_gap) is the plain two-pass resize (no box reduction first)."""
    return all(int(i / o / reducing_gap) <= 1 for i, o in zip(in_size, out_size))
