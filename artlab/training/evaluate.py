"""Evaluate a classifier checkpoint on labelled class folders."""

from pathlib import Path

from artlab.data.folders import ImageSet, load_class_folders
from artlab.inference.image import classifier_probs, load_classifier_for_inference
from artlab.training.metrics import classification_report, format_confusion


def _heads_for(folder: Path, card_labels: dict) -> list[str]:
    """Which of the model's heads a folder of class sub-folders is labelled for."""
    names = {p.name for p in folder.iterdir() if p.is_dir()}
    return [head for head, labels in card_labels.items() if names and names <= set(labels)]


def collect(folder: Path, card_labels: dict, split: str) -> list[tuple[str, Path]]:
    """(head, class-folder root) pairs found at `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = [(head, folder) for head in _heads_for(folder, card_labels)]
    for child in ("styles", "subjects"):
        if (folder / child / split).is_dir():
            found += [(head, folder / child / split) for head in _heads_for(folder / child / split, card_labels)]
    if not found:
        raise ValueError(f"{folder}: no class folders matching the model's labels ({card_labels})")
    return found


def evaluate_folder(folder, weights=None, split: str = "val", tta: bool = True, device=None,
                    size: int | None = None) -> dict:
    """`size`: test at another input size than the card's (what predict uses), to compare."""
    model, card = load_classifier_for_inference(weights, device)
    device = next(model.parameters()).device
    size = size or card["input_size"]
    report = {"weights": card.get("name"), "tta": tta, "input_size": size,
              "precision": str(model.trunk_dtype).removeprefix("torch."), "heads": {}}
    for head, root in collect(Path(folder), card["labels"], split):
        labels = tuple(card["labels"][head])
        data: ImageSet = load_class_folders(root, head, labels)
        probs = classifier_probs(model, data.images, size, device, tta=tta)
        result = classification_report(probs[head].argmax(1), data.labels[head], labels)
        result["data"], result["skipped"] = str(root), data.skipped
        report["heads"][head] = result
    return report


def print_report(report: dict) -> None:
    print(f"{report['weights']}: input {report['input_size']} px, mirror TTA {'on' if report['tta'] else 'off'}, "
          f"convolutions in {report['precision']} (ARTLAB_PRECISION=fp32 for full precision)")
    for head, result in report["heads"].items():
        print(f"\n{head}: top-1 accuracy {result['accuracy']:.4f} on {result['count']} images ({result['data']})")
        for name, acc in result["per_class"].items():
            print(f"  {name:<20} {acc if acc is None else f'{acc:.3f}'}")
        print("confusion (rows: true, columns: predicted)")
        print(format_confusion(result))
        for problem in result["skipped"]:
            print(f"  skipped {problem}")
