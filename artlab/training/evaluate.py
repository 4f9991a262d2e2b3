"""Evaluation, in one place: the image classifier on class folders (`evaluate`), the text models
on the by-painting validation split (`evaluate-text`), and the reports that training recipes,
soups and fine-tuning use to pick their best epoch and fill their cards."""

import logging
import re
from pathlib import Path

import numpy as np
import torch

from artlab.checkpoints import CLASSIFIER_NAME, Checkpoint, WeightsError
from artlab.data.folders import SPLIT_PARTS, ImageSet, load_class_folders
from artlab.data.text import (
    SPLITS,
    TEXT_TASKS,
    TextSet,
    load_text_data,
    task_rows,
)
from artlab.data.transforms import resize_for_eval
from artlab.device import pick_device
from artlab.inference.calibration import calibration_for
from artlab.inference.engine import OnnxArtModels, engine_for
from artlab.inference.image import classifier_probs, load_classifier_for_inference
from artlab.inference.text import (
    AE_MAX_TOKENS,
    AE_PIECE_WORDS,
    classify_ids,
    reconstruct_ids,
    reconstruct_texts,
)
from artlab.labels import IMAGE_HEADS, TEXT_HEADS
from artlab.models.autoencoder import psnr
from artlab.tokenizer import PAD_ID, normalize, normalize_words
from artlab.training.baselines import bow_baseline
from artlab.training.metrics import classification_report, format_confusion
from artlab.training.metrics_calibration import expected_calibration_error

log = logging.getLogger(__name__)


def _heads_for(folder: Path, card_labels: dict) -> list[str]:
    """Which of the model's heads a folder of class sub-folders is labelled for."""
    names = {p.name for p in folder.iterdir() if p.is_dir()}
    return [head for head, labels in card_labels.items() if names and names <= set(labels)]


def collect(folder: Path, card_labels: dict, split: str) -> list[tuple[str, Path]]:
    """(head, class-folder root) pairs found at `folder` (for "selection" and "fit", the train
    folders: evaluate_folder keeps that part of them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = [(head, folder) for head in _heads_for(folder, card_labels)]
    split = "train" if split in SPLIT_PARTS else split
    for child in ("styles", "subjects"):
        if (folder / child / split).is_dir():
            found += [(head, folder / child / split) for head in _heads_for(folder / child / split, card_labels)]
    if not found:
        raise ValueError(f"{folder}: no class folders matching the model's labels ({card_labels})")
    return found


def evaluate_folder(folder, weights=None, split: str = "val", tta: bool = True, device=None,
                    size: int | None = None) -> dict:
    """Through the engine predictions use (inference.engine), so the accuracy it reports is the one
    users get; with the card's calibration, also the expected calibration error before and after it
    and the share of pictures called unsure. `size`: test at another input size than the card's, to
    compare (with torch: the ONNX graph is made for the card's size)."""
    model, card = load_classifier_for_inference(weights, device)
    device = next(model.parameters()).device
    size = size or card["input_size"]
    calibration = calibration_for(Checkpoint.find(weights, CLASSIFIER_NAME))
    onnx = (OnnxArtModels(weights, autoencoder=False, tta=tta)
            if size == card["input_size"] and engine_for(device) == "onnx" else None)
    report = {"weights": card.get("name"), "split": split, "tta": tta, "input_size": size, "engine": "onnx" if onnx else "torch",
              "precision": "float32" if onnx else str(model.trunk_dtype).removeprefix("torch."),
              "calibration": (card.get("calibration") or {}).get("chosen_on"), "heads": {}}
    pooled = bool(calibration.needs)
    for head, root in collect(Path(folder), card["labels"], split):
        labels = tuple(card["labels"][head])
        # Decoded straight to the input size, letterboxed as the app and `predict` do (not via the
        # 224 px training cache): subjects' 320 px originals scored 0.893 through the cache, 0.867 as users get them.
        part = split if split in SPLIT_PARTS and root != Path(folder) else None
        data: ImageSet = load_class_folders(root, head, labels, size=size, part=part)
        raw = (onnx_outputs(onnx, data.images, size, pooled) if onnx else
               {k: v.numpy() for k, v in classifier_probs(model, data.images, size, device, tta, pooled=pooled).items()})
        calibrated = calibration.apply(raw)
        truth = data.labels[head].numpy()
        result = classification_report(torch.from_numpy(calibrated[head].argmax(1)), data.labels[head], labels)
        result["ece_uncalibrated"] = round(expected_calibration_error(raw[head], truth), 4)
        result["ece"] = round(expected_calibration_error(calibrated[head], truth), 4)
        if "unsure" in calibrated:
            result["unsure"] = round(float(calibrated["unsure"].mean()), 4)
        result["data"], result["skipped"] = str(root), data.skipped
        report["heads"][head] = result
    return report


def onnx_outputs(onnx: OnnxArtModels, images: torch.Tensor, size: int, pooled: bool, batch_size: int = 64) -> dict:
    """Uncalibrated outputs through the ONNX engine (the same resizing, the same mirror averaging)."""
    outs = [onnx.probabilities(resize_for_eval(images[i:i + batch_size], size).numpy(), calibrated=False, pooled=pooled)
            for i in range(0, len(images), batch_size)]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}


def print_report(report: dict) -> None:
    print(f"{report['weights']} on {report.get('split', 'val')}: input {report['input_size']} px, mirror TTA {'on' if report['tta'] else 'off'}, "
          f"{report.get('engine', 'torch')} engine, convolutions in {report['precision']} "
          f"(ARTLAB_ENGINE=torch|onnx, ARTLAB_PRECISION=fp32|bf16 choose)")
    if report.get("calibration"):
        print(f"calibration (the card's) chosen on: {report['calibration']}")
    for head, result in report["heads"].items():
        print(f"\n{head}: top-1 accuracy {result['accuracy']:.4f} on {result['count']} images ({result['data']})")
        print(f"  expected calibration error {result['ece']:.4f} (uncalibrated {result['ece_uncalibrated']:.4f})"
              + (f"; unsure on {result['unsure']:.1%}" if "unsure" in result else ""))
        for name, acc in result["per_class"].items():
            print(f"  {name:<20} {acc if acc is None else f'{acc:.3f}'}")
        print("confusion (rows: true, columns: predicted)")
        print(format_confusion(result))
        for problem in result["skipped"]:
            print(f"  skipped {problem}")


def classifier_report(model, val: ImageSet, size: int, device, tta: bool = True,
                      heads: dict[str, tuple[str, ...]] = IMAGE_HEADS) -> dict:
    """Accuracy, per-class accuracy and confusion per head on decoded images (-1: no label for that head)."""
    probs = classifier_probs(model, val.images, size, device, tta=tta)
    out = {}
    for head, labels in heads.items():
        if head in probs and (val.labels[head] >= 0).any():
            out[head] = classification_report(probs[head].argmax(1), val.labels[head], labels)
    return out


@torch.inference_mode()
def mean_psnr(model, x: torch.Tensor, device, batch_size: int = 256) -> float:
    model.eval()
    values = []
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size].to(device)
        values.append(psnr(model(chunk), chunk).cpu())
    return torch.cat(values).mean().item() if values else 0.0


# ------------------------------------------------------------------ text models

def text_classifier_report(model, tokenizer, val: TextSet, device, max_tokens: int = 512) -> dict:
    """Accuracy, per-class accuracy and confusion for each task in TEXT_TASKS."""
    sequences = [tokenizer.encode(t, max_tokens) or [PAD_ID] for t in val.texts]
    probs = classify_ids(model, sequences, device, texts=val.texts)
    report = {}
    for name, head, kinds in TEXT_TASKS:
        keep = task_rows(val, head, kinds)
        if keep:
            index = torch.tensor(keep)
            report[name] = classification_report(probs[head][index].argmax(1), val.labels[head][index],
                                                 TEXT_HEADS[head])
    return report


def token_accuracy(predicted: list[list[int]], target: list[list[int]]) -> float:
    """Position-wise matches over the longer of the two sequences, summed over all texts
    (a missing or extra token counts as a miss)."""
    hits = sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(predicted, target))
    total = sum(max(len(p), len(t)) for p, t in zip(predicted, target))
    return hits / total if total else 0.0


def clean_short_titles(texts: TextSet, max_words: int = 12) -> list[str]:
    """Distinct titles (WikiArt and SemArt) of at most max_words words: what the autoencoder is scored on."""
    seen, out = set(), []
    for text, kind in zip(texts.texts, texts.kinds):
        key = normalize(text)
        if kind != "description" and key and key not in seen and len(normalize_words(text)) <= max_words:
            seen.add(key)
            out.append(text)
    return out


def text_autoencoder_report(model, tokenizer, titles: list[str], device) -> dict:
    targets = [tokenizer.encode(t, AE_MAX_TOKENS) for t in titles]
    rebuilt = reconstruct_ids(model, targets, device)
    exact = sum(p == t for p, t in zip(rebuilt, targets)) / max(1, len(targets))
    return {"token_accuracy": round(token_accuracy(rebuilt, targets), 4), "exact_match": round(exact, 4),
            "count": len(targets)}


LENGTH_BUCKETS = ((1, 5), (6, 12), (13, 25), (26, 50), (51, 100))   # in words
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def length_report_texts(texts: TextSet, max_words: int = 100, titles: int | None = 3000) -> list[str]:
    """Texts of 1 to `max_words` words for the autoencoder's report by length: the first `titles`
    distinct titles (None: all; 0: none; 3,000 keep evaluate-text quick on a busy CPU) and, from each
    description, its first 1, 2, 3... sentences while within `max_words`."""
    out = clean_short_titles(texts, max_words)[:titles] if titles != 0 else []
    for text, kind in zip(texts.texts, texts.kinds):
        if kind != "description":
            continue
        sentences = SENTENCE_END.split(text.strip())
        for end in range(1, len(sentences) + 1):
            prefix = " ".join(sentences[:end])
            if len(normalize_words(prefix)) > max_words:
                break
            out.append(prefix)
    return out


def autoencoder_length_report(model, tokenizer, texts: list[str], device, piece_words: int = AE_PIECE_WORDS) -> dict:
    """Token accuracy by length (LENGTH_BUCKETS, words): "whole" rebuilds each text cut to AE_MAX_TOKENS
    (as predict-text did before), "pieces" piece by piece (reconstruct_texts), each against all of its tokens.

    Position-wise matches over the longer sequence (token_accuracy), for "pieces" within each piece."""
    targets = [tokenizer.encode(t) for t in texts]
    whole = reconstruct_ids(model, [t[:AE_MAX_TOKENS] for t in targets], device)
    pieces = reconstruct_texts(model, tokenizer, texts, device, piece_words, max_pieces=None)
    sums = {bucket: [0, 0, 0, 0, 0] for bucket in LENGTH_BUCKETS}   # texts, whole hits/total, pieces hits/total
    for text, target, rebuilt, (cut, rebuilt_pieces) in zip(texts, targets, whole, pieces):
        words = len(normalize_words(text))
        bucket = next((b for b in LENGTH_BUCKETS if b[0] <= words <= b[1]), None)
        if bucket is None:
            continue
        row = sums[bucket]
        row[0] += 1
        row[1] += sum(a == b for a, b in zip(rebuilt, target))
        row[2] += max(len(rebuilt), len(target))
        row[3] += sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(rebuilt_pieces, cut))
        row[4] += sum(max(len(p), len(t)) for p, t in zip(rebuilt_pieces, cut))
    return {f"{lo}-{hi} words": {"texts": n, "whole_cut": round(wh / wt, 4) if wt else None,
                                 "pieces": round(ph / pt, 4) if pt else None}
            for (lo, hi), (n, wh, wt, ph, pt) in sums.items()}


def evaluate_text(data_root: Path, weights=None, baseline: bool = True, device=None) -> dict:
    """The shipped (or given) text models on the selection split (carved from train: where choices
    are made) and on the by-painting validation split (measured, never chosen on), and the baseline
    beside each: bag of words trained on fit for selection, on all of train for val."""
    from artlab.inference.text import load_text_autoencoder, load_text_classifier

    device = pick_device(device)
    sets = {split: load_text_data(data_root, split) for split in SPLITS}
    model, tokenizer, card = load_text_classifier(weights, device)
    report = {"data": str(data_root), "splits": {split: len(s) for split, s in sets.items()},
              "classifier_trained_on": card.get("training_data", {}).get("trained_on", "train"),
              "chosen_on": card.get("chosen_on", "val (a card from before the selection split)"),
              "classifier": {split: text_classifier_report(model, tokenizer, sets[split], device)
                             for split in ("selection", "val")}}
    try:
        ae, ae_tokenizer, _ = load_text_autoencoder(weights, device)
        report["autoencoder"] = text_autoencoder_report(ae, ae_tokenizer, clean_short_titles(sets["val"]), device)
        report["autoencoder_by_length"] = {
            "piece_words": AE_PIECE_WORDS,
            **{split: autoencoder_length_report(ae, ae_tokenizer, length_report_texts(sets[split]), device)
               for split in ("selection", "val")}}
    except WeightsError as e:
        log.warning("no text autoencoder: %s", e)
    if baseline:
        report["baseline_bow_logreg"] = {"selection": bow_baseline(sets["fit"], sets["selection"]),
                                         "val": bow_baseline(sets["train"], sets["val"])}
    return report


def print_text_report(report: dict) -> None:
    baseline = report.get("baseline_bow_logreg", {})
    print(f"text models on {report['data']}: splits by painting {report['splits']}")
    print(f"classifier trained on {report['classifier_trained_on']}; chosen on: {report['chosen_on']}")
    print(f"{'split':<10} {'task':<22} {'count':>6} {'model':>7} {'BoW-LR':>7}")
    for split, tasks in report["classifier"].items():
        for task, result in tasks.items():
            base = baseline.get(split, {}).get(task, {}).get("accuracy")
            print(f"{split:<10} {task:<22} {result['count']:>6} {result['accuracy']:>7.4f} "
                  f"{'-' if base is None else format(base, '>7.4f')}")
    for task, result in report["classifier"]["val"].items():
        print(f"\nval {task}: per-class accuracy")
        for name, value in result["per_class"].items():
            base = baseline.get("val", {}).get(task, {}).get("per_class", {}).get(name)
            print(f"  {name:<20} {'-' if value is None else format(value, '.4f'):>7}   "
                  f"(BoW-LR {'-' if base is None else format(base, '.4f')})")
        print(format_confusion(result))
    if "autoencoder" in report:
        ae = report["autoencoder"]
        print(f"\ntext autoencoder on {ae['count']} clean val titles of <= 12 words: "
              f"token accuracy {ae['token_accuracy']:.4f}, exact match {ae['exact_match']:.4f}")
        _print_length_report(report["autoencoder_by_length"])


def _print_length_report(by_length: dict) -> None:
    print(f"token accuracy by length (titles, and descriptions' first sentences up to 100 words): the whole "
          f"text cut to {AE_MAX_TOKENS} tokens, as before, vs piece by piece ({by_length['piece_words']} words a piece)")
    print(f"{'split':<10} {'length':<14} {'texts':>6} {'whole, cut':>11} {'pieces':>8}")
    for split in ("selection", "val"):
        for bucket, row in by_length[split].items():
            whole, pieces = (("-" if v is None else f"{v:.4f}") for v in (row["whole_cut"], row["pieces"]))
            print(f"{split:<10} {bucket:<14} {row['texts']:>6} {whole:>11} {pieces:>8}")
