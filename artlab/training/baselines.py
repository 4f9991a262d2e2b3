"""The simplest baselines the text models are measured against: logistic regression on bags of
words (or of any hashed features), one per head, trained on the same texts."""

import torch
import torch.nn.functional as F

from artlab.data.text import TEXT_TASKS, TextSet, labelled_rows, task_rows
from artlab.labels import TEXT_HEADS
from artlab.tokenizer import normalize_words
from artlab.training.metrics import classification_report


def bow_baseline(train: TextSet, val: TextSet, epochs: int = 20, seed: int = 0) -> dict:
    """Logistic regression on bags of words (words seen twice in training), one per head, in torch.

    Trained on the same texts as the RNN, measured on the same validation tasks."""
    counts: dict[str, int] = {}
    for text in train.texts:
        for word in set(normalize_words(text)):
            counts[word] = counts.get(word, 0) + 1
    vocab = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= 2)}
    return bag_regression(train, val, lambda t: sorted({vocab[w] for w in normalize_words(t) if w in vocab}),
                          len(vocab), epochs=epochs, seed=seed)


def _bags(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of feature ids as EmbeddingBag's (flat ids, offsets)."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    return torch.tensor([i for r in rows for i in r], dtype=torch.long), offsets


def bag_regression(train: TextSet, val: TextSet, featurize, size: int, *, epochs: int = 20,
                   lr: float = 0.02, l2: float = 1e-5, seed: int = 0, on_epoch=None) -> dict:
    """Logistic regression on bags of feature ids, one per head, scored on TEXT_TASKS after the last epoch.

    featurize(text) gives a text's distinct feature ids below `size`. With on_epoch, the model is
    also scored after every epoch and on_epoch(head, epoch, reports) sees those reports."""
    torch.manual_seed(seed)
    train_rows = [featurize(t) for t in train.texts]
    val_flat, val_offsets = _bags([featurize(t) for t in val.texts])
    report = {}
    for head, names in TEXT_HEADS.items():
        keep = [i for i in labelled_rows(train) if train.labels[head][i] >= 0]
        target = train.labels[head][torch.tensor(keep)]
        model = torch.nn.EmbeddingBag(size, len(names), mode="sum")
        torch.nn.init.zeros_(model.weight)
        bias = torch.nn.Parameter(torch.zeros(len(names)))
        optimizer = torch.optim.Adam([model.weight, bias], lr=lr)

        def score() -> dict:
            with torch.no_grad():
                predicted = (model(val_flat, val_offsets) + bias).argmax(1)
            scores = {}
            for name, task_head, kinds in TEXT_TASKS:
                index = torch.tensor(task_rows(val, head, kinds), dtype=torch.long)
                if task_head == head and len(index):
                    scores[name] = classification_report(predicted[index], val.labels[head][index], names)
            return scores

        for epoch in range(epochs):
            for batch in torch.randperm(len(keep)).split(512):
                logits = model(*_bags([train_rows[keep[j]] for j in batch.tolist()])) + bias
                loss = F.cross_entropy(logits, target[batch])
                if l2:
                    loss = loss + l2 * model.weight.pow(2).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if on_epoch:
                on_epoch(head, epoch + 1, score())
        report.update(score())
    return report
