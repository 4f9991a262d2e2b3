"""Answers that mean what they say: temperature scaling, and the "unsure" answer.

Both come from the classifier's card ("calibration"), written by `python -m artlab calibrate`
(artlab.training.calibrate), and are applied by both engines to the mirror-averaged probabilities,
so every answer (app, `predict`, the API, the gallery) is calibrated the same way.

Temperature: p' = softmax(log(p) / T) per head; the ranking never changes, only how sure it sounds.
Unsure: a picture is "unsure" when it does not look like the paintings the model learned from (its
embedding is far from every style's centre, in the shared-covariance Mahalanobis sense of Lee et al.,
2018) or when no style is likely enough. Its labels are still given, best first, and marked unsure.
No torch here: `predict` runs without it; the torch engine uses the same functions on NumPy copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
UNSURE_SUFFIX = ".unsure.safetensors"


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / temperature), row by row (probs: N x C, rows summing to 1)."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.maximum(probs, 1e-12)) / np.float32(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(probs.dtype, copy=False)


@dataclass(frozen=True)
class Space:
    """One view of a picture the rule measures (the embedding, or the backbone's pooled feature map):
    class centres, a whitening W (D x r: the top principal directions of the within-class spread,
    each divided by its standard deviation) and the largest distance a painting may have."""

    name: str                           # the analysis output it reads: "embedding" or "pooled"
    centres: np.ndarray                 # K x D
    whitening: np.ndarray               # D x r
    max_distance: float

    def __post_init__(self):
        # Converted and projected once: per picture only its own row is projected.
        object.__setattr__(self, "_whitening", self.whitening.astype(np.float64))
        object.__setattr__(self, "_projected_centres", _product(self.centres.astype(np.float64), self._whitening))

    def distances(self, rows: np.ndarray) -> np.ndarray:
        """Squared whitened distance of each row to its nearest class centre (Mahalanobis in the
        top r directions; Lee et al., 2018, with one covariance shared by all classes)."""
        projected = _product(rows.astype(np.float64), self._whitening)
        return ((projected[:, None, :] - self._projected_centres[None]) ** 2).sum(axis=2).min(axis=1)


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b without BLAS: NumPy's OpenBLAS threads spin for a while after each call and took the
    cores from ONNX Runtime's next run (8 ms more a picture, measured); einsum's own loop, in this
    thread, costs under a millisecond for a picture's 1280 x 512."""
    return np.einsum("ij,jk->ik", a, b, optimize=False)


@dataclass(frozen=True)
class UnsureRule:
    """Unsure when a picture is farther than a painting may be from every class centre, in any of
    the spaces: it does not look like what the model learned from."""

    spaces: tuple[Space, ...]

    @property
    def needs(self) -> set[str]:
        return {space.name for space in self.spaces}

    def flags(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """A boolean per row: is the model unsure of this picture?"""
        far = [space.distances(outputs[space.name]) > space.max_distance for space in self.spaces]
        return np.logical_or.reduce(far)


@dataclass(frozen=True)
class Calibration:
    """What a classifier card says about how sure to sound; the identity for a card without it."""

    temperatures: dict[str, float] = field(default_factory=dict)
    unsure: UnsureRule | None = None

    @property
    def needs(self) -> set[str]:
        """The analysis outputs the unsure rule reads besides the probabilities."""
        return self.unsure.needs if self.unsure is not None else set()

    def apply(self, probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Tempered probabilities per head (other entries, such as the embedding, unchanged), and
        "unsure" (a boolean per row) when the card has a rule."""
        out = {k: temper(v, self.temperatures[k]) if k in self.temperatures else v for k, v in probs.items()}
        if self.unsure is not None and self.unsure.needs <= set(probs):
            out["unsure"] = self.unsure.flags(probs)
        return out


def calibration_from_card(card: dict, tensors: dict | None = None) -> Calibration:
    """The card's "calibration" section as a Calibration (none: the identity). `tensors`: the
    unsure rule's centres and whitenings ("<space>.centres", "<space>.whitening"), from the
    checkpoint's companion file; a rule without them is left out."""
    section = card.get("calibration") or {}
    temperatures = {head: float(t) for head, t in (section.get("temperature") or {}).items()
                    if isinstance(t, (int, float)) and MIN_TEMPERATURE <= t <= MAX_TEMPERATURE}
    limits = (section.get("unsure") or {}).get("max_distance") or {}
    tensors = tensors or {}
    spaces = tuple(Space(name, np.asarray(tensors[f"{name}.centres"], np.float32),
                         np.asarray(tensors[f"{name}.whitening"], np.float32), float(limit))
                   for name, limit in sorted(limits.items())
                   if f"{name}.centres" in tensors and f"{name}.whitening" in tensors)
    return Calibration(temperatures, UnsureRule(spaces) if spaces else None)


def companion_file(classifier_path: Path) -> Path:
    """Where a classifier's unsure-rule tensors are kept: beside it, `<name>.unsure.safetensors`."""
    return Path(classifier_path).with_name(Path(classifier_path).stem + UNSURE_SUFFIX)


def calibration_for(checkpoint) -> Calibration:
    """The Calibration of a classifier Checkpoint: its card's section and its companion file
    (safetensors: plain arrays, nothing unpickled), if both are there."""
    section = checkpoint.card.get("calibration")
    if not isinstance(section, dict):
        return Calibration()
    path = companion_file(checkpoint.path)
    tensors = {}
    if section.get("unsure") and path.is_file():
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
    return calibration_from_card(checkpoint.card, tensors)
