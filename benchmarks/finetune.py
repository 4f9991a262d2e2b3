"""Benchmark: few-shot fine-tuning (issue 15), beside the base model's zero-shot answer and the old recipe.

    python benchmarks/finetune.py [--sets a,b,c,d] [--seeds 3] [--per-class 30] [--test 60] [--selection]

Sets of three classes, 30 curator images each from TRAIN:
  a  baroque, impressionism, symbolism         (styles the base knows)
  b  symbolism, post_impressionism, art_nouveau (styles the base confuses)
  c  genre_scene, history_religious, portrait  (the base's most confused subjects, named as its labels)
  d  the same subjects as "daily_life", "sacred_stories", "people": classes the base cannot match by name
Test images: `--test` per class from VAL (the reported figures), or with `--selection` from TRAIN,
disjoint from every curator image (for making choices; val is then never read).

Each seed draws other curator images. For each set and seed: the default recipe ("fewshot"), today's
(before issue 15: "linear", a new head from noise with one augmented view), and the base model's
zero-shot answer (its own head restricted to the set's classes) where the class names are base labels.
Wall time is finetune() in this process (what the Train tab runs), images read and model loaded included.
Both recipes keep the base trunk frozen on a CPU, so the test images' neck vectors are computed once
per set with the base model as `predict` runs it on a CPU (BatchNorm folded, fp32), and each new head
scores those (checked: the trained models' trunks equal the base's). Writes JSON.
"""

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETS = {
    "a": ("styles", {"baroque": "baroque", "impressionism": "impressionism", "symbolism": "symbolism"}),
    "b": ("styles", {"symbolism": "symbolism", "post_impressionism": "post_impressionism",
                     "art_nouveau": "art_nouveau"}),
    "c": ("subjects", {"genre_scene": "genre_scene", "history_religious": "history_religious",
                       "portrait": "portrait"}),
    "d": ("subjects", {"daily_life": "genre_scene", "sacred_stories": "history_religious", "people": "portrait"}),
}
SELECTION_SEED = 15      # splits each train folder into a curator pool and a test pool, the same every run


def image_lists(root: Path, name: str, selection: bool, per_class: int, test: int, seed: int, unseen: bool = False):
    """(curator images, test images) of class `name` under `root` (styles or subjects): curator from
    train; test from val, or with `selection` from the other half of train. With `unseen`, both from
    val, disjoint halves: pictures the base never trained on, as a curator's own are (the base has
    learned train by heart: 0.99 on it, so curator images from train cannot show what training adds)."""
    train = sorted((root / "train" / name).glob("*.jpg"))
    if selection or unseen:
        folder = sorted((root / ("val" if unseen else "train") / name).glob("*.jpg"))
        folder = random.Random(SELECTION_SEED).sample(folder, len(folder))
        half = len(folder) // 2
        pool, tests = folder[:half], sorted(folder[half:])
    else:
        pool, tests = train, sorted((root / "val" / name).glob("*.jpg"))
    curator = random.Random(seed).sample(pool, min(per_class, len(pool)))
    return curator, random.Random(0).sample(tests, min(test, len(tests)))


def run_recipe(data: Path, out: Path, recipe: str, views: int, device) -> tuple[dict, float, float]:
    """The card, the wall time and the CPU time (all threads: on a busy machine, CPU seconds over the
    cores is about what the wall time would be on an idle one)."""
    from artlab.training.finetune import FinetuneConfig, finetune

    started, cpu = time.perf_counter(), time.process_time()
    card = finetune(data, out, config=FinetuneConfig(recipe=recipe, views=views, device=device))
    return card, time.perf_counter() - started, time.process_time() - cpu


def test_necks(paths: list[Path], device) -> tuple:
    """The base model's neck vectors of the test images, plain and mirror, as predict runs it on a CPU
    (the ONNX engine: BatchNorm folded, fp32)."""
    import torch

    from artlab.data.folders import load_images
    from artlab.data.transforms import resize_for_eval
    from artlab.inference.image import load_classifier
    from artlab.models.backbone import fuse_batchnorm

    model, card = load_classifier(None, device)
    fuse_batchnorm(model.backbone)
    size = int(card["input_size"])
    tensors, _ = load_images(paths, size)
    keep = [i for i, t in enumerate(tensors) if t is not None]
    images = torch.stack([tensors[i] for i in keep])
    views = []
    with torch.inference_mode():
        for flip in (False, True):
            chunks = []
            for i in range(0, len(images), 64):
                x = resize_for_eval(images[i:i + 64].to(next(model.parameters()).device), size)
                x = x.flip(3) if flip else x
                chunks.append(model.features(x.contiguous(memory_format=torch.channels_last))[1].float().cpu())
            views.append(torch.cat(chunks))
    return torch.stack(views), keep, model


def head_accuracy(weight, bias, necks, target, columns=None) -> float:
    """Accuracy of a linear head on the necks, softmax averaged over plain and mirror (predict's TTA);
    `columns`: keep only these outputs (a base head restricted to the set's classes)."""
    import torch

    with torch.no_grad():
        probs = sum((n @ weight.float().T + bias.float()).softmax(1) for n in necks) / len(necks)
    if columns is not None:
        probs = probs[:, columns]
    return float((probs.argmax(1) == target).float().mean())


def score(model_dir: Path, base_model, necks, target) -> float:
    """The fine-tuned model's "labels" head on the base's test necks, after checking its trunk is the base's."""
    from artlab.inference.image import load_classifier

    model, card = load_classifier(model_dir, "cpu")
    base_state = {k: v.float().cpu() for k, v in base_model.state_dict().items()}
    for name, tensor in model.state_dict().items():
        if name.startswith(("neck.", "texture.")) and not tensor.float().allclose(base_state[name], atol=1e-3):
            raise SystemExit(f"{model_dir}: {name} differs from the base model's")
    if card["training"]["depth"] != "head":
        raise SystemExit(f"{model_dir}: a deeper fine-tune; this benchmark needs the frozen path (a CPU)")
    head = model.heads["labels"]
    return head_accuracy(head.weight.detach(), head.bias.detach(), necks, target)


def zero_shot(classes: list[str], base_card: dict, base_model, necks, target) -> tuple[str, float] | None:
    """The base head whose labels name every class, and its accuracy restricted to them (or None)."""
    from artlab.training.fewshot import match_base_labels, zero_shot_head

    matches = match_base_labels(classes, base_card["labels"])
    head = zero_shot_head(matches)
    if head is None:
        return None
    layer = base_model.heads[head]
    return head, head_accuracy(layer.weight, layer.bias, necks, target, [index for _, index in matches])


def run_set(key: str, args, tmp: Path) -> dict:
    """One set: the test necks once, then each seed's curator images through both recipes."""
    import torch

    from artlab.checkpoints import Checkpoint, CLASSIFIER_NAME

    kind, names = SETS[key]
    classes = sorted(names)                      # finetune orders classes by folder name
    tests = [(path, i) for i, c in enumerate(classes)
             for path in image_lists(args.data / kind, names[c], args.selection, args.per_class,
                                     args.test, 0, args.unseen)[1]]
    necks, keep, base_model = test_necks([p for p, _ in tests], args.device)
    target = torch.tensor([tests[i][1] for i in keep])
    base_card = Checkpoint.find(None, CLASSIFIER_NAME).card
    zs = zero_shot(classes, base_card, base_model, necks, target)
    runs = []
    for seed in range(args.seeds):
        data = tmp / f"{key}{seed}"
        for c in classes:
            (data / c).mkdir(parents=True)
            for path in image_lists(args.data / kind, names[c], args.selection, args.per_class,
                                    args.test, seed, args.unseen)[0]:
                shutil.copy(path, data / c / path.name)
        run = {"seed": seed}
        for label, recipe, views in (("fewshot", "fewshot", args.views), ("today", "linear", 1)):
            card, wall, cpu = run_recipe(data, tmp / f"{key}{seed}{label}", recipe, views, args.device)
            run[label] = {"test_accuracy": round(score(tmp / f"{key}{seed}{label}", base_model, necks, target), 4),
                          "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                          "cv_or_held_out_accuracy": card["metrics"]["val"]["accuracy"],
                          "head_start": card["training"].get("head_start"),
                          "epochs_kept": card["training"].get("head_epochs_kept")}
        runs.append(run)
        print(f"  set {key} seed {seed}: fewshot {run['fewshot']['test_accuracy']:.3f} "
              f"({run['fewshot']['wall_s']:.1f} s, epochs kept {run['fewshot']['epochs_kept']}), "
              f"today {run['today']['test_accuracy']:.3f} ({run['today']['wall_s']:.1f} s)"
              + (f", zero-shot {zs[1]:.3f}" if zs else ""), flush=True)
    return summarise(key, classes, names, runs, zs, len(target))


def summarise(key, classes, names, runs, zs, tests) -> dict:
    def mean(label, field):
        return round(sum(r[label][field] for r in runs) / len(runs), 4)

    result = {"classes": classes, "images": {c: names[c] for c in classes}, "test_images": tests,
              "fewshot": mean("fewshot", "test_accuracy"), "today": mean("today", "test_accuracy"),
              "fewshot_min": min(r["fewshot"]["test_accuracy"] for r in runs),
              "fewshot_wall_s": mean("fewshot", "wall_s"), "today_wall_s": mean("today", "wall_s"),
              "fewshot_cpu_s": mean("fewshot", "cpu_s"), "today_cpu_s": mean("today", "cpu_s"),
              "zero_shot": round(zs[1], 4) if zs else None, "zero_shot_head": zs[0] if zs else None,
              "runs": runs}
    print(f"set {key} {'/'.join(classes)}: fewshot {result['fewshot']:.3f} (min {result['fewshot_min']:.3f}, "
          f"{result['fewshot_wall_s']:.1f} s wall, {result['fewshot_cpu_s']:.1f} s CPU) | today's recipe "
          f"{result['today']:.3f} ({result['today_wall_s']:.1f} s wall, {result['today_cpu_s']:.1f} s CPU) | zero-shot "
          + (f"{result['zero_shot']:.3f} ({zs[0]} head)" if zs else "- (not base labels)"), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ARTLAB_DATA", ROOT.parent / "shared/data")))
    parser.add_argument("--sets", default="a,b,c,d")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--test", type=int, default=60, help="test images per class (fewer where a class has fewer)")
    parser.add_argument("--selection", action="store_true",
                        help="test images from train, disjoint from the curator images (val is not read)")
    parser.add_argument("--unseen", action="store_true",
                        help="curator AND test images from val, disjoint halves: pictures the base never saw "
                             "(subjects' val has 30 a class: 15 curator, 15 test)")
    parser.add_argument("--views", type=int, help="augmented views of the few-shot recipe (default: its own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from common import machine, write_json

    from artlab.training.finetune_stages import FinetuneConfig

    logging.basicConfig(level=logging.WARNING)
    args.views = FinetuneConfig().views if args.views is None else args.views
    info = machine(args.device)
    if not (args.data / "styles" / "train").is_dir():
        print(f"error: {args.data}/styles/train not found (pass --data)", file=sys.stderr)
        return 2
    split = ("selection (test images from train)" if args.selection else
             "val, curator images from val too (the other half)" if args.unseen else "val")
    print(f"{args.per_class} curator images per class from {'val' if args.unseen else 'train'}; test: {split}, {args.test} per class; "
          f"{args.seeds} seeds; few-shot views {args.views}", flush=True)
    with tempfile.TemporaryDirectory(prefix="artlab-bench-ft-") as tmp:
        results = {key: run_set(key, args, Path(tmp)) for key in args.sets.split(",")}
    report = {"benchmark": "finetune", "split": "selection" if args.selection else "unseen" if args.unseen else "val",
              "per_class": args.per_class, "test_per_class": args.test, "seeds": args.seeds,
              "views": args.views, "sets": results, "targets": {"a": ">= 0.85", "a, b": ">= zero-shot",
                                                                "d": ">= today's recipe"},
              "machine": {**info, "cpu_count": os.cpu_count(), "device": args.device,
                          "load_average": os.getloadavg()}}
    name = ("finetune_selection.json" if args.selection else "finetune_unseen.json" if args.unseen
            else "finetune.json")
    write_json(report, args.json or ROOT / "runs" / "benchmarks" / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
