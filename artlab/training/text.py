"""Training recipes for the text models, plus the bag-of-words baseline they are measured against.

    python -m artlab train-text --data ../shared/data --out weights

Both recipes use the one loop in artlab.training.loop.fit. The vocabulary is built from the
training split only and saved beside each checkpoint (`<name>.vocab.json`).
"""

import logging
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from artlab.checkpoints import file_digest, read_card, save_checkpoint
from artlab.data import text as text_data
from artlab.data.text import TextSet, labelled_rows
from artlab.device import pick_device
from artlab.inference.text import (
    AE_MAX_TOKENS,
    split_words,
    vocab_path,
)
from artlab.labels import TEXT_HEADS
from artlab.models.text import TextAutoencoder, TextClassifier, bags_from_ids, ngram_ids
from artlab.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Tokenizer,
    pad_batch,
)
from artlab.training.baselines import bow_baseline
from artlab.training.cards import history_record, make_card
from artlab.training.evaluate import (
    clean_short_titles,
    text_autoencoder_report,
    text_classifier_report,
)
from artlab.training.loop import fit

log = logging.getLogger(__name__)
TRAIN_MAX_TOKENS = 128        # descriptions are cut here in training (a GRU over 500 steps is slow on a CPU)
DESCRIPTION_REPEAT = 2        # SemArt is ~60x smaller than the titles: seen twice per epoch
# (name shown in reports, head, kinds of text) for each validation figure the issue asks for


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (little padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


TOKENIZER_NOTE = ("lower case, accents folded, punctuation and digits split; known words, else the longest "
                  "known sub-word pieces, else characters (<unk> only for unseen characters)")
TEXT_DATA_NOTE = {
    "titles": "WikiArt titles (wikiart_titles.csv): style label where the style is one of the 7, "
              "subject where the genre maps (see artlab.data.text.GENRE_TO_SUBJECT)",
    "descriptions": "SemArt descriptions and titles (semart.csv), subject from the type",
    "split": f"by painting: md5 of artist + title, {text_data.VAL_FRACTION:.0%} to validation; of the rest, "
             f"{text_data.SELECTION_FRACTION:.0%} to the selection split (choices), the others to fit"}


def _heads_loss(out: dict, targets: dict) -> torch.Tensor:
    # A batch may hold no label for a head; cross_entropy is then NaN.
    return sum(torch.nan_to_num(F.cross_entropy(out[h].float(), targets[h], ignore_index=-1, label_smoothing=0.1))
               for h in TEXT_HEADS)


WIDE_BUCKETS = 1 << 16       # hashed n-gram buckets of the wide part: 65,536 x 12 logits, 1.5 MB in fp16


def train_classifier(data_root: Path, out_dir: Path, *, epochs: int = 8, batch_size: int = 128,
                     lr: float = 2e-3, embed_dim: int = 128, hidden: int = 256, embedding_pool: bool = True,
                     wide_buckets: int = WIDE_BUCKETS, refit: bool = False, limit: int | None = None,
                     device=None, name: str = "text_classifier", seed: int = 0, command: str = "",
                     show_progress: bool = True, time_budget_s: float | None = None,
                     replaces: Path | None = None) -> dict:
    """Trained on the fit split with its best epoch chosen on the selection split (both carved from
    train, artlab.data.text.selection_split); val is measured once, on the model that is saved.

    refit: train on all of train for exactly `epochs` epochs (a count chosen before on the selection
    split) and keep the last; its selection figures are then in-sample. `replaces`: the weights folder
    whose classifier this one would replace (its sha256 and metrics go on the card)."""
    device = pick_device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    sets = _classifier_sets(data_root, limit)
    train = sets["train" if refit else "fit"]
    tokenizer = Tokenizer.build(train.texts)
    model = TextClassifier(len(tokenizer), {h: len(n) for h, n in TEXT_HEADS.items()}, embed_dim=embed_dim,
                           hidden=hidden, embedding_pool=embedding_pool, wide_buckets=wide_buckets).to(device)
    batches = _ClassifierBatches(train, tokenizer, batch_size, rng, wide_buckets, device)

    def step(model, batch):
        ids, lengths, bags, targets = batch
        return _heads_loss(model(ids, lengths, bags), targets)

    def evaluate(model):
        report = text_classifier_report(model, tokenizer, sets["selection"], device)
        scores = {f"selection_{k}": r["accuracy"] or 0.0 for k, r in report.items()}
        return {**scores, "score": sum(scores.values())}

    result = fit(model, batches, step, epochs=epochs, steps_per_epoch=batches.steps, device=device,
                 param_groups=[{"params": model.parameters(), "lr": lr}], weight_decay=0.01,
                 warmup_epochs=0.3, evaluate=None if refit else evaluate, show_progress=show_progress,
                 time_budget_s=time_budget_s)
    metrics = {split: text_classifier_report(model, tokenizer, sets[split], device) for split in ("selection", "val")}
    card = make_card(
        name, architecture=_classifier_architecture(embed_dim, hidden, embedding_pool, wide_buckets),
        config={"vocab_size": len(tokenizer), "embed_dim": embed_dim, "hidden": hidden,
                "embedding_pool": embedding_pool, "wide_buckets": wide_buckets,
                "heads": {h: len(n) for h, n in TEXT_HEADS.items()}},
        labels={h: list(n) for h, n in TEXT_HEADS.items()}, vocabulary=vocab_path(Path(name)).name,
        tokenizer=TOKENIZER_NOTE, training_data={**TEXT_DATA_NOTE, "trained_on": "train" if refit else "fit",
                                                 "train_texts": len(batches.labelled)},
        training=history_record(result, batch_size=batch_size, lr=lr), metrics=metrics,
        chosen_on=_classifier_choices(refit), baseline_bow=_bow_beside(sets),
        replaces=replaced_version(replaces, name), command=command)
    save_checkpoint(model, out_dir / name, card)
    tokenizer.save(vocab_path(out_dir / name))
    return card


def _classifier_sets(data_root: Path, limit: int | None) -> dict[str, TextSet]:
    """The four splits the classifier's recipe reads (at most `limit` texts each, for quick runs)."""
    sets = {split: text_data.load_text_data(data_root, split) for split in text_data.SPLITS}
    if limit:
        sets = {split: s.select(list(range(min(limit, len(s))))) for split, s in sets.items()}
    log.info("text splits: %s", {split: len(s) for split, s in sets.items()})
    return sets


def _classifier_architecture(embed_dim: int, hidden: int, embedding_pool: bool, wide_buckets: int) -> str:
    return (f"token embedding {embed_dim} -> bidirectional GRU {hidden} -> additive attention pooling + max "
            "pooling over time" + (" + mean of the embeddings" if embedding_pool else "")
            + " -> linear subject and style heads"
            + (f"; plus a wide part: {wide_buckets:,} hashed buckets of words, word pairs and character "
               "3-5-grams (weights 1/sqrt(n)) straight to logits added to the heads'" if wide_buckets else ""))


def _classifier_choices(refit: bool) -> dict:
    """Which split chose what, for the card."""
    return {"best_epoch": "refit on all of train: the last epoch of a run as long as the one chosen on the "
                          "selection split" if refit else "the selection split (sum of its three accuracies)",
            "recipe_and_sizes": "the selection split (scripts and runs named in `command` and the report)",
            "val": "measured once, on the saved model; it chose nothing"}


def _bow_beside(sets: dict[str, TextSet]) -> dict:
    """The bag-of-words baseline on the same splits: fit -> selection and train -> val (evaluate-text's)."""
    return {split: {task: r["accuracy"] for task, r in bow_baseline(sets[source], sets[split]).items()}
            for split, source in (("selection", "fit"), ("val", "train"))}


def replaced_version(folder: Path | None, name: str) -> dict | None:
    """The classifier (or other model) in `folder` that a new one replaces: file, sha256, date, metrics."""
    path = Path(folder) / f"{name}.safetensors" if folder else None
    if path is None or not path.is_file():
        return None
    card = read_card(path.with_suffix(".json"))
    metrics = {split: {task: r["accuracy"] if isinstance(r, dict) else r for task, r in tasks.items()}
               for split, tasks in card.get("metrics", {}).items()}
    return {"file": path.name, "sha256": file_digest(path, 64), "date": card.get("date"), "metrics": metrics,
            "chosen_on": card.get("chosen_on", "val (best epoch by the sum of the three val accuracies)")}


class _ClassifierBatches:
    """batches(epoch): labelled texts of similar length (descriptions repeated), token ids, n-gram bags
    (when the model has a wide part) and the labels per head."""

    def __init__(self, train: TextSet, tokenizer: Tokenizer, batch_size: int, rng, wide_buckets: int, device):
        self.train, self.batch_size, self.rng, self.device = train, batch_size, rng, device
        self.labelled = labelled_rows(train)
        self.encoded = {i: tokenizer.encode(train.texts[i], TRAIN_MAX_TOKENS) or [PAD_ID] for i in self.labelled}
        self.grams = {i: ngram_ids(train.texts[i], wide_buckets) for i in self.labelled} if wide_buckets else None
        self.pool = [i for i in self.labelled
                     for _ in range(DESCRIPTION_REPEAT if train.kinds[i] == "description" else 1)]
        self.steps = max(1, -(-len(self.pool) // batch_size))
        log.info("classifier: %d labelled texts (%d with descriptions repeated), vocabulary %d",
                 len(self.labelled), len(self.pool), len(tokenizer))

    def __call__(self, epoch):
        for batch in length_batches([len(self.encoded[i]) for i in self.pool], self.batch_size, self.rng):
            rows = [self.pool[j] for j in batch]
            ids, lengths = pad_batch([self.encoded[i] for i in rows])
            bags = bags_from_ids([self.grams[i] for i in rows]) if self.grams is not None else None
            index = torch.tensor(rows)
            yield ids.to(self.device), lengths, bags, {h: self.train.labels[h][index].to(self.device)
                                                       for h in TEXT_HEADS}


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


def word_salad(word_count: int, word_pool: list[list[int]], rng: random.Random, max_tokens: int) -> list[int]:
    """A made-up text of `word_count` words drawn at random from the training titles' words.

    Mixed into the autoencoder's batches so that it must learn to copy any sequence through
    its code: trained on the titles alone it learns them by heart (train token accuracy 0.999)
    and guesses new ones from what titles usually say (val 0.73)."""
    ids = [t for _ in range(max(1, word_count)) for t in rng.choice(word_pool)]
    return ids[:max_tokens]


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
    titles = clean_short_titles(text_data.load_text_data(data_root, "train"), max_words=16)
    val_titles = clean_short_titles(text_data.load_text_data(data_root, "val"))
    if limit:
        titles, val_titles = titles[:limit], val_titles[:limit]
    sizes = {"embed_dim": embed_dim, "hidden": hidden, "code_dim": code_dim, "decoder_hidden": decoder_hidden,
             "slots": slots}
    model, tokenizer, sizes, init_card = _start_autoencoder(init, titles, sizes)
    model.to(device)
    log.info("autoencoder: %d distinct train titles, %d val titles, vocabulary %d",
             len(titles), len(val_titles), len(tokenizer))
    batches = _DenoisingBatches(tokenizer, titles, batch_size, rng, noise, salad, device)

    def step(model, batch):
        ids, lengths, decoder_in, target = batch
        logits = model(ids, lengths, decoder_in)
        return F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=PAD_ID)

    def evaluate(model):
        metrics = text_autoencoder_report(model, tokenizer, val_titles[:2000], device)
        return {"val_token_accuracy": metrics["token_accuracy"], "score": metrics["token_accuracy"]}

    result = fit(model, batches, step, epochs=epochs, steps_per_epoch=batches.steps, device=device,
                 param_groups=[{"params": model.parameters(), "lr": lr}], weight_decay=0.0,
                 warmup_epochs=0.3, evaluate=evaluate, show_progress=show_progress,
                 time_budget_s=time_budget_s)
    metrics = text_autoencoder_report(model, tokenizer, val_titles, device)
    card = _autoencoder_card(name, sizes, len(tokenizer), len(titles), noise, salad, command,
                             history_record(result, batch_size=batch_size, lr=lr, salad=salad,
                                            continued_from=init_card["training"] if init_card else None),
                             {"val": {"clean_titles_up_to_12_words": metrics}})
    save_checkpoint(model, out_dir / name, card)
    tokenizer.save(vocab_path(out_dir / name))
    return card


def _start_autoencoder(init, titles: list[str], sizes: dict) -> tuple[TextAutoencoder, Tokenizer, dict, dict | None]:
    """A fresh model of `sizes` with a vocabulary built from `titles`; or, with `init` (a weights folder),
    the model, vocabulary and sizes that training continues from, and that model's card."""
    if not init:
        tokenizer = Tokenizer.build(titles)
        return TextAutoencoder(len(tokenizer), **sizes), tokenizer, sizes, None
    from artlab.inference.text import load_text_autoencoder

    start, tokenizer, init_card = load_text_autoencoder(init, "cpu")
    saved = init_card["config"]
    sizes = {key: saved[key] for key in ("embed_dim", "hidden", "code_dim", "decoder_hidden")}
    sizes["slots"] = saved.get("slots", 0)
    model = TextAutoencoder(len(tokenizer), **sizes)
    model.load_state_dict(start.state_dict())
    return model, tokenizer, sizes, init_card


class _DenoisingBatches:
    """batches(epoch) for the autoencoder: titles of similar length (a `salad` share swapped for
    made-up texts of random title words), half of them noised; the target is the clean text."""

    def __init__(self, tokenizer, titles, batch_size, rng, noise, salad, device):
        self.tokenizer, self.batch_size, self.rng, self.device = tokenizer, batch_size, rng, device
        self.noise, self.salad = noise, salad
        self.encoded = [tokenizer.encode(t, AE_MAX_TOKENS) for t in titles]
        self.title_words = [split_words(ids, tokenizer.word_starts(ids)) for ids in self.encoded]
        self.word_pool = [word for words in self.title_words for word in words]
        self.steps = max(1, -(-len(self.encoded) // batch_size))

    def __call__(self, epoch):
        rng = self.rng
        for batch in length_batches([len(s) for s in self.encoded], self.batch_size, rng):
            clean = [word_salad(len(self.title_words[i]), self.word_pool, rng, AE_MAX_TOKENS)
                     if rng.random() < self.salad else self.encoded[i] for i in batch]
            # Half the texts go in clean, so the code also learns to copy exactly.
            noisy = [add_noise(ids, self.tokenizer.word_starts(ids), rng, self.noise, self.noise)
                     if rng.random() < 0.5 else ids for ids in clean]
            ids, lengths = pad_batch(noisy)
            target, _ = pad_batch([c + [EOS_ID] for c in clean])
            decoder_in, _ = pad_batch([[BOS_ID] + c for c in clean])
            yield ids.to(self.device), lengths, decoder_in.to(self.device), target.to(self.device)


def _autoencoder_card(name, sizes, vocab_size, titles, noise, salad, command, training, metrics) -> dict:
    slots, code_dim = sizes["slots"], sizes["code_dim"]
    code = (f"fixed code of {slots} slots x {code_dim // slots} values (tanh; attention with learned, "
            "position-aware queries over the encoder states)" if slots else f"fixed code of {code_dim} values (tanh)")
    return make_card(
        name, architecture=f"denoising seq2seq: embedding {sizes['embed_dim']} -> bidirectional GRU "
        f"{sizes['hidden']} -> {code} -> GRU decoder {sizes['decoder_hidden']} fed the code at every step"
        + (", reading the slots back by attention" if slots else "") + ", output tied to the embedding; greedy decoding",
        config={"vocab_size": vocab_size, **sizes, "max_tokens": AE_MAX_TOKENS},
        vocabulary=vocab_path(Path(name)).name,
        training_data={"titles": f"{titles} distinct WikiArt and SemArt titles of the train split "
                                 "(by painting), at most 16 words",
                       "noise": f"half the inputs: each word dropped with p={noise}, neighbours "
                                f"swapped with p={noise}; target: the clean title",
                       "word_salad": f"{salad:.0%} of each batch: made-up texts of as many random title words "
                                     "as the title they replace (learning to copy, not to recite)"},
        training=training, metrics=metrics, command=command)
