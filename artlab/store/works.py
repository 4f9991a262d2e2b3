"""What a gallery work is: a stored Work (what the app shows) and a NewWork (an analysed picture
ready to store), each known by the sha256 of its file's bytes."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Work:
    id: int
    path: str
    sha256: str
    title: str | None
    artist: str | None
    year: str | None
    style: str
    subject: str
    labels: dict
    psnr: float | None
    added: str
    thumb: str
    model: str | None = None

    @property
    def name(self) -> str:
        """What to call the work: its title, else its file name."""
        return self.title or Path(self.path).stem.replace("_", " ")

    def caption(self) -> str:
        parts = [self.name]
        if self.artist:
            parts.append(self.artist)
        if self.year:
            parts.append(str(self.year))
        return " · ".join(parts)


@dataclass
class NewWork:
    """A work ready to store: its analysis done, its image loaded."""

    path: str
    sha256: str
    image: Image.Image
    labels: dict
    embedding: np.ndarray
    psnr: float | None = None
    title: str | None = None
    artist: str | None = None
    year: str | None = None
    model: str | None = None     # the classifier's id (ArtModels.model_id)
