"""The Train tab: teach ArtLab a curator's own classes in the browser.

    build_train_tab(ctx, active_weights) -> dict of components

Call it inside the tab's context (`with gr.Tab("Train"): build_train_tab(ctx, active_weights)`).
- `ctx`: the app's AppContext: ctx.lab's weights are the base model, ctx.lab.models(folder) answers
  Try it, ctx.lab.publish(folder, name) makes a model the one for everyone, behind ctx.gate (the
  curator password, throttled per client).
- `active_weights`: the visitor's gr.State holding the model folder the Artwork tab uses
  (None: the default). "Use it for me" writes this visitor's new model folder into it.

The work is artlab.curation's: a CurationSession per visitor (a private folder, deleted when their
session ends), its checks, training and export. This module lays out components and shows what the
session says; names visitors choose (classes, files, zip entries) are shown through
artlab.safe_text. Training runs in its own concurrency group ("training", one at a time); a visitor
who clicks Train while another model trains is told that theirs is queued. API names:
train_add_class, train_add_images, train_add_zip, train_start, train_stop, train_try,
train_activate, train_publish, train_download.
"""

import functools
import logging
import time
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

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
from artlab.data.folders import MAX_CLASSES, MIN_CLASSES, MIN_PER_CLASS
from artlab.images import ImageError
from artlab.lab import Lab
from artlab.safe_text import escape_user_text
from artlab.store.uploads import UploadError
from artlab.training.finetune import FinetuneConfig
from artlab.ui.context import AppContext

log = logging.getLogger(__name__)

TRAINING = dict(concurrency_id="training", concurrency_limit=1)
# Try it and the download (ONNX export) are model calls: they queue with every other analysis
# in the one "inference" group, so they never oversubscribe the cores beside a training run.
TRY = dict(concurrency_id="inference", concurrency_limit=1)
DEPTHS = ["auto", "head", "1", "2", "3", "4"]
PLOT_COLOURS = {"training loss": "#4c78a8", "held-out loss": "#f58518", "held-out accuracy": "#e45756"}
PLOT_EVERY_S = 0.5          # the head stage runs many epochs a second: redraw at most this often
NO_MODEL = "Train a model first."


# ------------------------------------------------------------------ notes

def _problem(error) -> str:
    """An error for the notes: its message names classes, files and zip entries the visitor chose."""
    return f"❌ {escape_user_text(error)}"


def _listing(lines: list[str], most: int = 20) -> str:
    """Skipped files as a Markdown list; each line holds a file or zip entry name."""
    return "\n".join(f"- {escape_user_text(line)}" for line in lines[:most])


def _overview(session: CurationSession | None, note: str = "", selected: str | None = None):
    """(counts table, notes markdown, class dropdown update) for the visitor's classes."""
    counts = session.counts() if session else {}
    problems = session.problems() if session else []
    table = pd.DataFrame({"class": list(counts), "images": list(counts.values())})
    # A problem may name a class: each is escaped whole (Markdown shows the same characters).
    text = "\n".join(f"- ⚠️ {escape_user_text(p)}" for p in problems) or "✅ Ready to train."
    if note:
        text = note + "\n\n" + text
    selected = selected if selected in counts else (list(counts)[-1] if counts else None)
    return table, text, gr.update(choices=list(counts), value=selected)


# ------------------------------------------------------------------ adding data

def _close(session: CurationSession | None, lab: Lab | None = None) -> None:
    """gr.State's delete_callback: a visitor's images and models go when their session does."""
    if session:
        session.close()
        if lab is not None:
            lab.forget(session.folder)


def add_class(name, session):
    session = session or CurationSession()
    try:
        added = session.add_class(name)
    except UploadError as e:
        return (session, *_overview(session, _problem(e)), name)
    note = f"Class **{escape_user_text(added)}** added: now upload its images."
    return (session, *_overview(session, note, added), "")


def add_class_images(files, target, session):
    session = session or CurationSession()
    if not target:
        return (session, *_overview(session, "❌ Choose (or add) a class first."))
    paths = [f if isinstance(f, str) else getattr(f, "name", f) for f in (files or [])]
    try:
        result = session.add_images(paths, target)
    except UploadError as e:
        return (session, *_overview(session, _problem(e)))
    name, saved = next(iter(result.classes.items()))
    note = f"Added {len(saved)} image(s) to **{escape_user_text(name)}**."
    if result.skipped:
        note += "\n\nSkipped (not usable images):\n" + _listing(result.skipped)
    return (session, *_overview(session, note, name))


def add_zip(upload, session):
    session = session or CurationSession()
    if not upload:
        return (session, *_overview(session))
    try:
        result = session.add_zip(upload if isinstance(upload, str) else upload.name)
    except UploadError as e:
        return (session, *_overview(session, _problem(e)))
    note = f"Imported {sum(result.counts().values())} image(s) in {len(result.classes)} class(es) from the zip."
    if result.skipped:
        note += f"\n\nSkipped {len(result.skipped)} file(s):\n" + _listing(result.skipped)
    return (session, *_overview(session, note))


def start_over(session):
    _close(session)
    session = CurationSession()
    return (session, *_overview(session, "Started over."))


# ------------------------------------------------------------------ training

def queued_notice():
    """Runs outside the queue: tell a visitor that another model is training before theirs starts."""
    if training_busy():
        gr.Info("Another model is training: yours is queued and starts as soon as it ends.")


def stop(session):
    if session and session.stop():
        return "⏹️ Stopping after the current step; the best model so far is kept."
    return "Nothing is training."


def _plot_rows(history: list[dict]) -> pd.DataFrame | None:
    rows = []
    for i, record in enumerate(history, 1):
        rows.append({"epoch": i, "value": record["train_loss"], "metric": "training loss"})
        if record.get("val_loss") is not None:
            rows.append({"epoch": i, "value": record["val_loss"], "metric": "held-out loss"})
        if record.get("val_accuracy") is not None:
            rows.append({"epoch": i, "value": record["val_accuracy"], "metric": "held-out accuracy"})
    # None, not an empty frame: a plot that starts from an empty frame draws no lines when updated (gradio 6).
    return pd.DataFrame(rows) if rows else None


def _results(card: dict):
    """(per-class accuracy table, confusion matrix table, misclassified gallery) from a model's card."""
    val = card["metrics"]["val"]
    per_class = pd.DataFrame({"class": list(val["per_class"]),
                              "held-out accuracy": list(val["per_class"].values()),
                              "held-out images": [card["data"]["val_per_class"][c] for c in val["per_class"]]})
    labels = val["confusion"]["labels"]
    confusion = pd.DataFrame(val["confusion"]["matrix"], columns=[f"→ {x}" for x in labels])
    confusion.insert(0, "true class", labels)
    wrong = [(m["path"], f"{m['true']} → {m['predicted']} ({m['probability']:.0%})") for m in val["misclassified"]]
    return per_class, confusion, wrong


def _trained(card: dict) -> str:
    val = card["metrics"]["val"]
    how = " (stopped by you: the best model so far)" if card["training"]["stopped_by_user"] else ""
    return (f"✅ Trained in {card['training']['seconds']:.0f} s{how}. Held-out accuracy "
            f"**{val['accuracy']:.0%}** on {val['count']} images the model never saw.")


def make_train(lab):
    """The Train button's handler (a generator: progress, a live plot, then the results)."""

    def train(session, epochs, lr, batch, depth, progress=gr.Progress()):
        session = session or CurationSession()
        config = FinetuneConfig(epochs=int(epochs), lr=float(lr), batch_size=int(batch), depth=str(depth),
                                device=lab.device)
        history, last_plot, unchanged = [], 0.0, [gr.skip()] * 4
        # closing(): a visitor who leaves closes this generator, which stops their run at its next step.
        with closing(session.train(lab.weights, config)) as events:
            for event in events:
                match event:
                    case Progress(fraction, text):
                        progress(fraction, desc=text)
                    case Epoch(record):
                        history.append(record)
                        if time.monotonic() - last_plot > PLOT_EVERY_S:
                            last_plot = time.monotonic()
                            status = f"Training ({record['stage']}): epoch {record['epoch']}"
                            yield session, status, _plot_rows(history), *unchanged
                    case Failed(message):
                        yield session, _problem(message), _plot_rows(history), *unchanged
                    case Done(card):
                        yield (session, _trained(card), _plot_rows(card["training"]["history"]),
                               *_results(card), gr.skip())

    return train


# ------------------------------------------------------------------ using the model

def make_try(lab):
    def try_it(image, session):
        if not session or not session.model:
            return None, NO_MODEL
        if image is None:
            return None, "Upload or take a picture."
        try:
            return try_model(lab, session.model, Path(image).read_bytes()), ""
        except OSError:
            return None, "❌ The upload could not be read; please try again."
        except ImageError as e:
            return None, _problem(e)
    return try_it


def use_for_me(session):
    if not session or not session.model:
        return gr.skip(), NO_MODEL
    return session.model, ("✅ The Artwork tab now uses your model (for you only, until you leave): "
                           "it shows your classes beside the usual answers (instead of them, for a model "
                           "fine-tuned deeper than its head).")


def make_publish(lab, gate):
    """The curator's "Use it for everyone": the password (throttled per client), then lab.publish."""

    def publish(password, name, session, request: gr.Request = None):
        if not session or not session.model:
            return NO_MODEL
        client = request.client.host if request is not None and request.client else "local"
        refusal = gate.check(password if isinstance(password, str) else None, client)
        if refusal:
            return f"❌ Only a curator can change the model for everyone ({refusal})."
        try:
            key = lab.publish(session.model, name)
        except (WeightsError, OSError) as e:
            return _problem(e)
        return (f"✅ **{escape_user_text(key)}** is now the model for everyone. "
                "`python -m artlab models rollback` undoes it.")
    return publish


def download(session):
    """A zip of the model folder (safetensors + card) and its ONNX export."""
    if not session or not session.model:
        return None, NO_MODEL
    path, onnx_problem = export_zip(session.model)
    if onnx_problem:
        return str(path), f"Model zip without ONNX (export failed: {escape_user_text(onnx_problem)})."
    return str(path), "Model zip: art_classifier.safetensors, art_classifier.json (the card) and model.onnx."


# ------------------------------------------------------------------ layout

def _intro() -> str:
    return ("### Teach ArtLab your own classes\n"
            f"Add {MIN_CLASSES} to {MAX_CLASSES} classes with at least {MIN_PER_CLASS} images each "
            "(30 or more is better), then train. A part of each class is held out, so the accuracy you see "
            "is on images the model never trained on.")


def _data_panel() -> SimpleNamespace:
    """Where classes and their images come in, beside the counts and the notes."""
    with gr.Row():
        with gr.Column():
            with gr.Row():
                new_class = gr.Textbox(label="New class", placeholder="e.g. workshop", scale=3)
                add_class_button = gr.Button("Add class", scale=1)
            target = gr.Dropdown(label="Add images to class", choices=[], allow_custom_value=True)
            files = gr.File(label="Images for this class (many at once)", file_count="multiple",
                            file_types=["image"])
            zip_upload = gr.File(label="…or one zip with a folder per class", file_types=[".zip"])
            start_over_button = gr.Button("Start over", size="sm")
        with gr.Column():
            counts = gr.Dataframe(label="Images per class", headers=["class", "images"], interactive=False)
            notes = gr.Markdown()
    return SimpleNamespace(new_class=new_class, add_class=add_class_button, target=target, files=files,
                           zip=zip_upload, start_over=start_over_button, overview=[counts, notes, target])


def _training_panel() -> SimpleNamespace:
    """The settings, the Train and Stop buttons, and what a run shows: status, plot, results."""
    with gr.Accordion("Advanced settings", open=False):
        with gr.Row():
            epochs = gr.Slider(1, 200, value=60, step=1, label="Epochs (head; early stopping ends sooner)")
            lr = gr.Number(value=3e-3, label="Learning rate", minimum=1e-5, maximum=1.0)
            batch = gr.Slider(4, 128, value=32, step=4, label="Batch size")
            depth = gr.Dropdown(DEPTHS, value="auto", label="How deep to fine-tune",
                                info="head: the new head only (seconds); auto: on a GPU, the last blocks too with "
                                     "≥ 20 training images per class; a number: that many last blocks (slower)")
    with gr.Row():
        train = gr.Button("Train", variant="primary")
        stop_button = gr.Button("Stop (keep the best so far)", variant="stop")
    status = gr.Markdown()
    plot = gr.LinePlot(None, x="epoch", y="value", color="metric", label="Loss and accuracy per epoch",
                       color_map=PLOT_COLOURS, height=260,
                       caption="blue: training loss · orange: held-out loss · red: held-out accuracy")
    with gr.Row():
        per_class = gr.Dataframe(label="Per-class held-out accuracy", interactive=False)
        confusion = gr.Dataframe(label="Confusion matrix (rows: true class)", interactive=False)
    wrong = gr.Gallery(label="Held-out images it gets wrong", columns=6, height=220)
    return SimpleNamespace(settings=[epochs, lr, batch, depth], train=train, stop=stop_button, status=status,
                           plot=plot, results=[per_class, confusion, wrong])


def _model_panel() -> SimpleNamespace:
    """Try the model, use it (for me, or as a curator for everyone), download it."""
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Try it", type="filepath", sources=["upload", "webcam", "clipboard"])
            try_button = gr.Button("Try")
        with gr.Column():
            labels = gr.Label(label="Your model says", num_top_classes=5)
            try_note = gr.Markdown()
    with gr.Row():
        use = gr.Button("Use it in the Artwork tab (for me)")
        download_button = gr.Button("Prepare download (zip + ONNX)")
    with gr.Accordion("Curator: use it for everyone", open=False):
        with gr.Row():
            password = gr.Textbox(label="Curator password", type="password")
            model_name = gr.Textbox(label="Model name", value="curator")
            publish = gr.Button("Use it for everyone")
    note = gr.Markdown()
    model_file = gr.File(label="Your model", interactive=False)
    return SimpleNamespace(image=image, try_it=try_button, answer=[labels, try_note], use=use,
                           download=download_button, password=password, model_name=model_name,
                           publish=publish, note=note, model_file=model_file)


def _wire_data(data: SimpleNamespace, session: gr.State) -> None:
    outputs = [session, *data.overview]
    data.add_class.click(add_class, [data.new_class, session], [*outputs, data.new_class],
                         api_name="train_add_class")
    data.new_class.submit(add_class, [data.new_class, session], [*outputs, data.new_class],
                          api_visibility="private")
    # The upload boxes are emptied once their files are taken, so that the next upload brings only its own.
    data.files.upload(add_class_images, [data.files, data.target, session], outputs, api_name="train_add_images"
                      ).then(lambda: None, None, data.files, api_visibility="private", queue=False)
    data.zip.upload(add_zip, [data.zip, session], outputs, api_name="train_add_zip"
                    ).then(lambda: None, None, data.zip, api_visibility="private", queue=False)
    data.start_over.click(start_over, [session], outputs, api_visibility="private")


def _wire_training(ctx: AppContext, run: SimpleNamespace, model_file, session: gr.State) -> None:
    run.train.click(queued_notice, None, None, queue=False, api_visibility="private").then(
        make_train(ctx.lab), [session, *run.settings], [session, run.status, run.plot, *run.results, model_file],
        api_name="train_start", **TRAINING)
    run.stop.click(stop, [session], run.status, api_name="train_stop", queue=False)


def _wire_model(ctx: AppContext, model: SimpleNamespace, session: gr.State, active_weights: gr.State) -> None:
    try_it = make_try(ctx.lab)
    model.try_it.click(try_it, [model.image, session], model.answer, api_name="train_try", **TRY)
    model.image.upload(try_it, [model.image, session], model.answer, api_visibility="private", **TRY)
    model.use.click(use_for_me, [session], [active_weights, model.note], api_name="train_activate")
    model.publish.click(make_publish(ctx.lab, ctx.gate), [model.password, model.model_name, session], model.note,
                        api_name="train_publish")
    model.download.click(download, [session], [model.model_file, model.note], api_name="train_download", **TRY)


def build_train_tab(ctx: AppContext, active_weights: gr.State) -> dict:
    """Build the Train tab's contents in the current Blocks context; return its main components."""
    session = gr.State(None, delete_callback=functools.partial(_close, lab=ctx.lab))
    gr.Markdown(_intro())
    data = _data_panel()
    run = _training_panel()
    model = _model_panel()
    _wire_data(data, session)
    _wire_training(ctx, run, model.model_file, session)
    _wire_model(ctx, model, session, active_weights)
    return {"session": session, "active_weights": active_weights, "train": run.train, "stop": run.stop,
            "status": run.status, "plot": run.plot, "model_file": model.model_file}
