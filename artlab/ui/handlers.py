"""Event handlers: each takes the app context and component values, asks the Lab, returns values.

Bad input becomes a gr.Error with a one-line message (shown as a toast), never a traceback.
What visitors typed (titles, artists) is shown through safe_text.escape_user_text, never as markup.
"""

import contextlib
import hashlib
import io
import random
import tempfile
import time
from pathlib import Path

import gradio as gr

from artlab.checkpoints import WeightsError
from artlab.files import atomic_write_bytes
from artlab.images import ImageError
from artlab.labels import CUSTOM_HEAD, STYLES, SUBJECTS, display_name
from artlab.safe_text import escape_user_text
from artlab.ui.context import AppContext
from artlab.ui.i18n import label_scores, t
from artlab.workdirs import process_dir

# Output pictures are handed to Gradio as files written here, never as PIL images: Gradio saves a
# PIL output by rewriting <cache>/<hash of its bytes>/image.png in place, so when two visitors get the
# same picture (the same example analysed twice) one download can read a half-rewritten file. Files
# are copied into Gradio's cache atomically, once per content.
_OUTPUTS = Path(tempfile.mkdtemp(prefix="artlab-outputs-", dir=process_dir()))
_OUTPUT_MAX_AGE_S = 15 * 60
GRID_PAGE = 60


def _output_file(image, name: str, fmt: str = "png") -> str | None:
    """Write `image` once per content under a stable name (atomically) and return its path."""
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if fmt == "jpeg" else fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
    data = buffer.getvalue()
    path = _OUTPUTS / hashlib.sha1(data).hexdigest()[:24] / f"{name}.{'jpg' if fmt == 'jpeg' else fmt}"
    if not path.exists():
        atomic_write_bytes(path, data, durable=False)
    _forget_old_outputs()
    return str(path)


def _forget_old_outputs() -> None:
    """Gradio keeps its own copies; ours only need to outlive the request that made them."""
    cutoff = time.time() - _OUTPUT_MAX_AGE_S
    for folder in _OUTPUTS.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                for file in folder.iterdir():
                    file.unlink(missing_ok=True)
                folder.rmdir()
        except OSError:
            pass  # another request is cleaning it up too


def read_upload(path, lang: str = "en") -> bytes:
    if not path:
        raise gr.Error(t("need_picture", lang))
    try:
        return Path(path).read_bytes()
    except OSError:
        raise gr.Error(t("upload_unreadable", lang)) from None


@contextlib.contextmanager
def plain_errors(lang: str = "en"):
    """The library's one-line errors (a bad picture, missing models) as toasts for the visitor."""
    try:
        yield
    except ImageError as e:
        raise gr.Error(str(e)) from None
    except WeightsError as e:
        raise gr.Error(t("models_failed", lang).format(reason=e)) from None


def _cards(pairs):
    """[(Work, score)] -> gallery items (thumbnail, caption) and the ids, in order."""
    items = [(work.thumb, escape_user_text(work.caption(), markup=False)) for work, _ in pairs]
    return items, [work.id for work, _ in pairs]


# ------------------------------------------------------------------ Artwork tab

def analyze_artwork(ctx: AppContext, image_path, lang: str = "en", weights=None, progress=gr.Progress()):
    """Labels, reconstruction + PSNR, Grad-CAM and similar works for one picture.

    `weights`: the visitor's own model (None: the models directory's active one, else the app's).
    Returns the style, subject and fine-tuned classes as gr.Label updates, each hidden when the
    model has no such head (a model fine-tuned deeper than its head has only its own classes).
    """
    data = read_upload(image_path, lang)
    progress(0.2, desc="looking")
    with plain_errors(lang):
        look = ctx.lab.look(data, weights)
    analysis, heads = look.analysis, look.analysis.labels
    items, ids = _cards(look.similar)
    psnr = t("psnr_sentence", lang).format(psnr=analysis.psnr) if analysis.psnr is not None else ""
    custom = _head_label(heads, CUSTOM_HEAD, lang, label=look.model_key or t("your_model", lang))
    return (_head_label(heads, "style", lang), _head_label(heads, "subject", lang),
            _output_file(analysis.heatmap, "heatmap", "jpeg"), _output_file(look.seen, "autoencoder_input"),
            _output_file(analysis.reconstruction, "reconstruction"), psnr, items, ids, custom)


def _head_label(heads: dict, head: str, lang: str, **props):
    """A gr.Label update with the head's scores, or hidden when the model has no such head."""
    if head not in heads:
        return gr.update(value=None, visible=False)
    return gr.update(value=label_scores(heads[head], lang), visible=True, **props)


def add_to_gallery(ctx: AppContext, image_path, title: str, artist: str, year: str, lang: str = "en"):
    """Add a picture, analysed by the app's model: the gallery's labels and embeddings all come from it."""
    if ctx.kiosk:
        raise gr.Error(t("kiosk_no_adding", lang))
    data = read_upload(image_path, lang)
    with plain_errors(lang):
        work_id, new = ctx.lab.add(data, title=(title or "").strip() or None,
                                   artist=(artist or "").strip() or None, year=(year or "").strip() or None)
    message = t("added" if new else "already_added", lang)
    gr.Info(message)
    return f"{message} (#{work_id})"


# ------------------------------------------------------------------ Gallery tab

def browse(ctx: AppContext, style: str, subject: str, query: str, lang: str = "en"):
    with plain_errors(lang):
        works, total, stale = ctx.lab.browse(style, subject, query, limit=GRID_PAGE)
    if total == 0:
        note = t("gallery_empty", lang)
    elif not works:
        note = t("no_match", lang)
    else:
        note = t("shown", lang).format(shown=len(works), total=total)
    if stale:   # analysed by an earlier model: not in "similar works" until re-analysed
        note += " " + t("stale", lang).format(stale=stale)
    return [(w.thumb, _grid_caption(w, lang)) for w in works], [w.id for w in works], note


def _grid_caption(work, lang: str) -> str:
    labels = f"{display_name(work.style, lang)} · {display_name(work.subject, lang)}"
    title = escape_user_text(work.title, markup=False)
    return f"{title} · {labels}" if title else labels


def open_work(ctx: AppContext, ids: list[int], index: int, lang: str = "en"):
    """The full analysis of a gallery work (stored labels; similar works by its embedding)."""
    if index is None or not ids or index >= len(ids):
        raise gr.Error(t("pick_work", lang))
    with plain_errors(lang):
        found = ctx.lab.work(ids[index])
    if found is None:
        raise gr.Error(t("work_gone", lang))
    work, picture, pairs = found
    items, similar_ids = _cards(pairs)
    # Title, artist and year come from visitors and metadata files: shown as typed, never as markup.
    lines = [f"## {escape_user_text(work.name)}"]
    if work.artist or work.year:
        lines.append(" · ".join(escape_user_text(x) for x in (work.artist, work.year) if x))
    lines.append(t("added_on", lang).format(date=work.added[:10])
                 + (t("work_psnr", lang).format(psnr=work.psnr) if work.psnr else ""))
    return (picture, label_scores(work.labels["style"], lang), label_scores(work.labels["subject"], lang),
            "\n\n".join(lines), items, similar_ids)


def style_choices(lang: str = "en"):
    return [(t("any", lang), "")] + [(display_name(s, lang), s) for s in STYLES]


def subject_choices(lang: str = "en"):
    return [(t("any", lang), "")] + [(display_name(s, lang), s) for s in SUBJECTS]


# ------------------------------------------------------------------ Text tab

def analyze_text(ctx: AppContext, text: str, lang: str = "en"):
    """Subject and style of a text, its autoencoder reconstruction, and gallery works with matching labels."""
    try:
        record, pairs = ctx.lab.read(text)
    except WeightsError as e:
        return None, None, "", [], [], f"**{e}** {t('image_side_works', lang)}"
    if "error" in record:
        raise gr.Error(record["error"])
    items, ids = _cards(pairs)
    return (label_scores(record.get("subject", []), lang), label_scores(record.get("style", []), lang),
            record.get("reconstruction", ""), items, ids, record.get("note", ""))


# ------------------------------------------------------------------ Create tab

def morph(ctx: AppContext, a_path, b_path, steps: int, weights=None, lang: str = "en"):
    if not a_path or not b_path:
        raise gr.Error(t("need_two", lang))
    with plain_errors(lang):
        frames = ctx.lab.walk(read_upload(a_path, lang), read_upload(b_path, lang), int(steps), weights)
    strip = [(_output_file(frame, f"frame{i}"), f"{i / (len(frames) - 1):.0%}") for i, frame in enumerate(frames)]
    return strip, frames, _output_file(frames[len(frames) // 2], "frame"), 0.5


def pick_frame(frames, position: float):
    if not frames:
        return None
    return _output_file(frames[round(float(position) * (len(frames) - 1))], "frame")


def surprise(ctx: AppContext, lang: str = "en"):
    works = ctx.lab.gallery().random(2)
    if len(works) < 2:
        raise gr.Error(t("need_two_in_gallery", lang))
    random.shuffle(works)
    return works[0].thumb, works[1].thumb
