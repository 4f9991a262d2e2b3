"""The Gallery tab: the collection by page, filtered by style, subject and a title search; a
work opened with its labels and similar works.

    build_gallery_tab(ctx, lang, tabs) -> dict of components (and `open_selected`, which the
    Artwork tab's similar works use too)

Pages of PAGE works (Previous / Next). Labels and notes are rendered in the visitor's language,
again when it changes (the grid's captions, the filters' choices, an opened work).
"""

import functools
from types import SimpleNamespace

import gradio as gr

from artlab.labels import STYLES, SUBJECTS, display_name
from artlab.safe_text import escape_user_text
from artlab.ui.context import AppContext
from artlab.ui.handlers import cards
from artlab.ui.i18n import L, label_scores, t
from artlab.ui.widgets import buttons

PAGE = 60


def style_choices(lang: str = "en"):
    return [(t("any", lang), "")] + [(display_name(s, lang), s) for s in STYLES]


def subject_choices(lang: str = "en"):
    return [(t("any", lang), "")] + [(display_name(s, lang), s) for s in SUBJECTS]


def browse(ctx: AppContext, style: str, subject: str, query: str, lang: str = "en", page: int = 0):
    """(grid items, ids, note, page, previous, next) for one page of the matching works."""
    page = max(0, int(page or 0))
    works, total, stale = ctx.lab.browse(style, subject, query, limit=PAGE + 1, offset=page * PAGE)
    more, works = len(works) > PAGE, works[:PAGE]
    if total == 0:
        note = t("gallery_empty", lang)
    elif not works:
        note = t("no_match", lang)
    else:
        first, last = page * PAGE + 1, page * PAGE + len(works)
        filtered = bool(style or subject or (query or "").strip())
        note = t("shown_match" if filtered else "shown", lang, first=first, last=last, total=total)
    if stale:   # analysed by an earlier model: not in "similar works" until re-analysed
        note += " " + t("stale", lang, stale=stale)
    items = [(w.thumb, _caption(w, lang)) for w in works]
    return (items, [w.id for w in works], note, page, gr.Button(visible=page > 0), gr.Button(visible=more))


def _caption(work, lang: str) -> str:
    labels = f"{display_name(work.style, lang)} · {display_name(work.subject, lang)}"
    title = escape_user_text(work.title, markup=False)
    return f"{title} · {labels}" if title else labels


def open_work(ctx: AppContext, work_id, lang: str = "en"):
    """(picture, style, subject, info, similar, similar ids, detail box, opened id) of a work."""
    found = ctx.lab.work(work_id) if work_id is not None else None
    if found is None:
        message = t("work_gone" if work_id is not None else "pick_work", lang)
        return None, None, None, message, [], [], gr.Column(visible=True), None
    work, picture, pairs = found
    items, similar_ids = cards(pairs)
    # Title, artist and year come from visitors and metadata files: shown as typed, never as markup.
    lines = [f"## {escape_user_text(work.name)}"]
    if work.artist or work.year:
        lines.append(" · ".join(escape_user_text(x) for x in (work.artist, work.year) if x))
    lines.append(t("added_on", lang, date=work.added[:10])
                 + (t("work_psnr", lang, psnr=work.psnr) if work.psnr else ""))
    return (picture, label_scores(work.labels["style"], lang), label_scores(work.labels["subject"], lang),
            "\n\n".join(lines), items, similar_ids, gr.Column(visible=True), work.id)


def open_selected(ctx: AppContext):
    """A select handler for a gallery of works whose ids are in a State: opens the work on this tab."""
    def opener(ids, code, evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else None
        work_id = ids[index] if ids and index is not None and index < len(ids) else None
        return (*open_work(ctx, work_id, code), gr.Tabs(selected="gallery"))
    return opener


def build_gallery_tab(ctx: AppContext, lang: gr.State, tabs) -> dict:
    with gr.Row(elem_classes="gallery-filters"):
        style = gr.Dropdown(style_choices(), value="", label=L("filter_style"), scale=1, min_width=160)
        subject = gr.Dropdown(subject_choices(), value="", label=L("filter_subject"), scale=1, min_width=160)
        query = gr.Textbox(label=L("search"), scale=2, min_width=200, max_lines=1,
                           placeholder=L("search_placeholder"), submit_btn=True)
    note = gr.Markdown(elem_classes="gallery-note")
    grid = gr.Gallery(label=L("grid"), columns=5, height="auto", allow_preview=False, object_fit="cover",
                      buttons=buttons(ctx, download=False), elem_id="gallery-grid")
    with gr.Row(elem_classes="pager"):
        previous = gr.Button(L("previous"), visible=False, size="md", elem_id="gallery-previous")
        following = gr.Button(L("next"), visible=False, size="md", elem_id="gallery-next")
    ids, page, opened = gr.State([]), gr.State(0), gr.State(None)
    with gr.Column(visible=False) as detail_box:
        with gr.Row(equal_height=False, elem_classes="work-detail"):
            picture = gr.Image(label=L("work_image"), interactive=False, height=420, format="jpeg",
                               buttons=buttons(ctx), min_width=280)
            with gr.Column(min_width=280):
                info = gr.Markdown()
                work_style = gr.Label(num_top_classes=3, label=L("style"), elem_classes="artlab-label")
                work_subject = gr.Label(num_top_classes=3, label=L("subject"), elem_classes="artlab-label")
        similar = gr.Gallery(label=L("work_similar"), columns=6, height="auto", allow_preview=False,
                             object_fit="cover", buttons=buttons(ctx, download=False))
    similar_ids = gr.State([])
    g = SimpleNamespace(style=style, subject=subject, query=query, grid=grid, ids=ids, page=page,
                        listing=[grid, ids, note, page, previous, following], filters=[style, subject, query, lang],
                        detail=[picture, work_style, work_subject, info, similar, similar_ids, detail_box, opened])
    _wire(ctx, lang, tabs, g, previous, following)
    return {"filters": g.filters, "listing": g.listing, "detail": g.detail, "similar_ids": similar_ids}


def _wire(ctx, lang, tabs, g: SimpleNamespace, previous, following) -> None:
    fn = functools.partial(browse, ctx)
    listing, filters, detail = g.listing, g.filters, g.detail
    private = dict(api_visibility="private", queue=False)
    for component in (g.style, g.subject):
        component.change(fn, filters, listing, **private)
    g.query.submit(fn, filters, listing, api_name="gallery_search", queue=False)
    previous.click(lambda *a: fn(*a[:4], a[4] - 1), [*filters, g.page], listing, **private)
    following.click(lambda *a: fn(*a[:4], a[4] + 1), [*filters, g.page], listing, **private)
    opener = open_selected(ctx)
    g.grid.select(opener, [g.ids, lang], [*detail, tabs], api_visibility="private")
    detail[4].select(opener, [detail[5], lang], [*detail, tabs], api_visibility="private")
    # A language switch: the filters' names, the page's captions and note, and an opened work.
    lang.change(lambda code: (gr.Dropdown(choices=style_choices(code)), gr.Dropdown(choices=subject_choices(code))),
                lang, [g.style, g.subject], **private).then(fn, [*filters, g.page], listing, **private)
    lang.change(lambda work_id, code: open_work(ctx, work_id, code) if work_id is not None else (gr.skip(),) * 8,
                [detail[-1], lang], detail, **private)
