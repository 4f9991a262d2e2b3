"""Benchmark: seconds from `python app.py` to the first HTTP 200, to models ready, and the app's peak RSS.

    python benchmarks/startup.py [--weights W] [--gallery DIR] [--requests 20]

Starts the app as a subprocess on a free port (fresh temporary gallery unless --gallery),
polls / until it answers 200, then times `--requests` /analyze_artwork calls with a
1-megapixel image through gradio_client (the first one includes any model loading still
going on). Peak RSS is the kernel's VmHWM of the app process. Targets: ready <= 10 s,
/analyze_artwork <= 300 ms on the 2-core CPU. Prints the figures and writes JSON
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


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


def megapixel_image(folder: Path) -> Path:
    from PIL import Image

    source = sorted((ROOT.parent / "shared/data/styles/val/impressionism").glob("*.jpg"))[:1]
    im = Image.open(source[0]).convert("RGB") if source else Image.effect_mandelbrot((256, 256), (-2, -1.5, 1, 1.5), 60).convert("RGB")
    path = folder / "one-megapixel.jpg"
    im.resize((1155, 866)).save(path, quality=90)
    return path


def main() -> int:
    from common import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="passed as ARTLAB_WEIGHTS (default: the shipped weights)")
    parser.add_argument("--gallery", type=Path)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "startup.json")
    args = parser.parse_args()

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
            image = handle_file(str(megapixel_image(Path(tmp))))
            times = []
            for _ in range(max(1, args.requests)):
                t = time.perf_counter()
                client.predict(image, api_name="/analyze_artwork")
                times.append(time.perf_counter() - t)
            ready = first_200 + times[0]
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    steady = times[1:] or times
    result = {
        "first_200_s": round(first_200, 2),
        "first_analysis_done_s": round(ready, 2),
        "analyze_artwork_ms": {"first": round(times[0] * 1000), "p50": round(statistics.median(steady) * 1000),
                               "p95": round(sorted(steady)[int(0.95 * (len(steady) - 1))] * 1000),
                               "n": len(steady), "image": "1155x866 JPEG, Grad-CAM included"},
        "peak_rss_mb": round(rss), "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(),
        "targets": {"ready_s": 10, "analyze_artwork_ms": 300},
    }
    print(f"startup: first 200 after {result['first_200_s']} s; first analysis answered at "
          f"{result['first_analysis_done_s']} s; /analyze_artwork p50 {result['analyze_artwork_ms']['p50']} ms, "
          f"p95 {result['analyze_artwork_ms']['p95']} ms (client wall, {len(steady)} calls); "
          f"peak RSS {result['peak_rss_mb']} MB; load average {result['load_average']:.1f}")
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
