"""What the Train tab's events do; `train_tab.py` lays the tab out and wires these to it.

Each handler takes the visitor's CurationSession (artlab.curation) and their language, and
returns what the tab shows, worded from i18n's TEXTS. Names visitors chose (classes, files, zip
entries) pass through artlab.safe_text. The library's own reasons for refusing an upload or a run
(a zip entry that escapes its folder, a training failure) are English sentences quoted inside.
"""

import logging
import math
import re
import time
from contextlib import closing
from pathlib import Path

import gradio as gr
import pandas as pd

from artlab.checkpoints import WeightsError
from artlab.curation import (
    CurationSession,
    Done,
    Epoch,
    Failed,
    Progress,
    export_zip,
    training_busy,
    try_model,
)
from artlab.images import ImageError
from artlab.lab import Lab
from artlab.safe_text import escape_user_text
from artlab.store.uploads import UploadError
from artlab.training.finetune import FinetuneConfig
from artlab.ui.handlers import picture_problem
from artlab.ui.i18n import t

log = logging.getLogger(__name__)

PLOT_EVERY_S = 0.5          # the head stage runs many epochs a second: redraw at most this often
METRICS = (("train_loss", "m_train_loss", "#4c78a8"), ("val_loss", "m_val_loss", "#f58518"),
           ("val_accuracy", "m_val_acc", "#e45756"))       # a record's field, its name's key, its colour
# finetune's progress texts -> TEXTS keys ("fine-tuning the last 2 blocks" keeps its number)
_PROGRESS = {"reading images": "p_reading", "computing features": "p_features", "training the head": "p_head",
             "writing the model": "p_writing", "done": "p_done"}


def problem(error) -> str:
    """A refusal for the notes: its message names classes, files and zip entries the visitor chose."""
    return f"❌ {escape_user_text(error)}"


def _listing(lines: list[str], most: int = 20) -> str:
    """Skipped files as a Markdown list; each line holds a file or zip entry name."""
    return "\n".join(f"- {escape_user_text(line)}" for line in lines[:most])


def overview(session: CurationSession | None, lang: str, note: str = "", selected: str | None = None):
    """(counts table, notes markdown, class dropdown update) for the visitor's classes."""
    counts = session.counts() if session else {}
    checks = session.checks() if session else []
    table = pd.DataFrame({t("col_class", lang): list(counts), t("col_images", lang): list(counts.values())})
    # A check may name a class: each sentence is escaped whole (Markdown shows the same characters).
    text = "\n".join(f"- ⚠️ {escape_user_text(t('p_' + key, lang, **values))}" for key, values in checks) \
        or t("ready", lang)
    if note:
        text = note + "\n\n" + text
    selected = selected if selected in counts else (list(counts)[-1] if counts else None)
    return table, text, gr.update(choices=list(counts), value=selected)


def close(session: CurationSession | None, lab: Lab | None = None) -> None:
    """gr.State's delete_callback: a visitor's images and models go when their session does."""
    if session:
        session.close()
        if lab is not None:
            lab.forget(session.folder)


# ------------------------------------------------------------------ adding data

def add_class(name, session, lang="en"):
    session = session or CurationSession()
    try:
        added = session.add_class(name)
    except UploadError as e:
        return (session, *overview(session, lang, problem(e)), name)
    return (session, *overview(session, lang, t("class_added", lang, name=escape_user_text(added)), added), "")


def add_class_images(files, target, session, lang="en"):
    session = session or CurationSession()
    if not target:
        return (session, *overview(session, lang, t("choose_class", lang)))
    paths = [f if isinstance(f, str) else getattr(f, "name", f) for f in (files or [])]
    try:
        result = session.add_images(paths, target)
    except UploadError as e:
        return (session, *overview(session, lang, problem(e)))
    name, saved = next(iter(result.classes.items()))
    note = t("images_added", lang, n=len(saved), name=escape_user_text(name))
    if result.skipped:
        note += f"\n\n{t('skipped_images', lang)}\n" + _listing(result.skipped)
    return (session, *overview(session, lang, note, name))


def add_zip(upload, session, lang="en"):
    session = session or CurationSession()
    if not upload:
        return (session, *overview(session, lang))
    try:
        result = session.add_zip(upload if isinstance(upload, str) else upload.name)
    except UploadError as e:
        return (session, *overview(session, lang, problem(e)))
    note = t("zip_imported", lang, n=sum(result.counts().values()), k=len(result.classes))
    if result.skipped:
        note += f"\n\n{t('skipped_images', lang)}\n" + _listing(result.skipped)
    return (session, *overview(session, lang, note))


def start_over(session, weights, lang="en", lab: Lab | None = None):
    """A new session: classes, models and every result of the last one go. A model of that session
    in use on the Artwork tab is gone too, so the visitor is back on the usual model (and told)."""
    note = t("started_over", lang)
    own = bool(session and weights and Path(weights).is_relative_to(session.folder))
    close(session, lab)
    session = CurationSession()
    if own:
        note += " " + t("back_to_default", lang)
    cleared = ("", "", None, None, [], gr.DownloadButton(value=None, visible=False), None)
    return (session, *overview(session, lang, note), *cleared, None if own else gr.skip())


# ------------------------------------------------------------------ training

def queued_notice(lang="en"):
    """Runs outside the queue: tell a visitor that another model is training before theirs starts."""
    if training_busy():
        gr.Info(t("queued", lang))


def stop(session, lang="en"):
    return t("stopping" if session and session.stop() else "nothing_training", lang)


def plot(history: list[dict] | None, lang: str) -> str:
    """The live plot, as SVG: a line per metric over whole epochs (counted through every stage),
    its legend under it. Drawn here rather than by gr.LinePlot, whose axis falls on fractions of an
    epoch, whose legend is clipped and whose translated title breaks when it is updated (gradio 6)."""
    history = history or []
    if not history:
        return ""
    series = [(t(key, lang), colour, [(i, r[field]) for i, r in enumerate(history, 1) if r.get(field) is not None])
              for field, key, colour in METRICS]
    last = max(2, len(history))
    top = max([1.0] + [v for _, _, points in series for _, v in points])
    top = math.ceil(top * 2) / 2                        # 1.0, 1.5, 2.0, ...
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200) if (last - 1) / s <= 10)

    def x(epoch):
        return 60 + (epoch - 1) / (last - 1) * 564

    def y(value):
        return 12 + (1 - value / top) * 200

    marks = [f'<line x1="60" x2="624" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e6dfd3"/>'
             f'<text x="54" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
             for v in [top * k / 4 for k in range(5)]]
    marks += [f'<text class="x" x="{x(e):.1f}" y="236" text-anchor="middle">{e}</text>'
              for e in sorted({1, *range(step, last + 1, step)})]
    for _, colour, points in series:
        if points:
            line = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in points)
            marks.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
    legend = "".join(f'<span><i style="background:{colour}"></i>{name}</span>' for name, colour, points in series
                     if points)
    return (f'<div class="train-plot-title">{t("plot", lang)}</div>'
            f'<svg viewBox="0 0 640 268" role="img" class="train-plot-svg">{"".join(marks)}'
            f'<text x="342" y="264" text-anchor="middle" class="axis">{t("axis_epoch", lang)}</text></svg>'
            f'<div class="train-legend">{legend}</div>')


def results(card: dict | None, lang: str):
    """(per-class accuracy table, confusion matrix table, misclassified gallery) from a model's card."""
    if not card:
        return None, None, []
    val = card["metrics"]["val"]
    per_class = pd.DataFrame({t("col_class", lang): list(val["per_class"]),
                              t("col_acc", lang): list(val["per_class"].values()),
                              t("col_count", lang): [card["data"]["val_per_class"][c] for c in val["per_class"]]})
    labels = val["confusion"]["labels"]
    confusion = pd.DataFrame(val["confusion"]["matrix"], columns=[f"→ {x}" for x in labels])
    confusion.insert(0, t("col_true", lang), labels)
    wrong = [(m["path"], f"{m['true']} → {m['predicted']} ({m['probability']:.0%})") for m in val["misclassified"]]
    return per_class, confusion, wrong


def trained(card: dict, lang: str) -> str:
    val, training = card["metrics"]["val"], card["training"]
    return t("trained", lang, seconds=training["seconds"], accuracy=val["accuracy"], count=val["count"],
             how=t("stopped_how", lang) if training["stopped_by_user"] else "")


def _progress_text(text: str, lang: str) -> str:
    blocks = re.fullmatch(r"fine-tuning the last (\d+) blocks", text)
    if blocks:
        return t("p_blocks", lang, n=blocks.group(1))
    return t(_PROGRESS[text], lang) if text in _PROGRESS else text


def _failed(message: str, lang: str) -> str:
    return t("stopped_early", lang) if message.startswith("stopped before") else problem(message)


def make_train(lab: Lab):
    """The Train button's handler, a generator: outputs [session, status, plot, per-class table,
    confusion table, misclassified, download button, card]. The last run's results go at once."""

    def train(session, epochs, lr, batch, depth, lang="en", progress=gr.Progress()):
        session = session or CurationSession()
        config = FinetuneConfig(epochs=int(epochs), lr=float(lr), batch_size=int(batch), depth=str(depth),
                                device=lab.device)
        history, last_plot = [], 0.0
        yield session, "", "", None, None, [], gr.DownloadButton(value=None, visible=False), None
        # closing(): a visitor who leaves closes this generator, which stops their run at its next step.
        with closing(session.train(lab.weights, config)) as events:
            for event in events:
                match event:
                    case Progress(fraction, text):
                        progress(fraction, desc=_progress_text(text, lang))
                    case Epoch(record):
                        history.append(record)
                        if time.monotonic() - last_plot > PLOT_EVERY_S:
                            last_plot = time.monotonic()
                            status = t("training_status", lang, stage=record["stage"], epoch=record["epoch"])
                            yield (session, status, plot(history, lang), *[gr.skip()] * 5)
                    case Failed(message):
                        yield session, _failed(message, lang), plot(history, lang), *[gr.skip()] * 5
                    case Done(card):
                        yield (session, trained(card, lang), plot(card["training"]["history"], lang),
                               *results(card, lang), gr.skip(), card)
                        path, sentence = _zip(session.model, lang)   # the last answer holds everything
                        yield (session, trained(card, lang) + "\n\n" + sentence,
                               plot(card["training"]["history"], lang), *results(card, lang),
                               gr.DownloadButton(value=path, visible=True), card)

    return train


def _zip(model: str, lang: str) -> tuple[str, str]:
    """The new model zipped for the download (with its ONNX export where the onnx package is
    installed), and the sentence that says what the zip holds."""
    path, onnx_problem = export_zip(model)
    if onnx_problem is None:
        return str(path), t("zip_onnx", lang)
    return str(path), t("zip_no_onnx" if onnx_problem == "unavailable" else "zip_onnx_failed", lang)


def rerender(session, card, lang):
    """The tab's lasting texts in another language: the class overview, the plot and the results."""
    history = card["training"]["history"] if card else None
    return (*overview(session, lang)[:2], plot(history, lang), *results(card, lang))


# ------------------------------------------------------------------ using the model

def make_try(lab: Lab):
    def try_it(image, session, lang="en"):
        if not session or not session.model:
            return None, t("no_model", lang)
        if image is None:
            return None, t("need_try_picture", lang)
        try:
            return try_model(lab, session.model, Path(image).read_bytes()), ""
        except OSError:
            return None, t("upload_unreadable", lang)
        except ImageError as e:
            return None, t(picture_problem(e), lang)
    return try_it


def use_for_me(session, lang="en"):
    if not session or not session.model:
        return gr.skip(), t("no_model", lang)
    return session.model, t("for_me", lang)


def make_publish(lab: Lab, gate):
    """The curator's "Use it for everyone": the password (throttled per client), then lab.publish."""

    def publish(password, name, session, lang="en", request: gr.Request = None):
        if not session or not session.model:
            return t("no_model", lang)
        client = request.client.host if request is not None and request.client else "local"
        refusal = gate.check(password if isinstance(password, str) else None, client)
        if refusal:
            why = t("wrong_password" if refusal.startswith("wrong") else "locked_out", lang)
            return t("curator_only", lang, why=why)
        try:
            key = lab.publish(session.model, name)
        except (WeightsError, OSError) as e:
            log.error("publishing %s failed: %s", session.model, e)
            return t("publish_failed", lang)
        return t("published", lang, key=escape_user_text(key))
    return publish
