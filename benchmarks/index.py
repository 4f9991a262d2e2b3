"""Benchmark: images/s of the gallery index (`python -m artlab index`'s engine) on a folder.

    python benchmarks/index.py [FOLDER] [--limit 420] [--weights W] [--batch 32] [--gallery DIR]
    python benchmarks/index.py ../shared/data/styles/train --limit 0 --bulk --device cuda   # issue 6, GPU

Indexes `--limit` images sampled evenly from FOLDER (default ../shared/data/styles/val) into a
fresh temporary gallery (or --gallery), timing decode + hash + both heads + embedding +
thumbnail + SQLite commit (add --psnr for the reconstruction too). Model loading is timed separately. Target: >= 20 images/s
on the 2-core CPU. With --bulk, the pipelined bulk indexer (artlab/bulk.py: JPEG decoding on
the GPU, read-ahead threads, bf16, batches of 256), and beside it the model-only ceiling:
the same batches already decoded and resized on the device, through the classifier alone
(target on an H100: >= 5,000 images/s end to end). Prints the figures and writes JSON
(runs/benchmarks/index.json), naming the device that gave them.
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


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def model_only_rate(models, batch: int, seconds: float = 3.0) -> float:
    """Images/s through the classifier alone, on batches already on the device (the ceiling)."""
    import torch

    x = torch.rand(batch, 3, models.input_size, models.input_size, device=models.device) * 2 - 1
    models.label_tensors(x)  # warm-up (cuDNN picks its algorithms here)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        models.label_tensors(x)   # returns CPU results, so each call waits for the device
        done += batch
    return round(done / (time.perf_counter() - start), 1)


def main() -> int:
    from common import machine, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/styles/val")
    parser.add_argument("--limit", type=int, default=420, help="images to index (0: all)")
    parser.add_argument("--weights", help="default: $ARTLAB_WEIGHTS or the shipped weights")
    parser.add_argument("--batch", type=int, help="default 32; 256 with --bulk")
    parser.add_argument("--gallery", type=Path, help="gallery folder to fill (default: a fresh temporary one)")
    parser.add_argument("--device")
    parser.add_argument("--psnr", action="store_true", help="as `index --psnr`: also run the autoencoder")
    parser.add_argument("--bulk", action="store_true", help="the bulk indexer (as `index --bulk`)")
    parser.add_argument("--workers", type=int, default=8, help="with --bulk: reader and thumbnail threads")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "index.json")
    args = parser.parse_args()
    args.batch = args.batch or (256 if args.bulk else 32)
    info = machine(args.device or "cpu")

    import torch

    from artlab.images import list_images
    from artlab.indexing import index_paths
    from artlab.inference.image import ArtModels
    from artlab.store.gallery import Gallery

    paths = list_images(args.folder)
    if args.limit and len(paths) > args.limit:
        paths = sorted(random.Random(0).sample(paths, args.limit))
    start = time.perf_counter()
    if args.bulk:
        from artlab.bulk import preload_decoder
        preload_decoder()   # as `index --bulk` does: torchvision's import overlaps the model loading
    models = ArtModels(args.weights, args.device, autoencoder=args.psnr)
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="artlab-index-bench-") as tmp:
        gallery = Gallery(args.gallery or tmp)
        before = gallery.count()
        start = time.perf_counter()
        if args.bulk:
            from artlab.bulk import bulk_index

            report = bulk_index(gallery, models, paths, root=args.folder, batch_size=args.batch,
                                workers=args.workers)
        else:
            report = index_paths(gallery, models, paths, root=args.folder, batch_size=args.batch,
                                 reconstruct=args.psnr)
        seconds = time.perf_counter() - start
        added = gallery.count() - before
        gallery.close()
    result = {
        "images": len(paths), "added": added, "skipped": report.skipped, "errors": len(report.errors),
        "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 1),
        "model_load_s": round(load_s, 2), "batch": args.batch, "device": str(models.device),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "arch": platform.machine(), "machine": info,
        "load_average": os.getloadavg()[0], "folder": str(args.folder),
        "target_images_per_s": 5000 if models.device.type == "cuda" else 20,
        "pipeline": "bulk" if args.bulk else "ordinary", "engine": models.engine, "precision": models.precision,
        "device_name": device_name(models.device),
        "model_only_images_per_s": model_only_rate(models, args.batch),
    }
    print(f"index ({result['pipeline']}): {result['images']} images in {result['seconds']} s = "
          f"{result['images_per_s']} images/s on {result['device_name']} ({result['engine']} engine, {result['precision']}, batch {args.batch}; "
          f"model load {result['model_load_s']} s; load average {result['load_average']:.1f}); "
          f"target >= {result['target_images_per_s']}/s; model-only ceiling {result['model_only_images_per_s']} images/s")
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
