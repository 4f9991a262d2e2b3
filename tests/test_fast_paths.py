"""Fast inference paths agree with the reference path (issue 6): fused vs unfused, batch vs single."""

import copy

import pytest
import torch

from artlab.inference.image import _probs, load_classifier
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
    from artlab.inference.image import load_autoencoder

    model, _ = load_autoencoder(tiny_weights, "cpu")
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.inference_mode():
        reference = model(x)
        fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(reference, fast, atol=1e-4)


# ------------------------------------------------ bf16 trunks (the default where the CPU has native bf16)

def _image_like(n, size, seed=0):
    """Smooth pictures rather than noise: bf16 is meant for images, and noise exaggerates its error."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic").clamp(-1, 1)


def test_bf16_trunk_matches_fp32(tiny_weights):
    reference, _ = load_classifier(tiny_weights, "cpu")
    _randomise_batchnorm(reference)
    fast = copy.deepcopy(reference)
    fuse_batchnorm(fast.backbone)
    fast.set_trunk_dtype(torch.bfloat16)
    assert fast.trunk_dtype == torch.bfloat16 and fast.heads["style"].weight.dtype == torch.float32
    x = _image_like(4, 64)
    with torch.inference_mode():
        want, got = _probs(reference, x, True), _probs(fast, x, True)
    for head in ("style", "subject"):
        assert got[head].dtype == torch.float32
        assert torch.allclose(want[head], got[head], atol=0.02), (want[head] - got[head]).abs().max()
    assert (want["embedding"] * got["embedding"]).sum(1).min() > 0.99


def test_bf16_autoencoder_matches_fp32(tiny_weights):
    from artlab.inference.image import load_autoencoder
    from artlab.models.autoencoder import psnr

    reference, _ = load_autoencoder(tiny_weights, "cpu")
    fast = copy.deepcopy(reference).to(torch.bfloat16)
    x = _image_like(2, 128)
    with torch.inference_mode():
        want, got = reference(x), fast(x)
    assert got.dtype == torch.float32
    assert (want - got).abs().max() < 0.05
    assert torch.allclose(psnr(want, x), psnr(got, x), atol=0.1)


@pytest.mark.parametrize("setting, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_setting_reaches_every_model(tiny_weights, monkeypatch, tmp_path, setting, dtype):
    from conftest import make_image

    from artlab.inference.image import ArtModels

    monkeypatch.setenv("ARTLAB_PRECISION", setting)
    models = ArtModels(tiny_weights, "cpu")
    assert models.classifier.trunk_dtype == dtype and models.autoencoder.dtype == dtype
    image = models.prepare(make_image(tmp_path / "a.png", (180, 40, 40), size=(96, 72), pattern=1))
    (result,) = models.analyze([image], explain=True)  # Grad-CAM's backward works in either
    assert result.heatmap is not None and result.psnr is not None
    assert abs(sum(p for _, p in result.labels["style"]) - 1) < 1e-4


def test_precision_choice(monkeypatch):
    from artlab.device import inference_dtype, native_bf16_cpu

    cpu = torch.device("cpu")
    monkeypatch.setenv("ARTLAB_PRECISION", "auto")
    assert inference_dtype(cpu) == (torch.bfloat16 if native_bf16_cpu() else torch.float32)
    monkeypatch.setenv("ARTLAB_PRECISION", "fp32")
    assert inference_dtype(cpu) == torch.float32
    monkeypatch.setenv("ARTLAB_PRECISION", "half-ish")
    with pytest.raises(ValueError, match="ARTLAB_PRECISION"):
        inference_dtype(cpu)


def test_memory_helpers_apply_on_glibc():
    """The app caps malloc arenas (flat RSS over many requests) and trims after loading models."""
    import platform

    from artlab.memory import limit_malloc_arenas, release_freed_memory

    release_freed_memory()  # never raises, whatever the C library
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas(8) is True   # 8: the cap stays harmless for the rest of the test run
