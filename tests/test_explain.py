"""Grad-CAM: same answers as the plain pass, a map where the evidence is, and an overlay of the right size."""

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image

from artlab.inference.explain import cam_for, letterbox_box, overlay
from artlab.inference.image import ArtModels


@pytest.fixture(scope="module")
def models(tiny_weights):
    return ArtModels(tiny_weights, "cpu")


def test_explain_pass_gives_the_same_labels_and_embedding(models, tmp_path):
    images = [Image.open(make_image(tmp_path / f"{i}.png", (40 * i, 90, 200 - 30 * i), size=(80, 50), pattern=i))
              for i in range(3)]
    plain = models.analyze(images, reconstruct=False)
    explained = models.analyze(images, reconstruct=False, explain=True)
    for a, b in zip(plain, explained):
        assert [n for n, _ in a.labels["style"]] == [n for n, _ in b.labels["style"]]
        assert np.allclose([p for _, p in a.labels["style"]], [p for _, p in b.labels["style"]], atol=1e-5)
        assert torch.allclose(a.embedding, b.embedding, atol=1e-5)
        assert a.heatmap is None and b.heatmap.size == (80, 50)


def test_cam_marks_the_region_that_drives_the_class():
    # A "model" whose logit for class 1 is channel 0 of the map, averaged: the CAM is that channel.
    fmap = torch.zeros(1, 2, 4, 4)
    fmap[0, 0, 1, 2] = 5.0
    fmap[0, 1] = 1.0
    fmap.requires_grad_(True)
    logits = torch.stack([fmap[:, 1].mean((1, 2)), fmap[:, 0].mean((1, 2))], dim=1)
    cam = cam_for(logits, fmap, torch.tensor([1]))
    assert cam.shape == (1, 4, 4) and cam.max() == 1.0
    assert cam[0, 1, 2] == 1.0 and cam.sum() == 1.0


def test_overlay_colours_only_where_the_map_is_hot():
    picture = Image.new("RGB", (60, 30), (128, 128, 128))
    cam = torch.zeros(8, 8)
    cam[2:4, 0:2] = 1.0                 # left part of the letterboxed square, inside the picture
    out = np.asarray(overlay(picture, cam)).astype(int)
    assert out.shape == (30, 60, 3)
    assert np.abs(out[:, 45:] - 128).max() == 0          # right side: untouched
    assert np.abs(out[:, :10] - 128).max() > 40          # hot corner: tinted
    assert letterbox_box((60, 30), 60) == (0, 15, 60, 45)
