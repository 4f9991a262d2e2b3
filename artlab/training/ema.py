"""An exponential moving average (EMA) of a model's weights, kept on the model's device.

Averaging the weights of the last few hundred steps smooths the noise of the final steps of SGD;
image classifiers trained with heavy augmentation (mixup, CutMix) often score higher with their EMA
than with their raw weights (timm, torchvision's references). BatchNorm's running statistics are
averaged alike, so the EMA model can be evaluated as it is.
"""

import torch
from torch import nn


class WeightEMA:
    """ema <- d * ema + (1 - d) * model after each step, with d = min(decay, (1 + t) / (10 + t)) at step t:
    the warm-up keeps the random-ish early weights from lingering in short runs (as TensorFlow's EMA)."""

    def __init__(self, model: nn.Module, copy: nn.Module, decay: float):
        """`copy`: a module of the same architecture, on the same device, that will hold the average."""
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, not {decay}")
        copy.load_state_dict(model.state_dict())
        self.model, self.decay, self.steps = copy.eval(), decay, 0
        for p in copy.parameters():
            p.requires_grad_(False)
        # The tensors, paired once: state_dict() shares storage with the modules, and both models'
        # tensors are only ever updated in place (optimizer steps, load_state_dict), never replaced.
        ours, theirs = copy.state_dict(), model.state_dict()
        self.floats = [(ours[n], theirs[n]) for n in ours if ours[n].is_floating_point()]
        self.counters = [(ours[n], theirs[n]) for n in ours if not ours[n].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average, towards the model given at construction."""
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_([e for e, _ in self.floats], [m.detach() for _, m in self.floats], 1 - decay)
        for ema, current in self.counters:
            ema.copy_(current)   # num_batches_tracked

    def state_dict_cpu(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
