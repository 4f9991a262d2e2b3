"""Benchmark: does the Create tab look like art? The autoencoder's reconstructions and walk
midpoints, measured with the frozen ImageNet EfficientNet-Lite0 (artlab.training.perceptual).

    python benchmarks/create.py [--weights W [W ...]] [--data ../shared/data] [--split selection|val]
                                [--reference 1000] [--pairs 500] [--seed 0] [--device cpu]

From the split (styles/ and subjects/, 128 px as the autoencoder takes them) a seeded draw gives
`--reference` real paintings and, apart from them, `--pairs` others; pair i joins picture i to
picture i+1 of those. For each autoencoder (default: the shipped one):
- PSNR and the LPIPS-like feature distance between each reference painting and its reconstruction;
- Fréchet distances on Lite0's pooled features to the reference paintings, of: the walk midpoints
  (decoded at the middle of each pair's latent line, what the Create tab shows halfway), and the
  plain reconstructions of the pairs' first pictures.
And once, without a model, two yardsticks at the same sample size: the pairs' first pictures
themselves (the floor: real paintings against real paintings) and the 50/50 pixel blend of each
pair (the "blurry blend" a walk must beat).

Every choice is made with --split selection; --split val measures a model to ship, once.
Prints the machine and the figures; writes JSON (runs/benchmarks/create-<split>.json).
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from artlab.data.folders import load_art_data  # noqa: E402
from artlab.data.transforms import resize_for_eval  # noqa: E402
from artlab.inference.image import load_autoencoder  # noqa: E402
from artlab.models.autoencoder import IMAGE_SIZE, psnr  # noqa: E402
from artlab.training.perceptual import (  # noqa: E402
    feature_distance,
    features_of,
    frechet_distance,
    frozen_lite0,
)

log = logging.getLogger("create")


def draw(count: int, reference: int, pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded indices of the reference paintings and, disjoint from them, of the pairs' pictures.
    A split too small for both keeps every pair and shrinks the reference."""
    if count < pairs + 2:
        raise ValueError(f"the split holds {count} pictures: too few for {pairs} pairs")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    reference = min(reference, count - pairs)
    return order[:reference], order[reference:reference + pairs]


def batches_of(images: torch.Tensor, device, batch_size: int):
    """(start, stop, pictures at 128 px in [-1, 1] on `device`) over uint8 images, one batch at a time."""
    for start in range(0, len(images), batch_size):
        stop = min(len(images), start + batch_size)
        yield start, stop, resize_for_eval(images[start:stop], IMAGE_SIZE).to(device)


@torch.inference_mode()
def reconstruction_figures(model, net, images: torch.Tensor, device, batch_size: int) -> dict:
    """Mean PSNR and mean feature distance of each picture to its reconstruction."""
    psnrs, distances = [], []
    for _, _, x in batches_of(images, device, batch_size):
        recon = model(x)
        psnrs.append(psnr(recon, x).cpu())
        distances.append(feature_distance(net, recon, x).float().cpu())
    return {"psnr_db": round(torch.cat(psnrs).mean().item(), 3),
            "feature_distance": round(torch.cat(distances).mean().item(), 4), "count": len(images)}


@torch.inference_mode()
def walk_pictures(model, first: torch.Tensor, device, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstructions of `first` and the midpoints of the latent lines from picture i to i+1 (CPU,
    [-1, 1]). The latents are few (4 x 16 x 16 each), so all are kept and each is encoded once."""
    latents = torch.cat([model.encode(x).cpu() for _, _, x in batches_of(first, device, batch_size)])
    partners = latents.roll(-1, 0)
    recon, middle = [], []
    for start in range(0, len(latents), batch_size):
        z = latents[start:start + batch_size].to(device)
        recon.append(model.decode(z).cpu())
        middle.append(model.decode((z + partners[start:start + batch_size].to(device)) / 2).cpu())
    return torch.cat(recon), torch.cat(middle)


def features(net, pictures: torch.Tensor, device, batch_size: int, desc: str) -> torch.Tensor:
    """Pooled Lite0 features of float pictures in [-1, 1] held on the CPU."""
    return features_of(net, lambda a, b: pictures[a:b].to(device), len(pictures), batch_size, desc=desc)


def yardsticks(net, real: torch.Tensor, first: torch.Tensor, device, batch_size: int) -> dict:
    """Model-free Fréchet distances: real pictures to the reference (the floor) and pixel blends."""
    x = resize_for_eval(first, IMAGE_SIZE)
    blend = (x + x.roll(-1, 0)) / 2
    return {"real_pictures": round(frechet_distance(features(net, x, device, batch_size, "real"), real), 2),
            "pixel_blend_50_50": round(frechet_distance(features(net, blend, device, batch_size, "blend"), real), 2)}


def measure(weights, net, reference: torch.Tensor, first: torch.Tensor, real: torch.Tensor, device,
            batch_size: int) -> dict:
    """One autoencoder's figures (see the module's docstring)."""
    model, card = load_autoencoder(weights, device)
    started = time.perf_counter()
    figures = {"weights": str(weights or "shipped"), "card_date": card.get("date"),
               **reconstruction_figures(model, net, reference, device, batch_size)}
    recon, middle = walk_pictures(model, first, device, batch_size)
    figures["frechet"] = {
        "walk_midpoints": round(frechet_distance(features(net, middle, device, batch_size, "midpoints"), real), 2),
        "reconstructions": round(frechet_distance(features(net, recon, device, batch_size, "recon"), real), 2)}
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{figures['weights']}: PSNR {figures['psnr_db']:.2f} dB, feature distance "
          f"{figures['feature_distance']:.4f}; Fréchet: walk midpoints {figures['frechet']['walk_midpoints']:.2f}, "
          f"reconstructions {figures['frechet']['reconstructions']:.2f}", flush=True)
    return figures


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", default=[None],
                        help="autoencoder folders or .safetensors files (default: the shipped weights)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--split", choices=["selection", "val"], default="selection")
    parser.add_argument("--reference", type=int, default=1000, help="real paintings the sets are compared to")
    parser.add_argument("--pairs", type=int, default=500, help="walks (pairs of paintings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="default: runs/benchmarks/create-<split>.json")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from common import machine, write_json

    info = machine(args.device)
    started = time.perf_counter()
    data = load_art_data(args.data, args.split)
    reference_idx, pair_idx = draw(len(data), args.reference, args.pairs, args.seed)
    reference, first = data.images[reference_idx], data.images[pair_idx]
    net = frozen_lite0(args.device)
    real = features_of(net, lambda a, b: resize_for_eval(reference[a:b], IMAGE_SIZE).to(args.device),
                       len(reference), args.batch, desc="reference")
    result = {"machine": info, "benchmark": "autoencoder reconstructions and walk midpoints on Lite0 features",
              "split": args.split, "data": str(args.data), "seed": args.seed, "reference": len(reference),
              "pairs": len(first), "frechet_size_px": 224, "image_size_px": IMAGE_SIZE,
              # The figures are the models' own: torch in fp32, whatever engine the app would pick.
              "measured_with": "torch, float32 (artlab.inference.image.load_autoencoder)",
              "frechet": yardsticks(net, real, first, args.device, args.batch)}
    print(f"{args.split}: {len(reference)} reference paintings, {len(first)} pairs; Fréchet of "
          f"{len(first)} real paintings {result['frechet']['real_pictures']:.2f} (the floor), "
          f"of their 50/50 pixel blends {result['frechet']['pixel_blend_50_50']:.2f}", flush=True)
    result["models"] = [measure(w, net, reference, first, real, args.device, args.batch) for w in args.weights]
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    write_json(result, args.json or ROOT / "runs" / "benchmarks" / f"create-{args.split}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
