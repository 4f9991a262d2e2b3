"""Checkpoints are data with a card: `<name>.safetensors` (fp16 tensors) + `<name>.json`.

Loading reads safetensors and JSON only; nothing is ever unpickled. Writes go to a
temporary file in the same folder and are renamed into place, so a crash or a kill
never leaves a half-written model behind.

Torch is imported only by what reads or writes tensors: finding a checkpoint, its card and its
digest does not need it (the ONNX engine's `predict` runs without importing torch).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from artlab import paths
from artlab.files import atomic_write, atomic_write_text

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

LICENCE_NOTE = (
    "Trained on WikiArt images and labels, which are for non-commercial research use only; "
    "subject images gathered from WikiArt and museum sites for study; SemArt text is for research use. "
    "These weights inherit those terms: non-commercial research and education only."
)


# The checkpoints a weights folder holds, each <name>.safetensors + <name>.json.
CLASSIFIER_NAME = "art_classifier"
AUTOENCODER_NAME = "art_autoencoder"
TEXT_CLASSIFIER_NAME = "text_classifier"
TEXT_AUTOENCODER_NAME = "text_autoencoder"
MAX_CARD_BYTES = 4 * 2**20      # the shipped cards hold a few kB; the rest is an upload's folly
MAX_CARD_DEPTH = 32             # the shipped cards nest 7 levels deep


class WeightsError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match its card."""


def save_file(tensors: dict, path: str, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file as write

    write(tensors, path, metadata=metadata)


def load_file(path: str) -> dict:
    from safetensors.torch import load_file as read

    return read(path)


def save_checkpoint(model: torch.nn.Module, path: str | Path, card: dict, dtype=None) -> Path:
    """Write weights (floats stored as `dtype`, default fp16) and the JSON card beside them, each atomically."""
    import torch

    dtype = dtype or torch.float16
    path = Path(path).with_suffix(".safetensors")
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    card = {"date": datetime.date.today().isoformat(), "licence": LICENCE_NOTE, **card,
            "file": path.name, "storage_dtype": str(dtype).replace("torch.", "")}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    log.info("saved %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def read_card(path: str | Path) -> dict:
    """The JSON card beside a checkpoint, within our size and nesting limits (cards may be uploaded)."""
    card_path = Path(path).with_suffix(".json")
    try:
        size = card_path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise WeightsError(f"{card_path}: the model card is {size / 2**20:.0f} MB, over the "
                               f"{MAX_CARD_BYTES // 2**20} MB a card may take")
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{card_path}: the model card is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{card_path}: the model card is not valid JSON ({e})") from None
    except RecursionError:   # the decoder recurses once per level: thousands of [[[[ end here
        raise WeightsError(f"{card_path}: the model card is nested too deeply") from None
    if not isinstance(card, dict):
        raise WeightsError(f"{card_path}: the model card is not a JSON object")
    if _depth(card) > MAX_CARD_DEPTH:
        raise WeightsError(f"{card_path}: the model card is nested more than {MAX_CARD_DEPTH} levels deep")
    return card


def _depth(value) -> int:
    """How deeply lists and objects nest in a parsed JSON value (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_checkpoint(path: str | Path) -> dict:
    """Read the card and check the weights file's header without loading any tensor (milliseconds).

    For start-up checks: a missing, truncated or foreign file is named in a WeightsError.
    """
    card = read_card(path)
    path = Path(path).with_suffix(".safetensors")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    with open(path, "rb") as f:
        if f.read(1) == b"\x80":
            raise WeightsError(f"{path}: this looks like a pickle; only safetensors are ever loaded")
    try:
        with safe_open(str(path), "numpy") as f:  # checks that the header covers the whole file ("pt" imports torch)
            if not list(f.keys()):
                raise WeightsError(f"{path}: holds no tensors")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid safetensors file ({e})") from None
    return card


def cards_in(weights: "str | Path | None", names: tuple[str, ...]) -> dict[str, dict]:
    """The cards of the checkpoints called `names` in the folder `weights` (absent ones left out:
    a fine-tuned folder has no autoencoder, and the text models are optional)."""
    cards = {}
    for name in names:
        try:
            cards[name] = Checkpoint.find(weights, name).card
        except WeightsError:
            pass
    return cards


def check_folder(weights: "str | Path | None") -> None:
    """Fail at start-up, naming the broken file, rather than on the first visitor's request.

    Only cards and safetensors headers are read (milliseconds). The autoencoder is checked when
    its files are there (a fine-tuned folder has none).
    """
    check_checkpoint(resolve(weights, CLASSIFIER_NAME))
    autoencoder = resolve(weights, AUTOENCODER_NAME)
    if autoencoder.exists() or autoencoder.with_suffix(".json").exists():
        check_checkpoint(autoencoder)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).with_suffix(".safetensors")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"\x80\x02" or head[:2] == b"PK" or head[:1] == b"\x80":
        raise WeightsError(f"{path}: this looks like a pickle/zip file; only safetensors are ever loaded")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid safetensors file ({e})") from None


def load_into(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a checkpoint into an already built model (floats cast to the model's dtype)."""
    tensors = read_tensors(path)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{Path(path).with_suffix('.safetensors')}: does not match its card ({e})") from None
    return model


def file_digest(path: str | Path, chars: int = 16) -> str:
    """The sha256 of a weights file (its first `chars` hex digits): which exact model this is."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:chars]


def resolve(weights: "str | Path | Checkpoint | None", name: str) -> Path:
    """`weights` may be a folder holding `<name>.safetensors` or a file; default: paths.weights_dir()."""
    if isinstance(weights, Checkpoint):
        return weights.folder / f"{name}.safetensors"
    base = Path(weights) if weights else paths.weights_dir()
    if base.is_dir():
        return base / f"{name}.safetensors"
    return base.with_suffix(".safetensors")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint, resolved once at the edge (a command, the app) and passed down as a value:
    its weights file, its card (read once) and, when first asked, its digest."""

    path: Path                                   # <folder>/<name>.safetensors
    card: dict = field(compare=False, repr=False)

    @classmethod
    def find(cls, weights: "str | Path | Checkpoint | None", name: str) -> "Checkpoint":
        """The checkpoint called `name` in the folder (or file) `weights`; WeightsError when its
        card is missing or broken. A Checkpoint of that name is returned as it is."""
        if isinstance(weights, Checkpoint) and weights.name == name:
            return weights
        path = resolve(weights, name)
        return cls(path, read_card(path))

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def folder(self) -> Path:
        return self.path.parent

    @functools.cached_property
    def digest(self) -> str:
        """Which exact weights these are (16 hex digits of the file's sha256): the gallery keeps it
        beside every embedding, since two models' embeddings cannot be compared."""
        return file_digest(self.path)

    def sibling(self, name: str) -> "Checkpoint | None":
        """Another checkpoint in the same folder (a classifier's autoencoder), or None if absent."""
        path = self.folder / f"{name}.safetensors"
        return Checkpoint(path, read_card(path)) if path.with_suffix(".json").exists() else None

    def tensors(self) -> dict[str, torch.Tensor]:
        return read_tensors(self.path)

    def load_into(self, model: torch.nn.Module) -> torch.nn.Module:
        return load_into(model, self.path)
