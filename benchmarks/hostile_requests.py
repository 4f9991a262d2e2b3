"""Benchmark (issue 19, the heavy forms): the app's memory under oversized request bodies.

    python benchmarks/hostile_requests.py [--kiosk] [--mb 200] [--parallel 4]

Starts `python app.py` as a subprocess on a free port (a fresh temporary gallery), waits for its
first 200, then sends `--parallel` bodies of `--mb` MB at once to /gradio_api/queue/join, half
declaring their length and half streamed without one (chunked), and one /gradio_api/call with a
data: URI of the same size. Each must be answered 413; the app's RSS (VmRSS before, VmHWM after)
must not follow the bodies (before the limit: 764 -> 1,449 MB for one 133 MB body, a 5.17 GB peak
for four of 200 MB). tests/test_hardening.py checks the same with one 64 MB body in-process.
Prints the figures, writes JSON (runs/benchmarks/hostile_requests.json).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from startup import free_port, peak_rss_mb, rss_mb, wait_for_200  # noqa: E402

CHUNK = b" " * 2**20


def send(url: str, megabytes: int, declared: bool) -> int:
    """POST `megabytes` MB of spaces (never held in memory here); the status the app answered."""
    def chunks():
        for _ in range(megabytes):
            yield CHUNK
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(megabytes * 2**20)
    with httpx.Client(timeout=120) as http:
        return http.post(f"{url}gradio_api/queue/join", content=chunks(), headers=headers).status_code


def send_data_uri(url: str, megabytes: int) -> int:
    body = b'{"data": [{"url": "data:image/png;base64,' + b"A" * (megabytes * 2**20) + b'"}]}'
    with httpx.Client(timeout=120) as http:
        return http.post(f"{url}gradio_api/call/analyze_artwork", content=body,
                         headers={"content-type": "application/json"}).status_code


def main() -> int:
    from common import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosk", action="store_true")
    parser.add_argument("--mb", type=int, default=200, help="size of each body")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "hostile_requests.json")
    args = parser.parse_args()
    from common import machine

    info = machine()   # prints the CPU's model and flags, and the image models' engine and precision

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="artlab-hostile-") as tmp:
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
        command = [sys.executable, "app.py", "--gallery", str(Path(tmp) / "gallery")] + (["--kiosk"] * args.kiosk)
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_200(url, proc)
            time.sleep(5)                                   # the models load in the background
            try:   # restart the kernel's peak (VmHWM) from here: loading the models peaks higher
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            except OSError:
                print("note: cannot reset the app's peak RSS; the peak may be the start-up's", file=sys.stderr)
            before = rss_mb(proc.pid)
            start = time.perf_counter()
            with ThreadPoolExecutor(args.parallel) as pool:
                statuses = list(pool.map(lambda i: send(url, args.mb, declared=i % 2 == 0), range(args.parallel)))
            seconds = time.perf_counter() - start
            data_uri_status = send_data_uri(url, min(args.mb, 64))
            peak = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {"machine": info, "kiosk": args.kiosk, "bodies": args.parallel, "mb_each": args.mb, "statuses": statuses,
              "data_uri_status": data_uri_status, "seconds": round(seconds, 2),
              "rss_before_mb": round(before), "peak_rss_mb": round(peak), "peak_rise_mb": round(peak - before)}
    print(f"{args.parallel} bodies of {args.mb} MB ({'kiosk' if args.kiosk else 'normal'} mode): statuses "
          f"{statuses}, data: URI {data_uri_status}, answered in {seconds:.1f} s; RSS {before:.0f} MB before, "
          f"peak {peak:.0f} MB (+{peak - before:.0f} MB)")
    write_json(result, args.json)
    return 0 if set(statuses) == {413} and data_uri_status == 413 and peak - before < 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
