"""The training loop, written once. `artlab train`, `train-text`, `finetune` and the
app's Train tab all call `fit`; each brings its own batches, loss and evaluation.

Like torchvision's references/classification: AdamW, warm-up then cosine decay,
label smoothing in the losses, mixed precision on GPUs, an EMA-free best-epoch
checkpoint kept in memory, early stopping, and a stop signal honoured at the next step
(Ctrl-C or the UI's Stop button) that keeps the best model so far.
"""

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from tqdm import tqdm

from artlab.device import autocast_dtype

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one record per epoch
    best_score: float = -math.inf
    best_epoch: int = -1
    stopped: bool = False       # True when a stop signal or Ctrl-C ended training early
    early_stopped: bool = False
    out_of_time: bool = False   # True when time_budget_s ended training


def index_batches(count: int, batch_size: int, seed: int) -> tuple[int, Callable[[int], Iterable[torch.Tensor]]]:
    """(steps per epoch, batches): each epoch a fresh shuffle of range(count), cut into whole batches
    of at most `batch_size` indices (the remainder is dropped), reproducible from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = max(1, min(batch_size, count))
    steps = max(1, count // batch_size)

    def batches(epoch):
        order = torch.randperm(count, generator=generator)
        for i in range(steps):
            yield order[i * batch_size:(i + 1) * batch_size]

    return steps, batches


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int, deadline: float | None = None):
    """Linear warm-up, then cosine decay to zero at the last step or at `deadline`, whichever is first.

    The deadline (a time.time() value) lets a run with a fixed time budget still finish
    its schedule, instead of being cut off at a high learning rate.
    """
    started = time.time()

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if deadline:
            progress = max(progress, (time.time() - started) / max(1e-9, deadline - started))
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    model: torch.nn.Module,
    batches: Callable[[int], Iterable],
    step: Callable[[torch.nn.Module, object], torch.Tensor],
    *,
    epochs: int,
    steps_per_epoch: int,
    param_groups: list[dict],
    device: torch.device,
    weight_decay: float = 0.05,
    warmup_epochs: float = 1.0,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    patience: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_epoch: Callable[[dict], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    grad_clip: float | None = 2.0,
    time_budget_s: float | None = None,
    show_progress: bool = True,
) -> FitResult:
    """Train `model` in place; on return it holds the weights of its best epoch.

    batches(epoch) yields batches; step(model, batch) returns the loss; evaluate(model)
    returns metrics with a "score" (higher is better) used to pick the best epoch.
    With `time_budget_s`, training stops (and the schedule ends) once that much time has passed.
    """
    deadline = time.time() + time_budget_s if time_budget_s else None
    optimizer = torch.optim.AdamW(param_groups, weight_decay=weight_decay)
    total = epochs * steps_per_epoch
    scheduler = warmup_cosine(optimizer, total, max(1, int(warmup_epochs * steps_per_epoch)), deadline)
    stepper = _Stepper(model, step, optimizer, scheduler, device, grad_clip, on_step, total)
    result, best_state = FitResult(), None
    for epoch in range(epochs):
        started = time.time()
        bar = tqdm(batches(epoch), total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}",
                   leave=False, disable=not show_progress or None)
        losses = _train_epoch(model, bar, stepper, result, should_stop, deadline)
        if not losses:
            break
        record = {"epoch": epoch + 1, "train_loss": sum(losses) / len(losses),
                  "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - started, 1)}
        if evaluate:
            model.eval()
            record.update(evaluate(model))
        score = record.get("score", -record["train_loss"])
        if score > result.best_score:
            result.best_score, result.best_epoch = score, epoch + 1
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        result.history.append(record)
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
        if on_epoch:
            on_epoch(record)
        if result.stopped or result.out_of_time or _patience_ran_out(result, epoch, patience):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


@dataclass
class _Stepper:
    """One optimisation step: autocast, backward (scaled for fp16), clipping, optimizer and schedule."""

    model: torch.nn.Module
    loss_of: Callable
    optimizer: torch.optim.Optimizer
    scheduler: object
    device: torch.device
    grad_clip: float | None
    on_step: Callable | None
    total: int
    done: int = 0

    def __post_init__(self):
        self.amp = autocast_dtype(self.device)
        fp16 = self.amp == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type) if fp16 else None

    def __call__(self, batch) -> float:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            loss = self.loss_of(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        (self.scaler.step(self.optimizer), self.scaler.update()) if self.scaler else self.optimizer.step()
        self.scheduler.step()
        self.done += 1
        value = loss.item()
        if self.on_step:
            self.on_step(self.done, self.total, value)
        return value


def _train_epoch(model, bar, stepper: _Stepper, result: FitResult, should_stop, deadline) -> list[float]:
    """One pass over the epoch's batches; a stop signal, the deadline or Ctrl-C ends it early
    (and is recorded in `result`). Returns the batches' losses."""
    model.train()
    losses = []
    try:
        for batch in bar:
            out_of_time = bool(deadline) and time.time() > deadline
            if out_of_time or should_stop():
                result.stopped, result.out_of_time = not out_of_time, out_of_time
                break
            losses.append(stepper(batch))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    except KeyboardInterrupt:
        log.warning("interrupted: keeping the best model so far")
        result.stopped = True
    return losses


def _patience_ran_out(result: FitResult, epoch: int, patience: int | None) -> bool:
    if patience and epoch + 1 - result.best_epoch >= patience:
        log.info("early stopping: no better score for %d epochs", patience)
        result.early_stopped = True
        return True
    return False
