"""Benchmark: single-artwork analysis latency beside a plain torchvision ResNet-50, in the same run.

    python benchmarks/analyze.py [FOLDER] [--images 50] [--rounds 1] [--weights W]

For each image (1-megapixel JPEGs made from FOLDER's images, default ../shared/data/styles/val,
or synthetic ones when it is absent): ArtLab's analysis (decode -> both heads -> embedding ->
reconstruction), the same with Grad-CAM, and ResNet-50 (decode -> resize -> forward; random init,
timing only), interleaved image by image so load on the machine hits all three alike.
Prints p50/p95 and the ratios, writes JSON (runs/benchmarks/analyze.json).
Targets (issue 6): p50 <= 0.5x ResNet-50 without Grad-CAM, <= 1.2x with it.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def make_inputs(folder: Path, count: int, out: Path) -> list[Path]:
    """1-MP JPEGs (1155x866), like a phone photo of a painting, from real art where we have it."""
    from PIL import Image

    from artlab.images import list_images

    sources = list_images(folder)[:: max(1, len(list_images(folder)) // count)] if folder.is_dir() else []
    paths = []
    for i in range(count):
        if sources:
            im = Image.open(sources[i % len(sources)]).convert("RGB").resize((1155, 866), Image.BICUBIC)
        else:
            im = Image.radial_gradient("L").convert("RGB").resize((1155, 866)).rotate(i * 7)
        path = out / f"{i:03d}.jpg"
        im.save(path, quality=90)
        paths.append(path)
    return paths


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    from common import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/styles/val")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the images")
    parser.add_argument("--weights")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "analyze.json")
    args = parser.parse_args()

    import torch
    import torchvision

    from artlab.images import load_image
    from artlab.inference.explain import OVERLAY_SIDE
    from artlab.inference.image import ArtModels

    models = ArtModels(args.weights, "cpu")
    resnet = torchvision.models.resnet50().eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def artlab_once(path, explain):
        # With Grad-CAM, as the app runs it: the picture decoded large enough to lay the heat map over.
        image = models.prepare(path, display_side=OVERLAY_SIDE if explain else 0)
        models.analyze([image], explain=explain)

    @torch.inference_mode()
    def resnet_once(path):
        im = load_image(path).resize((224, 224))
        x = torchvision.transforms.functional.pil_to_tensor(im)[None].float() / 255
        resnet((x - mean) / std)

    times = {"artlab": [], "artlab_gradcam": [], "resnet50": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_inputs(args.folder, args.images, Path(tmp))
        for path in paths[:3]:  # warm-up
            artlab_once(path, False), artlab_once(path, True), resnet_once(path)
        for _ in range(args.rounds):
            for path in paths:
                for name, run in (("artlab", lambda: artlab_once(path, False)),
                                  ("artlab_gradcam", lambda: artlab_once(path, True)),
                                  ("resnet50", lambda: resnet_once(path))):
                    start = time.perf_counter()
                    run()
                    times[name].append((time.perf_counter() - start) * 1000)
    summary = {name: {"p50_ms": round(statistics.median(v), 1), "p95_ms": round(percentile(v, 0.95), 1),
                      "runs": len(v)} for name, v in times.items()}
    base = summary["resnet50"]["p50_ms"]
    result = {"summary": summary,
              "ratio_p50_vs_resnet50": round(summary["artlab"]["p50_ms"] / base, 3),
              "ratio_p50_gradcam_vs_resnet50": round(summary["artlab_gradcam"]["p50_ms"] / base, 3),
              "targets": {"ratio_p50_vs_resnet50": 0.5, "ratio_p50_gradcam_vs_resnet50": 1.2},
              "torch_threads": torch.get_num_threads(), "input": "1155x866 JPEG",
              "classifier_input": models.input_size, "tta": models.tta,
              "precision": str(models.dtype).removeprefix("torch.")}
    print(f"{'':<16}{'p50 ms':>10}{'p95 ms':>10}")
    for name, s in summary.items():
        print(f"{name:<16}{s['p50_ms']:>10}{s['p95_ms']:>10}")
    print(f"ratio vs ResNet-50 (p50): {result['ratio_p50_vs_resnet50']} (target <= 0.5); "
          f"with Grad-CAM: {result['ratio_p50_gradcam_vs_resnet50']} (target <= 1.2)")
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
