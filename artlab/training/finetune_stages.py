"""The stages of a fine-tune, on tensors: the new model (base + a new head), the neck vectors
of the curator's images, the head trained on those cached vectors, and the deeper stage that
fine-tunes the last backbone blocks on images. `finetune.finetune` runs them in order."""

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from artlab.data import transforms
from artlab.inference.image import classifier_probs
from artlab.labels import CUSTOM_HEAD
from artlab.models.backbone import fuse_batchnorm
from artlab.models.classifier import ArtClassifier
from artlab.training.loop import fit, index_batches
from artlab.training.metrics import classification_report

HEAD = CUSTOM_HEAD


@dataclass
class FinetuneConfig:
    epochs: int = 60            # head epochs on cached features (each takes milliseconds)
    lr: float = 3e-3
    batch_size: int = 32
    depth: str | int = "auto"   # "head", "auto", or how many of the last backbone blocks to fine-tune
    deep_epochs: int = 8        # image epochs of the deeper stage
    views: int = 1              # augmented views per training image in the feature cache (besides the plain one)
    val_fraction: float = 0.2   # the held-out share, where there is one ("linear" recipe, deeper fine-tunes)
    patience: int = 10
    seed: int = 0
    device: str | None = None
    recipe: str = "fewshot"     # "fewshot" (artlab.training.fewshot) or "linear": a new head from noise
    folds: int = 5              # cross-validation folds of the few-shot head
    anchor: float = 1e-2        # how strongly the few-shot head is pulled back towards its start


def build_model(base: ArtClassifier, base_card: dict, classes: list[str], keep_base_heads: bool) -> ArtClassifier:
    """A copy of `base` with a new "labels" head (and its own heads when they stay valid)."""
    heads = {h: len(names) for h, names in base_card["labels"].items() if keep_base_heads and h != HEAD}
    heads[HEAD] = len(classes)
    config = base_card.get("config", {})
    model = ArtClassifier(heads, embed_dim=config.get("embed_dim", 512), texture=config.get("texture", True),
                          dropout=0.0, drop_path=0.0, backbone=base.backbone.spec.name)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith(f"heads.{HEAD}.")
             and (keep_base_heads or not k.startswith("heads."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(f"heads.{HEAD}.") for k in missing), (missing, unexpected)
    return model


@torch.inference_mode()
def neck_features(model: ArtClassifier, images: torch.Tensor, size: int, device, views: int = 0,
                  mirror: bool = False, batch_size: int = 64, should_stop=lambda: False,
                  progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """Neck vectors of uint8 images: the plain view first, with `mirror` the mirror image next (for
    held-out images, as predict does), then `views` augmented ones (V x N x D)."""
    model.eval()
    out = []
    passes = 1 + int(mirror) + views
    for v in range(passes):
        chunks = []
        for i in range(0, len(images), batch_size):
            if should_stop():
                raise Cancelled()
            batch = images[i:i + batch_size].to(device)
            if v == 0 or (mirror and v == 1):
                x = transforms.resize_for_eval(batch, size)
                x = x.flip(3) if v == 1 else x
            else:
                x = transforms.augment(batch, size)
            chunks.append(model.features(x.contiguous(memory_format=torch.channels_last))[1].float().cpu())
            if progress:
                progress((v * len(images) + i + len(batch)) / (passes * len(images)))
        out.append(torch.cat(chunks))
    return torch.stack(out)


def feature_model(model: ArtClassifier, device) -> ArtClassifier:
    """The model to cache neck vectors with: on a CPU a copy with BatchNorm folded into the convolutions
    (the same vectors to float rounding, a quarter less time); elsewhere the model itself."""
    if torch.device(device).type != "cpu":
        return model
    fast = copy.deepcopy(model).eval()
    fuse_batchnorm(fast.backbone)
    return fast


class Cancelled(Exception):
    """Stopped while caching features, before any head existed."""


def head_report(probs: torch.Tensor, target: torch.Tensor, classes: list[str]) -> dict:
    report = classification_report(probs.argmax(1), target, tuple(classes))
    report["loss"] = round(F.nll_loss(probs.clamp_min(1e-8).log(), target).item(), 4)
    return report


def held_out_score(report: dict) -> float:
    # Accuracy first; the held-out loss breaks ties (small held-out sets saturate accuracy),
    # rounded so that a loss creeping down by crumbs does not hold off early stopping.
    return (report["accuracy"] or 0.0) - 0.01 * round(min(report["loss"], 10.0), 2)


def train_head(head: nn.Linear, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
               val_y: torch.Tensor, classes: list[str], config: FinetuneConfig, should_stop, on_epoch):
    """Fit the head on cached neck vectors; val_x is 2 x N x D (plain and mirror)."""
    dropout_head = nn.Sequential(nn.Dropout(0.2), head)
    steps, indices = index_batches(len(train_x), config.batch_size, config.seed)

    def batches(epoch):
        for idx in indices(epoch):
            yield train_x[idx], train_y[idx]

    def step(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=0.1)

    def evaluate(model):
        report = head_report(head_probs(head, val_x), val_y, classes)
        return {"val_accuracy": report["accuracy"], "val_loss": report["loss"], "score": held_out_score(report)}

    return fit(dropout_head, batches, step, epochs=config.epochs, steps_per_epoch=steps,
               param_groups=[{"params": head.parameters(), "lr": config.lr}], device=torch.device("cpu"),
               weight_decay=1e-3, warmup_epochs=1.0, evaluate=evaluate, patience=config.patience,
               should_stop=should_stop, on_epoch=on_epoch, show_progress=False)


def train_deep(model: ArtClassifier, blocks: int, images: torch.Tensor, labels: torch.Tensor,
               val_images: torch.Tensor, val_labels: torch.Tensor, classes: list[str], size: int, device,
               config: FinetuneConfig, should_stop, on_epoch):
    """Fine-tune the last `blocks` backbone blocks, the backbone's head conv, texture, neck and head."""
    trainable = [f"backbone.blocks.{i}." for i in range(len(model.backbone.blocks) - blocks,
                                                         len(model.backbone.blocks))]
    trainable += ["backbone.head.", "texture.", "neck.", f"heads.{HEAD}."]
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(prefix) for prefix in trainable))
        if p.requires_grad:
            params.append(p)
    model.to(device).to(memory_format=torch.channels_last)
    wrapped = _PartlyFrozen(model, trainable)
    batch_size = max(1, min(config.batch_size, len(images)))
    steps = max(1, len(images) // batch_size)

    def batches(epoch):
        order = torch.randperm(len(images))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = transforms.augment(images[idx].to(device), size).contiguous(memory_format=torch.channels_last)
            yield x, labels[idx].to(device)

    def step(wrapped, batch):
        x, y = batch
        return F.cross_entropy(wrapped.model(x)[HEAD].float(), y, label_smoothing=0.1)

    def evaluate(wrapped):
        probs = held_out_probs(wrapped.model, val_images, size, device)
        report = head_report(probs, val_labels, classes)
        return {"val_accuracy": report["accuracy"], "val_loss": report["loss"], "score": held_out_score(report)}

    return fit(wrapped, batches, step, epochs=config.deep_epochs, steps_per_epoch=steps, device=device,
               param_groups=[{"params": params, "lr": config.lr / 10}], warmup_epochs=0.5, evaluate=evaluate,
               patience=max(2, config.patience // 3), should_stop=should_stop, on_epoch=on_epoch)


class _PartlyFrozen(nn.Module):
    """Keeps the frozen layers in eval mode (their BatchNorm statistics fixed) when fit calls train()."""

    def __init__(self, model: ArtClassifier, trainable: list[str]):
        super().__init__()
        self.model, self.trainable = model, trainable

    def train(self, mode: bool = True):
        super().train(mode)
        for name, module in self.model.named_modules():
            if name and not any((name + ".").startswith(prefix) or prefix.startswith(name + ".")
                                for prefix in self.trainable):
                module.eval()
        return self


def held_out_probs(model: ArtClassifier, images: torch.Tensor, size: int, device) -> torch.Tensor:
    """Probabilities of the "labels" head, with the mirror pass that predict uses."""
    return classifier_probs(model, images, size, device, tta=True)[HEAD]


def head_probs(head: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """The same from cached neck vectors (plain and mirror views), on the CPU like held_out_probs.

    The cache lives on the CPU; the head is wherever its model is (the GPU once it is back in it)."""
    device = next(head.parameters()).device
    with torch.inference_mode():
        return ((head(feats[0].to(device)).softmax(1) + head(feats[-1].to(device)).softmax(1)) / 2).cpu()
