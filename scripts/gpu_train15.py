"""The Python half of scripts/gpu_train15.sh (issue 15): pack the data here, unpack it there, pick there.

    python scripts/gpu_train15.py pack DATA .carry/gpu15 --part-mb 29    (here: needs the data and PyPI)
    python scripts/gpu_train15.py unpack .carry /tmp/gpu15               (there: decode every part present)
    python scripts/gpu_train15.py pick RUNS_DIR OUT                      (there: the figures, the candidates)

`pick` reads every run's card: one JSON of figures, and the best of each backbone on selection.

The pack holds the fit, selection and val splits exactly as `load_art_data` makes them here (224 px,
letterboxed, uint8), each image as lossy WebP bytes (quality 75: about 6.2 KB against 150 KB decoded,
median PSNR 35.8 dB against the 224-px originals; quality 80: 7.3 KB, 37.5 dB, one device call more),
in safetensors chunks with their labels; plus the ImageNet weights of the backbones the run trains, as
fp16 safetensors without the ImageNet classifier. The chunks are binned into parts of at most
--part-mb MB, one part per device call (a call carries the checkout and at most 64 MiB in all).
`unpack` decodes each chunk present once (it remembers which) and, once every chunk of the manifest
is there, writes the ARTLAB_DATA_CACHE files `load_art_data` reads: {fit,selection,val}-None.safetensors.
"""

import argparse
import hashlib
import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPLITS = ("fit", "selection", "val")
QUALITY = 75
CHUNK_IMAGES = 500


def _webp(image: torch.Tensor) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out, "WEBP", quality=QUALITY, method=4)
    return out.getvalue()


def _chunk(images: torch.Tensor, labels: dict, rows: range, path: Path) -> dict:
    with ThreadPoolExecutor(4) as pool:
        blobs = list(pool.map(_webp, [images[i] for i in rows]))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    tensors = {"data": torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8),
               "offsets": torch.from_numpy(offsets.astype(np.int64)),
               **{head: labels[head][rows.start:rows.stop].clone() for head in labels}}
    save_file(tensors, str(path))
    return {"file": path.name, "rows": len(rows), "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def pack_weights(variants: list[str], out: Path) -> list[dict]:
    """Each variant's ImageNet weights as fp16 safetensors, without the ImageNet classifier."""
    from artlab.models.backbone import UNUSED_PRETRAINED, pretrained_file, read_pretrained

    files = []
    for name in variants:
        state = read_pretrained(pretrained_file(name))
        kept = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()
                if k not in UNUSED_PRETRAINED}
        path = out / f"{name}.safetensors"
        save_file(kept, str(path))
        files.append({"file": path.name, "variant": name, "bytes": path.stat().st_size})
    return files


def pack(args) -> None:
    """Chunks of each split, the weights, binned into parts (part-1 also gets the weights)."""
    from artlab.data.folders import load_art_data

    staging = args.out / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    chunks = []
    for split in SPLITS:
        data = load_art_data(args.data, split, args.limit)
        # Shuffled (training shuffles anyway), so that every chunk holds style and subject images alike:
        # the smoke run trains on part 1 alone.
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
        images, labels = data.images[order], {head: t[order] for head, t in data.labels.items()}
        for k, start in enumerate(range(0, len(data), CHUNK_IMAGES)):
            rows = range(start, min(len(data), start + CHUNK_IMAGES))
            chunks.append({"split": split, **_chunk(images, labels, rows, staging / f"{split}-{k:02d}.st")})
        print(f"{split}: {len(data)} images, {sum(c['bytes'] for c in chunks if c['split'] == split) / 1e6:.1f} MB")
    weights = pack_weights(args.variants, staging)
    parts = _bin(weights, chunks, args.part_mb * 1e6)
    manifest = {"chunks": chunks, "weights": weights, "parts": len(parts), "quality": QUALITY}
    for number, files in enumerate(parts, 1):
        folder = args.out.parent / f"{args.out.name}-part{number}"
        folder.mkdir(parents=True, exist_ok=True)
        for entry in files:
            (staging / entry["file"]).rename(folder / entry["file"])
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        size = sum((folder / e["file"]).stat().st_size for e in files)
        print(f"{folder}: {len(files)} files, {size / 1e6:.1f} MB")
    staging.rmdir()
    args.out.rmdir()


def _bin(weights: list[dict], chunks: list[dict], budget: float) -> list[list[dict]]:
    """Weights first (part 1, with the chunks that fit beside them), then chunks in order, next-fit."""
    parts, current, used = [], list(weights), sum(w["bytes"] for w in weights)
    for chunk in chunks:
        if used + chunk["bytes"] > budget and current:
            parts.append(current)
            current, used = [], 0
        current.append(chunk)
        used += chunk["bytes"]
    return parts + [current]


def _decode(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).transpose(2, 0, 1)


def decode_chunk(path: Path) -> dict:
    tensors = load_file(str(path))
    data, offsets = tensors["data"].numpy().tobytes(), tensors["offsets"].tolist()
    with ThreadPoolExecutor(16) as pool:
        images = list(pool.map(_decode, [data[a:b] for a, b in zip(offsets, offsets[1:])]))
    return {"images": torch.from_numpy(np.ascontiguousarray(np.stack(images))), **{k: v for k, v in tensors.items()
                                                          if k not in ("data", "offsets")}}


def unpack(args) -> int:
    """Decode each chunk found in the carried parts (once), copy the weights; 0 once all chunks are in
    and the cache is written, 3 while some are missing (which ones is printed)."""
    decoded, cache = args.work / "decoded", args.work / "cache"
    decoded.mkdir(parents=True, exist_ok=True)
    manifest = None
    for part in sorted(args.carry.glob("gpu15-part*")):
        manifest = json.loads((part / "manifest.json").read_text())
        for entry in manifest["weights"]:
            if (part / entry["file"]).exists():
                (args.work / entry["file"]).write_bytes((part / entry["file"]).read_bytes())
        for entry in manifest["chunks"]:
            source, target = part / entry["file"], decoded / entry["file"]
            if source.exists() and not target.exists():
                if hashlib.sha256(source.read_bytes()).hexdigest() != entry["sha256"]:
                    raise SystemExit(f"{source}: damaged in transit (sha256 differs)")
                save_file(decode_chunk(source), str(target))
    if manifest is None:
        raise SystemExit(f"no {args.carry}/gpu15-part*/: carry one (the pack step makes them)")
    missing = [e["file"] for e in manifest["chunks"] if not (decoded / e["file"]).exists()]
    missing += [w["file"] for w in manifest["weights"] if not (args.work / w["file"]).exists()]
    if missing:
        print(f"have {len(manifest['chunks']) - len(missing)} chunks; missing: {' '.join(missing)}")
        return 3
    _write_cache(manifest, decoded, cache)
    return 0


def _write_cache(manifest: dict, decoded: Path, cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        parts = [load_file(str(decoded / e["file"])) for e in manifest["chunks"] if e["split"] == split]
        merged = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        save_file(merged, str(cache / f"{split}-None.safetensors"))
        print(f"{split}: {len(merged['images'])} images decoded, {tuple(merged['images'].shape[1:])}")


def _score(card: dict) -> float:
    """The recipes' selection score: style accuracy + half the subject accuracy."""
    metrics = card["metrics"]["selection"]
    return metrics["style"]["accuracy"] + 0.5 * metrics["subject"]["accuracy"]


def pick(args) -> int:
    """Every candidate's figures into one JSON; the best of each backbone on selection (weights and
    card) copied to OUT, as <backbone>-best.safetensors/.json. Val is reported, never chosen on."""
    import shutil

    rows = {}
    for card_path in sorted(args.runs.glob("*/art_classifier.json")):
        card = json.loads(card_path.read_text())
        rows[card_path.parent.name] = {
            "backbone": card.get("config", {}).get("backbone", "lite0"), "input_size": card["input_size"],
            "selection_score": round(_score(card), 4),
            **{f"{split}_{head}": card["metrics"][split][head]["accuracy"]
               for split in ("selection", "val") for head in ("style", "subject")},
            "best_epoch": card.get("training", {}).get("best_epoch"),
            "epochs_run": card.get("training", {}).get("epochs_run"),
            "weights": card.get("training", {}).get("weights", "soup" if "soup" in card else "raw")}
    best = {}
    for name, row in rows.items():
        if row["backbone"] not in best or row["selection_score"] > rows[best[row["backbone"]]]["selection_score"]:
            best[row["backbone"]] = name
    args.out.mkdir(parents=True, exist_ok=True)
    for backbone, name in best.items():
        for suffix in (".safetensors", ".json"):
            shutil.copy(args.runs / name / f"art_classifier{suffix}", args.out / f"{backbone}-best{suffix}")
    summary = {"runs": rows, "best_on_selection": best,
               "overall": max(best.values(), key=lambda n: rows[n]["selection_score"]) if best else None}
    (args.out / "figures.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, row in rows.items():
        print(f"{name:>10}: {row['backbone']}@{row['input_size']} selection {row['selection_style']:.3f} / "
              f"{row['selection_subject']:.3f} (score {row['selection_score']:.3f}), val {row['val_style']:.3f} / "
              f"{row['val_subject']:.3f}, best epoch {row['best_epoch']}/{row['epochs_run']}, {row['weights']}")
    print("best on selection:", best, "overall:", summary["overall"])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path, help="e.g. .carry/gpu15: parts go to .carry/gpu15-part1, -part2, ...")
    p.add_argument("--part-mb", type=float, required=True)
    p.add_argument("--variants", nargs="+", default=["lite0", "lite2"])
    p.add_argument("--limit", type=int, help="at most this many images per class (a dry run)")
    u = sub.add_parser("unpack")
    u.add_argument("carry", type=Path)
    u.add_argument("work", type=Path)
    k = sub.add_parser("pick")
    k.add_argument("runs", type=Path)
    k.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.verb == "pack":
        pack(args)
        return 0
    return unpack(args) if args.verb == "unpack" else pick(args)


if __name__ == "__main__":
    sys.exit(main())
