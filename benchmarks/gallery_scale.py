"""Benchmark: a gallery of a whole museum (issue 13, item 6).

    python benchmarks/gallery_scale.py [--works 1000000] [--gallery DIR] [--queries 200] [--json PATH]

Fills a fresh gallery (default: a temporary folder, never the repo) with `--works` synthetic works
through the real gallery code (Gallery.add_batch: rows, labels, random unit embeddings, tiny
thumbnails), in a child process; then, in this process, as the app would be (the shipped image
models loaded, the gallery opened), measures the similar-works query (p50/p95), browsing with
style/subject filters (first page, p50/p95), the RSS, and the database size. The first similar
query builds the similar-works index past gallery.EXACT_SEARCH_MAX works: timed apart. Every
1,000th work has a planted near-twin; how often the twin comes first is reported as recall.
Targets: similar works <= 50 ms p95, browse <= 100 ms p95, app RSS <= 1.5 GB. Prints the figures
with the CPU model and flags, and writes JSON.
"""

import argparse
import hashlib
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

MODEL = "synthetic-model"
EMBED_DIM = 512
TWIN_EVERY = 1000        # work i (i % TWIN_EVERY == 0) gets a near-twin at i + 1
TARGETS = {"similar_p95_ms": 50, "browse_p95_ms": 100, "rss_mb": 1536}


def synthetic_works(start: int, count: int, seed: int = 0) -> list:
    """`count` NewWorks numbered from `start`: random labels, random unit embeddings, 8x8 thumbnails."""
    from PIL import Image

    from artlab.labels import STYLES, SUBJECTS
    from artlab.store.works import NewWork

    rng = np.random.default_rng(seed + start)
    embeddings = rng.standard_normal((count, EMBED_DIM), dtype=np.float32)
    for i in range(count):   # a planted twin: its predecessor's embedding, slightly moved
        if (start + i) % TWIN_EVERY == 1 and i > 0:
            embeddings[i] = embeddings[i - 1] + 0.05 * embeddings[i] / np.sqrt(EMBED_DIM)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    works = []
    for i in range(count):
        number = start + i
        labels = {head: _ranked_labels(rng, names) for head, names in (("style", STYLES), ("subject", SUBJECTS))}
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        works.append(NewWork(path=f"/synthetic/{number:07d}.jpg", sha256=hashlib.sha256(b"%d" % number).hexdigest(),
                             image=Image.new("RGB", (8, 8), colour), labels=labels, embedding=embeddings[i],
                             title=f"Work {number}", artist=f"Artist {number % 5000}", model=MODEL))
    return works


def _ranked_labels(rng, names) -> list[list]:
    probs = rng.dirichlet(np.ones(len(names)))
    return [[names[j], round(float(probs[j]), 4)] for j in np.argsort(-probs)]


def fill_gallery(folder: Path, works: int, batch: int = 10_000, seed: int = 0) -> float:
    """Add `works` synthetic works to the gallery at `folder`, one transaction per batch; seconds taken."""
    from artlab.store.gallery import Gallery

    gallery = Gallery(folder)
    started = time.perf_counter()
    for start in range(gallery.count(), works, batch):
        gallery.add_batch(synthetic_works(start, min(batch, works - start), seed))
    gallery.close()
    return time.perf_counter() - started


def cpu_model() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"model": name, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MB."""
    status = Path("/proc/self/status").read_text()
    values = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}
    return values["VmRSS"] / 1024, values["VmHWM"] / 1024


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "count": len(ms)}


def measure_similar(gallery, works: int, queries: int, rng: random.Random) -> dict:
    """The first query (which may build the index) apart; then `queries` as the app asks them, and
    how often a planted twin comes first (recall)."""
    def query(work_id):
        return gallery.similar(gallery.embedding_of(work_id), k=6, exclude_id=work_id, model=MODEL)

    started = time.perf_counter()
    query(1)
    first_s = time.perf_counter() - started
    times, found, asked = [], 0, 0
    for _ in range(queries):
        work_id = rng.randrange(1, works + 1)
        started = time.perf_counter()
        query(work_id)
        times.append(time.perf_counter() - started)
    for number in range(0, min(works - 1, TWIN_EVERY * queries), TWIN_EVERY):   # work ids start at 1
        results = query(number + 1)
        asked += 1
        found += bool(results) and results[0][0].id == number + 2
    return {"first_query_s": round(first_s, 2), **percentiles(times),
            "twin_recall_at_1": round(found / max(1, asked), 4), "twins_asked": asked}


def measure_browse(gallery, queries: int, rng: random.Random) -> dict:
    """First pages with a style, a subject, or both filters, newest first (as the Gallery tab asks)."""
    from artlab.labels import STYLES, SUBJECTS

    times = []
    for i in range(queries):
        style, subject = rng.choice(STYLES), rng.choice(SUBJECTS)
        filters = ({"style": style}, {"subject": subject}, {"style": style, "subject": subject})[i % 3]
        started = time.perf_counter()
        page = gallery.browse(**filters, limit=60)
        times.append(time.perf_counter() - started)
        assert all(getattr(w, key) == value for w in page for key, value in filters.items())
    return percentiles(times)


def folder_mb(folder: Path, pattern: str) -> float:
    return round(sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file()) / 2**20, 1)


def measure(folder: Path, works: int, queries: int, with_models: bool) -> dict:
    from artlab.store.gallery import Gallery

    if with_models:   # the app holds the image models while it serves the gallery
        from artlab.inference.image import ArtModels
        ArtModels(device="cpu")
    rng = random.Random(0)
    gallery = Gallery(folder)
    assert gallery.count() == works, (gallery.count(), works)
    similar = measure_similar(gallery, works, queries, rng)
    browse = measure_browse(gallery, queries, rng)
    rss, peak = rss_mb()
    return {"similar": similar, "browse": browse, "rss_mb": round(rss, 1), "peak_rss_mb": round(peak, 1),
            "models_loaded": with_models, "database_mb": folder_mb(folder, "gallery.sqlite*"),
            "similar_index_mb": folder_mb(folder / "similar", "*.faiss")}


def main() -> int:
    from common import machine, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=int, default=1_000_000)
    parser.add_argument("--gallery", type=Path, help="gallery folder to fill and keep (default: a temporary one)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-models", action="store_true", help="measure without the app's image models loaded")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "gallery_scale.json")
    parser.add_argument("--fill-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    info = machine()   # the CPU's model and flags, the image models' engine and precision
    if args.fill_only:
        print(f"{fill_gallery(args.gallery, args.works):.1f}")
        return 0
    with tempfile.TemporaryDirectory(prefix="artlab-gallery-scale-") as tmp:
        folder = args.gallery or Path(tmp)
        fill = subprocess.run([sys.executable, __file__, "--fill-only", "--works", str(args.works),
                               "--gallery", str(folder)], check=True, capture_output=True, text=True)
        fill_s = float(fill.stdout.strip().splitlines()[-1])
        result = {"machine": info, "works": args.works, "fill_s": round(fill_s, 1), "cpu": cpu_model(), "targets": TARGETS,
                  **measure(folder, args.works, args.queries, not args.no_models)}
        result["thumbnails_mb"] = folder_mb(folder / "thumbs", "*.jpg")
    print(f"gallery of {args.works:,} works on {result['cpu']['model']} ({result['cpu']['cores']} cores; "
          f"{' '.join(result['cpu']['flags'])}): filled in {fill_s:.0f} s")
    print(f"  similar works: p50 {result['similar']['p50_ms']} ms, p95 {result['similar']['p95_ms']} ms "
          f"(target <= {TARGETS['similar_p95_ms']}); first query {result['similar']['first_query_s']} s; "
          f"planted twin first {result['similar']['twin_recall_at_1']:.2%}")
    print(f"  browse with filters: p50 {result['browse']['p50_ms']} ms, p95 {result['browse']['p95_ms']} ms "
          f"(target <= {TARGETS['browse_p95_ms']})")
    print(f"  RSS {result['rss_mb']} MB, peak {result['peak_rss_mb']} MB (target <= {TARGETS['rss_mb']}; models "
          f"loaded: {result['models_loaded']}); database {result['database_mb']} MB, similar-works index "
          f"{result['similar_index_mb']} MB, thumbnails {result['thumbnails_mb']} MB")
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
