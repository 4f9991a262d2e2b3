"""Training recipes for the text models, plus the bag-of-words baseline they are measured against.

    python -m artlab train-text --data ../shared/data --out weights

Both recipes use the one loop in artlab.training.loop.fit. The vocabulary is built from the
training split only and saved beside each checkpoint (`<name>.vocab.json`).
"""

import logging
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from artlab.checkpoints import WeightsError, save_checkpoint
from artlab.data import text as text_data
from artlab.device import pick_device
from artlab.inference.text import (
    AE_MAX_TOKENS,
    classify_ids,
    reconstruct_ids,
    vocab_path,
)
from artlab.labels import STYLES, SUBJECTS
from artlab.models.text import TextAutoencoder, TextClassifier
from artlab.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Tokenizer,
    normalize,
    normalize_words,
    pad_batch,
)
from artlab.training.loop import fit
from artlab.training.metrics import classification_report

log = logging.getLogger(__name__)
HEAD_LABELS = {"subject": SUBJECTS, "style": STYLES}
TRAIN_MAX_TOKENS = 128        # descriptions are cut here in training (a GRU over 500 steps is slow on a CPU)
DESCRIPTION_REPEAT = 2        # SemArt is ~60x smaller than the titles: seen twice per epoch
# (name shown in reports, head, kinds of text) for each validation figure the issue asks for
VAL_TASKS = (("title->subject", "subject", ("title",)), ("title->style", "style", ("title",)),
             ("description->subject", "subject", ("description",)))


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (little padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _subset(texts: text_data.TextSet, head: str, kinds: tuple[str, ...]) -> list[int]:
    return [i for i, k in enumerate(texts.kinds) if k in kinds and texts.labels[head][i] >= 0]


def evaluate_classifier(model, tokenizer, val: text_data.TextSet, device, max_tokens: int = 512) -> dict:
    """Accuracy, per-class accuracy and confusion for each task in VAL_TASKS."""
    sequences = [tokenizer.encode(t, max_tokens) or [PAD_ID] for t in val.texts]
    probs = classify_ids(model, sequences, device)
    report = {}
    for name, head, kinds in VAL_TASKS:
        keep = _subset(val, head, kinds)
        if keep:
            index = torch.tensor(keep)
            report[name] = classification_report(probs[head][index].argmax(1), val.labels[head][index],
                                                 HEAD_LABELS[head])
    return report


def _labelled(texts: text_data.TextSet) -> list[int]:
    return [i for i in range(len(texts)) if any(t[i] >= 0 for t in texts.labels.values())]


def train_classifier(data_root: Path, out_dir: Path, *, epochs: int = 8, batch_size: int = 128,
                     lr: float = 2e-3, embed_dim: int = 128, hidden: int = 256, embedding_pool: bool = True,
                     limit: int | None = None,
                     device=None, name: str = "text_classifier", seed: int = 0, command: str = "",
                     show_progress: bool = True, time_budget_s: float | None = None) -> dict:
    device = pick_device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    train = text_data.load_text_data(data_root, "train")
    val = text_data.load_text_data(data_root, "val")
    if limit:
        train, val = train.select(list(range(min(limit, len(train))))), val.select(list(range(min(limit, len(val)))))
    tokenizer = Tokenizer.build(train.texts)
    labelled = _labelled(train)
    encoded = {i: tokenizer.encode(train.texts[i], TRAIN_MAX_TOKENS) or [PAD_ID] for i in labelled}
    pool = [i for i in labelled for _ in range(DESCRIPTION_REPEAT if train.kinds[i] == "description" else 1)]
    log.info("train: %d labelled texts (%d with descriptions repeated), val: %d, vocabulary %d, device %s",
             len(labelled), len(pool), len(val), len(tokenizer), device)
    model = TextClassifier(len(tokenizer), {h: len(n) for h, n in HEAD_LABELS.items()},
                           embed_dim=embed_dim, hidden=hidden, embedding_pool=embedding_pool).to(device)
    steps = max(1, -(-len(pool) // batch_size))

    def batches(epoch):
        for batch in length_batches([len(encoded[i]) for i in pool], batch_size, rng):
            rows = [pool[j] for j in batch]
            ids, lengths = pad_batch([encoded[i] for i in rows])
            index = torch.tensor(rows)
            yield ids.to(device), lengths, {h: train.labels[h][index].to(device) for h in HEAD_LABELS}

    def step(model, batch):
        ids, lengths, targets = batch
        out = model(ids, lengths)
        # A batch may hold no label for a head; cross_entropy is then NaN.
        return sum(torch.nan_to_num(F.cross_entropy(out[h].float(), targets[h], ignore_index=-1,
                                                    label_smoothing=0.1)) for h in HEAD_LABELS)

    def evaluate(model):
        report = evaluate_classifier(model, tokenizer, val, device)
        scores = {f"val_{k}": r["accuracy"] or 0.0 for k, r in report.items()}
        return {**scores, "score": sum(scores.values())}

    result = fit(model, batches, step, epochs=epochs, steps_per_epoch=steps, device=device,
                 param_groups=[{"params": model.parameters(), "lr": lr}], weight_decay=0.01,
                 warmup_epochs=0.3, evaluate=evaluate, show_progress=show_progress,
                 time_budget_s=time_budget_s)
    report = evaluate_classifier(model, tokenizer, val, device)
    card = {
        "name": name,
        "architecture": f"token embedding {embed_dim} -> bidirectional GRU {hidden} -> additive attention "
                        "pooling + max pooling over time" + (" + mean of the embeddings" if embedding_pool else "")
                        + " -> linear subject and style heads",
        "config": {"vocab_size": len(tokenizer), "embed_dim": embed_dim, "hidden": hidden,
                   "embedding_pool": embedding_pool, "heads": {h: len(n) for h, n in HEAD_LABELS.items()}},
        "labels": {h: list(n) for h, n in HEAD_LABELS.items()},
        "vocabulary": vocab_path(Path(name)).name,
        "tokenizer": "lower case, accents folded, punctuation and digits split; known words, else the "
                     "longest known sub-word pieces, else characters (<unk> only for unseen characters)",
        "training_data": {
            "titles": "WikiArt titles (wikiart_titles.csv): style label where the style is one of the 7, "
                      "subject where the genre maps (see artlab.data.text.GENRE_TO_SUBJECT)",
            "descriptions": "SemArt descriptions and titles (semart.csv), subject from the type",
            "split": f"by painting: md5 of artist + title, {text_data.VAL_FRACTION:.0%} to validation",
            "train_texts": len(labelled)},
        "training": {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
                     "batch_size": batch_size, "lr": lr, "history": result.history},
        "metrics": {"val": report},
        "command": command or " ".join(sys.argv),
    }
    save_checkpoint(model, out_dir / name, card)
    tokenizer.save(vocab_path(out_dir / name))
    return card


# ------------------------------------------------------------------ text autoencoder

def add_noise(ids: list[int], starts: list[bool], rng: random.Random, drop: float = 0.1,
              swap: float = 0.1) -> list[int]:
    """Drop whole words and swap neighbouring words (the denoising autoencoder's input)."""
    words = split_words(ids, starts)
    kept = [w for w in words if rng.random() >= drop] or [rng.choice(words)]
    i = 0
    while i < len(kept) - 1:
        if rng.random() < swap:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
            i += 1
        i += 1
    return [t for w in kept for t in w]


def split_words(ids: list[int], starts: list[bool]) -> list[list[int]]:
    """Token ids grouped by word (a word and its "##" pieces stay together)."""
    words: list[list[int]] = []
    for token, start in zip(ids, starts):
        if start or not words:
            words.append([token])
        else:
            words[-1].append(token)
    return words


def word_salad(word_count: int, word_pool: list[list[int]], rng: random.Random, max_tokens: int) -> list[int]:
    """A made-up text of `word_count` words drawn at random from the training titles' words.

    Mixed into the autoencoder's batches so that it must learn to copy any sequence through
    its code: trained on the titles alone it learns them by heart (train token accuracy 0.999)
    and guesses new ones from what titles usually say (val 0.73)."""
    ids = [t for _ in range(max(1, word_count)) for t in rng.choice(word_pool)]
    return ids[:max_tokens]


def token_accuracy(predicted: list[list[int]], target: list[list[int]]) -> float:
    """Position-wise matches over the longer of the two sequences, summed over all texts
    (a missing or extra token counts as a miss)."""
    hits = sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(predicted, target))
    total = sum(max(len(p), len(t)) for p, t in zip(predicted, target))
    return hits / total if total else 0.0


def clean_short_titles(texts: text_data.TextSet, max_words: int = 12) -> list[str]:
    """Distinct titles (WikiArt and SemArt) of at most max_words words: what the autoencoder is scored on."""
    seen, out = set(), []
    for text, kind in zip(texts.texts, texts.kinds):
        key = normalize(text)
        if kind != "description" and key and key not in seen and len(normalize_words(text)) <= max_words:
            seen.add(key)
            out.append(text)
    return out


def evaluate_autoencoder(model, tokenizer, titles: list[str], device) -> dict:
    targets = [tokenizer.encode(t, AE_MAX_TOKENS) for t in titles]
    rebuilt = reconstruct_ids(model, targets, device)
    exact = sum(p == t for p, t in zip(rebuilt, targets)) / max(1, len(targets))
    return {"token_accuracy": round(token_accuracy(rebuilt, targets), 4), "exact_match": round(exact, 4),
            "count": len(targets)}


def train_autoencoder(data_root: Path, out_dir: Path, *, epochs: int = 12, batch_size: int = 128,
                      lr: float = 3e-3, embed_dim: int = 128, hidden: int = 256, code_dim: int = 256,
                      decoder_hidden: int = 384, slots: int = 0, noise: float = 0.1, salad: float = 0.0,
                      limit: int | None = None, device=None,
                      name: str = "text_autoencoder", seed: int = 0, command: str = "",
                      show_progress: bool = True, init=None, time_budget_s: float | None = None) -> dict:
    """`init`: a weights folder whose text autoencoder (and its vocabulary) training continues from.
    `salad`: the share of each batch replaced by made-up texts of random title words (`word_salad`)."""
    device = pick_device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    train = text_data.load_text_data(data_root, "train")
    val = text_data.load_text_data(data_root, "val")
    titles = clean_short_titles(train, max_words=16)
    val_titles = clean_short_titles(val)
    if limit:
        titles, val_titles = titles[:limit], val_titles[:limit]
    if init:
        from artlab.inference.text import load_text_autoencoder
        start, tokenizer, init_card = load_text_autoencoder(init, "cpu")
        config = init_card["config"]
        embed_dim, hidden, code_dim, decoder_hidden = (config["embed_dim"], config["hidden"], config["code_dim"],
                                                       config["decoder_hidden"])
        slots = config.get("slots", 0)
    else:
        tokenizer = Tokenizer.build(titles)
    encoded = [tokenizer.encode(t, AE_MAX_TOKENS) for t in titles]
    starts = [tokenizer.word_starts(ids) for ids in encoded]
    title_words = [split_words(ids, st) for ids, st in zip(encoded, starts)]
    word_pool = [word for words in title_words for word in words]
    log.info("autoencoder: %d distinct train titles, %d val titles, vocabulary %d",
             len(titles), len(val_titles), len(tokenizer))
    model = TextAutoencoder(len(tokenizer), embed_dim=embed_dim, hidden=hidden, code_dim=code_dim,
                            decoder_hidden=decoder_hidden, slots=slots)
    if init:
        model.load_state_dict(start.state_dict())
    model.to(device)
    steps = max(1, -(-len(encoded) // batch_size))

    def batches(epoch):
        for batch in length_batches([len(s) for s in encoded], batch_size, rng):
            clean = [word_salad(len(title_words[i]), word_pool, rng, AE_MAX_TOKENS) if rng.random() < salad
                     else encoded[i] for i in batch]
            # Half the texts go in clean, so the code also learns to copy exactly.
            noisy = [add_noise(ids, tokenizer.word_starts(ids), rng, noise, noise) if rng.random() < 0.5 else ids
                     for ids in clean]
            ids, lengths = pad_batch(noisy)
            target, _ = pad_batch([c + [EOS_ID] for c in clean])
            decoder_in, _ = pad_batch([[BOS_ID] + c for c in clean])
            yield ids.to(device), lengths, decoder_in.to(device), target.to(device)

    def step(model, batch):
        ids, lengths, decoder_in, target = batch
        logits = model(ids, lengths, decoder_in)
        return F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=PAD_ID)

    def evaluate(model):
        metrics = evaluate_autoencoder(model, tokenizer, val_titles[:2000], device)
        return {"val_token_accuracy": metrics["token_accuracy"], "score": metrics["token_accuracy"]}

    result = fit(model, batches, step, epochs=epochs, steps_per_epoch=steps, device=device,
                 param_groups=[{"params": model.parameters(), "lr": lr}], weight_decay=0.0,
                 warmup_epochs=0.3, evaluate=evaluate, show_progress=show_progress,
                 time_budget_s=time_budget_s)
    metrics = evaluate_autoencoder(model, tokenizer, val_titles, device)
    card = {
        "name": name,
        "architecture": f"denoising seq2seq: embedding {embed_dim} -> bidirectional GRU {hidden} -> "
                        + (f"fixed code of {slots} slots x {code_dim // slots} values (tanh; attention with "
                           "learned, position-aware queries over the encoder states)" if slots else
                           f"fixed code of {code_dim} values (tanh)")
                        + f" -> GRU decoder {decoder_hidden} fed the code at every step"
                        + (", reading the slots back by attention" if slots else "")
                        + ", output tied to the embedding; greedy decoding",
        "config": {"vocab_size": len(tokenizer), "embed_dim": embed_dim, "hidden": hidden,
                   "code_dim": code_dim, "decoder_hidden": decoder_hidden, "slots": slots,
                   "max_tokens": AE_MAX_TOKENS},
        "vocabulary": vocab_path(Path(name)).name,
        "training_data": {"titles": f"{len(titles)} distinct WikiArt and SemArt titles of the train split "
                                    "(by painting), at most 16 words",
                          "noise": f"half the inputs: each word dropped with p={noise}, neighbours "
                                   f"swapped with p={noise}; target: the clean title",
                          "word_salad": f"{salad:.0%} of each batch: made-up texts of as many random "
                                        "title words as the title they replace (learning to copy, not "
                                        "to recite)"},
        "training": {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
                     "batch_size": batch_size, "lr": lr, "salad": salad, "history": result.history,
                     "continued_from": init_card["training"] if init else None},
        "metrics": {"val": {"clean_titles_up_to_12_words": metrics}},
        "command": command or " ".join(sys.argv),
    }
    save_checkpoint(model, out_dir / name, card)
    tokenizer.save(vocab_path(out_dir / name))
    return card


# ------------------------------------------------------------------ bag-of-words baseline

def bow_baseline(train: text_data.TextSet, val: text_data.TextSet, epochs: int = 20, seed: int = 0) -> dict:
    """Logistic regression on bags of words (words seen twice in training), one per head, in torch.

    Trained on the same texts as the RNN, measured on the same validation tasks."""
    counts: dict[str, int] = {}
    for text in train.texts:
        for word in set(normalize_words(text)):
            counts[word] = counts.get(word, 0) + 1
    vocab = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= 2)}
    return bag_regression(train, val, lambda t: sorted({vocab[w] for w in normalize_words(t) if w in vocab}),
                          len(vocab), epochs=epochs, seed=seed)


def _bags(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of feature ids as EmbeddingBag's (flat ids, offsets)."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    return torch.tensor([i for r in rows for i in r], dtype=torch.long), offsets


def bag_regression(train: text_data.TextSet, val: text_data.TextSet, featurize, size: int, *, epochs: int = 20,
                   lr: float = 0.02, l2: float = 1e-5, seed: int = 0, on_epoch=None) -> dict:
    """Logistic regression on bags of feature ids, one per head, scored on VAL_TASKS after the last epoch.

    featurize(text) gives a text's distinct feature ids below `size`. With on_epoch, the model is
    also scored after every epoch and on_epoch(head, epoch, reports) sees those reports."""
    torch.manual_seed(seed)
    train_rows = [featurize(t) for t in train.texts]
    val_flat, val_offsets = _bags([featurize(t) for t in val.texts])
    report = {}
    for head, names in HEAD_LABELS.items():
        keep = [i for i in _labelled(train) if train.labels[head][i] >= 0]
        target = train.labels[head][torch.tensor(keep)]
        model = torch.nn.EmbeddingBag(size, len(names), mode="sum")
        torch.nn.init.zeros_(model.weight)
        bias = torch.nn.Parameter(torch.zeros(len(names)))
        optimizer = torch.optim.Adam([model.weight, bias], lr=lr)

        def score() -> dict:
            with torch.no_grad():
                predicted = (model(val_flat, val_offsets) + bias).argmax(1)
            scores = {}
            for name, task_head, kinds in VAL_TASKS:
                index = torch.tensor(_subset(val, head, kinds), dtype=torch.long)
                if task_head == head and len(index):
                    scores[name] = classification_report(predicted[index], val.labels[head][index], names)
            return scores

        for epoch in range(epochs):
            for batch in torch.randperm(len(keep)).split(512):
                logits = model(*_bags([train_rows[keep[j]] for j in batch.tolist()])) + bias
                loss = F.cross_entropy(logits, target[batch])
                if l2:
                    loss = loss + l2 * model.weight.pow(2).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if on_epoch:
                on_epoch(head, epoch + 1, score())
        report.update(score())
    return report


# ------------------------------------------------------------------ evaluate-text

def evaluate_text(data_root: Path, weights=None, baseline: bool = True, device=None) -> dict:
    """The shipped (or given) text models on the by-painting validation split, and the baseline."""
    from artlab.inference.text import load_text_autoencoder, load_text_classifier

    device = pick_device(device)
    val = text_data.load_text_data(data_root, "val")
    model, tokenizer, card = load_text_classifier(weights, device)
    report = {"data": str(data_root), "split": "val (by painting)",
              "classifier": evaluate_classifier(model, tokenizer, val, device)}
    try:
        ae, ae_tokenizer, _ = load_text_autoencoder(weights, device)
        report["autoencoder"] = evaluate_autoencoder(ae, ae_tokenizer, clean_short_titles(val), device)
    except WeightsError as e:
        log.warning("no text autoencoder: %s", e)
    if baseline:
        report["baseline_bow_logreg"] = bow_baseline(text_data.load_text_data(data_root, "train"), val)
    return report


def print_text_report(report: dict) -> None:
    from artlab.training.metrics import format_confusion

    baseline = report.get("baseline_bow_logreg", {})
    print(f"text models on {report['data']}, {report['split']}")
    print(f"{'task':<22} {'count':>6} {'RNN':>7} {'BoW-LR':>7}")
    for task, result in report["classifier"].items():
        base = baseline.get(task, {}).get("accuracy")
        print(f"{task:<22} {result['count']:>6} {result['accuracy']:>7.4f} "
              f"{base if base is None else format(base, '>7.4f')}")
    for task, result in report["classifier"].items():
        print(f"\n{task}: per-class accuracy")
        for name, value in result["per_class"].items():
            base = baseline.get(task, {}).get("per_class", {}).get(name)
            print(f"  {name:<20} {'-' if value is None else format(value, '.4f'):>7}   "
                  f"(BoW-LR {'-' if base is None else format(base, '.4f')})")
        print(format_confusion(result))
    if "autoencoder" in report:
        ae = report["autoencoder"]
        print(f"\ntext autoencoder on {ae['count']} clean val titles of <= 12 words: "
              f"token accuracy {ae['token_accuracy']:.4f}, exact match {ae['exact_match']:.4f}")
