"""How much do titles tell? Two measurements behind the text classifier's targets.

    python scripts/text_ceiling.py --data ../shared/data [--json runs/text_ceiling.json]

1. Titles that occur in both splits (by painting, so the same title by another painter): how
   often the commonest label of the title in train is right in val. An upper bound for what any
   model can learn from those titles.
2. A richer n-gram model than the evaluate-text baseline: logistic regression on hashed words,
   word pairs and character 3-5-grams. Its best val epoch is reported (an optimistic figure).
"""

import argparse
import collections
import json
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artlab.data import text as text_data  # noqa: E402
from artlab.labels import TEXT_HEADS as HEAD_LABELS  # noqa: E402
from artlab.tokenizer import normalize, normalize_words  # noqa: E402
from artlab.training.baselines import bag_regression  # noqa: E402

BUCKETS = 1 << 20


def repeated_title_agreement(train, val) -> dict:
    out = {}
    for head in HEAD_LABELS:
        votes = collections.defaultdict(collections.Counter)
        for text, kind, label in zip(train.texts, train.kinds, train.labels[head].tolist()):
            if kind == "title" and label >= 0:
                votes[normalize(text)][label] += 1
        total = seen = right = 0
        for text, kind, label in zip(val.texts, val.kinds, val.labels[head].tolist()):
            if kind != "title" or label < 0:
                continue
            total += 1
            if normalize(text) in votes:
                seen += 1
                right += votes[normalize(text)].most_common(1)[0][0] == label
        out[head] = {"val_titles": total, "also_in_train": seen, "share": round(seen / total, 4),
                     "commonest_train_label_right": round(right / max(1, seen), 4)}
    return out


def ngram_ids(text: str) -> list[int]:
    words = normalize_words(text)
    grams = set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}
    padded = f" {' '.join(words)[:300]} "
    grams |= {"#" + padded[i:i + n] for n in (3, 4, 5) for i in range(len(padded) - n + 1)}
    return sorted({zlib.crc32(g.encode()) % BUCKETS for g in grams})


def ngram_logistic_regression(train, val, epochs: int = 6) -> dict:
    """The evaluate-text baseline's regression on n-gram features; best val accuracy over the epochs."""
    best: dict[str, float] = {}

    def keep_best(head, epoch, reports):
        for task, report in reports.items():
            best[task] = round(max(best.get(task, 0.0), report["accuracy"]), 4)
        print(f"{head} epoch {epoch}: best so far {best}", flush=True)

    bag_regression(train, val, ngram_ids, BUCKETS, epochs=epochs, lr=0.01, l2=0.0, on_epoch=keep_best)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    train, val = text_data.load_text_data(args.data, "train"), text_data.load_text_data(args.data, "val")
    report = {"repeated_titles": repeated_title_agreement(train, val)}
    print(json.dumps(report, indent=2), flush=True)
    report["ngram_logistic_regression_best_epoch"] = ngram_logistic_regression(train, val)
    print(json.dumps(report["ngram_logistic_regression_best_epoch"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
