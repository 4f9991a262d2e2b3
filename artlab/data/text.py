"""The text data: WikiArt titles and SemArt descriptions with their subject and style labels."""

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

GENRE_TO_SUBJECT = {
    "portrait": "portrait", "landscape": "landscape", "cityscape": "landscape",
    "genre_painting": "genre_scene", "religious_painting": "history_religious", "still_life": "still_life",
}
SEMART_TYPE_TO_SUBJECT = {
    "religious": "history_religious", "mythological": "history_religious", "historical": "history_religious",
    "portrait": "portrait", "landscape": "landscape", "genre": "genre_scene", "still-life": "still_life",
}


def read_csv_rows(path: str | Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


VAL_FRACTION = 0.15
# The share of train (by painting, from the same hash) kept aside to choose epochs, sizes and
# recipes on, so that val is measured once per shipped model and chooses nothing.
SELECTION_FRACTION = 0.15
# The splits load_text_data knows: "train" is "fit" + "selection"; the three are disjoint.
SPLITS = ("train", "val", "fit", "selection")


@dataclass
class TextSet:
    """Texts with one label per head (-1 where a head has no label) and what kind of text each is."""

    texts: list[str]
    labels: dict[str, torch.Tensor]           # "subject"/"style" -> N, int64
    kinds: list[str]                          # "title", "semart_title" or "description"

    def __len__(self):
        return len(self.texts)

    def select(self, keep: list[int]) -> "TextSet":
        index = torch.tensor(keep, dtype=torch.long)
        return TextSet([self.texts[i] for i in keep], {h: t[index] for h, t in self.labels.items()},
                       [self.kinds[i] for i in keep])

    @staticmethod
    def concat(sets: list["TextSet"]) -> "TextSet":
        heads = sorted({h for s in sets for h in s.labels})
        return TextSet([t for s in sets for t in s.texts],
                       {h: torch.cat([s.labels.get(h, torch.full((len(s),), -1)) for s in sets]) for h in heads},
                       [k for s in sets for k in s.kinds])


def _painting_bucket(artist: str, title: str) -> float:
    """A number in [0, 1) from md5 of the painting (artist + title, case and spacing ignored)."""
    import hashlib
    key = f"{' '.join(artist.lower().split())}|{' '.join(title.lower().split())}"
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:4], "big") / 2 ** 32


def painting_split(artist: str, title: str, val_fraction: float = VAL_FRACTION) -> str:
    """"train" or "val" from a hash of the painting (artist + title), so the same painting
    (WikiArt lists some several times, one per year) never lands on both sides."""
    return "val" if _painting_bucket(artist, title) < val_fraction else "train"


def selection_split(artist: str, title: str, val_fraction: float = VAL_FRACTION,
                    selection_fraction: float = SELECTION_FRACTION) -> str:
    """"val", "selection" or "fit": train (by painting, as painting_split) cut in two by the same hash.

    The selection split is the next `selection_fraction` of train's hash range after val, so it is
    disjoint from val and from fit by construction, and stable across runs and machines."""
    bucket = _painting_bucket(artist, title)
    if bucket < val_fraction:
        return "val"
    return "selection" if bucket < val_fraction + selection_fraction * (1 - val_fraction) else "fit"


def in_split(artist: str, title: str, split: str | None) -> bool:
    """Whether a painting belongs to `split` (None: every painting)."""
    if split is None:
        return True
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
    if split in ("train", "val"):
        return painting_split(artist, title) == split
    return selection_split(artist, title) == split


def _label_index(names: tuple[str, ...], value: str | None) -> int:
    return names.index(value) if value in names else -1


def load_wikiart_titles(path: str | Path, split: str | None = None) -> TextSet:
    """wikiart_titles.csv: style label where the style is one of ours, subject where the genre maps."""
    from artlab.labels import STYLES, SUBJECTS
    texts, styles, subjects = [], [], []
    for row in read_csv_rows(path):
        title = (row.get("title") or "").strip()
        if not title or not in_split(row.get("artist", ""), title, split):
            continue
        style = _label_index(STYLES, row.get("style"))
        subject = _label_index(SUBJECTS, GENRE_TO_SUBJECT.get(row.get("genre", "")))
        texts.append(title)
        styles.append(style)
        subjects.append(subject)
    return TextSet(texts, {"style": torch.tensor(styles, dtype=torch.long),
                           "subject": torch.tensor(subjects, dtype=torch.long)}, ["title"] * len(texts))


def load_semart(path: str | Path, split: str | None = None) -> TextSet:
    """semart.csv: each painting gives a description and a title, both labelled with its subject."""
    from artlab.labels import SUBJECTS
    texts, subjects, kinds = [], [], []
    for row in read_csv_rows(path):
        title, description = (row.get("title") or "").strip(), (row.get("description") or "").strip()
        if not in_split(row.get("author", ""), title, split):
            continue
        subject = _label_index(SUBJECTS, SEMART_TYPE_TO_SUBJECT.get(row.get("type", "")))
        for text, kind in ((description, "description"), (title, "semart_title")):
            if text:
                texts.append(text)
                subjects.append(subject)
                kinds.append(kind)
    return TextSet(texts, {"style": torch.full((len(texts),), -1, dtype=torch.long),
                           "subject": torch.tensor(subjects, dtype=torch.long)}, kinds)


def load_text_data(root: str | Path, split: str | None = None) -> TextSet:
    """The shared text data (`root` holds text/, or is text/ itself), one split (SPLITS) or all of it."""
    root = Path(root)
    folder = root / "text" if (root / "text").is_dir() else root
    titles, semart = folder / "wikiart_titles.csv", folder / "semart.csv"
    if not titles.is_file() and not semart.is_file():
        raise FileNotFoundError(f"{folder}: expected wikiart_titles.csv and/or semart.csv")
    sets = []
    if titles.is_file():
        sets.append(load_wikiart_titles(titles, split))
    if semart.is_file():
        sets.append(load_semart(semart, split))
    return TextSet.concat(sets)


# (name shown in reports, head, kinds of text) for each validation figure the text models report
TEXT_TASKS = (("title->subject", "subject", ("title",)), ("title->style", "style", ("title",)),
              ("description->subject", "subject", ("description",)))


def task_rows(texts: TextSet, head: str, kinds: tuple[str, ...]) -> list[int]:
    """The rows of `kinds` of text that have a `head` label."""
    return [i for i, k in enumerate(texts.kinds) if k in kinds and texts.labels[head][i] >= 0]


def labelled_rows(texts: TextSet) -> list[int]:
    """The rows with at least one label."""
    return [i for i in range(len(texts)) if any(t[i] >= 0 for t in texts.labels.values())]
