"""The figures of one `scripts/gpu_checks.sh run`, gathered into one JSON that is committed.

    python benchmarks/gpu_summary.py OUT_DIR [--device cuda] [--seconds S] [--results DIR]

Reads what the run left in OUT_DIR (tests.xml, finetune.json, index_bulk.json, anchor.json) and
writes benchmarks/results/gpu-<device>-<date>.json with the issue's fields; a figure whose step
failed or was skipped is null, and `missing` says which. Prints each figure beside its target.
"""

import argparse
import datetime
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
AGREEMENT = re.compile(r"GPU vs CPU on (\d+) pictures: top style and subject the same on ([\d.]+), "
                       r"largest probability difference ([\d.]+)")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_counts(xml_path: Path) -> dict:
    """passed / failed (failures and errors) / skipped from pytest's JUnit XML, and the agreement figures."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return {"tests_passed": None, "tests_failed": None}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    counts = {"tests_passed": total - failed - skipped, "tests_failed": failed, "tests_skipped": skipped,
              "tests_failing": [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                                if case.find("failure") is not None or case.find("error") is not None]}
    found = AGREEMENT.search(ET.tostring(root, encoding="unicode"))
    if found:
        counts["agreement"] = {"pictures": int(found[1]), "top_labels_same": float(found[2]),
                               "largest_probability_difference": float(found[3]),
                               "targets": {"top_labels_same": 0.99, "largest_probability_difference": 0.02}}
    return counts


def torch_version() -> str | None:
    try:
        import torch
        return torch.__version__
    except ImportError:
        return None


def summary(out: Path, device: str, seconds: int | None) -> dict:
    finetune, bulk, anchor = (_json(out / name) for name in ("finetune.json", "index_bulk.json", "anchor.json"))
    anchor_script = next((v for k, v in anchor.items() if k.startswith("resnet50_dataloader")), None)
    result = {
        "device_name": bulk.get("device_name") or anchor.get("gpu") or device,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "torch": torch_version(),
        **test_counts(out / "tests.xml"),
        "bulk_images_per_s": bulk.get("images_per_s"),
        "bulk_images": bulk.get("images"),
        "model_only_images_per_s": bulk.get("model_only_images_per_s"),
        "anchor_resnet50_dataloader_per_s": anchor_script,
        "nvjpeg_decode_per_s": anchor.get("nvjpeg_decode_only_per_s"),
        "anchor_resnet50_model_only_per_s": anchor.get("resnet50_model_only_per_s"),
        "finetune_seconds": finetune.get("command_wall_s"),
        "finetune_accuracy": finetune.get("test_accuracy"),
        "finetune_depth": finetune.get("depth"),
        "run_seconds": seconds,
        "targets": {"bulk_images_per_s": 5000, "bulk_vs_anchor": 2.0, "finetune_seconds": 10,
                    "finetune_accuracy": 0.85, "run_seconds": 480},
    }
    if result["bulk_images_per_s"] and anchor_script:
        result["bulk_vs_anchor"] = round(result["bulk_images_per_s"] / anchor_script, 2)
    result["missing"] = [k for k in ("tests_passed", "bulk_images_per_s", "model_only_images_per_s",
                                     "anchor_resnet50_dataloader_per_s", "nvjpeg_decode_per_s", "finetune_seconds",
                                     "finetune_accuracy") if result[k] is None]
    return result


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the run's log folder ($OUT of gpu_checks.sh)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=int, help="the whole run's wall time")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    result = summary(args.out, args.device, args.seconds)
    for key, target in result["targets"].items():
        print(f"{key}: {result.get(key)} (target {'>=' if key not in ('finetune_seconds', 'run_seconds') else '<='} "
              f"{target})")
    print(f"tests: {result['tests_passed']} passed, {result['tests_failed']} failed; agreement: "
          f"{result.get('agreement')}; missing: {result['missing']}")
    path = args.results / f"gpu-{slug(result['device_name'])}-{result['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
