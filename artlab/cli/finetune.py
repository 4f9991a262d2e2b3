"""Fine-tuning commands: finetune, models, export."""

import json
import sys
from pathlib import Path


def register(sub):
    f = sub.add_parser("finetune", help="train a model for your own classes (one sub-folder per class)",
                       description="Train a new 'labels' head (and, with enough data, the last backbone blocks) "
                                   "for the classes in DATA_DIR, starting from the art model: folders named like "
                                   "its styles or subjects start from its own answer, the others from their "
                                   "images' mean, and cross-validation on your images picks how long to train. "
                                   "2-50 classes, at least 5 images each, at most 5,000 images in all.")
    f.add_argument("data", type=Path, metavar="DATA_DIR", help="one sub-folder of images per class")
    f.add_argument("--out", type=Path, help="output model folder (default: a new version in the models directory)")
    f.add_argument("--name", help="model name in the models directory (default: the DATA_DIR folder name)")
    f.add_argument("--models", help="models directory (default: $ARTLAB_MODELS or <user data>/models; "
                                     "`python -m artlab settings` shows it)")
    f.add_argument("--activate", action="store_true", help="make the new model the active one")
    f.add_argument("--base", help="weights to start from (default: the shipped art model)")
    f.add_argument("--epochs", type=int, default=60, help="head epochs on cached features (default 60)")
    f.add_argument("--deep-epochs", type=int, default=8, help="image epochs when fine-tuning blocks (default 8)")
    f.add_argument("--lr", type=float, default=3e-3, help="head learning rate; blocks get a tenth (default 3e-3)")
    f.add_argument("--batch", type=int, default=32)
    f.add_argument("--depth", default="auto",
                   help="'head', 'auto' (on a GPU, the last blocks too with >= 100 training images per class), "
                        "or a number of last backbone blocks to fine-tune")
    # Defaults of None are FinetuneConfig's own (this module imports no torch until a command runs).
    f.add_argument("--views", type=int,
                   help="augmented views per image in the feature cache, besides the plain one and its mirror "
                        "(default 1; more: a little more robust, slower)")
    f.add_argument("--recipe", choices=("fewshot", "linear"), default="fewshot",
                   help="fewshot (default): a head that starts from the base model's answer or the class means, "
                        "cross-validated on your images; linear (the recipe before issue 15): a head from noise, early-stopped "
                        "on a held-out share")
    f.add_argument("--folds", type=int, help="cross-validation folds of the fewshot recipe (default 5)")
    f.add_argument("--val-fraction", type=float, default=0.2,
                   help="held-out share of each class (linear recipe, deeper fine-tunes)")
    f.add_argument("--patience", type=int, default=10, help="early stopping patience in epochs")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device")
    f.add_argument("--json", action="store_true", help="print the card's metrics as JSON")
    f.set_defaults(run=run_finetune)

    m = sub.add_parser("models", help="list, activate, roll back or delete fine-tuned models")
    m.add_argument("action", nargs="?", default="list",
                   choices=["list", "activate", "rollback", "delete", "shipped", "import"],
                   help="list (default); activate NAME[/vN]; rollback; delete NAME/vN; shipped (deactivate); "
                        "import MODEL.zip --name NAME (a zip of art_classifier.safetensors + .json; "
                        "pickles are refused)")
    m.add_argument("key", nargs="?", metavar="NAME[/vN]|ZIP")
    m.add_argument("--name", help="with import: the model's name (default: the zip's name)")
    m.add_argument("--models", help="models directory (default: $ARTLAB_MODELS or <user data>/models; "
                                     "`python -m artlab settings` shows it)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(run=run_models)

    e = sub.add_parser("export", help="export a classifier folder to ONNX")
    e.add_argument("--weights", help="model folder (default: the shipped weights)")
    e.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    e.add_argument("--check", nargs="*", metavar="IMAGE",
                   help="compare onnxruntime with PyTorch on these images (needs onnxruntime)")
    e.set_defaults(run=run_export)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_finetune(args) -> int:
    import logging

    from tqdm import tqdm

    from artlab.checkpoints import WeightsError
    from artlab.store.registry import Registry
    from artlab.training.finetune import FinetuneConfig, FinetuneError, finetune
    from artlab.training.metrics import format_confusion

    optional = {k: v for k, v in (("views", args.views), ("folds", args.folds)) if v is not None}
    config = FinetuneConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch, depth=args.depth,
                            deep_epochs=args.deep_epochs, val_fraction=args.val_fraction, patience=args.patience,
                            seed=args.seed, device=args.device, recipe=args.recipe, **optional)
    registry = Registry(args.models)
    epoch_log = logging.getLogger("artlab.training.loop")
    level = epoch_log.level
    if not args.verbose:  # one line per epoch is too chatty for a head that runs dozens of epochs a second
        epoch_log.setLevel(logging.WARNING)
    bar = tqdm(total=100, desc="fine-tuning", leave=False, disable=None, bar_format="{desc}: {percentage:3.0f}%|{bar}|")

    def progress(fraction, text):
        bar.set_description_str(text)
        bar.update(int(fraction * 100) - bar.n)

    out = args.out
    try:
        out = args.out or registry.next_path(args.name or args.data.resolve().name)
        card = finetune(args.data, out, base=args.base, config=config, progress=progress,
                        command=args.command_line)
        key = None
        if args.activate:
            if args.out:
                return _fail("--activate works with models in the models directory (leave out --out)")
            key = registry.activate(f"{out.parent.name}/{out.name}")
    except (FinetuneError, WeightsError) as e:
        return _fail(str(e))
    except OSError as e:  # disk full, read-only models directory: the previous models are untouched
        return _fail(f"could not write the model {out or ''} ({e.strerror or e}); "
                     f"the previous models are unchanged")
    finally:
        bar.close()
        epoch_log.setLevel(level)
    val = card["metrics"]["val"]
    if args.json:
        print(json.dumps({"out": str(out), "classes": card["classes"], "val": val,
                          "stopped": card["training"]["stopped_by_user"]}, ensure_ascii=False))
        return 0
    print(f"model: {out}" + (f" (active as {key})" if key else ""))
    print(f"held-out accuracy: {val['accuracy']:.1%} on {val['count']} images"
          + (" (stopped early by you: best model so far)" if card["training"]["stopped_by_user"] else ""))
    for name, acc in val["per_class"].items():
        print(f"  {name:<24} {acc:.0%}" if acc is not None else f"  {name:<24} -")
    print(format_confusion(val))
    for problem in card["data"]["skipped"]:
        print(f"skipped {problem}", file=sys.stderr)
    if card["data"]["imbalance_warning"]:
        print(f"warning: {card['data']['imbalance_warning']}", file=sys.stderr)
    return 0


def import_into(registry, upload: Path, name: str | None) -> str:
    """A model zip into the next version of `name`, checked before it is listed."""
    from artlab.files import atomic_folder
    from artlab.store.uploads import import_model

    if not upload.is_file():
        raise OSError(f"{upload}: no such file")
    target = registry.next_path(name or upload.stem)
    try:
        with atomic_folder(target) as staging:
            import_model(upload, staging)
    except BaseException:
        if target.parent.is_dir() and not any(target.parent.iterdir()):
            target.parent.rmdir()
        raise
    return f"{target.parent.name}/{target.name}"


def run_models(args) -> int:
    from artlab.checkpoints import WeightsError
    from artlab.store.registry import Registry
    from artlab.store.uploads import UploadError

    registry = Registry(args.models)
    try:
        if args.action in ("activate", "delete") and not args.key:
            return _fail(f"models {args.action} needs NAME or NAME/vN")
        if args.action == "activate":
            print(f"active: {registry.activate(args.key)}")
        elif args.action == "delete":
            if "/" not in args.key:  # never delete "the latest" by accident: name the version
                return _fail("models delete needs NAME/vN (see `python -m artlab models`)")
            print(f"deleted: {registry.delete(args.key)}")
        elif args.action == "rollback":
            print(f"active: {registry.rollback() or 'the shipped model'}")
        elif args.action == "import":
            if not args.key:
                return _fail("models import needs a model zip")
            print(f"imported: {import_into(registry, Path(args.key), args.name)}")
        elif args.action == "shipped":
            registry.deactivate()
            print("active: the shipped model")
    except (WeightsError, UploadError, OSError) as e:
        return _fail(str(e))
    if args.action != "list":
        return 0
    entries = registry.entries()
    if args.json:
        print(json.dumps({"models": str(registry.root), "active": registry.active(), "entries": entries},
                         ensure_ascii=False))
        return 0
    if not entries:
        print(f"no fine-tuned models in {registry.root} (active: the shipped model)")
        return 0
    print(f"models in {registry.root}:")
    for entry in entries:
        mark = "*" if entry["active"] else " "
        if "error" in entry:
            print(f"{mark} {entry['key']:<28} unreadable: {entry['error']}")
            continue
        acc = f"{entry['val_accuracy']:.1%}" if entry["val_accuracy"] is not None else "-"
        classes = ", ".join(entry["classes"][:6]) + (" ..." if len(entry["classes"]) > 6 else "")
        print(f"{mark} {entry['key']:<28} {entry['date'] or '':<10}  val acc {acc:>6}  "
              f"{entry['images'] or '?'} images  [{classes}]")
    if not registry.active():
        print("active: the shipped model")
    return 0


def run_export(args) -> int:
    from artlab.checkpoints import WeightsError
    from artlab.inference.export import export_onnx, onnx_parity

    try:
        info = export_onnx(args.weights, args.onnx)
    except WeightsError as e:
        return _fail(str(e))
    print(f"wrote {info['onnx']}: input 'image' N x 3 x {info['input_size']} x {info['input_size']} in [-1, 1]; "
          f"outputs {', '.join(info['heads'])}, embedding")
    if args.check is not None:
        import torch

        from artlab.images import (
            ImageError,
            letterbox,
            load_image,
            normalize,
            to_uint8_tensor,
        )

        try:
            images = [to_uint8_tensor(letterbox(load_image(p), info["input_size"])) for p in args.check]
        except ImageError as e:
            return _fail(str(e))
        x = normalize(torch.stack(images)) if images else torch.rand(2, 3, info["input_size"],
                                                                       info["input_size"]) * 2 - 1
        try:
            diff = onnx_parity(args.weights, args.onnx, x)
        except ImportError:
            return _fail("onnxruntime is not installed (pip install onnxruntime) to check parity")
        print(f"largest difference onnxruntime vs PyTorch: {diff:.2e}")
        return 0 if diff <= 1e-4 else 1
    return 0
