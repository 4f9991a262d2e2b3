"""Benchmark: `python -m artlab predict --json` over 120 images vs. a plain ResNet-50 script.

    python benchmarks/cli.py [FOLDER] [--images 120] [--pairs 3] [--variants "" ARTLAB_PRECISION=fp32 ...]

Whole-process wall time (start-up, model load, decoding and inference included), each ArtLab variant
(a set of ARTLAB_* settings; default: as installed, and ARTLAB_PRECISION=fp32, which is what a CPU
without bf16 runs) and the ResNet-50 script taking turns, `--pairs` rounds; reports, per variant, the
median ratio ArtLab / ResNet-50 of the same round (target <= 0.5), by wall time and by CPU time (the
CPU time is less swayed by other work on a shared machine). Each variant runs once untimed first, so
the ONNX files it needs are made before the clock starts (a first run after new weights adds ~3 s).

The ResNet-50 script is what an honest user would write with torchvision: one image at a time,
decoded with PIL, `v2.Resize(256)` + `v2.CenterCrop(224)` on the uint8 tensor, fp32, torch's
default threads (the cores, 2 here), print the top class (random init: timing only).
Prints the CPU's model and flags and each variant's engine and precision; writes JSON
(runs/benchmarks/cli.json).
"""

import argparse
import os
import resource
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
from torchvision.transforms import v2
model = torchvision.models.resnet50().eval()
preprocess = v2.Compose([v2.ToImage(), v2.Resize(256), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
print("threads", torch.get_num_threads(), file=sys.stderr)
with torch.inference_mode():
    for path in sys.argv[1:]:
        x = preprocess(Image.open(path).convert("RGB")).unsqueeze(0)
        print(path, model(x).argmax(1).item(), flush=True)
'''


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {result.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def settings_env(variant: str) -> dict:
    """os.environ with a variant's "NAME=value NAME=value" settings (and without other ARTLAB_ENGINE/PRECISION)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ARTLAB_ENGINE", "ARTLAB_PRECISION")}
    env.update(item.split("=", 1) for item in variant.split())
    return env


def engine_of(variant: str) -> dict:
    """The engine and precision a variant runs in (benchmarks/common.engine_info, in that environment)."""
    from common import engine_info

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(settings_env(variant))
        return engine_info("cpu")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    from common import machine, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/styles/val")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["", "ARTLAB_PRECISION=fp32"],
                        help='ARTLAB_* settings per variant, e.g. "" "ARTLAB_ENGINE=torch ARTLAB_PRECISION=fp32"')
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "cli.json")
    args = parser.parse_args()
    from analyze import make_inputs

    info = machine()
    names = [v or "default" for v in args.variants]
    engines = {name: engine_of(v) for name, v in zip(names, args.variants)}
    for name, e in engines.items():
        print(f"  variant {name}: {e['engine']} engine, {e['precision']}")
    runs = {name: [] for name in [*names, "resnet50"]}
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in make_inputs(args.folder, args.images, Path(tmp))]
        script = Path(tmp) / "resnet50_predict.py"
        script.write_text(RESNET_SCRIPT)
        artlab_cmd = [sys.executable, "-m", "artlab", "predict", "--json"]
        for variant in args.variants:     # untimed: makes the ONNX files a variant needs, warms the disk cache
            timed(artlab_cmd + paths[:1], settings_env(variant))
        timed([sys.executable, str(script), *paths[:1]])
        for _ in range(args.pairs):
            for name, variant in zip(names, args.variants):
                runs[name].append(timed(artlab_cmd + paths, settings_env(variant)))
            runs["resnet50"].append(timed([sys.executable, str(script), *paths]))
    result = {"images": args.images, "input": "1155x866 JPEG", "target": 0.5, "machine": info, "variants": {},
              "resnet50_s": [round(w, 2) for w, _ in runs["resnet50"]],
              "resnet50_cpu_s": [round(c, 2) for _, c in runs["resnet50"]], "load_average": os.getloadavg()[0]}
    print(f"resnet50 script: {result['resnet50_s']} s wall, {result['resnet50_cpu_s']} s CPU")
    for name in names:
        wall = [a[0] / r[0] for a, r in zip(runs[name], runs["resnet50"])]
        cpu = [a[1] / r[1] for a, r in zip(runs[name], runs["resnet50"])]
        result["variants"][name] = {**engines[name], "seconds": [round(w, 2) for w, _ in runs[name]],
                                    "cpu_seconds": [round(c, 2) for _, c in runs[name]],
                                    "median_ratio": round(statistics.median(wall), 3),
                                    "median_cpu_ratio": round(statistics.median(cpu), 3)}
        v = result["variants"][name]
        print(f"artlab predict --json [{name}: {v['engine']}, {v['precision']}]: {v['seconds']} s wall, "
              f"{v['cpu_seconds']} s CPU; median ratio {v['median_ratio']} (CPU time {v['median_cpu_ratio']}), "
              f"target <= 0.5")
    result["median_ratio"] = max(v["median_ratio"] for v in result["variants"].values())   # the worst variant
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
