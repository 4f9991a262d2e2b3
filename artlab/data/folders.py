"""Image folders into memory: one sub-folder per class, decoded once into a uint8 tensor.

Training images are small (224 px), so a whole split is decoded once and augmented in
batches on the training device (artlab.data.transforms); this keeps an H100 busy without a
farm of loader processes, and works the same on a CPU.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from artlab.images import (
    ImageError,
    letterbox,
    list_images,
    load_image,
    to_uint8_tensor,
)

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

# What a curator's set of class folders (fine-tuning) may hold: fine-tuning, the Train tab's intake and
# its checks all read these.
MIN_CLASSES, MAX_CLASSES = 2, 50
MIN_PER_CLASS = 5           # fewer cannot give both a training and a held-out image
MAX_IMAGES = 5000           # all classes together; more belongs to `artlab train` on a GPU
MAX_NAME_CHARS = 64
IGNORED_FOLDERS = ("__MACOSX",)

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
