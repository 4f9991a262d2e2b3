"""Benchmark: seconds from `python app.py` to the first HTTP 200, to models ready, and the app's RSS over many requests.

    python benchmarks/startup.py [--weights W] [--gallery DIR] [--requests 20] [--pictures 10]
    python benchmarks/startup.py --requests 1000        # the memory soak of issue 6

Starts the app as a subprocess on a free port (fresh temporary gallery unless --gallery),
polls / until it answers 200, then sends `--requests` calls one after another through
gradio_client: /predict (the page's /analyze_artwork skips a picture it has seen) with 1-megapixel JPEGs of `--pictures` different paintings
in turn, and every fifth call /predict_text instead (the first call includes any model
loading still going on). The app's RSS (VmRSS) is sampled every 100 requests; peak RSS is
the kernel's VmHWM. "Growth" is RSS at the last sample minus RSS at request 100.
Targets: ready <= 10 s; /predict <= 300 ms (client wall) on the 2-core CPU; peak RSS after 100
requests <= 1.5 GB; no growth over 1,000 requests. Prints the figures, writes JSON
(runs/benchmarks/startup.json).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEXTS = ["Stormy sea at night", "Portrait of a young woman", "Still life with apples and a jug",
         "The Annunciation", "View of the river at Argenteuil", "山水画 夜晚的海", "🌅 harbour at dawn"]


def rss_mb(pid: int, field_name: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return rss_mb(pid, "VmHWM:")


def wait_for_200(url: str, proc, timeout: float = 120) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no 200 from {url} within {timeout} s")


def megapixel_images(folder: Path, count: int) -> list[Path]:
    """`count` 1155x866 JPEGs of different paintings (synthetic ones without ../shared)."""
    sys.path.insert(0, str(ROOT))
    from analyze import make_inputs

    return make_inputs(ROOT.parent / "shared/data/styles/val", count, folder)


def main() -> int:
    from common import machine, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="passed as ARTLAB_WEIGHTS (default: the shipped weights)")
    parser.add_argument("--gallery", type=Path)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--pictures", type=int, default=10, help="different images sent in turn")
    parser.add_argument("--rss-every", type=int, default=100, help="sample the app's RSS every N requests")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "startup.json")
    args = parser.parse_args()
    info = machine()   # prints the CPU's model and flags, and the image models' engine and precision

    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="artlab-startup-") as tmp:
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
        if args.weights:
            env["ARTLAB_WEIGHTS"] = args.weights
        command = [sys.executable, "app.py", "--gallery", str(args.gallery or Path(tmp) / "gallery")]
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            first_200 = wait_for_200(url, proc) - start
            client = Client(url, verbose=False)
            images = [handle_file(str(p)) for p in megapixel_images(Path(tmp), args.pictures)]
            times, text_times, rss_samples = [], [], []
            for i in range(max(1, args.requests)):
                t = time.perf_counter()
                if i % 5 == 4:
                    client.predict(TEXTS[i % len(TEXTS)], api_name="/predict_text")
                    text_times.append(time.perf_counter() - t)
                else:
                    client.predict(images[i % len(images)], api_name="/predict")
                    times.append(time.perf_counter() - t)
                if (i + 1) % args.rss_every == 0:
                    rss_samples.append({"requests": i + 1, "rss_mb": round(rss_mb(proc.pid))})
            ready = first_200 + times[0]
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    steady = times[1:] or times
    result = {
        "machine": info,
        "first_200_s": round(first_200, 2),
        "first_analysis_done_s": round(ready, 2),
        "analyze_artwork_ms": {"first": round(times[0] * 1000), "p50": round(statistics.median(steady) * 1000),
                               "p95": round(sorted(steady)[int(0.95 * (len(steady) - 1))] * 1000),
                               "n": len(steady), "image": "1155x866 JPEG, /predict: Grad-CAM off",
                               "endpoint": "/predict"},
        "analyze_text_ms": {"p50": round(statistics.median(text_times) * 1000) if text_times else None,
                            "n": len(text_times)},
        "peak_rss_mb": round(rss), "rss_samples": rss_samples,
        "rss_growth_mb": rss_samples[-1]["rss_mb"] - rss_samples[0]["rss_mb"] if len(rss_samples) > 1 else None,
        "rss_growth_second_half_mb": (rss_samples[-1]["rss_mb"] - rss_samples[len(rss_samples) // 2 - 1]["rss_mb"]
                                      if len(rss_samples) > 3 else None),
        "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(),
        "targets": {"ready_s": 10, "analyze_artwork_ms": 300, "peak_rss_mb_after_100": 1536,
                    "rss_growth_mb": "none over 1,000 requests"},
    }
    print(f"startup: first 200 after {result['first_200_s']} s; first analysis answered at "
          f"{result['first_analysis_done_s']} s; /predict p50 {result['analyze_artwork_ms']['p50']} ms, "
          f"p95 {result['analyze_artwork_ms']['p95']} ms (client wall, {len(steady)} calls); "
          f"peak RSS {result['peak_rss_mb']} MB; load average {result['load_average']:.1f}")
    if rss_samples:
        print("RSS by requests: " + ", ".join(f"{s['requests']}: {s['rss_mb']} MB" for s in rss_samples)
              + (f"; growth after request {rss_samples[0]['requests']}: {result['rss_growth_mb']} MB"
                 if result["rss_growth_mb"] is not None else "")
              + (f"; over the second half: {result['rss_growth_second_half_mb']} MB"
                 if result["rss_growth_second_half_mb"] is not None else ""))
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
