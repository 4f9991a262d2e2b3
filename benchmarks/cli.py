"""Benchmark: `python -m artlab predict --json` over 120 images vs. a plain ResNet-50 script.

    python benchmarks/cli.py [FOLDER] [--images 120] [--pairs 3]

Whole-process wall time (start-up, model load, decoding and inference included), the two commands
alternating, `--pairs` times each; reports the median ratio ArtLab / ResNet-50 (target <= 0.5).
The ResNet-50 script is what one would otherwise write with torchvision: decode, resize to 224,
normalise, one forward per batch of 16, print the top class (random init: timing only).
Writes JSON (runs/benchmarks/cli.json).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

RESNET_SCRIPT = r'''
import sys, torch, torchvision
from PIL import Image
from torchvision.transforms import functional as F
model = torchvision.models.resnet50().eval()
paths = sys.argv[1:]
with torch.inference_mode():
    for i in range(0, len(paths), 16):
        batch = [F.normalize(F.to_tensor(Image.open(p).convert("RGB").resize((224, 224))),
                             [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) for p in paths[i:i + 16]]
        for p, top in zip(paths[i:i + 16], model(torch.stack(batch)).argmax(1).tolist()):
            print(p, top)
'''


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {result.stderr[-2000:]}")
    return seconds


def main() -> int:
    from common import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/styles/val")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "cli.json")
    args = parser.parse_args()
    from analyze import make_inputs

    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in make_inputs(args.folder, args.images, Path(tmp))]
        script = Path(tmp) / "resnet50_predict.py"
        script.write_text(RESNET_SCRIPT)
        artlab_cmd = [sys.executable, "-m", "artlab", "predict", "--json", *paths]
        resnet_cmd = [sys.executable, str(script), *paths]
        runs = {"artlab": [], "resnet50": []}
        for _ in range(args.pairs):
            runs["artlab"].append(timed(artlab_cmd))
            runs["resnet50"].append(timed(resnet_cmd))
    ratios = [a / r for a, r in zip(runs["artlab"], runs["resnet50"])]
    result = {"images": args.images, "seconds": {k: [round(v, 2) for v in vs] for k, vs in runs.items()},
              "median_ratio": round(statistics.median(ratios), 3), "target": 0.5, "input": "1155x866 JPEG"}
    print(f"artlab predict --json: {result['seconds']['artlab']} s; resnet50 script: {result['seconds']['resnet50']} s")
    print(f"median ratio: {result['median_ratio']} (target <= 0.5)")
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
