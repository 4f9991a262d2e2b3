"""Text commands: predict-text, train-text, evaluate-text."""

import json
import queue
import sys
import threading
from pathlib import Path

STDIN_BATCH = 256


def register(sub):
    p = sub.add_parser("predict-text", help="subject, style and autoencoder reconstruction of titles or descriptions")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to read (default: one per line from stdin)")
    p.add_argument("--weights", help="folder holding text_classifier.* and text_autoencoder.* (default: shipped)")
    p.add_argument("--json", action="store_true", help="exactly one JSON object per input, one per line")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--no-reconstruct", action="store_true", help="skip the autoencoder")
    # Small recurrent batches gain little from a second thread, and on a busy CPU the thread
    # pool's waiting makes them 3-5x slower (benchmarks/text.py): one thread by default.
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: 1)")
    p.set_defaults(run=run_predict)

    t = sub.add_parser("train-text", help="train the text classifier and/or the text autoencoder")
    t.add_argument("--data", required=True, type=Path, help="folder holding text/ (or text/ itself)")
    t.add_argument("--out", type=Path, default=Path("weights"))
    t.add_argument("--model", choices=["classifier", "autoencoder", "all"], default="all")
    t.add_argument("--epochs", type=int, default=8, help="classifier epochs")
    t.add_argument("--ae-epochs", type=int, default=12, help="autoencoder epochs")
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-3, help="classifier learning rate")
    t.add_argument("--ae-lr", type=float, default=3e-3, help="autoencoder learning rate")
    t.add_argument("--ae-init", type=Path, help="continue training the text autoencoder found in this folder")
    t.add_argument("--ae-salad", type=float, default=0.5,
                   help="share of autoencoder batches made of random title words, to learn copying (default 0.5)")
    t.add_argument("--ae-code", type=int, default=512, help="autoencoder code size (values per text)")
    t.add_argument("--ae-hidden", type=int, default=256, help="autoencoder encoder GRU size (each direction)")
    t.add_argument("--ae-decoder", type=int, default=384, help="autoencoder decoder GRU size")
    t.add_argument("--ae-slots", type=int, default=16,
                   help="autoencoder code as this many attention slots of code/slots values "
                        "(0: one vector squeezed from the final states)")
    t.add_argument("--wide-buckets", type=int,
                   help="classifier's wide part: hashed n-gram buckets (0: none; default 65536, "
                        "with --wide-from: the first stage's)")
    t.add_argument("--refit", action="store_true",
                   help="classifier on all of train for exactly --epochs (chosen before on the selection split)")
    t.add_argument("--wide-from", type=Path,
                   help="classifier: train again only the wide part of the one in this folder (trained on fit), "
                        "its GRU fixed, for --epochs at --wide-lr; the selection split picks the epoch")
    t.add_argument("--wide-lr", type=float, default=0.01, help="learning rate of --wide-from (default 0.01)")
    t.add_argument("--description-weight", type=float, default=1.0,
                   help="--wide-from: each description counts this many titles in the loss (default 1)")
    t.add_argument("--replaces", type=Path,
                   help="weights folder of the classifier this one replaces, for its card (default: the shipped)")
    t.add_argument("--limit", type=int, help="at most this many texts per split (quick runs)")
    t.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    t.add_argument("--time-budget", type=float,
                   help="stop each model after this many seconds (the schedule ends then; keeps the best)")
    t.add_argument("--device")
    t.set_defaults(run=run_train)

    e = sub.add_parser("evaluate-text", help="val accuracy per task and class, AE token accuracy, BoW baseline")
    e.add_argument("--data", required=True, type=Path, help="folder holding text/ (or text/ itself)")
    e.add_argument("--weights")
    e.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    e.add_argument("--no-baseline", action="store_true", help="skip the bag-of-words baseline")
    e.add_argument("--threads", type=int)
    e.add_argument("--device")
    e.set_defaults(run=run_evaluate)


def _stdin_batches(stream, size: int):
    """Lists of lines from stdin: as many as are ready, at most `size`, without waiting for more.

    A reader thread fills a queue, so a pipe of thousands of lines goes through in full
    batches while someone typing one line at a time gets each answer at once."""
    lines: queue.Queue = queue.Queue(maxsize=size * 4)
    done = object()

    def read():
        for raw in stream:
            lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        lines.put(done)

    threading.Thread(target=read, daemon=True).start()
    while True:
        first = lines.get()
        if first is done:
            return
        batch = [first]
        while len(batch) < size:
            try:
                item = lines.get_nowait()
            except queue.Empty:
                break
            if item is done:
                yield batch
                return
            batch.append(item)
        yield batch


def _readable(record: dict) -> str:
    lines = [record["text"] if record["text"].strip() else repr(record["text"])]
    if "error" in record:
        return lines[0] + f"\n  error: {record['error']}"
    for head in ("subject", "style"):
        if head in record:
            lines.append(f"  {head:<8} " + ", ".join(f"{n} {p:.0%}" for n, p in record[head][:3]))
    notes = [part for part in record.get("note", "").split("; ") if part]
    if record.get("unsure"):
        # the note says why ("unsure: ..."); printed on its own line, after the labels it doubts
        why = [part.removeprefix("unsure: ") for part in notes if part.startswith("unsure: ")]
        lines.append(f"  {'unsure':<8} " + (why[0] if why else "the labels are a guess"))
    if "reconstruction" in record:
        lines.append(f"  {'rebuilt':<8} {record['reconstruction']}")
    notes = [part for part in notes if not part.startswith("unsure: ")]
    if notes:
        lines.append(f"  {'note':<8} {'; '.join(notes)}")
    return "\n".join(lines)


def run_predict(args) -> int:
    from artlab.checkpoints import WeightsError
    from artlab.inference.text import TextModels

    _set_threads(args.threads)
    try:
        models = TextModels(args.weights, args.device, autoencoder=not args.no_reconstruct)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.texts:
        batches = (args.texts[i:i + STDIN_BATCH] for i in range(0, len(args.texts), STDIN_BATCH))
    else:
        batches = _stdin_batches(sys.stdin.buffer, STDIN_BATCH)
    failed = 0
    for batch in batches:
        out = []
        for record in models.analyze(batch):
            failed += "error" in record
            out.append(json.dumps(record, ensure_ascii=False) if args.json else _readable(record))
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()
    return 1 if failed else 0


def _set_threads(threads):
    if threads:
        import torch
        torch.set_num_threads(threads)


def _train_classifier(args, command: str) -> dict:
    """Stage 1 (GRU + wide part on fit), or with --wide-from stage 2 (the wide part again, GRU fixed)."""
    from artlab.paths import SHIPPED_WEIGHTS_DIR
    from artlab.training.text import train_classifier
    from artlab.training.text_wide import retrain_wide

    replaces = args.replaces or SHIPPED_WEIGHTS_DIR
    if args.wide_from:
        return retrain_wide(args.data, args.wide_from, args.out, epochs=args.epochs, lr=args.wide_lr,
                            wide_buckets=args.wide_buckets, description_weight=args.description_weight, device=args.device or "cpu", command=command, replaces=replaces)
    return train_classifier(args.data, args.out, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                            wide_buckets=1 << 16 if args.wide_buckets is None else args.wide_buckets, refit=args.refit, replaces=replaces,
                            limit=args.limit, device=args.device, command=command, time_budget_s=args.time_budget)


def run_train(args) -> int:
    from artlab.training.text import train_autoencoder

    _set_threads(args.threads)
    command = args.command_line
    if args.model in ("classifier", "all"):
        card = _train_classifier(args, command)
        print(json.dumps({split: {k: r["accuracy"] for k, r in tasks.items()}
                          for split, tasks in card["metrics"].items()}))
    if args.model in ("autoencoder", "all"):
        card = train_autoencoder(args.data, args.out, epochs=args.ae_epochs, batch_size=args.batch,
                                 lr=args.ae_lr, init=args.ae_init, time_budget_s=args.time_budget,
                                 salad=args.ae_salad, code_dim=args.ae_code, hidden=args.ae_hidden,
                                 decoder_hidden=args.ae_decoder, slots=args.ae_slots,
                                 limit=args.limit, device=args.device, command=command)
        print(json.dumps(card["metrics"]["val"]))
    return 0


def run_evaluate(args) -> int:
    from artlab.checkpoints import WeightsError
    from artlab.training.evaluate import evaluate_text, print_text_report

    _set_threads(args.threads)
    try:
        report = evaluate_text(args.data, args.weights, baseline=not args.no_baseline, device=args.device)
    except (WeightsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_text_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
