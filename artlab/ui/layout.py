"""The page: a header with the English/中文 switch, six tabs, and what ties them together.

Queue: every image-model call runs in the "inference" concurrency group (one at a time,
others see their place in the queue); texts have their own "text" group, so a title (milliseconds)
never waits behind paintings; the Train tab uses its own "training" group.

The public API (/predict, /predict_text, /similar_works, /browse) is built by `artlab/ui/api.py`;
every endpoint of the page itself (/analyze_artwork, /analyze_text, /add_to_gallery, /morph,
/gallery_search, the Train tab's) answers component updates and is undocumented: callable, but
on neither the API page nor the MCP server.

Tabs: Artwork (`artwork_tab.py`), Gallery (`gallery_tab.py`), Train (`train_tab.py`:
`build_train_tab(ctx, active_weights, lang)`, where `active_weights` is a gr.State holding this
visitor's model folder, None for the default, that the Artwork tab reads); Text, Create and
About are here.

Language: static texts are gr.I18n keys (i18n.L), so the page opens in the browser's language;
the switch starts there too, and changing it changes the page's locale (i18n.LOCALE_JS) and the
`lang` State, whose change every tab follows by re-rendering its results.
"""

import functools

import gradio as gr

from artlab.ui import handlers as h
from artlab.ui.api import build_api, only_the_api_is_public
from artlab.ui.artwork_tab import build_artwork_tab
from artlab.ui.context import AppContext
from artlab.ui.gallery_tab import browse, build_gallery_tab, open_selected
from artlab.ui.guard import CheckedBlocks
from artlab.ui.i18n import BROWSER_CHOICE_JS, LANGS, LOCALE_JS, TEXTS, L, lang_code, t
from artlab.ui.train_tab import build_train_tab
from artlab.ui.widgets import buttons, notice_box, picture_input

INFERENCE = dict(concurrency_id="inference", concurrency_limit=1)
TEXT = dict(concurrency_id="text", concurrency_limit=2)       # the text models: their own queue
PRIVATE = dict(api_visibility="private", queue=False)
EXAMPLES = [TEXTS["en"][f"example_{i}"] for i in range(4)]      # what the text models read: English


def build_app(ctx: AppContext) -> gr.Blocks:
    delete_cache = (60, int(ctx.idle_minutes * 60)) if ctx.kiosk else (3600, 6 * 3600)
    with CheckedBlocks(title="ArtLab", analytics_enabled=False, delete_cache=delete_cache, fill_width=False) as demo:
        lang = gr.State("en")
        active_weights = gr.State(None)
        switch = _header()
        with gr.Tabs(selected="artwork", elem_id="tabs") as tabs:
            with gr.Tab(L("tab_artwork"), id="artwork") as artwork_tab:
                artwork = build_artwork_tab(ctx, lang, active_weights)
            with gr.Tab(L("tab_text"), id="text") as text_tab:
                _text_tab(ctx, lang)
            with gr.Tab(L("tab_gallery"), id="gallery") as gallery_tab:
                gallery = build_gallery_tab(ctx, lang, tabs)
            with gr.Tab(L("tab_create"), id="create") as create_tab:
                _create_tab(ctx, lang, active_weights)
            named = {"tab_artwork": artwork_tab, "tab_text": text_tab, "tab_gallery": gallery_tab,
                     "tab_create": create_tab}
            if not ctx.kiosk:
                with gr.Tab(L("tab_train"), id="train") as named["tab_train"]:
                    build_train_tab(ctx, active_weights, lang)
            with gr.Tab(L("tab_about"), id="about") as named["tab_about"]:
                about = gr.Markdown(about_markdown(ctx), elem_classes="about")
        build_api(ctx, INFERENCE, TEXT)
        # A click on a similar work (Artwork tab) opens it on the Gallery tab.
        artwork["similar"].select(open_selected(ctx), [artwork["similar_ids"], lang], [*gallery["detail"], tabs],
                                  api_visibility="private", **INFERENCE)
        demo.load(functools.partial(browse, ctx), gallery["filters"], gallery["listing"], api_visibility="private")
        # The switch starts in the browser's language; the page's locale and `lang` follow it.
        demo.load(None, switch, switch, js=BROWSER_CHOICE_JS, api_visibility="private")
        switch.change(None, switch, None, js=LOCALE_JS, **PRIVATE)
        # Queued: Gradio runs a State's change listeners after queued events only.
        switch.change(lang_code, switch, lang, api_visibility="private")
        lang.change(functools.partial(about_markdown, ctx), lang, about, **PRIVATE)
        # The tab bar does not follow the page's locale by itself: its names are sent again.
        lang.change(lambda code: [gr.Tab(label=t(key, code)) for key in named], lang, list(named.values()),
                    **PRIVATE)
    only_the_api_is_public(demo)
    return demo


def _header() -> gr.Radio:
    with gr.Row(elem_classes="artlab-header", equal_height=False):
        with gr.Column(scale=5, min_width=200):
            gr.Markdown(L("header"), elem_classes="artlab-title")
        with gr.Column(scale=2, min_width=180, elem_classes="lang-column"):
            return gr.Radio(list(LANGS), value="English", label=L("language"), show_label=False, container=False,
                            elem_classes="lang-switch", elem_id="lang-switch")


def _text_tab(ctx: AppContext, lang: gr.State) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(min_width=300):
            text = gr.Textbox(label=L("text_in"), lines=3, max_length=20_000, placeholder=L("text_placeholder"))
            go = gr.Button(L("text_go"), variant="primary", size="lg")
            note = notice_box()
            examples = gr.Dataset(components=[text], samples=_examples("en"), label=L("text_examples"),
                                  type="index", elem_id="text-examples")
        with gr.Column(min_width=300):
            subject = gr.Label(num_top_classes=3, label=L("subject"), elem_classes="artlab-label")
            style = gr.Label(num_top_classes=3, label=L("style"), elem_classes="artlab-label")
            recon = gr.Textbox(label=L("text_recon"), interactive=False)
    matches = gr.Gallery(label=L("text_matches"), columns=6, height="auto", allow_preview=False, object_fit="cover",
                         buttons=buttons(ctx, download=False))
    ids, shown = gr.State([]), gr.State(None)
    outputs = [subject, style, recon, matches, ids, note, shown]
    fn = functools.partial(h.analyze_text, ctx)
    go.click(fn, [text, lang], outputs, api_name="analyze_text", **TEXT)
    text.submit(fn, [text, lang], outputs, api_visibility="private", **TEXT)
    # An example fills the box with the English the models read, and is read at once.
    examples.click(lambda i: EXAMPLES[i], examples, text, **PRIVATE).then(
        fn, [text, lang], outputs, api_visibility="private", **TEXT)
    lang.change(lambda code: gr.Dataset(samples=_examples(code)), lang, examples, **PRIVATE)
    lang.change(h.render_text, [shown, lang], [subject, style, note], **PRIVATE)


def _examples(lang: str) -> list[list[str]]:
    return [[t(f"example_{i}", lang)] for i in range(len(EXAMPLES))]


def _create_tab(ctx: AppContext, lang: gr.State, active_weights: gr.State) -> None:
    gr.Markdown(L("create_note"), elem_classes="generated-note")
    with gr.Row(equal_height=False):
        a = picture_input(ctx, "create_a", "drop_work", webcam=False, height=260, min_width=200)
        b = picture_input(ctx, "create_b", "drop_work", webcam=False, height=260, min_width=200)
        with gr.Column(min_width=240):
            steps = gr.Slider(3, 12, value=8, step=1, label=L("frames"))
            go = gr.Button(L("morph"), variant="primary", size="lg")
            lucky = gr.Button(L("surprise"), size="lg")
            note = notice_box()
    strip = gr.Gallery(label=L("strip"), columns=12, height="auto", allow_preview=False, object_fit="contain",
                       buttons=buttons(ctx, download=False), elem_classes="generated")
    position = gr.Slider(0, 1, value=0.5, step=0.01, label=L("position"))
    frame = gr.Image(label=L("frame"), interactive=False, height=320, elem_classes="generated", buttons=buttons(ctx))
    frames = gr.State([])
    outputs = [strip, frames, frame, position, note]

    def walk(a_path, b_path, n, weights, code):
        return h.morph(ctx, a_path, b_path, n, weights, code)

    go.click(walk, [a, b, steps, active_weights, lang], outputs, api_name="morph", **INFERENCE)
    lucky.click(functools.partial(h.surprise, ctx), [steps, active_weights, lang], [a, b, *outputs],
                api_visibility="private", **INFERENCE)
    position.release(h.pick_frame, [frames, position], frame, **PRIVATE)


def about_markdown(ctx: AppContext, lang: str = "en") -> str:
    device = ctx.lab.device_name()
    if device.startswith("CPU ("):
        device = t("cpu_cores", lang, n=device.split("(")[1].split()[0])
    lines = [f"## {t('about_title', lang)}", t("about_intro", lang), t("running_on", lang, device=device)]
    try:
        cards = ctx.lab.model_cards()
    except Exception:  # noqa: BLE001 - a broken card must not take the page down
        cards, lines = {}, lines + [t("cards_unreadable", lang)]
    for name, card in cards.items():
        lines.append(f"### {name}")
        lines.append("- " + t("card_line", lang, date=card.get("date", "?"), size=card.get("input_size", "?")))
        for head, value in card.get("metrics", {}).get("val", {}).items():
            shown = value.get("accuracy", value) if isinstance(value, dict) else value
            if isinstance(shown, (int, float)):
                lines.append("- " + t("card_metric", lang, head=head, value=shown))
        if card.get("data"):
            lines.append("- " + t("card_data", lang, data=card["data"]))
    lines += [f"## {t('licence_title', lang)}", t("licence", lang), t("licence_wikiart", lang)]
    return "\n\n".join(lines)
