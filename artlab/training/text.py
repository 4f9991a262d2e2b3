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

from artlab.checkpoints import save_checkpoint
from artlab.data import text as text_data
from artlab.data.text import labelled_rows
from artlab.device import pick_device
from artlab.inference.text import (
    AE_MAX_TOKENS,
    vocab_path,
)
from artlab.labels import TEXT_HEADS
from artlab.models.text import TextAutoencoder, TextClassifier
from artlab.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Tokenizer,
    pad_batch,
)
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
    "split": f"by painting: md5 of artist + title, {text_data.VAL_FRACTION:.0%} to validation"}


def _heads_loss(out: dict, targets: dict) -> torch.Tensor:
    # A batch may hold no label for a head; cross_entropy is then NaN.
    return sum(torch.nan_to_num(F.cross_entropy(out[h].float(), targets[h], ignore_index=-1, label_smoothing=0.1))
               for h in TEXT_HEADS)


def train_classifier(data_root: Path, out_dir: Path, *, epochs: int = 8, batch_size: int = 128,
                     lr: float = 2e-3, embed_dim: int = 128, hidden: int = 256, embedding_pool: bool = True,
                     limit: int | None = None, device=None, name: str = "text_classifier", seed: int = 0,
                     command: str = "",
                     show_progress: bool = True, time_budget_s: float | None = None) -> dict:
    device = pick_device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    train = text_data.load_text_data(data_root, "train")
    val = text_data.load_text_data(data_root, "val")
    if limit:
        train, val = train.select(list(range(min(limit, len(train))))), val.select(list(range(min(limit, len(val)))))
    tokenizer = Tokenizer.build(train.texts)
    labelled = labelled_rows(train)
    encoded = {i: tokenizer.encode(train.texts[i], TRAIN_MAX_TOKENS) or [PAD_ID] for i in labelled}
    pool = [i for i in labelled for _ in range(DESCRIPTION_REPEAT if train.kinds[i] == "description" else 1)]
    log.info("train: %d labelled texts (%d with descriptions repeated), val: %d, vocabulary %d, device %s",
             len(labelled), len(pool), len(val), len(tokenizer), device)
    model = TextClassifier(len(tokenizer), {h: len(n) for h, n in TEXT_HEADS.items()},
                           embed_dim=embed_dim, hidden=hidden, embedding_pool=embedding_pool).to(device)
    steps = max(1, -(-len(pool) // batch_size))

    def batches(epoch):
        for batch in length_batches([len(encoded[i]) for i in pool], batch_size, rng):
            rows = [pool[j] for j in batch]
            ids, lengths = pad_batch([encoded[i] for i in rows])
            index = torch.tensor(rows)
            yield ids.to(device), lengths, {h: train.labels[h][index].to(device) for h in TEXT_HEADS}

    def step(model, batch):
        ids, lengths, targets = batch
        return _heads_loss(model(ids, lengths), targets)

    def evaluate(model):
        report = text_classifier_report(model, tokenizer, val, device)
        scores = {f"val_{k}": r["accuracy"] or 0.0 for k, r in report.items()}
        return {**scores, "score": sum(scores.values())}

    result = fit(model, batches, step, epochs=epochs, steps_per_epoch=steps, device=device,
                 param_groups=[{"params": model.parameters(), "lr": lr}], weight_decay=0.01,
                 warmup_epochs=0.3, evaluate=evaluate, show_progress=show_progress,
                 time_budget_s=time_budget_s)
    card = make_card(
        name, architecture=f"token embedding {embed_dim} -> bidirectional GRU {hidden} -> additive attention "
        "pooling + max pooling over time" + (" + mean of the embeddings" if embedding_pool else "")
        + " -> linear subject and style heads",
        config={"vocab_size": len(tokenizer), "embed_dim": embed_dim, "hidden": hidden,
                "embedding_pool": embedding_pool, "heads": {h: len(n) for h, n in TEXT_HEADS.items()}},
        labels={h: list(n) for h, n in TEXT_HEADS.items()}, vocabulary=vocab_path(Path(name)).name,
        tokenizer=TOKENIZER_NOTE, training_data={**TEXT_DATA_NOTE, "train_texts": len(labelled)},
        training=history_record(result, batch_size=batch_size, lr=lr),
        metrics={"val": text_classifier_report(model, tokenizer, val, device)}, command=command)
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
