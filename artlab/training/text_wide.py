"""Second stage of the text classifier's recipe: the wide n-gram part trained again, the GRU fixed.

    python -m artlab train-text --data ../shared/data --out DIR --model classifier --wide-from STAGE1 --epochs 6

Trained jointly with the GRU at the GRU's learning rate, the wide part (hashed words, word pairs and
character n-grams straight to logits, artlab.models.text) learns slowly: each of its 786k weights
moves only when its n-gram occurs. Here it is trained as a logistic regression at a linear model's
learning rate on top of the fixed GRU's log-probabilities (the GRU's logits up to a constant per
text, which softmax ignores), on the fit split; the epoch is chosen on the selection split and val
is measured once, on the model saved.
"""

import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from artlab.checkpoints import save_checkpoint
from artlab.data import text as text_data
from artlab.data.text import TEXT_TASKS, TextSet, labelled_rows, task_rows
from artlab.inference.text import classify_ids, load_text_classifier, vocab_path
from artlab.labels import TEXT_HEADS
from artlab.models.text import bags_from_ids, ngram_ids
from artlab.tokenizer import PAD_ID
from artlab.training.cards import make_card
from artlab.training.evaluate import text_classifier_report

log = logging.getLogger(__name__)


@torch.no_grad()
def deep_log_probs(model, tokenizer, texts: TextSet, device) -> torch.Tensor:
    """The GRU's log-probabilities per text (all heads side by side, in the wide part's order),
    with the wide part silenced."""
    saved = model.wide.weight.detach().clone()
    model.wide.weight.zero_()
    sequences = [tokenizer.encode(t, 512) or [PAD_ID] for t in texts.texts]
    probs = classify_ids(model, sequences, device, texts=texts.texts)
    model.wide.weight.copy_(saved)
    return torch.cat([probs[head].clamp(min=1e-8).log() for head in model.heads], 1)


def _wide_logits(model, rows: list[list[int]], offsets: torch.Tensor) -> torch.Tensor:
    flat, starts, weights = bags_from_ids(rows)
    return offsets + model.wide(flat, starts, per_sample_weights=weights)


def _wide_loss(logits: torch.Tensor, targets: dict[str, torch.Tensor], heads, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per head, each text weighted by `weights` (descriptions may count more)."""
    loss, start = 0.0, 0
    for head, layer in heads.items():
        size = layer.out_features
        per_text = F.cross_entropy(logits[:, start:start + size], targets[head], ignore_index=-1, reduction="none")
        counted = weights * (targets[head] >= 0)
        # a batch may hold no label for a head: nothing to add then
        loss = loss + (per_text * counted).sum() / counted.sum().clamp(min=1e-8)
        start += size
    return loss


def resize_wide(model, buckets: int) -> None:
    """Give `model` a fresh (zero) wide part of `buckets` hashed buckets, for stage 2 to train."""
    if buckets == model.wide_buckets:
        return
    outputs = model.wide.weight.shape[1]
    model.wide = torch.nn.EmbeddingBag(buckets, outputs, mode="sum").to(model.wide.weight.device)
    torch.nn.init.zeros_(model.wide.weight)
    model.wide_buckets = buckets


@torch.no_grad()
def _selection_scores(model, rows: list[list[int]], offsets: torch.Tensor, selection: TextSet) -> dict:
    """Accuracy per task on the selection split from its fixed GRU log-probabilities and the wide part."""
    model.wide.eval()
    logits = _wide_logits(model, rows, offsets)
    start, scores = 0, {}
    for head, layer in model.heads.items():
        predicted = logits[:, start:start + layer.out_features].argmax(1)
        start += layer.out_features
        for task, task_head, kinds in TEXT_TASKS:
            index = torch.tensor(task_rows(selection, head, kinds), dtype=torch.long)
            if task_head == head and len(index):
                scores[f"selection_{task}"] = round((predicted[index] == selection.labels[head][index]).float()
                                                    .mean().item(), 4)
    return scores


def train_wide_part(model, tokenizer, fit: TextSet, selection: TextSet, *, epochs: int, lr: float,
                    batch_size: int = 512, seed: int = 0, description_weight: float = 1.0,
                    device="cpu") -> list[dict]:
    """Train model.wide in place on `fit` (the GRU fixed); keep the epoch best on `selection`.
    description_weight: each description counts this many titles in the loss."""
    torch.manual_seed(seed)
    keep = labelled_rows(fit)
    text_weights = torch.tensor([description_weight if fit.kinds[i] == "description" else 1.0 for i in keep])
    rows = [ngram_ids(fit.texts[i], model.wide_buckets) for i in keep]
    offsets = deep_log_probs(model, tokenizer, fit, device)[torch.tensor(keep)]
    targets = {h: fit.labels[h][torch.tensor(keep)] for h in TEXT_HEADS}
    selection_rows = [ngram_ids(t, model.wide_buckets) for t in selection.texts]
    selection_offsets = deep_log_probs(model, tokenizer, selection, device)
    optimizer = torch.optim.Adam(model.wide.parameters(), lr=lr)
    history, best = [], (-1.0, None)
    for epoch in range(1, epochs + 1):
        model.wide.train()
        for batch in torch.randperm(len(keep)).split(batch_size):
            logits = _wide_logits(model, [rows[j] for j in batch.tolist()], offsets[batch])
            loss = _wide_loss(logits, {h: t[batch] for h, t in targets.items()}, model.heads, text_weights[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        record = {"epoch": epoch, **_selection_scores(model, selection_rows, selection_offsets, selection)}
        record["score"] = round(sum(v for k, v in record.items() if k.startswith("selection_")), 4)
        history.append(record)
        log.info("wide part epoch %d: %s", epoch, record)
        if record["score"] > best[0]:
            best = (record["score"], copy.deepcopy(model.wide.state_dict()))
    model.wide.load_state_dict(best[1])
    return history


def retrain_wide(data_root: Path, stage1: Path, out_dir: Path, *, epochs: int = 6, lr: float = 0.01,
                 wide_buckets: int | None = None, description_weight: float = 1.0, device="cpu", name: str = "text_classifier", command: str = "", replaces: Path | None = None) -> dict:
    """The stage-1 classifier in `stage1` (trained on fit) with its wide part trained again; saved to out_dir."""
    from artlab.training.text import replaced_version

    model, tokenizer, stage1_card = load_text_classifier(stage1, device)
    if model.wide is None:
        raise ValueError(f"{stage1}: this classifier has no wide part to train")
    if stage1_card.get("training_data", {}).get("trained_on") != "fit":
        raise ValueError(f"{stage1}: the first stage must be trained on the fit split (the selection split chooses)")
    first_buckets = model.wide_buckets
    resize_wide(model, wide_buckets or first_buckets)
    sets = {split: text_data.load_text_data(data_root, split) for split in ("fit", "selection", "val")}
    history = train_wide_part(model, tokenizer, sets["fit"], sets["selection"], epochs=epochs, lr=lr,
                              description_weight=description_weight, device=device)
    model.eval()
    metrics = {split: text_classifier_report(model, tokenizer, sets[split], device) for split in ("selection", "val")}
    best_epoch = max(history, key=lambda r: r["score"])["epoch"]
    card = make_card(
        name, architecture=stage1_card["architecture"].replace(f"{first_buckets:,}", f"{model.wide_buckets:,}"),
        config={**stage1_card["config"], "wide_buckets": model.wide_buckets}, labels=stage1_card["labels"],
        vocabulary=vocab_path(Path(name)).name, tokenizer=stage1_card["tokenizer"],
        training_data=stage1_card["training_data"],
        training={"stage_1": {**stage1_card["training"], "command": stage1_card["command"],
                              "metrics_selection": {k: r["accuracy"] for k, r in stage1_card["metrics"]["selection"].items()}},
                  "stage_2": {"what": "the wide part alone, GRU fixed, Adam", "lr": lr, "wide_buckets": model.wide_buckets,
                              "description_weight": description_weight, "epochs_run": len(history),
                              "best_epoch": best_epoch, "history": history}},
        metrics=metrics, chosen_on={**stage1_card["chosen_on"], "wide_part_epoch": "the selection split (sum of its "
                                    "three accuracies)"},
        baseline_bow=stage1_card["baseline_bow"], replaces=replaced_version(replaces, name), command=command)
    save_checkpoint(model, out_dir / name, card)
    tokenizer.save(vocab_path(out_dir / name))
    return card

