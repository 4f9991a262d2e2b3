"""Benchmark: the memory it takes to load all the image models (issue 2: <= 600 MB RSS).

    python benchmarks/memory.py [--weights W]

Runs a fresh Python process that reports its RSS (VmRSS) and peak (VmHWM) at each stage:
the bare interpreter, after `import torch`, after importing artlab's inference module,
after loading ArtModels (classifier + autoencoder), and after one analysis with Grad-CAM.
The share of the models is what loading adds to the torch import. Writes JSON
(runs/benchmarks/memory.json).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

PROBE = r'''
import json, sys
def mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return round(int(line.split()[1]) / 1024)
stages = [("python", mb("VmRSS:"), mb("VmHWM:"))]
import torch
stages.append(("import torch", mb("VmRSS:"), mb("VmHWM:")))
from artlab.inference.image import ArtModels
stages.append(("import artlab.inference.image", mb("VmRSS:"), mb("VmHWM:")))
models = ArtModels(sys.argv[1] or None, "cpu")
stages.append(("ArtModels loaded", mb("VmRSS:"), mb("VmHWM:")))
from PIL import Image
picture = Image.effect_mandelbrot((1155, 866), (-2, -1.5, 1, 1.5), 60).convert("RGB")
models.analyze([models.prepare(picture)], explain=True)
stages.append(("one analysis (Grad-CAM)", mb("VmRSS:"), mb("VmHWM:")))
print(json.dumps({"stages": stages, "torch": torch.__version__, "cuda_build": torch.version.cuda,
                  "engine": models.engine, "precision": models.precision}))
'''


def main() -> int:
    from common import machine, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "memory.json")
    args = parser.parse_args()
    info = machine()   # prints the CPU's model and flags, and the image models' engine and precision
    out = subprocess.run([sys.executable, "-c", PROBE, args.weights], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                              **{k: v for k, v in os.environ.items() if k.startswith("ARTLAB_")}})
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return 1
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stages = {name: {"rss_mb": rss, "peak_mb": peak} for name, rss, peak in result["stages"]}
    loaded = stages["ArtModels loaded"]
    result.update({
        "stages": stages,
        "models_loaded_rss_mb": loaded["rss_mb"], "models_loaded_peak_mb": loaded["peak_mb"],
        "models_share_mb": loaded["rss_mb"] - stages["import torch"]["rss_mb"],
        "target_mb": 600,
    })
    print(f"{'stage':<28}{'RSS MB':>8}{'peak MB':>9}")
    for name, s in stages.items():
        print(f"{name:<28}{s['rss_mb']:>8}{s['peak_mb']:>9}")
    print(f"image models loaded: RSS {loaded['rss_mb']} MB, peak {loaded['peak_mb']} MB (target <= 600); "
          f"the models' own share {result['models_share_mb']} MB over `import torch` "
          f"({result['torch']}, CUDA build: {result['cuda_build'] or 'no'})")
    result["machine"] = info
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
