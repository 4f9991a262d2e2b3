"""Benchmark: `python -m artlab finetune` on 3 classes x 30 images, start-up included.

    python benchmarks/finetune.py [--weights W] [--data /work/shared/data] [--per-class 30] [--test 100]

Copies `--per-class` images of each class from styles/train into a temporary folder
(never into the repo), times the whole command as a subprocess, then scores the new
"labels" head on `--test` other images per class from styles/val. Targets: <= 60 s on
a 2-core CPU, <= 10 s on a GPU, accuracy >= 0.85. Prints the figures and writes JSON.
"""

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
CLASSES = ("baroque", "impressionism", "expressionism")


def sample(folder: Path, count: int, seed: int) -> list[Path]:
    files = sorted(folder.glob("*.jpg"))
    return random.Random(seed).sample(files, min(count, len(files)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="base weights (default: $ARTLAB_WEIGHTS or the shipped weights)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ARTLAB_DATA", ROOT.parent / "shared/data")))
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--test", type=int, default=100, help="held-out test images per class (from val)")
    parser.add_argument("--device", help="passed to finetune and the scoring (default: the best available)")
    parser.add_argument("--depth", help="passed to finetune (default: its own, auto)")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "finetune.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from common import machine

    info = machine()   # prints the CPU's model and flags, and the image models' engine and precision

    styles = args.data / "styles"
    if not (styles / "train").is_dir():
        print(f"error: {styles}/train not found (pass --data)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="artlab-bench-ft-") as tmp:
        tmp = Path(tmp)
        for name in CLASSES:
            (tmp / "data" / name).mkdir(parents=True)
            for path in sample(styles / "train" / name, args.per_class, args.seed):
                shutil.copy(path, tmp / "data" / name / path.name)
        command = [sys.executable, "-m", "artlab", "finetune", str(tmp / "data"), "--out", str(tmp / "model"),
                   "--json"]
        if args.weights:
            command += ["--base", args.weights]
        if args.device:
            command += ["--device", args.device]
        if args.depth:
            command += ["--depth", args.depth]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
            return 1
        trained = json.loads(result.stdout.strip().splitlines()[-1])
        test_accuracy, per_class, count = score(tmp / "model", styles / "val", args.test, args.seed, args.device)
        card = json.loads((tmp / "model" / "art_classifier.json").read_text())

    report = {
        "benchmark": "finetune", "classes": list(CLASSES), "train_images_per_class": args.per_class,
        "command_wall_s": round(wall, 2), "target_wall_s": 60,
        "test_accuracy": round(test_accuracy, 4), "test_images": count, "test_per_class": per_class,
        "target_accuracy": 0.85, "held_out_val_accuracy": trained["val"]["accuracy"],
        "depth": card["training"]["depth"], "epochs_run": len(card["training"]["history"]),
        "train_seconds_in_card": card["training"]["seconds"],
        "base_weights": args.weights or os.environ.get("ARTLAB_WEIGHTS") or "shipped (weights/)",
        "base_model_date": card["base_model"].get("date"),
        "machine": {**info, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "device": args.device or "auto"},
    }
    print(f"finetune 3 classes x {args.per_class} images: {wall:.1f} s wall (target <= 60 s on CPU), "
          f"test accuracy {test_accuracy:.3f} on {count} other images (target >= 0.85)")
    print(json.dumps(report, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def score(model_dir: Path, val_root: Path, per_class: int, seed: int, device) -> tuple[float, dict, int]:
    """Accuracy of the "labels" head on `per_class` val images per class (with predict's mirror pass)."""
    import torch

    from artlab.data.folders import load_images
    from artlab.inference.image import classifier_probs, load_classifier_for_inference

    model, card = load_classifier_for_inference(model_dir, device)  # as `predict` runs it
    classes = card["labels"]["labels"]
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = sample(val_root / name, per_class, seed)
        paths += files
        labels += [index] * len(files)
    tensors, _ = load_images(paths, int(card["input_size"]))
    keep = [i for i, t in enumerate(tensors) if t is not None]
    images = torch.stack([tensors[i] for i in keep])
    target = torch.tensor([labels[i] for i in keep])
    device = next(model.parameters()).device
    predicted = classifier_probs(model, images, int(card["input_size"]), device)["labels"].argmax(1)
    per = {name: round(float((predicted[target == i] == i).float().mean()), 4) for i, name in enumerate(classes)}
    return float((predicted == target).float().mean()), per, len(target)


if __name__ == "__main__":
    sys.exit(main())
