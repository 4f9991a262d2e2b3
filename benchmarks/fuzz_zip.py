"""Fuzz the Train tab's zip importer for longer than the test suite does.

    python benchmarks/fuzz_zip.py [--examples 5000] [--seed N]

Builds random zips of hostile entries (tests/hostile_zips.py: zip-slip names, absolute and drive
paths, symlinks, deep nesting, wide names, bombs, lying headers, encrypted flags), imports each
one in a fresh sandbox and checks that nothing lands outside the target folder, no link is made
and the byte/file caps hold. Any other exception than UploadError is a failure: hypothesis
shrinks it and prints the smallest zip that shows it. Prints how the zips were answered and
writes JSON (runs/benchmarks/fuzz_zip.json).
"""

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hostile_zips import check_import, hostile_zips  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "fuzz_zip.json")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine

    info = machine()   # prints the CPU's model and flags, and the image models' engine and precision
    outcomes: Counter = Counter()
    warnings.simplefilter("ignore")                 # zipfile warns about duplicate names; expected here

    with tempfile.TemporaryDirectory(prefix="artlab-zipfuzz-") as tmp:
        counter = iter(range(10**9))

        @hypothesis_seed(args.seed)
        @settings(max_examples=args.examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(hostile_zips())
        def fuzz(entries):
            outcome = check_import(Path(tmp) / str(next(counter)), entries)
            outcomes[outcome.split(" ")[0] if outcome.startswith("imported") else outcome] += 1

        started = time.perf_counter()
        failure = None
        try:
            fuzz()
        except Exception as e:  # noqa: BLE001 - hypothesis has printed the shrunk case; report and fail
            failure = f"{type(e).__name__}: {e}"
        seconds = time.perf_counter() - started

    total = sum(outcomes.values())
    print(f"{total} zips in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f}/s); "
          f"{'FAILED: ' + failure if failure else 'no invariant broken'}")
    print(f"{'count':>7}  outcome")
    for outcome, count in outcomes.most_common(25):
        print(f"{count:>7}  {outcome}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "examples": total, "seconds": round(seconds, 1), "failure": failure,
                                     "outcomes": dict(outcomes.most_common())}, indent=2, ensure_ascii=False))
    print(f"wrote {args.json}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
