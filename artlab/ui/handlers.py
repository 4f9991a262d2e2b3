"""Event handlers: each takes the app context and component values, calls the library, returns values.

Bad input becomes a gr.Error with a one-line message (shown as a toast), never a traceback.
"""

import hashlib
import io
import logging
import os
import random
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr

from artlab.checkpoints import WeightsError
from artlab.images import ImageError, load_image
from artlab.inference.explain import OVERLAY_SIDE
from artlab.inference.image import autoencoder_input
from artlab.labels import STYLES, SUBJECTS, display_name
from artlab.memory import release_freed_memory
from artlab.safe_text import escape_user_text
from artlab.store.gallery import add_upload, content_hash
from artlab.training.finetune import HEAD
from artlab.ui.context import AppContext
from artlab.ui.i18n import label_scores, t
from artlab.workdirs import process_dir

# Output pictures are handed to Gradio as files written here, never as PIL images: Gradio saves a
# PIL output by rewriting <cache>/<hash of its bytes>/image.png in place, so when two visitors get the
# same picture (the same example analysed twice) one download can read a half-rewritten file. Files
# are copied into Gradio's cache atomically, once per content.
_OUTPUTS = Path(tempfile.mkdtemp(prefix="artlab-outputs-", dir=process_dir()))
_OUTPUT_MAX_AGE_S = 15 * 60


def _output_file(image, name: str, fmt: str = "png") -> str | None:
    """Write `image` once per content under a stable name (atomically) and return its path."""
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if fmt == "jpeg" else fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
    data = buffer.getvalue()
    folder = _OUTPUTS / hashlib.sha1(data).hexdigest()[:24]
    path = folder / f"{name}.{'jpg' if fmt == 'jpeg' else fmt}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{uuid.uuid4().hex}.tmp"
        partial.write_bytes(data)
        os.replace(partial, path)
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

log = logging.getLogger(__name__)

SIMILAR = 6
GRID_PAGE = 60
EMPTY_GALLERY = (
    "### The gallery is empty\n"
    "Add works with `python -m artlab index FOLDER [--meta works.csv]`, "
    "or analyse a picture on the **Artwork** tab and press **Add to gallery**.\n\n"
    "画廊还是空的：用 `python -m artlab index 文件夹` 添加作品。"
)


def _read_upload(path) -> bytes:
    if not path:
        raise gr.Error("Please upload, paste or photograph an artwork first.")
    try:
        return Path(path).read_bytes()
    except OSError:
        raise gr.Error("The upload could not be read; please try again.") from None


def _models(ctx: AppContext, weights):
    try:
        return ctx.models(weights)
    except WeightsError as e:
        raise gr.Error(f"The models could not be loaded: {e}") from None


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
    data = _read_upload(image_path)
    weights = ctx.artwork_weights(weights)
    models = _models(ctx, weights)
    try:
        image = models.prepare(data, display_side=OVERLAY_SIDE)   # the heat map is laid over it
    except ImageError as e:
        raise gr.Error(str(e)) from None
    progress(0.2, desc="looking")
    analysis = models.analyze([image], explain=True)[0]
    embedding = analysis.embedding
    app_models = _models(ctx, None)   # the gallery's embeddings come from the app's model
    if not ctx.embeds_like_gallery(weights):
        embedding = app_models.analyze([image], reconstruct=False)[0].embedding
    gallery = ctx.gallery()
    pairs = gallery.similar(embedding.numpy(), SIMILAR, exclude_sha=content_hash(data), model=app_models.model_id)
    items, ids = _cards(pairs)
    psnr = (f"**{analysis.psnr:.1f} dB** PSNR: how faithfully the autoencoder rebuilt the picture "
            f"from a code 48 times smaller." if analysis.psnr is not None else "")
    # What the autoencoder was given (128 px, letterboxed), shown beside what it rebuilt.
    seen = autoencoder_input(image)
    heads = analysis.labels
    custom = _head_label(heads, HEAD, lang, label=_model_title(ctx, weights, lang))
    outputs = (_head_label(heads, "style", lang), _head_label(heads, "subject", lang),
               _output_file(analysis.heatmap, "heatmap", "jpeg"), _output_file(seen, "autoencoder_input"),
               _output_file(analysis.reconstruction, "reconstruction"), psnr, items, ids, custom)
    # A kiosk runs for weeks: hand the analysis's freed buffers back to the OS (a few ms), so the
    # app's memory stays flat instead of settling wherever the allocator's fragmentation takes it.
    release_freed_memory()
    return outputs


def _head_label(heads: dict, head: str, lang: str, **props):
    """A gr.Label update with the head's scores, or hidden when the model has no such head."""
    if head not in heads:
        return gr.update(value=None, visible=False)
    return gr.update(value=label_scores(heads[head], lang), visible=True, **props)


def _model_title(ctx: AppContext, weights, lang: str) -> str:
    """A fine-tuned model's name: its key in the models directory, else the visitor's own model."""
    return ctx.model_key(weights) or t("your_model", lang)


def add_to_gallery(ctx: AppContext, image_path, title: str, artist: str, year: str):
    """Add a picture, analysed by the app's model: the gallery's labels and embeddings all come from it."""
    if ctx.kiosk:
        raise gr.Error("Adding works is turned off on this kiosk.")
    data = _read_upload(image_path)
    try:
        work_id, new = add_upload(ctx.gallery(), _models(ctx, None), data, title=(title or "").strip() or None,
                                  artist=(artist or "").strip() or None, year=(year or "").strip() or None)
    except ImageError as e:
        raise gr.Error(str(e)) from None
    message = "Added to the gallery." if new else "This picture is already in the gallery."
    gr.Info(message)
    return f"{message} (work #{work_id})"


# ------------------------------------------------------------------ Gallery tab

def browse(ctx: AppContext, style: str, subject: str, query: str, lang: str = "en"):
    gallery = ctx.gallery()
    works = gallery.browse(style=style or None, subject=subject or None, query=query, limit=GRID_PAGE)
    total = gallery.count()
    if total == 0:
        note = EMPTY_GALLERY
    elif not works:
        note = "没有符合条件的作品。" if lang == "zh" else "No works match these filters."
    else:
        note = f"显示 {len(works)} / {total} 件作品。" if lang == "zh" else f"{len(works)} of {total} works shown."
    stale = gallery.other_model_count(_models(ctx, None).model_id) if total else 0
    if stale:   # analysed by an earlier model: not in "similar works" until re-analysed
        note += (f" 其中 {stale} 件由旧版模型分析,暂不参与相似作品检索;请运行 `python -m artlab index --refresh`。"
                 if lang == "zh" else f" {stale} of them were analysed by an earlier model and are left out of "
                 "similar works until `python -m artlab index --refresh` re-analyses them.")
    return [(w.thumb, _grid_caption(w, lang)) for w in works], [w.id for w in works], note


def _grid_caption(work, lang: str) -> str:
    labels = f"{display_name(work.style, lang)} · {display_name(work.subject, lang)}"
    title = escape_user_text(work.title, markup=False)
    return f"{title} · {labels}" if title else labels


def open_work(ctx: AppContext, ids: list[int], index: int, lang: str = "en"):
    """The full analysis of a gallery work (stored labels; similar works by its embedding)."""
    if index is None or not ids or index >= len(ids):
        raise gr.Error("Pick a work first.")
    gallery = ctx.gallery()
    work = gallery.get(ids[index])
    if work is None:
        raise gr.Error("That work is no longer in the gallery.")
    try:
        picture = load_image(work.path, max_side=1024)
    except ImageError:
        picture = load_image(work.thumb)   # the original moved away: show what we kept
    pairs = gallery.similar(gallery.embedding_of(work.id), SIMILAR, exclude_id=work.id, model=work.model)
    items, similar_ids = _cards(pairs)
    # Title, artist and year come from visitors and metadata files: shown as typed, never as markup.
    lines = [f"## {escape_user_text(work.name)}"]
    if work.artist or work.year:
        lines.append(" · ".join(escape_user_text(x) for x in (work.artist, work.year) if x))
    lines.append(f"Added {work.added[:10]}" + (f" · reconstruction {work.psnr:.1f} dB" if work.psnr else ""))
    return (picture, label_scores(work.labels["style"], lang), label_scores(work.labels["subject"], lang),
            "\n\n".join(lines), items, similar_ids)


def style_choices(lang: str = "en"):
    return [(t("any", lang), "")] + [(display_name(s, lang), s) for s in STYLES]


def subject_choices(lang: str = "en"):
    return [(t("any", lang), "")] + [(display_name(s, lang), s) for s in SUBJECTS]


# ------------------------------------------------------------------ Text tab

def analyze_text(ctx: AppContext, text: str, lang: str = "en"):
    """Subject and style of a text, its autoencoder reconstruction, and gallery works with matching labels."""
    models, problem = ctx.text_models()
    if models is None:
        return None, None, "", [], [], f"**{problem}** The image side of ArtLab works as usual."
    record = models.analyze([text or ""])[0]
    if "error" in record:
        raise gr.Error(record["error"])
    probs = {head: dict(record[head]) for head in ("style", "subject") if head in record}
    pairs = ctx.gallery().match_labels(probs, SIMILAR)
    items, ids = _cards(pairs)
    return (label_scores(record.get("subject", []), lang), label_scores(record.get("style", []), lang),
            record.get("reconstruction", ""), items, ids, record.get("note", ""))


# ------------------------------------------------------------------ Create tab

def morph(ctx: AppContext, a_path, b_path, steps: int, weights=None):
    if not a_path or not b_path:
        raise gr.Error("Choose two works (upload them, or press Surprise me).")
    models = _models(ctx, weights)
    try:
        a, b = models.prepare(_read_upload(a_path)), models.prepare(_read_upload(b_path))
    except ImageError as e:
        raise gr.Error(str(e)) from None
    frames = models.morph(a, b, int(steps))
    strip = [(_output_file(frame, f"frame{i}"), f"{i / (len(frames) - 1):.0%}") for i, frame in enumerate(frames)]
    return strip, frames, _output_file(frames[len(frames) // 2], "frame"), 0.5


def pick_frame(frames, position: float):
    if not frames:
        return None
    return _output_file(frames[round(float(position) * (len(frames) - 1))], "frame")


def surprise(ctx: AppContext):
    works = ctx.gallery().random(2)
    if len(works) < 2:
        raise gr.Error("The gallery needs at least two works for a surprise: add some first.")
    random.shuffle(works)
    return works[0].thumb, works[1].thumb
