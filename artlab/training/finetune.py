"""Fine-tuning: teach ArtLab a curator's own classes from a folder of class folders.

    python -m artlab finetune DATA_DIR --out OUT_DIR

DATA_DIR holds one sub-folder per class (MIN_CLASSES..MAX_CLASSES classes, at least
MIN_PER_CLASS readable images each, at most MAX_IMAGES images in all). The new model
is the base art model (its backbone, texture branch and neck) with a new "labels" head.

Fast path first: the frozen base model turns every training image (plus a few
augmented views, `views`) into its neck vector once; the new head is then trained on those
cached vectors, which takes seconds on a CPU. With enough data (or when asked) a
second stage fine-tunes the last backbone blocks on images, starting from that head.
Both stages run in the one training loop, `artlab.training.loop.fit`.

The frozen fast path keeps the base model's own heads (style, subject) valid, so they
stay in the output; a deeper fine-tune changes the features, so it drops them.
The output folder is written to a temporary sibling and renamed into place.
"""

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from artlab.checkpoints import CLASSIFIER_NAME, save_checkpoint
from artlab.data import folders, transforms
from artlab.device import pick_device
from artlab.images import list_images
from artlab.inference.image import classifier_probs, load_classifier
from artlab.models.classifier import ArtClassifier
from artlab.training.loop import fit
from artlab.training.metrics import classification_report

log = logging.getLogger(__name__)

HEAD = "labels"             # the name of the curator's head in the model and in predict's JSON
MIN_CLASSES, MAX_CLASSES = 2, 50
MIN_PER_CLASS = 5           # fewer cannot give both a training and a held-out image
MAX_IMAGES = 5000           # all classes together; more belongs to `artlab train` on a GPU
MAX_NAME_CHARS = 64
# "auto" depth fine-tunes the last blocks on a GPU from this many training images per class (a curator's
# 3 x 30 job keeps 24 per class after the held-out split); with fewer, the held-out set is too small to
# pick the best deep epoch, and the head alone is safer.
DEEP_MIN_PER_CLASS = 20
DEEP_BLOCKS = 2             # how many of the last backbone blocks "auto" fine-tunes
IGNORED_FOLDERS = ("__MACOSX",)


class FinetuneError(ValueError):
    """Unusable fine-tuning data or settings; str() is a one-line message for people."""


@dataclass
class FinetuneConfig:
    epochs: int = 60            # head epochs on cached features (each takes milliseconds)
    lr: float = 3e-3
    batch_size: int = 32
    depth: str | int = "auto"   # "head", "auto", or how many of the last backbone blocks to fine-tune
    deep_epochs: int = 8        # image epochs of the deeper stage
    views: int = 1              # augmented views per training image in the feature cache (plus the plain one)
    val_fraction: float = 0.2
    patience: int = 10
    seed: int = 0
    device: str | None = None


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


def build_model(base: ArtClassifier, base_card: dict, classes: list[str], keep_base_heads: bool) -> ArtClassifier:
    """A copy of `base` with a new "labels" head (and its own heads when they stay valid)."""
    heads = {h: len(names) for h, names in base_card["labels"].items() if keep_base_heads and h != HEAD}
    heads[HEAD] = len(classes)
    config = base_card.get("config", {})
    model = ArtClassifier(heads, embed_dim=config.get("embed_dim", 512), texture=config.get("texture", True),
                          dropout=0.0, drop_path=0.0)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith(f"heads.{HEAD}.")
             and (keep_base_heads or not k.startswith("heads."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(f"heads.{HEAD}.") for k in missing), (missing, unexpected)
    return model


@torch.inference_mode()
def neck_features(model: ArtClassifier, images: torch.Tensor, size: int, device, views: int = 0,
                  mirror: bool = False, batch_size: int = 64, should_stop=lambda: False,
                  progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """Neck vectors of uint8 images: the plain view first, then `views` augmented ones (V x N x D).

    With `mirror`, the second view is the mirror image (for held-out images, as predict does).
    """
    model.eval()
    out = []
    passes = 1 + (1 if mirror else views)
    for v in range(passes):
        chunks = []
        for i in range(0, len(images), batch_size):
            if should_stop():
                raise _Cancelled()
            batch = images[i:i + batch_size].to(device)
            if v == 0 or mirror:
                x = transforms.resize_for_eval(batch, size)
                x = x.flip(3) if v == 1 else x
            else:
                x = transforms.augment(batch, size)
            chunks.append(model.features(x.contiguous(memory_format=torch.channels_last))[1].float().cpu())
            if progress:
                progress((v * len(images) + i + len(batch)) / (passes * len(images)))
        out.append(torch.cat(chunks))
    return torch.stack(out)


class _Cancelled(Exception):
    """Stopped while caching features, before any head existed."""


def _report(probs: torch.Tensor, target: torch.Tensor, classes: list[str]) -> dict:
    report = classification_report(probs.argmax(1), target, tuple(classes))
    report["loss"] = round(F.nll_loss(probs.clamp_min(1e-8).log(), target).item(), 4)
    return report


def _score(report: dict) -> float:
    # Accuracy first; the held-out loss breaks ties (small held-out sets saturate accuracy),
    # rounded so that a loss creeping down by crumbs does not hold off early stopping.
    return (report["accuracy"] or 0.0) - 0.01 * round(min(report["loss"], 10.0), 2)


def train_head(head: nn.Linear, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
               val_y: torch.Tensor, classes: list[str], config: FinetuneConfig, should_stop, on_epoch):
    """Fit the head on cached neck vectors; val_x is 2 x N x D (plain and mirror)."""
    dropout_head = nn.Sequential(nn.Dropout(0.2), head)
    generator = torch.Generator().manual_seed(config.seed)
    batch_size = max(1, min(config.batch_size, len(train_x)))
    steps = max(1, len(train_x) // batch_size)

    def batches(epoch):
        order = torch.randperm(len(train_x), generator=generator)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield train_x[idx], train_y[idx]

    def step(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=0.1)

    def evaluate(model):
        report = _report(_head_probs(head, val_x), val_y, classes)
        return {"val_accuracy": report["accuracy"], "val_loss": report["loss"], "score": _score(report)}

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
        report = _report(probs, val_labels, classes)
        return {"val_accuracy": report["accuracy"], "val_loss": report["loss"], "score": _score(report)}

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


def _head_probs(head: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """The same from cached neck vectors (plain and mirror views), on the CPU like held_out_probs.

    The cache lives on the CPU; the head is wherever its model is (the GPU once it is back in it)."""
    device = next(head.parameters()).device
    with torch.inference_mode():
        return ((head(feats[0].to(device)).softmax(1) + head(feats[-1].to(device)).softmax(1)) / 2).cpu()


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
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    scan = scan_classes(data_dir)
    classes = list(scan.classes)
    base_model, base_card = load_classifier(base, device)
    size = int(base_card["input_size"])

    progress(0.0, "reading images")
    images = folders.load_class_folders(data_dir, HEAD, tuple(classes), size=size)
    counts = {name: int((images.labels[HEAD] == i).sum()) for i, name in enumerate(classes)}
    _check_counts(counts, "readable images")
    labels = images.labels[HEAD]
    train_idx, val_idx = stratified_split(labels, config.val_fraction, config.seed)
    train_counts = {name: int((labels[train_idx] == i).sum()) for i, name in enumerate(classes)}
    blocks = resolve_depth(config.depth, train_counts, len(base_model.backbone.blocks), device)
    model = build_model(base_model, base_card, classes, keep_base_heads=blocks == 0).to(device)
    del base_model

    history = []

    def record_epoch(stage):
        def on(record):
            record = {"stage": stage, **record}
            history.append(record)
            if on_epoch:
                on_epoch(record)
        return on

    try:
        progress(0.05, "computing features")
        train_feats = neck_features(model, images.images[train_idx], size, device, views=config.views,
                                    should_stop=stop, progress=lambda f: progress(0.05 + 0.6 * f,
                                                                                  "computing features"))
        val_feats = neck_features(model, images.images[val_idx], size, device, mirror=True, should_stop=stop)
    except _Cancelled:
        raise FinetuneError("stopped before any model was trained; nothing was written") from None
    train_x = train_feats.flatten(0, 1)
    train_y = labels[train_idx].repeat(len(train_feats))
    progress(0.7, "training the head")
    head = nn.Linear(train_x.shape[1], len(classes))
    result = train_head(head, train_x, train_y, val_feats, labels[val_idx], classes, config, stop,
                        record_epoch("head"))
    if not result.history:
        raise FinetuneError("stopped before the first epoch ended; nothing was written")
    model.heads[HEAD].load_state_dict(head.state_dict())
    stopped, early_stopped = result.stopped, result.early_stopped
    if blocks and not stopped:
        progress(0.8, f"fine-tuning the last {blocks} blocks")
        deep = train_deep(model, blocks, images.images[train_idx], labels[train_idx], images.images[val_idx],
                          labels[val_idx], classes, size, device, config, stop, record_epoch("deep"))
        stopped, early_stopped = deep.stopped, early_stopped or deep.early_stopped
    progress(0.95, "writing the model")
    model.eval()
    if blocks:
        probs = held_out_probs(model, images.images[val_idx], size, device)
    else:  # the features did not change: the cached held-out vectors give the same answer, at once
        probs = _head_probs(model.heads[HEAD], val_feats)
    report = _report(probs, labels[val_idx], classes)
    card = _card(base_card, classes, report, counts, train_counts, scan, images.skipped, config, blocks,
                 history, stopped, base, command, time.time() - started)
    card["training"]["early_stopped"] = early_stopped
    card["metrics"]["val"]["misclassified"] = _misclassified(probs, images, val_idx, classes)
    write_model(model, card, out_dir)
    progress(1.0, "done")
    return card


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


def _card(base_card, classes, report, counts, train_counts, scan, skipped, config, blocks, history, stopped,
          base, command, seconds) -> dict:
    kept = [h for h in base_card["labels"] if h != HEAD] if blocks == 0 else []
    labels = {h: base_card["labels"][h] for h in kept}
    labels[HEAD] = classes
    return {
        "name": CLASSIFIER_NAME,
        "kind": "finetuned",
        "architecture": f"{base_card.get('architecture', 'ArtClassifier')}; new '{HEAD}' head for the "
                        f"curator's classes",
        "config": {**base_card.get("config", {}), "heads": {h: len(n) for h, n in labels.items()}},
        "labels": labels,
        "classes": classes,
        "input_size": base_card["input_size"],
        "normalisation": base_card.get("normalisation", "RGB scaled to [-1, 1]; letterboxed to a square"),
        "base_model": {"weights": str(base) if base else "shipped", "name": base_card.get("name"),
                       "date": base_card.get("date")},
        "data": {"classes": len(classes), "images": sum(counts.values()), "per_class": counts,
                 "train_per_class": train_counts,
                 "val_per_class": {c: counts[c] - train_counts[c] for c in classes},
                 "skipped": list(skipped) + scan.ignored,
                 "imbalance_warning": imbalance_warning(counts)},
        "training": {"depth": "head" if blocks == 0 else f"last {blocks} blocks", "epochs": config.epochs,
                     "deep_epochs": config.deep_epochs if blocks else 0, "lr": config.lr,
                     "batch_size": config.batch_size, "views": config.views, "val_fraction": config.val_fraction,
                     "patience": config.patience, "seed": config.seed, "stopped_by_user": stopped,
                     "seconds": round(seconds, 1), "history": history},
        "metrics": {"val": {"accuracy": report["accuracy"], "loss": report["loss"], "count": report["count"],
                            "per_class": report["per_class"], "confusion": report["confusion"]}},
        "command": command or " ".join(sys.argv),
    }


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete the temporary siblings (".NAME.PID.*.tmp" / ".old") that a killed writer left behind."""
    for leftover in out_dir.parent.glob(f".{out_dir.name}.*"):
        parts = leftover.name[len(out_dir.name) + 2:].split(".")
        if leftover.suffix in (".tmp", ".old") and parts[0].isdigit() and not _process_alive(int(parts[0])):
            log.info("removing %s, left by a writer that no longer runs", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def write_model(model: ArtClassifier, card: dict, out_dir: str | Path) -> Path:
    """Write the model folder atomically: fill a temporary sibling, then rename it into place.

    An existing folder at `out_dir` is replaced only once the new one is complete.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        save_checkpoint(model, tmp / CLASSIFIER_NAME, card)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %s", out_dir)
    return out_dir
