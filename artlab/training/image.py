"""Training recipes for the image models: the art classifier and the autoencoder.

    python -m artlab train --data ../shared/data --out weights

Both recipes use the one loop in artlab.training.loop.fit; the data lives in memory as uint8
tensors (artlab.data) and is augmented in batches on the training device.
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from artlab.checkpoints import save_checkpoint
from artlab.data import transforms
from artlab.data.folders import load_art_data
from artlab.device import pick_device
from artlab.inference.image import load_autoencoder
from artlab.labels import STYLES, SUBJECTS
from artlab.models.autoencoder import IMAGE_SIZE as AE_SIZE
from artlab.models.autoencoder import LATENT_SHAPE, ArtAutoencoder, psnr
from artlab.models.backbone import DEFAULT_VARIANT, load_imagenet_weights
from artlab.models.classifier import ArtClassifier
from artlab.training.cards import history_record, make_card
from artlab.training.ema import WeightEMA
from artlab.training.evaluate import classifier_report, mean_psnr
from artlab.training.loop import fit
from artlab.training.perceptual import PerceptualLoss, feature_distance, frozen_lite0

log = logging.getLogger(__name__)


def epoch_order(labels: dict[str, torch.Tensor], subject_repeat: int, generator) -> torch.Tensor:
    """Every style image once and every subject image `subject_repeat` times, shuffled.

    The subject set is ~15x smaller than the style set; repeating it keeps both heads learning.
    """
    style_idx = torch.nonzero(labels["style"] >= 0).flatten()
    subject_idx = torch.nonzero(labels["subject"] >= 0).flatten().repeat(subject_repeat)
    order = torch.cat([style_idx, subject_idx])
    return order[torch.randperm(len(order), generator=generator)]


def _reports_by_test_size(model, val, image_size: int, device) -> dict[int, dict]:
    """Card-worthy evaluation with test-time flips at the training size and 32 px larger: networks
    trained on random crops often do better tested a little larger ("FixRes")."""
    return {size: classifier_report(model, val, size, device, tta=True) for size in (image_size, image_size + 32)}


def _best_size(by_size: dict[int, dict]) -> int:
    return max(by_size, key=lambda size: by_size[size]["style"]["accuracy"] + 0.5 * by_size[size]["subject"]["accuracy"])


def two_head_loss(out: dict, targets: dict, subject_weight: float, smoothing: float = 0.1) -> torch.Tensor:
    """Style loss plus weighted subject loss, label-smoothed; -1 marks an image without that label."""
    style = F.cross_entropy(out["style"].float(), targets["style"], ignore_index=-1, label_smoothing=smoothing)
    subject = F.cross_entropy(out["subject"].float(), targets["subject"], ignore_index=-1, label_smoothing=smoothing)
    # A batch may hold no subject image at all; cross_entropy is then NaN.
    return torch.nan_to_num(style) + subject_weight * torch.nan_to_num(subject)


def mixed_head_loss(logits: torch.Tensor, target: torch.Tensor, lam: float, smoothing: float) -> torch.Tensor:
    """Cross-entropy against lam x (image's smoothed label) + (1 - lam) x (its partner's, the reversed batch).

    An image without this head's label (-1) brings no target: a row counts with the share of its
    pixels that has one (lam, 1 - lam or 1), towards that label alone; a batch where no row has one
    gives 0. With lam = 1 this is F.cross_entropy(ignore_index=-1, label_smoothing=smoothing)."""
    classes = logits.shape[1]
    valid = (target >= 0).float()
    smoothed = F.one_hot(target.clamp(min=0), classes).float() * (1 - smoothing) + smoothing / classes
    smoothed = smoothed * valid[:, None]
    weight = lam * valid + (1 - lam) * valid.flip(0)
    soft = (lam * smoothed + (1 - lam) * smoothed.flip(0)) / weight.clamp(min=1e-12)[:, None]
    per_row = -(soft * logits.float().log_softmax(1)).sum(1)
    return (weight * per_row).sum() / weight.sum().clamp(min=1e-12)


def mixed_two_head_loss(out: dict, targets: dict, lam: float, subject_weight: float, smoothing: float) -> torch.Tensor:
    return (mixed_head_loss(out["style"], targets["style"], lam, smoothing)
            + subject_weight * mixed_head_loss(out["subject"], targets["subject"], lam, smoothing))


@dataclass
class StrongRecipe:
    """The options beyond the original recipe (all off by default: the shipped recipe, unchanged)."""

    backbone: str = DEFAULT_VARIANT  # lite0, lite1, lite2
    mixup: float = 0.0               # Beta(a, a) of mixup; 0: off
    cutmix: float = 0.0              # Beta(a, a) of CutMix; 0: off
    mix_prob: float = 1.0            # share of batches mixed, when mixup or cutmix is on
    ema: float = 0.0                 # EMA decay per step (e.g. 0.999); 0: off
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0

    def augmentation(self) -> str:
        text = "random resized crop (area 0.35-1), flip, +/-10 deg rotation, mild colour jitter"
        mixes = [f"{kind} (alpha {alpha})" for kind, alpha in (("mixup", self.mixup), ("CutMix", self.cutmix)) if alpha]
        return text + (f"; {' or '.join(mixes)} on {self.mix_prob:.0%} of batches" if mixes else "")


def _classifier_batches(train, device, image_size: int, batch_size: int, subject_repeat: int, recipe, generator):
    """(batches(epoch), steps per epoch): augmented (and maybe mixed) batches made on `device`;
    each batch's targets carry "lam", the share of each image's own pixels (1.0: not mixed)."""
    images = train.images.to(device)
    labels = {h: t.to(device) for h, t in train.labels.items()}
    steps = max(1, len(epoch_order(train.labels, subject_repeat, generator)) // batch_size)

    def batches(epoch):
        order = epoch_order(train.labels, subject_repeat, generator)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size].to(device)
            x, lam = transforms.augment(images[idx], image_size), 1.0
            # (no draw when mixing is off: the original recipe keeps its random stream)
            if (recipe.mixup or recipe.cutmix) and torch.rand((), generator=generator).item() < recipe.mix_prob:
                x, lam = transforms.mix_batch(x, recipe.mixup, recipe.cutmix)
            yield x.contiguous(memory_format=torch.channels_last), {**{h: labels[h][idx] for h in labels}, "lam": lam}
    return batches, steps


class _SelectionJudge:
    """Scores the model (and its EMA, when kept) on the selection split after each epoch; remembers the
    EMA's weights whenever the EMA sets the best score so far, so they can replace the raw ones at the end."""

    def __init__(self, selection, image_size: int, device, ema: WeightEMA | None):
        self.selection, self.image_size, self.device, self.ema = selection, image_size, device, ema
        self.best, self.best_ema_state = -math.inf, None

    def _score(self, model) -> dict:
        report = classifier_report(model, self.selection, self.image_size, self.device, tta=False)
        style = report.get("style", {}).get("accuracy") or 0.0
        subject = report.get("subject", {}).get("accuracy") or 0.0
        return {"selection_style": style, "selection_subject": subject, "score": style + 0.5 * subject}

    def __call__(self, model) -> dict:
        record = self._score(model)
        if self.ema is not None:
            ema = self._score(self.ema.model)
            record.update({f"ema_{k}": v for k, v in ema.items()})
            record["winner"] = "ema" if ema["score"] > record["score"] else "raw"
            record["score"] = max(record["score"], ema["score"])
        if record["score"] > self.best:   # the rule fit() keeps its best epoch by
            self.best = record["score"]
            self.best_ema_state = self.ema.state_dict_cpu() if record.get("winner") == "ema" else None
        return record


def train_classifier(data_root: Path, out_dir: Path, *, epochs: int = 30, batch_size: int = 96,
                     lr: float = 1e-3, image_size: int = 224, texture: bool = True,
                     subject_repeat: int = 4, subject_weight: float = 0.5, limit: int | None = None,
                     time_budget_s: float | None = None, device=None, name: str = "art_classifier", seed: int = 0,
                     command: str = "", recipe: StrongRecipe | None = None) -> dict:
    device, recipe = pick_device(device), recipe or StrongRecipe()
    torch.manual_seed(seed)
    # The protocol: train on "fit", choose (best epoch, test size) on "selection", measure val once.
    train = load_art_data(data_root, "fit", limit)
    selection = load_art_data(data_root, "selection", limit)
    log.info("fit: %d images, selection: %d images, device %s, %s", len(train), len(selection), device, recipe)
    model = _new_classifier(recipe.backbone, texture, device, pretrained=True)
    ema = WeightEMA(model, _new_classifier(recipe.backbone, texture, device), recipe.ema) if recipe.ema else None
    generator = torch.Generator().manual_seed(seed)
    batches, steps = _classifier_batches(train, device, image_size, batch_size, subject_repeat, recipe, generator)

    def step(model, batch):
        x, y = batch
        if y["lam"] == 1.0:
            return two_head_loss(model(x), y, subject_weight, recipe.label_smoothing)
        return mixed_two_head_loss(model(x), y, y["lam"], subject_weight, recipe.label_smoothing)

    judge = _SelectionJudge(selection, image_size, device, ema)
    backbone = list(model.backbone.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    result = fit(model, batches, step, epochs=epochs, steps_per_epoch=steps, device=device,
                 param_groups=[{"params": backbone, "lr": lr * 0.5}, {"params": rest, "lr": lr}],
                 evaluate=judge, time_budget_s=time_budget_s, warmup_epochs=recipe.warmup_epochs,
                 on_step=(lambda *_: ema.update()) if ema else None)
    weights = "raw"
    if judge.best_ema_state is not None:   # the EMA won the best epoch: it is the model
        model.load_state_dict(judge.best_ema_state)
        weights = "ema"
    by_size = _reports_by_test_size(model, selection, image_size, device)
    size = _best_size(by_size)
    val_report = classifier_report(model, load_art_data(data_root, "val", limit), size, device, tta=True)
    card = _classifier_card(name, model, recipe, texture, size, train, result, by_size, val_report,
                            batch_size=batch_size, lr=lr, command=command, weights=weights)
    save_checkpoint(model, out_dir / name, card)
    return card


def _new_classifier(backbone: str, texture: bool, device, pretrained: bool = False) -> ArtClassifier:
    model = ArtClassifier({"style": len(STYLES), "subject": len(SUBJECTS)}, texture=texture, backbone=backbone)
    if pretrained:
        load_imagenet_weights(model.backbone)
    return model.to(device).to(memory_format=torch.channels_last)


def _classifier_card(name, model, recipe: StrongRecipe, texture: bool, size: int, train, result, by_size,
                     val_report, *, batch_size: int, lr: float, command: str, weights: str) -> dict:
    variant = f"EfficientNet-{recipe.backbone.capitalize()}"
    return make_card(
        name, architecture=f"{variant} (ImageNet init)" + (" + Gram texture branch" if texture else "")
        + " + neck + style/subject heads",
        config={"heads": {"style": len(STYLES), "subject": len(SUBJECTS)}, "texture": texture,
                "embed_dim": model.neck[1].out_features, "backbone": recipe.backbone},
        labels={"style": list(STYLES), "subject": list(SUBJECTS)}, input_size=size,
        normalisation="RGB scaled to [-1, 1]; letterboxed to a square with black bars",
        test_time_augmentation="mean of softmax over the image and its mirror",
        training_data=_fit_part_counts(train),
        chosen_on={"best_epoch": "selection", "input_size": "selection",
                   **({"ema_or_raw": "selection"} if recipe.ema else {})},
        training=history_record(result, batch_size=batch_size, lr=lr, augmentation=recipe.augmentation(),
                                label_smoothing=recipe.label_smoothing, ema_decay=recipe.ema or None,
                                weights=weights),
        metrics=_selection_then_val(by_size, size, val_report), command=command)


def _fit_part_counts(train) -> dict:
    """The card's training data: the fit part of each train folder (calibrate reads "fit part")."""
    return {"styles": f"WikiArt styles/train, fit part ({(train.labels['style'] >= 0).sum().item()} images)",
            "subjects": f"subjects/train, fit part ({(train.labels['subject'] >= 0).sum().item()} images)"}


def _selection_then_val(by_size: dict, size: int, val_report: dict) -> dict:
    return {"selection": by_size[size],
            "selection_by_input_size": {str(side): {h: r["accuracy"] for h, r in rep.items()}
                                        for side, rep in by_size.items()},
            "val": val_report}


def _autoencoder_to_train(width: int, init, device) -> tuple[ArtAutoencoder, dict | None]:
    """A fresh autoencoder, or one loaded from the checkpoint `init` (fine-tuning; its card's width)."""
    if init is None:
        return ArtAutoencoder(width).to(device).to(memory_format=torch.channels_last), None
    model, card = load_autoencoder(init, device)
    log.info("fine-tuning the autoencoder from %s", init)
    return model.to(memory_format=torch.channels_last), card


def autoencoder_loss(perceptual: PerceptualLoss | None, weight: float):
    """The recipe's loss: L1 + MSE on pixels, plus `weight` x the Lite0 feature distance.

    L1 sharpens more than L2 at the same PSNR budget; the small MSE term aligns with PSNR. Pixel
    losses alone average what the latent cannot pin down into a blur; the feature term pays for
    texture and edges a painting has, at some cost in PSNR.
    """
    def loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pixels = (recon.float() - x).abs().mean() + (recon.float() - x).pow(2).mean()
        return pixels + weight * perceptual(recon, x) if perceptual is not None and weight else pixels
    return loss


@torch.no_grad()
def selection_scores(model, x: torch.Tensor, device, perceptual: PerceptualLoss | None, weight: float,
                     batch_size: int = 64) -> dict:
    """Selection PSNR, and with a perceptual term its feature distance; the score picks the best epoch:
    PSNR for a pixel loss, minus the training objective (pixels + weight x features) with the feature term."""
    model.eval()
    psnrs, pixel_losses, distances = [], [], []
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size].to(device)
        recon = model(chunk).float()
        psnrs.append(psnr(recon, chunk).cpu())
        pixel_losses.append(((recon - chunk).abs().flatten(1).mean(1) + (recon - chunk).pow(2).flatten(1).mean(1)).cpu())
        if perceptual is not None and weight:
            distances.append(feature_distance(perceptual.net, recon, chunk).float().cpu())
    value = torch.cat(psnrs).mean().item() if psnrs else 0.0
    if not distances:
        return {"selection_psnr": round(value, 3), "score": value}
    distance = torch.cat(distances).mean().item()
    objective = torch.cat(pixel_losses).mean().item() + weight * distance
    return {"selection_psnr": round(value, 3), "selection_feature_distance": round(distance, 4), "score": -objective}


def train_autoencoder(data_root: Path, out_dir: Path, *, epochs: int = 40, batch_size: int = 64,
                      lr: float = 2e-3, width: int = 32, limit: int | None = None,
                      time_budget_s: float | None = None, device=None, perceptual_weight: float = 0.0,
                      init: "str | Path | None" = None,
                      name: str = "art_autoencoder", seed: int = 0, command: str = "") -> dict:
    """Train (or, from `init`, fine-tune) the autoencoder on "fit"; best epoch by selection PSNR."""
    device = pick_device(device)
    torch.manual_seed(seed)
    train = load_art_data(data_root, "fit", limit)
    selection_x = transforms.resize_for_eval(load_art_data(data_root, "selection", limit).images, AE_SIZE)
    images = train.images.to(device)
    model, init_card = _autoencoder_to_train(width, init, device)
    perceptual = PerceptualLoss(frozen_lite0(device)) if perceptual_weight else None
    loss = autoencoder_loss(perceptual, perceptual_weight)
    steps = max(1, len(images) // batch_size)

    def batches(epoch):
        order = torch.randperm(len(images), device=device)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            # Mild crops and flips only: the reconstruction must stay faithful to the full image.
            yield transforms.augment(images[idx], AE_SIZE, min_area=0.6, color=0.0)

    def evaluate(model):
        return selection_scores(model, selection_x, device, perceptual, perceptual_weight)

    result = fit(model, batches, lambda m, x: loss(m(x), x), epochs=epochs, steps_per_epoch=steps, device=device,
                 param_groups=[{"params": model.parameters(), "lr": lr}], weight_decay=0.0,
                 warmup_epochs=0.5, evaluate=evaluate, time_budget_s=time_budget_s)
    val_x = transforms.resize_for_eval(load_art_data(data_root, "val", limit).images, AE_SIZE)
    metrics = {"selection": {"psnr_db": round(mean_psnr(model, selection_x, device), 3), "count": len(selection_x)},
               "val": {"psnr_db": round(mean_psnr(model, val_x, device), 3), "count": len(val_x)}}
    training = history_record(result, batch_size=batch_size, lr=lr,
                              loss="L1 + MSE" + (f" + {perceptual_weight} x Lite0 feature distance"
                                                 if perceptual_weight else ""),
                              perceptual_weight=perceptual_weight,
                              init=None if init is None else {"weights": str(init), "name": init_card.get("name"),
                                                              "date": init_card.get("date")})
    card = autoencoder_card(name, model, training, metrics, images=len(images), command=command)
    save_checkpoint(model, out_dir / name, card)
    return card


def autoencoder_card(name: str, model: ArtAutoencoder, training: dict, metrics: dict, *, images: int,
                     command: str, **fields) -> dict:
    """The autoencoder's card (make_card's conventions); `fields` adds e.g. `replaces` and benchmark figures."""
    values, code = 3 * AE_SIZE * AE_SIZE, LATENT_SHAPE[0] * LATENT_SHAPE[1] * LATENT_SHAPE[2]
    width = model.decoder[0].out_channels // 4
    return make_card(
        name, architecture="convolutional autoencoder, residual blocks, spatial latent", config={"width": width},
        input_size=AE_SIZE, latent_shape=list(LATENT_SHAPE), compression=f"{values} values -> {code} (1/{values // code})",
        normalisation="RGB scaled to [-1, 1]; letterboxed to a square with black bars",
        training_data=f"WikiArt styles/train + subjects/train, fit part ({images} images)",
        chosen_on={"best_epoch": "selection"}, training=training, metrics=metrics, command=command, **fields)
