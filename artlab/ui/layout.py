"""The page: header, six tabs, and the wiring of events to handlers.

Queue: every image-model call runs in the "inference" concurrency group (one at a time,
others see their place in the queue); texts have their own "text" group, so a title (milliseconds)
never waits behind paintings; the Train tab uses its own "training" group.

The public API (/predict, /predict_text, /similar_works, /browse) is built by `artlab/ui/api.py`;
every endpoint of the page itself (/analyze_artwork, /analyze_text, /add_to_gallery, /morph,
/gallery_search, the Train tab's) answers component updates and is undocumented: callable, but
on neither the API page nor the MCP server.

The Train tab is built by `artlab/ui/train_tab.py`: `build_train_tab(ctx, active_weights)`,
where `active_weights` is a gr.State holding this visitor's model folder (None: the default,
i.e. the models directory's active model, else the app's weights; see Lab.artwork_weights)
that the Artwork tab reads.
"""

import functools

import gradio as gr

from artlab.checkpoints import LICENCE_NOTE
from artlab.ui import handlers as h
from artlab.ui.api import build_api, only_the_api_is_public
from artlab.ui.context import AppContext
from artlab.ui.guard import CheckedBlocks
from artlab.ui.i18n import LANGS, t
from artlab.ui.train_tab import build_train_tab

INFERENCE = dict(concurrency_id="inference", concurrency_limit=1)
TEXT = dict(concurrency_id="text", concurrency_limit=2)       # the text models: their own queue


def build_app(ctx: AppContext) -> gr.Blocks:
    delete_cache = (60, int(ctx.idle_minutes * 60)) if ctx.kiosk else (3600, 6 * 3600)
    with CheckedBlocks(title="ArtLab", analytics_enabled=False, delete_cache=delete_cache, fill_width=False) as demo:
        lang = gr.State("en")
        active_weights = gr.State(None)
        relabel: list[tuple] = []
        title = _header(ctx, lang, relabel)
        with gr.Tabs(selected="artwork") as tabs:
            with gr.Tab(t("tab_artwork"), id="artwork") as tab:
                relabel.append((tab, "tab_artwork"))
                artwork = _artwork_tab(ctx, lang, active_weights, relabel)
            with gr.Tab(t("tab_text"), id="text") as tab:
                relabel.append((tab, "tab_text"))
                _text_tab(ctx, lang, relabel)
            with gr.Tab(t("tab_gallery"), id="gallery") as tab:
                relabel.append((tab, "tab_gallery"))
                gallery = _gallery_tab(ctx, lang, relabel, tabs)
            with gr.Tab(t("tab_create"), id="create") as tab:
                relabel.append((tab, "tab_create"))
                _create_tab(ctx, active_weights, relabel)
            if not ctx.kiosk:
                with gr.Tab(t("tab_train"), id="train") as tab:
                    relabel.append((tab, "tab_train"))
                    build_train_tab(ctx, active_weights)
            with gr.Tab(t("tab_about"), id="about") as tab:
                relabel.append((tab, "tab_about"))
                gr.Markdown(about_markdown(ctx), elem_classes="about")
        build_api(ctx, INFERENCE, TEXT)
        # A click on a similar work (Artwork tab) opens it on the Gallery tab.
        artwork["similar"].select(_open_from_select(ctx), [artwork["similar_ids"], lang],
                                  [*gallery["detail"], tabs], api_visibility="private", **INFERENCE)
        demo.load(functools.partial(h.browse, ctx), [gallery["style"], gallery["subject"], gallery["query"], lang],
                  [gallery["grid"], gallery["ids"], gallery["note"]], api_visibility="private")
        switched = _language_switch(title, lang, relabel)
        switched.then(lambda code: (gr.update(choices=h.style_choices(code)), gr.update(choices=h.subject_choices(code))),
                      lang, [gallery["style"], gallery["subject"]], queue=False, api_visibility="private").then(
            functools.partial(h.browse, ctx), [gallery["style"], gallery["subject"], gallery["query"], lang],
            [gallery["grid"], gallery["ids"], gallery["note"]], queue=False, api_visibility="private")
    only_the_api_is_public(demo)
    return demo


def _header(ctx, lang, relabel):
    with gr.Row(elem_classes="artlab-header"):
        with gr.Column(scale=5):
            title = gr.Markdown(f"# {t('title')}\n{t('tagline')}", elem_classes="artlab-title")
        with gr.Column(scale=2, min_width=300):
            switch = gr.Radio(list(LANGS), value="English", show_label=False, container=False,
                              elem_classes="lang-switch")
    title.switch = switch
    return title


def _language_switch(title, lang, relabel):
    components = [c for c, _ in relabel]

    def change(choice):
        code = LANGS.get(choice, "en")
        # Buttons show their value; everything else shows a label.
        updates = [gr.update(value=t(key, code)) if isinstance(c, gr.Button) else gr.update(label=t(key, code))
                   for c, key in relabel]
        return [code, f"# {t('title', code)}\n{t('tagline', code)}", *updates]

    return title.switch.change(change, title.switch, [lang, title, *components], queue=False,
                               api_visibility="private")


def _artwork_tab(ctx, lang, active_weights, relabel):
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            image = gr.Image(label=t("artwork_in"), type="filepath", sources=["upload", "clipboard", "webcam"],
                             height=420, elem_id="artwork-input")
            go = gr.Button(t("analyze"), variant="primary", size="lg", elem_id="analyze-button")
            explain = gr.Checkbox(value=True, label=t("show_gradcam"))
            relabel += [(image, "artwork_in"), (go, "analyze"), (explain, "show_gradcam")]
        with gr.Column(scale=1):
            style = gr.Label(num_top_classes=3, label=t("style"), elem_id="style-label", elem_classes="artlab-label")
            subject = gr.Label(num_top_classes=3, label=t("subject"), elem_id="subject-label", elem_classes="artlab-label")
            # A fine-tuned model's own classes (its "labels" head), titled by the handler with its name.
            custom = gr.Label(num_top_classes=5, label=t("your_model"), visible=False, elem_id="model-label",
                              elem_classes="artlab-label")
            relabel += [(style, "style"), (subject, "subject")]
    with gr.Row(equal_height=True):
        heatmap = gr.Image(label=t("gradcam"), interactive=False, height=300, scale=2, format="jpeg")
        seen = gr.Image(label=t("ae_input"), interactive=False, height=300, scale=1, format="png")
        recon = gr.Image(label=t("reconstruction"), interactive=False, height=300, scale=1, format="png")
        relabel += [(heatmap, "gradcam"), (seen, "ae_input"), (recon, "reconstruction")]
    psnr = gr.Markdown(elem_classes="psnr")
    similar = gr.Gallery(label=t("similar"), columns=6, height=220, allow_preview=False, object_fit="cover")
    relabel.append((similar, "similar"))
    similar_ids = gr.State([])
    if not ctx.kiosk:
        with gr.Accordion(t("add"), open=False):
            with gr.Row():
                title, artist, year = gr.Textbox(label=t("add_title")), gr.Textbox(label=t("add_artist")), \
                    gr.Textbox(label=t("add_year"), max_lines=1)
            add = gr.Button(t("add"), elem_id="add-button")
            added = gr.Markdown()
        add.click(functools.partial(h.add_to_gallery, ctx), [image, title, artist, year], added,
                  api_name="add_to_gallery", **INFERENCE)

    def run(path, code, weights, progress=gr.Progress()):
        return h.analyze_artwork(ctx, path, code, weights, progress)

    outputs = [style, subject, heatmap, seen, recon, psnr, similar, similar_ids, custom]
    go.click(run, [image, lang, active_weights], outputs, api_name="analyze_artwork", **INFERENCE)
    image.upload(run, [image, lang, active_weights], outputs, api_visibility="private", **INFERENCE)
    explain.change(lambda on: gr.update(visible=on), explain, heatmap, queue=False, api_visibility="private")
    return {"similar": similar, "similar_ids": similar_ids}


def _text_tab(ctx, lang, relabel):
    with gr.Row(equal_height=False):
        with gr.Column():
            text = gr.Textbox(label=t("text_in"), lines=3, max_length=20_000,
                              placeholder="stormy sea at night · portrait of a lady with a fan")
            go = gr.Button(t("text_go"), variant="primary", size="lg")
            gr.Examples(["stormy sea at night", "portrait of a young woman with a pearl earring",
                         "still life with apples and a jug", "the annunciation"], text)
            note = gr.Markdown()
        with gr.Column():
            subject = gr.Label(num_top_classes=3, label=t("subject"), elem_classes="artlab-label")
            style = gr.Label(num_top_classes=3, label=t("style"), elem_classes="artlab-label")
            recon = gr.Textbox(label=t("text_recon"), interactive=False)
    matches = gr.Gallery(label=t("text_matches"), columns=6, height=220, allow_preview=False, object_fit="cover")
    ids = gr.State([])
    relabel += [(text, "text_in"), (go, "text_go"), (subject, "subject"), (style, "style"),
                (recon, "text_recon"), (matches, "text_matches")]
    outputs = [subject, style, recon, matches, ids, note]
    fn = functools.partial(h.analyze_text, ctx)
    go.click(fn, [text, lang], outputs, api_name="analyze_text", **TEXT)
    text.submit(fn, [text, lang], outputs, api_visibility="private", **TEXT)


def _gallery_tab(ctx, lang, relabel, tabs):
    with gr.Row():
        style = gr.Dropdown(h.style_choices(), value="", label=t("filter_style"), scale=1)
        subject = gr.Dropdown(h.subject_choices(), value="", label=t("filter_subject"), scale=1)
        query = gr.Textbox(label=t("search"), scale=2, max_lines=1, placeholder="Water Lilies, Rembrandt, …",
                           submit_btn=True)
    note = gr.Markdown(elem_classes="gallery-note")
    grid = gr.Gallery(label=t("grid"), columns=5, height=560, allow_preview=False, object_fit="cover",
                      elem_id="gallery-grid")
    ids = gr.State([])
    with gr.Column(visible=False) as detail_box:
        with gr.Row(equal_height=False, elem_classes="work-detail"):
            picture = gr.Image(label=t("work_image"), interactive=False, height=420, format="jpeg")
            with gr.Column():
                info = gr.Markdown()
                work_style = gr.Label(num_top_classes=3, label=t("style"), elem_classes="artlab-label")
                work_subject = gr.Label(num_top_classes=3, label=t("subject"), elem_classes="artlab-label")
        similar = gr.Gallery(label=t("work_similar"), columns=6, height=200, allow_preview=False,
                             object_fit="cover")
    similar_ids = gr.State([])
    relabel += [(style, "filter_style"), (subject, "filter_subject"), (query, "search"), (grid, "grid"),
                (picture, "work_image"), (similar, "work_similar"), (work_style, "style"),
                (work_subject, "subject")]
    filters = [style, subject, query, lang]
    listing = [grid, ids, note]
    fn = functools.partial(h.browse, ctx)
    for component in (style, subject):
        component.change(fn, filters, listing, api_visibility="private", queue=False)
    query.submit(fn, filters, listing, api_name="gallery_search", queue=False)
    detail = [picture, work_style, work_subject, info, similar, similar_ids, detail_box]
    opener = _open_from_select(ctx)
    grid.select(opener, [ids, lang], [*detail, tabs], api_visibility="private")
    similar.select(opener, [similar_ids, lang], [*detail, tabs], api_visibility="private")
    return {"style": style, "subject": subject, "query": query, "grid": grid, "ids": ids, "note": note,
            "detail": detail}


def _open_from_select(ctx):
    def opener(ids, code, evt: gr.SelectData):
        return (*h.open_work(ctx, ids, evt.index, code), gr.Column(visible=True), gr.Tabs(selected="gallery"))
    return opener


def _create_tab(ctx, active_weights, relabel):
    gr.Markdown("Everything on this tab is **generated by ArtLab's autoencoder**: "
                "images in between two works, not real artworks.", elem_classes="generated-note")
    with gr.Row():
        a = gr.Image(label=t("create_a"), type="filepath", sources=["upload", "clipboard"], height=260)
        b = gr.Image(label=t("create_b"), type="filepath", sources=["upload", "clipboard"], height=260)
        with gr.Column():
            steps = gr.Slider(3, 12, value=8, step=1, label=t("frames"))
            go = gr.Button(t("morph"), variant="primary", size="lg")
            lucky = gr.Button(t("surprise"), size="lg")
    strip = gr.Gallery(label=t("strip"), columns=12, height=160, allow_preview=False, object_fit="contain")
    with gr.Row():
        position = gr.Slider(0, 1, value=0.5, step=0.01, label=t("position"))
    frame = gr.Image(label=t("frame"), interactive=False, height=320, elem_classes="generated")
    frames = gr.State([])
    relabel += [(a, "create_a"), (b, "create_b"), (steps, "frames"), (go, "morph"), (lucky, "surprise"),
                (strip, "strip"), (position, "position"), (frame, "frame")]

    def walk(a_path, b_path, n, weights):
        return h.morph(ctx, a_path, b_path, n, weights)

    outputs = [strip, frames, frame, position]
    go.click(walk, [a, b, steps, active_weights], outputs, api_name="morph", **INFERENCE)
    lucky.click(functools.partial(h.surprise, ctx), None, [a, b], api_visibility="private", queue=False).then(
        walk, [a, b, steps, active_weights], outputs, api_visibility="private", **INFERENCE)
    position.release(h.pick_frame, [frames, position], frame, api_visibility="private", queue=False)


def about_markdown(ctx: AppContext) -> str:
    lines = ["## About ArtLab",
             "ArtLab looks at art with small neural networks: an EfficientNet-Lite0 classifier with a texture "
             "branch (style and subject), a convolutional autoencoder (reconstruction and the Create tab), "
             "and recurrent networks for titles and descriptions.",
             f"**Running on:** {ctx.lab.device_name()}"]
    try:
        cards = ctx.lab.model_cards()
    except Exception as e:  # noqa: BLE001 - a broken card must not take the page down
        cards, lines = {}, lines + [f"Model cards could not be read: {e}"]
    for name, card in cards.items():
        lines.append(f"### {name}")
        lines.append(f"- date: {card.get('date', '?')}; input size: {card.get('input_size', '?')}")
        metrics = card.get("metrics", {}).get("val", {})
        for head, value in metrics.items():
            shown = value.get("accuracy", value) if isinstance(value, dict) else value
            if isinstance(shown, (int, float)):
                lines.append(f"- validation {head}: {shown:.3f}")
        if card.get("data"):
            lines.append(f"- data: {card['data']}")
    lines += ["## Licence", LICENCE_NOTE,
              "WikiArt images and labels are for **non-commercial research use only**; so are these models."]
    return "\n\n".join(lines)
