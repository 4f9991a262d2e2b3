"""Run every benchmark, print one table, write runs/benchmarks/all.json.

    python benchmarks/run_all.py [--quick]

Each benchmark is its own script (analyze, cli, index, text, finetune, startup) that prints its figures
and writes its own JSON; this runs them one after another and gathers the headline numbers.
`--quick` uses fewer images and runs, for a smoke check.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "benchmarks"

# name -> (script arguments, quick arguments, headline keys in its JSON)
BENCHMARKS = {
    "analyze": ([], ["--images", "20"], ["ratio_p50_vs_resnet50", "ratio_p50_gradcam_vs_resnet50", "summary"]),
    "cli": ([], ["--images", "40", "--pairs", "1"], ["median_ratio", "seconds"]),
    "index": ([], ["--limit", "100"], ["images_per_s", "device"]),
    "text": ([], [], None),
    "finetune": ([], [], None),
    "startup": ([], [], None),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS))
    args = parser.parse_args()
    results = {}
    for name, (full, quick, keys) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        script = ROOT / "benchmarks" / f"{name}.py"
        print(f"== {name}", flush=True)
        proc = subprocess.run([sys.executable, str(script), *(quick if args.quick else full)], cwd=ROOT)
        data_file = OUT / f"{name}.json"
        if proc.returncode != 0 or not data_file.exists():
            results[name] = {"error": f"exit {proc.returncode}"}
            continue
        data = json.loads(data_file.read_text())
        results[name] = {k: data[k] for k in keys if k in data} if keys else data
    print("\n== summary")
    for name, data in results.items():
        print(f"{name:<10} {json.dumps(data)[:300]}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "all.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT / 'all.json'}")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
