"""The art classifier: an EfficientNet-Lite backbone (Lite0 by default; Lite1, Lite2), a texture (Gram) branch, a shared neck, and one head per task.

    image -> backbone -> global pool (content)  --+
          \-> taps -> Gram statistics (texture) --+-> neck (embedding) -> style head
                                                                        -> subject head
                                                                        -> any curator heads

The neck's output, L2-normalised, is the embedding used for "similar artworks".
Gram matrices of early feature maps capture brushwork and palette, which is
what separates, say, impressionism from post-impressionism.
"""

import torch
import torch.nn.functional as F
from torch import nn

from artlab.models.backbone import (
    DEFAULT_VARIANT,
    FEATURE_CHANNELS,
    TAP_CHANNELS,
    TEXTURE_TAPS,
    EfficientNetLite,
)

TEXTURE_REDUCED = 32  # channels each tap is projected to before its Gram matrix


class GramTexture(nn.Module):
    """Per-tap 1x1 projection, Gram matrix (upper triangle) with signed square root."""

    def __init__(self, tap_channels=tuple(TAP_CHANNELS[t] for t in TEXTURE_TAPS), reduced=TEXTURE_REDUCED,
                 out_dim=256):  # tap_channels: the channels of each tapped map (Lite0's by default)
        super().__init__()
        self.reduce = nn.ModuleList(nn.Conv2d(channels, reduced, 1, bias=False) for channels in tap_channels)
        pairs = reduced * (reduced + 1) // 2
        self.register_buffer("triu", torch.triu_indices(reduced, reduced), persistent=False)
        self.norm = nn.LayerNorm(pairs * len(tap_channels))
        self.proj = nn.Linear(pairs * len(tap_channels), out_dim)

    def forward(self, tapped: list[torch.Tensor]) -> torch.Tensor:
        grams = []
        for reduce, feats in zip(self.reduce, tapped):
            f = reduce(feats).float().flatten(2)  # B x C x HW; Gram in fp32 for stability
            gram = f @ f.transpose(1, 2) / f.shape[-1]
            gram = gram[:, self.triu[0], self.triu[1]]
            grams.append(torch.sign(gram) * torch.sqrt(gram.abs() + 1e-6))
        return self.proj(self.norm(torch.cat(grams, dim=1)))


class ArtClassifier(nn.Module):
    def __init__(self, heads: dict[str, int], embed_dim: int = 512, texture: bool = True,
                 dropout: float = 0.3, drop_path: float = 0.1, backbone: str = DEFAULT_VARIANT):
        super().__init__()
        self.backbone = EfficientNetLite(drop_path=drop_path, variant=backbone)
        self.texture = GramTexture(self.backbone.spec.tap_channels) if texture else None
        in_dim = FEATURE_CHANNELS + (self.texture.proj.out_features if texture else 0)
        self.neck = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, embed_dim), nn.GELU())
        self.heads = nn.ModuleDict({name: nn.Linear(embed_dim, n) for name, n in heads.items()})
        self.head_dropout = nn.Dropout(dropout / 2)

    @property
    def taps(self):
        return self.backbone.spec.taps if self.texture is not None else ()

    @property
    def trunk_dtype(self) -> torch.dtype:
        return self.backbone.stem[0].weight.dtype

    def set_trunk_dtype(self, dtype: torch.dtype) -> "ArtClassifier":
        """Run the convolutions (backbone, texture projections) in `dtype`, for inference.

        Pooling, Gram statistics, the neck and the heads stay in fp32: they are cheap,
        and the Gram matrices and the softmax are where low precision would show.
        """
        self.backbone.to(dtype)
        if self.texture is not None:
            self.texture.reduce.to(dtype)
        return self

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone feature map (kept for Grad-CAM) and the neck vector."""
        fmap, tapped = self.backbone(x.to(self.trunk_dtype), self.taps)
        pooled = fmap.float().mean(dim=(2, 3))
        if self.texture is not None:
            pooled = torch.cat([pooled, self.texture(tapped)], dim=1)
        return fmap, self.neck(pooled)

    def classify(self, neck: torch.Tensor) -> dict[str, torch.Tensor]:
        neck = self.head_dropout(neck)
        return {name: head(neck) for name, head in self.heads.items()}

    def forward_with_cam(self, x: torch.Tensor, head: str) -> dict[str, torch.Tensor]:
        """`forward`, plus what Grad-CAM needs for any class of `head`, in closed form so that it exports
        to ONNX (which has no autograd): "features", the last feature map, and "cam_weights", the gradient
        of each of the head's logits with respect to the mean-pooled map (N x classes x channels), through
        the head, the neck's exact GELU (derivative: Phi(z) + z phi(z)) and the neck's content columns.
        Grad-CAM's channel weights are these over the map's area; its map is normalised, so they serve."""
        fmap, tapped = self.backbone(x.to(self.trunk_dtype), self.taps)
        pooled = fmap.float().mean(dim=(2, 3))
        if self.texture is not None:
            pooled = torch.cat([pooled, self.texture(tapped)], dim=1)
        linear, gelu = self.neck[1], self.neck[2]
        z = linear(pooled)
        neck = gelu(z)
        out = self.classify(neck)
        out["embedding"] = F.normalize(neck.float(), dim=1)
        slope = 0.5 * (1 + torch.erf(z * 0.7071067811865476)) + z * torch.exp(-0.5 * z * z) * 0.3989422804014327
        out["cam_weights"] = (self.heads[head].weight[None] * slope[:, None, :]) @ linear.weight[:, :FEATURE_CHANNELS]
        out["features"] = fmap.float()
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head, plus the L2-normalised embedding under "embedding"."""
        _, neck = self.features(x)
        out = self.classify(neck)
        out["embedding"] = F.normalize(neck.float(), dim=1)
        return out
