"""Benchmark: single-artwork analysis latency beside a plain torchvision ResNet-50, in the same run.

    python benchmarks/analyze.py [FOLDER] [--images 50] [--rounds 1] [--weights W]

For each image (1-megapixel JPEGs made from FOLDER's images, default ../shared/data/styles/val,
or synthetic ones when it is absent): ArtLab's analysis (decode -> both heads -> embedding ->
reconstruction), the same with Grad-CAM, what the app's server does for a /predict request
(`Lab.look` on the upload's bytes, Grad-CAM off: decode, analysis, similar works of a
300-work gallery), and ResNet-50 as a user would run it (decode -> Resize 256 -> CenterCrop 224 -> forward,
fp32; random init, timing only), interleaved image by image so load on the machine hits all alike.
Prints the machine (CPU model and flags, engine, precision), p50/p95 and the ratios, writes JSON
(runs/benchmarks/analyze.json). Targets: p50 <= 0.5x ResNet-50 without Grad-CAM, <= 1.2x with it
(issue 6); the server's /predict p50 <= 150 ms (issue 14).
"""

import argparse
import os
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


def fill_gallery(lab, folder: Path, limit: int) -> None:
    """The gallery's similar works are part of a /predict: index up to `limit` of FOLDER's works."""
    from artlab.images import list_images
    from artlab.indexing import index_paths

    if folder.is_dir():
        index_paths(lab.gallery(), lab.models(), list_images(folder)[:limit])


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    from common import machine, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/styles/val")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the images")
    parser.add_argument("--weights")
    parser.add_argument("--gallery-works", type=int, default=300, help="works indexed for the similar-works search")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "analyze.json")
    args = parser.parse_args()

    import torch
    import torchvision
    from PIL import Image
    from torchvision.transforms import v2

    from artlab.inference.explain import OVERLAY_SIDE
    from artlab.lab import Lab

    info = machine()
    tmp_gallery = tempfile.TemporaryDirectory(prefix="artlab-analyze-")
    lab = Lab(weights=args.weights, gallery_dir=tmp_gallery.name, device="cpu")
    models = lab.models()
    fill_gallery(lab, args.folder, args.gallery_works)
    resnet = torchvision.models.resnet50().eval()
    preprocess = v2.Compose([v2.ToImage(), v2.Resize(256), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                             v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def artlab_once(path, explain):
        # With Grad-CAM, as the app runs it: the picture decoded large enough to lay the heat map over.
        image = models.prepare(path, display_side=OVERLAY_SIDE if explain else 0)
        models.analyze([image], explain=explain)

    @torch.inference_mode()
    def resnet_once(path):
        resnet(preprocess(Image.open(path).convert("RGB")).unsqueeze(0)).argmax(1)

    def server_once(path):
        lab.look(Path(path).read_bytes(), explain=False)   # what /predict runs

    times = {"artlab": [], "artlab_gradcam": [], "server_predict": [], "resnet50": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_inputs(args.folder, args.images, Path(tmp))
        for path in paths[:3]:  # warm-up
            artlab_once(path, False), artlab_once(path, True), server_once(path), resnet_once(path)
        for _ in range(args.rounds):
            for path in paths:
                for name, run in (("artlab", lambda: artlab_once(path, False)),
                                  ("artlab_gradcam", lambda: artlab_once(path, True)),
                                  ("server_predict", lambda: server_once(path)),
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
              "targets": {"ratio_p50_vs_resnet50": 0.5, "ratio_p50_gradcam_vs_resnet50": 1.2,
                          "server_predict_p50_ms": 150},
              "torch_threads": torch.get_num_threads(), "input": "1155x866 JPEG",
              "classifier_input": models.input_size, "tta": models.tta, "machine": info,
              "engine": models.engine, "precision": models.precision, "gallery_works": lab.gallery().count(),
              "gradcam_precision": str(models.dtype).removeprefix("torch."), "load_average": os.getloadavg()[0]}
    print(f"{'':<16}{'p50 ms':>10}{'p95 ms':>10}")
    for name, s in summary.items():
        print(f"{name:<16}{s['p50_ms']:>10}{s['p95_ms']:>10}")
    print(f"ratio vs ResNet-50 (p50): {result['ratio_p50_vs_resnet50']} (target <= 0.5); "
          f"with Grad-CAM: {result['ratio_p50_gradcam_vs_resnet50']} (target <= 1.2); "
          f"server /predict p50 {summary['server_predict']['p50_ms']} ms (target <= 150) with "
          f"{result['gallery_works']} works in the gallery")
    write_json(result, args.json)
    tmp_gallery.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
