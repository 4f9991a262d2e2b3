"""How a picture looks to a network: distances on the frozen ImageNet EfficientNet-Lite0.

- `feature_distance`: LPIPS without its learned weights. Each of a few Lite0 stages (strides 2 to
  32: edges, textures, parts) is unit-normalised over channels at every position, and the squared
  difference is summed over channels, averaged over positions, then over stages. 0 for the same
  picture; blur and noise raise it, while a few percent of brightness barely does. Differentiable,
  so it is also the autoencoder's perceptual loss.
- `frechet_distance`: the Fréchet distance between Gaussians fitted to two sets of Lite0's pooled
  1,280 features (FID's formula, on Lite0 instead of Inception): how far a set of made pictures
  is, as a population, from real paintings.

Images are in [-1, 1] (artlab.images.normalize), the scale the Lite0 weights expect. The network is
the project's own (artlab.models.backbone), loaded with the ImageNet weights and never trained.
"""

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from artlab.models.backbone import EfficientNetLite0, load_imagenet_weights

# Lite0 block outputs at strides 2, 4, 8, 16 and 32 (16, 24, 40, 112 and 320 channels); the last
# block of each resolution, as LPIPS takes VGG's last layer before each pooling.
FEATURE_TAPS = (0, 2, 4, 10, 15)
# ImageNet's training size: the pooled features for the Fréchet distance are taken at it.
FRECHET_SIZE = 224


def frozen_lite0(device=None) -> EfficientNetLite0:
    """Lite0 with the ImageNet weights, in eval mode (BatchNorm keeps its statistics), no gradients
    to its weights, on `device`. Not a sub-module of any trained model, so never saved with one."""
    net = EfficientNetLite0()
    load_imagenet_weights(net)
    net.eval().requires_grad_(False)
    return net.to(device) if device is not None else net


def stage_features(net: EfficientNetLite0, x: torch.Tensor, taps: tuple = FEATURE_TAPS) -> list[torch.Tensor]:
    """The outputs of the blocks in `taps`; stops after the last one (the head is not needed)."""
    x = net.stem(x)
    features = []
    for i, block in enumerate(net.blocks[:max(taps) + 1]):
        x = block(x)
        if i in taps:
            features.append(x)
    return features


def _unit(features: torch.Tensor) -> torch.Tensor:
    # The eps keeps a dead (all-zero) position at zero instead of NaN, as LPIPS does.
    return features / (features.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


def distance_between_features(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Per-image distance from two lists of stage features (in [0, 4] per stage)."""
    per_stage = [(_unit(fa.float()) - _unit(fb.float())).pow(2).sum(1).mean((1, 2)) for fa, fb in zip(a, b)]
    return torch.stack(per_stage).mean(0)


def feature_distance(net: EfficientNetLite0, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS-like distance between images a and b (N x 3 x H x W in [-1, 1])."""
    return distance_between_features(stage_features(net, a), stage_features(net, b))


class PerceptualLoss(nn.Module):
    """Mean feature distance of a reconstruction to its target, for training: gradients flow to the
    reconstruction only. The target's features need none, so they are computed without a graph."""

    def __init__(self, net: EfficientNetLite0):
        super().__init__()
        self.net = net

    def train(self, mode: bool = True):
        # The frozen network stays in eval mode whatever its holder does: its BatchNorm statistics
        # are ImageNet's, and a batch of paintings must not replace them.
        return super().train(False)

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = stage_features(self.net, target)
        return distance_between_features(stage_features(self.net, reconstruction), wanted).mean()


# ------------------------------------------------------------------ the Fréchet distance

def pooled_features(net: EfficientNetLite0, x: torch.Tensor, size: int = FRECHET_SIZE) -> torch.Tensor:
    """Lite0's globally averaged 1,280 features of images resized to `size`, as float64 on the CPU."""
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    head, _ = net(x)
    return head.float().mean((2, 3)).double().cpu()


@torch.inference_mode()
def features_of(net, make_images, count: int, batch_size: int = 64, desc: str = "features", **kw) -> torch.Tensor:
    """pooled_features of `count` images made batch by batch: make_images(start, stop) gives them."""
    chunks = [pooled_features(net, make_images(start, min(count, start + batch_size)), **kw)
              for start in tqdm(range(0, count, batch_size), desc=desc, leave=False, disable=None)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 1280, dtype=torch.float64)


def gaussian_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of N x D features, in float64."""
    features = features.double()
    return features.mean(0), torch.cov(features.T).reshape(features.shape[1], features.shape[1])


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The square root of a symmetric positive semi-definite matrix, by eigen-decomposition
    (rounding leaves tiny negative eigenvalues: they are zero)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_from_moments(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2).

    The symmetric form of tr((C1 C2)^1/2): the product C1 C2 is not symmetric, while
    C1^1/2 C2 C1^1/2 is, and has the same eigenvalues, so eigh applies and stays stable.
    """
    mu1, cov1, mu2, cov2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, cov1, mu2, cov2))
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * trace_root
    return max(0.0, value.item())


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to feature sets a and b (N x D each)."""
    return frechet_from_moments(*gaussian_moments(a), *gaussian_moments(b))
