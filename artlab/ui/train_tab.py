"""The Train tab: teach ArtLab a curator's own classes in the browser.

    build_train_tab(ctx, active_weights, *, models_dir=None, base_weights=None) -> dict of components

Call it inside the tab's context (`with gr.Tab("Train"): build_train_tab(ctx, active_weights)`).
- `ctx`: the app's AppContext (uses ctx.weights as the base model, ctx.device); may be None.
- `active_weights`: the visitor's gr.State holding the model folder the Artwork tab uses
  (None: the default). "Use it for me" writes this visitor's new model folder into it.
- "Use it for everyone" (only with the curator password, $ARTLAB_CURATOR_PASSWORD, compared
  in constant time and throttled per client: context.CuratorGate) copies the model into the models directory (artlab.store.registry; `models_dir`,
  else $ARTLAB_MODELS, else ~/.local/share/artlab/models) and makes it the active one there:
  the app should use `Registry(models_dir).active_path()` for visitors without a model of their own.
- `base_weights`: the model to start from (default ctx.weights, else the shipped weights).

Every visitor works in a private temporary folder (inside the app's own, artlab.workdirs) that is
deleted when their session ends; their images may take MAX_SESSION_BYTES in all (artlab.store.uploads).
Names visitors choose (classes, files, zip entries) are shown through artlab.safe_text.
Training runs in its own concurrency group ("training", one at a time); a visitor who
clicks Train while another model trains is told that theirs is queued. Inference (Try it)
stays in a group of its own. API names: train_add_class, train_add_images, train_add_zip,
train_start, train_stop, train_try, train_activate, train_publish, train_download.
"""

import logging
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from queue import Empty, Queue

import gradio as gr
import pandas as pd

from artlab.checkpoints import WeightsError
from artlab.images import ImageError, list_images
from artlab.safe_text import escape_user_text
from artlab.store.uploads import (
    MAX_SESSION_BYTES,
    UploadError,
    add_images,
    class_name,
    folder_bytes,
    import_zip,
)
from artlab.training.finetune import (
    HEAD,
    MAX_IMAGES,
    MIN_CLASSES,
    MIN_PER_CLASS,
    FinetuneConfig,
    FinetuneError,
    finetune,
    imbalance_warning,
)
from artlab.ui.context import CuratorGate
from artlab.workdirs import process_dir

log = logging.getLogger(__name__)

TRAINING = dict(concurrency_id="training", concurrency_limit=1)
# Try it and the download (ONNX export) are model calls: they queue with every other analysis
# in the one "inference" group, so they never oversubscribe the cores beside a training run.
TRY = dict(concurrency_id="inference", concurrency_limit=1)
DEPTHS = ["auto", "head", "1", "2", "3", "4"]
PLOT_COLOURS = {"training loss": "#4c78a8", "held-out loss": "#f58518", "held-out accuracy": "#e45756"}
_stops: dict[str, threading.Event] = {}        # session -> its Stop signal
_busy = threading.Lock()                       # held while any visitor's model trains
_models: dict[str, object] = {}                # model folder -> ArtModels, for Try it
MAX_CACHED_MODELS = 8
_models_lock = threading.Lock()


# ------------------------------------------------------------------ session folders

def _new_session() -> dict:
    folder = Path(tempfile.mkdtemp(prefix="artlab-train-", dir=process_dir()))
    (folder / "classes").mkdir()
    return {"dir": str(folder), "model": None, "runs": 0}


def _forget(session) -> None:
    """gr.State's delete_callback: a visitor's images and models go when their session does."""
    if session and session.get("dir"):
        shutil.rmtree(session["dir"], ignore_errors=True)
        with _models_lock:
            for key in [k for k in _models if k.startswith(session["dir"])]:
                del _models[key]


def _classes_dir(session) -> Path:
    return Path(session["dir"]) / "classes"


def _room_left(session) -> int:
    """Bytes this visitor's images may still take (MAX_SESSION_BYTES in all: a shared disk)."""
    return max(0, MAX_SESSION_BYTES - folder_bytes(_classes_dir(session)))


def _counts(session) -> dict[str, int]:
    if not session:
        return {}
    root = _classes_dir(session)
    return {p.name: len(list_images(p)) for p in sorted(root.iterdir()) if p.is_dir()}


def _overview(session, note: str = "", selected: str | None = None):
    """(counts table, warnings markdown, class dropdown update) for the current classes."""
    counts = _counts(session)
    table = pd.DataFrame({"class": list(counts), "images": list(counts.values())})
    warnings = []
    if len(counts) < MIN_CLASSES:
        warnings.append(f"Add at least {MIN_CLASSES} classes.")
    few = [f"{escape_user_text(name)} ({n})" for name, n in counts.items() if n < MIN_PER_CLASS]
    if few:
        warnings.append(f"Too few images (at least {MIN_PER_CLASS} per class): {', '.join(few)}.")
    if sum(counts.values()) > MAX_IMAGES:
        warnings.append(f"{sum(counts.values())} images: over the cap of {MAX_IMAGES}; remove some.")
    if (imbalance := imbalance_warning({escape_user_text(name): n for name, n in counts.items()})):
        warnings.append(imbalance[0].upper() + imbalance[1:] + ".")
    text = "\n".join(f"- ⚠️ {w}" for w in warnings) or "✅ Ready to train."
    if note:
        text = note + "\n\n" + text
    selected = selected if selected in counts else (list(counts)[-1] if counts else None)
    return table, text, gr.update(choices=list(counts), value=selected)


# ------------------------------------------------------------------ adding data

def _problem(error) -> str:
    """An error for the notes: its message names classes, files and zip entries the visitor chose."""
    return f"❌ {escape_user_text(error)}"


def _listing(lines: list[str], most: int = 20) -> str:
    """Skipped files as a Markdown list; each line holds a file or zip entry name."""
    return "\n".join(f"- {escape_user_text(line)}" for line in lines[:most])


def add_class(name, session):
    session = session or _new_session()
    try:
        folder = _classes_dir(session) / class_name(name or "")
    except UploadError as e:
        return (session, *_overview(session, _problem(e)), name)
    folder.mkdir(exist_ok=True)
    added = f"Class **{escape_user_text(folder.name)}** added: now upload its images."
    return (session, *_overview(session, added, folder.name), "")


def add_class_images(files, target, session):
    session = session or _new_session()
    if not target:
        return (session, *_overview(session, "❌ Choose (or add) a class first."))
    paths = [f if isinstance(f, str) else getattr(f, "name", f) for f in (files or [])]
    try:
        result = add_images(paths, _classes_dir(session) / class_name(target), max_bytes=_room_left(session))
    except UploadError as e:
        return (session, *_overview(session, _problem(e)))
    note = (f"Added {len(result.classes[class_name(target)])} image(s) to "
            f"**{escape_user_text(class_name(target))}**.")
    if result.skipped:
        note += "\n\nSkipped (not usable images):\n" + _listing(result.skipped)
    return (session, *_overview(session, note, class_name(target)))


def add_zip(upload, session):
    session = session or _new_session()
    if not upload:
        return (session, *_overview(session))
    staging = Path(session["dir"]) / f"zip-{time.time_ns()}"
    try:
        result = import_zip(upload if isinstance(upload, str) else upload.name, staging,
                            max_bytes=_room_left(session))
        for name, files in result.classes.items():
            target = _classes_dir(session) / name
            target.mkdir(exist_ok=True)
            start = len(list(target.iterdir()))
            for i, path in enumerate(files):
                shutil.move(path, target / f"z{start + i:05d}{path.suffix}")
    except UploadError as e:
        return (session, *_overview(session, _problem(e)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    note = f"Imported {sum(result.counts().values())} image(s) in {len(result.classes)} class(es) from the zip."
    if result.skipped:
        note += f"\n\nSkipped {len(result.skipped)} file(s):\n" + _listing(result.skipped)
    return (session, *_overview(session, note))


def start_over(session):
    if session:
        _forget(session)
    session = _new_session()
    return (session, *_overview(session, "Started over."))


# ------------------------------------------------------------------ training

def queued_notice():
    """Runs outside the queue: tell a visitor that another model is training before theirs starts."""
    if _busy.locked():
        gr.Info("Another model is training: yours is queued and starts as soon as it ends.")


def stop(request: gr.Request):
    event = _stops.get(request.session_hash if request else "")
    if event:
        event.set()
        return "⏹️ Stopping after the current step; the best model so far is kept."
    return "Nothing is training."


def _plot_rows(history: list[dict]) -> pd.DataFrame:
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
    val = card["metrics"]["val"]
    per_class = pd.DataFrame({"class": list(val["per_class"]),
                              "held-out accuracy": [v for v in val["per_class"].values()],
                              "held-out images": [card["data"]["val_per_class"][c] for c in val["per_class"]]})
    labels = val["confusion"]["labels"]
    confusion = pd.DataFrame(val["confusion"]["matrix"], columns=[f"→ {x}" for x in labels])
    confusion.insert(0, "true class", labels)
    wrong = [(m["path"], f"{m['true']} → {m['predicted']} ({m['probability']:.0%})") for m in val["misclassified"]]
    return per_class, confusion, wrong


def make_train(base_weights, device):
    """The Train button's handler (a generator: progress, a live plot, then the results)."""

    def train(session, epochs, lr, batch, depth, request: gr.Request, progress=gr.Progress()):
        session = session or _new_session()
        key = request.session_hash if request else "local"
        stop_event = _stops[key] = threading.Event()
        events: Queue = Queue()
        session["runs"] += 1
        out = Path(session["dir"]) / "models" / f"run{session['runs']}"
        config = FinetuneConfig(epochs=int(epochs), lr=float(lr), batch_size=int(batch), depth=str(depth),
                                device=device)

        def work():
            with _busy:
                try:
                    card = finetune(_classes_dir(session), out, base=base_weights, config=config,
                                    should_stop=stop_event, on_epoch=lambda r: events.put(("epoch", r)),
                                    progress=lambda f, text: events.put(("progress", f, text)),
                                    command="ArtLab Train tab")
                    events.put(("done", card))
                except (FinetuneError, WeightsError, ImageError) as e:
                    events.put(("error", str(e)))
                except Exception as e:  # noqa: BLE001 - the visitor gets a message, the log the trace
                    log.exception("fine-tuning failed")
                    events.put(("error", f"training failed: {e}"))

        threading.Thread(target=work, name=f"artlab-finetune-{key[:8]}", daemon=True).start()
        history, last_plot = [], 0.0
        nothing = [gr.skip()] * 4
        try:
            while True:
                try:
                    event = events.get(timeout=0.5)
                except Empty:
                    continue
                if event[0] == "progress":
                    progress(event[1], desc=event[2])
                elif event[0] == "epoch":
                    history.append(event[1])
                    if time.time() - last_plot > 0.5:  # the head stage runs many epochs a second
                        last_plot = time.time()
                        status = f"Training ({event[1]['stage']}): epoch {event[1]['epoch']}"
                        yield session, status, _plot_rows(history), *nothing
                elif event[0] == "error":
                    yield session, _problem(event[1]), _plot_rows(history), *nothing
                    return
                else:
                    card = event[1]
                    session["model"] = str(out)
                    val = card["metrics"]["val"]
                    how = " (stopped by you: the best model so far)" if card["training"]["stopped_by_user"] else ""
                    status = (f"✅ Trained in {card['training']['seconds']:.0f} s{how}. Held-out accuracy "
                              f"**{val['accuracy']:.0%}** on {val['count']} images the model never saw.")
                    yield session, status, _plot_rows(card["training"]["history"]), *_results(card), gr.skip()
                    return
        finally:
            stop_event.set()  # a visitor who leaves mid-training frees the trainer at the next step
            _stops.pop(key, None)

    return train


# ------------------------------------------------------------------ using the model

def _classifier(folder: str, device):
    from artlab.inference.image import ArtModels

    with _models_lock:
        if folder not in _models:
            while len(_models) >= MAX_CACHED_MODELS:   # dicts keep insertion order: drop the oldest
                del _models[next(iter(_models))]
            _models[folder] = ArtModels(folder, device, autoencoder=False)
        return _models[folder]


def make_try(device):
    def try_it(image, session):
        if not session or not session.get("model"):
            return None, "Train a model first."
        if image is None:
            return None, "Upload or take a picture."
        models = _classifier(session["model"], device)
        try:   # the bytes, not the path: a message then names "upload", never a server folder
            analysis = models.analyze([models.prepare(Path(image).read_bytes())], reconstruct=False)[0]
        except OSError:
            return None, "❌ The upload could not be read; please try again."
        except ImageError as e:
            return None, _problem(e)
        return {name: float(p) for name, p in analysis.labels[HEAD]}, ""
    return try_it


def use_for_me(session):
    if not session or not session.get("model"):
        return gr.skip(), "Train a model first."
    return session["model"], ("✅ The Artwork tab now uses your model (for you only, until you leave): "
                              "it shows your classes beside the usual answers (instead of them, for a model "
                              "fine-tuned deeper than its head).")


def make_publish(models_dir, gate: CuratorGate | None = None):
    gate = gate or CuratorGate()

    def publish(password, name, session, request: gr.Request = None):
        from artlab.store.registry import Registry

        if not session or not session.get("model"):
            return "Train a model first."
        client = request.client.host if request is not None and request.client else "local"
        refusal = gate.check(password if isinstance(password, str) else None, client)
        if refusal:
            return f"❌ Only a curator can change the model for everyone ({refusal})."
        registry = Registry(models_dir)
        try:
            target = registry.next_path(name or "curator")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)    # left by a publish killed mid-copy
            shutil.copytree(session["model"], tmp)
            tmp.rename(target)                   # a half-copied model is never listed
            key = registry.activate(f"{target.parent.name}/{target.name}")
        except (WeightsError, OSError) as e:
            return _problem(e)
        return f"✅ **{key}** is now the model for everyone. `python -m artlab models rollback` undoes it."
    return publish


def download(session):
    """A zip of the model folder (safetensors + card) and its ONNX export."""
    if not session or not session.get("model"):
        return None, "Train a model first."
    from artlab.inference.export import export_onnx

    folder = Path(session["model"])
    onnx_path = folder.parent / f"{folder.name}.onnx"
    note = "Model zip: art_classifier.safetensors, art_classifier.json (the card) and model.onnx."
    try:
        if not onnx_path.exists():
            export_onnx(folder, onnx_path)
    except Exception as e:  # noqa: BLE001 - the safetensors are still worth downloading
        log.warning("ONNX export failed: %s", e)
        note = f"Model zip without ONNX (export failed: {escape_user_text(e)})."
    target = folder.parent / f"artlab-model-{folder.name}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
        if onnx_path.exists():
            archive.write(onnx_path, "model.onnx")
    return str(target), note


# ------------------------------------------------------------------ layout

def build_train_tab(ctx=None, active_weights: gr.State | None = None, *, models_dir=None,
                    base_weights=None) -> dict:
    """Build the Train tab's contents in the current Blocks context; return its main components."""
    base = base_weights or (ctx.weights if ctx is not None else None)
    device = ctx.device if ctx is not None else None
    active_weights = active_weights if active_weights is not None else gr.State(None)
    session = gr.State(None, delete_callback=_forget)

    gr.Markdown("### Teach ArtLab your own classes\n"
                f"Add {MIN_CLASSES} to 50 classes with at least {MIN_PER_CLASS} images each (30 or more is better), "
                "then train. A part of each class is held out, so the accuracy you see is on images the model "
                "never trained on.")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                new_class = gr.Textbox(label="New class", placeholder="e.g. workshop", scale=3)
                add_btn = gr.Button("Add class", scale=1)
            target = gr.Dropdown(label="Add images to class", choices=[], allow_custom_value=True)
            files = gr.File(label="Images for this class (many at once)", file_count="multiple",
                            file_types=["image"])
            zip_upload = gr.File(label="…or one zip with a folder per class", file_types=[".zip"])
            reset_btn = gr.Button("Start over", size="sm")
        with gr.Column():
            counts = gr.Dataframe(label="Images per class", headers=["class", "images"], interactive=False)
            notes = gr.Markdown()
    with gr.Accordion("Advanced settings", open=False):
        with gr.Row():
            epochs = gr.Slider(1, 200, value=60, step=1, label="Epochs (head; early stopping ends sooner)")
            lr = gr.Number(value=3e-3, label="Learning rate", minimum=1e-5, maximum=1.0)
            batch = gr.Slider(4, 128, value=32, step=4, label="Batch size")
            depth = gr.Dropdown(DEPTHS, value="auto", label="How deep to fine-tune",
                                info="head: the new head only (seconds); auto: on a GPU, the last blocks too with "
                                     "≥ 20 training images per class; a number: that many last blocks (slower)")
    with gr.Row():
        train_btn = gr.Button("Train", variant="primary")
        stop_btn = gr.Button("Stop (keep the best so far)", variant="stop")
    status = gr.Markdown()
    plot = gr.LinePlot(None, x="epoch", y="value", color="metric", label="Loss and accuracy per epoch",
                       color_map=PLOT_COLOURS, height=260,
                       caption="blue: training loss · orange: held-out loss · red: held-out accuracy")
    with gr.Row():
        per_class = gr.Dataframe(label="Per-class held-out accuracy", interactive=False)
        confusion = gr.Dataframe(label="Confusion matrix (rows: true class)", interactive=False)
    wrong = gr.Gallery(label="Held-out images it gets wrong", columns=6, height=220)
    with gr.Row():
        with gr.Column():
            try_image = gr.Image(label="Try it", type="filepath", sources=["upload", "webcam", "clipboard"])
            try_btn = gr.Button("Try")
        with gr.Column():
            try_labels = gr.Label(label="Your model says", num_top_classes=5)
            try_note = gr.Markdown()
    with gr.Row():
        use_btn = gr.Button("Use it in the Artwork tab (for me)")
        download_btn = gr.Button("Prepare download (zip + ONNX)")
    with gr.Accordion("Curator: use it for everyone", open=False):
        with gr.Row():
            password = gr.Textbox(label="Curator password", type="password")
            model_name = gr.Textbox(label="Model name", value="curator")
            publish_btn = gr.Button("Use it for everyone")
    action_note = gr.Markdown()
    model_file = gr.File(label="Your model", interactive=False)

    overview = [counts, notes, target]
    add_btn.click(add_class, [new_class, session], [session, *overview, new_class], api_name="train_add_class")
    new_class.submit(add_class, [new_class, session], [session, *overview, new_class], api_visibility="private")
    # The upload boxes are emptied once their files are taken, so that the next upload brings only its own.
    files.upload(add_class_images, [files, target, session], [session, *overview], api_name="train_add_images"
                 ).then(lambda: None, None, files, api_visibility="private", queue=False)
    zip_upload.upload(add_zip, [zip_upload, session], [session, *overview], api_name="train_add_zip"
                      ).then(lambda: None, None, zip_upload, api_visibility="private", queue=False)
    reset_btn.click(start_over, [session], [session, *overview], api_visibility="private")

    train_btn.click(queued_notice, None, None, queue=False, api_visibility="private").then(
        make_train(base, device), [session, epochs, lr, batch, depth],
        [session, status, plot, per_class, confusion, wrong, model_file], api_name="train_start", **TRAINING)
    stop_btn.click(stop, None, status, api_name="train_stop", queue=False)
    try_it = make_try(device)
    try_btn.click(try_it, [try_image, session], [try_labels, try_note], api_name="train_try", **TRY)
    try_image.upload(try_it, [try_image, session], [try_labels, try_note], api_visibility="private", **TRY)
    use_btn.click(use_for_me, [session], [active_weights, action_note], api_name="train_activate")
    publish_btn.click(make_publish(models_dir), [password, model_name, session], action_note,
                      api_name="train_publish")
    download_btn.click(download, [session], [model_file, action_note], api_name="train_download", **TRY)
    return {"session": session, "active_weights": active_weights, "train": train_btn, "stop": stop_btn,
            "status": status, "plot": plot, "model_file": model_file}
