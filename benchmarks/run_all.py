"""Run every benchmark, print one table of figures against the targets, write runs/benchmarks/all.json.

    python benchmarks/run_all.py [--quick] [--only analyze cli ...]

Each benchmark is its own script (analyze, cli, index, text, finetune, startup) that prints its figures
and writes its own JSON; this runs them one after another and gathers the headline numbers.
The full run includes the 1,000-request memory soak of the app (about 6 minutes of the ~10).
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
    "analyze": ([], ["--images", "20"], None),
    "cli": ([], ["--images", "40", "--pairs", "1"], None),
    "index": ([], ["--limit", "100"], None),
    "text": ([], [], None),
    "finetune": ([], [], None),
    "startup": (["--requests", "1000"], ["--requests", "30", "--rss-every", "10"], None),
}


def _rows(name: str, d: dict) -> list[tuple[str, str, str, bool | None]]:
    """(what, figure, target, met) lines for the table."""
    if name == "analyze":
        s = d["summary"]
        return [("analyze p50 vs ResNet-50", f"{s['artlab']['p50_ms']} / {s['resnet50']['p50_ms']} ms = "
                 f"{d['ratio_p50_vs_resnet50']}x", "<= 0.5x", d["ratio_p50_vs_resnet50"] <= 0.5),
                ("analyze + Grad-CAM p50", f"{s['artlab_gradcam']['p50_ms']} ms = {d['ratio_p50_gradcam_vs_resnet50']}x",
                 "<= 1.2x", d["ratio_p50_gradcam_vs_resnet50"] <= 1.2),
                ("server /predict p50 (Grad-CAM off)", f"{s['server_predict']['p50_ms']} ms", "<= 150 ms",
                 s["server_predict"]["p50_ms"] <= 150)]
    if name == "cli":
        return [(f"cli [{variant}: {v['engine']}, {v['precision']}]", f"median ratio {v['median_ratio']} "
                 f"(CPU time {v['median_cpu_ratio']})", "<= 0.5", v["median_ratio"] <= 0.5)
                for variant, v in d["variants"].items()]
    if name == "index":
        return [(f"index ({d.get('pipeline', 'ordinary')}, {d.get('device_name', d['device'])})",
                 f"{d['images_per_s']} images/s (model only {d.get('model_only_images_per_s')})",
                 f">= {d['target_images_per_s']}", d["images_per_s"] >= d["target_images_per_s"])]
    if name == "text":
        return [("text: predict-text", f"{d['titles_per_s']} titles/s", ">= 500", d["titles_per_s"] >= 500)]
    if name == "finetune":
        return [("finetune 3 x 30 images", f"{d['command_wall_s']} s, accuracy {d['test_accuracy']}",
                 "<= 60 s (CPU), >= 0.85", d["command_wall_s"] <= 60 and d["test_accuracy"] >= 0.85)]
    if name == "startup":
        samples = d.get("rss_samples") or []
        ends = (f"RSS {samples[0]['rss_mb']} MB at request {samples[0]['requests']}, "
                f"{samples[-1]['rss_mb']} MB at {samples[-1]['requests']}") if samples else "no samples"
        growth = d.get("rss_growth_second_half_mb")
        return [("app ready (first HTTP 200)", f"{d['first_200_s']} s", "<= 10 s", d["first_200_s"] <= 10),
                ("app peak RSS", f"{d['peak_rss_mb']} MB", "<= 1536 MB", d["peak_rss_mb"] <= 1536),
                (f"app RSS growth, requests {samples[len(samples) // 2 - 1]['requests'] if len(samples) > 3 else '-'}"
                 f"-{samples[-1]['requests'] if samples else '-'}",
                 f"{growth} MB ({ends})", "none", None if growth is None else growth <= 16)]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import machine

    info = machine()   # the CPU's model and flags, the image models' engine and precision
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
    print(f"{'benchmark':<44}{'figure':<52}{'target':<24}met")
    for name, data in results.items():
        if "error" in data:
            print(f"{name:<44}{data['error']}")
            continue
        for what, figure, target, met in _rows(name, data):
            print(f"{what:<44}{figure:<52}{target:<24}{'-' if met is None else 'yes' if met else 'NO'}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "all.json").write_text(json.dumps({"machine": info, **results}, indent=2) + "\n")
    print(f"wrote {OUT / 'all.json'}")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
