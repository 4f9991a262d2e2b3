"""The Create tab's measures and its perceptual loss (artlab.training.perceptual, benchmarks/create.py):
the feature distance, the Fréchet distance against closed forms, and the loss training only the
autoencoder. Self-made pictures only; the frozen Lite0 has the real ImageNet weights."""

import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from artlab.checkpoints import save_checkpoint
from artlab.models.autoencoder import ArtAutoencoder
from artlab.training.image import autoencoder_loss, train_autoencoder
from artlab.training.perceptual import (
    PerceptualLoss,
    feature_distance,
    frechet_distance,
    frechet_from_moments,
    frozen_lite0,
)
from benchmarks.create import draw

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lite0():
    return frozen_lite0("cpu")


def paintings(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Pictures with structure at several scales (smooth fields, stripes, a few sharp blocks), in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear")
    ramp = torch.linspace(0, 6 * math.pi, size)
    stripes = torch.sin(ramp[None, None, :, None] + ramp[None, None, None, :] * torch.rand(n, 1, 1, 1, generator=g))
    blocks = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="nearest")
    return (0.9 * (0.5 * coarse + 0.25 * stripes + 0.25 * blocks) * 2 - 0.9).clamp(-1, 1)


def blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)


# ------------------------------------------------------------------ the feature distance

def test_feature_distance_is_zero_for_the_same_pictures(lite0):
    x = paintings()
    assert torch.allclose(feature_distance(lite0, x, x), torch.zeros(len(x)), atol=1e-6)


def test_feature_distance_grows_with_blur_and_with_noise(lite0):
    x = paintings()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    blurred = [feature_distance(lite0, blur(x, k), x).mean().item() for k in (3, 5, 9)]
    noisy = [feature_distance(lite0, (x + s * noise).clamp(-1, 1), x).mean().item() for s in (0.05, 0.15, 0.4)]
    assert 0.01 < blurred[0] < blurred[1] < blurred[2]
    assert 0.01 < noisy[0] < noisy[1] < noisy[2]
    # A small brightness shift keeps every feature's direction, nearly: it must cost less than a blur.
    assert feature_distance(lite0, (x + 0.03).clamp(-1, 1), x).mean().item() < blurred[0]


# ------------------------------------------------------------------ the Fréchet distance

def _two_by_two_closed_form(mu1, a, mu2, b) -> float:
    """For 2 x 2 covariances tr(sqrt(M)) = sqrt(tr M + 2 sqrt(det M)), and M = A^1/2 B A^1/2 has
    tr(AB) and det(A) det(B): the Fréchet distance without any matrix square root."""
    trace_root = math.sqrt(torch.trace(a @ b).item() + 2 * math.sqrt(torch.det(a).item() * torch.det(b).item()))
    return (mu1 - mu2).pow(2).sum().item() + a.trace().item() + b.trace().item() - 2 * trace_root


def test_frechet_matches_the_closed_form_for_two_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([2.0, -1.0], dtype=torch.float64)
    a = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    b = torch.tensor([[0.5, -0.3], [-0.3, 1.5]], dtype=torch.float64)   # does not commute with a
    assert frechet_from_moments(mu1, a, mu2, b) == pytest.approx(_two_by_two_closed_form(mu1, a, mu2, b), rel=1e-9)
    # One dimension: (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_from_moments([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


def test_frechet_of_samples_is_zero_for_the_same_set_and_finds_a_shift():
    g = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[1.5, 0.0], [0.7, 0.5]], dtype=torch.float64)
    features = torch.randn(4000, 2, generator=g, dtype=torch.float64) @ mixing   # covariance mixing^T mixing
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    shifted = features + torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert frechet_distance(features, shifted) == pytest.approx(25.0, rel=1e-6)   # |shift|^2, same covariance
    other = torch.randn(4000, 2, generator=g, dtype=torch.float64) * torch.tensor([0.5, 2.0], dtype=torch.float64)
    zero = torch.zeros(2, dtype=torch.float64)
    want = _two_by_two_closed_form(zero, mixing.T @ mixing, zero, torch.diag(torch.tensor([0.25, 4.0]).double()))
    assert frechet_distance(features, other) == pytest.approx(want, rel=0.1)


def test_frechet_tells_a_blurred_set_of_pictures_from_the_real_one(lite0):
    from artlab.training.perceptual import pooled_features

    x = paintings(24, seed=2)
    with torch.no_grad():
        real, again, blurred = (pooled_features(lite0, p, size=64) for p in (x, x.clone(), blur(x, 9)))
    # 24 pictures, 1,280 features: the covariances are rank 23, and rounding in their null space
    # leaves a trace of distance for the same set; a blur's is thousands of times larger.
    assert frechet_distance(real, again) < 1e-3 * frechet_distance(real, blurred)


# ------------------------------------------------------------------ the perceptual loss

def test_perceptual_loss_trains_the_autoencoder_and_never_lite0(lite0):
    torch.manual_seed(0)
    model = ArtAutoencoder(8)
    x = F.interpolate(paintings(4, seed=3), size=(128, 128), mode="bilinear")
    perceptual = PerceptualLoss(lite0)
    loss_of = autoencoder_loss(perceptual, 1.0)
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        perceptual.train()           # as fit() does to everything it trains: Lite0 must stay in eval mode
        loss = loss_of(model(x), x)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in lite0.parameters())
        assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert not lite0.training and all(torch.equal(before[k], v) for k, v in lite0.state_dict().items())


def test_the_perceptual_term_adds_to_the_pixel_loss_by_its_weight(lite0):
    x = paintings(2)
    recon = blur(x, 5)
    pixels = autoencoder_loss(None, 0.0)(recon, x)
    distance = feature_distance(lite0, recon, x).mean()
    assert autoencoder_loss(PerceptualLoss(lite0), 0.5)(recon, x).item() == pytest.approx(
        (pixels + 0.5 * distance).item(), rel=1e-5)


def test_finetune_from_weights_with_the_perceptual_loss(class_folders, tmp_path):
    torch.manual_seed(0)
    save_checkpoint(ArtAutoencoder(8), tmp_path / "start" / "art_autoencoder",
                    {"name": "art_autoencoder", "config": {"width": 8}, "input_size": 128}, dtype=torch.float32)
    card = train_autoencoder(class_folders, tmp_path / "out", epochs=1, batch_size=8, lr=1e-4, limit=1,
                             perceptual_weight=0.3, init=tmp_path / "start", device="cpu")
    assert card["config"]["width"] == 8     # the init's width, not the default 32
    assert card["training"]["perceptual_weight"] == 0.3 and card["training"]["init"]["weights"].endswith("start")
    assert "selection_feature_distance" in card["training"]["history"][0]
    saved = json.loads((tmp_path / "out" / "art_autoencoder.json").read_text())
    assert saved["training"]["loss"] == "L1 + MSE + 0.3 x Lite0 feature distance"


# ------------------------------------------------------------------ the benchmark

def test_the_benchmark_draws_disjoint_seeded_sets():
    reference, pairs = draw(100, 60, 30, seed=4)
    assert len(reference) == 60 and len(pairs) == 30 and not set(reference.tolist()) & set(pairs.tolist())
    assert torch.equal(draw(100, 60, 30, seed=4)[1], pairs)
    reference, pairs = draw(50, 60, 30, seed=4)               # too small: the reference shrinks
    assert (len(reference), len(pairs)) == (20, 30)


def test_the_benchmark_runs_end_to_end(class_folders, tiny_weights, tmp_path, monkeypatch, capsys):
    from benchmarks import create

    out = tmp_path / "create.json"
    monkeypatch.setattr(sys, "argv", ["create.py", "--data", str(class_folders), "--split", "val",
                                      "--weights", str(tiny_weights), "--reference", "10", "--pairs", "8",
                                      "--batch", "8", "--json", str(out)])
    assert create.main() == 0
    result = json.loads(out.read_text())
    model = result["models"][0]
    assert result["reference"] == 10 and result["pairs"] == 8 and "cpu" in result["machine"]
    assert model["psnr_db"] > 0 and model["feature_distance"] > 0
    assert model["frechet"]["walk_midpoints"] > 0 and result["frechet"]["pixel_blend_50_50"] > 0
    assert "machine:" in capsys.readouterr().out
