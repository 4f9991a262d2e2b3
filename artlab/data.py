"""Data loading, in one place: image folders into memory, GPU-friendly augmentation, text CSVs.

Training images are small (224 px), so a whole split is decoded once into a
uint8 tensor and augmented in batches on the training device; this keeps an
H100 busy without a farm of loader processes, and works the same on a CPU.
"""

import csv
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .images import ImageError, letterbox, list_images, load_image, to_uint8_tensor

log = logging.getLogger(__name__)

CACHE_SIZE = 224  # the side images are stored at in memory (the styles set is 224 px)


@dataclass
class ImageSet:
    """Decoded images with one label per head (-1 where a head has no label)."""

    images: torch.Tensor                      # N x 3 x S x S, uint8
    labels: dict[str, torch.Tensor]           # head -> N, int64
    paths: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason" for unreadable files

    def __len__(self):
        return len(self.images)

    @staticmethod
    def concat(sets: list["ImageSet"]) -> "ImageSet":
        heads = sorted({h for s in sets for h in s.labels})
        labels = {h: torch.cat([s.labels.get(h, torch.full((len(s),), -1)) for s in sets]) for h in heads}
        return ImageSet(torch.cat([s.images for s in sets]), labels,
                        [p for s in sets for p in s.paths], [k for s in sets for k in s.skipped])


def _load_one(path: Path, size: int):
    try:
        return to_uint8_tensor(letterbox(load_image(path, max_side=size * 2), size)), None
    except ImageError as e:
        return None, str(e)


def load_images(paths: list[Path], size: int = CACHE_SIZE, desc: str = "decoding",
                progress=None) -> tuple[list[torch.Tensor | None], list[str]]:
    """Decode many images in threads (Pillow releases the GIL while decoding)."""
    workers = min(32, (os.cpu_count() or 2) * 2)
    results = [None] * len(paths)
    errors = []
    with ThreadPoolExecutor(workers) as pool:
        for i, (tensor, error) in enumerate(tqdm(pool.map(lambda p: _load_one(p, size), paths),
                                                 total=len(paths), desc=desc, leave=False,
                                                 disable=None)):
            results[i] = tensor
            if error:
                errors.append(error)
            if progress and i % 16 == 0:
                progress(i / max(1, len(paths)))
    return results, errors


def load_class_folders(root: str | Path, head: str, classes: tuple[str, ...] | None = None,
                       size: int = CACHE_SIZE, limit_per_class: int | None = None) -> ImageSet:
    """A folder with one sub-folder per class (the folder name is the label)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    classes = classes or tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = list_images(root / name) if (root / name).is_dir() else []
        files = files[:limit_per_class] if limit_per_class else files
        paths += files
        labels += [index] * len(files)
    tensors, errors = load_images(paths, size, desc=f"{root.name}/{head}")
    keep = [i for i, t in enumerate(tensors) if t is not None]
    images = torch.stack([tensors[i] for i in keep]) if keep else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return ImageSet(images, {head: torch.tensor([labels[i] for i in keep], dtype=torch.long)},
                    [str(paths[i]) for i in keep], errors)


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
    return x.clamp(0, 1) * 2 - 1


def resize_for_eval(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """uint8 images -> float [-1, 1] at out_size (no augmentation)."""
    x = images.float() / 127.5 - 1
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)
    return x


# ---------------------------------------------------------------- text data

GENRE_TO_SUBJECT = {
    "portrait": "portrait", "landscape": "landscape", "cityscape": "landscape",
    "genre_painting": "genre_scene", "religious_painting": "history_religious", "still_life": "still_life",
}
SEMART_TYPE_TO_SUBJECT = {
    "religious": "history_religious", "mythological": "history_religious", "historical": "history_religious",
    "portrait": "portrait", "landscape": "landscape", "genre": "genre_scene", "still-life": "still_life",
}


def read_csv_rows(path: str | Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
