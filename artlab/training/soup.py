"""Weight averaging ("model soup"): one art classifier from the backbones of two.

    python -m artlab soup --base weights --with OTHER --data ../shared/data --out DIR

Two networks fine-tuned from the same ImageNet weights stay in one basin of the loss,
so the average of their weights is itself a good network, and often a better one
than either (Wortsman et al., 2022, "Model soups"). Unlike an ensemble it costs
nothing at inference: still one network and one pass.

Only the backbones are averaged. The texture branch, neck and heads come from the
base model: the other model may lack them, and two necks grown from different random
starts do not line up unit for unit. Averaging weights blurs what BatchNorm's running
statistics describe, so they are measured afresh on training images (by default at the
base model's input size; measuring them at a larger test size, as FixRes does, scored
lower on val for the shipped soup: 0.691 against 0.7005).
"""

import logging
from pathlib import Path

import torch
from torch import nn

from artlab.checkpoints import WeightsError, file_digest, resolve, save_checkpoint
from artlab.data import transforms
from artlab.device import pick_device
from artlab.inference.image import (
    CLASSIFIER_NAME,
    load_classifier,
    load_classifier_for_inference,
)
from artlab.models.classifier import ArtClassifier
from artlab.training.cards import command_line
from artlab.training.evaluate import classifier_report
from artlab.training.image import load_art_data

log = logging.getLogger(__name__)


def average_backbones(base: ArtClassifier, other: ArtClassifier, base_weight: float) -> None:
    """base.backbone <- base_weight * base.backbone + (1 - base_weight) * other.backbone, in place."""
    if not 0.0 <= base_weight <= 1.0:
        raise ValueError(f"base_weight must be in [0, 1], got {base_weight}")
    mine, theirs = base.backbone.state_dict(), other.backbone.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        raise WeightsError("the two models' backbones differ in architecture: they cannot be averaged")
    averaged = {name: base_weight * t.float() + (1 - base_weight) * theirs[name].float()
                if t.is_floating_point() else t for name, t in mine.items()}
    base.backbone.load_state_dict(averaged)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images_uint8: torch.Tensor, size: int, device,
                          batch_size: int = 64) -> None:
    """Re-measure every BatchNorm's running mean and variance on `images_uint8` (N x 3 x S x S),
    resized to `size`: the plain average of each batch's statistics, as torch's
    swa_utils.update_bn takes it (equal batches make the mean exact). Unlike update_bn,
    only the norms are put in training mode (no dropout, no drop-path), and no weight moves."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None: a cumulative average over all batches, not an EMA
        norm.train()
    try:
        for start in range(0, len(images_uint8), batch_size):
            x = transforms.resize_for_eval(images_uint8[start:start + batch_size].to(device), size)
            model.features(x.contiguous(memory_format=torch.channels_last))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()


def _file_record(path: Path, card: dict) -> dict:
    """Who an ingredient is: its file's hash, how it was trained, what it scored."""
    digest = file_digest(path, chars=64)
    metrics = card.get("metrics", {}).get("val", {})
    return {"file": str(path), "sha256": digest, "date": card.get("date"), "command": card.get("command"),
            "architecture": card.get("architecture"), "input_size": card.get("input_size"),
            "val": {head: report.get("accuracy") for head, report in metrics.items() if isinstance(report, dict)}}


def soup_classifier(base_weights, other_weights, data_root: Path, out_dir: Path, *, base_weight: float = 0.5,
                    size: int | None = None, calibration_images: int = 2048, calibration_size: int | None = None,
                    seed: int = 0, device=None,
                    limit: int | None = None, command: str = "") -> dict:
    """Average two art classifiers' backbones, recalibrate BatchNorm, measure on val, save with a card.

    `size`: the input size the soup is tested and used at (its card's input_size);
    `calibration_size`: the size BatchNorm's statistics are measured at. Both default
    to the base card's input size."""
    device = pick_device(device)
    base, base_card = load_classifier(base_weights, device)
    other, other_card = load_classifier(other_weights, device)
    base_path, other_path = resolve(base_weights, CLASSIFIER_NAME), resolve(other_weights, CLASSIFIER_NAME)
    size = size or int(base_card["input_size"])
    calibration_size = calibration_size or int(base_card["input_size"])
    average_backbones(base, other, base_weight)
    base.to(memory_format=torch.channels_last)

    train = load_art_data(data_root, "fit", limit)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:calibration_images]
    log.info("recalibrating BatchNorm on %d train images at %d px", len(pick), calibration_size)
    recalibrate_batchnorm(base, train.images[pick], calibration_size, device)

    keep = ("name", "labels", "config", "normalisation", "test_time_augmentation", "training_data")
    card = {key: base_card[key] for key in keep if key in base_card}
    card.update({
        "architecture": f"{base_card.get('architecture')}; backbone averaged with a second fine-tuned Lite0",
        "input_size": size,
        "soup": {
            "method": "uniform weight average of two backbones fine-tuned from the same ImageNet weights "
                      "(texture branch, neck and heads from the base); BatchNorm statistics re-measured",
            "base_weight": base_weight,
            "ingredients": {"base": _file_record(base_path.with_suffix(".safetensors"), base_card),
                            "other": _file_record(other_path.with_suffix(".safetensors"), other_card)},
            "batchnorm": f"running statistics measured on {len(pick)} train images (fit part) at {calibration_size} px "
                         f"(seed {seed}), letterboxed, no augmentation",
        },
        "command": command_line(command),
    })
    path = save_checkpoint(base, Path(out_dir) / CLASSIFIER_NAME, card)
    # Measure the saved file as predictions will use it (fp16 storage, BatchNorm folded,
    # the inference precision), then write the card again with that measurement.
    model, _ = load_classifier_for_inference(path, device)
    card["metrics"] = {split: classifier_report(model, load_art_data(data_root, split, limit), size, device, tta=True)
                       for split in ("selection", "val")}
    save_checkpoint(base, path, card)
    return card
