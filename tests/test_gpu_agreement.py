"""The GPU path means what the CPU path means (needs a CUDA GPU; scripts/gpu_checks.sh runs it).

The shipped models index the same files twice: on the CPU the way the app analyses an upload
(indexing.index_paths, Pillow decoding), and on the GPU through the bulk indexer (nvJPEG, device
resizing, bf16). Same files refused with the same one-line reasons; top style and subject the same
on >= 99 % of the pictures; every probability within 0.02. The pictures: $ARTLAB_AGREEMENT_DATA
(the script points it at the val set), else synthetic ones; the bad files of tests/bad_images.py
always join them.
"""

import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch
from bad_images import make_bad_files
from conftest import make_image

from artlab.bulk import bulk_index
from artlab.images import list_images
from artlab.indexing import index_paths
from artlab.inference.image import ArtModels
from artlab.store.gallery import Gallery

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")

TOP_AGREEMENT = 0.99
PROBABILITY_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    folder = os.environ.get("ARTLAB_AGREEMENT_DATA")
    if folder:
        paths = list_images(folder)
    else:
        root = tmp_path_factory.mktemp("pictures")
        paths = [make_image(root / f"{i}.jpg", (37 * i % 256, 90 + i, 200 - 2 * i), size=(160 + i, 120), pattern=i % 9)
                 for i in range(100)]
    bad = make_bad_files(tmp_path_factory.mktemp("bad"))
    return paths + sorted(bad.values())


def _labels(gallery_dir: Path) -> dict[str, dict]:
    con = sqlite3.connect(gallery_dir / "gallery.sqlite")
    return {sha: json.loads(labels) for sha, labels in con.execute("SELECT sha256, labels FROM works")}


def test_gpu_bulk_index_agrees_with_the_cpu_analysis(pictures, tmp_path):
    cpu = index_paths(Gallery(tmp_path / "cpu"), ArtModels(None, "cpu", autoencoder=False), pictures)
    gpu = bulk_index(Gallery(tmp_path / "gpu"), ArtModels(None, "cuda", autoencoder=False), pictures)
    assert sorted(gpu.errors) == sorted(cpu.errors)
    assert gpu.added == cpu.added > 0
    want, got = _labels(tmp_path / "cpu"), _labels(tmp_path / "gpu")
    assert want.keys() == got.keys()
    same_top, worst = 0, 0.0
    for sha, labels in want.items():
        same_top += all(labels[h][0][0] == got[sha][h][0][0] for h in ("style", "subject"))
        for head, ranked in labels.items():
            theirs = dict(got[sha][head])
            worst = max(worst, max(abs(p - theirs[name]) for name, p in ranked))
    print(f"GPU vs CPU on {len(want)} pictures: top style and subject the same on {same_top / len(want):.4f}, "
          f"largest probability difference {worst:.4f}")
    assert same_top / len(want) >= TOP_AGREEMENT
    assert worst <= PROBABILITY_TOLERANCE
