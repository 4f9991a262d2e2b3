"""Calibration of an art classifier: temperatures per head and the "unsure" rule, written to its card.

    python -m artlab calibrate --data ../shared/data [--weights weights] [--photos DIR]

Which images choose what (the protocol): a classifier trained on the fit part of train is calibrated
on the selection split and then measured on val once. A classifier that trained on all of train (the
shipped one: it scores 0.99 on the selection split, so a temperature chosen there would make it more
sure of itself, not less) has only val left unseen: each figure is then cross-fitted, every val image
scored with a temperature and threshold chosen on the other folds, and the shipped values are fitted
on all of val. The card says which.

The unsure rule (inference.calibration): the backbone's pooled feature map of a painting lies near one
of the classes' centres, in the Mahalanobis sense, with the spread measured on the fit part of train;
a picture farther than (the 96th percentile of val paintings) is unsure. Measured on pictures that are
not paintings (data.nonpaintings, and photos when given), per kind.
"""

import logging
from pathlib import Path

import numpy as np
import torch

from artlab.checkpoints import CLASSIFIER_NAME, Checkpoint
from artlab.data.folders import load_class_folders
from artlab.data.nonpaintings import make_nonpaintings
from artlab.files import atomic_write, atomic_write_text
from artlab.images import letterbox, list_images, load_image, to_uint8_tensor
from artlab.inference.calibration import (
    Space,
    UnsureRule,
    companion_file,
    temper,
)
from artlab.training import metrics_calibration as mc

log = logging.getLogger(__name__)

REFERENCE_PER_CLASS = 150    # fit-part images per class that measure the classes' centres and spread
RANK, SHRINK = 512, 0.1      # chosen on the selection non-paintings (seed 1): 0.94 unsure; full rank 1280: 0.95
QUANTILE = 0.96              # a painting is unsure beyond the 96th percentile of val: <= 5 % after cross-fitting
FOLDS = 5
NONPAINTINGS, NONPAINTING_SEED = 180, 2   # seed 1 made the set the rank and shrinkage were chosen on
SPACE = "pooled"


def fit_space(rows: np.ndarray, groups: np.ndarray, rank: int = RANK, shrink: float = SHRINK):
    """Class centres and the whitening of the shared within-class covariance (shrunk towards its
    mean variance, kept to its top `rank` directions)."""
    rows = rows.astype(np.float64)
    classes = np.unique(groups)
    centres = np.stack([rows[groups == g].mean(axis=0) for g in classes])
    within = rows - centres[np.searchsorted(classes, groups)]
    cov = within.T @ within / len(rows)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, max(values.max(), 1e-12) * 1e-9)    # a constant feature must not divide by 0
    top = np.argsort(values)[::-1][:rank]
    # C order: a column selection comes out in Fortran order, and safetensors writes the raw buffer
    return (np.ascontiguousarray(centres, dtype=np.float32),
            np.ascontiguousarray(vectors[:, top] / np.sqrt(values[top]), dtype=np.float32))


def raw_outputs(checkpoint: Checkpoint, images: torch.Tensor, device) -> dict[str, np.ndarray]:
    """Uncalibrated probabilities per head, embeddings and pooled feature maps of uint8 images
    already letterboxed to the input size, through the engine predictions use (as `evaluate` runs it)."""
    from artlab.inference.engine import OnnxArtModels, engine_for
    from artlab.inference.image import classifier_probs, load_classifier_for_inference
    from artlab.training.evaluate import onnx_outputs

    size = int(checkpoint.card["input_size"])
    if engine_for(device) == "onnx":
        return onnx_outputs(OnnxArtModels(checkpoint, autoencoder=False), images, size, pooled=True)
    model, _ = load_classifier_for_inference(checkpoint, device)
    out = classifier_probs(model, images, size, next(model.parameters()).device, pooled=True)
    return {k: v.numpy() for k, v in out.items()}


def pictures_tensor(pictures, size: int) -> torch.Tensor:
    """PIL pictures letterboxed to `size`, as a uint8 tensor (the way the app prepares them)."""
    return torch.stack([to_uint8_tensor(letterbox(picture.convert("RGB"), size)) for picture in pictures])


def labelled_outputs(checkpoint, root: Path, split: str, device, part=None, per_class=None) -> dict:
    """raw_outputs for styles/<split> and subjects/<split>, with "labels" per head (-1: none)."""
    size, card_labels = int(checkpoint.card["input_size"]), checkpoint.card["labels"]
    outs, labels = [], {head: [] for head in card_labels}
    for head, folder in (("style", "styles"), ("subject", "subjects")):
        if head not in card_labels or not (root / folder / split).is_dir():
            continue
        data = load_class_folders(root / folder / split, head, tuple(card_labels[head]), size=size,
                                  limit_per_class=per_class, part=part)
        outs.append(raw_outputs(checkpoint, data.images, device))
        for other in card_labels:
            labels[other].append(data.labels[head].numpy() if other == head else np.full(len(data), -1))
    merged = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    merged["labels"] = {head: np.concatenate(v) for head, v in labels.items()}
    return merged


def trained_on_all_of_train(card: dict) -> bool:
    """Whether the classifier saw the selection split in training (cards of recipes that train on
    the fit part say so in their training data)."""
    return "fit part" not in str(card.get("training_data", ""))


def calibrate_heads(choose: dict, measure: dict, cross_fit: bool) -> tuple[dict, dict]:
    """Temperatures per head, and their report: ECE (beside the ECE a perfectly calibrated model would
    show on as many images by chance) and NLL before
    and after, on the measured images (out of fold when `cross_fit`)."""
    temperatures, report = {}, {}
    for head, labels in measure["labels"].items():
        keep = labels >= 0
        if not keep.any():
            continue
        probs, truth = measure[head][keep], labels[keep]
        if cross_fit:
            tempered, fold_temperatures = mc.cross_fitted_temperature(probs, truth, FOLDS)
            temperatures[head] = mc.fit_temperature(probs, truth)
        else:
            chosen = choose["labels"][head] >= 0
            temperatures[head] = mc.fit_temperature(choose[head][chosen], choose["labels"][head][chosen])
            tempered, fold_temperatures = temper(probs, temperatures[head]), None
        report[head] = {
            "count": int(keep.sum()), "accuracy": round(float((probs.argmax(1) == truth).mean()), 4),
            "ece_before": round(mc.expected_calibration_error(probs, truth), 4),
            "ece_after": round(mc.expected_calibration_error(tempered, truth), 4),
            "ece_by_chance": round(mc.chance_error(tempered), 4),
            "nll_before": round(mc.negative_log_likelihood(probs, truth), 4),
            "nll_after": round(mc.negative_log_likelihood(tempered, truth), 4),
            "temperature": round(temperatures[head], 4),
            **({"fold_temperatures": [round(t, 4) for t in fold_temperatures]} if fold_temperatures else {})}
    return temperatures, report


def unsure_threshold(reference: dict, choose: dict, measure: dict, cross_fit: bool):
    """The rule's space, fitted on the reference images; its threshold (the QUANTILE of the
    paintings it is chosen on) and the share of measured paintings it calls unsure."""
    groups = np.full(len(reference[SPACE]), -1)
    for offset, labels in zip((0, 1000), reference["labels"].values()):
        groups = np.where(labels >= 0, labels + offset, groups)
    centres, whitening = fit_space(reference[SPACE][groups >= 0], groups[groups >= 0])
    probe = Space(SPACE, centres, whitening, 0.0)
    measured = probe.distances(measure[SPACE])
    if cross_fit:
        fold = mc.folds(len(measured), FOLDS)
        unsure = np.zeros(len(measured), bool)
        for f in range(FOLDS):
            unsure[fold == f] = measured[fold == f] > np.quantile(measured[fold != f], QUANTILE)
        threshold = float(np.quantile(measured, QUANTILE))
    else:
        threshold = float(np.quantile(probe.distances(choose[SPACE]), QUANTILE))
        unsure = measured > threshold
    return Space(SPACE, centres, whitening, threshold), float(unsure.mean())


def nonpainting_report(checkpoint, rule: UnsureRule, device, photos: Path | None) -> dict:
    """Share of non-paintings the rule calls unsure, per kind and in all."""
    pictures = make_nonpaintings(NONPAINTINGS, NONPAINTING_SEED)
    if photos:
        pictures += [("photo", load_image(path)) for path in list_images(photos)]
    size = int(checkpoint.card["input_size"])
    outputs = raw_outputs(checkpoint, pictures_tensor([p for _, p in pictures], size), device)
    flags = rule.flags(outputs)
    kinds = np.array([kind for kind, _ in pictures])
    per_kind = {kind: round(float(flags[kinds == kind].mean()), 3) for kind in dict.fromkeys(kinds)}
    return {"count": len(pictures), "unsure": round(float(flags.mean()), 4), "per_kind": per_kind,
            "seed": NONPAINTING_SEED, "photos": str(photos) if photos else None}


def calibrate(data_root: Path, weights=None, device=None, photos: Path | None = None, command: str = "") -> dict:
    """Fit the temperatures and the unsure rule of a classifier, measure them, and write them to its
    card and companion file. Returns the card's new "calibration" section."""
    from artlab.training.cards import command_line

    data_root = Path(data_root)
    checkpoint = Checkpoint.find(weights, CLASSIFIER_NAME)
    cross_fit = trained_on_all_of_train(checkpoint.card)
    log.info("calibrating %s (%s)", checkpoint.path, "val, cross-fitted" if cross_fit else "selection split")
    measure = labelled_outputs(checkpoint, data_root, "val", device)
    choose = measure if cross_fit else labelled_outputs(checkpoint, data_root, "train", device, part="selection")
    reference = labelled_outputs(checkpoint, data_root, "train", device, part="fit", per_class=REFERENCE_PER_CLASS)
    temperatures, heads = calibrate_heads(choose, measure, cross_fit)
    space, val_unsure = unsure_threshold(reference, choose, measure, cross_fit)
    rule = UnsureRule((space,))
    chosen_on = ("val, 5-fold cross-fitted: the model trained on all of train, so only val is unseen; "
                 "figures are out of fold, the stored values fitted on all of val") if cross_fit else "selection"
    section = {
        "temperature": {head: round(t, 4) for head, t in temperatures.items()},
        "unsure": {"max_distance": {SPACE: round(space.max_distance, 4)}, "space": SPACE, "rank": RANK,
                   "shrink": SHRINK, "quantile": QUANTILE,
                   "reference": f"fit part of train, {REFERENCE_PER_CLASS} images per class",
                   "file": companion_file(checkpoint.path).name},
        "chosen_on": chosen_on,
        "metrics": {"val": {**heads, "unsure_paintings": round(val_unsure, 4)},
                    "nonpaintings": nonpainting_report(checkpoint, rule, device, photos)},
        "command": command_line(command)}
    _write(checkpoint, section, space)
    return section


def _write(checkpoint: Checkpoint, section: dict, space: Space) -> None:
    import json

    from safetensors.numpy import save_file

    # float32: a whitening holds 1 / standard deviations, which can pass fp16's 65,504
    tensors = {f"{space.name}.centres": np.ascontiguousarray(space.centres),
               f"{space.name}.whitening": np.ascontiguousarray(space.whitening)}
    companion = companion_file(checkpoint.path)
    atomic_write(companion, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_text(companion.with_suffix(".json"),
                      json.dumps(companion_card(checkpoint, section, tensors), indent=2, ensure_ascii=False) + "\n")
    card = {**checkpoint.card, "calibration": section}
    atomic_write_text(checkpoint.path.with_suffix(".json"), json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def companion_card(checkpoint: Checkpoint, section: dict, tensors: dict) -> dict:
    """The card of the unsure rule's tensors: what they are, whose they are, how they were made."""
    import datetime

    from artlab.checkpoints import LICENCE_NOTE, file_digest

    rule = section["unsure"]
    return {"name": companion_file(checkpoint.path).stem, "date": datetime.date.today().isoformat(),
            "licence": LICENCE_NOTE,
            "what": "the unsure rule's class centres and whitening (artlab/inference/calibration.py, Space); its "
                    "threshold and the figures are in the classifier's card, under calibration",
            "classifier": {"file": checkpoint.path.name, "sha256": file_digest(checkpoint.path, chars=64)},
            "tensors": {name: {"shape": list(t.shape), "dtype": str(t.dtype)} for name, t in tensors.items()},
            "space": rule["space"], "rank": rule["rank"], "shrink": rule["shrink"],
            "training_data": rule["reference"], "chosen_on": section["chosen_on"],
            "command": section["command"]}


def print_calibration(section: dict) -> None:
    val, non = section["metrics"]["val"], section["metrics"]["nonpaintings"]
    print(f"chosen on: {section['chosen_on']}")
    for head, r in val.items():
        if isinstance(r, dict):
            print(f"{head}: temperature {r['temperature']}, ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f} "
                  f"(a calibrated model would show {r['ece_by_chance']:.3f} by chance) on {r['count']} val "
                  f"images, NLL {r['nll_before']:.4f} -> {r['nll_after']:.4f}, accuracy {r['accuracy']:.4f}")
    print(f"unsure on val paintings: {val['unsure_paintings']:.2%}")
    print(f"unsure on {non['count']} non-paintings: {non['unsure']:.2%}  "
          + ", ".join(f"{kind} {share:.0%}" for kind, share in non["per_kind"].items()))
