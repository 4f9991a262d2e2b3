"""Convolutional autoencoder for artworks at 128x128.

The bottleneck is a 4 x 16 x 16 tensor: 1,024 values for 49,152 input values,
exactly 1/48. A spatial latent keeps layout, so linear interpolation between two
artworks' latents morphs one composition into the other (the Create tab).
"""

import torch
from torch import nn

IMAGE_SIZE = 128
LATENT_SHAPE = (4, 16, 16)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


def _down(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), ResBlock(cout))


def _up(cin, cout):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(cin, cout, 3, padding=1), ResBlock(cout))


class ArtAutoencoder(nn.Module):
    """Image in [-1, 1], 3 x 128 x 128 -> latent 4 x 16 x 16 -> image in [-1, 1].

    No residual blocks at full resolution: they would cost most of the time on a
    2-core CPU for little gain; the strided convolutions carry the fine detail.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        latent_channels = LATENT_SHAPE[0]
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 4, stride=2, padding=1), ResBlock(w),   # 64
            _down(w, w * 2),                                         # 32
            _down(w * 2, w * 4),                                     # 16
            ResBlock(w * 4),
            nn.GroupNorm(8, w * 4), nn.SiLU(), nn.Conv2d(w * 4, latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, w * 4, 3, padding=1), ResBlock(w * 4), ResBlock(w * 4), ResBlock(w * 4),
            _up(w * 4, w * 2),                                       # 32
            _up(w * 2, w),                                           # 64
            nn.Upsample(scale_factor=2, mode="nearest"),             # 128
            nn.Conv2d(w, w // 2, 3, padding=1), nn.SiLU(), nn.Conv2d(w // 2, 3, 3, padding=1),
        )

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (bf16 for fast inference where the hardware has it); inputs are cast to it."""
        return self.encoder[0].weight.dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.to(self.dtype)).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(z.to(self.dtype)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, for images in [-1, 1] (measured on the [0, 1] scale)."""
    mse = ((reconstruction.float() - target.float()) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def interpolate(model: ArtAutoencoder, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode `steps` points on the straight line between the latents of images a and b."""
    za, zb = model.encode(a[None]), model.encode(b[None])
    t = torch.linspace(0, 1, steps, device=za.device).view(-1, 1, 1, 1)
    return model.decode(za * (1 - t) + zb * t)
