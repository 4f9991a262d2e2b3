"""Grad-CAM: where in the picture the classifier found its top style.

The classifier pools the backbone's last feature map (1280 x 7 x 7 at 224 px), so the
Grad-CAM channel weights are the gradients of the chosen logit with respect to
that map, averaged over space. `classify_with_cam` runs the classifier once with
autograd on, so the same forward pass gives the logits, the embedding and the map;
`ArtModels.analyze(..., explain=True)` uses it.
"""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from artlab.models.classifier import ArtClassifier

# A perceptually ordered "inferno"-like ramp (dark purple -> red -> yellow), 5 stops.
_RAMP = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], dtype=np.float32)


def classify_with_cam(model: ArtClassifier, x: torch.Tensor):
    """One forward pass with the feature map kept for its gradient.

    Returns (logits per head, neck, fmap); call `cam_for(logits, fmap, head, index)`
    afterwards, once the class to explain is known (the caller may average with a
    mirrored pass first). Autograd must run outside inference mode, so the input
    is cloned into a normal tensor.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        fmap, neck = model.features(x)
        logits = model.classify(neck)
    return logits, neck, fmap


def cam_for(logits: torch.Tensor, fmap: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps (B x h x w, each scaled to [0, 1]) for class `index[b]` of each image."""
    with torch.inference_mode(False), torch.enable_grad():
        score = logits.gather(1, index.view(-1, 1).to(logits.device).clone()).sum()
        # Only the gradient to fmap is needed: autograd skips the backbone's weights.
        (grads,) = torch.autograd.grad(score, fmap)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * fmap).sum(1)).detach().float()
    peak = cam.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1)
    return (cam / peak).cpu()


def letterbox_box(size_wh: tuple[int, int], square: int) -> tuple[int, int, int, int]:
    """Where `images.letterbox` puts a picture of size_wh inside a square x square canvas."""
    width, height = size_wh
    scale = square / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (square - new_w) // 2, (square - new_h) // 2
    return left, top, left + new_w, top + new_h


def _ramp(pos: np.ndarray) -> np.ndarray:
    """Positions in [0, 1] -> colours along the ramp (float32, N x 3)."""
    pos = np.clip(pos, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - low)[..., None]
    return _RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac


# The overlay's heat is 8-bit, so its colours and blend weights are two 256-entry tables
# (a table lookup instead of interpolating every pixel: 10 ms -> 1 ms at 512 px).
_HEAT_LUT = _ramp(np.arange(256) / 255.0).astype(np.float32)
_SQRT_LUT = np.sqrt(np.arange(256) / 255.0).astype(np.float32)


def heat_colours(cam: np.ndarray) -> np.ndarray:
    """[0, 1] map -> H x W x 3 uint8 colours along the ramp."""
    return _ramp(cam).astype(np.uint8)


OVERLAY_SIDE = 512  # the heat map's long side in pixels, at most


def overlay(image: Image.Image, cam: torch.Tensor, alpha: float = 0.75, max_side: int = OVERLAY_SIDE) -> Image.Image:
    """The heat map laid over the original picture (which was letterboxed for the model).

    The map is upsampled to the model's square input, cropped to where the picture
    sat, and stretched over the picture; weak regions stay mostly transparent so the
    artwork remains readable.
    """
    picture = image.convert("RGB")
    if max(picture.size) > max_side:
        picture = picture.copy()
        picture.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    square = max(picture.size)
    up = F.interpolate(cam[None, None].float(), size=(square, square), mode="bicubic", align_corners=False)[0, 0]
    left, top, right, bottom = letterbox_box(picture.size, square)
    heat = up[top:bottom, left:right].clamp(0, 1).numpy()
    heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(picture.size, Image.Resampling.BILINEAR))
    colours = _HEAT_LUT[heat]
    base = np.asarray(picture, dtype=np.float32)
    weight = (alpha * _SQRT_LUT[heat])[..., None]   # sqrt: mid-strength regions still show
    return Image.fromarray((base * (1 - weight) + colours * weight).round().astype(np.uint8))
