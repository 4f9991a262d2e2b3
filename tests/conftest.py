"""Shared fixtures: tiny images and tiny (random-init) checkpoints made by the tests themselves.

Nothing here needs ../shared or a GPU.
"""

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from artlab.labels import STYLES, SUBJECTS  # noqa: E402


def make_image(path: Path, color=(200, 30, 30), size=(64, 48), fmt=None, pattern: int = 0) -> Path:
    """A small synthetic picture: a coloured field with a stripe pattern that differs by `pattern`."""
    im = Image.new("RGB", size, color)
    px = im.load()
    for x in range(size[0]):
        for y in range(size[1]):
            if (x // (2 + pattern) + y // (2 + pattern)) % 2 == 0:
                px[x, y] = tuple(255 - c for c in color)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt)
    return path


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory):
    """The ONNX engine's files (made from the tests' tiny weights) go to a folder of this run, not
    the user's data folder; processes the tests start inherit it."""
    import os

    folder = tmp_path_factory.mktemp("onnx")
    before = os.environ.get("ARTLAB_ONNX_CACHE")
    os.environ["ARTLAB_ONNX_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("ARTLAB_ONNX_CACHE", None)
    else:
        os.environ["ARTLAB_ONNX_CACHE"] = before


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and a busy shared CPU makes thread pools crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A weights folder with random-init classifier and autoencoder checkpoints (fast to make)."""
    from artlab.checkpoints import save_checkpoint
    from artlab.models.autoencoder import ArtAutoencoder
    from artlab.models.classifier import ArtClassifier

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    classifier = ArtClassifier({"style": len(STYLES), "subject": len(SUBJECTS)}).eval()
    save_checkpoint(classifier, folder / "art_classifier", {
        "name": "art_classifier", "config": {"texture": True, "embed_dim": 512},
        "labels": {"style": list(STYLES), "subject": list(SUBJECTS)}, "input_size": 64,
    }, dtype=torch.float32)
    save_checkpoint(ArtAutoencoder(16).eval(), folder / "art_autoencoder",
                    {"name": "art_autoencoder", "config": {"width": 16}, "input_size": 128},
                    dtype=torch.float32)
    return folder


@pytest.fixture(scope="session")
def class_folders(tmp_path_factory) -> Path:
    """styles/{train,val}/<style>/ and subjects/{train,val}/<subject>/ with a few synthetic images each."""
    root = tmp_path_factory.mktemp("data")
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200),
              (120, 120, 120)]
    for split, count in (("train", 4), ("val", 2)):
        for i, style in enumerate(STYLES):
            for k in range(count):
                make_image(root / "styles" / split / style / f"{k}.jpg", colors[i], pattern=i)
        for i, subject in enumerate(SUBJECTS):
            for k in range(count):
                make_image(root / "subjects" / split / subject / f"{k}.png", colors[i], size=(40, 60), pattern=i)
    return root
