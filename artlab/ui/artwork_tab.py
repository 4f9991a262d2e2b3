"""The Artwork tab: a picture in; style, subject, where the model looked, the autoencoder's
reconstruction and similar works out.

    build_artwork_tab(ctx, lang, active_weights) -> dict of components

- An upload (or paste, or camera snapshot) is analysed at once; the button analyses the picture
  shown only if it has not been analysed yet (a second press changes nothing).
- Nothing, or a bad file, is answered by one plain sentence in the visitor's language beside the
  button (artlab.images says what is wrong, widgets.notice shows it); the outputs are emptied
  quietly, never marked as errors, and no message names a server path.
- What was shown is kept in `shown` (labels by id, PSNR, which message): a language switch
  re-renders it without analysing again.
- A visitor's own model (Train tab, "for me") that is gone answers with the usual model, once
  saying so, and the visitor's choice is reset.
- After an analysis the row gets the class "analysed": on a phone the results then come first.
"""

import logging
from pathlib import Path

import gradio as gr

from artlab.checkpoints import WeightsError
from artlab.images import ImageError
from artlab.labels import CUSTOM_HEAD
from artlab.ui.context import AppContext
from artlab.ui.handlers import add_to_gallery, cards, output_file, picture_problem
from artlab.ui.i18n import L, label_scores, t
from artlab.ui.widgets import buttons, notice, notice_box, picture_input

log = logging.getLogger(__name__)

INFERENCE = dict(concurrency_id="inference", concurrency_limit=1)
# The heat map's colours (artlab.inference.explain's ramp), for the legend under it.
HEAT_RAMP = "#000004, #57106e, #bc3754, #f98e09, #fcffa4"


def heat_legend(lang: str) -> str:
    return (f'<div class="heat-legend"><span>{t("heat_low", lang)}</span>'
            f'<span class="ramp" style="background: linear-gradient(to right, {HEAT_RAMP})"></span>'
            f'<span>{t("heat_high", lang)}</span></div>')


def render(shown: dict | None, lang: str) -> tuple:
    """(style, subject, custom, psnr, legend, message) for what is shown, in `lang`."""
    shown = shown or {}
    heads = shown.get("heads") or {}

    def head(name, **props):
        if name not in heads:
            return gr.update(value=None, visible=not heads and name != CUSTOM_HEAD, **props)
        return gr.update(value=label_scores(heads[name], lang), visible=True, **props)

    psnr = shown.get("psnr")
    messages = [t(key, lang) for key in shown.get("messages", [])]
    # Unsure: the results' own headers say so, where a phone shows them first (the notice is further down).
    unsure = shown.get("unsure", False)
    return (head("style", label=t("style_unsure" if unsure else "style", lang)),
            head("subject", label=t("subject_unsure" if unsure else "subject", lang)),
            head(CUSTOM_HEAD, label=shown.get("model") or t("your_model", lang)),
            t("psnr_sentence", lang, psnr=psnr) if psnr is not None else "",
            heat_legend(lang) if heads else "", notice(" ".join(messages)))


def analyze(ctx: AppContext, path, lang: str, weights, shown, progress=gr.Progress()) -> tuple:
    """The tab's outputs for the picture at `path` (see OUTPUTS in build_artwork_tab)."""
    messages, reset = [], gr.skip()
    if weights and not ctx.lab.still_there(weights):
        messages, weights, reset = ["own_model_gone"], None, None
    model = ctx.lab.artwork_weights(weights)
    if path and shown and shown.get("source") == path and shown.get("model_path") == model and not messages:
        return (gr.skip(),) * 14                     # this picture, by this model, is on show already
    if not path:
        return _quiet({"messages": ["need_picture"]}, lang, reset)
    progress(0.2, desc=t("looking", lang))
    try:
        look = ctx.lab.look(Path(path).read_bytes(), weights)
    except OSError:
        return _quiet({"messages": ["upload_unreadable"]}, lang, reset, clear_input=True)
    except ImageError as e:
        log.info("a picture was refused: %s", e)
        return _quiet({"messages": [picture_problem(e)]}, lang, reset, clear_input=True)
    except WeightsError as e:
        log.error("the models could not be loaded: %s", e)
        return _quiet({"messages": ["models_failed"]}, lang, reset)
    analysis = look.analysis
    if analysis.unsure:
        messages = [*messages, "unsure_picture"]
    shown = {"source": path, "model_path": model, "heads": analysis.labels, "psnr": analysis.psnr,
             "model": look.model_key, "messages": messages, "unsure": analysis.unsure}
    items, ids = cards(look.similar)
    heat = None
    if analysis.heatmap is not None and look.picture is not None:
        heat = (output_file(look.picture, "picture", "jpeg"), output_file(analysis.heatmap, "heatmap", "jpeg"))
    pair = None
    if analysis.reconstruction is not None:
        pair = (output_file(look.seen, "autoencoder_input"), output_file(analysis.reconstruction, "reconstruction"))
    style, subject, custom, psnr, legend, message = render(shown, lang)
    return (style, subject, custom, heat, legend, pair, psnr, items, ids, message, shown,
            gr.Row(elem_classes=["artwork-row", "analysed"]), reset) + (gr.skip(),)


def _quiet(shown: dict, lang: str, reset, clear_input: bool = False) -> tuple:
    """Empty outputs and a message: nothing is marked as an error."""
    style, subject, custom, psnr, legend, message = render(shown, lang)
    return (style, subject, custom, None, legend, None, psnr, [], [], message, shown,
            gr.Row(elem_classes=["artwork-row"]), reset, None if clear_input else gr.skip())


def clear(lang: str) -> tuple:
    """The picture was removed: so are its results."""
    return _quiet({}, lang, gr.skip())


def _add_to_gallery(ctx: AppContext, image, lang: gr.State) -> None:
    with gr.Accordion(L("add"), open=False):
        with gr.Row():
            title = gr.Textbox(label=L("add_title"), min_width=200)
            artist = gr.Textbox(label=L("add_artist"), min_width=200)
            year = gr.Textbox(label=L("add_year"), max_lines=1, min_width=120)
        add = gr.Button(L("add"), elem_id="add-button")
        added = gr.Markdown(elem_id="added-note")
    add.click(lambda *values: add_to_gallery(ctx, *values), [image, title, artist, year, lang], added,
              api_name="add_to_gallery", **INFERENCE)


def build_artwork_tab(ctx: AppContext, lang: gr.State, active_weights: gr.State) -> dict:
    with gr.Row(equal_height=False, elem_classes="artwork-row") as row:
        with gr.Column(scale=1, min_width=300, elem_classes="artwork-input"):
            image = picture_input(ctx, "artwork_in", "drop_artwork", height=420, elem_id="artwork-input")
            go = gr.Button(L("analyze"), variant="primary", size="lg", elem_id="analyze-button")
            message = notice_box(elem_id="artwork-message")
            explain = gr.Checkbox(value=True, label=L("show_gradcam"), elem_id="gradcam-toggle")
        with gr.Column(scale=1, min_width=300, elem_classes="artwork-results"):
            style = gr.Label(num_top_classes=3, label=L("style"), elem_id="style-label", elem_classes="artlab-label")
            subject = gr.Label(num_top_classes=3, label=L("subject"), elem_id="subject-label",
                               elem_classes="artlab-label")
            # A fine-tuned model's own classes (its "labels" head), titled with the model's name.
            custom = gr.Label(num_top_classes=5, label=L("your_model"), visible=False, elem_id="model-label",
                              elem_classes="artlab-label")
    with gr.Row(equal_height=False, elem_classes="artwork-pictures"):
        with gr.Column(scale=3, min_width=300) as heat_box:
            heat = gr.ImageSlider(label=L("gradcam"), type="filepath", format="jpeg", interactive=False,
                                  max_height=520, buttons=buttons(ctx), elem_id="heatmap")
            legend = gr.HTML(elem_classes="heat-legend-box")
        with gr.Column(scale=2, min_width=260):
            pair = gr.ImageSlider(label=L("ae_pair"), type="filepath", format="png", interactive=False,
                                  max_height=360, buttons=buttons(ctx), elem_id="reconstruction")
            psnr = gr.Markdown(elem_classes="psnr")
    similar = gr.Gallery(label=L("similar"), columns=6, height="auto", allow_preview=False, object_fit="cover",
                         buttons=buttons(ctx, download=False), elem_id="similar-works")
    similar_ids, shown = gr.State([]), gr.State(None)
    if not ctx.kiosk:
        _add_to_gallery(ctx, image, lang)
    outputs = [style, subject, custom, heat, legend, pair, psnr, similar, similar_ids, message, shown, row,
               active_weights, image]

    def run(path, code, weights, current, progress=gr.Progress()):
        return analyze(ctx, path, code, weights, current, progress)

    progress_on = dict(show_progress_on=[style, subject], **INFERENCE)
    inputs = [image, lang, active_weights, shown]
    go.click(run, inputs, outputs, api_name="analyze_artwork", **progress_on)
    image.upload(run, inputs, outputs, api_visibility="private", **progress_on)
    image.clear(clear, lang, outputs, api_visibility="private", queue=False)
    explain.change(lambda on: gr.Column(visible=on), explain, heat_box, queue=False, api_visibility="private")
    lang.change(render, [shown, lang], [style, subject, custom, psnr, legend, message], queue=False,
                api_visibility="private")
    return {"image": image, "similar": similar, "similar_ids": similar_ids, "shown": shown}
