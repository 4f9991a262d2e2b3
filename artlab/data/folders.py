"""Image folders into memory: one sub-folder per class, decoded once into a uint8 tensor.

Training images are small (224 px), so a whole split is decoded once and augmented in
batches on the training device (artlab.data.transforms); this keeps an H100 busy without a
farm of loader processes, and works the same on a CPU.
"""

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from artlab import paths
from artlab.images import (
    ImageError,
    letterbox,
    list_images,
    load_image,
    to_uint8_tensor,
)
from artlab.labels import IMAGE_HEADS

log = logging.getLogger(__name__)

# What a curator's set of class folders (fine-tuning) may hold: fine-tuning, the Train tab's intake and
# its checks all read these.
MIN_CLASSES, MAX_CLASSES = 2, 50
MIN_PER_CLASS = 5           # fewer cannot give both a training and a held-out image
MAX_IMAGES = 5000           # all classes together; more belongs to `artlab train` on a GPU
MAX_NAME_CHARS = 64
IGNORED_FOLDERS = ("__MACOSX",)

CACHE_SIZE = 224  # the side images are stored at in memory (the styles set is 224 px)

# The selection split: every choice a recipe makes (epochs, input size, soup share, temperature,
# thresholds) is made on it, and val is measured once per shipped model. It is carved from train by
# a hash of each file's class and name, so it is the same on every machine and for every recipe.
SELECTION_FRACTION = 0.1
SPLIT_PARTS = ("fit", "selection")   # train minus the selection split, and the selection split


def _selection_key(path: Path) -> float:
    """A number in [0, 1) fixed by a file's class folder and name."""
    key = f"{path.parent.name}/{path.name}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def selection_files(files: list[Path], fraction: float = SELECTION_FRACTION) -> set[Path]:
    """Which of one class folder's train files form its selection split: those whose key falls
    below `fraction`, and at least one where the class has two files or more (tiny sets too)."""
    chosen = {f for f in files if _selection_key(f) < fraction}
    if not chosen and len(files) >= 2:
        chosen = {min(files, key=_selection_key)}
    return chosen


def train_part(files: list[Path], part: str | None) -> list[Path]:
    """One class folder's train `files` restricted to `part` ("fit", "selection"; None: all)."""
    if part is None:
        return files
    if part not in SPLIT_PARTS:
        raise ValueError(f"part must be one of {SPLIT_PARTS}, not {part!r}")
    chosen = selection_files([Path(f) for f in files])
    return [f for f in files if (Path(f) in chosen) == (part == "selection")]


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
                       size: int = CACHE_SIZE, limit_per_class: int | None = None,
                       part: str | None = None) -> ImageSet:
    """A folder with one sub-folder per class (the folder name is the label); `part` ("fit" or
    "selection") keeps only that part of a train folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    classes = classes or tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = train_part(list_images(root / name) if (root / name).is_dir() else [], part)
        files = files[:limit_per_class] if limit_per_class else files
        paths += files
        labels += [index] * len(files)
    tensors, errors = load_images(paths, size, desc=f"{root.name}/{head}")
    keep = [i for i, t in enumerate(tensors) if t is not None]
    images = torch.stack([tensors[i] for i in keep]) if keep else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return ImageSet(images, {head: torch.tensor([labels[i] for i in keep], dtype=torch.long)},
                    [str(paths[i]) for i in keep], errors)


# ------------------------------------------------------------------ the shared art data

def load_art_data(root: Path, split: str, limit: int | None = None) -> ImageSet:
    """styles/<split> and subjects/<split> of the shared data, as one set with two heads. `split`:
    "train", "val", or a part of train: "fit" (what recipes train on) or "selection" (what they
    choose on; in_selection).

    With $ARTLAB_DATA_CACHE set, the decoded set is kept there as safetensors, so parallel
    training runs on one machine decode the JPEGs only once.
    """
    cache = paths.setting("DATA_CACHE")
    cache_file = Path(cache) / f"{split}-{limit}.safetensors" if cache else None
    if cache_file and cache_file.exists():
        tensors = load_file(str(cache_file))
        return ImageSet(tensors["images"], {h: tensors[h] for h in IMAGE_HEADS})
    merged = _decode_art_data(root, split, limit)
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        save_file({"images": merged.images.contiguous(), **merged.labels}, str(cache_file))
    return merged


def _decode_art_data(root: Path, split: str, limit: int | None) -> ImageSet:
    folder_split, part = ("train", split) if split in SPLIT_PARTS else (split, None)
    sets = []
    for head, folder in (("style", "styles"), ("subject", "subjects")):
        if (root / folder / folder_split).is_dir():
            sets.append(load_class_folders(root / folder / folder_split, head, IMAGE_HEADS[head],
                                           limit_per_class=limit, part=part))
    if not sets:
        raise FileNotFoundError(f"{root}: expected styles/{split}/ and/or subjects/{split}/ class folders")
    merged = ImageSet.concat(sets)
    for head in IMAGE_HEADS:
        merged.labels.setdefault(head, torch.full((len(merged),), -1))
    for problem in merged.skipped:
        log.warning("skipped %s", problem)
    return merged
