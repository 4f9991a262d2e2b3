"""Fine-tuning: teach ArtLab a curator's own classes from a folder of class folders.

    python -m artlab finetune DATA_DIR --out OUT_DIR

DATA_DIR holds one sub-folder per class (MIN_CLASSES..MAX_CLASSES classes, at least
MIN_PER_CLASS readable images each, at most MAX_IMAGES images in all). The new model
is the base art model (its backbone, texture branch and neck) with a new "labels" head.

Fast path first: the frozen base model turns every training image (plain, mirrored and
`views` augmented views) into its neck vector once; the new head is then trained on those
cached vectors, which takes seconds on a CPU. The default recipe, "fewshot"
(artlab.training.fewshot), keeps what the base knows: the head starts from the base's own
answer where the class names are its labels (from the class means otherwise), reads the base
heads' logits too, and k-fold cross-validation on the curator's images picks how long it
trains; every image is held out once, so none is set aside. "linear" is the recipe before
issue 15: a head from noise, early-stopped on a held-out share. With enough data (or when
asked) a second stage fine-tunes the last backbone blocks on images, starting from that head,
on a held-out split. Both stages run in the one training loop, `artlab.training.loop.fit`.

The frozen fast path keeps the base model's own heads (style, subject) valid, so they
stay in the output; a deeper fine-tune changes the features, so it drops them.
The output folder is written to a temporary sibling and renamed into place.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from artlab.checkpoints import CLASSIFIER_NAME, save_checkpoint
from artlab.data.folders import (
    IGNORED_FOLDERS,
    MAX_CLASSES,
    MAX_IMAGES,
    MAX_NAME_CHARS,
    MIN_CLASSES,
    MIN_PER_CLASS,
    ImageSet,
    load_class_folders,
)
from artlab.device import pick_device
from artlab.files import atomic_folder
from artlab.images import list_images
from artlab.inference.image import load_classifier
from artlab.models.classifier import ArtClassifier
from artlab.training.cards import make_card
from artlab.training.fewshot import train_fewshot
from artlab.training.finetune_stages import (
    HEAD,
    Cancelled,
    FinetuneConfig,
    build_model,
    feature_model,
    head_probs,
    head_report,
    held_out_probs,
    neck_features,
    train_deep,
    train_head,
)

log = logging.getLogger(__name__)

# "auto" depth fine-tunes the last blocks on a GPU from this many training images per class (a curator's
# 3 x 30 job keeps 24 per class after the held-out split); with fewer, the held-out set is too small to
# pick the best deep epoch, and the head alone is safer.
DEEP_MIN_PER_CLASS = 20
DEEP_BLOCKS = 2             # how many of the last backbone blocks "auto" fine-tunes
RECIPES = ("fewshot", "linear")


class FinetuneError(ValueError):
    """Unusable fine-tuning data or settings; str() is a one-line message for people."""


@dataclass
class ClassScan:
    """What a data folder holds, before any image is decoded."""

    classes: dict[str, list[Path]]
    ignored: list[str] = field(default_factory=list)   # folders/files that are not class images


def scan_classes(data_dir: str | Path, max_images: int = MAX_IMAGES) -> ClassScan:
    """Check the class-folder layout and the counts; raise FinetuneError with a one-line reason."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FinetuneError(f"{root}: no such folder (expected one sub-folder per class)")
    classes, ignored = {}, []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name in IGNORED_FOLDERS:
            continue
        if not entry.is_dir():
            ignored.append(f"{entry.name}: not in a class folder")
            continue
        if len(entry.name) > MAX_NAME_CHARS:
            raise FinetuneError(f"{entry.name[:20]}...: class names may have at most {MAX_NAME_CHARS} characters")
        classes[entry.name] = list_images(entry)
    if len(classes) < MIN_CLASSES:
        raise FinetuneError(f"{root}: found {len(classes)} class folder(s); fine-tuning needs at least "
                            f"{MIN_CLASSES} (one sub-folder of images per class)")
    if len(classes) > MAX_CLASSES:
        raise FinetuneError(f"{root}: {len(classes)} class folders, more than the {MAX_CLASSES} we allow")
    total = sum(len(files) for files in classes.values())
    if total > max_images:
        raise FinetuneError(f"{root}: {total} images, over the cap of {max_images} for fine-tuning "
                            f"(use fewer per class, or `python -m artlab train` on a GPU)")
    _check_counts({name: len(files) for name, files in classes.items()}, "image files")
    return ClassScan(classes, ignored)


def _check_counts(counts: dict[str, int], what: str) -> None:
    few = {name: n for name, n in counts.items() if n < MIN_PER_CLASS}
    if few:
        listing = ", ".join(f"{name} ({n})" for name, n in few.items())
        raise FinetuneError(f"each class needs at least {MIN_PER_CLASS} {what}; too few in: {listing}")


def imbalance_warning(counts: dict[str, int], ratio: float = 5.0) -> str | None:
    """A warning when the largest class has more than `ratio` times the images of the smallest."""
    if not counts or min(counts.values()) == 0:
        return None
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    if counts[big] > ratio * counts[small]:
        return (f"class imbalance over {ratio:.0f}:1 ({big}: {counts[big]}, {small}: {counts[small]}); "
                f"the model will lean towards the bigger classes")
    return None


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of train and held-out images: per class, round(n * val_fraction) held out (at least 1)."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in labels.unique().tolist():
        idx = torch.nonzero(labels == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = min(len(idx) - 1, max(1, round(len(idx) * val_fraction)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def resolve_depth(depth: str | int, train_counts: dict[str, int], max_blocks: int,
                  device: torch.device = torch.device("cpu")) -> int:
    """How many of the last backbone blocks to fine-tune (0: the head only).

    "auto" goes deeper only with enough images per class and on a GPU: on a CPU, image epochs
    through the backbone take minutes where the head takes seconds (ask with a number instead).
    """
    if depth == "head":
        return 0
    if depth == "auto":
        enough = min(train_counts.values()) >= DEEP_MIN_PER_CLASS
        return DEEP_BLOCKS if enough and device.type != "cpu" else 0
    try:
        blocks = int(depth)
    except (TypeError, ValueError):
        raise FinetuneError(f"depth must be 'head', 'auto' or a number of blocks, not {depth!r}") from None
    if not 0 <= blocks <= max_blocks:
        raise FinetuneError(f"depth must be between 0 and {max_blocks} blocks, not {blocks}")
    return blocks


def finetune(data_dir: str | Path, out_dir: str | Path, *, base: str | Path | None = None,
             config: FinetuneConfig | None = None, should_stop: Callable[[], bool] | None = None,
             on_epoch: Callable[[dict], None] | None = None,
             progress: Callable[[float, str], None] | None = None, command: str = "") -> dict:
    """Train a model for the classes in `data_dir` and write it to `out_dir`; return its card.

    `should_stop` (a callable or a threading.Event) ends training at the next step and
    keeps the best model so far; `on_epoch(record)` sees each epoch's metrics (with
    "stage": "head" or "deep"); `progress(fraction, text)` follows the slow parts.
    Raises FinetuneError for unusable data, and when stopped before any model existed.
    """
    config = config or FinetuneConfig()
    stop = _stop_callable(should_stop)
    progress = progress or (lambda fraction, text: None)
    started = time.time()
    torch.manual_seed(config.seed)
    job = _Job.prepare(data_dir, base, config, progress)
    history: list[dict] = []

    def recorder(stage):
        def record(epoch_record):
            epoch_record = {"stage": stage, **epoch_record}
            history.append(epoch_record)
            if on_epoch:
                on_epoch(epoch_record)
        return record

    outcome = _train(job, config, stop, recorder, progress)
    progress(0.95, "writing the model")
    job.model.eval()
    probs = outcome.probs
    if job.blocks:
        probs = held_out_probs(job.model, job.images.images[job.val_idx], job.size, job.device)
    report = head_report(probs, job.labels[job.val_idx], job.classes)
    card = _card(job, report, config, history, outcome.stopped, base, command, time.time() - started)
    card["training"].update(early_stopped=outcome.early_stopped, **outcome.notes)
    card["metrics"]["val"]["misclassified"] = _misclassified(probs, job.images, job.val_idx, job.classes)
    write_model(job.model, card, out_dir)
    progress(1.0, "done")
    return card


@dataclass
class _Job:
    """A fine-tune's data and model, ready to train: the images, the held-out split, the depth."""

    scan: ClassScan
    images: ImageSet
    labels: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    counts: dict[str, int]
    train_counts: dict[str, int]
    blocks: int
    model: ArtClassifier
    base_card: dict
    device: torch.device
    base_heads: nn.ModuleDict     # the base model's own heads: the few-shot head reads their logits

    @property
    def classes(self) -> list[str]:
        return list(self.scan.classes)

    @property
    def size(self) -> int:
        return int(self.base_card["input_size"])

    @classmethod
    def prepare(cls, data_dir, base, config: FinetuneConfig, progress) -> "_Job":
        device = pick_device(config.device)
        scan = scan_classes(data_dir)
        classes = list(scan.classes)
        base_model, base_card = load_classifier(base, device)
        progress(0.0, "reading images")
        images = load_class_folders(data_dir, HEAD, tuple(classes), size=int(base_card["input_size"]))
        labels = images.labels[HEAD]
        counts = {name: int((labels == i).sum()) for i, name in enumerate(classes)}
        _check_counts(counts, "readable images")
        train_idx, val_idx = stratified_split(labels, config.val_fraction, config.seed)
        train_counts = {name: int((labels[train_idx] == i).sum()) for i, name in enumerate(classes)}
        blocks = resolve_depth(config.depth, train_counts, len(base_model.backbone.blocks), device)
        if config.recipe not in RECIPES:
            raise FinetuneError(f"recipe must be one of {', '.join(RECIPES)}, not {config.recipe!r}")
        if config.recipe == "fewshot" and blocks == 0:
            # Cross-validation holds every image out once: no image is set aside.
            train_idx = val_idx = torch.arange(len(labels))
            train_counts = dict(counts)
        model = build_model(base_model, base_card, classes, keep_base_heads=blocks == 0).to(device)
        return cls(scan, images, labels, train_idx, val_idx, counts, train_counts, blocks, model, base_card, device,
                   base_model.heads)

    @property
    def cross_validated(self) -> bool:
        return len(self.train_idx) == len(self.val_idx) == len(self.labels)


@dataclass
class _Outcome:
    probs: torch.Tensor | None    # the held-out images' probabilities (None: compute them from the model)
    stopped: bool
    early_stopped: bool
    notes: dict                   # what the card's "training" says about the head stage


def _train(job: _Job, config: FinetuneConfig, stop, recorder, progress) -> _Outcome:
    """The head on cached neck vectors, then (with `blocks`) the last blocks on images."""
    images, labels = job.images.images, job.labels
    try:
        progress(0.05, "computing features")
        extractor = feature_model(job.model, job.device)
        train_feats = neck_features(extractor, images[job.train_idx], job.size, job.device, views=config.views,
                                    mirror=config.recipe == "fewshot", should_stop=stop,
                                    progress=lambda f: progress(0.05 + 0.6 * f, "computing features"))
        val_feats = None
        if not job.cross_validated:
            val_feats = neck_features(extractor, images[job.val_idx], job.size, job.device, mirror=True,
                                      should_stop=stop)
    except Cancelled:
        raise FinetuneError("stopped before any model was trained; nothing was written") from None
    progress(0.7, "training the head")
    if config.recipe == "fewshot":
        outcome = _fewshot_head(job, train_feats, config, stop, recorder("head"))
    else:
        outcome = _linear_head(job, train_feats, val_feats, config, stop, recorder("head"))
    if job.blocks and not outcome.stopped:
        progress(0.8, f"fine-tuning the last {job.blocks} blocks")
        deep = train_deep(job.model, job.blocks, images[job.train_idx], labels[job.train_idx],
                          images[job.val_idx], labels[job.val_idx], job.classes, job.size, job.device, config, stop,
                          recorder("deep"))
        outcome.stopped, outcome.early_stopped = deep.stopped, outcome.early_stopped or deep.early_stopped
    return outcome


def _fewshot_head(job: _Job, feats, config: FinetuneConfig, stop, on_epoch) -> _Outcome:
    """artlab.training.fewshot's head, cross-validated on the training images, refitted on all of them."""
    head = train_fewshot(feats, job.labels[job.train_idx], job.classes, job.base_heads, job.base_card["labels"],
                         config, stop, on_epoch)
    if head.fit.stopped and not head.fit.history:
        raise FinetuneError("stopped before the first epoch ended; nothing was written")
    with torch.no_grad():
        job.model.heads[HEAD].weight.copy_(head.weight)
        job.model.heads[HEAD].bias.copy_(head.bias)
    notes = {"head_start": head.start, "head_epochs_kept": head.epoch, "cross_validation_folds": head.folds}
    return _Outcome(head.held_out_probs, head.fit.stopped, head.fit.early_stopped, notes)


def _linear_head(job: _Job, train_feats, val_feats, config: FinetuneConfig, stop, on_epoch) -> _Outcome:
    """The head from noise, early-stopped on the held-out images (the recipe before issue 15)."""
    labels = job.labels
    train_x = train_feats.flatten(0, 1)
    train_y = labels[job.train_idx].repeat(len(train_feats))
    head = nn.Linear(train_x.shape[1], len(job.classes))
    result = train_head(head, train_x, train_y, val_feats, labels[job.val_idx], job.classes, config, stop, on_epoch)
    if not result.history:
        raise FinetuneError("stopped before the first epoch ended; nothing was written")
    job.model.heads[HEAD].load_state_dict(head.state_dict())
    probs = head_probs(job.model.heads[HEAD], val_feats)
    return _Outcome(probs, result.stopped, result.early_stopped, {"head_start": "random"})


def _stop_callable(should_stop) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    if hasattr(should_stop, "is_set"):  # a threading.Event
        return should_stop.is_set
    return should_stop


def _misclassified(probs, images, val_idx, classes, limit: int = 50) -> list[dict]:
    """Held-out images the model gets wrong: path, true class, predicted class and its probability."""
    wrong = []
    for row, index in zip(probs, val_idx.tolist()):
        truth, guess = int(images.labels[HEAD][index]), int(row.argmax())
        if truth != guess:
            wrong.append({"path": images.paths[index], "true": classes[truth], "predicted": classes[guess],
                          "probability": round(float(row[guess]), 4)})
    return wrong[:limit]


def _card(job: _Job, report: dict, config: FinetuneConfig, history: list, stopped: bool, base, command,
          seconds: float) -> dict:
    base_card, classes, counts, train_counts = job.base_card, job.classes, job.counts, job.train_counts
    kept = [h for h in base_card["labels"] if h != HEAD] if job.blocks == 0 else []
    labels = {h: base_card["labels"][h] for h in kept}
    labels[HEAD] = classes
    return make_card(
        CLASSIFIER_NAME, kind="finetuned",
        architecture=f"{base_card.get('architecture', 'ArtClassifier')}; new '{HEAD}' head for the curator's classes",
        config={**base_card.get("config", {}), "heads": {h: len(n) for h, n in labels.items()}},
        labels=labels, classes=classes, input_size=base_card["input_size"],
        normalisation=base_card.get("normalisation", "RGB scaled to [-1, 1]; letterboxed to a square"),
        base_model={"weights": str(base) if base else "shipped", "name": base_card.get("name"),
                    "date": base_card.get("date")},
        data={"classes": len(classes), "images": sum(counts.values()), "per_class": counts,
              "train_per_class": train_counts, "val_per_class": _held_out_counts(job),
              "skipped": list(job.images.skipped) + job.scan.ignored, "imbalance_warning": imbalance_warning(counts)},
        training={"depth": "head" if job.blocks == 0 else f"last {job.blocks} blocks", "epochs": config.epochs,
                  "deep_epochs": config.deep_epochs if job.blocks else 0, "lr": config.lr,
                  "batch_size": config.batch_size, "views": config.views, "recipe": config.recipe,
                  "validation": ("cross-validation" if job.cross_validated
                                 else f"{config.val_fraction:.0%} of each class held out"),
                  "patience": config.patience, "seed": config.seed, "stopped_by_user": stopped,
                  "seconds": round(seconds, 1), "history": history},
        metrics={"val": {key: report[key] for key in ("accuracy", "loss", "count", "per_class", "confusion")}},
        command=command)


def _held_out_counts(job: _Job) -> dict[str, int]:
    """Images per class that the reported metrics come from (all of them under cross-validation)."""
    held = job.labels[job.val_idx]
    return {name: int((held == i).sum()) for i, name in enumerate(job.classes)}


def write_model(model: ArtClassifier, card: dict, out_dir: str | Path) -> Path:
    """Write the model folder atomically: an existing folder at `out_dir` is replaced only once
    the new one is complete, and a kill leaves the old one in place."""
    with atomic_folder(out_dir) as tmp:
        save_checkpoint(model, tmp / CLASSIFIER_NAME, card)
    log.info("wrote %s", out_dir)
    return Path(out_dir)
