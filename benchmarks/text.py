"""Benchmark: titles/s through `python -m artlab predict-text --json` (stdin), start-up excluded.

    python benchmarks/text.py [--weights W] [--data /work/shared/data] [--count 5000] [--device cpu]
    python benchmarks/text.py --data /work/shared/data --piece-words 4 6 8 10 12 16

With --piece-words it measures instead how well the text autoencoder rebuilds long texts piece by
piece at each piece size, on the selection split's descriptions (their first sentences, up to 100
words), by length: the figures AE_PIECE_WORDS (artlab.inference.text) was chosen by.

Starts predict-text as a subprocess, sends one warm-up title and waits for its answer
(that is the start-up: imports, loading both text models), then streams `--count` titles
(the validation titles of the shared data, repeated as needed; made-up titles without it)
and times until every answer line is back. Target: >= 500 titles/s on the 2-core CPU.
Prints the figures and writes JSON (runs/benchmarks/text.json).
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

WORDS = ("portrait of a young woman stormy sea at night still life with apples the annunciation view of "
         "the river at evening madonna and child landscape near the village flowers in a vase").split()


def titles(data: Path, count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    source = []
    if (data / "text" / "wikiart_titles.csv").is_file():
        from artlab.data.text import load_wikiart_titles
        source = load_wikiart_titles(data / "text" / "wikiart_titles.csv", "val").texts
    if not source:
        source = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))) for _ in range(1000)]
    return [source[i % len(source)] for i in rng.sample(range(max(count, len(source))), count)]


def choose_piece_words(args) -> int:
    """Token accuracy by length for each piece size, on the selection split (never val)."""
    import torch

    from artlab.data.text import load_text_data
    from artlab.inference.text import load_text_autoencoder
    from artlab.training.evaluate import autoencoder_length_report, length_report_texts

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, tokenizer, card = load_text_autoencoder(args.weights, args.device)
    # Descriptions only: the autoencoder was trained on the train split's titles, selection's among them.
    texts = length_report_texts(load_text_data(args.data, "selection"), titles=0)
    result = {"benchmark": "text autoencoder token accuracy by length and piece size",
              "split": "selection (descriptions' first sentences, up to 100 words)", "texts": len(texts),
              "piece_words": {}}
    for words in args.piece_words:
        report = autoencoder_length_report(model, tokenizer, texts, args.device, words)
        scored = [r["pieces"] for r in report.values() if r["pieces"] is not None]
        result["piece_words"][words] = {"by_length": report, "mean_over_lengths": round(sum(scored) / len(scored), 4)}
        print(f"{words:>3} words a piece: mean {result['piece_words'][words]['mean_over_lengths']:.4f}  "
              + "  ".join(f"{k}: {r['pieces']} (whole text cut: {r['whole_cut']}, {r['texts']} texts)"
                          for k, r in report.items() if r["texts"]), flush=True)
    best = max(result["piece_words"], key=lambda w: result["piece_words"][w]["mean_over_lengths"])
    result["best_piece_words"] = best
    print(f"best on the selection split: {best} words a piece")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.with_name("text_piece_words.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="text weights folder (default: $ARTLAB_WEIGHTS or the shipped weights)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ARTLAB_DATA", ROOT.parent / "shared/data")))
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=ROOT / "runs" / "benchmarks" / "text.json")
    parser.add_argument("--piece-words", type=int, nargs="+",
                        help="instead: the autoencoder's token accuracy by length at these piece sizes (selection split)")
    args = parser.parse_args()
    if args.piece_words:
        return choose_piece_words(args)
    from common import machine

    info = machine()   # prints the CPU's model and flags, and the image models' engine and precision

    inputs = titles(args.data, args.count)
    command = [sys.executable, "-m", "artlab", "predict-text", "--json", "--device", args.device]
    if args.weights:
        command += ["--weights", args.weights]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdin.write(b"warm-up title\n")
    proc.stdin.flush()
    first = proc.stdout.readline()
    startup = time.perf_counter() - started
    if not first:
        print("error: predict-text gave no answer (see its messages above)", file=sys.stderr)
        return 2

    def feed():
        proc.stdin.write(("\n".join(inputs) + "\n").encode("utf-8"))
        proc.stdin.close()

    begun = time.perf_counter()
    threading.Thread(target=feed, daemon=True).start()
    answers = [json.loads(line) for line in proc.stdout]
    elapsed = time.perf_counter() - begun
    proc.wait()
    if len(answers) != len(inputs):
        print(f"error: {len(answers)} answers for {len(inputs)} titles", file=sys.stderr)
        return 2
    result = {
        "machine": info,
        "benchmark": "predict-text titles/s (stdin, --json), start-up excluded",
        "titles": len(inputs), "seconds": round(elapsed, 3), "titles_per_s": round(len(inputs) / elapsed, 1),
        "startup_s": round(startup, 2), "errors": sum("error" in a for a in answers),
        "target_titles_per_s": 500, "device": args.device, "torch_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(f"predict-text: {result['titles_per_s']} titles/s ({len(inputs)} titles in {elapsed:.2f} s; "
          f"start-up {startup:.1f} s, excluded) on {args.device}, target >= 500")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
