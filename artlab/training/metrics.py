"""Accuracy, per-class accuracy and confusion matrices, as plain dicts ready for JSON."""

import torch


def classification_report(predicted: torch.Tensor, target: torch.Tensor, labels: tuple[str, ...]) -> dict:
    """Top-1 accuracy, per-class accuracy (recall) and the confusion matrix (rows: true class)."""
    keep = target >= 0
    predicted, target = predicted[keep].cpu(), target[keep].cpu()
    n = len(labels)
    confusion = torch.zeros(n, n, dtype=torch.long)
    confusion.index_put_((target, predicted), torch.ones_like(target), accumulate=True)
    per_class = {}
    for i, name in enumerate(labels):
        total = confusion[i].sum().item()
        per_class[name] = round(confusion[i, i].item() / total, 4) if total else None
    count = len(target)
    return {
        "accuracy": round((predicted == target).float().mean().item(), 4) if count else None,
        "count": count,
        "per_class": per_class,
        "confusion": {"labels": list(labels), "matrix": confusion.tolist()},
    }


def format_confusion(report: dict) -> str:
    """The confusion matrix as an aligned text table."""
    labels = report["confusion"]["labels"]
    short = [name[:10] for name in labels]
    width = max(10, max(len(s) for s in short))
    lines = [" " * (width + 2) + " ".join(f"{s:>{width}}" for s in short)]
    for name, row in zip(short, report["confusion"]["matrix"]):
        lines.append(f"{name:>{width}}  " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
