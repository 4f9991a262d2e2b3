"""Fast inference paths agree with the reference path (issue 6): fused vs unfused, batch vs single."""

import copy

import pytest
import torch

from artlab.inference import _probs, load_classifier
from artlab.models.backbone import fuse_batchnorm


def _randomise_batchnorm(model):
    """Give BatchNorm non-trivial statistics so fusing has something to get wrong."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def test_fused_backbone_matches_unfused(tiny_weights):
    model, _ = load_classifier(tiny_weights, "cpu")
    _randomise_batchnorm(model)
    fused = copy.deepcopy(model)
    fuse_batchnorm(fused.backbone)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.backbone.modules())
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        reference, fast = model(x), fused(x)
    for key in ("style", "subject", "embedding"):
        assert torch.allclose(reference[key], fast[key], atol=1e-4, rtol=1e-4), key


@pytest.mark.parametrize("tta", [False, True])
def test_batched_mirror_pass_matches_separate_passes(tiny_weights, tta):
    model, _ = load_classifier(tiny_weights, "cpu")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        fast = _probs(model, x, tta)
        plain, mirrored = model(x), model(x.flip(3))
    style = plain["style"].softmax(1)
    if tta:
        style = (style + mirrored["style"].softmax(1)) / 2
    assert torch.allclose(fast["style"], style, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_gpu_matches_cpu(tiny_weights):
    cpu, _ = load_classifier(tiny_weights, "cpu")
    gpu, _ = load_classifier(tiny_weights, "cuda")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        assert torch.allclose(cpu(x)["style"], gpu(x.cuda())["style"].cpu(), atol=1e-3)


def test_channels_last_autoencoder_matches(tiny_weights):
    from artlab.inference import load_autoencoder

    model, _ = load_autoencoder(tiny_weights, "cpu")
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        reference = model(x)
        fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(reference, fast, atol=1e-4)
