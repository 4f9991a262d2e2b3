"""Text inference, written once: `predict-text`, `evaluate-text`, the benchmarks and the app call this.

    models = TextModels()                       # the shipped weights, loaded once
    models.analyze(["stormy sea at night"])     # -> [{"text": ..., "subject": [...], "style": [...],
                                                #      "unsure": False, "reconstruction": "stormy sea at night"}]

Each answer is one dict of the JSON contract of `python -m artlab predict-text --json`;
bad input (empty text) gets {"text": ..., "error": ...} in its place, never an exception.
"unsure" is true when the text does not look like a title or description (`unsure_reason`): its
labels are then a guess, and the note says why.
"""

import logging
import re
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
from artlab.models.text import TextAutoencoder, TextClassifier, ngram_bags
from artlab.tokenizer import Tokenizer, TokenizerError, normalize_words, pad_batch

log = logging.getLogger(__name__)

MAX_CHARS = 20_000        # longer texts are cut here first (a 1 MB paste is answered at once)
MAX_TOKENS = 512          # what the classifier reads at most
AE_MAX_TOKENS = 32        # the autoencoder was trained on titles: it rebuilds at most this many tokens
# Longer texts are rebuilt piece by piece, each piece at most this many words and AE_MAX_TOKENS
# tokens. The autoencoder was trained on titles of 1-16 words; of 4, 6, 8, 10, 12 and 16 words a
# piece, 4 rebuilt the selection split's descriptions best (token accuracy 0.997; 8: 0.935, 16: 0.62),
# measured by `python benchmarks/text.py --piece-words 4 6 8 10 12 16` (the selection split only).
AE_PIECE_WORDS = 4
AE_MAX_PIECES = 64        # at most this many pieces are rebuilt (about 250 words at 4 a piece); a note says so
# Where a text may be cut into pieces: after the end of a sentence or clause.
CLAUSE_BREAK = re.compile(r"(?<=[.;:!?,])\s+")
# "unsure": the text does not look like a title or description the classifier knows, so its labels
# are a guess. Each test is one line a reader can check; the numbers were chosen on the selection
# split and on made-up non-texts of seed 0 (artlab.data.nontexts), `python benchmarks/text.py
# --unsure`: the most non-texts flagged with at most 4 % of the selection split's texts flagged.
UNSURE_KNOWN_SHARE = 0.6       # under 60 % of its words (of 2+ letters) in the vocabulary ...
UNSURE_MIN_WORDS = 5           # ... in a text of at least this many words (short titles hold names)
UNSURE_PIECES_PER_LETTER = 0.6  # unknown words falling apart into pieces of under ~1.7 letters: gibberish
MACHINE_TEXT = re.compile(r"://|\bwww\.|\w@\w|\.(com|org|net|io|ly|co)\b|[{}<>=\\|$_]"
                          r"|\b\d{1,4}[-/:]\d{1,2}[-/:]\d{1,4}\b")
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
                           embedding_pool=config.get("embedding_pool", False),
                           wide_buckets=config.get("wide_buckets", 0))
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
def classify_ids(model: TextClassifier, sequences: list[list[int]], device, batch_size: int = BATCH,
                 texts: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Softmax per head for non-empty token id lists, in their given order.

    `texts`: the texts the ids came from, one each; a classifier with a wide n-gram part reads them too."""
    model.eval()
    wide = getattr(model, "wide", None) is not None
    if wide and (texts is None or len(texts) != len(sequences)):
        raise ValueError("this classifier reads n-grams too: pass the texts, one per token list")
    order = _length_order(sequences)
    out: dict[str, torch.Tensor] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, lengths = pad_batch([sequences[i] for i in chunk])
        bags = ngram_bags([texts[i] for i in chunk], model.wide_buckets) if wide else None
        for head, logits in model(ids.to(device), lengths, bags).items():
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


def split_words(ids: list[int], starts: list[bool]) -> list[list[int]]:
    """Token ids grouped by word (a word and its "##" pieces stay together)."""
    words: list[list[int]] = []
    for token, start in zip(ids, starts):
        if start or not words:
            words.append([token])
        else:
            words[-1].append(token)
    return words


def autoencoder_pieces(text: str, tokenizer: Tokenizer, max_words: int = AE_PIECE_WORDS,
                       max_tokens: int = AE_MAX_TOKENS) -> list[list[int]]:
    """The token ids of `text` cut into pieces of the lengths the autoencoder was trained on.

    Whole clauses (cut after . ; : ! ? ,) are packed together while a piece stays within
    `max_words` words and `max_tokens` tokens; a longer clause is cut into windows of whole words
    of even size (a word of more than `max_tokens` tokens, into windows of tokens). Joined, the
    pieces are the whole text."""
    pieces: list[list[list[int]]] = [[]]
    for clause in CLAUSE_BREAK.split(text):
        ids = tokenizer.encode(clause)
        words = [w[i:i + max_tokens] for w in split_words(ids, tokenizer.word_starts(ids))
                 for i in range(0, len(w), max_tokens)]
        if _fits(pieces[-1] + words, max_words, max_tokens):
            pieces[-1] += words
            continue
        # Even windows: a clause of 14 words gives 7 + 7, not 12 + 2 (a 2-word piece is rebuilt out of context).
        size = -(-len(words) // -(-len(words) // max_words))
        pieces.append([])
        for word in words:
            if not _fits(pieces[-1] + [word], size, max_tokens):
                pieces.append([])
            pieces[-1].append(word)
    return [[t for w in piece for t in w] for piece in pieces if piece]


def _fits(words: list[list[int]], max_words: int, max_tokens: int) -> bool:
    return len(words) <= max_words and sum(map(len, words)) <= max_tokens


def reconstruct_texts(model: TextAutoencoder, tokenizer: Tokenizer, texts: list[str], device,
                      max_words: int = AE_PIECE_WORDS, max_pieces: int | None = AE_MAX_PIECES
                      ) -> list[tuple[list[list[int]], list[list[int]]]]:
    """(pieces, rebuilt pieces) per text: each text cut by autoencoder_pieces, the first `max_pieces`
    of every text rebuilt in one batch; join a text's rebuilt pieces for its reconstruction."""
    cut = [autoencoder_pieces(t, tokenizer, max_words) for t in texts]
    flat = [piece for pieces in cut for piece in pieces[:max_pieces]]
    rebuilt = reconstruct_ids(model, flat, device) if flat else []
    out, start = [], 0
    for pieces in cut:
        count = len(pieces[:max_pieces])
        out.append((pieces, rebuilt[start:start + count]))
        start += count
    return out


def unsure_measures(text: str, tokenizer: Tokenizer) -> tuple[bool, int, int, float]:
    """What the unsure rule reads: machine-like marks, words (of 2+ letters), unknown words, and
    the tokenizer's pieces per letter of the unknown words."""
    words = [w for w in normalize_words(text) if w.isalpha() and len(w) >= 2]
    unknown = [w for w in words if w not in tokenizer.ids]
    letters = sum(map(len, unknown))
    pieces = sum(len(tokenizer.encode(w)) for w in unknown) / letters if letters else 0.0
    return bool(MACHINE_TEXT.search(text)), len(words), len(unknown), pieces


def unsure_reason(text: str, tokenizer: Tokenizer, known_share: float = UNSURE_KNOWN_SHARE,
                  min_words: int = UNSURE_MIN_WORDS, pieces_per_letter: float = UNSURE_PIECES_PER_LETTER,
                  measures: tuple | None = None) -> str:
    """Why `text` does not look like a painting's title or description ("" when it does).
    `measures`: unsure_measures(text, tokenizer), when already computed."""
    machine, words, unknown, pieces = measures or unsure_measures(text, tokenizer)
    if machine:
        return "it looks like a link, an address, code or a date, not a title"
    if not words:
        return "it holds no words, only numbers or signs"
    if pieces > pieces_per_letter:
        return "its unknown words do not look like words (random letters?)"
    if words >= min_words and (words - unknown) / words < known_share:
        return f"only {words - unknown} of its {words} words are known to the model"
    return ""


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
        texts = [text if isinstance(text, str) else str(text) for text in texts]
        records, sequences, notes = [], [], []
        for text in texts:
            record, ids, note = self._prepare(text)
            records.append(record)
            sequences.append(ids)
            notes.append([note] if note else [])
        readable = [i for i, ids in enumerate(sequences) if ids]
        with self.lock:
            probs = classify_ids(self.classifier, [sequences[i] for i in readable], self.device,
                                 texts=[texts[i][:MAX_CHARS] for i in readable])
            rebuilt = None
            if reconstruct and self.autoencoder is not None and readable:
                # Piece by piece: cut to the lengths the autoencoder was trained on, each rebuilt, joined.
                rebuilt = reconstruct_texts(self.autoencoder, self.ae_tokenizer,
                                            [texts[i][:MAX_CHARS] for i in readable], self.device)
        for row, i in enumerate(readable):
            reason = unsure_reason(texts[i][:MAX_CHARS], self.tokenizer)
            if reason:
                notes[i].append(f"unsure: {reason}, so the labels are a guess")
            for head, names in self.labels.items():
                ranked = sorted(zip(names, probs[head][row].tolist()), key=lambda item: -item[1])
                records[i][head] = [[name, round(p, 4)] for name, p in ranked]
            records[i]["unsure"] = bool(reason)
            if rebuilt is not None:
                records[i]["reconstruction"] = self._joined(*rebuilt[row], notes[i])
            if notes[i]:
                records[i]["note"] = "; ".join(notes[i])
        return records

    def _joined(self, pieces: list[list[int]], rebuilt: list[list[int]], notes: list[str]) -> str:
        """The rebuilt pieces of one text joined (the first AE_MAX_PIECES; a note says when there were more)."""
        if len(pieces) > AE_MAX_PIECES:
            words = sum(len(self.ae_tokenizer.decode(p).split()) for p in pieces[:AE_MAX_PIECES])
            notes.append(f"reconstruction of the first {words} words only ({AE_MAX_PIECES} pieces of "
                         f"{len(pieces)})")
        return " ".join(self.ae_tokenizer.decode(ids) for ids in rebuilt)

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


