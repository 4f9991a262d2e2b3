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

from artlab.images import (
    ImageError,
    letterbox,
    list_images,
    load_image,
    normalize,
    to_uint8_tensor,
)

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
    return normalize(x.clamp(0, 1), peak=1.0)


def resize_for_eval(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """uint8 images -> float [-1, 1] at out_size (no augmentation)."""
    x = normalize(images)
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


VAL_FRACTION = 0.15


@dataclass
class TextSet:
    """Texts with one label per head (-1 where a head has no label) and what kind of text each is."""

    texts: list[str]
    labels: dict[str, torch.Tensor]           # "subject"/"style" -> N, int64
    kinds: list[str]                          # "title", "semart_title" or "description"

    def __len__(self):
        return len(self.texts)

    def select(self, keep: list[int]) -> "TextSet":
        index = torch.tensor(keep, dtype=torch.long)
        return TextSet([self.texts[i] for i in keep], {h: t[index] for h, t in self.labels.items()},
                       [self.kinds[i] for i in keep])

    @staticmethod
    def concat(sets: list["TextSet"]) -> "TextSet":
        heads = sorted({h for s in sets for h in s.labels})
        return TextSet([t for s in sets for t in s.texts],
                       {h: torch.cat([s.labels.get(h, torch.full((len(s),), -1)) for s in sets]) for h in heads},
                       [k for s in sets for k in s.kinds])


def painting_split(artist: str, title: str, val_fraction: float = VAL_FRACTION) -> str:
    """"train" or "val" from a hash of the painting (artist + title), so the same painting
    (WikiArt lists some several times, one per year) never lands on both sides."""
    import hashlib
    key = f"{' '.join(artist.lower().split())}|{' '.join(title.lower().split())}"
    bucket = int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:4], "big") / 2 ** 32
    return "val" if bucket < val_fraction else "train"


def _label_index(names: tuple[str, ...], value: str | None) -> int:
    return names.index(value) if value in names else -1


def load_wikiart_titles(path: str | Path, split: str | None = None) -> TextSet:
    """wikiart_titles.csv: style label where the style is one of ours, subject where the genre maps."""
    from artlab.labels import STYLES, SUBJECTS
    texts, styles, subjects = [], [], []
    for row in read_csv_rows(path):
        title = (row.get("title") or "").strip()
        if not title or (split and painting_split(row.get("artist", ""), title) != split):
            continue
        style = _label_index(STYLES, row.get("style"))
        subject = _label_index(SUBJECTS, GENRE_TO_SUBJECT.get(row.get("genre", "")))
        texts.append(title)
        styles.append(style)
        subjects.append(subject)
    return TextSet(texts, {"style": torch.tensor(styles, dtype=torch.long),
                           "subject": torch.tensor(subjects, dtype=torch.long)}, ["title"] * len(texts))


def load_semart(path: str | Path, split: str | None = None) -> TextSet:
    """semart.csv: each painting gives a description and a title, both labelled with its subject."""
    from artlab.labels import SUBJECTS
    texts, subjects, kinds = [], [], []
    for row in read_csv_rows(path):
        title, description = (row.get("title") or "").strip(), (row.get("description") or "").strip()
        if split and painting_split(row.get("author", ""), title) != split:
            continue
        subject = _label_index(SUBJECTS, SEMART_TYPE_TO_SUBJECT.get(row.get("type", "")))
        for text, kind in ((description, "description"), (title, "semart_title")):
            if text:
                texts.append(text)
                subjects.append(subject)
                kinds.append(kind)
    return TextSet(texts, {"style": torch.full((len(texts),), -1, dtype=torch.long),
                           "subject": torch.tensor(subjects, dtype=torch.long)}, kinds)


def load_text_data(root: str | Path, split: str | None = None) -> TextSet:
    """The shared text data (`root` holds text/, or is text/ itself), one split or all of it."""
    root = Path(root)
    folder = root / "text" if (root / "text").is_dir() else root
    titles, semart = folder / "wikiart_titles.csv", folder / "semart.csv"
    if not titles.is_file() and not semart.is_file():
        raise FileNotFoundError(f"{folder}: expected wikiart_titles.csv and/or semart.csv")
    sets = []
    if titles.is_file():
        sets.append(load_wikiart_titles(titles, split))
    if semart.is_file():
        sets.append(load_semart(semart, split))
    return TextSet.concat(sets)
