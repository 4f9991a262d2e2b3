"""Benchmark: images/s of the gallery index (`python -m artlab index`'s engine) on a folder.

    python benchmarks/index.py [FOLDER] [--limit 420] [--weights W] [--batch 32] [--gallery DIR]

Indexes `--limit` images sampled evenly from FOLDER (default ../shared/data/styles/val) into a
fresh temporary gallery (or --gallery), timing decode + hash + both heads + embedding +
thumbnail + SQLite commit (add --psnr for the reconstruction too). Model loading is timed separately. Target: >= 20 images/s
on the 2-core CPU. Prints the figures and writes JSON (runs/benchmarks/index.json).
"""

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def main() -> int:
    from common import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/styles/val")
    parser.add_argument("--limit", type=int, default=420, help="images to index (0: all)")
    parser.add_argument("--weights", help="default: $ARTLAB_WEIGHTS or the shipped weights")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gallery", type=Path, help="gallery folder to fill (default: a fresh temporary one)")
    parser.add_argument("--device")
    parser.add_argument("--psnr", action="store_true", help="as `index --psnr`: also run the autoencoder")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "index.json")
    args = parser.parse_args()

    import torch

    from artlab.gallery import Gallery, index_paths
    from artlab.images import list_images
    from artlab.inference import ArtModels

    paths = list_images(args.folder)
    if args.limit and len(paths) > args.limit:
        paths = sorted(random.Random(0).sample(paths, args.limit))
    start = time.perf_counter()
    models = ArtModels(args.weights, args.device, autoencoder=args.psnr)
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="artlab-index-bench-") as tmp:
        gallery = Gallery(args.gallery or tmp)
        before = gallery.count()
        start = time.perf_counter()
        report = index_paths(gallery, models, paths, root=args.folder, batch_size=args.batch,
                             reconstruct=args.psnr)
        seconds = time.perf_counter() - start
        added = gallery.count() - before
        gallery.close()
    result = {
        "images": len(paths), "added": added, "skipped": report.skipped, "errors": len(report.errors),
        "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 1),
        "model_load_s": round(load_s, 2), "batch": args.batch, "device": str(models.device),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "load_average": os.getloadavg()[0], "folder": str(args.folder),
        "target_images_per_s": 20,
    }
    print(f"index: {result['images']} images in {result['seconds']} s = {result['images_per_s']} images/s "
          f"({result['device']}, batch {args.batch}; model load {result['model_load_s']} s; "
          f"load average {result['load_average']:.1f}) target >= 20/s")
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
