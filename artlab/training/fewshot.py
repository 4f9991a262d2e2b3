"""The few-shot head: a new "labels" head that starts from what the base model knows.

A curator brings a few dozen images per class. A head trained from noise on so few images throws
away what the base model knows (issue 15: 0.78 where the base's own style head, untrained, gets 0.82).
This head instead

* reads the base model's neck vector *and* the base heads' logits, both standardised, so that a
  class the base already knows can lean on that head's answer at little cost;
* starts from an answer, not from noise: when every class is a label of one base head (folders named
  `baroque`, `symbolism`, ...; `portrait`, `landscape`, ...) from that head's logits, so that with
  no training the model answers as the base head restricted to the curator's classes; otherwise from
  the class prototypes (the mean of each class's vectors, a nearest-mean classifier);
* is pulled back towards that start (an L2 penalty on the distance from it) and trains for the number
  of epochs that k-fold cross-validation on the curator's own images picks: the k fold heads and the
  head on all the images train side by side, and the all-images head is kept at the epoch whose
  out-of-fold score is best, the start itself (epoch 0) included, so training that does not help
  on held-out images is not kept.

The base logits are linear in the neck vector, so the trained head folds exactly into one nn.Linear on
the neck: the saved model has the shipped architecture and runs (and exports) as any other.
"""

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artlab.labels import CUSTOM_HEAD
from artlab.training.finetune_stages import head_report, held_out_score
from artlab.training.loop import FitResult, fit, index_batches

HEAD = CUSTOM_HEAD
PLAIN, MIRROR = 0, 1          # the first two views of the feature cache; the augmented ones follow


def label_key(name: str) -> str:
    """Class names compared loosely: "Art Nouveau", "art-nouveau" and "art_nouveau" are one label."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def match_base_labels(classes: list[str], base_labels: dict[str, list[str]]) -> list[tuple[str, int] | None]:
    """For each class, the (head, index) of the base label it names, or None."""
    known = {}
    for head, names in base_labels.items():
        if head == HEAD:
            continue
        for index, name in enumerate(names):
            known.setdefault(label_key(name), (head, index))
    return [known.get(label_key(name)) for name in classes]


def zero_shot_head(matches: list[tuple[str, int] | None]) -> str | None:
    """The base head whose labels name every class (its answer restricted to them is the zero-shot
    answer), or None when some class is new or the classes come from different heads."""
    heads = {m[0] if m else None for m in matches}
    return heads.pop() if len(heads) == 1 and None not in heads else None


@dataclass
class Features:
    """[neck, base logits], centred and scaled with the curator's images' statistics; folds back to the neck."""

    base_heads: list[str]
    base_weight: torch.Tensor     # the base heads stacked: L x D
    base_bias: torch.Tensor       # L
    mean: torch.Tensor            # D + L
    std: torch.Tensor             # D + L

    @classmethod
    def fit(cls, model_heads: nn.ModuleDict, base_labels: dict[str, list[str]], neck: torch.Tensor) -> "Features":
        """`neck`: the plain view's vectors (N x D), on the CPU like the feature cache."""
        heads = [h for h in base_labels if h != HEAD and h in model_heads]
        if heads:
            weight = torch.cat([model_heads[h].weight.detach().float().cpu() for h in heads])
            bias = torch.cat([model_heads[h].bias.detach().float().cpu() for h in heads])
        else:
            weight, bias = torch.zeros(0, neck.shape[1]), torch.zeros(0)
        logits = neck @ weight.T + bias
        # The neck keeps its geometry (one scale for all its dimensions): scaling each dimension to unit
        # variance would weigh a dimension of noise as much as one that tells the classes apart, and the
        # prototypes' distances would mostly measure noise. Each base logit gets its own scale.
        neck_std = neck.var(0).mean().sqrt().clamp_min(1e-6).expand(neck.shape[1])
        logit_std = logits.std(0).clamp_min(1e-3) if min(logits.shape) > 1 else torch.ones(logits.shape[1])
        mean = torch.cat([neck.mean(0), logits.mean(0)])
        return cls(heads, weight, bias, mean, torch.cat([neck_std, logit_std]))

    def offset(self, head: str, base_labels: dict[str, list[str]]) -> int:
        """Where `head`'s logits start among the features."""
        start = self.base_weight.shape[1]
        for h in self.base_heads:
            if h == head:
                return start
            start += len(base_labels[h])
        raise KeyError(head)

    def __call__(self, neck: torch.Tensor) -> torch.Tensor:
        raw = torch.cat([neck, neck @ self.base_weight.T + self.base_bias], dim=-1)
        return (raw - self.mean) / self.std

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A head on the features (n x (D+L), n) as the same head on the neck (n x D, n), exactly."""
        scaled = weight / self.std
        dims = self.base_weight.shape[1]
        on_neck = scaled[:, :dims] + scaled[:, dims:] @ self.base_weight
        const = bias - scaled @ self.mean + scaled[:, dims:] @ self.base_bias
        return on_neck, const


def zero_shot_start(features: Features, matches, base_labels, n_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The head whose logits are the matched base logits themselves (undoing the standardisation)."""
    weight, bias = torch.zeros(len(matches), n_features), torch.zeros(len(matches))
    for c, (head, index) in enumerate(matches):
        k = features.offset(head, base_labels) + index
        weight[c, k], bias[c] = features.std[k], features.mean[k]
    return weight, bias


def prototype_start(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest class mean as a linear head, its sharpness fitted to the images (x: N x F standardised)."""
    means = torch.stack([x[y == c].mean(0) for c in range(n)])
    weight, bias = means, -0.5 * (means * means).sum(1)
    logits = x @ weight.T + bias
    scales = torch.logspace(-4, 1, 26)
    losses = [F.cross_entropy(s * logits, y).item() for s in scales]
    scale = float(scales[min(range(len(losses)), key=losses.__getitem__)])
    return scale * weight, scale * bias


class StackedHeads(nn.Module):
    """Several linear heads over the same features, trained side by side (the folds and the all-images
    head), each pulled towards its start with strength `anchor`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, anchor: float, dropout: float):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight.clone()), nn.Parameter(bias.clone())
        self.register_buffer("start_weight", weight.clone())
        self.register_buffer("start_bias", bias.clone())
        self.anchor, self.dropout = anchor, nn.Dropout(dropout)

    def reset(self) -> None:
        """Back to the start (epoch 0)."""
        with torch.no_grad():
            self.weight.copy_(self.start_weight)
            self.bias.copy_(self.start_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x F -> logits H x B x n."""
        return torch.einsum("bf,hcf->hbc", self.dropout(x), self.weight) + self.bias[:, None]

    def penalty(self) -> torch.Tensor:
        return self.anchor * (self.weight - self.start_weight).pow(2).sum((1, 2)).sum()


@dataclass
class FewShotHead:
    """The trained head folded onto the neck, and what cross-validation said about it."""

    weight: torch.Tensor          # n x D, for model.heads["labels"]
    bias: torch.Tensor
    held_out_probs: torch.Tensor  # N x n: each image's probabilities from the fold head that never saw it
    epoch: int                    # the epoch kept (0: the start, untrained)
    folds: int
    start: str                    # "zero-shot (<head> head)" or "prototypes"
    fit: FitResult


def fold_ids(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """A fold number per image, stratified: each class spread evenly over the folds."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.empty(len(labels), dtype=torch.long)
    for label in labels.unique().tolist():
        idx = torch.nonzero(labels == label).flatten()
        ids[idx[torch.randperm(len(idx), generator=generator)]] = torch.arange(len(idx)) % folds
    return ids


def train_fewshot(feats: torch.Tensor, labels: torch.Tensor, classes: list[str], base_heads: nn.ModuleDict,
                  base_labels: dict[str, list[str]], config, should_stop, on_epoch) -> FewShotHead:
    """Train the head on cached neck vectors (V x N x D: plain, mirror, augmented views) with k-fold CV.

    `config` is a FinetuneConfig (epochs, lr, batch_size, patience, folds, anchor, seed)."""
    features = Features.fit(base_heads, base_labels, feats[PLAIN])
    x = features(feats)
    matches = match_base_labels(classes, base_labels)
    zero_shot = zero_shot_head(matches)
    folds = max(2, min(config.folds, int(torch.bincount(labels).min())))
    fold = fold_ids(labels, folds, config.seed)
    seen = torch.stack([fold != f for f in range(folds)] + [torch.ones(len(labels), dtype=torch.bool)])
    starts = [zero_shot_start(features, matches, base_labels, x.shape[-1]) if zero_shot
              else prototype_start(x[PLAIN][mask], labels[mask], len(classes)) for mask in seen]
    heads = StackedHeads(torch.stack([w for w, _ in starts]), torch.stack([b for _, b in starts]),
                         config.anchor, dropout=0.2)
    evaluate = _HeldOut(x, labels, fold, classes)
    at_start, right_at_start = evaluate(heads), evaluate.right(heads)
    result = _fit_heads(heads, x, labels, seen, config, evaluate, should_stop, on_epoch)
    epoch = result.best_epoch
    # The base's answer was learnt from thousands of images: leave it only for held-out evidence, more
    # images right by over one standard error (a sharper loss alone is not enough: images the base
    # trained on, for one, are always answered right and ever more confidently).
    doubtful = zero_shot is not None and not clearly_better(evaluate.right(heads), right_at_start)
    if not result.history or result.best_score <= at_start["score"] or doubtful:
        heads.reset()       # no trained epoch beat the start on held-out images: keep the start
        epoch = 0
    weight, bias = features.fold(heads.weight[-1].detach(), heads.bias[-1].detach())
    return FewShotHead(weight, bias, evaluate.probs(heads), epoch, folds,
                       f"zero-shot ({zero_shot} head)" if zero_shot else "prototypes", result)


def clearly_better(right: torch.Tensor, right_before: torch.Tensor) -> bool:
    """More images right than before by over one standard error of the paired difference."""
    diff = right.float() - right_before.float()
    return bool(diff.mean() > diff.std() / len(diff) ** 0.5) if len(diff) > 1 else bool(diff.mean() > 0)


def _fit_heads(heads: StackedHeads, x, labels, seen, config, evaluate, should_stop, on_epoch) -> FitResult:
    """All heads at once through the training loop; each sees only its own images' views."""
    rows, row_labels = x.flatten(0, 1), labels.repeat(len(x))
    row_seen = seen.repeat(1, len(x)).float()        # H x (V*N)
    steps, batches = index_batches(len(rows), config.batch_size, config.seed)

    def step(model, idx):
        logits = model(rows[idx])                       # H x B x n
        y = row_labels[idx].repeat(len(logits))
        loss = F.cross_entropy(logits.flatten(0, 1), y, label_smoothing=0.1, reduction="none").view(len(logits), -1)
        weight = row_seen[:, idx]
        return ((loss * weight).sum(1) / weight.sum(1).clamp_min(1)).sum() + model.penalty()

    if config.epochs <= 0:
        return FitResult()
    return fit(heads, batches, step, epochs=config.epochs, steps_per_epoch=steps,
               param_groups=[{"params": heads.parameters(), "lr": config.lr}], device=torch.device("cpu"),
               weight_decay=0.0, warmup_epochs=1.0, evaluate=evaluate, patience=config.patience,
               should_stop=should_stop, on_epoch=on_epoch, show_progress=False)


class _HeldOut:
    """Out-of-fold metrics: each image scored (plain and mirror averaged, as predict does) by the fold
    head that did not train on it."""

    def __init__(self, x, labels, fold, classes):
        self.x, self.labels, self.fold, self.classes = x, labels, fold, classes

    def probs(self, heads: StackedHeads) -> torch.Tensor:
        with torch.no_grad():
            probs = (heads(self.x[PLAIN]).softmax(-1) + heads(self.x[MIRROR]).softmax(-1)) / 2   # H x N x n
        return probs[self.fold, torch.arange(len(self.fold))]

    def right(self, heads: StackedHeads) -> torch.Tensor:
        """Which images the held-out heads get right."""
        return self.probs(heads).argmax(1) == self.labels

    def __call__(self, heads: StackedHeads) -> dict:
        heads.eval()
        report = head_report(self.probs(heads), self.labels, self.classes)
        return {"val_accuracy": report["accuracy"], "val_loss": report["loss"], "score": held_out_score(report)}
