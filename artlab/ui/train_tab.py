"""The Train tab: teach ArtLab a curator's own classes in the browser.

    build_train_tab(ctx, active_weights, lang=None) -> dict of components

Call it inside the tab's context (`with gr.Tab("Train"): build_train_tab(ctx, active_weights, lang)`).
- `ctx`: the app's AppContext: ctx.lab's weights are the base model, ctx.lab.models(folder) answers
  Try it, ctx.lab.publish(folder, name) makes a model the one for everyone, behind ctx.gate (the
  curator password, throttled per client).
- `active_weights`: the visitor's gr.State holding the model folder the Artwork tab uses
  (None: the default). "Use it for me" writes this visitor's new model folder into it; "Start
  over" deletes that model and so sets it back to None (the Artwork tab says so too, should the
  model go some other way: see artwork_tab).
- `lang`: the visitor's language State ("en" when None); the tab re-renders when it changes.

The work is artlab.curation's (a CurationSession per visitor, deleted when their session ends);
what each event does is `train_handlers.py`'s. Here: the layout and the wiring. While a model
trains, only the status line shows progress, so the live plot stays in view; a new run, and
Start over, clear the last run's results. The model is offered as one download (a zip; with
ONNX where the onnx package is installed). Training runs in its own concurrency group
("training", one at a time). API names: train_add_class, train_add_images, train_add_zip,
train_start, train_stop, train_try, train_activate, train_publish.
"""

import functools
from types import SimpleNamespace

import gradio as gr

from artlab.data.folders import MAX_CLASSES, MIN_CLASSES, MIN_PER_CLASS
from artlab.ui import train_handlers as th
from artlab.ui.context import AppContext
from artlab.ui.i18n import L, t
from artlab.ui.widgets import picture_input

TRAINING = dict(concurrency_id="training", concurrency_limit=1)
# Try it is a model call: it queues with every other analysis in the one "inference" group, so it
# never oversubscribes the cores beside a training run.
TRY = dict(concurrency_id="inference", concurrency_limit=1)
PRIVATE = dict(api_visibility="private", queue=False)
DEPTHS = ["auto", "head", "1", "2", "3", "4"]


def intro(lang: str = "en") -> str:
    return t("train_intro", lang, min=MIN_CLASSES, max=MAX_CLASSES, per=MIN_PER_CLASS)


def _data_panel() -> SimpleNamespace:
    """Where classes and their images come in, beside the counts and the notes."""
    with gr.Row(equal_height=False):
        with gr.Column(min_width=300):
            with gr.Row():
                new_class = gr.Textbox(label=L("new_class"), placeholder=L("new_class_placeholder"), scale=3,
                                       min_width=160)
                add_class_button = gr.Button(L("add_class"), scale=1, min_width=120)
            target = gr.Dropdown(label=L("target_class"), choices=[], allow_custom_value=True)
            files = gr.File(label=L("class_files"), file_count="multiple", file_types=["image"],
                            elem_id="train-files")
            zip_upload = gr.File(label=L("class_zip"), file_types=[".zip"], elem_id="train-zip")
            start_over_button = gr.Button(L("start_over"), size="sm", elem_id="train-start-over")
        with gr.Column(min_width=300):
            counts = gr.Dataframe(label=L("counts"), interactive=False, elem_id="train-counts")
            notes = gr.Markdown(th.overview(None, "en")[1], elem_id="train-notes")
    return SimpleNamespace(new_class=new_class, add_class=add_class_button, target=target, files=files,
                           zip=zip_upload, start_over=start_over_button, overview=[counts, notes, target])


def _training_panel() -> SimpleNamespace:
    """The settings, the Train and Stop buttons, and what a run shows: status, plot, results."""
    with gr.Accordion(L("advanced"), open=False):
        with gr.Row():
            epochs = gr.Slider(1, 200, value=60, step=1, label=L("epochs"), min_width=200)
            lr = gr.Number(value=3e-3, label=L("lr"), minimum=1e-5, maximum=1.0, min_width=160)
            batch = gr.Slider(4, 128, value=32, step=4, label=L("batch"), min_width=200)
            depth = gr.Dropdown(DEPTHS, value="auto", label=L("depth"), info=L("depth_info"), min_width=200)
    with gr.Row():
        train = gr.Button(L("train"), variant="primary", elem_id="train-button", min_width=160)
        stop_button = gr.Button(L("stop"), variant="stop", min_width=160)
    status = gr.Markdown(elem_id="train-status", min_height=40)
    # Its title is drawn with it: gr.HTML shows a translated label as "[object Object]" (gradio 6.31).
    plot = gr.HTML(show_label=False, container=True, elem_id="train-plot", min_height=40)
    with gr.Row(equal_height=False):
        per_class = gr.Dataframe(label=L("per_class"), interactive=False, min_width=280)
        confusion = gr.Dataframe(label=L("confusion"), interactive=False, min_width=280)
    wrong = gr.Gallery(label=L("wrong"), columns=4, height="auto", object_fit="contain", allow_preview=True,
                       elem_id="train-wrong")
    return SimpleNamespace(settings=[epochs, lr, batch, depth], train=train, stop=stop_button, status=status,
                           plot=plot, results=[per_class, confusion, wrong])


def _model_panel(ctx: AppContext) -> SimpleNamespace:
    """Try the model, use it (for me, or as a curator for everyone), download it."""
    with gr.Row(equal_height=False):
        with gr.Column(min_width=280):
            image = picture_input(ctx, "try_in", "drop_work", height=260)
            try_button = gr.Button(L("try"))
        with gr.Column(min_width=280):
            labels = gr.Label(label=L("model_says"), num_top_classes=5)
            try_note = gr.Markdown()
    with gr.Row():
        use = gr.Button(L("use_for_me"), elem_id="use-for-me", min_width=200)
        download = gr.DownloadButton(L("download"), visible=False, elem_id="train-download", min_width=200)
    with gr.Accordion(L("curator"), open=False):
        with gr.Row():
            password = gr.Textbox(label=L("password"), type="password", min_width=200)
            model_name = gr.Textbox(label=L("model_name"), value="curator", min_width=160)
            publish = gr.Button(L("publish"), min_width=160)
    note = gr.Markdown(elem_id="train-model-note")
    return SimpleNamespace(image=image, try_it=try_button, answer=[labels, try_note], use=use, download=download,
                           password=password, model_name=model_name, publish=publish, note=note)


def _wire_data(ctx: AppContext, data, run, model, session, card, active_weights, lang) -> None:
    outputs = [session, *data.overview]
    data.add_class.click(th.add_class, [data.new_class, session, lang], [*outputs, data.new_class],
                         api_name="train_add_class")
    data.new_class.submit(th.add_class, [data.new_class, session, lang], [*outputs, data.new_class],
                          api_visibility="private")
    # The upload boxes are emptied once their files are taken, so that the next upload brings only its own.
    data.files.upload(th.add_class_images, [data.files, data.target, session, lang], outputs,
                      api_name="train_add_images").then(lambda: None, None, data.files, **PRIVATE)
    data.zip.upload(th.add_zip, [data.zip, session, lang], outputs, api_name="train_add_zip"
                    ).then(lambda: None, None, data.zip, **PRIVATE)
    data.start_over.click(functools.partial(th.start_over, lab=ctx.lab), [session, active_weights, lang],
                          [*outputs, run.status, run.plot, *run.results, model.download, card, active_weights],
                          api_visibility="private")


def _wire_training(ctx: AppContext, run, download, session, card, lang) -> None:
    run.train.click(th.queued_notice, lang, None, **PRIVATE).then(
        th.make_train(ctx.lab), [session, *run.settings, lang],
        [session, run.status, run.plot, *run.results, download, card],
        api_name="train_start", show_progress_on=[run.status], **TRAINING)
    run.stop.click(th.stop, [session, lang], run.status, api_name="train_stop", queue=False)


def _wire_model(ctx: AppContext, model, session, active_weights, lang) -> None:
    try_it = th.make_try(ctx.lab)
    model.try_it.click(try_it, [model.image, session, lang], model.answer, api_name="train_try", **TRY)
    model.image.upload(try_it, [model.image, session, lang], model.answer, api_visibility="private", **TRY)
    model.use.click(th.use_for_me, [session, lang], [active_weights, model.note], api_name="train_activate")
    model.publish.click(th.make_publish(ctx.lab, ctx.gate), [model.password, model.model_name, session, lang],
                        model.note, api_name="train_publish")


def build_train_tab(ctx: AppContext, active_weights: gr.State, lang: gr.State | None = None) -> dict:
    """Build the Train tab's contents in the current Blocks context; return its main components."""
    lang = lang if lang is not None else gr.State("en")
    session = gr.State(None, delete_callback=functools.partial(th.close, lab=ctx.lab))
    card = gr.State(None)                     # the last trained model's card: its results, re-rendered
    heading = gr.Markdown(intro())
    data = _data_panel()
    run = _training_panel()
    model = _model_panel(ctx)
    _wire_data(ctx, data, run, model, session, card, active_weights, lang)
    _wire_training(ctx, run, model.download, session, card, lang)
    _wire_model(ctx, model, session, active_weights, lang)
    lang.change(intro, lang, heading, **PRIVATE)
    lang.change(th.rerender, [session, card, lang], [*data.overview[:2], run.plot, *run.results], **PRIVATE)
    return {"session": session, "active_weights": active_weights, "train": run.train, "stop": run.stop,
            "status": run.status, "plot": run.plot, "download": model.download, "start_over": data.start_over}
