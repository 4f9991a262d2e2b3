"""Text inference, written once: `predict-text`, `evaluate-text`, the benchmarks and the app call this.

    models = TextModels()                       # the shipped weights, loaded once
    models.analyze(["stormy sea at night"])     # -> [{"text": ..., "subject": [...], "style": [...],
                                                #      "reconstruction": "stormy sea at night"}]

Each answer is one dict of the JSON contract of `python -m artlab predict-text --json`;
bad input (empty text) gets {"text": ..., "error": ...} in its place, never an exception.
"""

import logging
import threading
from pathlib import Path

import torch

from artlab.checkpoints import (
    TEXT_AUTOENCODER_NAME,
    TEXT_CLASSIFIER_NAME,
    Checkpoint,
    WeightsError,
)
from artlab.device import pick_device
from artlab.models.text import TextAutoencoder, TextClassifier
from artlab.tokenizer import Tokenizer, TokenizerError, pad_batch

log = logging.getLogger(__name__)

MAX_CHARS = 20_000        # longer texts are cut here first (a 1 MB paste is answered at once)
MAX_TOKENS = 512          # what the classifier reads at most
AE_MAX_TOKENS = 32        # the autoencoder was trained on titles: it rebuilds at most this many tokens
TEXT_ECHO = 200           # the "text" field of an answer holds at most this many characters
BATCH = 256


def vocab_path(weights_path: str | Path) -> Path:
    """The vocabulary file beside a text checkpoint: text_classifier.vocab.json."""
    return Path(weights_path).with_suffix(".vocab.json")


def _load_tokenizer(path: Path, card: dict) -> Tokenizer:
    try:
        tokenizer = Tokenizer.load(vocab_path(path))
    except TokenizerError as e:
        raise WeightsError(str(e)) from None
    if len(tokenizer) != card.get("config", {}).get("vocab_size"):
        raise WeightsError(f"{vocab_path(path)}: {len(tokenizer)} tokens, but the card of {path.name} "
                           f"says {card.get('config', {}).get('vocab_size')}")
    return tokenizer


def load_text_classifier(weights=None, device=None) -> tuple[TextClassifier, Tokenizer, dict]:
    """`weights`: a folder (None: the default weights) or a Checkpoint."""
    checkpoint = Checkpoint.find(weights, TEXT_CLASSIFIER_NAME)
    path, card = checkpoint.path, checkpoint.card
    config = card.get("config", {})
    tokenizer = _load_tokenizer(path, card)
    heads = {name: len(labels) for name, labels in card["labels"].items()}
    model = TextClassifier(len(tokenizer), heads, embed_dim=config["embed_dim"], hidden=config["hidden"],
                           embedding_pool=config.get("embedding_pool", False))
    checkpoint.load_into(model)
    return model.float().eval().to(pick_device(device)), tokenizer, card


def load_text_autoencoder(weights=None, device=None) -> tuple[TextAutoencoder, Tokenizer, dict]:
    checkpoint = Checkpoint.find(weights, TEXT_AUTOENCODER_NAME)
    path, card = checkpoint.path, checkpoint.card
    config = card.get("config", {})
    tokenizer = _load_tokenizer(path, card)
    model = TextAutoencoder(len(tokenizer), embed_dim=config["embed_dim"], hidden=config["hidden"],
                            code_dim=config["code_dim"], decoder_hidden=config["decoder_hidden"],
                            slots=config.get("slots", 0))
    checkpoint.load_into(model)
    return model.float().eval().to(pick_device(device)), tokenizer, card


def _length_order(sequences: list[list[int]]) -> list[int]:
    """Indices sorted by length, so each batch pads little."""
    return sorted(range(len(sequences)), key=lambda i: len(sequences[i]))


@torch.inference_mode()
def classify_ids(model: TextClassifier, sequences: list[list[int]], device, batch_size: int = BATCH
                 ) -> dict[str, torch.Tensor]:
    """Softmax per head for non-empty token id lists, in their given order."""
    model.eval()
    order = _length_order(sequences)
    out: dict[str, torch.Tensor] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, lengths = pad_batch([sequences[i] for i in chunk])
        for head, logits in model(ids.to(device), lengths).items():
            if head not in out:
                out[head] = torch.zeros(len(sequences), logits.shape[1])
            out[head][chunk] = logits.float().softmax(1).cpu()
    return out


@torch.inference_mode()
def reconstruct_ids(model: TextAutoencoder, sequences: list[list[int]], device, batch_size: int = BATCH,
                    slack: int = 4) -> list[list[int]]:
    """Encode each (non-empty) token list to its code and greedily decode it back."""
    model.eval()
    order = _length_order(sequences)
    out: list[list[int]] = [[] for _ in sequences]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, lengths = pad_batch([sequences[i] for i in chunk])
        code = model.encode(ids.to(device), lengths)
        for i, seq in zip(chunk, model.generate(code, lengths + slack)):
            out[i] = seq
    return out


class TextModels:
    """The text classifier and autoencoder, loaded once. Thread-safe: one batch at a time."""

    def __init__(self, weights=None, device=None, autoencoder: bool = True):
        self.device = pick_device(device)
        self.checkpoint = Checkpoint.find(weights, TEXT_CLASSIFIER_NAME)   # resolved once, passed down
        self.classifier, self.tokenizer, self.card = load_text_classifier(self.checkpoint, self.device)
        self.labels = {head: tuple(names) for head, names in self.card["labels"].items()}
        self.autoencoder = self.ae_tokenizer = self.ae_card = None
        if autoencoder:
            self.autoencoder, self.ae_tokenizer, self.ae_card = load_text_autoencoder(self.checkpoint, self.device)
        self.lock = threading.Lock()

    def analyze(self, texts: list[str], reconstruct: bool = True) -> list[dict]:
        """One contract dict per text, in order (see the module docstring)."""
        records, sequences, notes = [], [], []
        for text in texts:
            text = text if isinstance(text, str) else str(text)
            record, ids, note = self._prepare(text)
            records.append(record)
            sequences.append(ids)
            notes.append(note)
        readable = [i for i, ids in enumerate(sequences) if ids]
        with self.lock:
            probs = classify_ids(self.classifier, [sequences[i] for i in readable], self.device)
            rebuilt = None
            if reconstruct and self.autoencoder is not None and readable:
                ae_ids = [self.ae_tokenizer.encode(texts[i][:MAX_CHARS], AE_MAX_TOKENS) for i in readable]
                rebuilt = reconstruct_ids(self.autoencoder, ae_ids, self.device)
        for row, i in enumerate(readable):
            for head, names in self.labels.items():
                ranked = sorted(zip(names, probs[head][row].tolist()), key=lambda item: -item[1])
                records[i][head] = [[name, round(p, 4)] for name, p in ranked]
            if rebuilt is not None:
                records[i]["reconstruction"] = self.ae_tokenizer.decode(rebuilt[row])
            if notes[i]:
                records[i]["note"] = notes[i]
        return records

    def _prepare(self, text: str) -> tuple[dict, list[int], str]:
        """The record to fill, the token ids (empty: an error record) and a note for the reader."""
        record = {"text": text[:TEXT_ECHO]}
        if not text.strip():
            record["error"] = "empty text: type a title or a description"
            return record, [], ""
        notes = []
        if len(text) > MAX_CHARS:
            notes.append(f"text of {len(text):,} characters truncated to the first {MAX_CHARS:,}")
        ids = self.tokenizer.encode(text[:MAX_CHARS], MAX_TOKENS + 1)
        if not ids:
            record["error"] = "no readable words: the text holds only control or invisible characters"
            return record, [], ""
        if len(ids) > MAX_TOKENS:
            ids = ids[:MAX_TOKENS]
            notes.append(f"only the first {MAX_TOKENS} tokens were read")
        if self.tokenizer.known_fraction(ids) < 0.5:
            notes.append("most characters are unknown to the model (another script or symbols): low confidence")
        return record, ids, "; ".join(notes)


