"""ArtLab's own text tokenizer: words first, then sub-word pieces, then characters.

Text is normalised once (`normalize`): control characters dropped, accents folded
(NFKD, combining marks removed: "Arlésienne" -> "arlesienne"), lower-cased, digits and
punctuation split from words. A word in the vocabulary is one token; any other word is
cut greedily into the longest known pieces (WordPiece style, "##" marks a piece that
continues a word), down to single characters. Only a character never seen in training
(a Chinese ideograph, an emoji) becomes `<unk>`, one per character, so nothing crashes
and decoding still keeps the word boundaries.

The vocabulary is a small JSON file saved beside the text weights.
"""

import collections
import json
import re
import unicodedata
from pathlib import Path

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
CONTINUE = "##"
MAX_PIECE = 8          # longest sub-word piece considered when building the vocabulary

# A word is a run of letters, a run of digits, or any other single visible character.
_WORD = re.compile(r"[^\W\d_]+|\d+|\S", re.UNICODE)
_NO_SPACE_BEFORE = set(",.;:!?)]}%'-")
_NO_SPACE_AFTER = set("([{'-")
UNKNOWN_MARK = "\u25a1"   # shown for a character the vocabulary has never seen


class TokenizerError(ValueError):
    """A vocabulary file is missing or malformed."""


def _clean_char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Mn":                      # combining accent: folded away
        return ""
    if category[0] in "CZ":                   # control, format, separators: treated as a space
        return " "
    return ch


def normalize_words(text: str) -> list[str]:
    """Lower-case, accent-free, control-free words and punctuation marks, in order."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(_clean_char(ch) for ch in text).lower()
    return _WORD.findall(text)


def join_words(words: list[str]) -> str:
    """Words back into readable text: no space before a comma, after an opening bracket, etc."""
    out = ""
    for word in words:
        if out and word[0] not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out += " "
        out += word
    return out


def normalize(text: str) -> str:
    """The canonical form of a text: what `decode(encode(text))` gives back."""
    return join_words(normalize_words(text))


class Tokenizer:
    def __init__(self, tokens: list[str]):
        if list(tokens[:len(SPECIALS)]) != list(SPECIALS):
            raise TokenizerError(f"a vocabulary must start with {SPECIALS}")
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise TokenizerError("the vocabulary holds duplicate tokens")
        self._cache: dict[str, list[int]] = {}
        # No piece is longer than this, so a 20,000-letter "word" costs linear time, not quadratic.
        self.longest = max(len(t) for t in self.tokens)

    def __len__(self):
        return len(self.tokens)

    # ------------------------------------------------------------ building

    @classmethod
    def build(cls, texts, max_words: int = 6000, min_count: int = 3, max_pieces: int = 1500) -> "Tokenizer":
        """Frequent words, then the most frequent pieces of words, then every character seen."""
        counts = collections.Counter(w for text in texts for w in normalize_words(text))
        words = [w for w, c in counts.most_common(max_words) if c >= min_count]
        chars = sorted({ch for w in counts for ch in w})
        # Pieces of the words left out: first pieces as-is, later ones with "##".
        piece_counts = collections.Counter()
        kept = set(words)
        for word, count in counts.items():
            if word in kept or len(word) < 3:
                continue
            for start in range(len(word)):
                for end in range(start + 2, min(len(word), start + MAX_PIECE) + 1):
                    piece = word[start:end] if start == 0 else CONTINUE + word[start:end]
                    piece_counts[piece] += count
        pieces = [p for p, c in piece_counts.most_common(max_pieces) if c >= min_count]
        continuation_chars = [CONTINUE + ch for ch in chars]
        vocab = list(SPECIALS)
        seen = set(vocab)
        for token in words + pieces + chars + continuation_chars:
            if token not in seen:
                vocab.append(token)
                seen.add(token)
        return cls(vocab)

    # ------------------------------------------------------------ saving

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": "artlab-wordpiece-1", "normalisation": "NFKD, accents and control chars "
                   "removed, lower case, words/digits/punctuation split", "tokens": self.tokens}
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(payload, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls(payload["tokens"])
        except FileNotFoundError:
            raise TokenizerError(f"{path}: vocabulary file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise TokenizerError(f"{path}: not a valid vocabulary file ({e})") from None

    # ------------------------------------------------------------ encoding

    def _encode_word(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if word in self.ids:
            out = [self.ids[word]]
        else:
            out, start = [], 0
            while start < len(word):
                prefix = CONTINUE if start else ""
                for end in range(min(len(word), start + self.longest), start, -1):  # longest first
                    token_id = self.ids.get(prefix + word[start:end])
                    if token_id is not None:
                        break
                else:
                    token_id, end = UNK_ID, start + 1            # a character never seen
                out.append(token_id)
                start = end
        if len(self._cache) < 200_000:
            self._cache[word] = out
        return out

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        ids = []
        for word in normalize_words(text):
            ids.extend(self._encode_word(word))
            if max_tokens is not None and len(ids) >= max_tokens:
                return ids[:max_tokens]
        return ids

    def word_starts(self, ids: list[int]) -> list[bool]:
        """True where a token begins a new word (used to drop and swap whole words)."""
        return [not self.tokens[i].startswith(CONTINUE) for i in ids]

    def decode(self, ids) -> str:
        words: list[str] = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID) or not 0 <= i < len(self.tokens):
                continue
            token = UNKNOWN_MARK if i == UNK_ID else self.tokens[i]
            if token.startswith(CONTINUE) and words:
                words[-1] += token[len(CONTINUE):]
            else:
                words.append(token.removeprefix(CONTINUE))
        return join_words(words)

    def known_fraction(self, ids: list[int]) -> float:
        return sum(i != UNK_ID for i in ids) / len(ids) if ids else 0.0


def pad_batch(sequences: list[list[int]]):
    """Token id lists -> (B x T ids padded with PAD_ID, B lengths). Empty lists get length 0."""
    import torch
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), max(1, int(lengths.max()) if len(sequences) else 1)), PAD_ID,
                     dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids, lengths
