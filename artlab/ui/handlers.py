"""Event handlers the tabs share: each takes the app context and component values, asks the Lab,
returns values.

Bad input is answered by a sentence in the visitor's language (returned for a notice, see
widgets.notice), not an exception: the outputs stay calm and no message names a server path.
What visitors typed (titles, artists) is shown through safe_text.escape_user_text, never as markup.
Results that name labels are kept language-neutral (ids, message keys) in a gr.State and rendered
by a `render_*` function, again whenever the visitor switches language.
"""

import contextlib
import hashlib
import io
import logging
import random
import re
import tempfile
import time
from pathlib import Path

import gradio as gr

from artlab.checkpoints import WeightsError
from artlab.files import atomic_write_bytes
from artlab.images import ImageError
from artlab.safe_text import escape_user_text
from artlab.ui.context import AppContext
from artlab.ui.i18n import TEXTS, label_scores, t
from artlab.ui.widgets import notice
from artlab.workdirs import process_dir

log = logging.getLogger(__name__)

# Output pictures are handed to Gradio as files written here, never as PIL images: Gradio saves a
# PIL output by rewriting <cache>/<hash of its bytes>/image.png in place, so when two visitors get the
# same picture (the same example analysed twice) one download can read a half-rewritten file. Files
# are copied into Gradio's cache atomically, once per content.
_OUTPUTS = Path(tempfile.mkdtemp(prefix="artlab-outputs-", dir=process_dir()))
_OUTPUT_MAX_AGE_S = 15 * 60


def output_file(image, name: str, fmt: str = "png") -> str | None:
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
    """The uploaded file's bytes (the API's endpoints); gr.Error when there is none."""
    if not path:
        raise gr.Error(t("need_picture", lang))
    try:
        return Path(path).read_bytes()
    except OSError:
        raise gr.Error(t("upload_unreadable", lang)) from None


@contextlib.contextmanager
def plain_errors(lang: str = "en"):
    """The library's one-line errors (a bad picture, missing models) as gr.Error, without server paths."""
    try:
        yield
    except ImageError as e:
        raise gr.Error(t(picture_problem(e), lang), print_exception=False) from None
    except WeightsError as e:
        log.error("the models could not be loaded: %s", e)
        raise gr.Error(t("models_failed", lang), print_exception=False) from None


def picture_problem(error: ImageError) -> str:
    """The TEXTS key that tells a visitor what is wrong with their file (artlab.images's kind)."""
    key = f"bad_{getattr(error, 'kind', 'corrupt')}"
    return key if key in TEXTS["en"] else "bad_corrupt"


def cards(pairs):
    """[(Work, score)] -> gallery items (thumbnail, caption) and the ids, in order."""
    items = [(work.thumb, escape_user_text(work.caption(), markup=False)) for work, _ in pairs]
    return items, [work.id for work, _ in pairs]


def add_to_gallery(ctx: AppContext, image_path, title: str, artist: str, year: str, lang: str = "en") -> str:
    """Add a picture, analysed by the app's model (the gallery's labels and embeddings all come from
    it). Returns the sentence for the visitor."""
    if ctx.kiosk:
        return t("kiosk_no_adding", lang)
    if not image_path:
        return t("need_picture", lang)
    try:
        work_id, new = ctx.lab.add(Path(image_path).read_bytes(), title=(title or "").strip() or None,
                                   artist=(artist or "").strip() or None, year=(year or "").strip() or None)
    except OSError:
        return t("upload_unreadable", lang)
    except ImageError as e:
        return t(picture_problem(e), lang)
    except WeightsError as e:
        log.error("the models could not be loaded: %s", e)
        return t("models_failed", lang)
    return f"{t('added' if new else 'already_added', lang)} (#{work_id})"


# ------------------------------------------------------------------ Text tab

# The text models' notes and errors (artlab.inference.text, in English) -> TEXTS keys.
_TEXT_NOTES = (("truncated", "note_truncated"), ("tokens were read", "note_truncated"),
               ("unknown to the model", "note_unknown"), ("empty text", "need_text"),
               ("no readable words", "no_words"))
# (the "unsure: ..." note becomes the unsure_text notice, from the record's "unsure")


def _note_keys(text: str) -> list[str]:
    return list(dict.fromkeys(key for part in re.split(r";\s*", text or "") for pattern, key in _TEXT_NOTES
                              if pattern in part))


def analyze_text(ctx: AppContext, text: str, lang: str = "en"):
    """(subject, style, reconstruction, matches, match ids, note, shown) for a title or description."""
    record, pairs = {}, []
    if not (text or "").strip():
        notes = ["need_text"]
    else:
        try:
            record, pairs = ctx.lab.read(text)
            notes = _note_keys(record.get("error", "")) + _note_keys(record.get("note", ""))
            notes += ["unsure_text"] if record.get("unsure") else []
        except WeightsError as e:
            log.warning("text models: %s", e)
            notes = ["text_models_missing"]
    shown = {"subject": record.get("subject"), "style": record.get("style"), "notes": notes,
             "unsure": bool(record.get("unsure"))}
    items, ids = cards(pairs)
    subject, style, note = render_text(shown, lang)
    return subject, style, record.get("reconstruction", ""), items, ids, note, shown


def render_text(shown: dict | None, lang: str):
    """(subject, style, note) of a text's analysis, in `lang`. When unsure, the notice says so (the
    labels stay plain values: /analyze_text's outputs are part of the page's API)."""
    shown = shown or {}
    return (label_scores(shown["subject"], lang) if shown.get("subject") else None,
            label_scores(shown["style"], lang) if shown.get("style") else None,
            notice(" ".join(t(key, lang) for key in shown.get("notes", []))))


# ------------------------------------------------------------------ Create tab

def morph(ctx: AppContext, a_path, b_path, steps: int, weights=None, lang: str = "en"):
    """(strip, frames, frame, position, note): the autoencoder's walk from one picture to the other."""
    calm = ([], [], None, 0.5)
    if not a_path or not b_path:
        return (*calm, notice(t("need_two", lang)))
    try:
        frames = ctx.lab.walk(Path(a_path).read_bytes(), Path(b_path).read_bytes(), int(steps), weights)
    except OSError:
        return (*calm, notice(t("upload_unreadable", lang)))
    except ImageError as e:
        return (*calm, notice(t(picture_problem(e), lang)))
    except WeightsError as e:
        log.error("the models could not be loaded: %s", e)
        return (*calm, notice(t("models_failed", lang)))
    strip = [(output_file(frame, f"frame{i}"), f"{i / (len(frames) - 1):.0%}") for i, frame in enumerate(frames)]
    return strip, frames, output_file(frames[len(frames) // 2], "frame"), 0.5, notice()


def pick_frame(frames, position: float):
    if not frames:
        return None
    return output_file(frames[round(float(position) * (len(frames) - 1))], "frame")


def surprise(ctx: AppContext, steps: int, weights=None, lang: str = "en"):
    """Two random works of the gallery and the walk between them: (a, b, *morph's outputs)."""
    works = ctx.lab.gallery().random(2)
    if len(works) < 2:
        return (gr.skip(),) * 6 + (notice(t("need_two_in_gallery", lang)),)
    random.shuffle(works)
    a, b = works[0].thumb, works[1].thumb
    return a, b, *morph(ctx, a, b, steps, weights, lang)
