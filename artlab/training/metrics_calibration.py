"""How well probabilities mean what they say: expected calibration error, temperatures, thresholds.

NumPy only, on probabilities (N x C) and integer labels; used by `python -m artlab calibrate`
and `evaluate`."""

import numpy as np

from artlab.inference.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE, temper

ECE_BINS = 15      # equal-width confidence bins, as Guo et al. (2017) report it


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over confidence bins of (share of images) x |accuracy - mean confidence|."""
    if len(labels) == 0:
        return 0.0
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def chance_error(probs: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model would still show on this many images: the mean ECE when
    each label is drawn from the probabilities themselves. On 150 images it is far from 0, and the
    reader should see it beside the measured ECE."""
    rng = np.random.default_rng(seed)
    cumulative = probs.cumsum(axis=1)
    values = []
    for _ in range(draws):
        labels = (rng.random((len(probs), 1)) > cumulative).sum(axis=1).clip(max=probs.shape[1] - 1)
        values.append(expected_calibration_error(probs, labels))
    return float(np.mean(values))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood, on a log grid (one parameter:
    a grid is exact enough, and cannot diverge)."""
    grid = np.exp(np.linspace(np.log(MIN_TEMPERATURE * 4), np.log(MAX_TEMPERATURE / 4), 481))
    losses = [negative_log_likelihood(temper(probs, t), labels) for t in grid]
    return float(grid[int(np.argmin(losses))])


def folds(count: int, k: int, seed: int = 0) -> np.ndarray:
    """A fold number (0..k-1) per row, shuffled, the folds equal in size to within one."""
    return np.random.default_rng(seed).permutation(count) % k


def cross_fitted_temperature(probs: np.ndarray, labels: np.ndarray, k: int = 5,
                             seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold tempered probabilities (each fold tempered by the temperature fitted on the
    others) and those temperatures: an honest estimate of calibrating on data the figure never saw."""
    fold = folds(len(labels), k, seed)
    tempered, temperatures = np.empty_like(probs), []
    for f in range(k):
        t = fit_temperature(probs[fold != f], labels[fold != f])
        tempered[fold == f] = temper(probs[fold == f], t)
        temperatures.append(t)
    return tempered, temperatures
