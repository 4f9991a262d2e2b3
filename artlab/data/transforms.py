"""The train and eval presets for image tensors, on any device: augment (training), resize_for_eval."""

import logging
import math

import torch
import torch.nn.functional as F

from artlab.images import (
    normalize,
)

log = logging.getLogger(__name__)


def augment(images: torch.Tensor, out_size: int, min_area: float = 0.35, color: float = 0.1) -> torch.Tensor:
    """Random resized crop + flip + small rotation + mild colour jitter, per sample, on any device.

    uint8 N x 3 x S x S in, float in [-1, 1] N x 3 x out x out back. One affine grid
    does crop, aspect, flip and rotation at once. Colour jitter is mild because
    palette is part of what makes a style.
    """
    n, device = images.shape[0], images.device
    x = images.float() / 255.0

    def uniform(lo, hi):
        return torch.empty(n, device=device).uniform_(lo, hi)

    area = uniform(min_area, 1.0)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx, ty = uniform(-1, 1) * (1 - sx), uniform(-1, 1) * (1 - sy)
    angle = uniform(-0.17, 0.17)  # about +/- 10 degrees
    flip = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([
        torch.stack([sx * cos * flip, -sy * sin, tx], 1),
        torch.stack([sx * sin * flip, sy * cos, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, (n, 3, out_size, out_size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if color > 0:
        brightness = uniform(1 - color, 1 + color).view(n, 1, 1, 1)
        contrast = uniform(1 - color, 1 + color).view(n, 1, 1, 1)
        saturation = uniform(1 - color, 1 + color).view(n, 1, 1, 1)
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = gray + (x - gray) * saturation
        mean = gray.mean(dim=(2, 3), keepdim=True)
        x = (mean + (x - mean) * contrast) * brightness
    return normalize(x.clamp(0, 1), peak=1.0)


def resize_for_eval(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """uint8 images -> float [-1, 1] at out_size (no augmentation)."""
    x = normalize(images)
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def mix_batch(x: torch.Tensor, mixup: float = 0.0, cutmix: float = 0.0) -> tuple[torch.Tensor, float]:
    """Mixup or CutMix of a batch with its reverse (image i with image n-1-i), on x's device.

    Returns the mixed batch and lam, the share of each image's own pixels: its targets are lam of its
    own and 1 - lam of its partner's (training.image.mixed_two_head_loss). The batch order is random
    already, so the reversed batch is a random partner at no cost. `mixup`, `cutmix`: the Beta(a, a)
    parameters (0: off); with both, each batch gets one of the two, at even odds.
    """
    kinds = [kind for kind, alpha in (("mixup", mixup), ("cutmix", cutmix)) if alpha > 0]
    if not kinds or len(x) < 2:
        return x, 1.0
    kind = kinds[int(torch.randint(len(kinds), ()).item())]
    alpha = mixup if kind == "mixup" else cutmix
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = x.flip(0)
    if kind == "mixup":
        return lam * x + (1 - lam) * partner, lam
    return _paste_box(x, partner, lam)


def _paste_box(x: torch.Tensor, partner: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """CutMix: a box of about (1 - lam) of the area, at a random place, taken from the partner; lam is
    recomputed from the box as clipped at the borders, so the targets match the pixels."""
    side_h, side_w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    h, w = int(side_h * cut), int(side_w * cut)
    cy, cx = int(torch.randint(side_h, ()).item()), int(torch.randint(side_w, ()).item())
    y0, y1 = max(0, cy - h // 2), min(side_h, cy + h // 2)
    x0, x1 = max(0, cx - w // 2), min(side_w, cx + w // 2)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
    return mixed, 1 - (y1 - y0) * (x1 - x0) / (side_h * side_w)
